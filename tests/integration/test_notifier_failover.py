"""The standalone notifier checks session cookies through any healthy API instance
(MFA_API_URL with several URLs): refused connections, timeouts and 5xx move on to the next
instance, a 401 is an answer, and the instance that answered is asked first next time.

Fake API instances here; tests/integration/test_behind_proxy.py SIGKILLs a real `mfa api`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from contracts.http import SESSION_COOKIE
from services.mfa.config import ConfigError, Settings
from services.notifier.live_sessions import LiveSessions
from services.notifier.session_check import ApiSessionCheck
from services.notifier.websocket import SessionCheckFailed, Viewer, websocket_handler

TOKEN = "a-session-token"
SESSION = {"user_id": "u1", "two_factor": {"status": "off", "required": True},
           "session": {"id": "s1"}}


@dataclass
class FakeApi:
    """One API instance answering `GET /api/session` with `status` (after `delay` seconds)."""

    status: int = 200
    delay: float = 0.0
    calls: list[str] = field(default_factory=list)
    server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(request.cookies.get(SESSION_COOKIE, ""))
        await asyncio.sleep(self.delay)
        if self.status == 200:
            return web.json_response(SESSION)
        return web.json_response({"error": {"code": "x", "message": "x"}}, status=self.status)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")


Start = Callable[..., Awaitable[FakeApi]]


@pytest.fixture
async def fake_api() -> AsyncIterator[Start]:
    servers: list[TestServer] = []

    async def start(**kwargs: float) -> FakeApi:
        api = FakeApi(**kwargs)  # type: ignore[arg-type]
        app = web.Application()
        app.router.add_get("/api/session", api.handle)
        api.server = TestServer(app)
        await api.server.start_server()
        servers.append(api.server)
        return api

    yield start
    for server in servers:
        await server.close()


def closed_port_url() -> str:
    """An address nobody listens on: connections are refused, as to a killed instance."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_moves_past_refused_and_failing_instances_and_remembers_the_healthy_one(
        fake_api: Start, client: aiohttp.ClientSession) -> None:
    failing, healthy = await fake_api(status=503), await fake_api()
    check = ApiSessionCheck(client, [closed_port_url(), failing.url, healthy.url])
    assert await check(TOKEN) == Viewer("u1", "off", True, "s1")
    assert len(failing.calls) == 1 and healthy.calls == [TOKEN]
    assert check.healthy_url == healthy.url

    assert await check(TOKEN) == Viewer("u1", "off", True, "s1")
    assert len(failing.calls) == 1, "the healthy instance is asked first"
    assert len(healthy.calls) == 2


async def test_a_slow_instance_costs_one_bounded_attempt(
        fake_api: Start, client: aiohttp.ClientSession) -> None:
    slow, healthy = await fake_api(delay=5), await fake_api()
    check = ApiSessionCheck(client, [slow.url, healthy.url], aiohttp.ClientTimeout(total=0.3))
    async with asyncio.timeout(2):
        assert await check(TOKEN) is not None
    assert check.healthy_url == healthy.url


async def test_an_ended_session_is_an_answer_not_a_failure(
        fake_api: Start, client: aiohttp.ClientSession) -> None:
    first, second = await fake_api(status=401), await fake_api()
    check = ApiSessionCheck(client, [first.url, second.url])
    assert await check(TOKEN) is None
    assert second.calls == []
    assert await check("not a token!") is None  # never sent anywhere
    assert len(first.calls) == 1


async def test_when_no_instance_answers_nobody_is_told_the_session_ended(
        fake_api: Start, client: aiohttp.ClientSession) -> None:
    failing = await fake_api(status=500)
    check = ApiSessionCheck(client, [closed_port_url(), failing.url])
    with pytest.raises(SessionCheckFailed, match="HTTP 500"):
        await check(TOKEN)

    # The socket is refused for now (503, try again), not as unauthenticated.
    app = web.Application()
    app.router.add_get("/ws", websocket_handler(LiveSessions(), check))
    server = TestServer(app)
    await server.start_server()
    try:
        async with client.get(server.make_url("/ws"),
                              headers={"Cookie": f"{SESSION_COOKIE}={TOKEN}"}) as response:
            assert response.status == 503
            assert response.headers["Retry-After"]
            assert (await response.json())["error"]["code"] == "unavailable"
    finally:
        await server.close()


def test_mfa_api_url_takes_several_urls(tmp_path: Path) -> None:
    env = {"MFA_VAR_DIR": str(tmp_path)}
    settings = Settings.from_env(
        {**env, "MFA_API_URL": " http://api-1:8080/, http://api-2:8080 "})
    assert settings.api_url == ("http://api-1:8080", "http://api-2:8080")
    assert Settings.from_env(env).api_url == ("http://127.0.0.1:8080",)
    with pytest.raises(ConfigError, match="MFA_API_URL"):
        Settings.from_env({**env, "MFA_API_URL": "http://api-1:8080,api-2:8080"})
