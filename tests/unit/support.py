"""Plain helpers shared by the unit tests: an MFA aggregate in a given state, codes at a time,
other classes under the stored topics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from eventsourcing.utils import clear_topic_cache, get_topic, register_topic

from services.mfa.domain import recovery_codes, totp
from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.mfa import MFA
from services.mfa.domain.topics import declared, event_classes, stored_as

# 2026-11-28 10:00:05 UTC: five seconds into a TOTP step, so +/- one step is well defined.
START = datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


def new_mfa(clock: FrozenClock, *, required: bool = False) -> MFA:
    return MFA._create(MFA.MfaCreated, id=uuid4(), user_id=uuid4(), org_id=uuid4(),
                       actor="system", required=required, required_by="admin",
                       timestamp=clock.now())


def code_at(secret: str, clock: FrozenClock, steps: int = 0) -> str:
    """The 6-digit code an authenticator shows `steps` steps away from the clock's time."""
    return totp.code_for_step(secret, totp.step_at(clock.now()) + steps)


def enroll(mfa: MFA, clock: FrozenClock) -> tuple[str, list[str]]:
    """Configure 2FA now; returns the secret and the recovery codes."""
    secret = totp.new_secret()
    codes = recovery_codes.new_set()
    mfa.start_enrollment(secret, clock.now() + WINDOW, clock.now(), "user:test")
    mfa.confirm_enrollment(code_at(secret, clock), codes, clock.now(), "user:test")
    return secret, codes


def enrolled_mfa(clock: FrozenClock, *, required: bool = False,
                 idle_steps: int = 10) -> tuple[MFA, str, list[str]]:
    """An MFA that is On, with the clock moved `idle_steps` steps past the confirmation, so
    the codes around the new current step were never used."""
    mfa = new_mfa(clock, required=required)
    secret, codes = enroll(mfa, clock)
    clock.advance(30 * idle_steps)
    return mfa, secret, codes


def event_names(mfa: MFA) -> list[str]:
    return [type(event).__name__ for event in mfa.pending_events]


def wrong_totp(secret: str, clock: FrozenClock) -> str:
    """A 6-digit code that matches no step of the current window (a fixed one could, by chance)."""
    window = {code_at(secret, clock, offset) for offset in (-1, 0, 1)}
    return next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in window)


def wrong_recovery(codes: list[str], skip: int = 0) -> str:
    """An 8-digit code that is not one of `codes` (the `skip`-th such code, for variety)."""
    return [f"{n:08d}" for n in range(len(codes) + skip + 1) if f"{n:08d}" not in codes][skip]


@contextlib.contextmanager
def topics_resolving_to(replacements: dict[str, type]) -> Iterator[None]:
    """For one test, the stored topics in `replacements` resolve to other classes (a renamed
    class, a test-only version), the others to the service's classes as always. The library's
    registry is process-wide: it is rebuilt for the test and restored after it."""
    stored = declared()
    clear_topic_cache()
    try:
        for topic, cls in replacements.items():
            register_topic(topic, cls)
        for aggregate in stored.values():
            for cls in (aggregate, *event_classes(aggregate)):
                if get_topic(cls) not in replacements:
                    register_topic(get_topic(cls), cls)
        yield
    finally:
        clear_topic_cache()
        for topic, aggregate in stored.items():
            stored_as(aggregate, topic)
