"""What an operator sees (README "What to watch"): request ids from the HTTP request to the
stored events, the bus and the notifier's push; JSON logs without secrets; the Prometheus
metrics of each process; /healthz and /readyz of `mfa projector` and `mfa relay`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from services.mfa.domain.mfa import mfa_id
from services.mfa.http.app import create_app
from services.runtime.logs import JsonFormatter, RequestIdFilter
from tests.conftest import (
    FAST_PASSWORDS,
    SECRET_KEY,
    Api,
    FrozenClock,
    Org,
    create_user,
    enable_two_factor,
    totp_code,
)
from tests.integration.test_live_banner import next_message

ROOT = Path(__file__).resolve().parents[2]
NewBrowser = Callable[[], Awaitable[Api]]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Callable[[], list[dict[str, Any]]]:
    """Every record of the test as the process would print it: a JSON object per line."""
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RequestIdFilter())  # as the process's handler has it
    formatter = JsonFormatter()

    def lines() -> list[dict[str, Any]]:
        return [orjson.loads(formatter.format(record)) for record in caplog.records]

    return lines


async def metrics(api: Api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = await api.get("/metrics")
    assert status == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_a_request_id_is_kept_when_sane_and_made_otherwise(admin: Api) -> None:
    await admin.call("GET", "/api/me", headers={"X-Request-Id": "lb-1234.abc:5"})
    assert admin.last_headers["X-Request-Id"] == "lb-1234.abc:5"
    for insane in ("a b", "x" * 129, "évé", "<script>"):
        await admin.call("GET", "/api/me", headers={"X-Request-Id": insane})
        made = admin.last_headers["X-Request-Id"]
        assert made != insane and len(made) == 32
    # On answers of every kind: an error, a page, the health endpoints.
    for path in ("/api/admin/users/not-an-id", "/api/nowhere", "/healthz", "/login"):
        await admin.call("GET", path, headers={"X-Request-Id": "req-7"})
        assert admin.last_headers["X-Request-Id"] == "req-7", path


async def test_a_login_can_be_followed_by_its_request_id_without_its_password(
        admin: Api, new_browser: NewBrowser, service: Service, clock: FrozenClock, org: Org,
        logs: Callable[[], list[dict[str, Any]]]) -> None:
    user = await create_user(admin, password="pass-word-never-logged")
    browser = await new_browser()
    key, codes = await enable_two_factor(await _logged_in(browser, user), user["password"],
                                         clock)
    await browser.post("/api/logout")
    clock.advance(30)
    status, body = await browser.call("POST", "/api/login", {
        "email": user["email"], "password": user["password"]},
        headers={"X-Request-Id": "login-step-1"})
    assert (status, body) == (200, {"next": "second_factor"})
    code = totp_code(key, clock)
    status, body = await browser.call("POST", "/api/login/second-factor", {"code": code},
                                      headers={"X-Request-Id": "login-step-2"})
    assert (status, body) == (200, {"next": "done"})

    lines = logs()
    for rid, route in (("login-step-1", "/api/login"),
                       ("login-step-2", "/api/login/second-factor")):
        access = [line for line in lines if line.get("request_id") == rid
                  and line["logger"] == "services.access"]
        assert [(a["method"], a["route"], a["status"]) for a in access] == [
            ("POST", route, 200)], access
        assert {"time", "level", "logger", "message", "duration_ms"} <= set(access[0])
    text = "\n".join(orjson.dumps(line).decode() for line in lines)
    for secret in (user["password"], code, key, key.replace(" ", ""), *codes):
        assert secret not in text

    # The events those requests stored carry their ids (the relay puts them on the bus).
    events = await service.call(lambda: list(service.app.events.get(
        mfa_id(UUID(user["user_id"])))))
    by_type = {type(event).__name__: event.request_id for event in events}
    assert by_type["PasswordAccepted"] == "login-step-1"
    assert by_type["TotpAccepted"] == "login-step-2"
    assert by_type["MfaCreated"] is not None  # the admin's request that created the user
    # Events of no request (the command line; here the fixture's organization) have none.
    admin_events = await service.call(lambda: list(service.app.events.get(
        mfa_id(UUID(org.admin_id)))))
    assert type(admin_events[0]).__name__ == "MfaCreated"
    assert admin_events[0].request_id is None


async def _logged_in(browser: Api, user: dict[str, Any]) -> Api:
    assert await browser.login(user["email"], user["password"]) == "done"
    return browser


async def test_an_admin_save_is_followed_to_the_socket_push(
        admin: Api, new_browser: NewBrowser, logs: Callable[[], list[dict[str, Any]]]) -> None:
    """Under `mfa serve`: the admin's request -> the event -> the relay -> the in-process bus
    -> the notifier's push on the user's socket, all under the admin's request id."""
    user = await create_user(admin)
    browser = await _logged_in(await new_browser(), user)
    page = await browser.client.ws_connect("/ws")
    assert (await next_message(page, "banner"))["show"] is False
    status, _ = await admin.call("PATCH", f"/api/admin/users/{user['user_id']}",
                                 {"two_factor_required": True},
                                 headers={"X-Request-Id": "admin-save-42"})
    assert status == 200
    assert (await next_message(page, "banner"))["show"] is True
    await page.close()
    pushes = [line for line in logs() if line["message"].startswith("pushed a banner")]
    assert [(p.get("request_id"), p["event"], p["user_id"], p["sockets"]) for p in pushes] == [
        ("admin-save-42", "RequirementSet", user["user_id"], 1)]


