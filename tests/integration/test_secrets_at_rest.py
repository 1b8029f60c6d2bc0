"""Secrets at rest (SPEC section 6): after a user configured 2FA, viewed and downloaded the
recovery codes, and logged in with one, neither the TOTP secret, nor any recovery code, nor a
password appears in clear in the database (every file of SQLite, every row of every table of the
PostgreSQL schema), in the logs (every logger at DEBUG, the aiohttp access log included) or on
the bus."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import psycopg
import pytest
from psycopg import sql

from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from tests.conftest import Api, FrozenClock, Org, create_user, enable_two_factor


@pytest.fixture
def settings(settings: Settings, caplog: pytest.LogCaptureFixture) -> Settings:
    """Every logger at DEBUG from before the server starts, so the whole flow is captured."""
    caplog.set_level(logging.DEBUG)
    return settings


def database_dump(database_url: str) -> bytes:
    """Everything the store holds, as bytes to search."""
    if database_url.startswith("sqlite:///"):
        folder = Path(database_url[len("sqlite:///"):]).parent
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        names = {p.name for p in files}
        assert "mfa.db" in names and "mfa.db-wal" in names, names
        return b"\n".join(p.read_bytes() for p in files)
    dsn, query = database_url.split("?", 1)[0], urlsplit(database_url).query
    schema = parse_qs(query)["schema"][0]
    parts: list[bytes] = []
    with psycopg.connect(dsn) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,))]
        assert len(tables) >= 5, tables
        for table in tables:
            rows = conn.execute(sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table))).fetchall()
            for row in rows:
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value))
                    else:
                        parts.append(str(value).encode())
    return b"\n".join(parts)


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    return "\n".join(f"{formatter.format(r)} {vars(r)!r}" for r in records)


def forms(secret: str) -> list[bytes]:
    """The secret as typed, grouped for reading, lower case, and as raw key bytes."""
    plain = secret.replace(" ", "")
    return [plain.encode(), secret.encode(), plain.lower().encode(),
            base64.b32decode(plain)]


async def test_no_secret_code_or_password_in_clear_anywhere(
        admin: Api, org: Org, new_browser, clock: FrozenClock, service: Service,
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    published: list[Any] = []

    async def on_event(event: Any) -> None:
        published.append(event)

    await service.bus.subscribe(on_event)

    user = await create_user(admin, password="correct-horse-battery-staple")
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    key, codes = await enable_two_factor(browser, user["password"], clock)
    status, shown = await browser.get("/api/me/2fa/recovery-codes")
    assert status == 200 and [c["code"] for c in shown["codes"]] == codes
    async with browser.client.get("/api/me/2fa/recovery-codes.txt") as response:
        assert response.status == 200 and codes[0] in await response.text()
    await browser.post("/api/logout")
    status, _ = await browser.post("/api/login", {"email": user["email"],
                                                  "password": "wrong-horse-battery-staple"})
    assert status == 401
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    wrong = next(c for c in ("12345678", "87654321") if c not in codes)
    status, _ = await browser.post("/api/login/second-factor", {"code": wrong})
    assert status == 401
    status, body = await browser.post("/api/login/second-factor", {"code": codes[4]})
    assert (status, body) == (200, {"next": "done"})
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["recovery_codes_left"] == 9

    position = await service.call(service.app.recorder.max_notification_id)
    assert await service.relay.wait_for(position)
    for runner in service.projections:
        assert await runner.wait_for(position)

    secrets: dict[str, list[bytes]] = {
        "the TOTP secret": forms(key),
        "the password": [user["password"].encode(), b"wrong-horse-battery-staple"],
        "the admin's password": [org.admin_password.encode()],
        **{f"recovery code {i}": [code.encode()] for i, code in enumerate(codes)},
    }

    dump = database_dump(database_url)
    # The search works: what is meant to be readable is found.
    assert user["email"].encode() in dump and user["user_id"].encode() in dump
    for what, needles in secrets.items():
        for needle in needles:
            assert needle not in dump, f"{what} is stored in clear"

    logs = log_text(caplog)
    assert "aiohttp.access" in logs and "/api/login/second-factor" in logs, "logs not captured"
    for what, needles in secrets.items():
        for needle in needles:
            assert needle.decode(errors="replace") not in logs, f"{what} is in the logs"

    assert published, "the relay published nothing"
    on_the_bus = b"\n".join(orjson.dumps(event) for event in published)
    assert user["user_id"].encode() in on_the_bus
    for what, needles in secrets.items():
        for needle in needles:
            assert needle not in on_the_bus, f"{what} went on the bus"
