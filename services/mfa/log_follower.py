"""Follows the event log from a tracked position: the shared loop of projections and the relay.

The position lives in `mfa_tracking` (one row per follower). A follower handles a batch, then moves
its position only from the value it read (compare and set), in the same transaction as the view
for a projection, after the broker's confirms for the relay. A crash anywhere resumes from the
last recorded position; PostgreSQL positions have gaps, so nothing ever waits for a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from services.mfa.adapters.database import Database

log = logging.getLogger(__name__)

TRACKING_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mfa_tracking (
        projection text PRIMARY KEY,
        position bigint NOT NULL
    )""",
]
MOVE_POSITION = "UPDATE mfa_tracking SET position = ? WHERE projection = ? AND position = ?"


async def create_tracking(db: Database, names: Sequence[str]) -> None:
    for sql in TRACKING_SCHEMA:
        await db.execute(sql)
    for name in names:
        await db.execute("INSERT INTO mfa_tracking (projection, position) VALUES (?, 0)"
                         " ON CONFLICT (projection) DO NOTHING", name)


class LogFollower:
    name: str

    def __init__(self, app: Application[Any], db: Database, *, batch_size: int = 500,
                 idle_poll_seconds: float = 0.25, max_backoff_seconds: float = 30.0) -> None:
        self.app = app
        self.db = db
        self.batch_size = batch_size
        self.idle_poll_seconds = idle_poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.position = 0
        self.running = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._advanced = asyncio.Condition()

    async def handle(self, notifications: Sequence[Notification], start: int) -> bool:
        """Applies the batch and moves the position from `start`; False if another follower
        with the same name moved it first."""
        raise NotImplementedError

    async def load_position(self) -> int:
        row = await self.db.fetchrow("SELECT position FROM mfa_tracking WHERE projection = ?",
                                     self.name)
        self.position = int(row["position"]) if row else 0
        return self.position

    async def run_batch(self) -> int:
        """Handles the next batch of the log; returns how many events were read."""
        start = self.position
        notifications = await asyncio.to_thread(
            self.app.recorder.select_notifications, start=start, limit=self.batch_size,
            inclusive_of_start=False,
        )
        if not notifications:
            return 0
        if await self.handle(notifications, start):
            await self.advanced_to(notifications[-1].id)
        else:
            await self.load_position()
        return len(notifications)

    async def advanced_to(self, position: int) -> None:
        self.position = max(self.position, position)
        async with self._advanced:
            self._advanced.notify_all()

    async def catch_up(self) -> int:
        total = 0
        while count := await self.run_batch():
            total += count
        return total

    def kick(self) -> None:
        """New events were saved: read them now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Ends `run` after the batch in hand. Cancelling instead would leave that batch's
        thread using the store while it is being closed (a crash, with SQLite)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Follows the log until cancelled. Failures (store or broker down) are retried with a
        growing pause, never a crash loop; the position says where to resume."""
        self.running = True
        self._stopping = False
        backoff = 0.5
        try:
            await self.load_position()
            while not self._stopping:
                try:
                    if await self.run_batch():
                        backoff = 0.5
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("%s: %s: %s; retrying in %.1f s", self.name, type(e).__name__,
                                e, backoff)
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), backoff)  # stop() cuts it short
                    backoff = min(backoff * 2, self.max_backoff_seconds)
                    try:
                        await self.load_position()
                    except Exception:  # the store is still away: next round tells
                        log.debug("%s: position not readable yet", self.name)
                    continue
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll_seconds)
                except TimeoutError:
                    pass
        finally:
            self.running = False

    async def wait_for(self, position: int, within_seconds: float = 5.0) -> bool:
        """Until this follower has handled `position` (read-your-writes for the API). When the
        follower runs in another process, the tracking table is polled instead."""
        if self.position >= position:
            return True
        if not self.running:
            return await self._poll_for(position, within_seconds)
        self.kick()
        try:
            async with asyncio.timeout(within_seconds), self._advanced:
                await self._advanced.wait_for(lambda: self.position >= position)
        except TimeoutError:
            return False
        return True

    async def _poll_for(self, position: int, within_seconds: float) -> bool:
        pause = 0.002
        try:
            async with asyncio.timeout(within_seconds):
                while await self.load_position() < position:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.05)
        except TimeoutError:
            return False
        return True
