"""The notifier: consumes MFA events from the bus and pushes the 2FA banner and security notices
to the user's live browser sessions over a WebSocket. It keeps no database."""