async def test_metrics_count_what_an_operator_watches(
        admin: Api, new_browser: NewBrowser, service: Service, clock: FrozenClock) -> None:
    user = await create_user(admin)
    browser = await _logged_in(await new_browser(), user)
    _, codes = await enable_two_factor(browser, user["password"], clock)
    before = await metrics(admin)
    await browser.post("/api/logout")
    status, _ = await browser.post("/api/login", {"email": user["email"], "password": "wrong"})
    assert status == 401
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(service.settings.lockout_threshold):
        status, _ = await browser.post("/api/login/second-factor", {"code": "000000"})
        assert status == 401
    status, _ = await browser.post("/api/login/second-factor", {"code": codes[0]})
    assert status == 429
    clock.advance(service.settings.lockout_base_seconds + 1)
    status, _ = await browser.post("/api/login/second-factor", {"code": codes[0]})
    assert status == 200

    after = await metrics(admin)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("mfa_password_steps_total", outcome="wrong") == 1
    assert grew("mfa_password_steps_total", outcome="right") == 1
    assert grew("mfa_second_factor_verifications_total", outcome="rejected", factor="totp") == 5
    assert grew("mfa_second_factor_verifications_total", outcome="throttled",
                factor="recovery_code") == 1
    assert grew("mfa_second_factor_verifications_total", outcome="accepted",
                factor="recovery_code") == 1
    assert grew("mfa_lockouts_started_total", factor="second_factor") == 1
    assert grew("mfa_session_ended_messages_total", result="published") == 1
    assert grew("mfa_http_request_duration_seconds_count", route="/api/login/second-factor",
                method="POST", status="4xx") == 6
    assert grew("mfa_http_request_duration_seconds_count", route="/api/admin/users/{user_id}",
                method="GET", status="2xx") == 0
    # The log followers of `mfa serve`: caught up after a read-your-writes command.
    head = value(after, "mfa_log_head_position")
    assert head > 0
    for view in ("user_state", "users_grid", "audit_log"):
        assert value(after, "mfa_projection_position", projection=view) <= head
        assert ("mfa_projection_lag_seconds", frozenset({("projection", view)})) in after
    assert ("mfa_relay_lag_events", frozenset()) in after
    assert value(after, "mfa_relay_published_total") > 0
    assert value(after, "mfa_group_commit_transactions_total") > 0
    assert value(after, "mfa_group_commit_saves_total") >= value(
        after, "mfa_group_commit_transactions_total")
    assert ("mfa_notifier_open_websockets", frozenset()) in after


async def test_lag_is_the_age_of_the_oldest_unapplied_event(
        admin: Api, service: Service, clock: FrozenClock) -> None:
    """With the views stopped behind the head, the lag says how far and for how long."""
    service.views.stop()
    await asyncio.sleep(0.3)
    written = await service.call(service.app.create_organization, "Late", "late@example.com",
                                 "Late", FAST_PASSWORDS.hash("late-password-1"), "support:test")
    clock.advance(42)
    found = await metrics(admin)
    head = value(found, "mfa_log_head_position")
    assert head >= written.position
    for view in ("user_state", "users_grid", "audit_log"):
        assert value(found, "mfa_projection_lag_events", projection=view) >= 4
        assert value(found, "mfa_projection_lag_seconds", projection=view) == pytest.approx(42)


