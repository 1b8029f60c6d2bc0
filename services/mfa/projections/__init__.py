"""Read models built from the event log: the per-user 2FA state and the admin users grid."""
