"""HTTP facts both services rely on."""

SESSION_COOKIE = "mfa_session"
