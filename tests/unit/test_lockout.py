"""Brute-force throttling of the second factor: per account, mixed codes, growing waits, what
resets the count, and wrong passwords recorded without counting (they are throttled by address
and email outside the aggregate: tests/unit/test_throttle.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.errors import InvalidCode, InvalidCredentials, LockedOut
from services.mfa.domain.lockout import LockoutPolicy
from services.mfa.domain.mfa import MFA
from tests.unit.support import (
    START,
    code_at,
    enrolled_mfa,
    event_names,
    wrong_recovery,
    wrong_totp,
)


def fail(mfa: MFA, secret: str, clock: FrozenClock, policy: LockoutPolicy,
         kind: str = "totp") -> None:
    """One wrong second factor of the given kind; checks it is refused as a wrong code."""
    code = wrong_totp(secret, clock) if kind == "totp" else wrong_recovery(mfa.codes)
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(code, policy, clock.now(), "u")


def wrong_password(mfa: MFA, clock: FrozenClock) -> None:
    with pytest.raises(InvalidCredentials):
        mfa.reject_password(1, None, clock.now(), "u", "192.0.2.1")


# ---- the policy -----------------------------------------------------------------------------


def test_defaults_are_the_spec_settings() -> None:
    assert LockoutPolicy() == LockoutPolicy(threshold=5, base_seconds=30, max_seconds=3600)


@pytest.mark.parametrize(("failures", "wait"), [
    (0, None), (1, None), (4, None),
    (5, 30), (6, 60), (7, 120), (8, 240), (11, 1920),
    (12, 3600), (13, 3600), (200, 3600),
])
def test_wait_starts_at_base_doubles_and_is_capped(policy: LockoutPolicy, failures: int,
                                                   wait: int | None) -> None:
    until = policy.locked_until(failures, START)
    assert until == (None if wait is None else START + timedelta(seconds=wait))


def test_custom_policy() -> None:
    policy = LockoutPolicy(threshold=3, base_seconds=10, max_seconds=35)
    waits = [policy.locked_until(n, START) for n in range(1, 7)]
    assert [None if w is None else (w - START).total_seconds() for w in waits] == [
        None, None, 10, 20, 35, 35]


# ---- on the aggregate -------------------------------------------------------------------------


def test_threshold_failures_mixed_codes_lock(clock: FrozenClock, policy: LockoutPolicy) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    for count, kind in enumerate(["totp", "recovery", "totp", "recovery"], start=1):
        fail(mfa, secret, clock, policy, kind)
        assert mfa.failures == count
        assert mfa.locked_until is None and not mfa.is_locked(clock.now())
    fail(mfa, secret, clock, policy, "totp")  # the 5th is itself refused as a wrong code
    assert mfa.failures == 5
    assert mfa.locked_until == clock.now() + timedelta(seconds=30)
    assert mfa.is_locked(clock.now())
    assert event_names(mfa)[-5:] == ["SecondFactorRejected"] * 5
    assert [e.factor for e in mfa.pending_events[-5:]] == [  # type: ignore[attr-defined]
        "totp", "recovery_code", "totp", "recovery_code", "totp"]
    assert mfa.pending_events[-1].locked_until == mfa.locked_until  # type: ignore[attr-defined]


def test_wrong_passwords_are_recorded_and_count_nothing(clock: FrozenClock,
                                                        policy: LockoutPolicy) -> None:
    """Issue 8, item 3: a stranger's wrong passwords cannot lock the user's second factor."""
    mfa, secret, _ = enrolled_mfa(clock)
    for _ in range(20):
        wrong_password(mfa, clock)
    assert mfa.failures == 0 and not mfa.is_locked(clock.now())
    rejected = mfa.pending_events[-1]
    assert type(rejected).__name__ == "PasswordRejected"
    assert (rejected.factor, rejected.address) == ("password", "192.0.2.1")  # type: ignore[attr-defined]
    assert mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u") == "totp"


def test_a_right_code_while_locked_is_refused_and_throttled(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, codes = enrolled_mfa(clock)
    for _ in range(5):
        fail(mfa, secret, clock, policy)
    until = mfa.locked_until
    assert until is not None
    right = code_at(secret, clock)
    last_step = mfa.last_step
    for code, factor in ((right, "totp"), (codes[0], "recovery_code")):
        with pytest.raises(LockedOut) as refused:
            mfa.verify_second_factor(code, policy, clock.now(), "u")
        assert refused.value.until == until
        throttled = mfa.pending_events[-1]
        assert type(throttled).__name__ == "AttemptThrottled"
        assert (throttled.factor, throttled.until) == (factor, until)  # type: ignore[attr-defined]
    # throttled attempts neither count as failures, nor consume a code, nor extend the wait
    assert mfa.failures == 5 and mfa.locked_until == until
    assert mfa.last_step == last_step and mfa.recovery_codes_left == 10


def test_lock_expires_with_the_clock(clock: FrozenClock, policy: LockoutPolicy) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    for _ in range(5):
        fail(mfa, secret, clock, policy)
    right = code_at(secret, clock)
    clock.advance(29)
    assert mfa.is_locked(clock.now())
    with pytest.raises(LockedOut):
        mfa.verify_second_factor(right, policy, clock.now(), "u")
    clock.advance(1)  # exactly the end of the wait
    assert not mfa.is_locked(clock.now())
    # the code refused while locked was not consumed: it is accepted now (T-1, in the window)
    assert mfa.verify_second_factor(right, policy, clock.now(), "u") == "totp"
    assert mfa.failures == 0 and mfa.locked_until is None


def test_waits_double_per_further_failure_up_to_the_cap(clock: FrozenClock) -> None:
    policy = LockoutPolicy(threshold=5, base_seconds=30, max_seconds=100)
    mfa, secret, _ = enrolled_mfa(clock)
    for _ in range(5):
        fail(mfa, secret, clock, policy)
    waits = []
    for _ in range(4):
        assert mfa.locked_until is not None
        wait = (mfa.locked_until - clock.now()).total_seconds()
        waits.append(wait)
        clock.advance(wait)
        fail(mfa, secret, clock, policy)  # right after the wait: counted, and locks again
    waits.append((mfa.locked_until - clock.now()).total_seconds())  # type: ignore[operator]
    assert waits == [30, 60, 100, 100, 100]
    assert mfa.failures == 9


def test_a_failure_right_after_the_lock_doubles_the_wait(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    for _ in range(5):
        fail(mfa, secret, clock, policy, "totp")
    clock.advance(30)
    fail(mfa, secret, clock, policy, "recovery")
    assert mfa.locked_until == clock.now() + timedelta(seconds=60)
    clock.advance(59)
    with pytest.raises(LockedOut):
        mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u")


@pytest.mark.parametrize("success", ["totp", "recovery_code"])
def test_a_success_resets_the_count(clock: FrozenClock, policy: LockoutPolicy,
                                    success: str) -> None:
    mfa, secret, codes = enrolled_mfa(clock)
    for _ in range(4):
        fail(mfa, secret, clock, policy)
    right = code_at(secret, clock) if success == "totp" else codes[0]
    assert mfa.verify_second_factor(right, policy, clock.now(), "u") == success
    assert mfa.failures == 0 and mfa.locked_until is None
    for _ in range(4):  # the count starts again from zero
        fail(mfa, secret, clock, policy)
    assert not mfa.is_locked(clock.now())
    fail(mfa, secret, clock, policy)
    assert mfa.is_locked(clock.now())


def test_a_success_after_a_lock_resets_the_doubling(clock: FrozenClock,
                                                    policy: LockoutPolicy) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    for _ in range(6):
        clock.advance(60)
        fail(mfa, secret, clock, policy)
    clock.advance(60)
    mfa.verify_second_factor(code_at(secret, clock), policy, clock.now(), "u")
    for _ in range(5):
        fail(mfa, secret, clock, policy)
    assert mfa.locked_until == clock.now() + timedelta(seconds=30)  # base again, not 4x


def test_a_right_password_does_not_reset_the_count_when_2fa_is_on(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    for _ in range(4):
        fail(mfa, secret, clock, policy)
    mfa.accept_password("login", clock.now(), "u")
    accepted = mfa.pending_events[-1]
    assert type(accepted).__name__ == "PasswordAccepted"
    assert accepted.completes_login is False  # type: ignore[attr-defined]
    assert mfa.failures == 4
    fail(mfa, secret, clock, policy)
    assert mfa.is_locked(clock.now())


def test_a_completed_login_resets_the_count_when_2fa_is_off(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    """Failures left from before 2FA was reset: the next completed login clears them."""
    mfa, secret, _ = enrolled_mfa(clock)
    for _ in range(4):
        fail(mfa, secret, clock, policy)
    mfa.reset(clock.now(), "admin:a")
    assert mfa.failures == 4
    mfa.accept_password("login", clock.now(), "u")
    assert mfa.pending_events[-1].completes_login is True  # type: ignore[attr-defined]
    assert mfa.failures == 0 and mfa.locked_until is None


def test_a_reauthentication_completes_no_login_and_resets_nothing(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, secret, _ = enrolled_mfa(clock)
    for _ in range(4):
        fail(mfa, secret, clock, policy)
    mfa.accept_password("reauthenticate", clock.now(), "u")
    assert mfa.pending_events[-1].completes_login is False  # type: ignore[attr-defined]
    assert mfa.failures == 4
