"""The 2FA domain: aggregates, TOTP and recovery-code rules, domain errors. No I/O here."""
