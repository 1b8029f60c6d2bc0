"""Writes a NEW golden history with today's code: `python -m tests.golden.write v2`.

Only for a deliberate new version (see tests/golden/__init__.py): it refuses to touch a version
that exists. The committed versions are the contract; never rewrite one to make a test pass.

The users of tests/golden/history.py act on a fresh SQLite store under a frozen clock. The
stored records are copied out as they are (still encrypted, under a key made for this history
and committed beside it), with what the writing code held: every aggregate's state and its
time-travel answers. The views and public events are then made from those records loaded into
another fresh store, exactly as the test makes them.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from uuid import UUID

from services.mfa.adapters.event_store import StoreLocation
from services.mfa.application import MfaApplication
from services.mfa.domain.clock import FrozenClock
from tests.golden import history
from tests.golden.replay import (
    HERE,
    Golden,
    aggregates,
    as_json,
    loaded,
    public_events,
    record,
    time_travel,
    views,
    write_json,
    write_lines,
)
from tests.unit.support import START


def write_log(folder: Path, secret_key: str, database_url: str) -> None:
    clock = FrozenClock(START)
    app = MfaApplication(StoreLocation.parse(database_url).eventsourcing_env(secret_key),
                         clock=clock)
    try:
        story = history.write(app, clock)
        notifications = app.recorder.select_notifications(start=None, limit=1_000_000)
        write_lines(folder / "events.jsonl", (record(n, n.id) for n in notifications))
        ids = list(dict.fromkeys(UUID(str(n.originator_id)) for n in notifications))
        assert app.snapshots is not None
        write_lines(folder / "snapshots.jsonl", (record(s) for i in ids
                                                 for s in app.snapshots.recorder.select_events(i)))
        write_json(folder / "aggregates.json", aggregates(app, ids))
        write_json(folder / "time_travel.json", {
            "users": as_json(story.users), "organizations": as_json(story.organizations),
            "instants": as_json(story.instants),
            "answers": time_travel(app, story.users, story.instants)})
    finally:
        app.close()


async def write_read_side(folder: Path, scratch: Path) -> None:
    async with loaded(Golden(folder), f"sqlite:///{scratch / 'read.db'}", scratch) as service:
        write_json(folder / "views.json", await views(service))
        write_lines(folder / "public_events.jsonl", await public_events(service))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith("v"):
        print("usage: python -m tests.golden.write vN", file=sys.stderr)
        return 2
    version = argv[0]
    target = HERE / version
    if target.exists():
        print(f"{target} exists: a committed golden history is never rewritten",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / version
        folder.mkdir()
        secret_key = f"golden-{version}-TEST-KEY-not-a-secret-never-use-it-for-a-real-store"
        (folder / "secret.key").write_text(secret_key + "\n")
        write_log(folder, secret_key, f"sqlite:///{scratch}/write.db")
        asyncio.run(write_read_side(folder, Path(scratch)))
        shutil.copytree(folder, target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
