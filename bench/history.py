"""What a long history costs (issue 9): login step 2 with a right TOTP code, time travel and an
admin's change, for users with 10, 1,000, 10,000 and 100,000 past events, on SQLite and on
PostgreSQL, through the real HTTP server, one request at a time; p50 and p99, each as a ratio
against the new user's (10 events) in the same run. The bar: p50 at 100,000 events within 1.3x.

The past events are logins (`PasswordAccepted`, the most common event of a long life), appended
through the application in large saves, snapshots taken as the service takes them. The server's
clock is frozen and moved 30 s before each verification, so every one has a fresh TOTP step.

From the repository root: `python -m bench.history [--sizes 10,1000,10000,100000]
[--stores sqlite,postgres] [--rounds 60]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
from aiohttp import web

from bench.second_factor import PASSWORD, PASSWORD_HASH, cheap_passwords
from bench.stores import scratch_store
from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from services.mfa.domain import totp
from services.mfa.domain.clock import FrozenClock
from services.mfa.http.app import create_app
from services.mfa.http.context import SERVICE

SECRET = "bench-secret-key-0123456789abcdef0123456789"
BAR = 1.3
SAVE_CHUNK = 2000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def served(url: str, var_dir: Path, clock: FrozenClock) -> AsyncIterator[
        tuple[str, Service]]:
    settings = Settings(database_url=url, secret_key=SECRET, var_dir=var_dir)
    app = create_app(settings, clock=clock, passwords=cheap_passwords())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", app[SERVICE]
    finally:
        await runner.cleanup()


def add_history(service: Service, user_id: UUID, events: int) -> None:
    """`events` past logins on the user's MFA aggregate, saved in large chunks."""
    app = service.app
    while True:
        mfa = app.mfa(user_id)
        left = events - mfa.version
        if left <= 0:
            return
        for _ in range(min(left, SAVE_CHUNK)):
            mfa.accept_password("login", app.clock.now(), f"user:{user_id}", "192.0.2.1")
        app.save(mfa)


async def new_user(service: Service, org_id: UUID, n: int, events: int) -> tuple[UUID, str,
                                                                                  str]:
    app = service.app
    email = f"history{n}-{uuid.uuid4().hex[:6]}@bench.example"
    user_id = (await service.call(app.create_user, org_id, email, "History", "client",
                                  PASSWORD_HASH, False, "system:bench")).value
    enrollment = (await service.call(app.start_enrollment, user_id,
                                     app.clock.now() + timedelta(minutes=10))).value
    await service.call(app.confirm_enrollment, user_id,
                       totp.code_for_step(enrollment.secret, totp.step_at(app.clock.now())))
    await asyncio.to_thread(add_history, service, user_id, events)
    return user_id, email, enrollment.secret


async def timed(session: aiohttp.ClientSession, method: str, url: str,
                body: Any = None) -> tuple[float, int]:
    started = time.perf_counter()
    async with session.request(method, url, json=body) as response:
        await response.read()
    return time.perf_counter() - started, response.status


async def measure(base: str, service: Service, clock: FrozenClock, admin: aiohttp.ClientSession,
                  user: tuple[UUID, str, str], rounds: int) -> dict[str, list[float]]:
    user_id, email, secret = user
    found: dict[str, list[float]] = {"verify": [], "time travel": [], "admin change": []}
    at = clock.now().isoformat()
    for n in range(rounds):
        clock.advance(30)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{base}/api/login",
                                    json={"email": email, "password": PASSWORD}) as response:
                assert response.status == 200, await response.text()
            code = totp.code_for_step(secret, totp.step_at(clock.now()))
            seconds, status = await timed(browser, "POST", f"{base}/api/login/second-factor",
                                          {"code": code})
            assert status == 200, status
            found["verify"].append(seconds)
        seconds, status = await timed(admin, "GET",
                                      f"{base}/api/audit/users/{user_id}/state?at={at}")
        assert status == 200, status
        found["time travel"].append(seconds)
        seconds, status = await timed(admin, "PATCH", f"{base}/api/admin/users/{user_id}",
                                      {"two_factor_required": n % 2 == 0})
        assert status == 200, status
        found["admin change"].append(seconds)
    return found


async def bench_store(store: str, sizes: list[int], rounds: int) -> dict[int, dict[str, Any]]:
    clock = FrozenClock(datetime.now(tz=UTC))
    with scratch_store(store, "history") as (url, tmp):
        async with served(url, tmp / "var", clock) as (base, service):
            org_id, _ = (await service.call(
                service.app.create_organization, "History", "admin@history.example",
                "Admin", PASSWORD_HASH, "system:bench")).value
            users = {}
            for size in sizes:
                started = time.perf_counter()
                users[size] = await new_user(service, org_id, size, size)
                print(f"  {store}: a user with {size:,} past events in "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
            head = await service.call(service.app.recorder.max_notification_id) or 0
            await asyncio.gather(*(f.wait_for(head, 600) for f in service.followers))
            async with aiohttp.ClientSession(
                    cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
                async with admin.post(f"{base}/api/login", json={
                        "email": "admin@history.example", "password": PASSWORD}) as r:
                    assert r.status == 200, await r.text()
                for size in sizes:  # warm up the connection and the code paths
                    await measure(base, service, clock, admin, users[size], 3)
                return {size: await measure(base, service, clock, admin, users[size],
                                            rounds) for size in sizes}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,1000,10000,100000")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {store: await bench_store(store, sizes, args.rounds)
               for store in args.stores.split(",")}
    print(f"\none request at a time, {args.rounds} of each per user; ratio = p50 / the "
          f"{sizes[0]}-event user's p50 (bar for verify: <= {BAR}x)")
    print(f"{'store':<9}{'events':>9}  {'verify p50/p99 ms':>18} {'ratio':>6}  "
          f"{'time travel p50':>16} {'ratio':>6}  {'admin change p50':>17} {'ratio':>6}")
    for store, by_size in results.items():
        base = {what: percentile(values, .5) for what, values in by_size[sizes[0]].items()}
        for size in sizes:
            found = by_size[size]
            row = f"{store:<9}{size:>9,}  "
            for what, width in (("verify", 18), ("time travel", 16), ("admin change", 17)):
                p50 = percentile(found[what], .5)
                if what == "verify":
                    cell = f"{p50 * 1000:.2f} / {percentile(found[what], .99) * 1000:.2f}"
                else:
                    cell = f"{p50 * 1000:.2f}"
                row += f"{cell:>{width}} {p50 / base[what]:>5.2f}x  "
            verdict = percentile(found["verify"], .5) / base["verify"] <= BAR
            print(row + ("" if size == sizes[0] else ("meets" if verdict else "MISSES")))


if __name__ == "__main__":
    asyncio.run(main())
