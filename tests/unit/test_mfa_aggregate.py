"""The MFA aggregate: enrollment, re-enrollment, reset, disable, requirement, and its events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from services.mfa.domain import errors, recovery_codes, totp
from services.mfa.domain.clock import FrozenClock, SystemClock
from services.mfa.domain.errors import (
    InvalidCode,
    LockedOut,
    NoEnrollmentInProgress,
    SetupWindowExpired,
    TwoFactorNotOn,
    TwoFactorRequired,
)
from services.mfa.domain.lockout import LockoutPolicy
from services.mfa.domain.mfa import MFA, mfa_id
from tests.unit.support import (
    START,
    WINDOW,
    code_at,
    enroll,
    enrolled_mfa,
    event_names,
    new_mfa,
    wrong_recovery,
)

LENIENT = LockoutPolicy(threshold=100)


def refused(mfa: MFA, code: str, clock: FrozenClock) -> bool:
    try:
        mfa.verify_second_factor(code, LENIENT, clock.now(), "u")
    except InvalidCode:
        return True
    return False


def replay(events: list[Any]) -> MFA:
    """The aggregate rebuilt from its events alone."""
    aggregate: Any = None
    for event in events:
        aggregate = event.mutate(aggregate)
    assert isinstance(aggregate, MFA)
    return aggregate


STATE = ("id", "version", "user_id", "org_id", "required", "secret", "pending_secret",
         "pending_expires_at", "last_step", "codes", "used", "failures", "locked_until",
         "created_on", "modified_on")


def state(mfa: MFA) -> dict[str, Any]:
    return {name: getattr(mfa, name) for name in STATE}


# ---- a new aggregate -----------------------------------------------------------------------


@pytest.mark.parametrize("required", [False, True])
def test_a_new_mfa_is_off(clock: FrozenClock, required: bool) -> None:
    mfa = new_mfa(clock, required=required)
    assert not mfa.is_on
    assert mfa.required is required
    assert mfa.banner is required
    assert mfa.recovery_codes_left == 0
    assert (mfa.failures, mfa.locked_until, mfa.last_step) == (0, None, -1)
    assert mfa.created_on == clock.now()


def test_mfa_id_is_derived_from_the_user_id() -> None:
    user = uuid4()
    assert mfa_id(user) == mfa_id(user)
    assert mfa_id(user) != mfa_id(uuid4())
    assert mfa_id(user) != user


def test_every_event_says_whose_which_org_who_and_when(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    secret = totp.new_secret()
    clock.advance(7)
    mfa.start_enrollment(secret, clock.now() + WINDOW, clock.now(), "user:someone")
    event = mfa.pending_events[-1]
    assert (event.user_id, event.org_id, event.actor) == (  # type: ignore[attr-defined]
        mfa.user_id, mfa.org_id, "user:someone")
    assert event.timestamp == clock.now()
    assert mfa.modified_on == clock.now()


# ---- enrollment ----------------------------------------------------------------------------


def test_enrollment_turns_2fa_on_with_ten_codes(clock: FrozenClock) -> None:
    mfa = new_mfa(clock, required=True)
    secret = totp.new_secret()
    codes = recovery_codes.new_set()
    expires_at = clock.now() + WINDOW
    mfa.start_enrollment(secret, expires_at, clock.now(), "u")
    assert not mfa.is_on and mfa.banner
    assert (mfa.pending_secret, mfa.pending_expires_at) == (secret, expires_at)
    mfa.confirm_enrollment(code_at(secret, clock), codes, clock.now(), "u")
    assert mfa.is_on and not mfa.banner
    assert mfa.secret == secret
    assert (mfa.pending_secret, mfa.pending_expires_at) == (None, None)
    assert mfa.codes == codes and mfa.recovery_codes_left == 10
    assert mfa.last_step == totp.step_at(clock.now())
    assert event_names(mfa) == ["MfaCreated", "EnrollmentStarted", "TotpConfirmed"]


def test_the_code_that_confirmed_cannot_be_replayed_at_login(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    secret, _ = enroll(mfa, clock)
    assert refused(mfa, code_at(secret, clock), clock)
    assert not refused(mfa, code_at(secret, clock, 1), clock)


def test_confirm_without_enrollment(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    with pytest.raises(NoEnrollmentInProgress):
        mfa.confirm_enrollment("123456", recovery_codes.new_set(), clock.now(), "u")
    assert event_names(mfa) == ["MfaCreated"]


def test_a_second_confirm_issues_no_second_set(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    _, codes = enroll(mfa, clock)
    secret = mfa.secret
    assert secret is not None
    with pytest.raises(NoEnrollmentInProgress):
        mfa.confirm_enrollment(code_at(secret, clock, 1), recovery_codes.new_set(), clock.now(),
                               "u")
    assert mfa.codes == codes
    assert event_names(mfa) == ["MfaCreated", "EnrollmentStarted", "TotpConfirmed"]


def test_confirm_after_the_window(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    secret = totp.new_secret()
    mfa.start_enrollment(secret, clock.now() + WINDOW, clock.now(), "u")
    clock.advance(WINDOW.total_seconds() + 1)
    with pytest.raises(SetupWindowExpired):
        mfa.confirm_enrollment(code_at(secret, clock), recovery_codes.new_set(), clock.now(),
                               "u")
    assert not mfa.is_on
    assert event_names(mfa) == ["MfaCreated", "EnrollmentStarted"]


@pytest.mark.parametrize(("seconds", "expired"), [(599, False), (600, True)])
def test_the_window_edge(clock: FrozenClock, seconds: int, expired: bool) -> None:
    mfa = new_mfa(clock)
    secret = totp.new_secret()
    mfa.start_enrollment(secret, clock.now() + timedelta(seconds=600), clock.now(), "u")
    clock.advance(seconds)
    if expired:
        with pytest.raises(SetupWindowExpired):
            mfa.confirm_enrollment(code_at(secret, clock), [], clock.now(), "u")
    else:
        mfa.confirm_enrollment(code_at(secret, clock), recovery_codes.new_set(), clock.now(),
                               "u")
        assert mfa.is_on


def test_a_new_setup_reopens_the_window(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    mfa.start_enrollment(totp.new_secret(), clock.now() + WINDOW, clock.now(), "u")
    clock.advance(WINDOW.total_seconds() + 60)
    secret = totp.new_secret()
    mfa.start_enrollment(secret, clock.now() + WINDOW, clock.now(), "u")
    mfa.confirm_enrollment(code_at(secret, clock), recovery_codes.new_set(), clock.now(), "u")
    assert mfa.secret == secret


def test_a_wrong_code_at_setup_is_refused_and_setup_continues(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    secret = totp.new_secret()
    mfa.start_enrollment(secret, clock.now() + WINDOW, clock.now(), "u")
    other = totp.new_secret()
    with pytest.raises(InvalidCode):
        mfa.confirm_enrollment(code_at(other, clock), recovery_codes.new_set(), clock.now(), "u")
    with pytest.raises(InvalidCode):
        mfa.confirm_enrollment(code_at(secret, clock, 2), recovery_codes.new_set(), clock.now(),
                               "u")
    assert not mfa.is_on and mfa.pending_secret == secret
    mfa.confirm_enrollment(code_at(secret, clock, -1), recovery_codes.new_set(), clock.now(),
                           "u")
    assert mfa.is_on


def test_the_pending_secret_does_not_log_in(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    secret = totp.new_secret()
    mfa.start_enrollment(secret, clock.now() + WINDOW, clock.now(), "u")
    assert refused(mfa, code_at(secret, clock), clock)
    assert mfa.failures == 1


def test_re_enrollment_replaces_the_secret_only_at_confirm(clock: FrozenClock) -> None:
    mfa, old_secret, old_codes = enrolled_mfa(clock)
    new_secret = totp.new_secret()
    mfa.start_enrollment(new_secret, clock.now() + WINDOW, clock.now(), "u")
    assert mfa.is_on and mfa.secret == old_secret
    # until confirmed, the old app and the old codes still log in; the new app does not
    assert refused(mfa, code_at(new_secret, clock), clock)
    assert not refused(mfa, code_at(old_secret, clock), clock)
    assert not refused(mfa, old_codes[0], clock)
    clock.advance(30)
    new_codes = recovery_codes.new_set()
    mfa.confirm_enrollment(code_at(new_secret, clock), new_codes, clock.now(), "u")
    # A new app replaces the old one; the recovery codes came with the first factor and stay
    # (one was used above): they back up whichever factors the user has.
    assert mfa.secret == new_secret and mfa.codes == old_codes
    assert mfa.recovery_codes_left == 9
    clock.advance(30)
    assert refused(mfa, code_at(old_secret, clock), clock)
    assert refused(mfa, old_codes[0], clock)  # used already
    assert not refused(mfa, code_at(new_secret, clock), clock)
    assert not refused(mfa, old_codes[1], clock)
    assert refused(mfa, new_codes[0], clock)


# ---- reset (F7) and disable (F9) -----------------------------------------------------------


@pytest.mark.parametrize("required", [False, True])
def test_reset_kills_secret_and_codes_and_keeps_required(clock: FrozenClock,
                                                         required: bool) -> None:
    mfa, secret, codes = enrolled_mfa(clock, required=required)
    mfa.reset(clock.now(), "admin:boss")
    reset = mfa.pending_events[-1]
    assert type(reset).__name__ == "ResetByAdmin"
    assert reset.actor == "admin:boss"  # type: ignore[attr-defined]
    assert not mfa.is_on and mfa.secret is None
    assert mfa.required is required and mfa.banner is required
    assert mfa.recovery_codes_left == 0
    for code in (code_at(secret, clock), code_at(secret, clock, 1), codes[0], codes[9]):
        assert refused(mfa, code, clock)


def test_reset_also_drops_a_pending_setup(clock: FrozenClock) -> None:
    mfa, _, _ = enrolled_mfa(clock)
    pending = totp.new_secret()
    mfa.start_enrollment(pending, clock.now() + WINDOW, clock.now(), "u")
    mfa.reset(clock.now(), "admin:boss")
    assert (mfa.pending_secret, mfa.pending_expires_at) == (None, None)
    with pytest.raises(NoEnrollmentInProgress):
        mfa.confirm_enrollment(code_at(pending, clock), [], clock.now(), "u")


def test_after_reset_a_fresh_setup_works(clock: FrozenClock) -> None:
    mfa, _, _ = enrolled_mfa(clock, required=True)
    mfa.reset(clock.now(), "admin:boss")
    secret, codes = enroll(mfa, clock)
    assert mfa.is_on and not mfa.banner
    clock.advance(30)
    assert not refused(mfa, code_at(secret, clock), clock)
    assert not refused(mfa, codes[0], clock)


def test_disable_kills_secret_and_codes(clock: FrozenClock) -> None:
    mfa, secret, codes = enrolled_mfa(clock)
    mfa.disable(clock.now(), "u")
    assert event_names(mfa)[-1] == "TwoFactorDisabled"
    assert not mfa.is_on and mfa.required is False
    assert refused(mfa, code_at(secret, clock), clock)
    assert refused(mfa, codes[0], clock)


def test_disable_is_refused_when_required(clock: FrozenClock) -> None:
    mfa, secret, _ = enrolled_mfa(clock, required=True)
    before = len(mfa.pending_events)
    with pytest.raises(TwoFactorRequired):
        mfa.disable(clock.now(), "u")
    assert len(mfa.pending_events) == before
    assert mfa.is_on
    assert not refused(mfa, code_at(secret, clock), clock)


def test_disable_while_off_is_refused(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    with pytest.raises(TwoFactorNotOn):
        mfa.disable(clock.now(), "u")
    assert event_names(mfa) == ["MfaCreated"]


def test_set_requirement_records_only_changes(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    mfa.set_requirement(False, clock.now(), "admin:a")
    assert event_names(mfa) == ["MfaCreated"]
    mfa.set_requirement(True, clock.now(), "admin:a")
    assert mfa.required and mfa.banner
    assert event_names(mfa) == ["MfaCreated", "RequirementSet"]
    mfa.set_requirement(True, clock.now(), "admin:a")
    assert event_names(mfa) == ["MfaCreated", "RequirementSet"]
    mfa.set_requirement(False, clock.now(), "admin:a")
    assert not mfa.required and not mfa.banner


def test_requiring_2fa_does_not_touch_a_configured_factor(clock: FrozenClock) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    mfa.set_requirement(True, clock.now(), "admin:a")
    assert mfa.is_on and not mfa.banner
    assert not refused(mfa, code_at(secret, clock), clock)


# ---- the events alone rebuild the state --------------------------------------------------


def test_replaying_the_events_gives_the_same_state(clock: FrozenClock) -> None:
    policy = LockoutPolicy()
    mfa, secret, codes = enrolled_mfa(clock, required=True)
    mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u")
    mfa.verify_second_factor(codes[2], policy, clock.now(), "u")
    for _ in range(5):
        with pytest.raises(InvalidCode):
            mfa.verify_second_factor(wrong_recovery(codes), policy, clock.now(), "u")
    with pytest.raises(LockedOut):
        mfa.verify_second_factor(code_at(secret, clock, 1), policy, clock.now(), "u")
    assert mfa.locked_until is not None and mfa.failures == 5
    mfa.start_enrollment(totp.new_secret(), clock.now() + WINDOW, clock.now(), "u")
    mfa.accept_password("login", clock.now(), "u")
    mfa.set_requirement(False, clock.now(), "admin:a")
    events = list(mfa.pending_events)
    assert state(replay(events)) == state(mfa)
    mfa.reset(clock.now(), "admin:a")
    assert state(replay(list(mfa.pending_events))) == state(mfa)


# ---- errors and the clock ------------------------------------------------------------------


def test_every_refusal_is_a_domain_error() -> None:
    refusals = [errors.InvalidCredentials, errors.InvalidCode, errors.NoEnrollmentInProgress,
                errors.SetupWindowExpired, errors.TwoFactorNotOn,
                errors.TwoFactorRequired, errors.EmailAlreadyUsed, errors.AccountNotFound]
    for refusal in refusals:
        assert issubclass(refusal, errors.DomainError)
    until = START + timedelta(seconds=30)
    locked = errors.LockedOut(until)
    assert isinstance(locked, errors.DomainError)
    assert locked.until == until and until.isoformat() in str(locked)


def test_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(START)
    assert clock.now() == START and clock.now() == START
    clock.advance(30.5)
    assert clock.now() == START + timedelta(seconds=30.5)
    clock.set(START)
    assert clock.now() == START
    assert FrozenClock().now().tzinfo is not None
    assert SystemClock().now().tzinfo is not None
