"""Server-side sessions. The cookie holds a random token; the store keeps only its HMAC, so a
leaked table gives no usable session. Any api instance can serve any request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from services.mfa.adapters.database import Database

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mfa_sessions (
        token_hash text PRIMARY KEY,
        user_id text NOT NULL,
        state text NOT NULL,
        window_until double precision,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS mfa_sessions_user ON mfa_sessions (user_id)",
]

STATES = ("second_factor", "setup_2fa", "regenerate_codes", "done")


@dataclass(frozen=True)
class Session:
    token: str
    user_id: UUID
    state: str
    window_until: float | None
    expires_at: float

    def window_open(self, now: datetime) -> bool:
        return self.window_until is not None and now.timestamp() < self.window_until


class SessionStore:
    def __init__(self, db: Database, key: bytes, max_age_seconds: int) -> None:
        self._db = db
        self._key = key
        self._max_age = max_age_seconds

    def _hash(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    async def create(self, user_id: UUID, state: str, window_until: float | None,
                     now: datetime) -> Session:
        token = secrets.token_urlsafe(32)
        expires_at = now.timestamp() + self._max_age
        await self._db.execute(
            "INSERT INTO mfa_sessions (token_hash, user_id, state, window_until, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            self._hash(token), str(user_id), state, window_until, now.timestamp(), expires_at,
        )
        return Session(token, user_id, state, window_until, expires_at)

    async def get(self, token: str, now: datetime) -> Session | None:
        row = await self._db.fetchrow(
            "SELECT user_id, state, window_until, expires_at FROM mfa_sessions"
            " WHERE token_hash = ?", self._hash(token))
        if row is None or row["expires_at"] <= now.timestamp():
            return None
        return Session(token, UUID(row["user_id"]), row["state"], row["window_until"],
                       row["expires_at"])

    async def replace(self, old: Session, state: str, window_until: float | None,
                      now: datetime) -> Session:
        """A new token for the new state (ASVS 7.2.4): the old one stops working, in the same
        statement, so no moment has both or neither."""
        token = secrets.token_urlsafe(32)
        expires_at = now.timestamp() + self._max_age
        await self._db.execute(
            "UPDATE mfa_sessions SET token_hash = ?, state = ?, window_until = ?, created_at = ?,"
            " expires_at = ? WHERE token_hash = ?",
            self._hash(token), state, window_until, now.timestamp(), expires_at,
            self._hash(old.token))
        return Session(token, old.user_id, state, window_until, expires_at)

    async def set_state(self, session: Session, state: str) -> Session:
        await self._db.execute("UPDATE mfa_sessions SET state = ? WHERE token_hash = ?",
                               state, self._hash(session.token))
        return Session(session.token, session.user_id, state, session.window_until,
                       session.expires_at)

    async def end(self, session: Session) -> None:
        await self._db.execute("DELETE FROM mfa_sessions WHERE token_hash = ?",
                               self._hash(session.token))

    async def purge_expired(self, now: datetime) -> int:
        return await self._db.execute("DELETE FROM mfa_sessions WHERE expires_at <= ?",
                                      now.timestamp())
