"""Old logs still replay (issue 9): each committed golden history (tests/golden/) loaded into a
fresh store, SQLite and PostgreSQL, gives exactly what the code that wrote it had: every
aggregate's state (through its snapshot, and from its events alone), the shown 2FA state, the
time-travel answers, the rebuilt views and the public events.

A failure here means today's code reads an old log differently. Fix the code (an upcaster, a
registered topic); never the committed files (tests/golden/__init__.py says why).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate

from services.mfa.application import MfaApplication
from services.mfa.projections import user_state
from tests.golden.replay import (
    HERE,
    Golden,
    aggregate_state,
    aggregates,
    from_events,
    loaded,
    public_events,
    shown,
    time_travel,
    versions,
    views,
)


@pytest.fixture(params=versions())
def golden(request: pytest.FixtureRequest) -> Golden:
    return Golden(HERE / request.param)


def check_log(app: MfaApplication, golden: Golden) -> None:
    expected = golden.expected_aggregates()
    assert aggregates(app, [UUID(i) for i in expected]) == expected
    for aggregate_id, state in expected.items():
        assert aggregate_state(from_events(app, UUID(aggregate_id))) == state, aggregate_id
    snapshots = [app.mapper.to_domain_event(s) for s in golden.snapshots]
    assert snapshots, "the history has a snapshot"
    for snapshot in snapshots:
        aggregate: Aggregate = snapshot.mutate(None)  # type: ignore[attr-defined]
        assert aggregate_state(aggregate) == aggregate_state(
            from_events(app, aggregate.id, aggregate.version))

    travel = golden.expected("time_travel.json")
    users = {name: UUID(user_id) for name, user_id in travel["users"].items()}
    instants = {name: datetime.fromisoformat(at) for name, at in travel["instants"].items()}
    assert time_travel(app, users, instants) == travel["answers"]


async def test_a_golden_history_replays_exactly(golden: Golden, database_url: str,
                                                tmp_path: Path) -> None:
    async with loaded(golden, database_url, tmp_path) as service:
        await service.call(check_log, service.app, golden)
        found = await views(service)
        for name, rows in golden.expected("views.json").items():
            assert found[name] == rows, name
        assert await public_events(service) == golden.expected_lines("public_events.jsonl")

        # One shown state: the per-user view reads what the aggregate shows.
        for name, user_id in golden.expected("time_travel.json")["users"].items():
            mfa = await service.call(service.app.mfa, UUID(user_id))
            assert await user_state.read(service.db, UUID(user_id)) == mfa.shown_state(), name
            assert await service.two_factor(UUID(user_id)) == shown(mfa)
