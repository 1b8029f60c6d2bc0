"""A signed-in user during a login flood (issue 8, SPEC section 6 "bounded cost").

`mfa serve` runs as it ships (real argon2 parameters, the default hashing capacity) in a process
of its own, on SQLite and on PostgreSQL. A signed-in user's `GET /api/me` is timed while the
service is idle, then while a flood process sends `POST /api/login` with unknown emails from 24
concurrent connections, each request from a new client address (the bench's server believes
`X-Forwarded-For` from 127.0.0.1), so per-address throttling does not stop it: only the hashing
capacity does. Printed: p50 and p99 of both, the ratio (the goal: p50 within 5x of idle), and
what the flood got (401 wrong password, 503 capacity full, 429 throttled) per second.

From the repository root: `python -m bench.login_flood [--seconds 10] [--stores sqlite,postgres]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson

from bench.stores import scratch_store

SECRET = "bench-secret-key-0123456789abcdef0123456789"
FLOOD_CONNECTIONS = 24
PROBES = 300
GOAL_RATIO = 5.0
JSON = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.asynccontextmanager
async def served(database_url: str, var_dir: Path) -> AsyncIterator[str]:
    port = free_port()
    env = {**os.environ, "MFA_DATABASE_URL": database_url, "MFA_SECRET_KEY": SECRET,
           "MFA_PORT": str(port), "MFA_DEMO": "1", "MFA_VAR_DIR": str(var_dir),
           "MFA_TRUSTED_PROXIES": "127.0.0.1"}
    server = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "mfa"), "serve", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(600):
                with contextlib.suppress(aiohttp.ClientError):
                    async with client.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("mfa serve did not start")
        yield base
    finally:
        server.terminate()
        await server.wait()


async def signed_in(base: str) -> aiohttp.ClientSession:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    body = {"email": "client@demo.example", "password": "demo-client-password"}
    async with client.post(f"{base}/api/login", data=orjson.dumps(body), headers=JSON) as r:
        assert r.status == 200, await r.text()
    return client


async def probe(client: aiohttp.ClientSession, base: str, count: int) -> list[float]:
    """Sequential GET /api/me; seconds each."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        async with client.get(f"{base}/api/me") as response:
            await response.read()
            assert response.status == 200, response.status
        latencies.append(time.perf_counter() - started)
    return latencies


async def flood(base: str, seconds: float) -> None:
    """The flood's side, in a process of its own (`--flood`): prints the status counts."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    async def connection(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"  # noqa: E501
            body = {"email": f"nobody-{uuid.uuid4().hex[:10]}@example.com",
                    "password": "guess-password-1"}
            async with session.post(f"{base}/api/login", data=orjson.dumps(body),
                                    headers={**JSON, "X-Forwarded-For": address}) as response:
                await response.read()
                statuses[response.status] += 1

    connector = aiohttp.TCPConnector(limit=FLOOD_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(connection(session) for _ in range(FLOOD_CONNECTIONS)))
    sys.stdout.write(orjson.dumps({str(k): v for k, v in statuses.items()}).decode())


async def bench_store(store: str, seconds: float) -> dict[str, float]:
    with scratch_store(store, "flood") as (url, tmp):
        async with served(url, tmp / "var") as base:
            client = await signed_in(base)
            returning = await signed_in(base)  # has the device cookie from now on
            try:
                await probe(client, base, 50)  # warm up
                idle = await probe(client, base, PROBES)
                flooder = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.login_flood", "--flood", base,
                    str(seconds), stdout=asyncio.subprocess.PIPE)
                await asyncio.sleep(1.0)  # the flood is in full swing
                during: list[float] = []
                logins = asyncio.create_task(returning_logins(returning, base, seconds - 2))
                while flooder.returncode is None and len(during) < 10 * PROBES:
                    during += await probe(client, base, 20)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(flooder.wait()), 0.001)
                out, _ = await flooder.communicate()
                statuses = {int(k): v for k, v in orjson.loads(out).items()}
                back = await logins
            finally:
                await client.close()
                await returning.close()
    result = {"idle_p50": percentile(idle, .5) * 1000, "idle_p99": percentile(idle, .99) * 1000,
              "flood_p50": percentile(during, .5) * 1000,
              "flood_p99": percentile(during, .99) * 1000, "probes": len(during)}
    for status in (401, 429, 503):
        result[f"flood_{status}_per_s"] = statuses.get(status, 0) / seconds
    result["flood_other"] = sum(v for k, v in statuses.items() if k not in (401, 429, 503))
    result["returning_ok"] = sum(1 for status, _ in back if status == 200)
    result["returning_all"] = len(back)
    result["returning_p50"] = percentile([t for _, t in back], .5) * 1000
    return result


async def returning_logins(client: aiohttp.ClientSession, base: str,
                           seconds: float) -> list[tuple[int, float]]:
    """A regular user logging in again from their browser (device cookie) during the flood."""
    body = {"email": "client@demo.example", "password": "demo-client-password"}
    outcomes = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        async with client.post(f"{base}/api/login", data=orjson.dumps(body),
                               headers=JSON) as response:
            await response.read()
        outcomes.append((response.status, time.perf_counter() - started))
        await asyncio.sleep(0.5)
    return outcomes


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--flood", nargs=2, metavar=("BASE", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        await flood(args.flood[0], float(args.flood[1]))
        return
    print(f"signed-in GET /api/me, idle vs during a login flood ({FLOOD_CONNECTIONS} "
          f"connections of unknown emails from ever-new addresses, {args.seconds:.0f} s); "
          f"mfa serve with its default hashing capacity ({os.cpu_count()} CPUs here)")
    for store in args.stores.split(","):
        r = await bench_store(store, args.seconds)
        ratio = r["flood_p50"] / r["idle_p50"]
        verdict = "meets" if ratio <= GOAL_RATIO else "MISSES"
        print(f"  {store:<8} idle p50 {r['idle_p50']:6.2f} ms  p99 {r['idle_p99']:6.2f} ms | "
              f"flood p50 {r['flood_p50']:6.2f} ms  p99 {r['flood_p99']:6.2f} ms "
              f"({r['probes']:.0f} probes) | p50 ratio {ratio:4.1f}x: {verdict} the "
              f"{GOAL_RATIO:.0f}x goal")
        print(f"           the flood got: {r['flood_401_per_s']:.0f}/s wrong password (hashed), "
              f"{r['flood_503_per_s']:.0f}/s 503 capacity full, {r['flood_429_per_s']:.0f}/s "
              f"429 throttled, {r['flood_other']:.0f} other")
        print(f"           a returning user's logins (device cookie) meanwhile: "
              f"{r['returning_ok']:.0f} of {r['returning_all']:.0f} in, "
              f"p50 {r['returning_p50']:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
