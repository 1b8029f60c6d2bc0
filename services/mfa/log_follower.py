"""Follows the event log from a tracked position: the shared loop of projections and the relay.

The position lives in `mfa_tracking` (one row per follower). A follower handles a batch, then moves
its position only from the value it read (compare and set), in the same transaction as the view
for a projection, after the broker's confirms for the relay. A crash anywhere resumes from the
last recorded position; PostgreSQL positions have gaps, so nothing ever waits for a missing one.

A follower that cannot go on (an event its handler fails on, the store or the broker away) stops
where it is, visibly: `failure` says where and why, the error is logged once (not at every
retry) and recorded in `mfa_follower_failures` for `mfa projections status`, and it retries
with a pause that doubles up to `max_backoff_seconds`. New events do not cut that pause short
(under load they would turn it into a busy loop); `resume()` does, when what was missing is
back (the broker reconnected, the store's listener reconnected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from services.mfa.adapters.database import Database
from services.mfa.adapters.leadership import Leadership
from services.mfa.adapters.store_health import is_outage

log = logging.getLogger(__name__)

TRACKING_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mfa_tracking (
        projection text PRIMARY KEY,
        position bigint NOT NULL
    )""",
    # The failure each follower is stuck on now, if any (one row per stuck follower).
    """CREATE TABLE IF NOT EXISTS mfa_follower_failures (
        follower text PRIMARY KEY,
        position bigint NOT NULL,
        event_type text,
        error text NOT NULL,
        since double precision NOT NULL
    )""",
]
MOVE_POSITION = "UPDATE mfa_tracking SET position = ? WHERE projection = ? AND position = ?"
RECORD_FAILURE = (
    "INSERT INTO mfa_follower_failures (follower, position, event_type, error, since)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (follower) DO UPDATE SET position = excluded.position,"
    " event_type = excluded.event_type, error = excluded.error, since = excluded.since")


async def create_tracking(db: Database, names: Sequence[str]) -> None:
    for sql in TRACKING_SCHEMA:
        await db.execute(sql)
    for name in names:
        await db.execute("INSERT INTO mfa_tracking (projection, position) VALUES (?, 0)"
                         " ON CONFLICT (projection) DO NOTHING", name)


class EventFailed(Exception):
    """Handling the event at `position` failed, and not because the store was away."""

    def __init__(self, position: int, event_type: str, cause: BaseException) -> None:
        super().__init__(f"position {position} ({event_type}): {type(cause).__name__}: {cause}")
        self.position = position
        self.event_type = event_type
        self.cause = cause


@dataclass(frozen=True)
class Failure:
    position: int  # the event that failed, or the next one to handle
    event_type: str | None  # None: not the event's fault (the store or the broker is away)
    error: str
    since: float  # wall-clock time, for people

    def same_as(self, other: Failure | None) -> bool:
        return other is not None and (self.position, self.event_type, self.error.split(":")[0]) \
            == (other.position, other.event_type, other.error.split(":")[0])

    def describe(self) -> str:
        what = f"{self.event_type} at position {self.position}" if self.event_type \
            else f"before position {self.position}"
        return f"{what}: {self.error}"


def failure_of(error: BaseException, next_position: int) -> Failure:
    if isinstance(error, EventFailed):
        return Failure(error.position, error.event_type,
                       f"{type(error.cause).__name__}: {error.cause}"[:500], time.time())
    return Failure(next_position, None, f"{type(error).__name__}: {error}"[:500], time.time())


