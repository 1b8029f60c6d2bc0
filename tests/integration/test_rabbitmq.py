"""The platform deployment's bus on the machine's real RabbitMQ (SPEC section 5): the relay, the
notifier and its live banner, and the delivery guarantees through a SIGKILL (a broker outage is
tests/faults/, through a proxy: stopping the machine's RabbitMQ would disturb other test runs).

Every test has its own exchange (and queues), on a fresh PostgreSQL schema. Locally the module
skips, loudly, when RabbitMQ is unreachable; under CI=true it fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import jsonschema
import orjson
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from contracts.events import SCHEMA_VERSION, SESSION_ENDED, PublicEvent, routing_key
from contracts.http import SESSION_COOKIE
from services.messaging.bus import InProcessBus, RabbitBus
from services.mfa.bootstrap import Service, build_service, close_service, running
from services.mfa.config import Settings
from services.mfa.domain.clock import FrozenClock
from services.mfa.http.app import create_app
from services.mfa.http.context import SERVICE
from services.mfa.public_events import is_public
from services.mfa.relay import Relay
from services.notifier.app import NOTIFIER, create_notifier_app
from services.runtime.logs import RequestIdFilter
from tests.conftest import (
    FAST_PASSWORDS,
    SECRET_KEY,
    START,
    Api,
    Org,
    create_user,
    enable_two_factor,
    totp_code,
)

AMQP_URL = os.environ.get("MFA_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "contracts" / "schemas" /
                     "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
SESSION_ENDED_VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).resolve().parents[2] / "contracts" / "schemas" /
                "session-ended.schema.json").read_text()),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
MFA = Path(sys.executable).parent / "mfa"


def _rabbitmq_reachable() -> str | None:
    url = urlsplit(AMQP_URL)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 5672), timeout=3):
            return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


@pytest.fixture(scope="session")
def rabbitmq_available() -> None:
    problem = _rabbitmq_reachable()
    if problem is None:
        return
    message = f"RabbitMQ at {AMQP_URL} is unreachable ({problem})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run the RabbitMQ tests", pytrace=False)
    pytest.skip(f"!!! SKIPPING RabbitMQ TESTS: {message}")


pytestmark = [pytest.mark.usefixtures("rabbitmq_available"), pytest.mark.postgres]


async def until(condition: Callable[[], Any], within: float = 10.0, what: str = "") -> None:
    """Polls `condition` (sync or async) until it is true, or fails after `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                value = condition()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out after {within} s waiting for {what or condition}")


# ---- the broker, directly --------------------------------------------------------------------


@pytest.fixture
async def exchange() -> AsyncIterator[str]:
    """A unique topic exchange for the test, deleted afterwards."""
    name = f"test.{uuid.uuid4().hex}"
    yield name
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete(name)


@dataclass
class ProbeQueue:
    """A durable, non-exclusive queue bound to the exchange with `mfa.#`: it keeps every message
    through broker restarts and relay crashes, to be read at the end."""

    exchange: str
    name: str = field(default_factory=lambda: f"test.probe.{uuid.uuid4().hex}")

    async def declare(self) -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC,
                                                      durable=True)
            queue = await channel.declare_queue(self.name, durable=True)
            await queue.bind(exchange, routing_key="mfa.#")

    async def count(self) -> int:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.name, passive=True)
            return int(queue.declaration_result.message_count or 0)

    async def drain(self) -> list[aio_pika.abc.AbstractIncomingMessage]:
        messages = []
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.name, passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                messages.append(message)
        return messages

    async def delete(self) -> None:
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(self.name)


@pytest.fixture
async def probe(exchange: str) -> AsyncIterator[ProbeQueue]:
    queue = ProbeQueue(exchange)
    await queue.declare()
    yield queue
    await queue.delete()


def check_message(message: aio_pika.abc.AbstractIncomingMessage) -> PublicEvent:
    """A message as the contract says: valid body, its id as message id, its routing key. The
    API's own SessionEnded notices have a schema of their own."""
    event: PublicEvent = orjson.loads(message.body)
    if event["type"] == SESSION_ENDED:
        SESSION_ENDED_VALIDATOR.validate(event)
    else:
        VALIDATOR.validate(event)
    assert message.message_id == event["id"]
    assert message.routing_key == routing_key(event["type"])
    assert message.type == event["type"]
    assert message.content_type == "application/json"
    # The request that caused it, when there was one (the body is the contract, not this).
    assert message.headers.get("schema_version") == SCHEMA_VERSION
    assert set(message.headers) <= {"schema_version", "request_id"}
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    return event


def max_position(service: Service) -> int:
    return service.app.recorder.max_notification_id() or 0


