"""Runs a projection over the event log, on SQLite and PostgreSQL alike.

Each batch is applied in one transaction whose first statement moves the tracking position
from the value this runner read (compare and set), so a batch is applied exactly once even if
two runners race, and a crash leaves view and position consistent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from services.mfa.adapters.database import Database, PostgresDatabase, Statement, ensure_columns
from services.mfa.adapters.store_health import is_outage
from services.mfa.log_follower import MOVE_POSITION, EventFailed, LogFollower, create_tracking


class ViewsBehind(Exception):
    """The views did not apply a command's events within the wait (MFA_VIEWS_WAIT_SECONDS):
    answering from them would show the state before the command."""

    def __init__(self, position: int, waited_seconds: float, behind: Sequence[str]) -> None:
        super().__init__(f"views {', '.join(behind)} have not applied position {position} "
                         f"within {waited_seconds:g} s")
        self.position = position
        self.waited_seconds = waited_seconds
        self.behind = list(behind)


def progress_channel(db: Database) -> str | None:
    """The PostgreSQL channel on which each committed batch announces `name:position`, for the
    API processes waiting to read their writes. Channels are per database: the schema is part
    of the name. SQLite runs in one process, where the runner signals its waiters directly."""
    return f"mfa_views:{db.schema}" if isinstance(db, PostgresDatabase) else None


class Projection(Protocol):
    name: str
    tables: tuple[str, ...]
    schema: list[str]
    # Indexes only PostgreSQL has; `{pg_trgm}` stands for the schema holding that extension.
    postgres_schema: list[str]

    def statements(self, event: Any, position: int) -> list[Statement]: ...


async def create_tables(db: Database, projections: list[Projection]) -> None:
    await create_tracking(db, [projection.name for projection in projections])
    for projection in projections:
        for sql in projection.schema:
            await db.execute(sql)
        for table, columns in getattr(projection, "added_columns", {}).items():
            await ensure_columns(db, table, columns)
    if isinstance(db, PostgresDatabase):
        pg_trgm = await db.install_extension("pg_trgm")
        for projection in projections:
            for sql in projection.postgres_schema:
                await db.execute(sql.format(pg_trgm=pg_trgm))


class ProjectionRunner(LogFollower):
    def __init__(self, app: Application[Any], db: Database, projection: Projection,
                 **options: Any) -> None:
        super().__init__(app, db, **options)
        self.projection = projection
        self.name = projection.name
        self.driven_by: LogFollower | None = None  # a ViewsFollower running it with others

    def kick(self) -> None:
        if self.driven_by is not None:
            self.driven_by.kick()
        else:
            super().kick()

    async def handle(self, notifications: Sequence[Notification], start: int) -> bool:
        events = [(self.app.mapper.to_domain_event(n), n.id) for n in notifications]
        return await self.apply(events, start)

    async def apply(self, events: Sequence[tuple[Any, int]], start: int) -> bool:
        """Applies decoded (event, position) pairs and moves the position from `start`, in
        one transaction that also announces the new position. When the transaction fails for
        another reason than the store being away, the events are applied one at a time to find
        the one at fault: EventFailed names it (the ones before it are applied)."""
        last = events[-1][1]
        statements: list[Statement] = [(MOVE_POSITION, (last, self.name, start))]
        for event, position in events:
            try:
                statements.extend(self.projection.statements(event, position))
            except Exception as e:
                raise EventFailed(position, type(event).__qualname__, e) from e
        channel = progress_channel(self.db)
        if channel is not None:
            statements.append(("SELECT pg_notify(?, ?)", (channel, f"{self.name}:{last}")))
        try:
            applied = await self.db.transaction(statements)
        except Exception as e:
            if is_outage(e):
                raise
            if len(events) == 1:
                raise EventFailed(last, type(events[0][0]).__qualname__, e) from e
            for one in events:
                if not await self.apply([one], self.position):
                    return False
            return True
        if applied:
            self.advanced_to(last)
        return applied

    async def reset(self) -> None:
        """Empties the view and moves its position back to the start of the log."""
        statements: list[Statement] = [
            ("UPDATE mfa_tracking SET position = 0 WHERE projection = ?", (self.name,)),
        ]
        statements += [(f"DELETE FROM {table}", ()) for table in self.projection.tables]  # noqa: S608
        channel = progress_channel(self.db)
        if channel is not None:
            statements.append(("SELECT pg_notify(?, ?)", (channel, f"{self.name}:0")))
        await self.db.transaction(statements)
        self.seen_at(0)


class ViewsFollower(LogFollower):
    """Follows the log for several views at once: each batch is read and decoded once, then
    applied to every view concurrently, each view in its own transaction with its own tracking
    position (so each stays exactly-once and can be rebuilt alone)."""

    name = "views"

    def __init__(self, runners: Sequence[ProjectionRunner], **options: Any) -> None:
        super().__init__(runners[0].app, runners[0].db, **options)
        self.runners = list(runners)
        for runner in self.runners:
            runner.driven_by = self

    async def load_position(self) -> int:
        for runner in self.runners:
            await runner.load_position()
        self.position = min(runner.position for runner in self.runners)
        return self.position

    async def handle(self, notifications: Sequence[Notification], start: int) -> bool:
        events = [(self.app.mapper.to_domain_event(n), n.id) for n in notifications]

        async def apply(runner: ProjectionRunner) -> None:
            behind = [(event, position) for event, position in events
                      if position > runner.position]
            try:
                if behind and not await runner.apply(behind, runner.position):
                    await runner.load_position()  # another process moved it: take it from there
            except Exception as e:
                if not is_outage(e):  # a store outage is the follower's to report, once
                    await runner.note_failure(e)
                raise
            if runner.failure is not None:
                await runner.note_recovery()

        # Each view goes as far as it can: one stuck on an event does not hold the others.
        outcomes = await asyncio.gather(*(apply(runner) for runner in self.runners),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        # A view left behind (reset by a rebuild elsewhere): resume from the slowest view.
        return all(runner.position >= notifications[-1].id for runner in self.runners)

    async def note_failure(self, error: BaseException) -> None:
        if isinstance(error, EventFailed):
            self.failed_attempts += 1  # the view's runner logged and recorded it
            return
        await super().note_failure(error)

    async def run(self) -> None:
        for runner in self.runners:
            runner.running = True  # their wait_for listens for this loop, not the table
        try:
            await super().run()
        finally:
            for runner in self.runners:
                runner.running = False



async def rebuild_all(runners: Sequence[ProjectionRunner], batch_size: int = 2000,
                      progress: Callable[[int, int], None] | None = None) -> int:
    """Rebuilds several views in one pass over the log: each batch is read and decoded once,
    then written to every view concurrently. Returns how many events were replayed."""
    if not runners:
        return 0
    app = runners[0].app
    for runner in runners:
        await runner.reset()
    position = total = 0
    while notifications := await asyncio.to_thread(
            app.recorder.select_notifications, start=position, limit=batch_size,
            inclusive_of_start=False):
        events = [(app.mapper.to_domain_event(n), n.id) for n in notifications]
        applied = await asyncio.gather(*(runner.apply(events, position) for runner in runners))
        if not all(applied):
            raise RuntimeError("a projector moved a view during the rebuild: stop it first")
        position = notifications[-1].id
        total += len(notifications)
        if progress is not None:
            progress(total, position)
    # The views were emptied and refilled in bulk. PostgreSQL's planner needs their new
    # statistics (the grid search chooses between its trigram indexes and an ordered scan by
    # them), and VACUUM moves the rows queued in the GIN indexes' pending lists into the
    # indexes, which every search would otherwise read through.
    for runner in runners:
        if runner.db.dialect == "postgres":
            for table in runner.projection.tables:
                await runner.db.execute(f"VACUUM (ANALYZE) {table}")
    return total
