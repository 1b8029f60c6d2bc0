"""What the users of a golden history do: every kind of event of every aggregate, through the
use cases the API calls, on a frozen clock.

Two organizations; in the first, an admin and five users:
- alice configures 2FA, logs in with TOTP and with a recovery code, mistypes passwords and
  codes (from several addresses) until both the password throttle and the second-factor lockout
  hold her, gets a throttled attempt, re-authenticates, regenerates her codes and disables 2FA;
- bob is required to use 2FA, configures it in a forced setup, is reset by the admin, renamed and
  made an admin, and no longer required;
- carol logs in with TOTP for long enough that her MFA aggregate passes 100 events (a snapshot),
  then platform support resets her 2FA and the admin requires it (the banner shows again);
- dave starts configuring 2FA and never confirms;
- erin is created required and does nothing (the banner shows from the start);
- (since v2) fay adds a security key as her first factor (recovery codes come with it), logs in
  with it, renames it, a copy of it is refused, adds a second key, fails a signature, and
  removes both keys (2FA Off);
- (since v3) the admin requires 2FA for all users (each user not yet required is by the
  policy), gus is created under it, then the admin lifts it and requires it for new users only
  (the policy's requirements go, the admin's own stay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from services.mfa.adapters import passkeys
from services.mfa.adapters.passkeys import RelyingParty
from services.mfa.application import SNAPSHOT_INTERVAL, MfaApplication, actor
from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.errors import InvalidCode, InvalidCredentials, LockedOut, PasskeyCloned
from services.mfa.domain.mfa import REQUIRED_BY_POLICY
from tests.conftest import FAST_PASSWORDS
from tests.passkey_device import SoftKey
from tests.unit.support import code_at, wrong_recovery, wrong_totp

WINDOW = timedelta(minutes=10)
HOME = "203.0.113.10"  # documentation addresses (RFC 5737, RFC 3849)
CAFE = "198.51.100.7"
ATTACKER = "2001:db8::1"
Mark = Callable[[str], None]


@dataclass
class Story:
    """Who was created, and the instants time travel is asked about."""

    clock: FrozenClock
    users: dict[str, UUID] = field(default_factory=dict)
    organizations: dict[str, UUID] = field(default_factory=dict)
    instants: dict[str, datetime] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        """Remembers this instant (a second after the last event, before the next one)."""
        self.instants[name] = self.clock.now()
        self.clock.advance(1)


def write(app: MfaApplication, clock: FrozenClock) -> Story:
    story = Story(clock)
    mark = story.mark
    mark("before_anything")
    org_id, admin_id = app.create_organization(
        "Golden Org", "admin@golden.example", "Ada Admin", FAST_PASSWORDS.hash("admin-pw-1"),
        actor("support", "golden")).value
    story.organizations["golden"] = org_id
    story.users["admin"] = admin_id
    by_admin = actor("admin", admin_id)
    clock.advance(60)
    for name, required in (("alice", False), ("bob", True), ("carol", False),
                           ("dave", False), ("erin", True)):
        story.users[name] = app.create_user(
            org_id, f"{name}@golden.example", name.title(), "client",
            FAST_PASSWORDS.hash(f"{name}-pw-1"), required, by_admin).value
        clock.advance(5)
    other_org, other_admin = app.create_organization(
        "Other Org", "admin@other.example", "Otto Other", FAST_PASSWORDS.hash("other-pw-1"),
        actor("support", "golden")).value
    story.organizations["other"] = other_org
    story.users["other_admin"] = other_admin
    mark("users_created")

    _alice(app, clock, story.users["alice"], mark)
    _bob(app, clock, org_id, story.users["bob"], by_admin, mark)
    _carol(app, clock, org_id, story.users["carol"], by_admin, mark)
    app.start_enrollment(story.users["dave"], clock.now() + WINDOW)
    clock.advance(60)
    story.users["fay"] = app.create_user(
        org_id, "fay@golden.example", "Fay", "client", FAST_PASSWORDS.hash("fay-pw-1"), False,
        by_admin).value
    _fay(app, clock, story.users["fay"], mark)
    clock.advance(60)
    _policy(app, clock, story, org_id, by_admin)
    clock.advance(60)
    mark("end")
    return story


def _policy(app: MfaApplication, clock: FrozenClock, story: Story, org_id: UUID,
            by_admin: str) -> None:
    """What the policy enforcer (services/mfa/policy.py) does for the admin's PolicySet."""
    members = [user_id for name, user_id in story.users.items()
               if name not in ("other_admin",)]
    app.set_policy(org_id, True, False, by_admin)
    app.set_requirements(org_id, members, True, by_admin, REQUIRED_BY_POLICY)
    story.mark("policy_all")
    clock.advance(60)
    story.users["gus"] = app.create_user(
        org_id, "gus@golden.example", "Gus", "client", FAST_PASSWORDS.hash("gus-pw-1"), False,
        by_admin).value
    story.mark("gus_created_under_the_policy")
    clock.advance(60)
    app.set_policy(org_id, False, True, by_admin)
    members.append(story.users["gus"])
    app.set_requirements(org_id, members, False, by_admin, REQUIRED_BY_POLICY)
    story.mark("policy_new_users_only")


