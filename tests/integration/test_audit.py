"""Audit (issue 3): who changed a user's 2FA, when, and what it was before, from the API alone;
time travel at every event boundary; paging; tenancy; rebuild equality; the export."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime, timedelta
from typing import Any

import orjson

from services.mfa.bootstrap import Service
from services.mfa.projections.runner import rebuild_all
from tests.conftest import (
    FAST_PASSWORDS,
    SECRET_KEY,
    Api,
    FrozenClock,
    Org,
    create_user,
    enable_two_factor,
)


async def history(admin: Api, **params: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = ""
    while True:
        query = "&".join(f"{k}={v}" for k, v in {**params, "after": after, "limit": "3"}.items())
        status, body = await admin.get(f"/api/audit/events?{query}")
        assert status == 200, body
        events += body["events"]
        if body["next"] is None:
            return events
        after = str(body["next"])


async def a_life(admin: Api, new_browser, clock: FrozenClock) -> dict[str, Any]:
    """Create, configure, require, use a recovery code, reset: one step per minute."""
    user = await create_user(admin)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    clock.advance(60)
    _, codes = await enable_two_factor(browser, user["password"], clock)
    clock.advance(60)
    await admin.patch(f"/api/admin/users/{user['user_id']}", {"two_factor_required": True})
    clock.advance(60)
    await browser.post("/api/logout")
    await browser.login(user["email"], user["password"])
    await browser.post("/api/login/second-factor", {"code": codes[0]})
    clock.advance(60)
    await admin.post(f"/api/admin/users/{user['user_id']}/2fa/reset")
    return user


async def test_who_changed_what_and_when(admin: Api, org: Org, new_browser,
                                         clock: FrozenClock) -> None:
    user = await a_life(admin, new_browser, clock)
    events = await history(admin, user_id=user["user_id"])
    kinds = [e["type"] for e in events]
    for kind in ("AccountCreated", "MfaCreated", "EnrollmentStarted", "TotpConfirmed",
                 "RequirementSet", "PasswordAccepted", "RecoveryCodeConsumed", "ResetByAdmin"):
        assert kind in kinds
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    by_type = {e["type"]: e for e in events}
    assert by_type["RequirementSet"]["actor"] == f"admin:{org.admin_id}"
    assert by_type["ResetByAdmin"]["actor"] == f"admin:{org.admin_id}"
    assert by_type["TotpConfirmed"]["actor"] == f"user:{user['user_id']}"
    assert by_type["RequirementSet"]["data"] == {"required": True, "reason": "admin"}
    assert by_type["RecoveryCodeConsumed"]["data"] == {"remaining": 9, "address": "127.0.0.1"}
    assert by_type["TotpConfirmed"]["data"] == {"recovery_codes_issued": 10}
    assert all(e["org_id"] == org.org_id and e["user_id"] == user["user_id"] for e in events)
    assert all(set(e) == {"position", "id", "type", "user_id", "org_id", "actor", "occurred_at",
                          "data"} for e in events)


async def test_time_travel_is_right_at_every_event_boundary(admin: Api, new_browser,
                                                            clock: FrozenClock) -> None:
    user = await a_life(admin, new_browser, clock)
    expected_after = {
        "MfaCreated": ("off", False, 0), "TotpConfirmed": ("on", False, 10),
        "RequirementSet": ("on", True, 10), "RecoveryCodeConsumed": ("on", True, 9),
        "ResetByAdmin": ("off", True, 0),
    }
    previous: tuple[str, bool, int] | None = None
    for event in await history(admin, user_id=user["user_id"]):
        if event["type"] not in expected_after:
            continue
        at = datetime.fromisoformat(event["occurred_at"])
        state = await state_at(admin, user["user_id"], at)
        assert state == expected_after[event["type"]], event["type"]
        if previous is not None:
            before = await state_at(admin, user["user_id"], at - timedelta(microseconds=1))
            assert before == previous, f"just before {event['type']}"
        previous = state
    status, body = await admin.get(f"/api/audit/users/{user['user_id']}/state"
                                   "?at=2000-01-01T00:00:00Z")
    assert status == 404 and body["error"]["code"] == "not_found"


async def state_at(admin: Api, user_id: str, at: datetime) -> tuple[str, bool, int]:
    query = at.isoformat().replace("+", "%2B")
    status, body = await admin.get(f"/api/audit/users/{user_id}/state?at={query}")
    assert status == 200, body
    two_factor = body["two_factor"]
    return two_factor["status"], two_factor["required"], two_factor["recovery_codes_left"]


async def test_audit_tenancy_and_roles(admin: Api, service: Service, new_browser) -> None:
    user = await create_user(admin)
    written = await service.call(
        service.app.create_organization, "Other", "boss@other.example", "Boss",
        FAST_PASSWORDS.hash("other-password-1"), "support:test")
    await service.settle(written.position)
    other_org, _ = written.value
    stranger = await new_browser()
    assert await stranger.login("boss@other.example", "other-password-1") == "done"
    theirs = await history(stranger)
    assert theirs and all(e["org_id"] == str(other_org) for e in theirs)
    assert not [e for e in theirs if e["user_id"] == user["user_id"]]
    status, body = await stranger.get(f"/api/audit/users/{user['user_id']}/state")
    assert (status, body["error"]["code"]) == (404, "not_found")
    client = await new_browser()
    await client.login(user["email"], user["password"])
    for path in ("/api/audit/events", f"/api/audit/users/{user['user_id']}/state"):
        status, body = await client.get(path)
        assert (status, body["error"]["code"]) == (403, "forbidden")
    anonymous = await new_browser()
    status, _ = await anonymous.get("/api/audit/events")
    assert status == 401


async def test_bad_audit_queries_are_400(admin: Api) -> None:
    for query in ("after=abc", "after=-1", "limit=0", "limit=1001", "limit=x", "user_id=nope"):
        status, body = await admin.get(f"/api/audit/events?{query}")
        assert (status, body["error"]["code"]) == (400, "validation_error"), query
    status, body = await admin.get("/api/audit/users/not-a-uuid/state")
    assert status == 404
    status, me = await admin.get("/api/me")
    for at in ("yesterday", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00%2B01:00"):
        status, body = await admin.get(f"/api/audit/users/{me['user_id']}/state?at={at}")
        assert (status, body["error"]["code"]) == (400, "validation_error"), at


async def views(service: Service) -> dict[str, list[dict[str, Any]]]:
    return {table: await service.db.fetch(f"SELECT * FROM {table} ORDER BY 1")
            for table in ("mfa_user_state", "mfa_users_grid", "mfa_audit_log")}


async def test_rebuilt_views_equal_live_ones(admin: Api, service: Service, new_browser,
                                             clock: FrozenClock) -> None:
    await a_life(admin, new_browser, clock)
    await a_life(admin, new_browser, clock)
    user = await create_user(admin, required=True)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    await browser.post("/api/login", {"email": user["email"], "password": "wrong-password"})
    head = await service.call(service.app.recorder.max_notification_id)
    assert head is not None
    await service.settle(head)  # refused commands (the wrong password) do not wait for views
    live = await views(service)
    assert all(live.values())
    await rebuild_all(service.projections)  # what `mfa projections rebuild` runs
    rebuilt = await views(service)
    for table, rows in live.items():
        assert rebuilt[table] == rows, table


async def test_export_streams_the_organizations_history(admin: Api, org: Org, settings,
                                                        new_browser, clock: FrozenClock) -> None:
    await a_life(admin, new_browser, clock)
    api_events = await history(admin)
    env = {**os.environ, "MFA_DATABASE_URL": settings.database_url, "MFA_SECRET_KEY": SECRET_KEY}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.mfa.cli", "audit", "export", "--org", org.org_id,
        env=env, stdout=asyncio.subprocess.PIPE)
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    exported = [orjson.loads(line) for line in stdout.splitlines()]
    assert exported == api_events
