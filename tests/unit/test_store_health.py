"""Store outages told from other failures, and the breaker that answers them quickly."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import psycopg
import pytest
from eventsourcing import persistence
from psycopg_pool import PoolTimeout

from services.mfa.adapters.store_health import StoreGuard, StoreUnavailable, is_outage


@pytest.mark.parametrize("error", [
    persistence.OperationalError("pool timeout"), persistence.InterfaceError("closed"),
    PoolTimeout("no connection"), psycopg.OperationalError("server closed"),
    asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
    asyncpg.exceptions.CannotConnectNowError("starting"), ConnectionRefusedError(),
    TimeoutError(), sqlite3.OperationalError("database is locked"),
    RuntimeError("wrapped"),  # caused by an outage, below
])
def test_outages(error: Exception) -> None:
    if type(error) is RuntimeError:
        error.__cause__ = ConnectionResetError()
    assert is_outage(error)


@pytest.mark.parametrize("error", [
    persistence.IntegrityError("conflict"), ValueError("bad"), KeyError("x"),
    sqlite3.OperationalError("no such table: x"), psycopg.errors.UniqueViolation("dup"),
])
def test_not_outages(error: Exception) -> None:
    assert not is_outage(error)


async def test_breaker_answers_at_once_while_the_store_is_away_and_closes_on_return() -> None:
    guard = StoreGuard(timeout_seconds=1.0, probe_seconds=0.2)
    calls = 0
    away = True

    def store_call() -> str:
        nonlocal calls
        calls += 1
        if away:
            raise persistence.OperationalError("connection refused")
        return "ok"

    with ThreadPoolExecutor(2) as executor:
        with pytest.raises(persistence.OperationalError):
            await guard.call(executor, store_call)
        assert guard.is_down
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(StoreUnavailable):
                await guard.call(executor, store_call)
        assert time.monotonic() - started < 0.1
        assert calls == 1, "no call reached the store while the breaker was open"
        away = False
        await asyncio.sleep(0.25)
        assert await guard.call(executor, store_call) == "ok"  # the probe
        assert not guard.is_down
        assert await guard.call(executor, store_call) == "ok"


async def test_a_slow_call_answers_in_time_without_opening_the_breaker() -> None:
    guard = StoreGuard(timeout_seconds=0.2)
    release = threading.Event()
    with ThreadPoolExecutor(1) as executor:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await guard.call(executor, lambda: release.wait(5))
        assert time.monotonic() - started < 0.5
        assert not guard.is_down
        ran = []
        queued = asyncio.ensure_future(guard.call(executor, lambda: ran.append(1)))
        with pytest.raises(StoreUnavailable):
            await queued  # waited behind the slow call past its deadline
        release.set()
        await asyncio.sleep(0.1)
        assert ran == [], "a call whose caller had its answer is not started"
        assert not guard.is_down


async def test_a_late_connection_error_opens_the_breaker() -> None:
    guard = StoreGuard(timeout_seconds=0.1, probe_seconds=5)

    def slow_then_refused() -> None:
        time.sleep(0.3)
        raise psycopg.OperationalError("connection refused")

    with ThreadPoolExecutor(1) as executor:
        with pytest.raises(StoreUnavailable):
            await guard.call(executor, slow_then_refused)
        await asyncio.sleep(0.4)
        assert guard.is_down
