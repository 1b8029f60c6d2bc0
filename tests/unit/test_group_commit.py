"""Group commit (issue 9): saves that queue while a transaction runs share the next one; each
aggregate is still checked by optimistic concurrency, and a conflict retries only its own
command."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.mfa.application import SNAPSHOT_INTERVAL, MfaApplication
from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.mfa import MFA, mfa_id


class HeldApplication(MfaApplication):
    """Its first transaction waits until released, so the saves behind it queue up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.hold = threading.Event()
        self.held = threading.Event()
        self.transactions: list[int] = []
        super().__init__(*args, **kwargs)
        put = self.events.put

        def held_put(events: list[Any], **kwargs: Any) -> Any:
            if not self.held.is_set():
                self.held.set()
                self.hold.wait(10)
            self.transactions.append(len({event.originator_id for event in events}))
            return put(events, **kwargs)

        self.events.put = held_put  # type: ignore[method-assign]


@pytest.fixture
def app(clock: FrozenClock) -> Iterator[HeldApplication]:
    application = HeldApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock,
                                  group_commit=True)
    yield application
    application.close()


def new_mfa(app: MfaApplication, clock: FrozenClock) -> UUID:
    user_id = uuid4()
    app.save(MFA._create(MFA.MfaCreated, id=mfa_id(user_id), user_id=user_id, org_id=uuid4(),
                         actor="t", required=False, required_by=None, timestamp=clock.now()))
    return user_id


def require(app: MfaApplication, clock: FrozenClock, user_id: UUID,
            mfa: MFA | None = None) -> int | None:
    mfa = mfa or app.mfa(user_id)
    mfa.set_requirement(not mfa.required, clock.now(), "admin:t")
    assert app.group_commit is not None
    return app.group_commit.save(mfa)


def test_saves_that_queue_share_one_transaction(app: HeldApplication,
                                                clock: FrozenClock) -> None:
    app.hold.set()
    users = [new_mfa(app, clock) for _ in range(21)]
    app.held.clear()
    app.hold.clear()
    app.transactions.clear()
    with ThreadPoolExecutor(21) as pool:
        first = pool.submit(require, app, clock, users[0])
        app.held.wait(5)  # the first transaction is under way; the others queue behind it
        rest = [pool.submit(require, app, clock, user) for user in users[1:]]
        assert app.group_commit is not None
        while app.group_commit._waiting.qsize() < 20:
            threading.Event().wait(0.001)
        app.hold.set()
        positions = [first.result()] + [future.result() for future in rest]
    assert app.transactions == [1, 20]
    assert all(position for position in positions)
    assert len(set(positions)) == 21
    for user, position in zip(users, positions, strict=True):
        assert app.mfa(user).required is True
        assert app.recorder.select_notifications(position, 1)[0].originator_id == mfa_id(user)


def test_a_conflict_in_a_batch_fails_only_its_own_save(app: HeldApplication,
                                                       clock: FrozenClock) -> None:
    app.hold.set()
    users = [new_mfa(app, clock) for _ in range(5)]
    stale = app.mfa(users[2])  # read before someone else changes it
    assert require(app, clock, users[2]) is not None
    app.held.clear()
    app.hold.clear()
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(require, app, clock, users[0])
        app.held.wait(5)
        rest = [pool.submit(require, app, clock, user) for user in users[1:]]
        loser = pool.submit(require, app, clock, users[2], stale)
        assert app.group_commit is not None
        while app.group_commit._waiting.qsize() < 5:
            threading.Event().wait(0.001)
        app.hold.set()
        assert first.result() and all(future.result() for future in rest)
        assert loser.result() is None
    # users[2]: created, changed before, changed again in the batch; the stale change lost
    assert [app.mfa(user).version for user in users] == [2, 2, 3, 2, 2]


def test_snapshots_are_taken_for_saves_in_a_batch(app: HeldApplication,
                                                  clock: FrozenClock) -> None:
    app.hold.set()
    user = new_mfa(app, clock)
    for _ in range(SNAPSHOT_INTERVAL):
        clock.advance(1)
        require(app, clock, user)
    assert app.snapshots is not None
    assert [s.originator_version for s in app.snapshots.get(mfa_id(user))] == [
        SNAPSHOT_INTERVAL]
    assert app.mfa(user).modified_on == clock.now()
