"""The password step: login (F3 step 1) and re-authentication, throttled and bounded.

In this order: a place in the hashing capacity (else 503 at once), a reservation under the password
limits (else 429 with the wait), the account, argon2 in its own threads, then the attempt recorded
on the user's MFA aggregate. What a stranger can do with it is in the README ("Throttling").

The limits of a login (SPEC section 6):
- per client address and email: the lockout threshold (5), then a wait that doubles;
- per client address over every email: `MFA_PASSWORD_ADDRESS_THRESHOLD` (spraying one password
  over many accounts);
- per email over every address: `MFA_PASSWORD_ACCOUNT_THRESHOLD` (many addresses guessing one
  account).
A browser with a device cookie of that email is counted under its cookie alone instead, so the
counters strangers fill never keep a returning user out. Unknown emails count exactly like known
ones: nothing in the answers or their timing depends on whether the account exists, except the
attempt event a known account records. Re-authentication is counted per session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

from services.mfa.adapters.passwords import HashingPool
from services.mfa.adapters.throttle import Failure, Limit, PasswordThrottle
from services.mfa.application import LoginStep, MfaApplication, Written
from services.mfa.domain.account import Account, normalize_email
from services.mfa.domain.clock import Clock
from services.mfa.domain.errors import InvalidCredentials, LockedOut
from services.mfa.domain.lockout import LockoutPolicy

Command = Callable[..., Awaitable[Written]]
MAX_WAITING_PER_CLIENT = 32
Call = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class PasswordPolicies:
    per_client: LockoutPolicy  # one address and one email, one device cookie, one session
    per_address: LockoutPolicy
    per_account: LockoutPolicy


class Logins:
    def __init__(self, app: MfaApplication, throttle: PasswordThrottle, hashing: HashingPool,
                 policies: PasswordPolicies, clock: Clock, *, command: Command,
                 call: Call) -> None:
        self._app = app
        self._throttle = throttle
        self._hashing = hashing
        self._policies = policies
        self._clock = clock
        self._command = command
        self._call = call
        self._client_locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    async def login(self, email: str, password: str, address: str,
                    device: str | None) -> LoginStep:
        """`device`: the nonce of a valid device cookie of this email, if the browser has one."""
        email = normalize_email(email)
        account, failure = await self._check(
            self._login_limits(email, address, device), password,
            lambda: self._call(self._app.account_for_login, email), returning=device is not None)
        if account is None:
            raise InvalidCredentials(failure.locked_until if failure else None)
        return await self._record(account.id, "login", address, failure)

    async def reauthenticate(self, user_id: UUID, session_id: str, password: str,
                             address: str) -> None:
        """Opens the password window; a stolen cookie guessing the password is throttled under
        its own session only, so it cannot lock the user out of anything else."""
        limit = self._throttle.limit("reauth", session_id, self._policies.per_client,
                                     cleared_by_success=True)
        _, failure = await self._check(
            [limit], password, lambda: self._call(self._app.account, user_id))
        await self._record(user_id, "reauthenticate", address, failure)

    def _login_limits(self, email: str, address: str, device: str | None) -> list[Limit]:
        limit, policies = self._throttle.limit, self._policies
        if device is not None:
            return [limit("device", device, policies.per_client, cleared_by_success=True)]
        return [limit("pair", f"{address}\0{email}", policies.per_client,
                      cleared_by_success=True),
                limit("address", address, policies.per_address, cleared_by_success=False),
                limit("account", email, policies.per_account, cleared_by_success=False)]

    async def _check(self, limits: list[Limit], password: str,
                     find: Callable[[], Awaitable[Account | None]], *, returning: bool = True,
                     ) -> tuple[Account | None, Failure | None]:
        """The account and, for a wrong password, the failure counted (None: right).
        `returning`: a known browser (device cookie, or a session re-authenticating), which has
        a hashing lane of its own."""
        async with self._one_at_a_time(limits[0].key), \
                self._hashing.slot(returning=returning) as lane:
            reservation = await self._throttle.reserve(limits, self._clock.now())
            try:
                account = await find()
                right = await self._hashing.verify(
                    account.password_hash if account is not None else None, password, lane=lane)
            except BaseException:
                await self._throttle.cancelled(reservation)  # the store failed, not the user
                raise
            if right:
                await self._throttle.succeeded(reservation)
                return account, None
            return account, await self._throttle.failed(reservation, self._clock.now())

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, key: str) -> AsyncIterator[None]:
        """Attempts of one client (its closest limit) take turns in this process, so several
        at once (tabs, retries) are answered one after another instead of being refused as a
        burst. A client queueing too many is told to come back."""
        waiting = self._waiting.get(key, 0)
        if waiting >= MAX_WAITING_PER_CLIENT:
            raise LockedOut(self._clock.now() + timedelta(seconds=1))
        lock = self._client_locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = waiting + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                del self._client_locks[key]

    async def _record(self, user_id: UUID, purpose: str, address: str,
                      failure: Failure | None) -> LoginStep:
        # The password step changes no view a client reads (only the audit): no wait for them.
        written = await self._command(
            partial(self._app.record_password, user_id, failure is None, purpose,
                    address=address, failures=failure.failures if failure else 0,
                    locked_until=failure.locked_until if failure else None),
            user_id=user_id, settle=False)
        step: LoginStep = written.value
        return step
