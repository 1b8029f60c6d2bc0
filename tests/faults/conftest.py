"""The platform deployment as real processes, behind fault-injecting proxies: each test gets a
fresh PostgreSQL schema, its own RabbitMQ exchange and a durable probe queue bound to it, a
TCP proxy in front of PostgreSQL and one in front of RabbitMQ (so an outage is a proxy going
down, never the machine's shared servers), an organization with users, and starts whichever
`mfa` processes it needs through the proxies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from eventsourcing.persistence import ProgrammingError

from services.mfa.adapters.event_store import StoreLocation
from services.mfa.application import MfaApplication
from services.mfa.public_events import is_public
from tests.conftest import FAST_PASSWORDS, PG_DSN, SECRET_KEY
from tests.faults.support import Process, TcpProxy, base_env, free_port, http_ok, until
from tests.integration.test_rabbitmq import AMQP_URL, ProbeQueue, rabbitmq_available

__all__ = ["rabbitmq_available"]

pytestmark = [pytest.mark.postgres]


@dataclasses.dataclass
class Api:
    """One `mfa api` process and an admin's browser session on it."""

    process: Process
    url: str
    client: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None,
                   seconds: float = 20.0) -> tuple[int, Any, dict[str, str]]:
        headers = {"Content-Type": "application/json"} if method != "GET" else {}
        async with self.client.request(method, self.url + path, headers=headers,
                                       data=orjson.dumps(body) if body is not None else None,
                                       timeout=aiohttp.ClientTimeout(total=seconds)) as r:
            text = await r.text()
            try:
                payload = orjson.loads(text) if text else None
            except orjson.JSONDecodeError:
                payload = text
            return r.status, payload, dict(r.headers)


@dataclasses.dataclass
class Platform:
    schema: str
    exchange: str
    store: TcpProxy
    broker: TcpProxy
    log_dir: Path
    app: MfaApplication  # the store, directly (not through the proxy): what was really saved
    probe: ProbeQueue
    org_id: uuid.UUID
    admin_email: str
    admin_password: str
    user_ids: list[uuid.UUID]
    processes: list[Process] = dataclasses.field(default_factory=list)
    clients: list[aiohttp.ClientSession] = dataclasses.field(default_factory=list)

    def env(self, **settings: str) -> dict[str, str]:
        pg = urlsplit(PG_DSN)
        amqp = urlsplit(AMQP_URL)
        return base_env(
            MFA_DATABASE_URL=f"postgresql://{pg.username or 'postgres'}@127.0.0.1:"
                             f"{self.store.port}{pg.path}?schema={self.schema}",
            MFA_SECRET_KEY=SECRET_KEY,
            MFA_AMQP_URL=f"amqp://{amqp.username}:{amqp.password}@127.0.0.1:{self.broker.port}"
                         f"{amqp.path or '/'}?reconnect_interval=1",
            MFA_AMQP_EXCHANGE=self.exchange,
            MFA_VAR_DIR=str(self.log_dir / "var"),
            MFA_VIEWS_WAIT_SECONDS="1.5",
            MFA_STORE_TIMEOUT_SECONDS="1",
            **settings)

    def start(self, name: str, command: str, wrapper: Sequence[str] = (),
              **settings: str) -> Process:
        # Each process its own health port (the projector's and relay's default is fixed).
        settings.setdefault("MFA_HEALTH_PORT", str(free_port()))
        process = Process(name, [command], self.env(**settings), self.log_dir, wrapper).start()
        self.processes.append(process)
        return process

    async def api(self, name: str = "api", wrapper: Sequence[str] = ()) -> Api:
        port = free_port()
        process = self.start(name, "api", wrapper, MFA_PORT=str(port))
        url = f"http://127.0.0.1:{port}"
        await until(lambda: http_ok(url + "/healthz"), 30, f"{name} to listen", every=0.2)
        client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.clients.append(client)
        api = Api(process, url, client)
        status, body, _ = await api.call("POST", "/api/login", {
            "email": self.admin_email, "password": self.admin_password})
        assert status == 200 and body["next"] == "done", body
        return api

    async def projector(self, name: str = "projector") -> Process:
        """`mfa projector`, once its views caught up with the log."""
        process = self.start(name, "projector")
        head = await self.head()
        for view in ("user_state", "users_grid", "audit_log"):
            await until(lambda view=view: _at_least(self.tracked(view), head), 30,
                        f"{name} to catch up", every=0.1)
        return process

    async def head(self) -> int:
        return await asyncio.to_thread(self.app.recorder.max_notification_id) or 0

    async def tracked(self, follower: str) -> int:
        def read() -> int:
            try:
                with self.app.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
                    row = conn.execute(f"SELECT position FROM {self.schema}.mfa_tracking"
                                       " WHERE projection = %s", (follower,)).fetchone()
            except ProgrammingError:  # no table yet: no process has started
                return 0
            return int(row["position"]) if row else 0
        return await asyncio.to_thread(read)

    def public_positions(self) -> dict[int, str]:
        """Every public event's position in the log, with its user."""
        found: dict[int, str] = {}
        start = 0
        while notifications := self.app.recorder.select_notifications(
                start=start, limit=500, inclusive_of_start=False):
            for notification in notifications:
                event = self.app.mapper.to_domain_event(notification)
                if is_public(event):
                    found[notification.id] = str(getattr(event, "user_id", ""))
            start = notifications[-1].id
        return found

    def history(self, user_id: uuid.UUID) -> list[Any]:
        return list(self.app.events.get(user_id))


async def _at_least(value: Any, bound: int) -> bool:
    return bool(await value >= bound)


@pytest.fixture
async def platform(postgres_url: str, rabbitmq_available: None,
                   tmp_path: Path) -> AsyncIterator[Platform]:
    schema = postgres_url.rsplit("schema=", 1)[1]
    exchange = f"test.faults.{uuid.uuid4().hex}"
    probe = ProbeQueue(exchange)
    await probe.declare()
    pg = urlsplit(PG_DSN)
    amqp = urlsplit(AMQP_URL)
    app = MfaApplication(StoreLocation.parse(postgres_url).eventsourcing_env(SECRET_KEY))
    email, password = f"admin-{uuid.uuid4().hex[:8]}@example.com", "admin-password-1"

    def people() -> tuple[uuid.UUID, list[uuid.UUID]]:
        org_id, _ = app.create_organization("Acme", email, "Ada", FAST_PASSWORDS.hash(password),
                                            "support:test").value
        users = [app.create_user(org_id, f"user{i}-{uuid.uuid4().hex[:6]}@example.com",
                                 f"User {i}", "client", FAST_PASSWORDS.hash("user-password-1"),
                                 False, "support:test").value for i in range(3)]
        return org_id, users

    org_id, users = await asyncio.to_thread(people)
    with TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432) as store, \
            TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672) as broker:
        platform = Platform(schema, exchange, store, broker, tmp_path, app, probe, org_id,
                            email, password, users)
        try:
            yield platform
        finally:
            for client in platform.clients:
                await client.close()
            for process in platform.processes:
                await asyncio.to_thread(process.stop)
            app.close()
            await probe.delete()
            with contextlib.suppress(Exception):
                import aio_pika

                connection = await aio_pika.connect(AMQP_URL)
                async with connection:
                    channel = await connection.channel()
                    await channel.exchange_delete(exchange)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing fault test shows what its processes said."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        platform = getattr(item, "funcargs", {}).get("platform")
        if isinstance(platform, Platform):
            for process in platform.processes:
                report.sections.append((f"output of {process.name}", process.output()[-6000:]))
