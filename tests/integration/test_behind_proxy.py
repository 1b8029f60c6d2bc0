"""The platform deployment behind a TLS proxy, end to end (issue 10): a real nginx running
`infra/nginx/mfa.conf` with a self-signed certificate, in front of two `mfa api` and two
`mfa notifier` processes (plus `mfa projector` and `mfa relay`) on PostgreSQL, in a fresh schema,
and RabbitMQ, on an exchange of the test's own. Every process is the real console script.

Through nginx over https and wss only, a client and an admin do what browsers do; the services
are told MFA_PUBLIC_URL=https://127.0.0.1:<nginx port> and MFA_TRUSTED_PROXIES=127.0.0.1. The
browsers connect from other loopback addresses (127.0.0.2, 127.0.0.3) than nginx does
(127.0.0.1), so the audit shows whether the service saw the client or the proxy.

Locally it skips, loudly, without nginx (`make nginx`), PostgreSQL or RabbitMQ; under CI=true it
fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from contracts.http import SESSION_COOKIE
from services.messaging.bus import InProcessBus
from services.mfa.bootstrap import build_service, close_service
from services.mfa.config import Settings
from tests.conftest import FAST_PASSWORDS, SECRET_KEY
from tests.integration.nginx import (
    NGINX,
    Nginx,
    client_ssl_context,
    free_port,
    render_site,
    self_signed_certificate,
)
from tests.integration.test_rabbitmq import (  # noqa: F401 (fixtures, used by name)
    AMQP_URL,
    rabbitmq_available,
    until,
)
from tests.integration.test_rabbitmq import (  # noqa: F401 (the test's exchange, then deleted)
    exchange as test_exchange,
)

MFA = Path(sys.executable).parent / "mfa"
HOST = "127.0.0.1"
PROXY_ADDRESS = "127.0.0.1"  # where nginx connects to the services from
CLIENT_ADDRESS = "127.0.0.2"
ADMIN_ADDRESS = "127.0.0.3"
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@proxy.example", "admin-password-1"


@pytest.fixture(scope="session")
def nginx_available() -> None:
    if NGINX.exists():
        return
    message = f"nginx is not installed at {NGINX} (make nginx installs Debian's)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run the behind-a-proxy test", pytrace=False)
    pytest.skip(f"!!! SKIPPING THE BEHIND-A-PROXY TEST: {message}")


pytestmark = [pytest.mark.usefixtures("nginx_available", "rabbitmq_available"),
              pytest.mark.postgres]


@dataclass
class Process:
    name: str
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Platform:
    """The processes behind nginx, and nginx."""

    folder: Path
    env: dict[str, str]
    nginx: Nginx
    api_ports: list[int]
    notifier_ports: list[int]
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"https://{HOST}:{self.nginx.port}"

    async def run(self, name: str, *args: str, **env: str) -> Process:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                str(MFA), *args, env={**self.env, **env}, stdout=out,
                stderr=asyncio.subprocess.STDOUT)
        self.processes[name] = Process(name, process, log)
        return self.processes[name]

    def says(self, name: str, text: str) -> bool:
        return text in self.processes[name].output()

    async def create_org(self) -> None:
        """As `mfa create-org` does, in this process (one Python start less), with a cheap
        argon2 hash (the API verifies it with the costs it names)."""
        settings = Settings(database_url=self.env["MFA_DATABASE_URL"], secret_key=SECRET_KEY,
                            var_dir=self.folder / "var")
        service = await build_service(settings, passwords=FAST_PASSWORDS, bus=InProcessBus())
        try:
            await service.call(service.app.create_organization, "Proxy Org", ADMIN_EMAIL,
                               "Ada Admin", FAST_PASSWORDS.hash(ADMIN_PASSWORD), "support:test")
        finally:
            await close_service(service)

    async def stop(self) -> None:
        await self.nginx.stop()
        running = [p for p in self.processes.values() if p.process.returncode is None]
        for p in running:
            p.process.send_signal(signal.SIGTERM)
        for p in running:
            try:
                async with asyncio.timeout(15):
                    await p.process.wait()
            except TimeoutError:
                p.process.kill()
                await p.process.wait()


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as client, \
                client.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


@pytest.fixture
async def platform(postgres_url: str, test_exchange: str,  # noqa: F811 (a fixture)
                   tmp_path: Path) -> AsyncIterator[Platform]:
    api_ports, notifier_ports = [free_port(), free_port()], [free_port(), free_port()]
    nginx = Nginx(tmp_path, free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    env.update(
        PYTHONUNBUFFERED="1", MFA_HOST=HOST, MFA_DATABASE_URL=postgres_url,
        MFA_SECRET_KEY=SECRET_KEY, MFA_AMQP_URL=AMQP_URL, MFA_AMQP_EXCHANGE=test_exchange,
        MFA_PUBLIC_URL=f"https://{HOST}:{nginx.port}", MFA_TRUSTED_PROXIES=PROXY_ADDRESS,
        # Both notifiers check sessions through either API instance, the first one first.
        MFA_API_URL=",".join(f"http://{HOST}:{port}" for port in api_ports),
        MFA_HASHING_THREADS="1")
    platform = Platform(tmp_path, env, nginx, api_ports, notifier_ports)
    try:
        for i, port in enumerate(notifier_ports, 1):  # no database: they start meanwhile
            await platform.run(f"notifier-{i}", "notifier", MFA_NOTIFIER_PORT=str(port))
        await platform.create_org()  # creates the event store's tables before the rest start
        for i, port in enumerate(api_ports, 1):
            await platform.run(f"api-{i}", "api", MFA_PORT=str(port))
        await platform.run("projector", "projector")
        await platform.run("relay", "relay")

        certificate, key = self_signed_certificate(tmp_path, HOST)
        await nginx.start(render_site({
            "MFA_SERVER_NAME": HOST, "MFA_LISTEN": f"{HOST}:{nginx.port}",
            "MFA_TLS_CERTIFICATE": str(certificate), "MFA_TLS_CERTIFICATE_KEY": str(key),
            "MFA_API_1": f"{HOST}:{api_ports[0]}", "MFA_API_2": f"{HOST}:{api_ports[1]}",
            "MFA_NOTIFIER_1": f"{HOST}:{notifier_ports[0]}",
            "MFA_NOTIFIER_2": f"{HOST}:{notifier_ports[1]}"}))

        for port in api_ports + notifier_ports:
            url = f"http://{HOST}:{port}/readyz"
            await until(partial(answers, url), within=40, what=f"{url} ready")
        for name in ("projector", "relay"):
            await until(partial(platform.says, name, "following the event log"), within=40,
                        what=f"{name} ready")
        yield platform
    finally:
        await platform.stop()
        for process in platform.processes.values():  # shown when the test failed
            print(f"---- {process.name} (exit {process.process.returncode}) ----\n"
                  + "\n".join(process.output().splitlines()[-40:]))
        if nginx.error_log.exists():
            print("---- nginx error log ----\n" + nginx.error_log.read_text()[-4000:])


@dataclass
class Browser:
    """A browser on its own loopback address: trusts the test's certificate, keeps cookies,
    sends the page's Origin on every call, as a page of the service does."""

    session: aiohttp.ClientSession
    origin: str

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None,
                   ) -> tuple[int, Any, aiohttp.ClientResponse]:
        hdrs = {"Origin": self.origin}
        if method != "GET":
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        async with self.session.request(method, f"{self.origin}{path}", json=body,
                                        headers=hdrs) as response:
            payload = await response.json() if response.content_type == "application/json" \
                else await response.text()
            return response.status, payload, response

    async def login(self, email: str, password: str) -> str:
        status, body, response = await self.call("POST", "/api/login",
                                                 {"email": email, "password": password})
        assert status == 200, body
        assert_secure_session_cookie(response)
        return str(body["next"])

    @contextlib.asynccontextmanager
    async def socket(self, origin: str = "") -> AsyncIterator[ClientWebSocketResponse]:
        url = self.origin.replace("https://", "wss://") + "/ws"
        async with self.session.ws_connect(url, origin=origin or self.origin) as ws:
            yield ws


