"""The use cases, on the eventsourcing Application: each one is get, call, save.

Commands on one user race only through optimistic concurrency: a save that loses (another
request saved that aggregate's next version first) is retried from a fresh read, a bounded
number of times. That is what makes a recovery code work once even when 50 requests race.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from services.mfa.adapters.group_commit import GroupCommit
from services.mfa.adapters.passkeys import NewKey, Signature
from services.mfa.domain import recovery_codes, session_states, totp
from services.mfa.domain.account import ROLES, Account, EmailIndex, Organization, normalize_email
from services.mfa.domain.clock import Clock, SystemClock
from services.mfa.domain.errors import (
    AccountNotFound,
    DomainError,
    EmailAlreadyUsed,
    InvalidRole,
    RequiredByPolicy,
    TwoFactorNotOn,
)
from services.mfa.domain.lockout import LockoutPolicy
from services.mfa.domain.mfa import MFA, REQUIRED_BY_ADMIN, REQUIRED_BY_POLICY, mfa_id
from services.mfa.domain.session_states import State, Step
from services.runtime import request_id as request_ids

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)
MAX_ATTEMPTS = 30


class ConcurrentUpdate(Exception):
    """A command kept losing the race for the same aggregate; the client may try again."""


@dataclass(frozen=True)
class Written:
    """What a command returns: its result, and the log position of its last event (or 0)."""

    value: Any
    position: int


@dataclass(frozen=True)
class LoginStep:
    user_id: UUID
    next: State


@dataclass(frozen=True)
class Enrollment:
    secret: str
    setup_key: str
    otpauth_uri: str
    expires_at: datetime


def project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's project_aggregate without its per-event `isinstance` of a runtime
    Protocol (about 20 us each, a tenth of a verification's time in a profile): our stored
    events are all Aggregate.Event subclasses, which mutate."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _back_off(attempt: int) -> None:
    """Before a retry: a random pause growing with the attempts, so processes racing for one
    aggregate stop colliding in step (this runs in a store thread, never on the event loop)."""
    if attempt:
        time.sleep(random.uniform(0, 0.001 * min(2**attempt, 64)))  # noqa: S311 (not a secret)


def actor(kind: str, who: object) -> str:
    """Actors as the audit shows them: user:<id>, admin:<id>, support:<operator>, system."""
    return f"{kind}:{who}"


SNAPSHOT_INTERVAL = 100
BULK_CHUNK = 250


class MfaApplication(Application[UUID]):
    """Every login appends to the user's MFA aggregate, so its history grows for years. What a
    command costs stays bounded anyway: each process caches aggregates and fast-forwards them
    with the few events saved since (one SELECT), and a snapshot every SNAPSHOT_INTERVAL events
    (encrypted like events) bounds a cold read or a read of the past. The store still decides:
    a save from a stale copy loses the optimistic-concurrency race and is retried."""

    name = "MFA"
    snapshotting_intervals: ClassVar[dict[Any, int]] = {MFA: SNAPSHOT_INTERVAL}

    def __init__(
        self,
        env: dict[str, str],
        *,
        clock: Clock | None = None,
        lockout: LockoutPolicy | None = None,
        issuer: str = "MFA Service",
        group_commit: bool = False,
    ) -> None:
        """`group_commit`: saves of concurrent commands share transactions (a server under
        load); the command line and tests save alone."""
        super().__init__(env=env)
        self.clock = clock or SystemClock()
        self.lockout = lockout or LockoutPolicy()
        self.issuer = issuer
        self.group_commit = GroupCommit(self) if group_commit else None

    def close(self) -> None:
        if self.group_commit is not None:
            self.group_commit.close()
        super().close()

    # ---- organizations and accounts ----------------------------------------------------------

    # Passwords come hashed (argon2 runs outside the store's threads, see adapters/passwords.py).

    def create_organization(
        self, name: str, admin_email: str, admin_name: str, admin_password_hash: str, by: str
    ) -> Written:
        now = self.clock.now()
        org = Organization._create(Organization.OrganizationCreated, name=name, actor=by,
                                   timestamp=now, request_id=request_ids.current())
        account, index, mfa = self._new_user(org.id, admin_email, admin_name, "admin",
                                             admin_password_hash, None, by, now)
        position = self._save_new(org, account, index, mfa)
        return Written((org.id, account.id), position)

    def create_user(self, org_id: UUID, email: str, name: str, role: str, password_hash: str,
                    required: bool, by: str) -> Written:
        """`required`: the admin's choice; the organization's policy may require it anyway
        (a user created while it changes is caught by the policy enforcer)."""
        organization = self.organization(org_id)
        now = self.clock.now()
        required_by = REQUIRED_BY_ADMIN if required else (
            REQUIRED_BY_POLICY if organization.new_users_required() else None)
        account, index, mfa = self._new_user(org_id, email, name, role, password_hash,
                                             required_by, by, now)
        return Written(account.id, self._save_new(account, index, mfa))

    def update_user(self, org_id: UUID, user_id: UUID, name: str | None, role: str | None,
                    required: bool | None, by: str) -> Written:
        if required is False and self.organization(org_id).require_all:
            raise RequiredByPolicy()

        def change(account: Account, mfa: MFA) -> None:
            now = self.clock.now()
            account.change_profile(name if name is not None else account.name,
                                   role if role is not None else account.role, now, by)
            if required is not None:
                mfa.set_requirement(required, now, by)

        return self._update_both(org_id, user_id, change)

    # ---- Settings > Security policy, and requirements of many users at once ------------------

    def set_policy(self, org_id: UUID, require_all: bool, require_new: bool,
                   by: str) -> Written:
        """Records the policy; the policy enforcer (services/mfa/policy.py) then applies it to
        every user of the organization, as it follows the log."""
        def change(organization: Organization) -> bool:
            return organization.set_policy(require_all, require_new, self.clock.now(), by)

        return self._update(org_id, change)

    def set_requirements(self, org_id: UUID, user_ids: Sequence[UUID], required: bool,
                         by: str, reason: str = REQUIRED_BY_ADMIN) -> Written:
        """Required / Not required for many users of the organization in one action, saved
        a few hundred per transaction. Users of other organizations (or none) are left out.
        Returns how many changed."""
        if (reason == REQUIRED_BY_ADMIN and not required
                and self.organization(org_id).require_all):
            raise RequiredByPolicy()
        changed, position = 0, 0
        for start in range(0, len(user_ids), BULK_CHUNK):
            chunk = user_ids[start:start + BULK_CHUNK]
            written = self._update_many([mfa_id(u) for u in chunk], lambda mfa: (
                mfa.org_id == org_id
                and mfa.set_requirement(required, self.clock.now(), by, reason)))
            changed += written.value
            position = max(position, written.position)
        return Written(changed, position)

    def reset_two_factor(self, org_id: UUID, user_id: UUID, by: str) -> Written:
        return self._update_both(org_id, user_id,
                                 lambda _account, mfa: mfa.reset(self.clock.now(), by))

    def support_reset(self, email: str, operator: str) -> Written:
        account = self.account(self.user_id_for(email))
        return self.reset_two_factor(account.org_id, account.id, actor("support", operator))

    def organization(self, org_id: UUID) -> Organization:
        return self._get(org_id, Organization)

    def account(self, user_id: UUID) -> Account:
        return self._get(user_id, Account)

    def mfa(self, user_id: UUID) -> MFA:
        return self._get(mfa_id(user_id), MFA)

    def user_id_for(self, email: str) -> UUID:
        return self._get(EmailIndex.id_for(email), EmailIndex).user_id

    def _get(self, aggregate_id: UUID, kind: type[A]) -> A:
        """The aggregate of that kind, or AccountNotFound (also for an id of another kind)."""
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id, projector_func=project)
        except AggregateNotFoundError:
            raise AccountNotFound() from None
        if not isinstance(aggregate, kind):
            raise AccountNotFound()
        return aggregate

    def mfa_at(self, user_id: UUID, at: datetime) -> MFA | None:
        """Time travel: the user's MFA aggregate after every event at or before `at` (None if it
        did not exist yet). Event times never go backwards within an aggregate (domain/clock.py
        `not_before`), so the last version at or before `at` is found by bisection, a read of
        one event per step; the repository then starts from the snapshot before it."""
        aggregate_id = mfa_id(user_id)
        def events(**selection: Any) -> list[Aggregate.Event]:
            return list(cast("Iterable[Aggregate.Event]",
                             self.events.get(aggregate_id, **selection)))

        latest = events(desc=True, limit=1)
        if not latest:
            return None
        low, high = 0, latest[0].originator_version  # version `low` is at or before `at`
        if latest[0].timestamp <= at:
            low = high
        while low < high:
            middle = (low + high + 1) // 2
            if events(gt=middle - 1, lte=middle)[0].timestamp <= at:
                low = middle
            else:
                high = middle - 1
        if low == 0:
            return None
        mfa: Aggregate = self.repository.get(aggregate_id, version=low, projector_func=project)
        assert isinstance(mfa, MFA)
        return mfa

    # ---- login -----------------------------------------------------------------------------------

    def account_for_login(self, email: str) -> Account | None:
        """F3 step 1: the account a login names, or None (the caller then checks the password
        against a decoy, so unknown emails cost the same time)."""
        try:
            return self.account(self.user_id_for(email))
        except AccountNotFound:
            return None

    def record_password(self, user_id: UUID, right: bool, purpose: str, *,
                        address: str | None = None, failures: int = 0,
                        locked_until: datetime | None = None) -> Written:
        """A checked password (login or re-authentication), recorded either way. A right one
        gives a login session's first state; a wrong one raises InvalidCredentials once saved.
        `failures` and `locked_until` are where the password throttle stands, for the audit."""
        by = actor("user", user_id)

        def attempt(mfa: MFA) -> LoginStep:
            now = self.clock.now()
            if not right:
                mfa.reject_password(failures, locked_until, now, by, address)
            mfa.accept_password(purpose, now, by, address)
            return LoginStep(user_id, session_states.after(None, Step.PASSWORD, mfa.factors()))

        return self._update(mfa_id(user_id), attempt)

    def verify_second_factor(self, user_id: UUID, code: str,
                             address: str | None = None) -> Written:
        """F3 step 2: a 6-digit TOTP code or an 8-digit recovery code, each accepted once."""
        by = actor("user", user_id)

        def attempt(mfa: MFA) -> LoginStep:
            mfa.verify_second_factor(code, self.lockout, self.clock.now(), by, address)
            return LoginStep(user_id, session_states.after("second_factor", Step.SECOND_FACTOR,
                                                           mfa.factors()))

        return self._update(mfa_id(user_id), attempt)

    # ---- My account > Security ---------------------------------------------------------------

    def start_enrollment(self, user_id: UUID, window_ends: datetime, *,
                         forced: bool = False) -> Written:
        """`forced`: from a forced-setup session, which proved only the password."""
        account = self.account(user_id)
        secret = totp.new_secret()

        def start(mfa: MFA) -> Enrollment:
            mfa.start_enrollment(secret, window_ends, self.clock.now(), actor("user", user_id),
                                 forced=forced)
            return Enrollment(
                secret=secret,
                setup_key=totp.setup_key(secret),
                otpauth_uri=totp.provisioning_uri(secret, account.email, self.issuer),
                expires_at=window_ends,
            )

        return self._update(mfa_id(user_id), start)

    def confirm_enrollment(self, user_id: UUID, code: str, *, forced: bool = False) -> Written:
        codes = recovery_codes.new_set()

        def confirm(mfa: MFA) -> list[str]:
            mfa.confirm_enrollment(code, codes, self.clock.now(), actor("user", user_id),
                                   forced=forced)
            return list(mfa.codes)  # new with the first factor, else the user's set

        return self._update(mfa_id(user_id), confirm)

    # ---- security keys and passkeys -------------------------------------------------------------

    def passkeys(self, user_id: UUID) -> list[dict[str, Any]]:
        """The user's keys as *My account > Security* lists them (no key material)."""
        return [{"id": key_id, "name": key["name"], "added_at": key["added_at"],
                 "last_used_at": key["last_used_at"], "user_verified": key["user_verified"]}
                for key_id, key in self.mfa(user_id).passkeys.items()]

    def register_passkey(self, user_id: UUID, key: NewKey, name: str, *,
                         forced: bool = False) -> Written:
        """Adds a key checked by the WebAuthn ceremony; returns the recovery codes it issued
        (the first factor of all), or an empty list."""
        codes = recovery_codes.new_set()
        return self._update(mfa_id(user_id), lambda mfa: mfa.register_passkey(
            key.passkey_id, key.public_key, key.sign_count, key.user_verified, name, codes,
            self.clock.now(), actor("user", user_id), forced=forced))

    def rename_passkey(self, user_id: UUID, passkey_id: str, name: str) -> Written:
        return self._update(mfa_id(user_id), lambda mfa: mfa.rename_passkey(
            passkey_id, name, self.clock.now(), actor("user", user_id)))

    def remove_passkey(self, user_id: UUID, passkey_id: str) -> Written:
        return self._update(mfa_id(user_id), lambda mfa: mfa.remove_passkey(
            passkey_id, self.clock.now(), actor("user", user_id)))

    def verify_passkey(self, user_id: UUID, passkey_id: str,
                       check: Callable[[str], Signature | None],
                       address: str | None = None) -> Written:
        """F3 step 2 with a key: `check` verifies the browser's signature against the stored
        public key; the aggregate then decides on the counter."""
        by = actor("user", user_id)

        def attempt(mfa: MFA) -> LoginStep:
            public_key = mfa.passkey_public_key(passkey_id)
            signature = check(public_key) if public_key is not None else None
            mfa.use_passkey(passkey_id, signature is not None,
                            signature.sign_count if signature else 0,
                            signature.user_verified if signature else False,
                            self.lockout, self.clock.now(), by, address)
            return LoginStep(user_id, session_states.after("second_factor", Step.SECOND_FACTOR,
                                                           mfa.factors()))

        return self._update(mfa_id(user_id), attempt)

    def recovery_codes(self, user_id: UUID) -> list[tuple[str, bool]]:
        mfa = self.mfa(user_id)
        if not mfa.is_on:
            raise TwoFactorNotOn()
        return list(zip(mfa.codes, mfa.used, strict=True))

    def regenerate_codes(self, user_id: UUID) -> Written:
        codes = recovery_codes.new_set()

        def regenerate(mfa: MFA) -> list[str]:
            mfa.regenerate_codes(codes, self.clock.now(), actor("user", user_id))
            return codes

        return self._update(mfa_id(user_id), regenerate)

    def disable(self, user_id: UUID) -> Written:
        return self._update(mfa_id(user_id),
                            lambda mfa: mfa.disable(self.clock.now(), actor("user", user_id)))

    # ---- the get, call, save loop ------------------------------------------------------------

    def _update(self, aggregate_id: UUID, command: Callable[[Any], T]) -> Written:
        for attempt in range(MAX_ATTEMPTS):
            _back_off(attempt)
            try:
                aggregate: Any = self.repository.get(aggregate_id, projector_func=project)
            except AggregateNotFoundError:
                raise AccountNotFound() from None
            try:
                value = command(aggregate)
            except DomainError:
                # A refusal is a fact too (failed attempts feed the lockout and the audit).
                if aggregate.pending_events and not self._try_save(aggregate):
                    continue
                raise
            position = self._try_save(aggregate)
            if position is not None:
                return Written(value, position)
        raise ConcurrentUpdate()

    def _update_many(self, aggregate_ids: Sequence[UUID],
                     command: Callable[[Any], bool]) -> Written:
        """One command on each aggregate, saved together; when the transaction loses a race,
        each is done again alone (with its own retries). Returns how many changed."""
        aggregates: list[Any] = []
        for aggregate_id in aggregate_ids:
            with contextlib.suppress(AggregateNotFoundError):
                aggregates.append(self.repository.get(aggregate_id, projector_func=project))
        changed = [a for a in aggregates if command(a)]
        if not changed:
            return Written(0, 0)
        position = self._try_save(*changed)
        if position is not None:
            return Written(len(changed), position)
        count, last = 0, 0
        for aggregate in changed:
            written = self._update(aggregate.id, command)
            count += bool(written.value)
            last = max(last, written.position)
        return Written(count, last)

    def _update_both(self, org_id: UUID, user_id: UUID,
                     change: Callable[[Account, MFA], None]) -> Written:
        for attempt in range(MAX_ATTEMPTS):
            _back_off(attempt)
            account = self.account(user_id)
            if account.org_id != org_id:
                raise AccountNotFound()  # another organization's user does not exist for you
            mfa = self.mfa(user_id)
            change(account, mfa)
            position = self._try_save(account, mfa)
            if position is not None:
                return Written(user_id, position)
        raise ConcurrentUpdate()

    def _try_save(self, *aggregates: Aggregate) -> int | None:
        """Position of the last event saved (0: nothing to save); None if the race was lost."""
        if self.group_commit is not None:
            return self.group_commit.save(*aggregates)
        try:
            recordings = self.save(*aggregates)
        except IntegrityError:
            return None
        return recordings[-1].notification.id if recordings else 0

    def _save_new(self, *aggregates: Aggregate) -> int:
        position = self._try_save(*aggregates)
        if position is None:
            raise EmailAlreadyUsed()  # only the email claim can collide
        return position

    def _new_user(self, org_id: UUID, email: str, name: str, role: str, password_hash: str,
                  required_by: str | None, by: str, now: datetime,
                  ) -> Sequence[Any]:
        if role not in ROLES:  # the HTTP layer checks too; this holds under python -O as well
            raise InvalidRole(role)
        user_id = uuid4()
        email = normalize_email(email)
        account = Account._create(
            Account.AccountCreated, id=user_id, user_id=user_id, org_id=org_id, actor=by,
            email=email, name=name, role=role, password_hash=password_hash,
            timestamp=now, request_id=request_ids.current(),
        )
        index = EmailIndex._create(EmailIndex.EmailClaimed, id=EmailIndex.id_for(email),
                                   user_id=user_id, timestamp=now,
                                   request_id=request_ids.current())
        mfa = MFA._create(MFA.MfaCreated, id=mfa_id(user_id), user_id=user_id, org_id=org_id,
                          actor=by, required=required_by is not None, required_by=required_by,
                          timestamp=now, request_id=request_ids.current())
        return account, index, mfa