def _alice(app: MfaApplication, clock: FrozenClock, user_id: UUID, mark: Mark) -> None:
    app.record_password(user_id, True, "login", address=HOME)  # 2FA off: the login completes
    clock.advance(30)
    secret = app.start_enrollment(user_id, clock.now() + WINDOW).value.secret
    clock.advance(20)
    codes = app.confirm_enrollment(user_id, code_at(secret, clock)).value
    mark("alice_on")

    clock.advance(31)
    app.record_password(user_id, True, "login", address=HOME)
    app.verify_second_factor(user_id, code_at(secret, clock), address=HOME)
    clock.advance(3600)
    app.record_password(user_id, True, "login", address=CAFE)
    app.verify_second_factor(user_id, codes[3], address=CAFE)  # a recovery code
    mark("alice_used_a_recovery_code")

    # Wrong passwords from a stranger's address: counted by the throttle outside the aggregate,
    # recorded for the audit with where that throttle stood.
    for failures in range(1, 7):
        clock.advance(2)
        locked_until = clock.now() + timedelta(seconds=30) if failures >= 5 else None
        _refused(InvalidCredentials, app.record_password, user_id, False, "login",
                 address=ATTACKER, failures=failures, locked_until=locked_until)
    clock.advance(60)
    app.record_password(user_id, True, "login", address=HOME)
    _refused(InvalidCode, app.verify_second_factor, user_id, wrong_totp(secret, clock),
             address=HOME)
    _refused(InvalidCode, app.verify_second_factor, user_id, wrong_recovery(codes),
             address=HOME)
    for skip in range(1, 4):
        clock.advance(1)
        _refused(InvalidCode, app.verify_second_factor, user_id, wrong_recovery(codes, skip),
                 address=HOME)
    mark("alice_locked")  # five wrong second factors: 30 s to wait
    _refused(LockedOut, app.verify_second_factor, user_id, code_at(secret, clock), address=HOME)
    clock.advance(40)
    app.verify_second_factor(user_id, code_at(secret, clock), address=HOME)
    mark("alice_back_in")

    clock.advance(120)
    app.record_password(user_id, True, "reauthenticate", address=HOME)
    app.regenerate_codes(user_id)
    clock.advance(120)
    app.disable(user_id)
    mark("alice_off")


def _bob(app: MfaApplication, clock: FrozenClock, org_id: UUID, user_id: UUID,
         by_admin: str, mark: Mark) -> None:
    app.record_password(user_id, True, "login", address=HOME)  # required, off: forced setup
    secret = app.start_enrollment(user_id, clock.now() + WINDOW, forced=True).value.secret
    clock.advance(15)
    app.confirm_enrollment(user_id, code_at(secret, clock), forced=True)
    mark("bob_on")
    clock.advance(600)
    app.reset_two_factor(org_id, user_id, by_admin)
    mark("bob_reset")
    clock.advance(60)
    app.update_user(org_id, user_id, "Robert", "admin", None, by_admin)
    clock.advance(60)
    app.update_user(org_id, user_id, None, None, False, by_admin)
    mark("bob_not_required")


