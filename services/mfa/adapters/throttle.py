"""Counters of password attempts in the store (SPEC section 6), shared by every api instance.

A limit is a counter under a key (an HMAC of what it counts: a client address and an email, an
address, an email, a device cookie, a session) with a lockout policy: from its threshold on, the
key waits, and the wait doubles with each further failure. Keys are HMACs, so the table holds no
email or address in clear, and unknown emails are counted exactly like known ones.

An attempt reserves its limits before the password is checked (`pending`): while failures plus
attempts in flight reach the threshold, no further attempt starts, so a burst of concurrent
guesses gets no more tries than one guess at a time. A wrong password then counts a failure
(`failed`); a right one takes its reservation back (`succeeded`). A counter quiet for
`forget_seconds` starts again; a reservation left by a process that died is forgotten after
`STALE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.mfa.adapters.database import Database
from services.mfa.domain.errors import LockedOut
from services.mfa.domain.lockout import LockoutPolicy

STALE_SECONDS = 60  # far longer than any password check takes

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mfa_throttle (
        key text PRIMARY KEY,
        failures integer NOT NULL,
        pending integer NOT NULL,
        locked_until double precision,
        last_failure double precision NOT NULL,
        touched double precision NOT NULL
    )""",
]

# `f` and `p` are the failures and attempts in flight that still count. An attempt may start
# when the key is not waiting and failures plus attempts in flight stay under the threshold;
# past the threshold, one at a time once the last failure's wait has been set (and run out):
# each further failure sets the next, longer wait.
# Parameters: key, now, now | forget_before, stale_before | now | forget_before, stale_before,
# threshold, stale_before, stale_before.
_F = "(CASE WHEN mfa_throttle.last_failure < ? THEN 0 ELSE mfa_throttle.failures END)"
_P = "(CASE WHEN mfa_throttle.touched < ? THEN 0 ELSE mfa_throttle.pending END)"
_RESERVE = (  # built from the constant fragments above, no input
    "INSERT INTO mfa_throttle (key, failures, pending, locked_until, last_failure, touched)"  # noqa: S608
    " VALUES (?, 0, 1, NULL, ?, ?)"
    f" ON CONFLICT (key) DO UPDATE SET failures = {_F}, pending = {_P} + 1,"
    " touched = excluded.touched"
    " WHERE (mfa_throttle.locked_until IS NULL OR mfa_throttle.locked_until <= ?)"
    f" AND ({_F} + {_P} < ? OR ({_P} = 0 AND (mfa_throttle.locked_until IS NOT NULL"
    " OR mfa_throttle.touched < ?)))"
    " RETURNING failures"
)


@dataclass(frozen=True)
class Limit:
    kind: str  # what is counted: pair, address, account, device, reauth
    key: str
    policy: LockoutPolicy
    # True: a success clears the counter (this client proved it knows the password); False: a
    # success only takes its own attempt back (a counter over many clients, which one client's
    # success must not reset for the others).
    cleared_by_success: bool


@dataclass(frozen=True)
class Reservation:
    limits: tuple[Limit, ...]


@dataclass(frozen=True)
class Failure:
    """Where the first (closest) limit stands after a wrong password, for the audit."""

    failures: int
    locked_until: datetime | None


class PasswordThrottle:
    def __init__(self, db: Database, key: bytes, forget_seconds: int) -> None:
        self._db = db
        self._key = key
        self._forget = forget_seconds

    def limit(self, kind: str, counted: str, policy: LockoutPolicy, *,
              cleared_by_success: bool) -> Limit:
        digest = hmac.new(self._key, f"{kind}\0{counted}".encode(), hashlib.sha256)
        return Limit(kind, digest.hexdigest()[:40], policy, cleared_by_success)

    async def reserve(self, limits: list[Limit], now: datetime) -> Reservation:
        """Counts the attempt in flight under every limit; raises LockedOut (reserving
        nothing) if one of them is waiting, or has as many attempts in flight as it allows."""
        at = now.timestamp()
        forget, stale = at - self._forget, at - STALE_SECONDS
        taken: list[Limit] = []
        for limit in limits:
            rows = await self._db.mutate(_RESERVE, limit.key, at, at, forget, stale, at,
                                         forget, stale, limit.policy.threshold, stale, stale)
            if not rows:
                await self._release(taken)
                raise LockedOut(await self._wait_of(limit, now))
            taken.append(limit)
        return Reservation(tuple(taken))

    async def failed(self, reservation: Reservation, now: datetime) -> Failure:
        """A wrong password: a failure under every limit, and the wait it earns."""
        at = now.timestamp()
        first: Failure | None = None
        for limit in reservation.limits:
            # Reaching the threshold clears the old wait until the new one is set (next
            # statement), so meanwhile no attempt starts (see _RESERVE).
            rows = await self._db.mutate(
                "UPDATE mfa_throttle SET failures = failures + 1,"
                " pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END,"
                " locked_until = CASE WHEN failures + 1 >= ? THEN NULL ELSE locked_until END,"
                " last_failure = ?, touched = ? WHERE key = ? RETURNING failures",
                limit.policy.threshold, at, at, limit.key)
            failures = int(rows[0]["failures"]) if rows else 1
            until = limit.policy.locked_until(failures, now)
            if until is not None:
                await self._db.execute(
                    "UPDATE mfa_throttle SET locked_until = ? WHERE key = ?"
                    " AND (locked_until IS NULL OR locked_until < ?)",
                    until.timestamp(), limit.key, until.timestamp())
            first = first or Failure(failures, until)
        return first or Failure(0, None)

    async def succeeded(self, reservation: Reservation) -> None:
        for limit in reservation.limits:
            if limit.cleared_by_success:
                await self._db.execute("DELETE FROM mfa_throttle WHERE key = ?", limit.key)
        await self._release([limit for limit in reservation.limits
                             if not limit.cleared_by_success])

    async def cancelled(self, reservation: Reservation) -> None:
        """The attempt did not happen after all (the store failed under it): count nothing."""
        await self._release(list(reservation.limits))

    async def _release(self, limits: list[Limit]) -> None:
        for limit in limits:
            await self._db.execute(
                "UPDATE mfa_throttle SET pending = CASE WHEN pending > 0 THEN pending - 1"
                " ELSE 0 END WHERE key = ?", limit.key)

    async def _wait_of(self, limit: Limit, now: datetime) -> datetime:
        row = await self._db.fetchrow("SELECT locked_until FROM mfa_throttle WHERE key = ?",
                                      limit.key)
        until = row["locked_until"] if row is not None else None
        if until is None or until <= now.timestamp():
            # Not waiting: other attempts of this client are in flight. Again in a second.
            return now + timedelta(seconds=1)
        return datetime.fromtimestamp(until, tz=UTC)

    async def purge(self, now: datetime) -> int:
        at = now.timestamp()
        return await self._db.execute(
            "DELETE FROM mfa_throttle WHERE last_failure < ? AND touched < ?"
            " AND (locked_until IS NULL OR locked_until <= ?)",
            at - self._forget, at - STALE_SECONDS, at)