def assert_secure_session_cookie(response: aiohttp.ClientResponse) -> None:
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["secure"] and cookie["httponly"], cookie.OutputString()
    assert cookie["samesite"] == "Lax", cookie.OutputString()
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


@contextlib.asynccontextmanager
async def browser(platform: Platform, address: str) -> AsyncIterator[Browser]:
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(platform.folder / "mfa.crt"),
                                     local_addr=(address, 0))
    # unsafe: cookies of an IP-address host (the test's origin is https://127.0.0.1:<port>).
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Browser(session, platform.origin)


async def next_banner(ws: ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive()
            assert message.type == WSMsgType.TEXT, message
            payload: dict[str, Any] = message.json()
            if payload["type"] == "banner":
                return payload


async def close_code(ws: ClientWebSocketResponse) -> int:
    """The code the server closes the socket with (notices sent before the close are read
    past). From the close frame itself: the client's reply may find the connection already
    gone, which aiohttp records as 1006."""
    async with asyncio.timeout(10):
        while (message := await ws.receive()).type == WSMsgType.TEXT:
            pass
    assert message.type == WSMsgType.CLOSE, message
    return int(message.data)


def totp_at_step(setup_key: str, step: int) -> str:
    return pyotp.TOTP(setup_key.replace(" ", "")).at(step * 30)


async def test_behind_nginx_over_tls(platform: Platform) -> None:
    started = time.monotonic()
    async with browser(platform, ADMIN_ADDRESS) as admin, \
            browser(platform, CLIENT_ADDRESS) as client:
        assert await admin.login(ADMIN_EMAIL, ADMIN_PASSWORD) == "done"

        # CSRF: the page's own origin (the public URL) is accepted, any other refused, the
        # same host over plain http too.
        user: dict[str, Any] = {
            "email": "client@proxy.example", "name": "Carl Client", "role": "client",
            "password": "client-password-1", "two_factor_required": False}
        for origin in ("https://evil.example", f"http://{HOST}:{platform.nginx.port}"):
            status, body, _ = await admin.call("POST", "/api/admin/users", user,
                                               headers={"Origin": origin})
            assert (status, body["error"]["code"]) == (403, "forbidden"), (origin, body)
        status, created, response = await admin.call("POST", "/api/admin/users", user)
        assert status == 201, created
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        user_id = created["user_id"]

        # The client's address, not nginx's, even when the client forges X-Forwarded-For.
        status, body, _ = await client.call(
            "POST", "/api/login", {"email": user["email"], "password": "wrong-password-1"},
            headers={"X-Forwarded-For": "203.0.113.9"})
        assert (status, body["error"]["code"]) == (401, "invalid_credentials"), body
        assert await client.login(user["email"], user["password"]) == "done"
        addresses: dict[str, str] = {}

        async def audited() -> bool:  # a login's events reach the audit view a moment later
            status, page, _ = await admin.call("GET", f"/api/audit/events?user_id={user_id}")
            assert status == 200, page
            addresses.update({e["type"]: e["data"]["address"] for e in page["events"]
                              if e["type"] in ("PasswordRejected", "PasswordAccepted")})
            return len(addresses) == 2

        await until(audited, what="both password attempts in the audit")
        assert addresses == {"PasswordRejected": CLIENT_ADDRESS,
                             "PasswordAccepted": CLIENT_ADDRESS}

        # The live banner over wss, through nginx to a notifier; not for a page of another site.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with client.socket(origin="https://evil.example"):
                pass
        assert refused.value.status == 403
        async with client.socket() as ws:
            assert (await next_banner(ws))["show"] is False
            status, body, _ = await admin.call("PATCH", f"/api/admin/users/{user_id}",
                                               {"two_factor_required": True})
            assert status == 200, body
            banner = await next_banner(ws)
            assert (banner["show"], banner["required"]) == (True, True)

            status, body, _ = await client.call("POST", "/api/me/reauthenticate",
                                                {"password": user["password"]})
            assert status == 200, body
            status, setup, _ = await client.call("POST", "/api/me/2fa/setup", {})
            assert status == 200, setup
            step = int(time.time()) // 30
            status, body, _ = await client.call(
                "POST", "/api/me/2fa/setup/verify",
                {"code": totp_at_step(setup["setup_key"], step)})
            assert status == 200, body
            assert (await next_banner(ws))["show"] is False

            status, body, _ = await client.call("POST", "/api/logout", {})
            assert status == 200, body
            assert await close_code(ws) == 4401  # "session ended"

        # Now with 2FA on: the password, then the second factor (the next step's code: the
        # step of the setup was used).
        assert await client.login(user["email"], user["password"]) == "second_factor"
        status, body, response = await client.call(
            "POST", "/api/login/second-factor", {"code": totp_at_step(setup["setup_key"],
                                                                      step + 1)})
        assert (status, body["next"]) == (200, "done"), body
        assert_secure_session_cookie(response)

        # nginx spread the API calls over both instances.
        api_servers = set(platform.nginx.upstreams("/api/"))
        assert api_servers == {f"{HOST}:{port}" for port in platform.api_ports}, api_servers

        # One API instance dies: the notifiers check sessions through the other (the first in
        # their MFA_API_URL is the dead one), so new sockets still open on both notifiers.
        def sockets() -> list[str]:  # the notifier each socket went to, in order
            return platform.nginx.upstreams("/ws", status="101")

        # nginx logs a WebSocket request when it ends: the first socket's line, then the kill.
        await until(lambda: len(sockets()) == 1, what="the first socket logged")
        api_1 = platform.processes["api-1"].process
        api_1.send_signal(signal.SIGKILL)
        await api_1.wait()
        for _ in platform.notifier_ports:
            async with client.socket() as ws:
                banner = await next_banner(ws)
                assert (banner["show"], banner["status"]) == (False, "on"), banner
        await until(lambda: len(sockets()) == 3, what="the new sockets logged")
        assert set(sockets()[1:]) == {f"{HOST}:{port}" for port in platform.notifier_ports}
        for i in (1, 2):
            assert platform.says(f"notifier-{i}", "session checks now go to "
                                 f"http://{HOST}:{platform.api_ports[1]}")
        status, me, _ = await client.call("GET", "/api/me")  # nginx skips the dead instance
        assert status == 200 and me["two_factor"]["status"] == "on", me
    print(f"behind-a-proxy scenario: {time.monotonic() - started:.1f} s")
