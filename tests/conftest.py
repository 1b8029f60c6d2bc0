"""Shared fixtures: the store under test (SQLite, PostgreSQL), a frozen clock, a running server.

PostgreSQL tests each get a fresh schema. Locally they skip, loudly, when the server cannot be
reached; under CI=true they fail instead, so CI never passes without them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import pyotp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from services.mfa.adapters.passwords import Passwords
from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from services.mfa.domain.clock import FrozenClock
from services.mfa.http.app import create_app
from services.mfa.http.context import SERVICE

PG_DSN = os.environ.get("MFA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SECRET_KEY = "test-secret-key-0123456789abcdef0123456789"
# 2026-11-28 10:00:05 UTC: five seconds into a TOTP step, so +/- one step is well defined.
START = datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC)

# argon2 with small costs: the same algorithm and code path, fast enough for many test users.
FAST_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def _postgres_reachable() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"


@pytest.fixture(scope="session")
def postgres_available() -> None:
    problem = _postgres_reachable()
    if problem is None:
        # The grid search's pg_trgm lives in one schema per database. Install it in `public`, as
        # infra/postgres/create-database.sql does: created by a test in its own schema, it would
        # go with that schema's DROP ... CASCADE, and other tests' trigram indexes with it.
        with psycopg.connect(PG_DSN, autocommit=True) as conn, contextlib.suppress(
                psycopg.errors.UniqueViolation):  # another test run created it just now
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        return
    message = f"PostgreSQL at {PG_DSN} is unreachable ({problem})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run the PostgreSQL tests", pytrace=False)
    pytest.skip(f"!!! SKIPPING PostgreSQL TESTS: {message}")


@pytest.fixture
def postgres_url(postgres_available: None) -> Iterator[str]:
    """A fresh schema of the test database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_DSN}?schema={schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mfa.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, secret_key=SECRET_KEY, var_dir=tmp_path / "var")


@dataclass
class Api:
    """One browser: its own cookie jar, JSON in and out."""

    client: TestClient[Any, Any]

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = {"Content-Type": "application/json"} if method != "GET" else {}
        hdrs.update(headers or {})
        data = None if body is None else (body if isinstance(body, str | bytes)
                                          else orjson.dumps(body))
        async with self.client.request(method, path, data=data, headers=hdrs) as response:
            text = await response.text()
            try:
                payload = orjson.loads(text) if text else None
            except Exception:
                payload = text
            self.last_headers = response.headers
            return response.status, payload

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call("POST", path, body if body is not None else {})

    async def patch(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PATCH", path, body)

    async def login(self, email: str, password: str) -> str:
        status, body = await self.post("/api/login", {"email": email, "password": password})
        assert status == 200, body
        return str(body["next"])


@dataclass
class Org:
    org_id: str
    admin_id: str
    admin_email: str
    admin_password: str


@pytest.fixture
async def server(settings: Settings, clock: FrozenClock) -> AsyncIterator[TestServer]:
    app = create_app(settings, clock=clock, passwords=FAST_PASSWORDS)
    test_server = TestServer(app)
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.fixture
def service(server: TestServer) -> Service:
    return server.app[SERVICE]


@pytest.fixture
async def new_browser(server: TestServer) -> AsyncIterator[Callable[[], Awaitable[Api]]]:
    clients: list[TestClient[Any, Any]] = []

    async def make() -> Api:
        client = TestClient(server, cookie_jar=aiohttp.CookieJar(unsafe=True))
        await client.start_server()
        clients.append(client)
        return Api(client)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def org(service: Service) -> Org:
    """An organization with its admin, created the way `mfa create-org` does."""
    email, password = f"admin-{uuid.uuid4().hex[:8]}@example.com", "admin-password-1"
    written = await service.call(
        service.app.create_organization, "Acme", email, "Ada Admin", FAST_PASSWORDS.hash(password),
        "support:test")
    await service.settle(written.position)  # tests read the views right away
    org_id, admin_id = written.value
    return Org(str(org_id), str(admin_id), email, password)


@pytest.fixture
async def admin(org: Org, new_browser: Callable[[], Awaitable[Api]]) -> Api:
    api = await new_browser()
    assert await api.login(org.admin_email, org.admin_password) == "done"
    return api


def totp_code(setup_key: str, clock: FrozenClock, steps: int = 0) -> str:
    """The code an authenticator app shows for the setup key, `steps` steps from now."""
    return pyotp.TOTP(setup_key.replace(" ", "")).at(clock.now().timestamp() + 30 * steps)


async def create_user(admin: Api, *, required: bool = False, role: str = "client",
                      password: str = "user-password-1") -> dict[str, Any]:
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    status, body = await admin.post("/api/admin/users", {
        "email": email, "name": "Test User", "role": role, "password": password,
        "two_factor_required": required})
    assert status == 201, body
    return {**body, "password": password}


async def enable_two_factor(api: Api, password: str, clock: FrozenClock) -> tuple[str, list[str]]:
    """Configure 2FA through the API as a user would; returns the setup key and the codes."""
    status, body = await api.post("/api/me/reauthenticate", {"password": password})
    # A forced-setup session got its window at login and may not reauthenticate (SPEC 4).
    assert status == 200 or body["error"]["code"] == "setup_2fa_required", body
    status, setup = await api.post("/api/me/2fa/setup")
    assert status == 200, setup
    status, body = await api.post("/api/me/2fa/setup/verify",
                                  {"code": totp_code(setup["setup_key"], clock)})
    assert status == 200, body
    return setup["setup_key"], body["recovery_codes"]
