"""Reading and replaying a golden history: its files, a fresh store loaded with its records, and
what today's code makes of them (aggregate states, time travel, views, public events) in the
same JSON form the files hold. Used by the test and by the writer alike."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from contracts.events import PublicEvent
from services.messaging.bus import InProcessBus
from services.mfa.adapters.event_store import StoreLocation
from services.mfa.application import MfaApplication
from services.mfa.bootstrap import Service, build_service, close_service
from services.mfa.config import Settings
from services.mfa.domain.mfa import MFA
from services.mfa.projections.runner import rebuild_all
from tests.conftest import FAST_PASSWORDS

HERE = Path(__file__).resolve().parent


def versions() -> list[str]:
    return sorted(p.name for p in HERE.iterdir() if p.is_dir() and p.name.startswith("v"))


@dataclass(frozen=True)
class Golden:
    """One committed golden history."""

    path: Path

    @property
    def secret_key(self) -> str:
        return (self.path / "secret.key").read_text().strip()

    @property
    def events(self) -> list[StoredEvent]:
        return [stored_event(r) for r in read_lines(self.path / "events.jsonl")]

    @property
    def snapshots(self) -> list[StoredEvent]:
        return [stored_event(r) for r in read_lines(self.path / "snapshots.jsonl")]

    @property
    def positions(self) -> list[int]:
        return [r["position"] for r in read_lines(self.path / "events.jsonl")]

    def expected_aggregates(self) -> dict[str, Any]:
        """aggregates.json as today's classes hold those states: each state upcast from the
        class version that wrote it (recorded since v2; v1 was written at version 1) to
        today's, by the same upcasters that read the stored snapshots."""
        found: dict[str, Any] = self.expected("aggregates.json")
        for entry in found.values():
            cls = resolve_topic(entry["class"])
            current = getattr(cls, "class_version", 1)
            for version in range(entry.get("class_version", 1), current):
                getattr(cls, f"upcast_v{version}_v{version + 1}")(entry["state"])
            entry["class_version"] = current
        return found

    def expected(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())

    def expected_lines(self, name: str) -> list[Any]:
        return list(read_lines(self.path / name))