async def test_each_app_has_its_own_registry(settings: Settings, clock: FrozenClock,
                                             tmp_path: Path) -> None:
    """Two apps in one process (as the tests run them) count apart and never collide."""
    other = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'other.db'}"})
    apps = [create_app(settings, clock=clock, passwords=FAST_PASSWORDS),
            create_app(other, clock=clock, passwords=FAST_PASSWORDS)]
    clients = [TestClient(TestServer(app)) for app in apps]
    for client in clients:
        await client.start_server()
    try:
        for _ in range(3):
            await clients[0].get("/healthz")
        counts = []
        for client in clients:
            text = await (await client.get("/metrics")).text()
            counts.append(sum(sample.value for family in text_string_to_metric_families(text)
                              if family.name == "mfa_http_request_duration_seconds"
                              for sample in family.samples if sample.name.endswith("_count")
                              and sample.labels["route"] == "/healthz"))
        assert counts == [3, 0]
    finally:
        for client in clients:
            await client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", ["projector", "relay"])
async def test_projector_and_relay_answer_health_and_metrics(
        command: str, database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MFA_", "OTEL_"))}
    env.update(MFA_DATABASE_URL=database_url, MFA_SECRET_KEY=SECRET_KEY,
               MFA_VAR_DIR=str(tmp_path / "var"), MFA_HEALTH_PORT=str(port),
               MFA_LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1")  # probes' lines are DEBUG
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.mfa.cli", command, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as client:
            async with asyncio.timeout(60):
                while True:
                    try:
                        async with client.get(f"{base}/healthz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.2)
            async with client.get(f"{base}/readyz",
                                  headers={"X-Request-Id": "probe-1"}) as response:
                assert response.status == 200
                assert response.headers["X-Request-Id"] == "probe-1"
                checks = (await response.json())["checks"]
            assert checks == ({"store": "ok", "views": "ok"} if command == "projector"
                              else {"store": "ok", "bus": "ok"})
            async with client.get(f"{base}/metrics") as response:
                text = await response.text()
        names = {family.name for family in text_string_to_metric_families(text)}
        if command == "projector":
            assert {"mfa_projection_position", "mfa_projection_lag_events",
                    "mfa_projection_lag_seconds", "mfa_log_head_position"} <= names
            assert "mfa_relay_position" not in names
        else:
            assert {"mfa_relay_position", "mfa_relay_lag_events", "mfa_relay_lag_seconds",
                    "mfa_relay_published", "mfa_relay_publish_failures"} <= names
            assert "mfa_projection_position" not in names
        assert "process_start_time_seconds" in names
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert f"mfa {'projections' if command == 'projector' else 'relay'} stopped" in \
        stdout.decode()
    # Its logs: one JSON object per line.
    lines = [orjson.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line.get("request_id") == "probe-1" for line in lines)


def test_the_notifier_starts_alone_and_refuses_bad_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    for extra, message in (({}, "MFA_AMQP_URL is required"),
                           ({"MFA_AMQP_URL": "amqp://127.0.0.1/", "MFA_NOTIFIER_PORT": "x"},
                            "MFA_NOTIFIER_PORT must be an integer")):
        result = subprocess.run([sys.executable, "-m", "services.notifier"], cwd=ROOT,
                                env={**env, **extra}, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 2, result
        assert result.stderr.strip().splitlines() == [
            result.stderr.strip()] and message in result.stderr, result.stderr


def test_without_an_otlp_endpoint_nothing_of_opentelemetry_is_loaded() -> None:
    probe = ("import sys; from services.runtime import process; "
             "process.start('mfa-test', 'INFO'); import services.mfa.cli, services.notifier.main; "
             "print([m for m in sys.modules if m.startswith('opentelemetry')])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


OTEL_PROBE = """
import asyncio, os, socket, sys
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

async def main() -> None:
    received = []
    async def traces(request):
        received.append(await request.read())
        return web.Response()
    collector = web.Application()
    collector.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(collector)
    await runner.setup()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    from services.runtime import process
    process.start("mfa-test", "WARNING")
    from services.runtime.web import health_routes, new_registry, observe
    app, registry = web.Application(), new_registry()
    observe(app, registry)
    app.add_routes(health_routes(lambda _: {}, lambda _: registry))
    client = TestClient(TestServer(app))
    await client.start_server()
    assert (await client.get("/healthz")).status == 200
    await client.close()
    from opentelemetry import trace
    await asyncio.to_thread(trace.get_tracer_provider().force_flush)
    await runner.cleanup()
    print(len(received))

asyncio.run(main())
"""


def test_with_an_otlp_endpoint_requests_are_traced_there() -> None:
    """`make install` installs the `otel` extra, so CI runs this; a bare venv without it skips."""
    pytest.importorskip("opentelemetry.sdk")
    pytest.importorskip("opentelemetry.instrumentation.aiohttp_server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-c", OTEL_PROBE], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 1  # the span of GET /healthz reached the collector
