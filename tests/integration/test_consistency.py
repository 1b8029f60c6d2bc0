"""Consistency made explicit (issue 10, item 2), on both stores: a command whose views do not
apply it within MFA_VIEWS_WAIT_SECONDS answers 503 `unavailable` with Retry-After (never a stale
answer); a view that fails on an event stops visibly (its failure, readiness, the metric, the
failures table, one error log) while the others go on, and goes on by itself once the event
applies; an API process without the views hears the projector's announcements."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.mfa.bootstrap import Service, build_service, close_service, running
from services.mfa.config import Settings
from services.mfa.domain.mfa import MFA
from services.mfa.http.app import create_app
from services.mfa.http.context import SERVICE
from services.mfa.projections.runner import Projection
from tests.conftest import FAST_PASSWORDS, SECRET_KEY, START, Api, FrozenClock, Org, create_user
from tests.integration.test_cli import environment, mfa


class Faulty:
    """A projection that fails on RequirementSet events while `failing` is set."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name = inner.name
        self.tables = inner.tables
        self.schema = inner.schema
        self.postgres_schema = inner.postgres_schema
        self.failing = True

    def statements(self, event: Any, position: int) -> list[Any]:
        if self.failing and isinstance(event, MFA.RequirementSet):
            raise ValueError("cannot apply this event")
        return self.inner.statements(event, position)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"views_wait_seconds": 1.0})


@pytest.fixture
async def admin(admin: Api, service: Service) -> Api:
    await service.settle(await service.call(service.app.recorder.max_notification_id))
    return admin


async def test_a_view_failing_on_an_event_stops_visibly_and_recovers(
        admin: Api, service: Service, caplog: pytest.LogCaptureFixture) -> None:
    user = await create_user(admin)
    runner = next(r for r in service.projections if r.name == "user_state")
    faulty = Faulty(runner.projection)
    runner.projection = faulty
    for follower in [service.views, *service.projections]:
        follower.max_backoff_seconds = 0.2  # retry often, so the log would repeat if it could
    caplog.set_level(logging.DEBUG, logger="services.mfa.log_follower")

    started = time.monotonic()
    status, body = await admin.patch(f"/api/admin/users/{user['user_id']}",
                                     {"two_factor_required": True})
    assert status == 503, body
    assert body["error"]["code"] == "unavailable"
    assert admin.last_headers["Retry-After"].isdigit()
    assert time.monotonic() - started < 3

    failure = runner.failure
    assert failure is not None and failure.event_type == "MFA.RequirementSet"
    await asyncio.sleep(1)  # several retries
    assert runner.failed_attempts >= 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert f"position {failure.position}" in errors[0].getMessage()
    assert "MFA.RequirementSet" in errors[0].getMessage()

    status, ready = await admin.get("/readyz")
    assert status == 503 and "MFA.RequirementSet" in ready["checks"]["views"], ready
    status, metrics = await admin.get("/metrics")
    assert 'mfa_follower_failing{follower="user_state"} 1' in metrics
    rows = await service.db.fetch("SELECT follower, position, event_type "
                                  "FROM mfa_follower_failures")
    assert rows == [{"follower": "user_state", "position": failure.position,
                     "event_type": "MFA.RequirementSet"}]
    # The other views went on: the grid shows the change.
    grid = next(r for r in service.projections if r.name == "users_grid")
    assert grid.position >= failure.position

    status_command = await asyncio.to_thread(
        mfa, "projections", "status", env=environment(service.settings.database_url,
                                                      service.settings.var_dir.parent))
    assert status_command.returncode == 1, status_command.stderr
    lines = {line.split()[0]: line for line in status_command.stdout.splitlines()[2:]}
    assert set(lines) == {"user_state", "users_grid", "audit_log", "relay"}
    assert "MFA.RequirementSet at position" in lines["user_state"]
    assert lines["users_grid"].split()[2] == "0"  # no lag

    faulty.failing = False
    service.views.resume()
    head = await service.call(service.app.recorder.max_notification_id)
    assert await runner.wait_for(head, 5)
    assert runner.failure is None
    status, ready = await admin.get("/readyz")
    assert status == 200, ready
    for _ in range(100):  # the row goes right after the view moved on
        if await service.db.fetch("SELECT follower FROM mfa_follower_failures") == []:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the failure stayed recorded")
    status, body = await admin.get(f"/api/admin/users/{user['user_id']}")
    assert status == 200 and body["two_factor_required"] is True


async def test_views_not_running_answer_503_not_a_stale_404(
        admin: Api, service: Service) -> None:
    """With the views stopped (a projector down), creating a user answers 503 within the
    wait instead of a 404 for the user just created; when the views run again, it shows."""
    service.views.stop()
    await asyncio.sleep(0.3)
    assert not service.views.running
    started = time.monotonic()
    status, body = await admin.post("/api/admin/users", {
        "email": f"late-{uuid.uuid4().hex[:8]}@example.com", "name": "Late", "role": "client",
        "password": "user-password-1", "two_factor_required": False})
    assert status == 503, body
    assert body["error"]["code"] == "unavailable"
    assert "saved" in body["error"]["message"]
    assert admin.last_headers["Retry-After"].isdigit()
    assert time.monotonic() - started < 3
    task = asyncio.create_task(service.views.run())
    try:
        head = await service.call(service.app.recorder.max_notification_id)
        for runner in service.projections:
            assert await runner.wait_for(head, 10)
        status, body = await admin.get("/api/admin/users?limit=1000")
        assert "Late" in {user["name"] for user in body["users"]}
    finally:
        service.views.stop()
        await task


@pytest.mark.postgres
async def test_api_hears_the_projector_announce_its_progress(
        postgres_url: str, tmp_path: Path) -> None:
    """`mfa api` (no views in the process) and a projector (another service on the same
    store): the API's wait ends on the projector's NOTIFY, not on its fallback poll (made
    longer than the wait here)."""
    settings = Settings(database_url=postgres_url, secret_key=SECRET_KEY,
                        var_dir=tmp_path / "var", views_wait_seconds=5.0)
    clock = FrozenClock(START)
    server = TestServer(create_app(settings, clock=clock, passwords=FAST_PASSWORDS,
                                   embedded=False))
    await server.start_server()
    projector = await build_service(settings, clock=clock, passwords=FAST_PASSWORDS)
    client = TestClient(server, cookie_jar=aiohttp.CookieJar(unsafe=True))
    await client.start_server()
    try:
        api: Service = server.app[SERVICE]
        for runner in api.projections:
            runner.poll_seconds = 30.0
        async with running(projector, projections=True):
            org = await _org(api)
            admin = Api(client)
            assert await admin.login(org.admin_email, org.admin_password) == "done"
            for _ in range(3):
                started = time.monotonic()
                user = await create_user(admin)
                assert time.monotonic() - started < 4, "answered by the fallback poll"
                status, body = await admin.get(f"/api/admin/users/{user['user_id']}")
                assert status == 200, body
    finally:
        await client.close()
        await server.close()
        await close_service(projector)


async def _org(api: Service) -> Org:
    email, password = f"admin-{uuid.uuid4().hex[:8]}@example.com", "admin-password-1"
    written = await api.command(api.app.create_organization, "Acme", email, "Ada",
                                FAST_PASSWORDS.hash(password), "support:test")
    org_id, admin_id = written.value
    return Org(str(org_id), str(admin_id), email, password)
