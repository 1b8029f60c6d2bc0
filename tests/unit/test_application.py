"""The use cases on the in-memory (POPO) event store: accounts, login steps, enrollment, codes,
lockout, and the fact that refusals are stored and the store replays to the same state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from argon2 import PasswordHasher

from services.mfa.adapters.passwords import Passwords
from services.mfa.application import (
    MAX_ATTEMPTS,
    ConcurrentUpdate,
    Enrollment,
    LoginStep,
    MfaApplication,
    Written,
)
from services.mfa.domain import totp
from services.mfa.domain.account import Account, EmailIndex, Organization, normalize_email
from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.errors import (
    AccountNotFound,
    EmailAlreadyUsed,
    InvalidCode,
    InvalidCredentials,
    LockedOut,
    NoEnrollmentInProgress,
    SetupWindowExpired,
    TwoFactorNotOn,
    TwoFactorRequired,
)
from services.mfa.domain.mfa import MFA, mfa_id
from tests.unit.support import code_at, wrong_recovery, wrong_totp

PASSWORD = "correct horse battery"
HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class CountingPasswords(Passwords):
    """The real argon2 passwords, counting verifications (a locked account must cost none)."""

    def __init__(self) -> None:
        super().__init__(HASHER)
        self.verifications = 0

    def verify(self, password_hash: str | None, password: str) -> bool:
        self.verifications += 1
        return super().verify(password_hash, password)


@pytest.fixture
def passwords() -> CountingPasswords:
    return CountingPasswords()


PASSWORD_HASH = HASHER.hash(PASSWORD)


@pytest.fixture
def app(clock: FrozenClock) -> MfaApplication:
    return MfaApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock,
                          issuer="Acme MFA")


@pytest.fixture
def org(app: MfaApplication) -> tuple[UUID, UUID]:
    org_id, admin_id = app.create_organization("Acme", "Admin@Example.com", "Ada",
                                               PASSWORD_HASH, "support:test").value
    return org_id, admin_id


def add_user(app: MfaApplication, org_id: UUID, email: str = "bob@example.com", *,
             required: bool = False) -> UUID:
    user_id = app.create_user(org_id, email, "Bob", "client", PASSWORD_HASH, required,
                              "admin:test").value
    assert isinstance(user_id, UUID)
    return user_id


def login(app: MfaApplication, email: str, password: str,
          passwords: Passwords | None = None) -> Written:
    """The password step as services/mfa/logins.py runs it, without its throttle."""
    account = app.account_for_login(normalize_email(email))
    right = (passwords or Passwords(HASHER)).verify(
        account.password_hash if account is not None else None, password)
    if account is None:
        raise InvalidCredentials()
    return app.record_password(account.id, right, "login", address="192.0.2.7")


def turn_on(app: MfaApplication, clock: FrozenClock, user_id: UUID) -> tuple[str, list[str]]:
    """Configure 2FA, then move the clock past the confirming step."""
    enrollment = app.start_enrollment(user_id, app.clock.now() + timedelta(seconds=600)).value
    codes = app.confirm_enrollment(user_id, code_at(enrollment.secret, clock)).value
    clock.advance(300)
    return enrollment.secret, codes


def stored(app: MfaApplication, user_id: UUID) -> MFA:
    """The MFA aggregate as the store has it (rebuilt from the saved events)."""
    mfa = app.repository.get(mfa_id(user_id))
    assert isinstance(mfa, MFA)
    return mfa


def stored_event_names(app: MfaApplication, user_id: UUID) -> list[str]:
    return [type(event).__name__ for event in app.events.get(mfa_id(user_id))]


def last_position(app: MfaApplication) -> int:
    return app.recorder.max_notification_id() or 0


# ---- organizations and accounts -------------------------------------------------------------


def test_create_organization_with_its_admin(app: MfaApplication, org: tuple[UUID, UUID],
                                            clock: FrozenClock) -> None:
    org_id, admin_id = org
    assert app.organization(org_id).name == "Acme"
    admin = app.account(admin_id)
    assert (admin.org_id, admin.email, admin.name, admin.role) == (
        org_id, "admin@example.com", "Ada", "admin")
    assert admin.password_hash.startswith("$argon2id$") and PASSWORD not in admin.password_hash
    assert app.user_id_for("ADMIN@example.com ") == admin_id
    mfa = app.mfa(admin_id)
    assert (mfa.user_id, mfa.org_id, mfa.is_on, mfa.required) == (admin_id, org_id, False, False)
    assert mfa.created_on == clock.now()


def test_create_user(app: MfaApplication, org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    before = last_position(app)
    written = app.create_user(org_id, "Carol@Example.com", "Carol", "client", PASSWORD, True,
                              "admin:test")
    assert isinstance(written, Written) and written.position > before
    account = app.account(written.value)
    assert (account.email, account.role, account.org_id) == ("carol@example.com", "client",
                                                             org_id)
    assert app.mfa(written.value).required is True
    assert app.mfa(written.value).banner is True


def test_create_user_in_an_unknown_organization(app: MfaApplication) -> None:
    with pytest.raises(AccountNotFound):
        app.create_user(uuid4(), "x@example.com", "X", "client", PASSWORD, False, "admin:t")


@pytest.mark.parametrize("again", ["bob@example.com", "BOB@Example.COM", "  Bob@example.com "])
def test_duplicate_email_is_refused_case_insensitively(app: MfaApplication,
                                                       org: tuple[UUID, UUID],
                                                       again: str) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    before = last_position(app)
    with pytest.raises(EmailAlreadyUsed):
        add_user(app, org_id, again)
    assert last_position(app) == before  # nothing of the second user was written
    assert app.user_id_for("bob@example.com") == bob


def test_duplicate_admin_email_creates_no_organization(app: MfaApplication,
                                                       org: tuple[UUID, UUID]) -> None:
    before = last_position(app)
    with pytest.raises(EmailAlreadyUsed):
        app.create_organization("Other", "admin@EXAMPLE.com", "Eve", PASSWORD, "support:t")
    assert last_position(app) == before


def test_aggregate_kinds_are_not_confused(app: MfaApplication, org: tuple[UUID, UUID]) -> None:
    org_id, admin_id = org
    with pytest.raises(AccountNotFound):
        app.account(org_id)
    with pytest.raises(AccountNotFound):
        app.organization(admin_id)
    with pytest.raises(AccountNotFound):
        app.account(uuid4())
    with pytest.raises(AccountNotFound):
        app.user_id_for("nobody@example.com")
    assert isinstance(app.repository.get(org_id), Organization)
    assert isinstance(app.repository.get(admin_id), Account)
    assert isinstance(app.repository.get(EmailIndex.id_for("admin@example.com")), EmailIndex)


def test_email_normalization_and_index() -> None:
    assert normalize_email("  Bob@Example.COM ") == "bob@example.com"
    assert EmailIndex.id_for("Bob@Example.COM") == EmailIndex.id_for(" bob@example.com")
    assert EmailIndex.id_for("bob@example.com") != EmailIndex.id_for("bob2@example.com")


def test_profile_changes_are_recorded_only_when_they_change(app: MfaApplication,
                                                           org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    before = last_position(app)
    app.update_user(org_id, bob, "Bob", "client", False, "admin:t")
    assert last_position(app) == before
    app.update_user(org_id, bob, "Robert", "admin", None, "admin:t")
    account = app.account(bob)
    assert (account.name, account.role) == ("Robert", "admin")
    changed = list(app.events.get(bob))[-1]
    assert type(changed).__name__ == "ProfileChanged"
    assert (changed.actor, changed.org_id, changed.user_id) == ("admin:t", org_id, bob)


# ---- login ---------------------------------------------------------------------------------


def test_login_done_when_2fa_is_off(app: MfaApplication, org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    written = login(app, "bob@example.com", PASSWORD)
    assert written.value == LoginStep(bob, "done")
    assert written.position == last_position(app)
    assert stored_event_names(app, bob)[-1] == "PasswordAccepted"


def test_login_email_is_case_insensitive(app: MfaApplication, org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    assert login(app, " BOB@Example.com", PASSWORD).value == LoginStep(bob, "done")


def test_login_setup_2fa_when_required_and_off(app: MfaApplication,
                                               org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    add_user(app, org_id, required=True)
    assert login(app, "bob@example.com", PASSWORD).value.next == "setup_2fa"


def test_login_setup_2fa_after_the_admin_requires_it(app: MfaApplication,
                                                     org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    app.update_user(org_id, bob, None, None, True, "admin:test")
    assert app.mfa(bob).required
    assert login(app, "bob@example.com", PASSWORD).value.next == "setup_2fa"


@pytest.mark.parametrize("required", [False, True])
def test_login_second_factor_when_2fa_is_on(app: MfaApplication, org: tuple[UUID, UUID],
                                            clock: FrozenClock, required: bool) -> None:
    org_id, _ = org
    bob = add_user(app, org_id, required=required)
    turn_on(app, clock, bob)
    assert login(app, "bob@example.com", PASSWORD).value == LoginStep(bob, "second_factor")


def test_login_wrong_password(app: MfaApplication, org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    with pytest.raises(InvalidCredentials):
        login(app, "bob@example.com", "wrong password")
    assert stored(app, bob).failures == 0  # throttled by address and email, not here
    assert stored_event_names(app, bob)[-1] == "PasswordRejected"
    last = list(app.events.get(mfa_id(bob)))[-1]
    assert last.address == "192.0.2.7"  # type: ignore[attr-defined]


def test_login_unknown_email(app: MfaApplication, org: tuple[UUID, UUID],
                             passwords: CountingPasswords) -> None:
    before = last_position(app)
    with pytest.raises(InvalidCredentials):
        login(app, "nobody@example.com", PASSWORD, passwords)
    assert last_position(app) == before
    assert passwords.verifications == 1  # the decoy hash: same cost as a wrong password


# ---- second factor -------------------------------------------------------------------------


def test_verify_totp(app: MfaApplication, org: tuple[UUID, UUID], clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    secret, _ = turn_on(app, clock, bob)
    login(app, "bob@example.com", PASSWORD)
    code = code_at(secret, clock)
    assert app.verify_second_factor(bob, code).value == LoginStep(bob, "done")
    assert stored(app, bob).last_step == totp.step_at(clock.now())
    with pytest.raises(InvalidCode):  # the replay is refused, also after a reload from the store
        app.verify_second_factor(bob, code)
    assert stored(app, bob).failures == 1


def test_a_wrong_code_is_stored_though_the_command_raises(app: MfaApplication,
                                                          org: tuple[UUID, UUID],
                                                          clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    _, codes = turn_on(app, clock, bob)
    before = last_position(app)
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, wrong_recovery(codes))
    assert last_position(app) == before + 1
    mfa = stored(app, bob)
    assert mfa.failures == 1
    assert stored_event_names(app, bob)[-1] == "SecondFactorRejected"
    rejected = list(app.events.get(mfa_id(bob)))[-1]
    assert (rejected.factor, rejected.actor) == ("recovery_code", f"user:{bob}")
    assert rejected.timestamp == clock.now()


def test_recovery_codes_then_regenerate(app: MfaApplication, org: tuple[UUID, UUID],
                                        clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    _, codes = turn_on(app, clock, bob)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert app.recovery_codes(bob) == [(code, False) for code in codes]
    for code in codes[:9]:
        assert app.verify_second_factor(bob, code).value.next == "done"
    assert app.verify_second_factor(bob, codes[9]).value.next == "regenerate_codes"
    assert stored(app, bob).recovery_codes_left == 0
    assert app.recovery_codes(bob) == [(code, True) for code in codes]
    new = app.regenerate_codes(bob).value
    assert len(new) == 10 and not set(new) & set(codes)
    assert app.recovery_codes(bob) == [(code, False) for code in new]
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, codes[0])
    assert app.verify_second_factor(bob, new[0]).value.next == "done"
    assert stored(app, bob).recovery_codes_left == 9


def test_regenerate_marks_every_old_code_dead_even_unused(app: MfaApplication,
                                                          org: tuple[UUID, UUID],
                                                          clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    _, codes = turn_on(app, clock, bob)
    app.regenerate_codes(bob)
    for code in codes[:4]:
        with pytest.raises(InvalidCode):
            app.verify_second_factor(bob, code)
    assert stored(app, bob).failures == 4


def test_codes_while_off(app: MfaApplication, org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    with pytest.raises(TwoFactorNotOn):
        app.recovery_codes(bob)
    with pytest.raises(TwoFactorNotOn):
        app.regenerate_codes(bob)


# ---- enrollment ----------------------------------------------------------------------------


def test_start_enrollment_returns_the_setup(app: MfaApplication, org: tuple[UUID, UUID],
                                            clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id, "Bob.Smith@Example.com")
    ends = app.clock.now() + timedelta(seconds=600)
    assert ends == clock.now() + timedelta(seconds=600)
    enrollment = app.start_enrollment(bob, ends).value
    assert isinstance(enrollment, Enrollment)
    assert enrollment.expires_at == ends
    assert enrollment.setup_key.replace(" ", "") == enrollment.secret
    assert enrollment.otpauth_uri == totp.provisioning_uri(enrollment.secret,
                                                           "bob.smith@example.com", "Acme MFA")
    assert stored(app, bob).pending_secret == enrollment.secret
    assert not stored(app, bob).is_on


def test_confirm_enrollment_errors(app: MfaApplication, org: tuple[UUID, UUID],
                                   clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id, required=True)
    with pytest.raises(NoEnrollmentInProgress):
        app.confirm_enrollment(bob, "123456")
    secret = app.start_enrollment(bob, app.clock.now() + timedelta(seconds=600)).value.secret
    with pytest.raises(InvalidCode):
        app.confirm_enrollment(bob, code_at(secret, clock, 2))
    clock.advance(601)
    with pytest.raises(SetupWindowExpired):
        app.confirm_enrollment(bob, code_at(secret, clock))
    assert not stored(app, bob).is_on and stored(app, bob).banner


def test_confirm_enrollment_turns_on_and_ends_the_banner(app: MfaApplication,
                                                         org: tuple[UUID, UUID],
                                                         clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id, required=True)
    _, codes = turn_on(app, clock, bob)
    mfa = stored(app, bob)
    assert mfa.is_on and not mfa.banner and mfa.codes == codes


def test_re_enrollment_keeps_the_old_app_until_confirmed(app: MfaApplication,
                                                         org: tuple[UUID, UUID],
                                                         clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    old, _ = turn_on(app, clock, bob)
    new = app.start_enrollment(bob, app.clock.now() + timedelta(seconds=600)).value.secret
    assert app.verify_second_factor(bob, code_at(old, clock)).value.next == "done"
    clock.advance(30)
    app.confirm_enrollment(bob, code_at(new, clock))
    clock.advance(30)
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, code_at(old, clock))
    assert app.verify_second_factor(bob, code_at(new, clock, 1)).value.next == "done"


# ---- reset and disable ---------------------------------------------------------------------


def test_admin_reset(app: MfaApplication, org: tuple[UUID, UUID], clock: FrozenClock) -> None:
    org_id, admin_id = org
    bob = add_user(app, org_id, required=True)
    secret, codes = turn_on(app, clock, bob)
    app.reset_two_factor(org_id, bob, f"admin:{admin_id}")
    mfa = stored(app, bob)
    assert not mfa.is_on and mfa.required and mfa.banner
    assert list(app.events.get(mfa_id(bob)))[-1].actor == f"admin:{admin_id}"
    for code in (code_at(secret, clock), codes[0]):
        with pytest.raises(InvalidCode):
            app.verify_second_factor(bob, code)
    assert login(app, "bob@example.com", PASSWORD).value.next == "setup_2fa"


def test_reset_from_another_organization_is_refused(app: MfaApplication,
                                                    org: tuple[UUID, UUID],
                                                    clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    turn_on(app, clock, bob)
    other_org, _ = app.create_organization("Other", "boss@other.example", "Boss", PASSWORD,
                                           "support:t").value
    before = last_position(app)
    with pytest.raises(AccountNotFound):
        app.reset_two_factor(other_org, bob, "admin:intruder")
    with pytest.raises(AccountNotFound):
        app.update_user(other_org, bob, "Mallory", None, True, "admin:intruder")
    assert last_position(app) == before
    assert stored(app, bob).is_on


def test_support_reset_by_email(app: MfaApplication, org: tuple[UUID, UUID],
                                clock: FrozenClock) -> None:
    _, admin_id = org
    turn_on(app, clock, admin_id)
    app.support_reset("ADMIN@example.com", "jane")
    assert not stored(app, admin_id).is_on
    assert list(app.events.get(mfa_id(admin_id)))[-1].actor == "support:jane"
    with pytest.raises(AccountNotFound):
        app.support_reset("nobody@example.com", "jane")


def test_disable(app: MfaApplication, org: tuple[UUID, UUID], clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    secret, _ = turn_on(app, clock, bob)
    app.disable(bob)
    assert not stored(app, bob).is_on
    assert login(app, "bob@example.com", PASSWORD).value.next == "done"
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, code_at(secret, clock))


def test_disable_when_required(app: MfaApplication, org: tuple[UUID, UUID],
                               clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id, required=True)
    turn_on(app, clock, bob)
    before = last_position(app)
    with pytest.raises(TwoFactorRequired):
        app.disable(bob)
    assert last_position(app) == before
    assert stored(app, bob).is_on


# ---- lockout through the use cases ---------------------------------------------------------


def test_a_locked_second_factor_does_not_show_at_the_password_step(
        app: MfaApplication, org: tuple[UUID, UUID], clock: FrozenClock) -> None:
    """The password step answers the same whether or not the account's second factor is
    locked: a stranger cannot learn from it that the account exists (SPEC section 6)."""
    org_id, _ = org
    bob = add_user(app, org_id)
    secret, codes = turn_on(app, clock, bob)
    for attempt in range(5):
        with pytest.raises(InvalidCode):
            app.verify_second_factor(bob, wrong_totp(secret, clock) if attempt % 2
                                     else wrong_recovery(codes, attempt))
    mfa = stored(app, bob)
    assert mfa.failures == 5
    assert mfa.locked_until == clock.now() + timedelta(seconds=30)
    assert login(app, "bob@example.com", PASSWORD).value.next == "second_factor"
    with pytest.raises(LockedOut) as locked:
        app.verify_second_factor(bob, code_at(secret, clock))
    assert locked.value.until == mfa.locked_until
    assert stored_event_names(app, bob)[-1] == "AttemptThrottled"
    assert stored(app, bob).failures == 5
    clock.advance(30)
    assert app.verify_second_factor(bob, code_at(secret, clock)).value.next == "done"
    assert stored(app, bob).failures == 0


def test_a_right_password_does_not_reset_the_count_when_2fa_is_on(app: MfaApplication,
                                                                  org: tuple[UUID, UUID],
                                                                  clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    secret, codes = turn_on(app, clock, bob)
    for attempt in range(4):
        with pytest.raises(InvalidCode):
            app.verify_second_factor(bob, wrong_totp(secret, clock) if attempt % 2
                                     else wrong_recovery(codes, attempt))
    assert stored(app, bob).failures == 4
    assert login(app, "bob@example.com", PASSWORD).value.next == "second_factor"
    assert stored(app, bob).failures == 4
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, wrong_totp(secret, clock))
    assert stored(app, bob).is_locked(clock.now())


def test_reauthenticate_wrong_password_counts(app: MfaApplication, org: tuple[UUID, UUID]) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    with pytest.raises(InvalidCredentials):
        app.record_password(bob, False, "reauthenticate")
    app.record_password(bob, True, "reauthenticate")
    assert stored(app, bob).failures == 0
    assert stored_event_names(app, bob)[-2:] == ["PasswordRejected", "PasswordAccepted"]


# ---- the store replays to the same state ----------------------------------------------------


def _state(mfa: MFA) -> dict[str, Any]:
    names = ("id", "version", "user_id", "org_id", "required", "secret", "pending_secret",
             "pending_expires_at", "last_step", "codes", "used", "failures", "locked_until",
             "created_on", "modified_on")
    return {name: getattr(mfa, name) for name in names}


def test_a_saved_aggregate_replays_to_the_same_state(app: MfaApplication,
                                                     clock: FrozenClock) -> None:
    mfa = MFA._create(MFA.MfaCreated, id=uuid4(), user_id=uuid4(), org_id=uuid4(),
                      actor="system", required=True, required_by="admin", timestamp=clock.now())
    secret = totp.new_secret()
    mfa.start_enrollment(secret, clock.now() + timedelta(minutes=10), clock.now(), "u")
    mfa.confirm_enrollment(code_at(secret, clock), [f"{n:08d}" for n in range(10)],
                           clock.now(), "u")
    clock.advance(90)
    policy = app.lockout
    mfa.verify_second_factor("00000003", policy, clock.now(), "u")
    for _ in range(5):
        with pytest.raises(InvalidCode):
            mfa.verify_second_factor("12345678", policy, clock.now(), "u")
    with pytest.raises(LockedOut):
        mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u")
    mfa.start_enrollment(totp.new_secret(), clock.now() + timedelta(minutes=10), clock.now(),
                         "u")
    assert mfa.locked_until is not None and mfa.pending_expires_at is not None
    app.save(mfa)
    copy = app.repository.get(mfa.id)
    assert copy is not mfa
    assert _state(copy) == _state(mfa)
    assert copy.locked_until.tzinfo is not None


def test_the_store_replays_the_use_cases_to_the_same_state(app: MfaApplication,
                                                           org: tuple[UUID, UUID],
                                                           clock: FrozenClock) -> None:
    org_id, _ = org
    bob = add_user(app, org_id, required=True)
    secret, codes = turn_on(app, clock, bob)
    app.verify_second_factor(bob, codes[4])
    app.verify_second_factor(bob, code_at(secret, clock))
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, wrong_totp(secret, clock))
    # replay by hand from the stored events, and compare with the repository's view
    rebuilt: Any = None
    for event in app.events.get(mfa_id(bob)):
        rebuilt = event.mutate(rebuilt)
    assert _state(rebuilt) == _state(stored(app, bob))
    assert rebuilt.used == [i == 4 for i in range(10)]
    assert rebuilt.failures == 1
    assert rebuilt.last_step == totp.step_at(clock.now())


def test_time_travel(app: MfaApplication, org: tuple[UUID, UUID], clock: FrozenClock) -> None:
    org_id, _ = org
    created = clock.now()
    bob = add_user(app, org_id)
    clock.advance(60)
    before_on = clock.now()
    clock.advance(1)
    turn_on(app, clock, bob)
    assert app.mfa_at(bob, created - timedelta(seconds=1)) is None
    then = app.mfa_at(bob, before_on)
    assert then is not None and not then.is_on
    now = app.mfa_at(bob, clock.now())
    assert now is not None and now.is_on and now.recovery_codes_left == 10


# ---- races: the save that loses is retried from a fresh read --------------------------------


def test_a_recovery_code_raced_by_a_stale_read_is_consumed_once(
    app: MfaApplication, org: tuple[UUID, UUID], clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    _, codes = turn_on(app, clock, bob)
    stale = stored(app, bob)  # read before the other request uses the code
    assert app.verify_second_factor(bob, codes[0]).value.next == "done"
    real_get = app.repository.get
    served: list[int] = []

    def get(aggregate_id: UUID, **kwargs: Any) -> Any:
        if aggregate_id == mfa_id(bob) and not served:
            served.append(1)
            return stale  # this request read before the other one saved
        return real_get(aggregate_id, **kwargs)

    monkeypatch.setattr(app.repository, "get", get)
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, codes[0])
    history = list(app.events.get(mfa_id(bob)))
    consumed = [e for e in history if type(e).__name__ == "RecoveryCodeConsumed"]
    assert [e.index for e in consumed] == [0]
    assert type(history[-1]).__name__ == "SecondFactorRejected"
    assert stored(app, bob).recovery_codes_left == 9


def test_a_refusal_raced_by_a_stale_read_is_not_lost(
    app: MfaApplication, org: tuple[UUID, UUID], clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    _, codes = turn_on(app, clock, bob)
    stale = stored(app, bob)
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, wrong_recovery(codes))
    real_get = app.repository.get
    served: list[int] = []

    def get(aggregate_id: UUID, **kwargs: Any) -> Any:
        if aggregate_id == mfa_id(bob) and not served:
            served.append(1)
            return stale
        return real_get(aggregate_id, **kwargs)

    monkeypatch.setattr(app.repository, "get", get)
    with pytest.raises(InvalidCode):
        app.verify_second_factor(bob, wrong_recovery(codes, 1))
    assert stored(app, bob).failures == 2  # counted on top of the other one, not over it


def test_a_command_that_always_loses_gives_up(app: MfaApplication, org: tuple[UUID, UUID],
                                              clock: FrozenClock,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    org_id, _ = org
    bob = add_user(app, org_id)
    _, codes = turn_on(app, clock, bob)
    stale_version = stored(app, bob).version
    app.verify_second_factor(bob, codes[0])
    real_get = app.repository.get
    reads: list[int] = []

    def get(aggregate_id: UUID, **kwargs: Any) -> Any:
        reads.append(1)
        return real_get(aggregate_id, version=stale_version)

    monkeypatch.setattr(app.repository, "get", get)
    with pytest.raises(ConcurrentUpdate):
        app.verify_second_factor(bob, codes[1])
    assert len(reads) == MAX_ATTEMPTS
    monkeypatch.undo()
    assert stored(app, bob).recovery_codes_left == 9
