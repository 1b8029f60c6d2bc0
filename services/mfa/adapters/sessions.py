"""Server-side sessions. The cookie holds a random token; the store keeps only its HMAC, so a
leaked table gives no usable session. Any api instance can serve any request.

A session has two lifetimes (SPEC section 4, NIST SP 800-63B AAL2): an absolute one from the
login, which nothing extends (a new token at each step keeps the login's end), and an idle one,
renewed by use. Its `sid` stays the same across token rotations: the notifier closes the open
pages of a session by it, so it is safe to publish (it authenticates nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID, uuid4

from services.mfa.adapters.database import Database, ensure_columns
from services.mfa.domain.session_states import State

_TABLE = """CREATE TABLE IF NOT EXISTS mfa_sessions (
    token_hash text PRIMARY KEY,
    user_id text NOT NULL,
    state text NOT NULL,
    window_until double precision,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    sid text,
    last_seen double precision,
    device_binding text,
    challenge text,
    challenge_kind text,
    challenge_until double precision
)"""
# Columns added since the first version of the table, for databases created before them.
_ADDED = (("sid", "text"), ("last_seen", "double precision"), ("device_binding", "text"),
          ("challenge", "text"), ("challenge_kind", "text"),
          ("challenge_until", "double precision"))


async def create_schema(db: Database) -> None:
    await db.execute(_TABLE)
    await ensure_columns(db, "mfa_sessions", _ADDED)
    # Sessions of the first version had a lifetime that re-authentication extended: end them.
    await db.execute("DELETE FROM mfa_sessions WHERE sid IS NULL")
    await db.execute("CREATE INDEX IF NOT EXISTS mfa_sessions_user ON mfa_sessions (user_id)")


@dataclass(frozen=True)
class Session:
    token: str
    sid: str
    user_id: UUID
    state: State
    window_until: float | None
    login_at: float
    expires_at: float  # login_at + the absolute lifetime; never moved
    last_seen: float
    device_binding: str  # what a device cookie of this login is bound to (device_cookies.py)

    def window_open(self, now: datetime) -> bool:
        return self.window_until is not None and now.timestamp() < self.window_until

    def seconds_left(self, now: datetime) -> int:
        return max(0, int(self.expires_at - now.timestamp()))


class SessionStore:
    def __init__(self, db: Database, key: bytes, max_age_seconds: int,
                 idle_seconds: int) -> None:
        self._db = db
        self._key = key
        self._max_age = max_age_seconds
        self._idle = idle_seconds
        # Use renews the idle lifetime; writing it at most this often keeps reads cheap.
        self._touch_every = min(60.0, idle_seconds / 10)

    def _hash(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    async def create(self, user_id: UUID, state: State, window_until: float | None,
                     now: datetime, device_binding: str) -> Session:
        token = secrets.token_urlsafe(32)
        at = now.timestamp()
        session = Session(token, str(uuid4()), user_id, state, window_until, at,
                          at + self._max_age, at, device_binding)
        await self._db.execute(
            "INSERT INTO mfa_sessions (token_hash, sid, user_id, state, window_until,"
            " created_at, expires_at, last_seen, device_binding)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._hash(token), session.sid, str(user_id), state, window_until, at,
            session.expires_at, at, device_binding)
        return session

    async def get(self, token: str, now: datetime, *, touch: bool = True) -> Session | None:
        """The live session of this token; None once its absolute or idle lifetime is over.
        `touch`: this is a use of the session (a request of the user), which renews its idle
        lifetime; a check by the notifier is not."""
        if not token.isascii():  # not one of ours (aiohttp keeps odd bytes as surrogates)
            return None
        row = await self._db.fetchrow(
            "SELECT sid, user_id, state, window_until, created_at, expires_at, last_seen,"
            " device_binding FROM mfa_sessions WHERE token_hash = ?", self._hash(token))
        if row is None:
            return None
        at = now.timestamp()
        session = Session(token, row["sid"], UUID(row["user_id"]), row["state"],
                          row["window_until"], row["created_at"], row["expires_at"],
                          row["last_seen"], row["device_binding"] or "")
        if at >= session.expires_at or at - session.last_seen >= self._idle:
            await self.end(session)
            return None
        if touch and at - session.last_seen >= self._touch_every:
            await self._db.execute("UPDATE mfa_sessions SET last_seen = ? WHERE token_hash = ?",
                                   at, self._hash(token))
            session = replace(session, last_seen=at)
        return session

    async def replace(self, old: Session, state: State, window_until: float | None,
                      now: datetime) -> Session:
        """A new token for the new state (ASVS 7.2.4): the old one stops working, in the same
        statement, so no moment has both or neither. The login's end stays where it was."""
        token = secrets.token_urlsafe(32)
        at = now.timestamp()
        await self._db.execute(
            "UPDATE mfa_sessions SET token_hash = ?, state = ?, window_until = ?, last_seen = ?"
            " WHERE token_hash = ?",
            self._hash(token), state, window_until, at, self._hash(old.token))
        return replace(old, token=token, state=state, window_until=window_until, last_seen=at)

    async def set_state(self, session: Session, state: State,
                        window_until: float | None) -> Session:
        """A change decided by the server alone (a forced step that no longer applies)."""
        await self._db.execute(
            "UPDATE mfa_sessions SET state = ?, window_until = ? WHERE token_hash = ?",
            state, window_until, self._hash(session.token))
        return replace(session, state=state, window_until=window_until)

    async def set_challenge(self, session: Session, kind: str, challenge: str,
                            until: float) -> None:
        """A WebAuthn challenge for this session (`kind`: register or login); a new one
        replaces the previous one."""
        await self._db.execute(
            "UPDATE mfa_sessions SET challenge = ?, challenge_kind = ?, challenge_until = ?"
            " WHERE token_hash = ?", challenge, kind, until, self._hash(session.token))

    async def take_challenge(self, session: Session, kind: str, now: datetime) -> str | None:
        """The session's live challenge of that kind, used up: read, then cleared only if it is
        still the same (compare and clear), so a response is checked against it once."""
        row = await self._db.fetchrow(
            "SELECT challenge, challenge_kind, challenge_until FROM mfa_sessions"
            " WHERE token_hash = ?", self._hash(session.token))
        if row is None or row["challenge"] is None:
            return None
        cleared = await self._db.execute(
            "UPDATE mfa_sessions SET challenge = NULL, challenge_kind = NULL,"
            " challenge_until = NULL WHERE token_hash = ? AND challenge = ?",
            self._hash(session.token), row["challenge"])
        if not cleared or row["challenge_kind"] != kind:
            return None
        if row["challenge_until"] is None or now.timestamp() >= row["challenge_until"]:
            return None
        return str(row["challenge"])

    async def end(self, session: Session) -> None:
        await self._db.execute("DELETE FROM mfa_sessions WHERE token_hash = ?",
                               self._hash(session.token))

    async def purge_expired(self, now: datetime) -> int:
        at = now.timestamp()
        return await self._db.execute(
            "DELETE FROM mfa_sessions WHERE expires_at <= ? OR last_seen <= ?",
            at, at - self._idle)
