"""Bus speed (issue 4), each figure against a limit measured in the same run:

- banner latency: the admin's save (PATCH two_factor_required) -> the banner on the user's live
  WebSocket, through PostgreSQL, `mfa projector`, `mfa relay`, RabbitMQ and `mfa notifier` (each
  its own process), p50 and p99, against a bare RabbitMQ publish-to-consume round trip;
- the relay's events/s against the same broker's bare confirmed publish rate;
- the notifier's resident memory per 1,000 open sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
import uuid
from typing import Any

import aio_pika
import aiohttp
import orjson
import psycopg
from aiohttp import web
from argon2 import PasswordHasher

from contracts.events import PublicEvent
from services.messaging.bus import RabbitBus
from services.mfa.adapters.passwords import Passwords
from services.mfa.bootstrap import build_service, close_service
from services.mfa.config import Settings
from services.mfa.http.app import create_app
from services.mfa.http.context import SERVICE
from services.mfa.relay import Relay

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
SECRET = "bench-secret-key-0123456789abcdef0123456789"
CHEAP = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
PASSWORD_HASH = CHEAP.hash("bench-password")
JSON = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def wait_http(url: str, deadline: float = 30) -> None:
    async with aiohttp.ClientSession() as client:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                async with client.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(url)


async def bare_round_trip(exchange: str, count: int) -> list[float]:
    connection = await aio_pika.connect_robust(AMQP)
    channel = await connection.channel(publisher_confirms=True)
    ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(ex, "bare.#")
    received: asyncio.Queue[float] = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        received.put_nowait(time.perf_counter())

    await queue.consume(on_message)
    samples = []
    for n in range(count):
        started = time.perf_counter()
        await ex.publish(aio_pika.Message(body=orjson.dumps({"n": n}),
                                          delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                         "bare.ping")
        samples.append(await received.get() - started)
    await connection.close()
    return samples


async def bare_publish_rate(exchange: str, count: int) -> float:
    bus = await RabbitBus(AMQP, exchange).connect()
    events = [PublicEvent(id=str(uuid.uuid4()), version=1, type="RequirementSet", position=n,
                          user_id=str(uuid.UUID(int=n % 200)), org_id=str(uuid.UUID(int=0)),
                          actor="system:bench", occurred_at="2026-01-01T00:00:00.000000+00:00",
                          data={"required": True}, state={"status": "off", "required": True})
              for n in range(count)]
    started = time.perf_counter()
    for page in range(0, count, 500):
        await bus.publish(events[page:page + 500])
    rate = count / (time.perf_counter() - started)
    await bus.close()
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=1000)
    args = parser.parse_args()
    schema, exchange = f"bench_{uuid.uuid4().hex[:12]}", f"bench.{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_DSN}?schema={schema}"
    api_port, notifier_port = free_port(), free_port()
    settings = Settings(database_url=url, secret_key=SECRET, amqp_url=AMQP, amqp_exchange=exchange,
                        port=api_port)
    processes: list[asyncio.subprocess.Process] = []
    runner: web.AppRunner | None = None
    print(f"== bus, {args.users} users, PostgreSQL + RabbitMQ", flush=True)
    try:
        app = create_app(settings, passwords=CHEAP, embedded=False)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", api_port).start()
        service = app[SERVICE]
        api = f"http://127.0.0.1:{api_port}"
        var = tempfile.mkdtemp()
        env = {**os.environ, "MFA_DATABASE_URL": url, "MFA_SECRET_KEY": SECRET,
               "MFA_AMQP_URL": AMQP, "MFA_AMQP_EXCHANGE": exchange, "MFA_API_URL": api,
               "MFA_VAR_DIR": var,
               "MFA_NOTIFIER_PORT": str(notifier_port)}
        for command in ("projector", "relay", "notifier"):
            processes.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.mfa.cli", command,
                env={**env, "MFA_HEALTH_PORT": str(free_port())},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))
        notifier = processes[-1]
        await wait_http(f"http://127.0.0.1:{notifier_port}/readyz")

        org_id, _ = (await service.call(service.app.create_organization, "Bench",
                                        "admin@bench.example", "Admin", PASSWORD_HASH,
                                        "system:bench")).value
        users = [(await service.call(service.app.create_user, org_id, f"u{n}@bench.example",
                                     f"User {n}", "client", PASSWORD_HASH, False,
                                     "system:bench")).value for n in range(args.users)]
        admin = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        await admin.post(f"{api}/api/login", headers=JSON, data=orjson.dumps(
            {"email": "admin@bench.example", "password": "bench-password"}))
        clients, sockets = [], []
        base_rss = rss_kib(notifier.pid or 0)
        per_user = max(1, args.sockets // args.users)
        for n in range(args.users):
            client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            clients.append(client)
            await client.post(f"{api}/api/login", headers=JSON, data=orjson.dumps(
                {"email": f"u{n}@bench.example", "password": "bench-password"}))
            token = client.cookie_jar.filter_cookies(aiohttp.client.URL(api))["mfa_session"].value
            for _ in range(per_user):
                ws = await client.ws_connect(f"http://127.0.0.1:{notifier_port}/ws",
                                             headers={"Cookie": f"mfa_session={token}"})
                await ws.receive_str()  # the state on connect
                sockets.append((n, ws))
        await asyncio.sleep(1)  # let the allocator settle before reading RSS
        rss_per_1000 = (rss_kib(notifier.pid or 0) - base_rss) / len(sockets) * 1000
        first_socket = {n: ws for n, ws in reversed(sockets)}

        latencies = []
        for n, user_id in enumerate(users):
            started = time.perf_counter()
            async with admin.patch(f"{api}/api/admin/users/{user_id}", headers=JSON,
                                   data=orjson.dumps({"two_factor_required": True})) as r:
                assert r.status == 200, await r.text()
            while True:
                message: dict[str, Any] = orjson.loads(
                    await asyncio.wait_for(first_socket[n].receive_str(), 10))
                if message["type"] == "banner" and message["show"]:
                    break
            latencies.append(time.perf_counter() - started)
        bare = await bare_round_trip(exchange, len(latencies))
        print(f"  banner latency  p50 {pct(latencies, .5):6.1f} ms  p99 {pct(latencies, .99):6.1f}"
              f" ms  (save -> socket, {len(latencies)} saves)", flush=True)
        print(f"  bare RabbitMQ   p50 {pct(bare, .5):6.1f} ms  p99 {pct(bare, .99):6.1f} ms"
              f"  (publish -> consume)  ratio p99 {pct(latencies, .99) / pct(bare, .99):.1f}x; "
              f"SPEC bar: within 1 s -> {'met' if pct(latencies, .99) < 1000 else 'NOT met'}")

        head = await service.call(service.app.recorder.max_notification_id) or 0
        relay_service = await build_service(settings)

        class BenchRelay(Relay):
            name = "bench_relay"

        relay = BenchRelay(relay_service.app, relay_service.db, relay_service.bus, batch_size=500)
        await relay_service.db.execute("INSERT INTO mfa_tracking (projection, position)"
                                       " VALUES (?, 0)", relay.name)
        started = time.perf_counter()
        await relay.catch_up()
        relay_rate = head / (time.perf_counter() - started)
        await close_service(relay_service)
        bare_rate = await bare_publish_rate(exchange, max(head, 2000))
        print(f"  relay {relay_rate:,.0f} events/s ({relay.published:,} published) vs bare "
              f"confirmed publish {bare_rate:,.0f} msg/s = {relay_rate / bare_rate:.0%}")
        print(f"  notifier memory: {rss_per_1000 / 1024:.1f} MiB per 1,000 open sockets "
              f"({len(sockets)} sockets measured)")
        for _, ws in sockets:
            await ws.close()
        for client in [*clients, admin]:
            await client.close()
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()
        if runner is not None:
            await runner.cleanup()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        connection = await aio_pika.connect_robust(AMQP)
        channel = await connection.channel()
        await channel.exchange_delete(exchange)
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