def public_positions(service: Service) -> set[int]:
    """The positions of every public event in the log."""
    found: set[int] = set()
    start = 0
    while notifications := service.app.recorder.select_notifications(
            start=start, limit=500, inclusive_of_start=False):
        for notification in notifications:
            if is_public(service.app.mapper.to_domain_event(notification)):
                found.add(notification.id)
        start = notifications[-1].id
    return found


# ---- the API of the platform deployment, with its projections -----------------------------------


@dataclass
class Stack:
    server: TestServer
    service: Service
    settings: Settings
    clock: FrozenClock
    org: Org
    admin: Api
    _clients: list[TestClient[Any, Any]]

    async def browser(self) -> Api:
        client = TestClient(self.server, cookie_jar=aiohttp.CookieJar(unsafe=True))
        await client.start_server()
        self._clients.append(client)
        return Api(client)

    @property
    def api_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def head(self) -> int:
        return await self.service.call(max_position, self.service)


def platform_settings(postgres_url: str, exchange: str, tmp_path: Path) -> Settings:
    return Settings(database_url=postgres_url, secret_key=SECRET_KEY, var_dir=tmp_path / "var",
                    amqp_url=AMQP_URL, amqp_exchange=exchange)


@pytest.fixture
async def stack(postgres_url: str, exchange: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """`mfa api` (embedded=False) in a test server, its projections running beside it (else
    every command waits for them), an organization and its logged-in admin."""
    settings = platform_settings(postgres_url, exchange, tmp_path)
    clock = FrozenClock(START)
    server = TestServer(create_app(settings, clock=clock, passwords=FAST_PASSWORDS,
                                   embedded=False))
    await server.start_server()
    service = server.app[SERVICE]
    clients: list[TestClient[Any, Any]] = []
    try:
        async with running(service, projections=True):
            email, password = f"admin-{uuid.uuid4().hex[:8]}@example.com", "admin-password-1"
            org_id, admin_id = (await service.command(
                service.app.create_organization, "Acme", email, "Ada Admin",
                FAST_PASSWORDS.hash(password),
                "support:test")).value
            admin = TestClient(server, cookie_jar=aiohttp.CookieJar(unsafe=True))
            await admin.start_server()
            clients.append(admin)
            stack = Stack(server, service, settings, clock,
                          Org(str(org_id), str(admin_id), email, password), Api(admin), clients)
            assert await stack.admin.login(email, password) == "done"
            yield stack
            head = await stack.head()  # teardown hygiene: no projection mid-batch at close
            for projection in service.projections:
                assert await projection.wait_for(head), projection.name
    finally:
        for client in clients:
            await client.close()
        await server.close()


@pytest.fixture
async def relay(stack: Stack) -> AsyncIterator[Relay]:
    """The relay on its own connection, following the API's log (as `mfa relay` does)."""
    bus = await RabbitBus(AMQP_URL, stack.settings.amqp_exchange).connect()
    relay = Relay(stack.service.app, stack.service.db, bus, idle_poll_seconds=0.05,
                  max_backoff_seconds=1)
    task = asyncio.create_task(relay.run(), name="test-relay")
    yield relay
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await bus.close()


async def relayed(stack: Stack, relay: Relay, within: float = 20.0) -> int:
    """Waits until the relay published (and recorded) the whole log; returns its head."""
    head = await stack.head()
    await until(lambda: relay.position >= head, within, f"the relay to reach {head}")
    return head


NotifierFactory = Callable[[], Awaitable[TestServer]]


@pytest.fixture
async def notifiers(stack: Stack) -> AsyncIterator[NotifierFactory]:
    """Starts `mfa notifier` instances (each its own queue on the test exchange)."""
    servers: list[TestServer] = []

    async def start() -> TestServer:
        app = create_notifier_app(amqp_url=AMQP_URL, exchange=stack.settings.amqp_exchange,
                                  api_urls=[stack.api_url])
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@contextlib.asynccontextmanager
async def open_socket(server: TestServer, token: str | None,
                      origin: str | None = None) -> AsyncIterator[ClientWebSocketResponse]:
    headers = {"Cookie": f"{SESSION_COOKIE}={token}"} if token else {}
    if origin:
        headers["Origin"] = origin
    async with aiohttp.ClientSession() as client, \
            client.ws_connect(server.make_url("/ws"), headers=headers) as ws:
        yield ws


async def next_banner(ws: ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive()
            assert message.type == WSMsgType.TEXT, message
            payload: dict[str, Any] = orjson.loads(message.data)
            if payload["type"] == "banner":
                return payload


def session_token(api: Api) -> str:
    for cookie in api.client.session.cookie_jar:
        if cookie.key == SESSION_COOKIE:
            return cookie.value
    raise AssertionError("no session cookie")


async def logged_in_user(stack: Stack, **kwargs: Any) -> tuple[dict[str, Any], Api]:
    user = await create_user(stack.admin, **kwargs)
    browser = await stack.browser()
    await browser.login(user["email"], user["password"])
    return user, browser


# ---- the tests ---------------------------------------------------------------------------------


async def test_banner_reaches_sockets_on_two_notifier_instances(
        stack: Stack, relay: Relay, notifiers: NotifierFactory) -> None:
    first, second = await notifiers(), await notifiers()
    user, browser = await logged_in_user(stack)
    token = session_token(browser)
    async with open_socket(first, token) as one, open_socket(second, token) as two:
        for ws in (one, two):  # on connect: the current state
            assert (await next_banner(ws))["show"] is False
        status, body = await stack.admin.patch(f"/api/admin/users/{user['user_id']}",
                                               {"two_factor_required": True})
        assert status == 200, body
        for ws in (one, two):
            banner = await next_banner(ws)
            assert banner["show"] is True and banner["required"] is True
            assert banner["status"] == "off"

        await enable_two_factor(browser, user["password"], stack.clock)
        for ws in (one, two):
            assert (await next_banner(ws))["show"] is False
    for server in (first, second):
        assert server.app[NOTIFIER].duplicates == 0


async def test_a_request_id_goes_from_the_admins_save_to_the_notifiers_push(
        stack: Stack, relay: Relay, notifiers: NotifierFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    """Through PostgreSQL, the relay, RabbitMQ (the message's request_id header) and a
    standalone notifier: its log line of the push carries the admin's request id, and its
    /metrics count the socket and the push."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())
    notifier = await notifiers()
    user, browser = await logged_in_user(stack)
    async with open_socket(notifier, session_token(browser)) as ws:
        assert (await next_banner(ws))["show"] is False
        status, body = await stack.admin.call(
            "PATCH", f"/api/admin/users/{user['user_id']}", {"two_factor_required": True},
            headers={"X-Request-Id": "admin-save-over-rabbitmq"})
        assert status == 200, body
        assert (await next_banner(ws))["show"] is True
        async with aiohttp.ClientSession() as client, \
                client.get(notifier.make_url("/metrics")) as response:
            text = await response.text()
    pushes = [r for r in caplog.records if r.getMessage().startswith("pushed a banner")
              and getattr(r, "user_id", None) == user["user_id"]]
    assert [(r.request_id, r.event) for r in pushes] == [  # type: ignore[attr-defined]
        ("admin-save-over-rabbitmq", "RequirementSet")]
    assert "mfa_notifier_open_websockets 1.0" in text
    assert 'mfa_notifier_pushes_total{kind="banner"} 1.0' in text


async def test_notifier_refuses_anonymous_and_foreign_sockets(
        stack: Stack, notifiers: NotifierFactory) -> None:
    notifier = await notifiers()
    _, browser = await logged_in_user(stack)
    token = session_token(browser)
    async with aiohttp.ClientSession() as client:
        url = notifier.make_url("/ws")
        async with client.get(url) as response:
            assert response.status == 401
        async with client.get(url, headers={"Cookie": f"{SESSION_COOKIE}=not-a-session"}) as r:
            assert r.status == 401
        async with client.get(url, headers={"Cookie": f"{SESSION_COOKIE}={token}",
                                            "Origin": "https://evil.example"}) as response:
            assert response.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(url)
        assert refused.value.status == 401
    async with open_socket(notifier, token) as ws:  # the same cookie, same origin: accepted
        assert (await next_banner(ws))["show"] is False


async def test_notifier_ignores_duplicates(stack: Stack, notifiers: NotifierFactory) -> None:
    notifier = await notifiers()
    user, browser = await logged_in_user(stack)
    event = PublicEvent(
        id=str(uuid.uuid4()), version=SCHEMA_VERSION, type="RequirementSet",
        position=10**9, user_id=user["user_id"], org_id=stack.org.org_id,
        actor=f"admin:{stack.org.admin_id}", occurred_at="2026-11-28T10:00:05.000000+00:00",
        data={"required": True, "reason": "admin"}, state={"status": "off", "required": True})
    VALIDATOR.validate(event)
    counter = notifier.app[NOTIFIER]
    bus = await RabbitBus(AMQP_URL, stack.settings.amqp_exchange).connect()
    try:
        async with open_socket(notifier, session_token(browser)) as ws:
            assert (await next_banner(ws))["show"] is False
            before = counter.handled
            await bus.publish([event])
            await bus.publish([event])  # a redelivery: the same event id
            await until(lambda: counter.handled + counter.duplicates >= before + 2,
                        what="both deliveries")
            assert counter.duplicates == 1
            assert counter.handled == before + 1
            banner = await next_banner(ws)
            assert banner["show"] is True and banner["position"] == 10**9
            with pytest.raises(TimeoutError):  # both were handled: nothing else is queued
                await ws.receive(timeout=0.2)
    finally:
        await bus.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relay_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    env.update(MFA_DATABASE_URL=settings.database_url, MFA_SECRET_KEY=SECRET_KEY,
               MFA_AMQP_URL=AMQP_URL, MFA_AMQP_EXCHANGE=settings.amqp_exchange,
               MFA_HEALTH_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    return env


async def test_relay_killed_with_sigkill_loses_nothing(
        postgres_url: str, exchange: str, probe: ProbeQueue, tmp_path: Path) -> None:
    """`mfa relay` killed with SIGKILL mid-stream resumes from its last recorded position: every
    public event reaches the queue at least once; SIGTERM then stops it cleanly (exit 0)."""
    settings = platform_settings(postgres_url, exchange, tmp_path)
    service = await build_service(settings, clock=FrozenClock(START), passwords=FAST_PASSWORDS,
                                  bus=InProcessBus())
    try:
        app = service.app
        org_id, _ = (await service.call(app.create_organization, "Acme", "a@example.com",
                                        "Ada", FAST_PASSWORDS.hash("admin-password-1"),
                                        "support:test")).value
        user_ids = [(await service.call(app.create_user, org_id, f"u{i}@example.com", "U",
                                        "client", FAST_PASSWORDS.hash("user-password-1"), False,
                                        "support:test")).value for i in range(3)]

        async def generate(count: int) -> None:
            for i in range(count):
                user_id = user_ids[i % len(user_ids)]
                await service.call(app.update_user, org_id, user_id, f"Name {i}", None,
                                   i % 2 == 0, "support:test")

        async def tracked() -> int:
            row = await service.db.fetchrow(
                "SELECT position FROM mfa_tracking WHERE projection = ?", "relay")
            return int(row["position"]) if row else 0

        await generate(150)
        first = await asyncio.create_subprocess_exec(str(MFA), "relay", env=relay_env(settings),
                                                     stdout=asyncio.subprocess.DEVNULL,
                                                     stderr=asyncio.subprocess.DEVNULL)
        try:
            await until(lambda: probe.count(), within=20, what="the relay's first messages")
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        killed_at = await tracked()
        await generate(60)
        head = await service.call(max_position, service)
        assert killed_at < head

        second = await asyncio.create_subprocess_exec(
            str(MFA), "relay", env=relay_env(settings), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        try:
            await until(lambda: _at_least(tracked(), head), within=30,
                        what=f"the restarted relay to record {head}")
        finally:
            second.send_signal(signal.SIGTERM)
            output, _ = await second.communicate()
        assert second.returncode == 0, output.decode()
        assert b"mfa relay stopped" in output

        messages = await probe.drain()
        received = [check_message(message)["position"] for message in messages]
        expected = await service.call(public_positions, service)
        assert set(received) == expected, (sorted(expected - set(received)),
                                           sorted(set(received) - expected))
    finally:
        await close_service(service)


async def _at_least(value: Awaitable[int], bound: int) -> bool:
    return await value >= bound


async def test_no_secret_on_the_bus(stack: Stack, relay: Relay, probe: ProbeQueue) -> None:
    """A 2FA setup and logins with TOTP and a recovery code, through RabbitMQ: no message body
    carries the secret, a code, the password or an argon2 hash."""
    user, browser = await logged_in_user(stack, password="a-secret-password-1")
    key, codes = await enable_two_factor(browser, user["password"], stack.clock)
    await browser.post("/api/logout")
    stack.clock.advance(30)
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    totp = totp_code(key, stack.clock)
    status, body = await browser.post("/api/login/second-factor", {"code": totp})
    assert status == 200, body
    await browser.post("/api/logout")
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor", {"code": codes[0]})
    assert status == 200, body
    await relayed(stack, relay)

    messages = await probe.drain()
    kinds = {check_message(message)["type"] for message in messages}
    assert {"EnrollmentStarted", "TotpConfirmed", "TotpAccepted",
            "RecoveryCodeConsumed"} <= kinds
    forbidden = {key, key.replace(" ", ""), user["password"], stack.org.admin_password,
                 *codes, "$argon2"}
    for message in messages:
        body_text = message.body.decode()
        leaked = [value for value in forbidden if value in body_text]
        assert not leaked, (leaked, body_text)
        # A 6-digit TOTP code may well occur inside a timestamp: no value may be the code.
        assert totp not in leaves(orjson.loads(message.body)), body_text


def leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [str(value)]
