"""Require 2FA for all users of a 10,000-user organization (issue 11): how long the one action
takes to reach every user, and how soon the open pages of affected users show the banner, on
SQLite and on PostgreSQL (`mfa serve`: API, views, policy enforcer, relay and notifier in one
process).

Printed per store: the time from the admin's PUT /api/admin/policy to its answer (it waits for
the policy to be applied to all), the apply rate in users/s, and for the open pages the banner
latency from each user's own RequirementSet (its `occurred_at`) to the socket, p50 and p99,
against the bar of one second; and from the admin's click, for the first and the last page.

From the repository root: `python -m bench.policy [--users 10000] [--pages 100]
[--stores sqlite,postgres]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench.second_factor import PASSWORD, PASSWORD_HASH, cheap_passwords
from bench.stores import scratch_store
from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from services.mfa.http.app import create_app
from services.mfa.http.context import SERVICE

SECRET = "bench-secret-key-0123456789abcdef0123456789"
BAR_SECONDS = 1.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def create_users(service: Service, org_id: uuid.UUID, count: int) -> list[str]:
    emails = []
    for n in range(count):
        email = f"u{n:06d}@policy.example"
        service.app.create_user(org_id, email, f"User {n}", "client", PASSWORD_HASH, False,
                                "system:bench")
        emails.append(email)
    return emails


async def open_page(base: str, email: str) -> tuple[aiohttp.ClientSession,
                                                    aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(f"{base}/api/login",
                            json={"email": email, "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
    socket = await session.ws_connect(f"{base}/ws")
    first = orjson.loads(await socket.receive_str())
    assert first["type"] == "banner" and first["show"] is False
    return session, socket


async def banner_time(socket: aiohttp.ClientWebSocketResponse) -> float:
    while True:
        message = orjson.loads(await socket.receive_str())
        if message["type"] == "banner" and message["show"]:
            return time.time()


async def bench_store(store: str, users: int, pages: int) -> dict[str, Any]:
    with scratch_store(store, "policy") as (url, tmp):
        settings = Settings(database_url=url, secret_key=SECRET, var_dir=tmp / "var",
                            hashing_queue=pages, password_address_threshold=10 * pages + 100)
        app = create_app(settings, passwords=cheap_passwords())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        opened: list[tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]] = []
        try:
            service = app[SERVICE]
            org_id, _ = (await service.call(
                service.app.create_organization, "Policy", "admin@policy.example", "Admin",
                PASSWORD_HASH, "system:bench")).value
            started = time.perf_counter()
            emails = await asyncio.to_thread(create_users, service, org_id, users)
            head = await service.call(service.app.recorder.max_notification_id) or 0
            await asyncio.gather(*(f.wait_for(head, 600) for f in service.followers))
            print(f"  {store}: {users:,} users in {time.perf_counter() - started:.1f} s",
                  flush=True)
            step = max(1, users // pages)
            opened = [await open_page(base, email) for email in emails[::step][:pages]]
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
                async with admin.post(f"{base}/api/login", json={
                        "email": "admin@policy.example", "password": PASSWORD}) as response:
                    assert response.status == 200
                waits = [asyncio.create_task(banner_time(socket)) for _, socket in opened]
                clicked = time.time()
                async with admin.put(f"{base}/api/admin/policy", json={
                        "require_all": True, "require_new": False}) as response:
                    answer = await response.json()
                answered = time.time()
                assert response.status == 200 and answer["applied"], answer
                assert answer["counts"]["required"] == users + 1, answer["counts"]
                shown = await asyncio.gather(*waits)
            # Each page's latency from its user's own RequirementSet.
            saved = await requirement_times(service, emails[::step][:pages])
            per_user = [at - saved_at for at, saved_at in zip(shown, saved, strict=True)]
        finally:
            for session, socket in opened:
                await socket.close()
                await session.close()
            await runner.cleanup()
    return {"apply_seconds": answered - clicked, "rate": users / (answered - clicked),
            "p50": percentile(per_user, .5), "p99": percentile(per_user, .99),
            "first_from_click": min(shown) - clicked, "last_from_click": max(shown) - clicked}


async def requirement_times(service: Service, emails: list[str]) -> list[float]:
    """When each user's RequirementSet was saved (its occurred_at)."""
    found = []
    for email in emails:
        user_id = await service.call(service.app.user_id_for, email)
        events = await service.call(lambda u=user_id: list(
            service.app.events.get(service.app.mfa(u).id)))
        last: Any = [e for e in events if type(e).__name__ == "RequirementSet"][-1]
        found.append(datetime.timestamp(last.timestamp))
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"Require 2FA for all users: {args.users:,} users, {args.pages} open pages")
    for store in args.stores.split(","):
        r = await bench_store(store, args.users, args.pages)
        verdict = "meets" if r["p99"] <= BAR_SECONDS else "MISSES"
        print(f"  {store:<8} applied to all in {r['apply_seconds']:.1f} s ({r['rate']:,.0f} "
              f"users/s); banner after the user's RequirementSet: p50 {r['p50'] * 1000:.0f} ms, "
              f"p99 {r['p99'] * 1000:.0f} ms ({r['p99'] / BAR_SECONDS:.2f}x the 1 s bar: "
              f"{verdict}); from the click: first page {r['first_from_click']:.2f} s, last "
              f"{r['last_from_click']:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
