"""Second-factor verification speed (SPEC section 7): login step 2 with right TOTP codes, each
request for a distinct user, 16 concurrent clients (in a process of their own) through the real
HTTP server, on SQLite and on PostgreSQL; throughput, p50 and p99, against a limit measured in
the same run on the same store: the bare save() rate of the eventsourcing application (8 threads,
one small event per save, each on a distinct aggregate). The bars: 70% of that rate or better,
p99 under 50 ms.

From the repository root: `python -m bench.second_factor [--users N] [--stores sqlite,postgres]`.

The bench users' passwords are hashed with cheap argon2 parameters: the login step is set-up
here, not what is measured (the second factor involves no password hash).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import aiohttp
import orjson
import psycopg
import pyotp
from aiohttp import web
from argon2 import PasswordHasher

from services.mfa.adapters.event_store import StoreLocation
from services.mfa.adapters.passwords import Passwords
from services.mfa.application import MfaApplication
from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from services.mfa.domain import totp
from services.mfa.domain.mfa import MFA, mfa_id
from services.mfa.http.app import create_app
from services.mfa.http.context import SERVICE

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SECRET = "bench-secret-key-0123456789abcdef0123456789"
PASSWORD = "bench-password"
# The same algorithm and code path as production argon2id, at costs fit for thousands of users.
CHEAP_COSTS = "time_cost=1, memory_cost=1 MiB, parallelism=1"
CLIENTS = 16
SAVE_THREADS = 8
SETUP_CONCURRENCY = 8
RATIO_BAR = 0.70
P99_BAR_MS = 50.0
T = TypeVar("T")


def cheap_passwords() -> Passwords:
    return Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


PASSWORD_HASH = cheap_passwords().hash(PASSWORD)


@dataclass
class Result:
    store: str
    bare_saves: float
    get_saves: float
    verifications: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class BenchUser:
    user_id: UUID
    email: str
    secret: str
    confirmed_step: int
    session: aiohttp.ClientSession | None = None
    base: str = ""  # the API process this user's browser talks to (empty: the only one)


# ---- the limit: bare save() on the same store ---------------------------------------------------


def _timed_threads(work: list[Callable[[], object]], threads: int) -> float:
    """Runs the calls on `threads` threads; returns the wall time in seconds."""
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        for future in [pool.submit(call) for call in work]:
            future.result()
        return time.perf_counter() - started


def bare_save_rates(url: str, operations: int) -> tuple[float, float]:
    """Saves/s of one RequirementSet event per save on distinct MFA aggregates, 8 threads:
    first with the aggregates already read (save() alone), then get + change + save."""
    app = MfaApplication(StoreLocation.parse(url).eventsourcing_env(SECRET))
    try:
        org_id = uuid.uuid4()
        now = app.clock.now()
        ids: list[UUID] = []
        batch: list[MFA] = []
        for _ in range(2 * operations):
            user_id = uuid.uuid4()
            ids.append(user_id)
            batch.append(MFA._create(MFA.MfaCreated, id=mfa_id(user_id), user_id=user_id,
                                     org_id=org_id, actor="system:bench", required=False,
                                     required_by=None, timestamp=now))
            if len(batch) == 200:
                app.save(*batch)
                batch = []
        if batch:
            app.save(*batch)

        loaded = [app.mfa(user_id) for user_id in ids[:operations]]

        def save_only(mfa: MFA) -> Callable[[], object]:
            def call() -> object:
                mfa.set_requirement(not mfa.required, app.clock.now(), "system:bench")
                return app.save(mfa)
            return call

        def get_and_save(user_id: UUID) -> Callable[[], object]:
            def call() -> object:
                mfa = app.mfa(user_id)
                mfa.set_requirement(not mfa.required, app.clock.now(), "system:bench")
                return app.save(mfa)
            return call

        seconds = _timed_threads([save_only(mfa) for mfa in loaded], SAVE_THREADS)
        get_seconds = _timed_threads([get_and_save(u) for u in ids[operations:]], SAVE_THREADS)
        return operations / seconds, operations / get_seconds
    finally:
        app.close()


# ---- the measured path: POST /api/login/second-factor on the real server -----------------------


async def _bounded(calls: list[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(call) for call in calls))


async def create_users(service: Service, count: int) -> list[BenchUser]:
    """Users with 2FA On, made through the application's own use cases at the real time."""
    app = service.app
    org_id, _ = (await service.call(app.create_organization, "Bench", "admin@bench.example",
                                    "Bench Admin", PASSWORD_HASH, "system:bench")).value
    last_position = 0

    def make(n: int) -> Callable[[], Awaitable[BenchUser]]:
        async def call() -> BenchUser:
            nonlocal last_position
            email = f"user{n:06d}@bench.example"
            user_id = (await service.call(app.create_user, org_id, email, f"Bench User {n}",
                                          "client", PASSWORD_HASH, False, "system:bench")).value
            window_end = app.clock.now() + timedelta(minutes=10)
            enrollment = (await service.call(app.start_enrollment, user_id, window_end)).value
            now = time.time()
            code = pyotp.TOTP(enrollment.secret).at(now)
            written = await service.call(app.confirm_enrollment, user_id, code)
            last_position = max(last_position, written.position)
            return BenchUser(user_id, email, enrollment.secret, int(now) // totp.PERIOD_SECONDS)
        return call

    users = await _bounded([make(n) for n in range(count)], SETUP_CONCURRENCY)
    # Projections and relay catch up now, so the timed phase does not pay for the set-up.
    await asyncio.gather(*(f.wait_for(last_position, 120) for f in service.followers))
    return users


async def log_in(base: str, connector: aiohttp.BaseConnector, user: BenchUser) -> None:
    """The password step, each user in its own browser (cookie jar)."""
    session = aiohttp.ClientSession(
        base_url=base, connector=connector, connector_owner=False,
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # unsafe: cookies from an IP address
    )
    async with session.post("/api/login", json={"email": user.email, "password": PASSWORD}
                            ) as response:
        body = await response.json()
    if response.status != 200 or body.get("next") != "second_factor":
        await session.close()
        raise RuntimeError(f"login of {user.email}: {response.status} {body}")
    user.session = session


def right_code(user: BenchUser) -> str:
    """The code the user's app shows now; a step later than the one used to confirm the setup
    (a code or an older one already accepted is refused), the +1 drift step if need be."""
    step = max(int(time.time()) // totp.PERIOD_SECONDS, user.confirmed_step + 1)
    return totp.code_for_step(user.secret, step)


async def verify_all(users: list[BenchUser]) -> tuple[float, list[float], int]:
    """16 clients, each request for a distinct user; throughput, latencies (s), failures."""
    queue: asyncio.Queue[BenchUser] = asyncio.Queue()
    for user in users:
        queue.put_nowait(user)
    latencies: list[float] = []
    failures: list[str] = []

    async def client() -> None:
        while not queue.empty():
            user = queue.get_nowait()
            assert user.session is not None
            started = time.perf_counter()
            async with user.session.post("/api/login/second-factor",
                                         json={"code": right_code(user)}) as response:
                body = await response.json()
            latencies.append(time.perf_counter() - started)
            if response.status != 200 or body.get("next") != "done":
                failures.append(f"{response.status} {body}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    seconds = time.perf_counter() - started
    if failures:
        print(f"  {len(failures)} failed verifications, e.g. {failures[0]}")
    return len(users) / seconds, latencies, len(failures)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def client_process(base: str, users_file: str) -> None:
    """The clients' side, run in a process of its own (`--client`), so the server's process
    spends its CPU on serving only: password steps, then the timed second factors."""
    users = [BenchUser(UUID(u["user_id"]), u["email"], u["secret"], u["confirmed_step"],
                       base=u.get("base", base))
             for u in orjson.loads(await asyncio.to_thread(Path(users_file).read_bytes))]
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    try:
        started = time.perf_counter()
        await _bounded([functools.partial(log_in, u.base, connector, u) for u in users],
                       CLIENTS)
        login_seconds = time.perf_counter() - started
        print("  (clients: password steps done, second factors now)", file=sys.stderr,
              flush=True)
        rate, latencies, errors = await verify_all(users)
    finally:
        for user in users:
            if user.session is not None:
                await user.session.close()
        await connector.close()
    sys.stdout.buffer.write(orjson.dumps({"rate": rate, "latencies": latencies,
                                          "errors": errors, "login_seconds": login_seconds}))


async def measure_service(url: str, var_dir: Path, count: int) -> tuple[float, float, float, int]:
    # The password steps of set-up come 16 at once from one address: room for all of them.
    settings = Settings(database_url=url, secret_key=SECRET, var_dir=var_dir,
                        hashing_queue=CLIENTS, password_address_threshold=10 * count + 100)
    app = create_app(settings, passwords=cheap_passwords())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        service = app[SERVICE]
        started = time.perf_counter()
        users = await create_users(service, count)
        print(f"  {count} users with 2FA On in {time.perf_counter() - started:.1f} s")
        users_file = var_dir.parent / "bench-users.json"  # var_dir itself may not exist
        await asyncio.to_thread(users_file.write_bytes, orjson.dumps([
            {"user_id": str(u.user_id), "email": u.email, "secret": u.secret,
             "confirmed_step": u.confirmed_step} for u in users]))
        clients = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.second_factor", "--client", base, str(users_file),
            stdout=asyncio.subprocess.PIPE)
        out, _ = await clients.communicate()
        if clients.returncode != 0:
            raise RuntimeError("the client process failed")
        result = orjson.loads(out)
        print(f"  {count} password steps over HTTP in {result['login_seconds']:.1f} s "
              f"(clients in their own process)")
        latencies = result["latencies"]
        return (result["rate"], percentile(latencies, 0.50) * 1000,
                percentile(latencies, 0.99) * 1000, result["errors"])
    finally:
        await runner.cleanup()


# ---- stores ------------------------------------------------------------------------------------


@contextmanager
def sqlite_urls() -> Iterator[tuple[str, str, Path]]:
    with tempfile.TemporaryDirectory(prefix="mfa-bench-") as tmp:
        yield (f"sqlite:///{tmp}/service.db", f"sqlite:///{tmp}/bare.db", Path(tmp) / "var")


@contextmanager
def postgres_urls() -> Iterator[tuple[str, str, Path]]:
    schemas = [f"bench_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"CREATE SCHEMA {schema}")
    try:
        with tempfile.TemporaryDirectory(prefix="mfa-bench-") as tmp:
            yield (f"{PG_DSN}?schema={schemas[0]}", f"{PG_DSN}?schema={schemas[1]}",
                   Path(tmp) / "var")
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def postgres_problem() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"


async def bench_store(store: str, count: int, processes: list[int]) -> list[Result]:
    urls = sqlite_urls() if store == "sqlite" else postgres_urls()
    results = []
    with urls as (service_url, bare_url, var_dir):
        print(f"{store}: bare save() limit, {count} saves on {SAVE_THREADS} threads")
        bare, get_save = await asyncio.to_thread(bare_save_rates, bare_url, count)
        print(f"{store}: second factor over HTTP, {count} users, {CLIENTS} clients")
        rate, p50, p99, errors = await measure_service(service_url, var_dir, count)
        results.append(Result(store, bare, get_save, rate, p50, p99, errors))
        if store == "postgres":
            for n in processes:
                with postgres_schema() as url:
                    print(f"{store}: the same through {n} x `mfa api` + `mfa projector`")
                    rate, p50, p99, errors = await measure_processes(url, var_dir, count, n)
                results.append(Result(f"pg {n} api", bare, get_save, rate, p50, p99, errors))
    return results


@contextmanager
def postgres_schema() -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_DSN}?schema={schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def create_users_directly(url: str, count: int) -> list[BenchUser]:
    """The platform's users, made with the application alone before its processes start."""
    app = MfaApplication(StoreLocation.parse(url).eventsourcing_env(SECRET))
    try:
        org_id, _ = app.create_organization("Bench", "admin@bench.example", "Bench Admin",
                                            PASSWORD_HASH, "system:bench").value
        users = []
        for n in range(count):
            email = f"user{n:06d}@bench.example"
            user_id = app.create_user(org_id, email, f"Bench User {n}", "client",
                                      PASSWORD_HASH, False, "system:bench").value
            enrollment = app.start_enrollment(user_id,
                                              app.clock.now() + timedelta(minutes=10)).value
            now = time.time()
            app.confirm_enrollment(user_id, pyotp.TOTP(enrollment.secret).at(now))
            users.append(BenchUser(user_id, email, enrollment.secret,
                                   int(now) // totp.PERIOD_SECONDS))
        return users
    finally:
        app.close()


async def measure_processes(url: str, var_dir: Path, count: int,
                            processes: int) -> tuple[float, float, float, int]:
    """Second factors through `processes` x `mfa api` (the platform deployment, one
    `mfa projector` beside them), each user's browser on one of them."""
    users = await asyncio.to_thread(create_users_directly, url, count)
    env = {**os.environ, "MFA_DATABASE_URL": url, "MFA_SECRET_KEY": SECRET,
           "MFA_HASHING_QUEUE": str(CLIENTS),
           "MFA_PASSWORD_ADDRESS_THRESHOLD": str(10 * count + 100)}
    mfa = str(Path(sys.executable).parent / "mfa")
    ports = [free_port() for _ in range(processes)]
    started = [await asyncio.create_subprocess_exec(
        mfa, command, env={**env, "MFA_PORT": str(port), "MFA_HEALTH_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for command, port in [("projector", free_port()), *(("api", p) for p in ports)]]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        async with aiohttp.ClientSession() as probe:
            for base in bases:
                for _ in range(300):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with probe.get(f"{base}/healthz") as response:
                            if response.status == 200:
                                break
                    await asyncio.sleep(0.1)
        users_file = var_dir.parent / "bench-platform-users.json"
        await asyncio.to_thread(users_file.write_bytes, orjson.dumps([
            {"user_id": str(u.user_id), "email": u.email, "secret": u.secret,
             "confirmed_step": u.confirmed_step, "base": bases[n % len(bases)]}
            for n, u in enumerate(users)]))
        clients = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.second_factor", "--client", bases[0], str(users_file),
            stdout=asyncio.subprocess.PIPE)
        out, _ = await clients.communicate()
        result = orjson.loads(out)
        latencies = result["latencies"]
        return (result["rate"], percentile(latencies, 0.50) * 1000,
                percentile(latencies, 0.99) * 1000, result["errors"])
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in started:
            await process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def print_table(results: list[Result]) -> None:
    header = (f"{'store':<10} {'bare saves/s':>12} {'get+save/s':>10} {'verif./s':>9}"
              f" {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}  bars")
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = r.verifications / r.bare_saves
        bars = (f"ratio {'OK' if ratio >= RATIO_BAR else 'MISS'} (>= {RATIO_BAR:.0%}),"
                f" p99 {'OK' if r.p99_ms < P99_BAR_MS else 'MISS'} (< {P99_BAR_MS:.0f} ms)")
        if r.errors:
            bars += f", {r.errors} FAILED"
        print(f"{r.store:<10} {r.bare_saves:>12.0f} {r.get_saves:>10.0f} {r.verifications:>9.0f}"
              f" {ratio:>6.2f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f}  {bars}")
    print()
    print("ratio = verifications/s / bare saves/s (save() alone, aggregates already read);"
          " get+save/s is the same limit with the read of the aggregate included.")
    print(f"Bench users' passwords use cheap argon2id ({CHEAP_COSTS}); the timed phase"
          " (second factor) hashes no password.")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=2000,
                        help="users (and verifications, and bare saves) per store")
    parser.add_argument("--stores", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres")
    parser.add_argument("--processes", default="1,2",
                        help="PostgreSQL also through this many `mfa api` processes each")
    parser.add_argument("--client", nargs=2, metavar=("BASE_URL", "USERS_FILE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        await client_process(*args.client)
        return
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    results: list[Result] = []
    for store in stores:
        if store == "postgres" and (problem := postgres_problem()) is not None:
            print(f"!!! SKIPPING PostgreSQL: {PG_DSN} is unreachable ({problem})")
            continue
        results += await bench_store(store, args.users,
                                     [int(n) for n in args.processes.split(",") if n])
    print_table(results)


if __name__ == "__main__":
    asyncio.run(main())
