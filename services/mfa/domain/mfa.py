"""The MFA aggregate: one per user, the whole life of that user's second factor.

Each command checks its rule first, then records an event; rejected attempts are recorded too
(they feed the lockout and the audit) and then raised. The caller saves what was recorded even
when the command raises.
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from contracts.shown_state import ShownState, Status
from services.mfa.domain import recovery_codes, totp
from services.mfa.domain.clock import not_before
from services.mfa.domain.errors import (
    InvalidCode,
    InvalidCredentials,
    LockedOut,
    NoEnrollmentInProgress,
    PasskeyAlreadyRegistered,
    PasskeyCloned,
    PasskeyNotFound,
    SecondFactorOwed,
    SetupWindowExpired,
    TwoFactorNotOn,
    TwoFactorRequired,
)
from services.mfa.domain.lockout import LockoutPolicy
from services.mfa.domain.session_states import UserTwoFactor
from services.mfa.domain.topics import stored_as
from services.runtime import request_id as request_ids

_MFA_NAMESPACE = uuid5(NAMESPACE_URL, "urn:mfa-service:mfa")
REQUIRED_BY_ADMIN = "admin"
REQUIRED_BY_POLICY = "policy"


def mfa_id(user_id: UUID) -> UUID:
    """The MFA aggregate of a user has an id derived from the user's, so no lookup is needed."""
    return uuid5(_MFA_NAMESPACE, str(user_id))


# Every stored event also says which request caused it (services/runtime/request_id.py; None
# for the command line and for events stored before it was kept): metadata for following a
# login through the logs, never read by the domain. Keyword-only with a default, so events of
# the older form still decode (they lack it) and subclasses' own fields need no defaults.
RequestId = field(default=None, kw_only=True)


class UserEvent(Aggregate.Event):
    """Every event about a user says whose, in which organization, who did it, and in which
    request."""

    user_id: UUID
    org_id: UUID
    actor: str
    request_id: str | None = RequestId


