"""The session state machine of SPEC section 4, over every transition and every short path."""

from __future__ import annotations

import itertools

import pytest

from services.mfa.domain.session_states import (
    STATES,
    InvalidTransition,
    State,
    Step,
    UserTwoFactor,
    after,
)

USERS = [UserTwoFactor(on, required, left)
         for on in (False, True) for required in (False, True) for left in (0, 1, 10)
         if on or left == 0]


def test_the_password_alone() -> None:
    assert after(None, Step.PASSWORD, UserTwoFactor(True, False, 10)) == "second_factor"
    assert after(None, Step.PASSWORD, UserTwoFactor(True, True, 0)) == "second_factor"
    assert after(None, Step.PASSWORD, UserTwoFactor(False, True, 0)) == "setup_2fa"
    assert after(None, Step.PASSWORD, UserTwoFactor(False, False, 0)) == "done"


def test_the_reported_bypass_is_closed() -> None:
    """Issue 8, item 1: a password-only `setup_2fa` session whose user configured 2FA in another
    session now owes the second factor; it was silently upgraded to `done`."""
    assert after("setup_2fa", Step.CHECKED, UserTwoFactor(True, True, 10)) == "second_factor"


def test_second_factor_and_the_last_recovery_code() -> None:
    assert after("second_factor", Step.SECOND_FACTOR, UserTwoFactor(True, False, 3)) == "done"
    assert after("second_factor", Step.SECOND_FACTOR,
                 UserTwoFactor(True, False, 0)) == "regenerate_codes"


def test_forced_steps_end_when_their_reason_does() -> None:
    # Required lifted while a forced setup waits: the password alone is all a user without 2FA
    # needs, as a new login would say.
    assert after("setup_2fa", Step.CHECKED, UserTwoFactor(False, False, 0)) == "done"
    # An admin's reset during a forced regeneration (both factors were proved).
    assert after("regenerate_codes", Step.CHECKED, UserTwoFactor(False, False, 0)) == "done"
    assert after("regenerate_codes", Step.CHECKED, UserTwoFactor(False, True, 0)) == "setup_2fa"
    # New codes generated in another session.
    assert after("regenerate_codes", Step.CHECKED, UserTwoFactor(True, True, 10)) == "done"


@pytest.mark.parametrize("user", USERS)
def test_done_and_second_factor_never_change_by_a_check(user: UserTwoFactor) -> None:
    assert after("done", Step.CHECKED, user) == "done"
    assert after("second_factor", Step.CHECKED, user) == "second_factor"


@pytest.mark.parametrize(("state", "step"), [
    ("done", Step.SECOND_FACTOR), ("setup_2fa", Step.SECOND_FACTOR),
    ("second_factor", Step.SETUP_COMPLETED), ("regenerate_codes", Step.SETUP_COMPLETED),
    ("second_factor", Step.CODES_REGENERATED), ("setup_2fa", Step.CODES_REGENERATED),
    ("done", Step.PASSWORD), ("second_factor", Step.PASSWORD),
])
def test_steps_a_state_does_not_allow(state: State, step: Step) -> None:
    with pytest.raises(InvalidTransition):
        after(state, step, UserTwoFactor(True, False, 10))


# ---- every path of up to five steps, with the user's 2FA changing arbitrarily in between ---------

# What each step proves: a right second factor or a completed setup proves a factor the user
# holds now. (Regenerating codes proves nothing new: it is reachable only after one of them.)
PROVES_FACTOR = {Step.SECOND_FACTOR, Step.SETUP_COMPLETED}
SESSION_STEPS = [Step.SECOND_FACTOR, Step.SETUP_COMPLETED, Step.CODES_REGENERATED, Step.CHECKED]


def allowed(state: State, step: Step) -> bool:
    try:
        after(state, step, USERS[0])
    except InvalidTransition:
        return False
    return True


def paths(length: int) -> itertools.product[tuple[tuple[Step, UserTwoFactor], ...]]:
    return itertools.product(itertools.product(SESSION_STEPS, USERS), repeat=length)


@pytest.mark.parametrize("first", USERS)
def test_no_path_skips_the_second_factor(first: UserTwoFactor) -> None:
    """Property over every path: while the user has 2FA on, a session that has not proved a
    factor is `second_factor` or was `done` before the user turned 2FA on (F7: nobody is
    logged out by a change of their 2FA). Never does a restriction end in `done` unproved."""
    checked = 0
    for length in range(4):
        for path in paths(length):
            state = after(None, Step.PASSWORD, first)
            proved = False
            for step, user in path:
                if not allowed(state, step):
                    break
                before = state
                state = after(state, step, user)
                proved = proved or step in PROVES_FACTOR
                if before != "done" and state == "done" and not proved:
                    # A restriction ended unproved: only toward what the password alone earns.
                    assert not user.on and not user.required, (first, path)
                if before == "second_factor" and not proved:
                    assert state == "second_factor" or step is Step.SECOND_FACTOR, (first, path)
                assert state in STATES
                checked += 1
    assert checked > 1000


def test_a_setup_session_owes_the_second_factor_whatever_happens_next() -> None:
    """From the moment 2FA is on, a password-only session is `second_factor` until it sends one,
    along every path."""
    for path in paths(3):
        state: State = "setup_2fa"
        on_seen = False
        for step, user in path:
            if not allowed(state, step):
                break
            state = after(state, step, user)
            if step in PROVES_FACTOR or (state == "done" and not on_seen):
                break  # it proved a factor, or 2FA was off and not required: nothing owed
            on_seen = on_seen or (step is Step.CHECKED and user.on)
            if on_seen:
                assert state == "second_factor", path