class LogFollower:
    name: str

    def __init__(self, app: Application[Any], db: Database, *, batch_size: int = 500,
                 idle_poll_seconds: float = 0.25, max_backoff_seconds: float = 10.0,
                 min_backoff_seconds: float = 0.5) -> None:
        self.app = app
        self.db = db
        self.batch_size = batch_size
        self.idle_poll_seconds = idle_poll_seconds
        self.min_backoff_seconds = min_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        # How often `wait_for` re-reads the tracking table when this follower runs elsewhere
        # (a fallback: the projector announces its progress, see bootstrap.running).
        self.poll_seconds = 0.05
        self.position = 0
        self.running = False
        self.failure: Failure | None = None
        self.failed_attempts = 0
        self._stopping = False
        self._wake = asyncio.Event()
        self._resume = asyncio.Event()
        self._progress = asyncio.Event()

    async def handle(self, notifications: Sequence[Notification], start: int) -> bool:
        """Applies the batch and moves the position from `start`; False if another follower
        with the same name moved it first."""
        raise NotImplementedError

    async def load_position(self) -> int:
        row = await self.db.fetchrow("SELECT position FROM mfa_tracking WHERE projection = ?",
                                     self.name)
        self.seen_at(int(row["position"]) if row else 0)
        return self.position

    def seen_at(self, position: int) -> None:
        """The position as the tracking table (or the projector's announcement) has it: it
        may go back, when a view is rebuilt."""
        self.position = position
        self._signal_progress()

    def advanced_to(self, position: int) -> None:
        self.position = max(self.position, position)
        self._signal_progress()

    def _signal_progress(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

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
            self.advanced_to(notifications[-1].id)
        else:
            await self.load_position()
        return len(notifications)

    async def catch_up(self) -> int:
        total = 0
        while count := await self.run_batch():
            total += count
        return total

    def kick(self) -> None:
        """New events were saved: read them now rather than at the next poll."""
        self._wake.set()

    def resume(self) -> None:
        """What was missing (the store, the broker) is back: retry now, from the shortest
        pause again."""
        self._resume.set()
        self._wake.set()

    def stop(self) -> None:
        """Ends `run` after the batch in hand. Cancelling instead would leave that batch's
        thread using the store while it is being closed (a crash, with SQLite)."""
        self._stopping = True
        self._resume.set()
        self._wake.set()

    async def run(self) -> None:
        """Follows the log until stopped. Failures are retried after a pause that doubles up
        to `max_backoff_seconds`, never a crash loop; the position says where to resume."""
        self.running = True
        self._stopping = False
        backoff = self.min_backoff_seconds
        try:
            with contextlib.suppress(Exception):  # the store may be away: the loop tells
                await self.load_position()
            while not self._stopping:
                try:
                    count = await self.run_batch()
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    await self.note_failure(e)
                    self._resume.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._resume.wait(), backoff)
                    resumed = self._resume.is_set()
                    backoff = self.min_backoff_seconds if resumed \
                        else min(backoff * 2, self.max_backoff_seconds)
                    with contextlib.suppress(Exception):  # still away: the next round tells
                        await self.load_position()
                    continue
                backoff = self.min_backoff_seconds
                if self.failure is not None:
                    await self.note_recovery()
                if count:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll_seconds)
        finally:
            self.running = False

    async def note_failure(self, error: BaseException) -> None:
        """Logs a failure once (then only at debug level while it stays the same) and records
        it for `mfa projections status`."""
        self.failed_attempts += 1
        failure = failure_of(error, self.position + 1)
        if failure.same_as(self.failure):
            log.debug("%s: still failing (attempt %d): %s", self.name, self.failed_attempts,
                      failure.describe())
            return
        self.failure = failure
        if failure.event_type is None and is_outage(error):
            log.warning("%s: stopped %s; retrying with a growing pause (at most %.0f s)",
                        self.name, failure.describe(), self.max_backoff_seconds)
        else:
            log.error("%s: stopped on %s; retrying with a growing pause (at most %.0f s)",
                      self.name, failure.describe(), self.max_backoff_seconds,
                      exc_info=error)
        with contextlib.suppress(Exception):  # the store itself may be what is away
            await self.db.execute(RECORD_FAILURE, self.name, failure.position,
                                  failure.event_type, failure.error, failure.since)

    async def note_recovery(self) -> None:
        failure, attempts = self.failure, self.failed_attempts
        self.failure, self.failed_attempts = None, 0
        if failure is None:
            return
        log.info("%s: going on at position %d after %d failed attempts (%.1f s stopped)",
                 self.name, self.position, attempts, time.time() - failure.since)
        with contextlib.suppress(Exception):
            await self.db.execute("DELETE FROM mfa_follower_failures WHERE follower = ?",
                                  self.name)

    async def wait_for(self, position: int, within_seconds: float = 5.0) -> bool:
        """Until this follower has handled `position` (read-your-writes for the API); False
        when it has not within `within_seconds`. When the follower runs in another process,
        its announcements move `position` (see bootstrap.running), and the tracking table is
        read every `poll_seconds` in case one was missed."""
        if self.position >= position:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_seconds
        if self.running:
            self.kick()
        while self.position < position:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            progress = self._progress
            pause = remaining if self.running else min(remaining, self.poll_seconds)
            try:
                async with asyncio.timeout(pause):
                    await progress.wait()
            except TimeoutError:
                if not self.running:
                    await self.load_position()
        return True


async def follow_while_leading(follower: LogFollower, leadership: Leadership) -> None:
    """Runs `follower` only while this process leads; stands by otherwise. Losing leadership
    stops the follower after the batch in hand (the position's compare and set keeps a batch
    handled by two leaders recorded once; a relay may then publish it twice, never skip it)."""
    try:
        while await leadership.acquire():
            follow = asyncio.create_task(follower.run(), name=f"follow-{follower.name}")
            lost = asyncio.create_task(leadership.lost(), name=f"lead-{follower.name}")
            done, _ = await asyncio.wait({follow, lost}, return_when=asyncio.FIRST_COMPLETED)
            follower.stop()
            lost.cancel()
            await asyncio.gather(follow, lost, return_exceptions=True)
            if lost not in done:  # the follower stopped: shutting down
                break
            await leadership.release()  # stand by again, from a fresh session
    finally:
        await leadership.release()