class MFA(Aggregate):
    # 2: passkeys (a snapshot of version 1 has none). 3: who requires 2FA, an admin or the
    # organization's policy (before it, only admins did).
    class_version = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["passkeys"] = {}

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["required_by"] = REQUIRED_BY_ADMIN if state["required"] else None

    class MfaCreated(Aggregate.Created):
        TOPIC = "services.mfa.domain.mfa:MFA.MfaCreated"
        class_version = 2  # 2: required_by

        user_id: UUID
        org_id: UUID
        actor: str
        required: bool
        required_by: str | None
        request_id: str | None = RequestId

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["required_by"] = REQUIRED_BY_ADMIN if state["required"] else None

    def __init__(self, user_id: UUID, org_id: UUID, actor: str, required: bool,
                 required_by: str | None) -> None:
        self.user_id = user_id
        self.org_id = org_id
        self.required = required
        # Who requires it: an admin (explicitly) or the organization's policy; the policy's
        # end lifts only its own requirements.
        self.required_by = required_by if required else None
        self.secret: str | None = None
        self.pending_secret: str | None = None
        self.pending_expires_at: datetime | None = None
        self.last_step = -1
        self.codes: list[str] = []
        self.used: list[bool] = []
        self.failures = 0
        self.locked_until: datetime | None = None
        # Security keys and passkeys by credential id (base64url): name, public key (base64url
        # COSE), signature counter, user verification, added and last used.
        self.passkeys: dict[str, dict[str, Any]] = {}

    # ---- what the rest of the service reads ------------------------------------------------

    @property
    def is_on(self) -> bool:
        """2FA is On while any factor is configured: an authenticator app or a passkey."""
        return self.secret is not None or bool(self.passkeys)

    @property
    def has_authenticator_app(self) -> bool:
        return self.secret is not None

    @property
    def status(self) -> Status:
        """2FA Status as the users grid shows it."""
        return self.shown_state().status

    def factors(self) -> UserTwoFactor:
        """What a login session's state depends on (services/mfa/domain/session_states.py)."""
        return UserTwoFactor(self.is_on, self.required, self.recovery_codes_left)

    def shown_state(self) -> ShownState:
        """What the user and the admins are shown: status, required, codes left, banner."""
        return ShownState.of(self.is_on, self.required, self.recovery_codes_left)

    @property
    def recovery_codes_left(self) -> int:
        return self.used.count(False) if self.is_on else 0

    @property
    def banner(self) -> bool:
        """The enforcement bar of F6 (the rule is the shown state's)."""
        return self.shown_state().banner

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    # ---- commands ------------------------------------------------------------------------------

    def accept_password(self, purpose: str, now: datetime, actor: str,
                        address: str | None = None) -> None:
        """A right password. It completes a login only when no second factor follows."""
        completes_login = purpose == "login" and not self.is_on
        self._record(self.PasswordAccepted, now, actor, purpose=purpose,
                     completes_login=completes_login, address=address)

    def reject_password(self, failures: int, locked_until: datetime | None, now: datetime,
                        actor: str, address: str | None = None) -> None:
        """A wrong password, recorded for the audit. Password attempts are throttled by client
        address and email outside the aggregate (so a stranger cannot lock the user out); they
        never count toward the second factor's lockout. `failures` and `locked_until` say where
        that throttle stands."""
        self._record(self.PasswordRejected, now, actor, factor="password", failures=failures,
                     locked_until=locked_until, address=address)
        raise InvalidCredentials(locked_until)

    def verify_second_factor(self, code: str, policy: LockoutPolicy, now: datetime,
                             actor: str, address: str | None = None) -> str:
        """Accept a 6-digit TOTP code or an 8-digit recovery code; returns which it was."""
        factor = "totp" if len(code) == totp.DIGITS else "recovery_code"
        if self.locked_until is not None and now < self.locked_until:
            self._record(self.AttemptThrottled, now, actor, factor=factor,
                         until=self.locked_until, address=address)
            raise LockedOut(self.locked_until)
        if factor == "totp" and self.secret is not None:
            step = totp.matching_step(self.secret, code, now, self.last_step)
            if step is not None:
                self._record(self.TotpAccepted, now, actor, step=step, address=address)
                return factor
        elif factor == "recovery_code" and self.is_on:  # codes back up any factor
            index = recovery_codes.find_unused(self.codes, self.used, code)
            if index is not None:
                self._record(self.RecoveryCodeConsumed, now, actor, index=index,
                             remaining=self.recovery_codes_left - 1, address=address)
                return factor
        raise InvalidCode(self._reject(factor, policy, now, actor, address))

    def start_enrollment(self, secret: str, expires_at: datetime, now: datetime,
                         actor: str, *, forced: bool = False) -> None:
        """Configure 2FA. Allowed while On too: confirming a new app replaces the old one. A
        forced setup (a session that proved only the password) may never replace one."""
        if forced and self.is_on:
            raise SecondFactorOwed()
        self._record(self.EnrollmentStarted, now, actor, secret=secret, expires_at=expires_at)

    def confirm_enrollment(self, code: str, new_codes: list[str], now: datetime,
                           actor: str, *, forced: bool = False) -> None:
        if forced and self.is_on:
            # 2FA was configured in another session meanwhile: decided here, by the store's
            # optimistic concurrency, not by a check that may have raced with it.
            raise SecondFactorOwed()
        if self.pending_secret is None or self.pending_expires_at is None:
            raise NoEnrollmentInProgress()
        if now >= self.pending_expires_at:
            raise SetupWindowExpired()
        step = totp.matching_step(self.pending_secret, code, now, after_step=-1)
        if step is None:
            raise InvalidCode()
        # Recovery codes come with the first factor of all; a new app (or an app beside a
        # passkey) keeps the user's set.
        self._record(self.TotpConfirmed, now, actor, step=step,
                     recovery_codes=[] if self.is_on else new_codes)

    # ---- security keys and passkeys (WebAuthn) ---------------------------------------------
    # Signatures are checked by the application (the webauthn library, with the public key
    # kept here); the aggregate keeps the keys and decides on their counters.

    def register_passkey(self, passkey_id: str, public_key: str, sign_count: int,
                         user_verified: bool, name: str, new_codes: list[str], now: datetime,
                         actor: str, *, forced: bool = False) -> list[str]:
        """Adds a key. The first factor of all also issues the recovery codes, which it
        returns (empty: the user has codes already)."""
        if forced and self.is_on:
            raise SecondFactorOwed()
        if passkey_id in self.passkeys:
            raise PasskeyAlreadyRegistered()
        codes = [] if self.is_on else new_codes
        self._record(self.PasskeyRegistered, now, actor, passkey_id=passkey_id, name=name,
                     public_key=public_key, sign_count=sign_count, user_verified=user_verified,
                     recovery_codes=codes)
        return codes

    def rename_passkey(self, passkey_id: str, name: str, now: datetime, actor: str) -> None:
        self._passkey(passkey_id)
        if self.passkeys[passkey_id]["name"] != name:
            self._record(self.PasskeyRenamed, now, actor, passkey_id=passkey_id, name=name)

    def remove_passkey(self, passkey_id: str, now: datetime, actor: str) -> None:
        """Removing the last factor turns 2FA Off: like Disable 2FA, refused when Required."""
        self._passkey(passkey_id)
        still_on = self.secret is not None or len(self.passkeys) > 1
        if not still_on and self.required:
            raise TwoFactorRequired()
        self._record(self.PasskeyRemoved, now, actor, passkey_id=passkey_id, still_on=still_on)

    def passkey_public_key(self, passkey_id: str) -> str | None:
        key = self.passkeys.get(passkey_id)
        return str(key["public_key"]) if key is not None else None

    def use_passkey(self, passkey_id: str, signed: bool, sign_count: int, user_verified: bool,
                    policy: LockoutPolicy, now: datetime, actor: str,
                    address: str | None = None) -> None:
        """Login step 2 with a key; `signed`: the application checked its signature. A
        counter that did not move forward means a copy of the key signed (WebAuthn 6.1.1):
        refused, and reported to the user."""
        if self.locked_until is not None and now < self.locked_until:
            self._record(self.AttemptThrottled, now, actor, factor="passkey",
                         until=self.locked_until, address=address)
            raise LockedOut(self.locked_until)
        key = self.passkeys.get(passkey_id)
        if key is None or not signed:
            raise InvalidCode(self._reject("passkey", policy, now, actor, address))
        stored = int(key["sign_count"])
        if (sign_count or stored) and sign_count <= stored:
            self._record(self.PasskeyCloneSuspected, now, actor, passkey_id=passkey_id,
                         sign_count=sign_count, expected_above=stored, address=address)
            self._reject("passkey", policy, now, actor, address)
            raise PasskeyCloned()
        self._record(self.PasskeyUsed, now, actor, passkey_id=passkey_id, sign_count=sign_count,
                     user_verified=user_verified, address=address)

    def _passkey(self, passkey_id: str) -> dict[str, Any]:
        key = self.passkeys.get(passkey_id)
        if key is None:
            raise PasskeyNotFound()
        return key

    def regenerate_codes(self, new_codes: list[str], now: datetime, actor: str) -> None:
        if not self.is_on:
            raise TwoFactorNotOn()
        self._record(self.CodesRegenerated, now, actor, recovery_codes=new_codes)

    def disable(self, now: datetime, actor: str) -> None:
        if self.required:
            raise TwoFactorRequired()
        if not self.is_on:
            raise TwoFactorNotOn()
        self._record(self.TwoFactorDisabled, now, actor)

    def set_requirement(self, required: bool, now: datetime, actor: str,
                        reason: str = "admin") -> bool:
        """`reason`: an admin's choice, or the organization's policy. An admin's Required
        takes over one the policy set (so it outlives the policy); the policy lifts only its
        own. Returns whether anything changed."""
        if required == self.required and (not required or reason == self.required_by):
            return False
        if reason == REQUIRED_BY_POLICY and self.required and self.required_by != reason:
            return False  # an admin requires it: the policy neither takes it over nor lifts it
        self._record(self.RequirementSet, now, actor, required=required, reason=reason)
        return True

    def reset(self, now: datetime, actor: str) -> None:
        """F7/F10: status Off, secret and every recovery code dead, Required unchanged."""
        self._record(self.ResetByAdmin, now, actor)

    # ---- internals -----------------------------------------------------------------------------

    def _record(self, event_class: type[UserEvent], now: datetime, actor: str,
                **fields: Any) -> None:
        self.trigger_event(event_class, timestamp=not_before(now, self.modified_on),
                           user_id=self.user_id, org_id=self.org_id, actor=actor,
                           request_id=request_ids.current(), **fields)

    def _reject(self, factor: str, policy: LockoutPolicy, now: datetime, actor: str,
                address: str | None) -> datetime | None:
        """Records a wrong second factor; returns the wait it starts, if any."""
        failures = self.failures + 1
        locked_until = policy.locked_until(failures, now)
        self._record(self.SecondFactorRejected, now, actor, factor=factor, failures=failures,
                     locked_until=locked_until, address=address)
        return locked_until

    def _forget_factor(self) -> None:
        self.passkeys = {}
        self.secret = None
        self.pending_secret = None
        self.pending_expires_at = None
        self.last_step = -1
        self.codes = []
        self.used = []

    # ---- events --------------------------------------------------------------------------------
    # Each is stored under its TOPIC, which never changes, and has a class_version: a change of
    # its fields raises the version and adds an upcaster (services/mfa/domain/topics.py).

    class EnrollmentStarted(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.EnrollmentStarted"
        class_version = 1

        secret: str
        expires_at: datetime

        def apply(self, mfa: MFA) -> None:
            mfa.pending_secret = self.secret
            mfa.pending_expires_at = self.expires_at

    class TotpConfirmed(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.TotpConfirmed"
        class_version = 1

        step: int
        recovery_codes: list[str]

        def apply(self, mfa: MFA) -> None:
            mfa.secret = mfa.pending_secret
            mfa.pending_secret = None
            mfa.pending_expires_at = None
            mfa.last_step = self.step
            if self.recovery_codes:
                mfa.codes = list(self.recovery_codes)
                mfa.used = [False] * len(self.recovery_codes)

    class TotpAccepted(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.TotpAccepted"
        class_version = 1

        step: int
        address: str | None = None

        def apply(self, mfa: MFA) -> None:
            mfa.last_step = self.step
            mfa.failures = 0
            mfa.locked_until = None

    class RecoveryCodeConsumed(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.RecoveryCodeConsumed"
        class_version = 1

        index: int
        remaining: int
        address: str | None = None

        def apply(self, mfa: MFA) -> None:
            mfa.used[self.index] = True
            mfa.failures = 0
            mfa.locked_until = None

    class SecondFactorRejected(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.SecondFactorRejected"
        class_version = 1

        factor: str
        failures: int
        locked_until: datetime | None
        address: str | None = None

        def apply(self, mfa: MFA) -> None:
            mfa.failures = self.failures
            mfa.locked_until = self.locked_until

    class PasswordRejected(UserEvent):
        """Audit only: the password throttle lives outside the aggregate."""

        TOPIC = "services.mfa.domain.mfa:MFA.PasswordRejected"
        class_version = 1

        factor: str
        failures: int
        locked_until: datetime | None
        address: str | None = None

        def apply(self, mfa: MFA) -> None:
            pass

    class PasswordAccepted(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.PasswordAccepted"
        class_version = 1

        purpose: str
        completes_login: bool
        address: str | None = None

        def apply(self, mfa: MFA) -> None:
            if self.completes_login:
                mfa.failures = 0
                mfa.locked_until = None

    class AttemptThrottled(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.AttemptThrottled"
        class_version = 1

        factor: str
        until: datetime
        address: str | None = None

        def apply(self, mfa: MFA) -> None:
            pass

    class CodesRegenerated(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.CodesRegenerated"
        class_version = 1

        recovery_codes: list[str]

        def apply(self, mfa: MFA) -> None:
            mfa.codes = list(self.recovery_codes)
            mfa.used = [False] * len(self.recovery_codes)

    class RequirementSet(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.RequirementSet"
        class_version = 2  # 2: reason

        required: bool
        reason: str  # "admin" or "policy"

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason"] = REQUIRED_BY_ADMIN

        def apply(self, mfa: MFA) -> None:
            mfa.required = self.required
            mfa.required_by = self.reason if self.required else None

    class PasskeyRegistered(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.PasskeyRegistered"
        class_version = 1

        passkey_id: str
        name: str
        public_key: str  # COSE, base64url: public, yet never published
        sign_count: int
        user_verified: bool
        recovery_codes: list[str]  # the first factor's set; empty when codes existed

        def apply(self, mfa: MFA) -> None:
            mfa.passkeys[self.passkey_id] = {
                "name": self.name, "public_key": self.public_key,
                "sign_count": self.sign_count, "user_verified": self.user_verified,
                "added_at": self.timestamp, "last_used_at": None}
            if self.recovery_codes:
                mfa.codes = list(self.recovery_codes)
                mfa.used = [False] * len(self.recovery_codes)

    class PasskeyRenamed(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.PasskeyRenamed"
        class_version = 1

        passkey_id: str
        name: str

        def apply(self, mfa: MFA) -> None:
            mfa.passkeys[self.passkey_id]["name"] = self.name

    class PasskeyUsed(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.PasskeyUsed"
        class_version = 1

        passkey_id: str
        sign_count: int
        user_verified: bool
        address: str | None = None

        def apply(self, mfa: MFA) -> None:
            key = mfa.passkeys[self.passkey_id]
            key["sign_count"] = self.sign_count
            key["last_used_at"] = self.timestamp
            mfa.failures = 0
            mfa.locked_until = None

    class PasskeyCloneSuspected(UserEvent):
        """A signature whose counter did not move forward: refused (a SecondFactorRejected
        follows) and reported."""

        TOPIC = "services.mfa.domain.mfa:MFA.PasskeyCloneSuspected"
        class_version = 1

        passkey_id: str
        sign_count: int
        expected_above: int
        address: str | None = None

        def apply(self, mfa: MFA) -> None:
            pass

    class PasskeyRemoved(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.PasskeyRemoved"
        class_version = 1

        passkey_id: str
        still_on: bool  # another factor remains

        def apply(self, mfa: MFA) -> None:
            del mfa.passkeys[self.passkey_id]
            if not mfa.is_on:
                mfa.codes = []
                mfa.used = []

    class ResetByAdmin(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.ResetByAdmin"
        class_version = 1

        def apply(self, mfa: MFA) -> None:
            mfa._forget_factor()

    class TwoFactorDisabled(UserEvent):
        TOPIC = "services.mfa.domain.mfa:MFA.TwoFactorDisabled"
        class_version = 1

        def apply(self, mfa: MFA) -> None:
            mfa._forget_factor()


stored_as(MFA, "services.mfa.domain.mfa:MFA")
