"""Runs a projection over the event log, on SQLite and PostgreSQL alike.

Each batch is applied in one transaction whose first statement moves the tracking position
from the value this runner read (compare and set), so a batch is applied exactly once even if
two runners race, and a crash leaves view and position consistent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from services.mfa.adapters.database import Database, Statement
from services.mfa.log_follower import MOVE_POSITION, LogFollower, create_tracking


class Projection(Protocol):
    name: str
    tables: tuple[str, ...]
    schema: list[str]

    def statements(self, event: Any, position: int) -> list[Statement]: ...


async def create_tables(db: Database, projections: list[Projection]) -> None:
    await create_tracking(db, [projection.name for projection in projections])
    for projection in projections:
        for sql in projection.schema:
            await db.execute(sql)


class ProjectionRunner(LogFollower):
    def __init__(self, app: Application[Any], db: Database, projection: Projection,
                 **options: Any) -> None:
        super().__init__(app, db, **options)
        self.projection = projection
        self.name = projection.name

    async def handle(self, notifications: Sequence[Notification], start: int) -> bool:
        statements: list[Statement] = [
            (MOVE_POSITION, (notifications[-1].id, self.name, start)),
        ]
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            statements.extend(self.projection.statements(event, notification.id))
        return await self.db.transaction(statements)

    async def rebuild(self) -> int:
        """Empties the view and replays the whole log into it."""
        await self.reset()
        return await self.catch_up()

    async def reset(self) -> None:
        """Empties the view and moves its position back to the start of the log."""
        statements: list[Statement] = [
            ("UPDATE mfa_tracking SET position = 0 WHERE projection = ?", (self.name,)),
        ]
        statements += [(f"DELETE FROM {table}", ()) for table in self.projection.tables]  # noqa: S608
        await self.db.transaction(statements)
        self.position = 0
