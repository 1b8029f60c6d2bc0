"""Organization-wide 2FA policy and requirements of many users at once (issue 11), on both
stores: Require 2FA for all users (and its end), for new users, the bulk action of the grid, how
an admin's own requirement and the policy combine, tenancy, and the live banner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from services.mfa.bootstrap import Service
from tests.conftest import FAST_PASSWORDS, Api, FrozenClock, Org, create_user, enable_two_factor
from tests.integration.flows import NewBrowser, error_code, settle_followers


@pytest.fixture(autouse=True)
async def _quiet_teardown(service: Service, new_browser: NewBrowser) -> AsyncIterator[None]:
    yield
    await settle_followers(service)


async def grid(admin: Api, **query: str) -> dict[str, dict[str, Any]]:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = await admin.get(f"/api/admin/users?limit=1000&{params}")
    assert status == 200, body
    return {row["email"]: row for row in body["users"]}


async def test_require_2fa_for_all_users_and_lift_it(admin: Api, org: Org,
                                                     new_browser: NewBrowser) -> None:
    plain = [await create_user(admin) for _ in range(4)]
    chosen = await create_user(admin, required=True)  # an admin's own requirement
    status, body = await admin.get("/api/admin/policy")
    assert (status, body["require_all"], body["require_new"]) == (200, False, False)
    assert body["counts"]["required"] == 1

    status, body = await admin.call("PUT", "/api/admin/policy",
                                    {"require_all": True, "require_new": False})
    assert status == 200 and body["applied"] is True and body["require_all"] is True
    rows = await grid(admin)
    assert all(row["two_factor_required"] for row in rows.values())
    assert {rows[u["email"]]["two_factor_required_by"] for u in plain} == {"policy"}
    assert rows[chosen["email"]]["two_factor_required_by"] == "admin"
    assert rows[org.admin_email]["two_factor_required_by"] == "policy"  # admins too

    # While it holds, nobody can be made Not required, one by one or in bulk.
    status, body = await admin.patch(f"/api/admin/users/{plain[0]['user_id']}",
                                     {"two_factor_required": False})
    assert (status, error_code(body)) == (409, "two_factor_required")
    status, body = await admin.post("/api/admin/users/requirement",
                                    {"required": False, "user_ids": [plain[0]["user_id"]]})
    assert (status, error_code(body)) == (409, "two_factor_required")
    # A user created now is required by the policy.
    late = await create_user(admin)
    assert (await grid(admin))[late["email"]]["two_factor_required_by"] == "policy"

    # Lifted: the policy's requirements go, the admin's own stays.
    status, body = await admin.call("PUT", "/api/admin/policy",
                                    {"require_all": False, "require_new": False})
    assert status == 200 and body["applied"] is True
    rows = await grid(admin)
    assert not any(rows[u["email"]]["two_factor_required"] for u in [*plain, late])
    assert rows[chosen["email"]]["two_factor_required"] is True
    # The audit says who did it: the policy, then each user's requirement, by the admin.
    status, audit = await admin.get(f"/api/audit/events?user_id={plain[0]['user_id']}")
    requirements = [e for e in audit["events"] if e["type"] == "RequirementSet"]
    assert [(e["data"], e["actor"]) for e in requirements] == [
        ({"required": True, "reason": "policy"}, f"admin:{org.admin_id}"),
        ({"required": False, "reason": "policy"}, f"admin:{org.admin_id}")]
    status, audit = await admin.get("/api/audit/events?limit=1000")
    policies = [e for e in audit["events"] if e["type"] == "OrganizationPolicySet"]
    assert [e["data"]["require_all"] for e in policies] == [True, False]
    assert all(e["actor"] == f"admin:{org.admin_id}" for e in policies)


async def test_an_admins_required_takes_over_the_policys(admin: Api) -> None:
    user = await create_user(admin)
    await admin.call("PUT", "/api/admin/policy", {"require_all": True, "require_new": False})
    status, body = await admin.patch(f"/api/admin/users/{user['user_id']}",
                                     {"two_factor_required": True})
    assert status == 200 and body["two_factor_required_by"] == "admin"
    await admin.call("PUT", "/api/admin/policy", {"require_all": False, "require_new": False})
    assert (await grid(admin))[user["email"]]["two_factor_required"] is True


async def test_require_2fa_for_new_users(admin: Api) -> None:
    before = await create_user(admin)
    status, body = await admin.call("PUT", "/api/admin/policy",
                                    {"require_all": False, "require_new": True})
    assert status == 200
    after = await create_user(admin)
    rows = await grid(admin)
    assert rows[before["email"]]["two_factor_required"] is False
    assert rows[after["email"]]["two_factor_required_by"] == "policy"
    # New users are required by default, yet an admin may still exempt one.
    status, body = await admin.patch(f"/api/admin/users/{after['user_id']}",
                                     {"two_factor_required": False})
    assert status == 200 and body["two_factor_required"] is False


async def test_set_required_for_the_selected_users_or_all_matching_a_filter(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    users = [await create_user(admin) for _ in range(5)]
    status, body = await admin.post("/api/admin/users/requirement", {
        "required": True, "user_ids": [u["user_id"] for u in users[:2]]})
    assert status == 200 and (body["changed"], body["selected"]) == (2, 2)
    rows = await grid(admin)
    assert [rows[u["email"]]["two_factor_required"] for u in users] == [True, True, False,
                                                                         False, False]
    assert rows[users[0]["email"]]["two_factor_required_by"] == "admin"
    # All users with 2FA Off who are not required: one action.
    browser = await new_browser()
    await browser.login(users[4]["email"], users[4]["password"])
    await enable_two_factor(browser, users[4]["password"], clock)
    # The grid page offers the same set: "Select all 3 users matching these filters".
    status, html = await admin.get("/settings/users?status=off&required=false")
    assert status == 200 and "Select all 3 users matching these filters" in html, html
    status, body = await admin.post("/api/admin/users/requirement", {
        "required": True, "filter": {"status": "off", "required": False}})
    assert status == 200 and body["changed"] == 3  # users 2 and 3, and the org's admin
    rows = await grid(admin)
    assert rows[users[4]["email"]]["two_factor_required"] is False  # 2FA On: not selected
    status, body = await admin.post("/api/admin/users/requirement", {
        "required": False, "filter": {"q": users[1]["email"]}})
    assert status == 200 and body["changed"] == 1


async def test_bulk_requirement_stays_inside_the_organization(
        admin: Api, service: Service, new_browser: NewBrowser) -> None:
    written = await service.call(service.app.create_organization, "Other", "boss@else.example",
                                 "Boss", FAST_PASSWORDS.hash("boss-password-1"), "support:t")
    await service.settle(written.position)
    _, stranger_id = written.value
    status, body = await admin.post("/api/admin/users/requirement", {
        "required": True, "user_ids": [str(stranger_id)]})
    assert status == 200 and body["changed"] == 0
    assert not (await service.call(service.app.mfa, stranger_id)).required
    other = await new_browser()
    assert await other.login("boss@else.example", "boss-password-1") == "done"
    await other.call("PUT", "/api/admin/policy", {"require_all": True, "require_new": False})
    assert (await grid(admin)) and not any(
        row["two_factor_required"] for row in (await grid(admin)).values())


@pytest.mark.parametrize("body", [
    {"required": True}, {"required": True, "user_ids": [], "filter": {}},
    {"required": "yes", "user_ids": []}, {"required": True, "user_ids": ["nope"]},
    {"required": True, "user_ids": ["x"] * 1001}, {"required": True, "filter": {"q": "\x00"}},
    {"required": True, "filter": {"status": "maybe"}},
])
async def test_bad_bulk_requests_are_400(admin: Api, body: dict[str, Any]) -> None:
    status, answer = await admin.post("/api/admin/users/requirement", body)
    assert (status, error_code(answer)) == (400, "validation_error"), answer


async def test_a_client_cannot_set_the_policy(admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    for method, path, body in [("GET", "/api/admin/policy", None),
                               ("PUT", "/api/admin/policy",
                                {"require_all": True, "require_new": True}),
                               ("POST", "/api/admin/users/requirement",
                                {"required": True, "user_ids": [user["user_id"]]})]:
        status, answer = await browser.call(method, path, body)
        assert (status, error_code(answer)) == (403, "forbidden"), path


async def test_the_banner_reaches_open_pages_when_the_policy_applies(
        admin: Api, new_browser: NewBrowser) -> None:
    users = [await create_user(admin) for _ in range(3)]
    sockets = []
    for user in users:
        browser = await new_browser()
        await browser.login(user["email"], user["password"])
        socket = await browser.client.ws_connect("/ws")
        assert orjson.loads(await socket.receive_str())["show"] is False
        sockets.append(socket)
    await admin.call("PUT", "/api/admin/policy", {"require_all": True, "require_new": False})
    for socket in sockets:
        async with asyncio.timeout(5):
            banner = orjson.loads(await socket.receive_str())
        assert banner["type"] == "banner" and banner["show"] is True
        await socket.close()
