"""Runs a projection over the event log, on SQLite and PostgreSQL alike.

Each batch of events is applied in one transaction together with the projection's tracking
position. The first statement of that transaction moves the position only from the value this
runner read (compare and set), so a batch is applied exactly once even if two runners race, and a
crash at any point leaves view and position consistent: the next run resumes from the position.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from eventsourcing.application import Application

from services.mfa.adapters.database import Database, Statement

log = logging.getLogger(__name__)

TRACKING_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mfa_tracking (
        projection text PRIMARY KEY,
        position bigint NOT NULL
    )""",
]


class Projection(Protocol):
    name: str
    tables: tuple[str, ...]
    schema: list[str]

    def statements(self, event: Any) -> list[Statement]: ...


async def create_tables(db: Database, projections: list[Projection]) -> None:
    for sql in TRACKING_SCHEMA:
        await db.execute(sql)
    for projection in projections:
        for sql in projection.schema:
            await db.execute(sql)
        await db.execute("INSERT INTO mfa_tracking (projection, position) VALUES (?, 0)"
                         " ON CONFLICT (projection) DO NOTHING", projection.name)


class ProjectionRunner:
    def __init__(self, app: Application[Any], db: Database, projection: Projection,
                 batch_size: int = 500, idle_poll_seconds: float = 0.25) -> None:
        self.app = app
        self.db = db
        self.projection = projection
        self.batch_size = batch_size
        self.idle_poll_seconds = idle_poll_seconds
        self.position = 0
        self._wake = asyncio.Event()
        self._advanced = asyncio.Condition()

    async def load_position(self) -> int:
        row = await self.db.fetchrow("SELECT position FROM mfa_tracking WHERE projection = ?",
                                     self.projection.name)
        self.position = int(row["position"]) if row else 0
        return self.position

    async def run_batch(self) -> int:
        """Applies the next batch of events; returns how many were read."""
        start = self.position
        notifications = await asyncio.to_thread(
            self.app.recorder.select_notifications, start=start, limit=self.batch_size,
            inclusive_of_start=False,
        )
        if not notifications:
            return 0
        last = notifications[-1].id
        statements: list[Statement] = [
            ("UPDATE mfa_tracking SET position = ? WHERE projection = ? AND position = ?",
             (last, self.projection.name, start)),
        ]
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            statements.extend(self.projection.statements(event))
        if not await self.db.transaction(statements):
            # Another runner moved the position first: take it up from there.
            await self.load_position()
            return len(notifications)
        self.position = last
        async with self._advanced:
            self._advanced.notify_all()
        return len(notifications)

    async def catch_up(self) -> int:
        total = 0
        while count := await self.run_batch():
            total += count
        return total

    def kick(self) -> None:
        """New events were saved in this process: read them now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        await self.load_position()
        while True:
            try:
                if await self.run_batch():
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("projection %s failed; retrying", self.projection.name)
                await asyncio.sleep(1)
                await self.load_position()
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.idle_poll_seconds)
            except TimeoutError:
                pass

    async def wait_for(self, position: int, within_seconds: float = 5.0) -> bool:
        """Until this projection has applied `position` (read-your-writes for the API)."""
        if self.position >= position:
            return True
        self.kick()
        try:
            async with asyncio.timeout(within_seconds), self._advanced:
                await self._advanced.wait_for(lambda: self.position >= position)
        except TimeoutError:
            return False
        return True

    async def rebuild(self) -> int:
        """Empties the view and replays the whole log into it."""
        statements: list[Statement] = [
            ("UPDATE mfa_tracking SET position = 0 WHERE projection = ?",
             (self.projection.name,)),
        ]
        statements += [(f"DELETE FROM {table}", ()) for table in self.projection.tables]  # noqa: S608
        await self.db.transaction(statements)
        self.position = 0
        return await self.catch_up()
