"""Telling a store outage from any other failure, and answering it quickly.

A store that is away (PostgreSQL restarting, the network cut, a pool that cannot connect) shows
up as a different exception in each driver: psycopg and eventsourcing raise OperationalError or
InterfaceError, asyncpg its connection errors, sockets OSError, a bounded wait TimeoutError. All
of them mean the same to a client: 503 `unavailable`, try again shortly. Anything else is a bug
or a bad request and keeps its own answer.

`StoreGuard` bounds how long a request waits for the store. Once a call found the store
unreachable (a connection error, not a mere slow answer), it answers at once (a circuit
breaker) instead of letting every request wait out the library's connection timeout, and lets
one probe through each `probe_seconds` to notice the store's return. No restart is needed: the
pools reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import asyncpg
import psycopg
from eventsourcing import persistence

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store cannot be reached right now (or did not answer in time)."""


class _Expired(StoreUnavailable):
    """A call that waited for a thread past its deadline, never started: no news of the store."""


_OUTAGES: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    persistence.OperationalError,  # eventsourcing's, after its own retries
    persistence.InterfaceError,
    psycopg.OperationalError,  # psycopg_pool.PoolTimeout is one too
    psycopg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed", a pool closing under a call
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout, lock_timeout
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def is_outage(error: BaseException) -> bool:
    """Whether `error`, or what caused it, says the store is away rather than wrong."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, _OUTAGES):
            return True
        if isinstance(current, sqlite3.OperationalError) and "locked" in str(current):
            return True  # past the busy timeout; other SQLite errors are bugs
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class StoreGuard:
    def __init__(self, timeout_seconds: float, probe_seconds: float = 1.0) -> None:
        self.timeout_seconds = timeout_seconds
        self.probe_seconds = probe_seconds
        self.down_since: float | None = None
        self._next_probe = 0.0

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    async def call(self, executor: Executor, fn: Callable[..., T], *args: Any,
                   within: float | None = -1.0) -> T:
        """Runs `fn(*args)` in `executor` within `within` seconds (-1: the guard's timeout;
        None: no bound).
        While the store is known to be away, raises StoreUnavailable at once, except for one
        probe every `probe_seconds`. A call that waited in the executor's queue past its
        deadline is not started: its caller has had its answer already."""
        timeout = self.timeout_seconds if within == -1.0 else within
        now = time.monotonic()
        if self.down_since is not None:
            if now < self._next_probe:
                raise StoreUnavailable("the store is unreachable")
            self._next_probe = now + self.probe_seconds
        deadline = now + timeout if timeout is not None else None

        def bounded() -> T:
            if deadline is not None and time.monotonic() > deadline:
                raise _Expired("the store did not answer in time")
            return fn(*args)

        future = asyncio.get_running_loop().run_in_executor(executor, bounded)
        # The call's outcome tells the breaker, even when it comes after its caller's answer.
        future.add_done_callback(self._outcome)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            # The call goes on in its thread (a thread cannot be stopped); its caller does not
            # wait for it. A write may still complete: like any timeout, 503 means "unknown".
            # A slow answer alone (a busy machine) does not open the breaker: only the store
            # saying it is unreachable does.
            raise StoreUnavailable("the store did not answer in time") from None

    def _outcome(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self.succeeded()
        elif is_outage(error) and not isinstance(error, _Expired):
            self.failed()

    def failed(self) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self._next_probe = self.down_since + self.probe_seconds
            log.warning("the event store is unreachable: answering 503 until it returns")

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.info("the event store is back after %.1f s", time.monotonic() - self.down_since)
            self.down_since = None