def read_lines(path: Path) -> Iterator[Any]:
    with path.open() as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def write_lines(path: Path, records: Iterable[Any]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def record(stored: StoredEvent, position: int | None = None) -> dict[str, Any]:
    """A stored record as a JSON line: exactly what the store holds, the state still encrypted."""
    line: dict[str, Any] = {
        "originator_id": str(stored.originator_id),
        "originator_version": stored.originator_version,
        "topic": stored.topic,
        "state": base64.b64encode(stored.state).decode(),
    }
    if position is not None:
        line["position"] = position
    return line


def stored_event(line: dict[str, Any]) -> StoredEvent:
    return StoredEvent(originator_id=UUID(line["originator_id"]),
                       originator_version=line["originator_version"], topic=line["topic"],
                       state=base64.b64decode(line["state"]))


# ---- what the code makes of the log, as JSON ---------------------------------------------------


def as_json(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def shown(mfa: MFA) -> dict[str, Any]:
    """The user's 2FA state as GET /api/me shows it."""
    return mfa.shown_state().to_json()


def aggregate_state(aggregate: Aggregate) -> dict[str, Any]:
    """Everything the aggregate holds (its id, version and times included), its class's topic,
    and for an MFA aggregate the state it shows."""
    state = {name: as_json(value) for name, value in vars(aggregate).items()
             if name != "_pending_events"}
    found: dict[str, Any] = {"class": get_topic(type(aggregate)),
                             "class_version": getattr(type(aggregate), "class_version", 1),
                             "state": state}
    if isinstance(aggregate, MFA):
        found["shown"] = shown(aggregate)
    return found


def from_events(app: MfaApplication, aggregate_id: UUID, version: int | None = None) -> Any:
    """The aggregate from its events alone: no snapshot, no cache."""
    aggregate = None
    for event in app.events.get(aggregate_id, lte=version):
        aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
    return aggregate


def aggregates(app: MfaApplication, ids: Iterable[UUID]) -> dict[str, Any]:
    return {str(i): aggregate_state(app.repository.get(i)) for i in sorted(ids, key=str)}


def time_travel(app: MfaApplication, users: dict[str, UUID],
                instants: dict[str, datetime]) -> dict[str, Any]:
    """Each user's MFA state at each instant (None: not created yet), as the audit reads it."""
    answers: dict[str, Any] = {}
    for name, user_id in sorted(users.items()):
        answers[name] = {}
        for instant, at in sorted(instants.items()):
            mfa = app.mfa_at(user_id, at)
            answers[name][instant] = None if mfa is None else {
                "version": mfa.version, "shown": shown(mfa), "failures": mfa.failures,
                "locked": mfa.is_locked(at)}
    return answers


# The views as `mfa projections rebuild` leaves them, every column that matters, rows sorted.
VIEWS = {
    "user_state": "SELECT user_id, org_id, status, required, recovery_codes_left, locked_until"
                  " FROM mfa_user_state",
    "users_grid": "SELECT user_id, org_id, email, name, role, status, required, required_by"
                  " FROM mfa_users_grid",
    "users_grid_counts": "SELECT org_id, total, on_count, required_count"
                         " FROM mfa_users_grid_counts",
    "audit_log": "SELECT position, event_id, org_id, user_id, type, actor, occurred_at, data"
                 " FROM mfa_audit_log",
}


def _view_row(row: dict[str, Any]) -> dict[str, Any]:
    """SQLite and PostgreSQL rows alike (SQLite's booleans are integers, audit data is text)."""
    found = dict(row)
    if "required" in found:
        found["required"] = bool(found["required"])
    if "data" in found:
        found["data"] = json.loads(found["data"])
    return found


async def views(service: Service) -> dict[str, list[dict[str, Any]]]:
    """Empties and rebuilds every view from the log, as `mfa projections rebuild` does."""
    await rebuild_all(service.projections)
    found = {}
    for name, sql in VIEWS.items():
        rows = [_view_row(r) for r in await service.db.fetch(sql)]
        found[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    return found


async def public_events(service: Service) -> list[PublicEvent]:
    """What the relay publishes for the whole log, from its start."""
    published: list[PublicEvent] = []

    async def collect(message: Any) -> None:
        published.append(message)

    await service.bus.subscribe(collect)
    await service.relay.catch_up()
    return published


@contextlib.asynccontextmanager
async def loaded(golden: Golden, database_url: str, var_dir: Path) -> AsyncIterator[Service]:
    """The service on a fresh store holding exactly the golden records (the same positions)."""
    settings = Settings(database_url=database_url, secret_key=golden.secret_key,
                        var_dir=var_dir)
    service = await build_service(settings, passwords=FAST_PASSWORDS, bus=InProcessBus())
    try:
        app = service.app
        await service.call(app.recorder.insert_events, golden.events)
        stored = await service.call(lambda: app.recorder.select_notifications(
            start=None, limit=len(golden.positions) + 1))
        assert [n.id for n in stored] == golden.positions, "the log loads at its own positions"
        assert app.snapshots is not None
        await service.call(app.snapshots.recorder.insert_events, golden.snapshots)
        yield service
    finally:
        await close_service(service)


def in_memory(golden: Golden) -> MfaApplication:
    """The application on an in-memory store holding the golden records: to decode and replay
    them without a database."""
    env = StoreLocation(kind="postgres").eventsourcing_env(golden.secret_key)
    app = MfaApplication({key: env[key] for key in ("CIPHER_TOPIC", "CIPHER_KEY")})
    app.recorder.insert_events(golden.events)
    assert app.snapshots is not None
    app.snapshots.recorder.insert_events(golden.snapshots)
    return app
