"""Recovery codes: 10 distinct 8-digit codes, each usable once, all replaced by a regeneration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.mfa.domain import recovery_codes
from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.errors import InvalidCode, TwoFactorNotOn
from services.mfa.domain.lockout import LockoutPolicy
from tests.unit.support import enrolled_mfa, event_names, new_mfa

# Many refusals in a row in these tests: keep the lockout out of the way, only reuse is tested.
LENIENT = LockoutPolicy(threshold=100)


def test_a_set_is_ten_distinct_eight_digit_strings() -> None:
    for _ in range(50):
        codes = recovery_codes.new_set()
        assert len(codes) == 10
        assert len(set(codes)) == 10
        for code in codes:
            assert isinstance(code, str)
            assert len(code) == 8 and code.isascii() and code.isdigit()


def test_sets_differ() -> None:
    sets = {tuple(recovery_codes.new_set()) for _ in range(20)}
    assert len(sets) == 20


def test_codes_come_from_secrets_are_zero_padded_and_deduplicated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws: Iterator[int] = iter([1, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 99999999])
    bounds: list[int] = []

    def randbelow(bound: int) -> int:
        bounds.append(bound)
        return next(draws)

    monkeypatch.setattr(recovery_codes.secrets, "randbelow", randbelow)
    codes = recovery_codes.new_set()
    assert codes == [f"{n:08d}" for n in range(1, 11)]
    assert set(bounds) == {10**8}
    assert len(bounds) == 12  # the two duplicates were drawn again


def test_find_unused() -> None:
    codes = ["00000001", "12345678", "87654321"]
    used = [False, True, False]
    assert recovery_codes.find_unused(codes, used, "87654321") == 2
    assert recovery_codes.find_unused(codes, used, "00000001") == 0
    assert recovery_codes.find_unused(codes, used, "12345678") is None  # used
    assert recovery_codes.find_unused(codes, used, "11111111") is None  # unknown
    assert recovery_codes.find_unused(codes, used, "1234567") is None  # a prefix
    assert recovery_codes.find_unused(codes, used, "123456789") is None  # longer
    assert recovery_codes.find_unused([], [], "12345678") is None


# ---- on the aggregate ----------------------------------------------------------------------


def test_each_code_works_once_and_the_last_leaves_zero(clock: FrozenClock) -> None:
    policy = LENIENT
    mfa, _, codes = enrolled_mfa(clock)
    assert mfa.recovery_codes_left == 10
    for number, code in enumerate(codes, start=1):
        assert mfa.verify_second_factor(code, policy, clock.now(), "u") == "recovery_code"
        assert mfa.recovery_codes_left == 10 - number
        consumed = mfa.pending_events[-1]
        assert type(consumed).__name__ == "RecoveryCodeConsumed"
        assert consumed.remaining == 10 - number  # type: ignore[attr-defined]
        assert mfa.used[consumed.index] and mfa.codes[consumed.index] == code  # type: ignore[attr-defined]
        with pytest.raises(InvalidCode):
            mfa.verify_second_factor(code, policy, clock.now(), "u")
        assert mfa.recovery_codes_left == 10 - number
    assert mfa.recovery_codes_left == 0
    assert mfa.is_on  # the TOTP secret is still configured
    assert all(mfa.used)


def test_a_wrong_recovery_code_is_refused_and_counted(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, _, codes = enrolled_mfa(clock)
    wrong = next(f"{n:08d}" for n in range(10**8) if f"{n:08d}" not in codes)
    with pytest.raises(InvalidCode):
        mfa.verify_second_factor(wrong, policy, clock.now(), "u")
    assert mfa.recovery_codes_left == 10
    assert mfa.failures == 1
    rejected = mfa.pending_events[-1]
    assert type(rejected).__name__ == "SecondFactorRejected"
    assert rejected.factor == "recovery_code"  # type: ignore[attr-defined]


def test_regenerate_invalidates_every_old_code_at_once(clock: FrozenClock) -> None:
    policy = LENIENT
    mfa, _, old = enrolled_mfa(clock)
    mfa.verify_second_factor(old[0], policy, clock.now(), "u")
    new = recovery_codes.new_set()
    assert not set(new) & set(old)
    mfa.regenerate_codes(new, clock.now(), "u")
    assert event_names(mfa)[-1] == "CodesRegenerated"
    assert mfa.recovery_codes_left == 10
    assert mfa.codes == new and mfa.used == [False] * 10
    for code in old:
        with pytest.raises(InvalidCode):
            mfa.verify_second_factor(code, policy, clock.now(), "u")
    assert mfa.verify_second_factor(new[3], policy, clock.now(), "u") == "recovery_code"
    assert mfa.recovery_codes_left == 9


def test_regenerate_after_the_last_code_gives_ten_again(
    clock: FrozenClock, policy: LockoutPolicy
) -> None:
    mfa, _, codes = enrolled_mfa(clock)
    for code in codes:
        mfa.verify_second_factor(code, policy, clock.now(), "u")
    assert mfa.recovery_codes_left == 0
    mfa.regenerate_codes(recovery_codes.new_set(), clock.now(), "u")
    assert mfa.recovery_codes_left == 10


def test_regenerate_while_off_is_refused(clock: FrozenClock) -> None:
    mfa = new_mfa(clock)
    with pytest.raises(TwoFactorNotOn):
        mfa.regenerate_codes(recovery_codes.new_set(), clock.now(), "u")
    assert event_names(mfa) == ["MfaCreated"]
    assert mfa.recovery_codes_left == 0


def test_codes_left_is_zero_while_off(clock: FrozenClock) -> None:
    mfa, _, _ = enrolled_mfa(clock)
    mfa.reset(clock.now(), "admin:x")
    assert mfa.recovery_codes_left == 0
