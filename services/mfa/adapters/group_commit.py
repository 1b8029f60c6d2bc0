"""Group commit: saves of different aggregates that arrive together go to the store in one
transaction.

eventsourcing takes an exclusive lock on the events table for every save on PostgreSQL (so that
readers never miss a late commit), and SQLite has one writer: saves are serialized whatever the
number of threads or processes. One transaction for many aggregates pays that price once. Each
aggregate is still checked by optimistic concurrency (its next version must be free): when the
batch's transaction fails on a conflict, its saves are tried one by one, so only the command that
lost its race is retried, by its own caller.

One writer thread takes whatever saves are waiting when it is free: alone, a save goes at once;
under load, the saves that queued during one transaction go together in the next.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

log = logging.getLogger(__name__)
MAX_BATCH = 200


@dataclass
class _Save:
    events: list[Any]  # collected from the aggregates once: a retry alone saves them again
    kinds: dict[object, type[Aggregate]]  # aggregate id -> class, for snapshots
    done: Future[int | None] = field(default_factory=Future)


class GroupCommit:
    def __init__(self, app: Application[Any]) -> None:
        self._app = app
        self._waiting: queue.SimpleQueue[_Save | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._writer.start()
        self.transactions = 0
        self.saves = 0

    def save(self, *aggregates: Aggregate) -> int | None:
        """Saves the aggregates' pending events with whatever else is waiting. Returns the log
        position of their last event (0: nothing to save), or None when another save of one of
        them came first (the caller gets it again and retries). Blocks the calling thread."""
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        if not events:
            return 0
        request = _Save(events, {aggregate.id: type(aggregate) for aggregate in aggregates})
        self._waiting.put(request)
        return request.done.result()

    def close(self) -> None:
        self._waiting.put(None)
        self._writer.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._waiting.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Save]) -> None:
        try:
            positions = self._save(batch)
        except IntegrityError:
            if len(batch) == 1:
                batch[0].done.set_result(None)
                return
            for request in batch:  # who lost? each alone now
                self._commit([request])
            return
        except BaseException as error:  # the store is down, say: every caller hears of it
            for request in batch:
                request.done.set_exception(error)
            return
        for request, position in zip(batch, positions, strict=True):
            request.done.set_result(position)

    def _save(self, batch: list[_Save]) -> list[int]:
        # The event store itself: Application.save() would check each event against a runtime
        # Protocol (slow) and then do nothing more for events given without their aggregates.
        recordings = self._app.events.put([event for request in batch for event in request.events])
        self.transactions += 1
        self.saves += len(batch)
        last: dict[object, int] = {}
        for recording in recordings:
            originator = recording.domain_event.originator_id
            last[originator] = max(last.get(originator, 0), recording.notification.id)
        for request in batch:
            self._snapshot(request)
        return [max(last.get(aggregate_id, 0) for aggregate_id in request.kinds)
                for request in batch]

    def _snapshot(self, request: _Save) -> None:
        """What Application.save() does for aggregates (snapshots), here for events saved alone."""
        intervals = self._app.snapshotting_intervals or {}
        for event in request.events:
            interval = intervals.get(request.kinds.get(event.originator_id))  # type: ignore[arg-type]
            if interval and event.originator_version % interval == 0:
                try:
                    self._app.take_snapshot(event.originator_id, event.originator_version)
                except Exception:  # a missed snapshot costs only speed: the events are saved
                    log.exception("snapshot of %s at version %d failed", event.originator_id,
                                  event.originator_version)
