"""Tenancy and roles (F11) through the running server, on both stores: an admin sees and changes
only users of their own organization, a client none of Settings > Users; every refusal leaves
the views as they were."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.mfa.bootstrap import Service
from services.mfa.domain.mfa import mfa_id
from services.mfa.http.context import SERVICE
from tests.conftest import (
    FAST_PASSWORDS,
    Api,
    FrozenClock,
    Org,
    create_user,
    enable_two_factor,
    totp_code,
)


@pytest.fixture
async def admin(admin: Api, service: Service) -> Api:
    """The admin, once the views show the organization the `org` fixture created (outside the
    API, as `mfa create-org` does: nothing waited for the views then)."""
    await service.settle(await service.call(service.app.recorder.max_notification_id))
    return admin


def error_code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


async def whole_grid(admin: Api, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        query = "&".join(f"{k}={v}" for k, v in {**params, "limit": "2", "cursor": cursor}.items())
        status, body = await admin.get(f"/api/admin/users?{query}")
        assert status == 200, body
        rows += body["users"]
        if body["next_cursor"] is None:
            return rows
        cursor = body["next_cursor"]


async def settled(api: Api) -> None:
    service = api.client.server.app[SERVICE]
    await service.settle(await service.call(service.app.recorder.max_notification_id))


async def views(admin: Api) -> tuple[list[dict[str, Any]], dict[str, int], list[Any]]:
    """What an admin's views show of their organization: grid, counts and audit history, once
    the views caught up with every event so far (a login does not wait for them)."""
    await settled(admin)
    status, body = await admin.get("/api/admin/users?limit=1000")
    assert status == 200, body
    status, audit = await admin.get("/api/audit/events?limit=1000")
    assert status == 200, audit
    return await whole_grid(admin), body["counts"], audit["events"]


class OtherOrg:
    """Organization B, its admin logged in, and a user of B with 2FA On."""

    def __init__(self, org_id: str, admin_id: str, admin: Api, user: dict[str, Any]) -> None:
        self.org_id = org_id
        self.admin_id = admin_id
        self.admin = admin
        self.user = user


@pytest.fixture
async def other(service: Service, new_browser, clock: FrozenClock) -> OtherOrg:
    email = f"boss-{uuid.uuid4().hex[:8]}@other.example"
    org_id, admin_id = (await service.call(
        service.app.create_organization, "Other Org", email, "Bea Boss",
        FAST_PASSWORDS.hash("boss-password-1"),
        "support:test")).value
    admin_b = await new_browser()
    assert await admin_b.login(email, "boss-password-1") == "done"
    user = await create_user(admin_b)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    key, codes = await enable_two_factor(browser, user["password"], clock)
    await browser.post("/api/logout")
    clock.advance(30)
    return OtherOrg(str(org_id), str(admin_id), admin_b, {**user, "key": key, "codes": codes})


async def test_an_admin_cannot_see_or_change_another_organizations_users(
        admin: Api, org: Org, other: OtherOrg, new_browser, clock: FrozenClock) -> None:
    mine = await create_user(admin)
    before_b = await views(other.admin)
    before_a = await views(admin)
    assert [r["two_factor_status"] for r in before_b[0] if r["user_id"] == other.user["user_id"]
            ] == ["on"]

    for target in (other.user["user_id"], other.admin_id):
        path = f"/api/admin/users/{target}"
        attempts = [
            await admin.get(path),
            await admin.patch(path, {"two_factor_required": True}),
            await admin.patch(path, {"name": "Taken Over", "role": "client"}),
            await admin.patch(path, {"role": "admin"}),
            await admin.patch(path, {}),
            await admin.post(f"{path}/2fa/reset"),
        ]
        for status, body in attempts:
            assert (status, error_code(body)) == (404, "not_found"), (target, body)

    # Organization A's grid holds A's users only, whatever the filters or the search.
    rows_a = await whole_grid(admin)
    assert {r["user_id"] for r in rows_a} == {org.admin_id, mine["user_id"]}
    assert await whole_grid(admin, q=other.user["email"]) == []
    assert await whole_grid(admin, q="other.example") == []
    assert await whole_grid(admin, status="on") == []
    status, body = await admin.get("/api/admin/users")
    assert body["counts"]["total"] == 2

    # Nothing changed for B, in any view, nor for A.
    assert await views(other.admin) == before_b
    assert await views(admin) == before_a
    # B's user still has 2FA On: the reset did not happen.
    browser = await new_browser()
    assert await browser.login(other.user["email"], other.user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor",
                                      {"code": totp_code(other.user["key"], clock)})
    assert (status, body) == (200, {"next": "done"})
    status, me = await browser.get("/api/me")
    assert (me["name"], me["role"], me["two_factor"]["status"], me["two_factor"]["required"]) == (
        "Test User", "client", "on", False)


async def test_a_created_user_belongs_to_the_admins_organization(
        admin: Api, org: Org, other: OtherOrg, new_browser) -> None:
    """An org_id in the body is not a way into another organization."""
    before_b = await views(other.admin)
    status, body = await admin.post("/api/admin/users", {
        "email": "planted@example.com", "name": "Planted", "role": "admin",
        "password": "planted-password", "two_factor_required": False, "org_id": other.org_id})
    assert status == 201, body
    assert await views(other.admin) == before_b
    assert body["user_id"] in {r["user_id"] for r in await whole_grid(admin)}
    browser = await new_browser()
    await browser.login("planted@example.com", "planted-password")
    status, me = await browser.get("/api/me")
    assert me["org_id"] == org.org_id
    assert {r["user_id"] for r in await whole_grid(browser)} == {
        r["user_id"] for r in await whole_grid(admin)}


async def test_a_client_gets_403_on_every_admin_call(admin: Api, org: Org, new_browser,
                                                     clock: FrozenClock) -> None:
    client = await create_user(admin)
    colleague = await create_user(admin, required=True)
    browser = await new_browser()
    assert await browser.login(client["email"], client["password"]) == "done"
    await enable_two_factor(browser, client["password"], clock)  # a fully set-up client
    before = await views(admin)

    for status, body in await admin_calls(browser, client["user_id"], colleague["user_id"],
                                          org.admin_id):
        assert (status, error_code(body)) == (403, "forbidden"), body

    assert await views(admin) == before
    status, me = await browser.get("/api/me")
    assert (status, me["role"]) == (200, "client")


async def admin_calls(api: Api, *user_ids: str) -> list[tuple[int, Any]]:
    """Every call of Settings > Users, on each of the given users."""
    results = [
        await api.get("/api/admin/users"),
        await api.get("/api/admin/users?status=on&required=true&q=a&limit=5"),
        await api.post("/api/admin/users", {
            "email": f"sneaky-{uuid.uuid4().hex[:6]}@example.com", "name": "Sneaky",
            "role": "admin", "password": "sneaky-password", "two_factor_required": False}),
    ]
    for user_id in user_ids:
        path = f"/api/admin/users/{user_id}"
        results += [
            await api.get(path),
            await api.patch(path, {"role": "admin"}),
            await api.patch(path, {"two_factor_required": False, "name": "Changed"}),
            await api.post(f"{path}/2fa/reset"),
        ]
    return results


async def test_no_session_gets_401_on_every_admin_call(admin: Api, org: Org,
                                                       new_browser) -> None:
    user = await create_user(admin)
    logged_out = await new_browser()  # a logged-out session is no session
    await logged_out.login(org.admin_email, org.admin_password)
    await logged_out.post("/api/logout")
    before = await views(admin)
    anonymous = await new_browser()
    for status, body in await admin_calls(anonymous, user["user_id"], org.admin_id):
        assert (status, error_code(body)) == (401, "unauthenticated"), body
    for status, body in await admin_calls(logged_out, user["user_id"]):
        assert (status, error_code(body)) == (401, "unauthenticated"), body
    assert await views(admin) == before


async def test_an_admin_halfway_through_login_is_not_an_admin_yet(
        admin: Api, org: Org, new_browser, clock: FrozenClock) -> None:
    second = await create_user(admin, role="admin")
    browser = await new_browser()
    await browser.login(second["email"], second["password"])
    await enable_two_factor(browser, second["password"], clock)
    user = await create_user(admin)
    halfway = await new_browser()
    assert await halfway.login(second["email"], second["password"]) == "second_factor"
    before = await views(admin)
    for status, body in await admin_calls(halfway, user["user_id"]):
        assert (status, error_code(body)) == (401, "unauthenticated"), body

    assert await views(admin) == before
    required = await create_user(admin, role="admin", required=True)
    forced = await new_browser()
    assert await forced.login(required["email"], required["password"]) == "setup_2fa"
    before = await views(admin)
    for status, body in await admin_calls(forced, user["user_id"]):
        assert (status, error_code(body)) == (403, "setup_2fa_required"), body
    assert await views(admin) == before


async def test_a_demoted_admin_loses_access_at_once(admin: Api, new_browser) -> None:
    second = await create_user(admin, role="admin")
    browser = await new_browser()
    await browser.login(second["email"], second["password"])
    assert (await browser.get("/api/admin/users"))[0] == 200
    status, body = await admin.patch(f"/api/admin/users/{second['user_id']}", {"role": "client"})
    assert (status, body["role"]) == (200, "client")
    for status, body in await admin_calls(browser, second["user_id"]):
        assert (status, error_code(body)) == (403, "forbidden"), body


@pytest.mark.parametrize("user_id", [
    "not-a-uuid", "123", "00000000-0000-0000-0000-000000000000", "%20", "..%2F..%2Fme",
    "x" * 300, "random-uuid", "org-id", "mfa-aggregate-id",
])
async def test_an_unknown_or_malformed_user_id_is_404(admin: Api, org: Org, user_id: str,
                                                      ) -> None:
    before = await views(admin)
    user_id = {"random-uuid": str(uuid.uuid4()), "org-id": org.org_id,
               "mfa-aggregate-id": str(mfa_id(uuid.UUID(org.admin_id)))}.get(user_id, user_id)
    path = f"/api/admin/users/{user_id}"
    for status, body in [await admin.get(path),
                         await admin.patch(path, {"two_factor_required": True}),
                         await admin.post(f"{path}/2fa/reset")]:
        assert (status, error_code(body)) == (404, "not_found"), (user_id, body)
    assert await views(admin) == before