def _carol(app: MfaApplication, clock: FrozenClock, org_id: UUID, user_id: UUID,
           by_admin: str, mark: Mark) -> None:
    secret = app.start_enrollment(user_id, clock.now() + WINDOW).value.secret
    clock.advance(10)
    app.confirm_enrollment(user_id, code_at(secret, clock))
    day, past_snapshot = 0, False
    while app.mfa(user_id).version < SNAPSHOT_INTERVAL + 25:
        clock.advance(86_400 if day % 7 else 3 * 86_400)
        day += 1
        app.record_password(user_id, True, "login", address=HOME if day % 3 else CAFE)
        if day % 10 == 0:
            _refused(InvalidCode, app.verify_second_factor, user_id, wrong_totp(secret, clock),
                     address=HOME)
        app.verify_second_factor(user_id, code_at(secret, clock), address=HOME)
        if not past_snapshot and app.mfa(user_id).version > SNAPSHOT_INTERVAL + 5:
            past_snapshot = True
            mark("carol_past_snapshot")  # read from the snapshot and the events after it
    clock.advance(3600)
    app.support_reset("carol@golden.example", "sam")
    mark("carol_reset_by_support")
    clock.advance(60)
    app.update_user(org_id, user_id, None, None, True, by_admin)
    mark("carol_required")


GOLDEN_RP = RelyingParty("golden.example", "MFA Service", "https://golden.example")


def _fay(app: MfaApplication, clock: FrozenClock, user_id: UUID, mark: Mark) -> None:
    """Security keys, with real signatures from software authenticators."""
    work, phone = SoftKey(), SoftKey()

    def add(key: SoftKey, name: str) -> None:
        existing = [k["id"] for k in app.passkeys(user_id)]
        options, challenge = passkeys.registration_options(
            GOLDEN_RP, user_id, "fay@golden.example", "Fay", existing)
        new = passkeys.verify_registration(GOLDEN_RP, key.create(options, GOLDEN_RP.origin),
                                           challenge)
        app.register_passkey(user_id, new, name)

    def sign_in(key: SoftKey, *, tamper: bool = False) -> None:
        app.record_password(user_id, True, "login", address=HOME)
        options, challenge = passkeys.authentication_options(
            GOLDEN_RP, [k["id"] for k in app.passkeys(user_id)])
        answer = key.get(options, GOLDEN_RP.origin)
        if tamper:
            answer["response"]["signature"] = answer["response"]["signature"][::-1]

        def check(public_key: str) -> passkeys.Signature | None:
            return passkeys.verify_signature(GOLDEN_RP, answer, challenge, public_key)

        app.verify_passkey(user_id, key.credential_id, check, HOME)

    clock.advance(30)
    add(work, "YubiKey")
    mark("fay_key_added")
    for _ in range(2):
        clock.advance(3600)
        sign_in(work)
    copy = work.clone()
    clock.advance(60)
    sign_in(work)
    clock.advance(60)
    _refused(PasskeyCloned, sign_in, copy)  # the copy signs with a counter already seen
    app.rename_passkey(user_id, work.credential_id, "Work key")
    clock.advance(60)
    add(phone, "Phone")
    clock.advance(60)
    _refused(InvalidCode, sign_in, phone, tamper=True)
    mark("fay_two_keys")
    clock.advance(60)
    app.remove_passkey(user_id, phone.credential_id)
    clock.advance(60)
    app.remove_passkey(user_id, work.credential_id)
    mark("fay_off")


def _refused(error: type[Exception], command: Callable[..., object], *args: object,
             **kwargs: object) -> None:
    try:
        command(*args, **kwargs)
    except error:
        return
    raise AssertionError(f"{command.__name__} was not refused with {error.__name__}")
