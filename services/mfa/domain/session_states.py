"""The login session's states (SPEC section 4) as one transition function.

After the password a session is `second_factor`, `setup_2fa`, `regenerate_codes` or `done`. Every
change of state goes through `after(state, step, user)`, where `user` is the user's 2FA state as the
store has it at that moment. The rule no path may break: a restriction ends only toward a state the
session has earned. A session that proved only the password never reaches `done` while the user
has 2FA on; it owes the second factor (`second_factor`) whatever happened elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

State = Literal["second_factor", "setup_2fa", "regenerate_codes", "done"]
STATES: tuple[State, ...] = ("second_factor", "setup_2fa", "regenerate_codes", "done")
# States that allow only their own few calls; the refusal code a session in them gets.
RESTRICTED: dict[State, str] = {
    "setup_2fa": "setup_2fa_required",
    "regenerate_codes": "regenerate_codes_required",
}
# A login ending in these opens the password window: forced setup and forced regeneration need
# no second password entry.
OPENS_WINDOW: frozenset[State] = frozenset({"setup_2fa", "regenerate_codes"})


class Step(Enum):
    PASSWORD = "password"  # noqa: S105 (a step, not a secret): a right password at login
    SECOND_FACTOR = "second_factor"  # a right TOTP or recovery code at login
    SETUP_COMPLETED = "setup_completed"  # this session configured 2FA (F2)
    CODES_REGENERATED = "codes_regenerated"  # this session regenerated its codes (F4)
    CHECKED = "checked"  # the user's 2FA state read again (it may have changed elsewhere)


@dataclass(frozen=True)
class UserTwoFactor:
    """What the transitions depend on: the user's 2FA as the store has it now."""

    on: bool
    required: bool
    recovery_codes_left: int


class InvalidTransition(Exception):
    """A step the state does not allow; callers check the state first, so this is a bug."""


def after(state: State | None, step: Step, user: UserTwoFactor) -> State:
    """The session's state after `step` (`state` None: no session yet)."""
    if state is None:
        if step is Step.PASSWORD:
            return _password_only(user)
    elif step is Step.CHECKED:
        return _checked(state, user)
    elif step is Step.SECOND_FACTOR and state == "second_factor":
        # Using the last recovery code leaves only one thing to do: regenerate (F3).
        return "regenerate_codes" if user.recovery_codes_left == 0 else "done"
    elif step is Step.SETUP_COMPLETED and state in ("setup_2fa", "done"):
        return "done"  # configuring 2FA proved the new factor in this session
    elif step is Step.CODES_REGENERATED and state in ("regenerate_codes", "done"):
        return "done"
    raise InvalidTransition(f"{step.value} in state {state}")


def _password_only(user: UserTwoFactor) -> State:
    """What the password alone earns."""
    if user.on:
        return "second_factor"
    return "setup_2fa" if user.required else "done"


def _checked(state: State, user: UserTwoFactor) -> State:
    if state == "setup_2fa":
        # Only the password was proved: the same as logging in again now. Above all, 2FA turned
        # on elsewhere means this session owes the second factor; it never becomes `done`.
        return _password_only(user)
    if state == "regenerate_codes":
        # Both factors were proved; the forced step lasts while its reason does (an admin's
        # reset or a regeneration elsewhere ends it).
        if user.on:
            return "regenerate_codes" if user.recovery_codes_left == 0 else "done"
        return "setup_2fa" if user.required else "done"
    # `second_factor` ends only with a right second factor; `done` is never taken back by a
    # change of the user's 2FA (F7: an admin's reset does not log the user out).
    return state
