"""The one clock of the service. Time-dependent rules take it injected, so tests can move time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(tz=UTC)


class FrozenClock:
    """A clock that only moves when told to (tests, benchmarks, demos of the window)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(tz=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self._now = when


def not_before(now: datetime, last: datetime) -> datetime:
    """An aggregate's event times never go backwards, even when the instance recording it runs
    a clock behind the one that recorded the last event: time travel (and every reader that
    looks for "the state at T") can then trust the order of the times."""
    return now if now >= last else last
