"""Years of history on the real stores (issue 9): snapshots bound what a read replays, are
encrypted like events, and give the same states as a full replay; event times never go backwards,
so time travel finds every state by bisection, also after a clock ran behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from services.mfa.adapters.event_store import StoreLocation
from services.mfa.application import SNAPSHOT_INTERVAL, MfaApplication
from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.errors import InvalidCode, InvalidCredentials
from services.mfa.domain.mfa import MFA, mfa_id
from tests.conftest import FAST_PASSWORDS, SECRET_KEY, START
from tests.unit.support import code_at, wrong_totp


@pytest.fixture
def app(database_url: str, clock: FrozenClock) -> Iterator[MfaApplication]:
    application = MfaApplication(StoreLocation.parse(database_url).eventsourcing_env(SECRET_KEY),
                                 clock=clock)
    yield application
    application.close()


def fresh(database_url: str, clock: FrozenClock) -> MfaApplication:
    """Another process: no cache, only the store."""
    return MfaApplication(StoreLocation.parse(database_url).eventsourcing_env(SECRET_KEY),
                          clock=clock)


def user_with_history(app: MfaApplication, clock: FrozenClock,
                      events: int) -> tuple[UUID, str]:
    org_id, _ = app.create_organization("Org", "boss@example.com", "Boss",
                                        FAST_PASSWORDS.hash("pw-1"), "support:t").value
    user_id = app.create_user(org_id, "u@example.com", "U", "client",
                              FAST_PASSWORDS.hash("pw-2"), False, "admin:t").value
    enrollment = app.start_enrollment(user_id, clock.now() + timedelta(minutes=10)).value
    app.confirm_enrollment(user_id, code_at(enrollment.secret, clock))
    while app.mfa(user_id).version < events:
        clock.advance(31)
        try:
            app.verify_second_factor(user_id, wrong_totp(enrollment.secret, clock))
        except InvalidCode:
            pass
        with pytest.raises(InvalidCredentials):
            app.record_password(user_id, False, "login")
        app.record_password(user_id, True, "login")
        app.verify_second_factor(user_id, code_at(enrollment.secret, clock))
    return user_id, enrollment.secret


def state(mfa: MFA) -> dict[str, Any]:
    return {name: value for name, value in vars(mfa).items() if name != "_pending_events"}


def replayed(app: MfaApplication, user_id: UUID, version: int | None = None) -> MFA:
    """The aggregate from its events alone, no snapshot, no cache."""
    events = list(app.events.get(mfa_id(user_id), lte=version))
    mfa = None
    for event in events:
        mfa = event.mutate(mfa)  # type: ignore[attr-defined]
    assert isinstance(mfa, MFA)
    return mfa


def test_snapshots_bound_a_cold_read_and_give_the_same_state(
        app: MfaApplication, clock: FrozenClock, database_url: str) -> None:
    user_id, secret = user_with_history(app, clock, 2 * SNAPSHOT_INTERVAL + 30)
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(mfa_id(user_id)))
    assert [s.originator_version for s in snapshots] == [SNAPSHOT_INTERVAL,
                                                         2 * SNAPSHOT_INTERVAL]
    other = fresh(database_url, clock)
    try:
        assert state(other.mfa(user_id)) == state(replayed(app, user_id))
        # A read of the past starts from the snapshot before it too, and agrees.
        version = SNAPSHOT_INTERVAL + 17
        assert state(other.repository.get(mfa_id(user_id), version=version)) == state(
            replayed(app, user_id, version))
        # Replay protection holds across processes: the other one's cache is not trusted.
        clock.advance(31)
        code = code_at(secret, clock)
        app.verify_second_factor(user_id, code)
        with pytest.raises(InvalidCode):
            other.verify_second_factor(user_id, code)
    finally:
        other.close()


def test_snapshots_are_encrypted_like_events(app: MfaApplication, clock: FrozenClock) -> None:
    user_id, secret = user_with_history(app, clock, SNAPSHOT_INTERVAL + 1)
    assert app.snapshots is not None
    stored = list(app.snapshots.recorder.select_events(mfa_id(user_id)))
    assert stored
    codes = app.recovery_codes(user_id)
    for record in stored:
        assert secret.encode() not in record.state
        assert not any(code.encode() in record.state for code, _ in codes)
        assert b"recovery" not in record.state  # not even the field names


def test_event_times_never_go_backwards(app: MfaApplication, clock: FrozenClock) -> None:
    """An instance whose clock runs 30 s behind the last writer's."""
    user_id, _ = user_with_history(app, clock, 12)
    last = app.mfa(user_id).modified_on
    clock.set(last - timedelta(seconds=30))
    app.update_user(app.account(user_id).org_id, user_id, None, None, True, "admin:t")
    times = [event.timestamp for event in app.events.get(mfa_id(user_id))]  # type: ignore[attr-defined]
    assert times == sorted(times)
    assert app.mfa(user_id).required
    # Time travel at the last writer's time sees the requirement (it used to stop early).
    at_time = app.mfa_at(user_id, last)
    assert at_time is not None and at_time.required


def test_time_travel_agrees_with_a_full_replay_at_every_instant(
        app: MfaApplication, clock: FrozenClock) -> None:
    user_id, _ = user_with_history(app, clock, 60)
    events = list(app.events.get(mfa_id(user_id)))
    assert app.mfa_at(user_id, START - timedelta(seconds=1)) is None
    for event in events[::7] + events[-1:]:
        for at in (event.timestamp, event.timestamp + timedelta(microseconds=1)):  # type: ignore[attr-defined]
            found = app.mfa_at(user_id, at)
            expected = max(e.originator_version for e in events
                           if e.timestamp <= at)  # type: ignore[attr-defined]
            assert found is not None and found.version == expected
            assert state(found) == state(replayed(app, user_id, expected))
