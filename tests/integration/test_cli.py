"""The `mfa` command line as platform support runs it (F10), in subprocesses, against SQLite and
PostgreSQL: create-org prints the organization id and its admin can log in; support reset-2fa
turns that admin's 2FA off, recorded with the operator as actor; unknown emails and missing
settings fail with the documented exit codes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp.test_utils import TestClient, TestServer

from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from services.mfa.http.app import create_app
from services.mfa.http.context import SERVICE
from tests.conftest import (
    FAST_PASSWORDS,
    PG_DSN,
    SECRET_KEY,
    START,
    Api,
    FrozenClock,
    enable_two_factor,
    totp_code,
)

ROOT = Path(__file__).resolve().parents[2]


def mfa(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.mfa.cli", *args],
                          cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def environment(database_url: str, tmp_path: Path, *, secret_key: str | None = SECRET_KEY,
                ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    env.update(MFA_DATABASE_URL=database_url, MFA_VAR_DIR=str(tmp_path / "var"))
    if secret_key is not None:
        env["MFA_SECRET_KEY"] = secret_key
    return env


@asynccontextmanager
async def serving(database_url: str, tmp_path: Path,
                  clock: FrozenClock) -> AsyncIterator[tuple[Service, Api]]:
    """The API on the same store, as `mfa serve` would run it, and one browser."""
    settings = Settings(database_url=database_url, secret_key=SECRET_KEY,
                        var_dir=tmp_path / "var")
    server = TestServer(create_app(settings, clock=clock, passwords=FAST_PASSWORDS))
    client = TestClient(server, cookie_jar=aiohttp.CookieJar(unsafe=True))
    await client.start_server()
    try:
        service = server.app[SERVICE]
        # The views catch up with whatever the command line wrote while no server ran.
        position = await service.call(service.app.recorder.max_notification_id)
        for runner in service.projections:
            assert await runner.wait_for(position)
        yield service, Api(client)
    finally:
        await client.close()


async def test_create_org_then_login_then_support_reset(database_url: str,
                                                        tmp_path: Path) -> None:
    env = environment(database_url, tmp_path)
    email, password = "boss@acme.example", "boss-password-1"
    created = await asyncio.to_thread(
        mfa, "create-org", "--name", "Acme", "--admin-email", email, "--admin-password",
        password, "--admin-name", "Bo Boss", "--operator", "alice", env=env)
    assert created.returncode == 0, created.stderr
    org_id = created.stdout.strip()
    assert str(uuid.UUID(org_id)) == org_id  # exactly the id, nothing else on stdout

    clock = FrozenClock(START)
    async with serving(database_url, tmp_path, clock) as (_, admin):
        assert await admin.login(email, password) == "done"
        status, me = await admin.get("/api/me")
        assert status == 200, me
        assert (me["org_id"], me["email"], me["name"], me["role"]) == (org_id, email, "Bo Boss",
                                                                       "admin")
        status, grid = await admin.get("/api/admin/users")
        assert [row["user_id"] for row in grid["users"]] == [me["user_id"]]
        key, codes = await enable_two_factor(admin, password, clock)
        await admin.post("/api/logout")
        assert await admin.login(email, password) == "second_factor"

    # The same email again is refused, and the first organization is untouched.
    again = await asyncio.to_thread(
        mfa, "create-org", "--name", "Acme 2", "--admin-email", email.upper(),
        "--admin-password", "other-password-1", env=env)
    assert again.returncode == 1 and email in again.stderr.lower() and not again.stdout

    reset = await asyncio.to_thread(mfa, "support", "reset-2fa", "--email", email.upper(),
                                    "--operator", "alice", env=env)
    assert reset.returncode == 0, reset.stderr

    clock.advance(60)
    async with serving(database_url, tmp_path, clock) as (_, admin):
        # 2FA is Off: the password alone logs in, the old factors are gone.
        assert await admin.login(email, password) == "done"
        status, me = await admin.get("/api/me")
        assert me["two_factor"]["status"] == "off" and me["two_factor"]["recovery_codes_left"] == 0
        status, row = await admin.get(f"/api/admin/users/{me['user_id']}")
        assert (row["two_factor_status"], row["two_factor_required"]) == ("off", False)
        status, audit = await admin.get(f"/api/audit/events?user_id={me['user_id']}&limit=1000")
        assert status == 200, audit
        events: list[dict[str, Any]] = audit["events"]
        resets = [e for e in events if e["type"] == "ResetByAdmin"]
        assert [e["actor"] for e in resets] == ["support:alice"]
        assert resets[0]["org_id"] == org_id and resets[0]["user_id"] == me["user_id"]
        created_by = [e["actor"] for e in events if e["type"] == "AccountCreated"]
        assert created_by == ["support:alice"]
        # The admin can configure 2FA again; the old secret and codes stay dead.
        new_key, _ = await enable_two_factor(admin, password, clock)
        await admin.post("/api/logout")
        clock.advance(30)
        assert await admin.login(email, password) == "second_factor"
        for code in (codes[0], totp_code(key, clock)):
            status, _ = await admin.post("/api/login/second-factor", {"code": code})
            assert status == 401
        status, body = await admin.post("/api/login/second-factor",
                                        {"code": totp_code(new_key, clock)})
        assert (status, body) == (200, {"next": "done"})


async def test_reset_of_an_unknown_email_exits_1(database_url: str, tmp_path: Path) -> None:
    env = environment(database_url, tmp_path)
    result = await asyncio.to_thread(mfa, "support", "reset-2fa", "--email",
                                     "nobody@acme.example", "--operator", "alice", env=env)
    assert result.returncode == 1
    assert "nobody@acme.example" in result.stderr
    assert result.stdout == ""


async def test_postgres_without_secret_key_exits_2(postgres_url: str, tmp_path: Path) -> None:
    env = environment(postgres_url, tmp_path, secret_key=None)
    for args in (["create-org", "--name", "Acme", "--admin-email", "boss@acme.example",
                  "--admin-password", "boss-password-1"],
                 ["support", "reset-2fa", "--email", "boss@acme.example"]):
        result = await asyncio.to_thread(mfa, *args, env=env)
        assert result.returncode == 2, result
        assert "MFA_SECRET_KEY" in result.stderr
        assert result.stdout == ""
    # It failed before touching the store: the schema is still empty.
    schema = postgres_url.split("schema=", 1)[1]
    with psycopg.connect(PG_DSN) as conn:
        count = conn.execute("SELECT count(*) FROM information_schema.tables"
                             " WHERE table_schema = %s", (schema,)).fetchone()
    assert count == (0,)


async def test_create_org_refuses_a_short_password(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path / 'mfa.db'}", tmp_path)
    result = await asyncio.to_thread(
        mfa, "create-org", "--name", "Acme", "--admin-email", "boss@acme.example",
        "--admin-password", "short", env=env)
    assert result.returncode == 2 and "password" in result.stderr and result.stdout == ""


def test_serve_with_a_bad_setting_says_which_in_one_line(tmp_path: Path) -> None:
    """A bad value stops the process at once: one line naming the variable, no traceback."""
    env = environment(f"sqlite:///{tmp_path / 'mfa.db'}", tmp_path)
    for name, value in (("MFA_PORT", "eighty"), ("MFA_TRUSTED_PROXIES", "10.0.0.300"),
                        ("MFA_SECRET_KEY", "short")):
        result = mfa("serve", env={**env, name: value})
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"mfa: {name}"), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
