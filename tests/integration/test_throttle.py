"""The password throttle's counters on the real stores: exact under bursts, forgetting, and a
reservation left by a dead process not holding a client forever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from services.mfa.adapters.database import Database, PostgresDatabase, SqliteDatabase
from services.mfa.adapters.event_store import StoreLocation
from services.mfa.adapters.throttle import SCHEMA, STALE_SECONDS, PasswordThrottle
from services.mfa.domain.clock import FrozenClock
from services.mfa.domain.errors import LockedOut
from services.mfa.domain.lockout import LockoutPolicy

POLICY = LockoutPolicy(threshold=5, base_seconds=30, max_seconds=3600)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    location = StoreLocation.parse(database_url)
    database: Database
    if location.kind == "sqlite":
        database = SqliteDatabase(location.sqlite_path)
    else:
        database = await PostgresDatabase.connect(
            host=location.host, port=location.port, user=location.user,
            password=location.password, dbname=location.dbname, schema=location.schema)
    for sql in SCHEMA:
        await database.execute(sql)
    yield database
    await database.close()


@pytest.fixture
def throttle(db: Database) -> PasswordThrottle:
    return PasswordThrottle(db, b"k" * 32, forget_seconds=24 * 3600)


async def attempt(throttle: PasswordThrottle, clock: FrozenClock, *,
                  right: bool = False) -> str:
    limits = [throttle.limit("pair", "192.0.2.1\0a@example.com", POLICY,
                             cleared_by_success=True)]
    try:
        reservation = await throttle.reserve(limits, clock.now())
    except LockedOut as locked:
        return f"wait {(locked.until - clock.now()).total_seconds():.0f}"
    await asyncio.sleep(0)  # others may reserve meanwhile
    if right:
        await throttle.succeeded(reservation)
        return "ok"
    failure = await throttle.failed(reservation, clock.now())
    return f"failure {failure.failures}"


async def test_a_burst_of_guesses_gets_no_more_tries_than_one_at_a_time(
        throttle: PasswordThrottle, clock: FrozenClock) -> None:
    answers = await asyncio.gather(*(attempt(throttle, clock) for _ in range(12)))
    failures = [a for a in answers if a.startswith("failure")]
    assert len(failures) == 5, answers
    assert await attempt(throttle, clock) == "wait 30"


async def test_the_wait_doubles_one_guess_at_a_time(throttle: PasswordThrottle,
                                                   clock: FrozenClock) -> None:
    assert [await attempt(throttle, clock) for _ in range(6)] == [
        "failure 1", "failure 2", "failure 3", "failure 4", "failure 5", "wait 30"]
    clock.advance(30)
    assert await attempt(throttle, clock) == "failure 6"
    assert await attempt(throttle, clock) == "wait 60"
    clock.advance(60)
    assert await attempt(throttle, clock, right=True) == "ok"  # clears this client's count
    assert await attempt(throttle, clock) == "failure 1"


async def test_counts_are_forgotten_after_a_quiet_day(throttle: PasswordThrottle,
                                                      clock: FrozenClock) -> None:
    for _ in range(4):
        await attempt(throttle, clock)
    clock.advance(24 * 3600 + 1)
    assert await attempt(throttle, clock) == "failure 1"


async def test_a_reservation_of_a_dead_process_is_forgotten(throttle: PasswordThrottle,
                                                           clock: FrozenClock) -> None:
    limits = [throttle.limit("pair", "x", POLICY, cleared_by_success=True)]
    for _ in range(5):  # reserved, never finished (the process was killed)
        await throttle.reserve(limits, clock.now())
    with pytest.raises(LockedOut) as busy:
        await throttle.reserve(limits, clock.now())
    assert busy.value.until == clock.now() + timedelta(seconds=1)
    clock.advance(STALE_SECONDS + 1)
    await throttle.reserve(limits, clock.now())


async def test_a_refusal_by_a_later_limit_reserves_nothing(throttle: PasswordThrottle,
                                                           clock: FrozenClock) -> None:
    pair = throttle.limit("pair", "p", POLICY, cleared_by_success=True)
    account = throttle.limit("account", "a", LockoutPolicy(1, 30, 3600),
                             cleared_by_success=False)
    failed = await throttle.reserve([account], clock.now())
    await throttle.failed(failed, clock.now())  # the account limit waits now
    for _ in range(10):
        with pytest.raises(LockedOut):
            await throttle.reserve([pair, account], clock.now())
    await throttle.reserve([pair], clock.now())  # the pair's reservations were given back


async def test_past_the_threshold_a_burst_gets_one_guess_per_wait(
        throttle: PasswordThrottle, clock: FrozenClock) -> None:
    for _ in range(5):
        await attempt(throttle, clock)
    for wait in (30, 60, 120):
        clock.advance(wait)
        answers = await asyncio.gather(*(attempt(throttle, clock) for _ in range(8)))
        assert len([a for a in answers if a.startswith("failure")]) == 1, answers
