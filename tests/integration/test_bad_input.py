"""Bad input of any shape gets a clear 4xx, never a 500, and changes nothing (SPEC sections 4 and
6): malformed or wrong-shaped JSON, oversized bodies, requests without JSON or from another
origin, unknown paths and methods. Every response carries the security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from services.mfa.bootstrap import Service
from services.mfa.http.context import SERVICE
from tests.conftest import Api, FrozenClock, Org, create_user, enable_two_factor

NEW_USER = {"email": "valid@example.com", "name": "Valid Name", "role": "client",
            "password": "valid-password", "two_factor_required": False}


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


async def send(api: Api, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request; whatever it is, the answer is no 500 and has the security headers."""
    if method != "GET" and body is None:
        body = {}
    status, payload = await api.call(method, path, body, headers)
    assert status < 500, (method, path, status, payload)
    assert_security_headers(api)
    if status >= 400:
        assert api.last_headers.get("Content-Type", "").startswith("application/json"), path
        assert isinstance(payload, dict) and set(payload) == {"error"}, payload
        assert set(payload["error"]) >= {"code", "message"}, payload
        assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    return status, payload


def assert_security_headers(api: Api) -> None:
    headers = api.last_headers
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("X-Frame-Options") == "DENY"
    assert headers.get("Referrer-Policy")
    assert headers.get("Content-Security-Policy")


async def snapshot(admin: Api) -> tuple[Any, ...]:
    """The admin's views of the organization: grid (with counts) and audit history, once the
    views caught up with every event so far (a login does not wait for them)."""
    service = admin.client.server.app[SERVICE]
    await service.settle(await service.call(service.app.recorder.max_notification_id))
    status, grid = await admin.get("/api/admin/users?limit=1000")
    assert status == 200, grid
    status, audit = await admin.get("/api/audit/events?limit=1000")
    assert status == 200, audit
    return grid, audit


@pytest.fixture
async def target(admin: Api) -> dict[str, Any]:
    """A user to aim the PATCH and reset calls at."""
    return await create_user(admin)


def assert_validation_error(status: int, body: Any, field: str) -> None:
    assert (status, error_code(body)) == (400, "validation_error"), body
    assert field in body["error"]["message"], (field, body)


async def test_malformed_or_wrong_shaped_bodies_are_400_naming_the_field(
        admin: Api, target: dict[str, Any]) -> None:
    before = await snapshot(admin)
    patch = f"/api/admin/users/{target['user_id']}"
    cases: list[tuple[str, str, Any, str]] = [
        # method, path, body, what the message must name
        ("POST", "/api/admin/users", "{not json", "JSON"),
        ("POST", "/api/admin/users", '{"email": "a@b.co",', "JSON"),
        ("POST", "/api/admin/users", b"\xff\xfe{}", "JSON"),
        ("POST", "/api/admin/users", "[1, 2]", "object"),
        ("POST", "/api/admin/users", [NEW_USER], "object"),
        ("POST", "/api/admin/users", "null", "object"),
        ("POST", "/api/admin/users", '"a string"', "object"),
        ("POST", "/api/admin/users", {}, "email"),
        ("POST", "/api/admin/users", {k: v for k, v in NEW_USER.items() if k != "email"},
         "email"),
        ("POST", "/api/admin/users", {k: v for k, v in NEW_USER.items() if k != "name"},
         "name"),
        ("POST", "/api/admin/users", {k: v for k, v in NEW_USER.items() if k != "password"},
         "password"),
        ("POST", "/api/admin/users", {**NEW_USER, "two_factor_required": "yes"},
         "two_factor_required"),
        ("POST", "/api/admin/users", {**NEW_USER, "two_factor_required": 1},
         "two_factor_required"),
        ("POST", "/api/admin/users", {**NEW_USER, "email": 5}, "email"),
        ("POST", "/api/admin/users", {**NEW_USER, "email": None}, "email"),
        ("POST", "/api/admin/users", {**NEW_USER, "email": ["a@b.co"]}, "email"),
        ("POST", "/api/admin/users", {**NEW_USER, "email": "not-an-email"}, "email"),
        ("POST", "/api/admin/users", {**NEW_USER, "email": "two@@example.com"}, "email"),
        ("POST", "/api/admin/users", {**NEW_USER, "email": "a@b.co\u0000"}, "email"),
        ("POST", "/api/admin/users", {**NEW_USER, "password": "short"}, "password"),
        ("POST", "/api/admin/users", {**NEW_USER, "password": 12345678}, "password"),
        ("POST", "/api/admin/users", {**NEW_USER, "role": "root"}, "role"),
        ("POST", "/api/admin/users", {**NEW_USER, "role": "ADMIN"}, "role"),
        ("POST", "/api/admin/users", {**NEW_USER, "name": ""}, "name"),
        ("POST", "/api/admin/users", {**NEW_USER, "name": "x" * 201}, "name"),
        ("POST", "/api/admin/users", {**NEW_USER, "name": {"first": "A"}}, "name"),
        ("PATCH", patch, "{not json", "JSON"),
        ("PATCH", patch, "[]", "object"),
        ("PATCH", patch, {"two_factor_required": "yes"}, "two_factor_required"),
        ("PATCH", patch, {"two_factor_required": "true"}, "two_factor_required"),
        ("PATCH", patch, {"role": "root"}, "role"),
        ("PATCH", patch, {"name": 5}, "name"),
        ("PATCH", patch, {"name": "ok", "role": "superuser"}, "role"),
    ]
    for method, path, body, field in cases:
        status, answer = await send(admin, method, path, body)
        assert_validation_error(status, answer, field)
    assert await snapshot(admin) == before


async def test_bad_login_bodies_are_400_naming_the_field(new_browser, org: Org) -> None:
    browser = await new_browser()
    good = {"email": org.admin_email, "password": org.admin_password}
    for body, field in [
        ("{", "JSON"), ("[]", "object"), ({}, "email"),
        ({"email": org.admin_email}, "password"), ({**good, "email": 5}, "email"),
        ({**good, "password": None}, "password"), ({**good, "password": ["x"]}, "password"),
    ]:
        status, answer = await send(browser, "POST", "/api/login", body)
        assert_validation_error(status, answer, field)
    status, _ = await send(browser, "GET", "/api/me")
    assert status == 401
    # None of it counted as a failed attempt: the right password still works at once.
    assert await browser.login(org.admin_email, org.admin_password) == "done"


async def test_a_body_over_64_kib_is_413(admin: Api, target: dict[str, Any]) -> None:
    before = await snapshot(admin)
    padding = "x" * (64 * 1024 + 1)
    for method, path, body in [
        ("POST", "/api/admin/users", {**NEW_USER, "padding": padding}),
        ("POST", "/api/admin/users", {**NEW_USER, "name": padding}),
        ("PATCH", f"/api/admin/users/{target['user_id']}", {"name": "New", "padding": padding}),
        ("POST", "/api/login", {"email": "valid@example.com", "password": padding}),
    ]:
        status, answer = await send(admin, method, path, body)
        assert (status, error_code(answer)) == (413, "payload_too_large"), path
    assert await snapshot(admin) == before


async def test_a_body_over_64_kib_is_413_even_where_no_body_is_expected(
        admin: Api, new_browser, clock: FrozenClock, target: dict[str, Any]) -> None:
    browser = await new_browser()
    await browser.login(target["email"], target["password"])
    await enable_two_factor(browser, target["password"], clock)
    before = await snapshot(admin)
    status, answer = await send(admin, "POST", f"/api/admin/users/{target['user_id']}/2fa/reset",
                                {"padding": "x" * (64 * 1024 + 1)})
    assert (status, error_code(answer)) == (413, "payload_too_large")
    assert await snapshot(admin) == before


async def test_a_chunked_body_over_64_kib_is_413_even_where_no_body_is_expected(
        admin: Api, new_browser, clock: FrozenClock, target: dict[str, Any]) -> None:
    browser = await new_browser()
    await browser.login(target["email"], target["password"])
    await enable_two_factor(browser, target["password"], clock)
    before = await snapshot(admin)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"padding": "'
        for _ in range(16):
            yield b"x" * 8192
        yield b'"}'

    async with admin.client.post(f"/api/admin/users/{target['user_id']}/2fa/reset",
                                 data=chunks(),
                                 headers={"Content-Type": "application/json"}) as response:
        status, answer = response.status, await response.json()
    assert (status, error_code(answer)) == (413, "payload_too_large")
    assert await snapshot(admin) == before


async def test_malformed_json_is_400_even_where_no_body_is_expected(
        admin: Api, new_browser, clock: FrozenClock, target: dict[str, Any]) -> None:
    browser = await new_browser()
    await browser.login(target["email"], target["password"])
    await enable_two_factor(browser, target["password"], clock)
    before = await snapshot(admin)
    status, answer = await send(admin, "POST", f"/api/admin/users/{target['user_id']}/2fa/reset",
                                "{not json")
    assert (status, error_code(answer)) == (400, "validation_error")
    assert await snapshot(admin) == before


async def test_a_post_without_json_content_type_is_403(admin: Api, new_browser, org: Org,
                                                       target: dict[str, Any]) -> None:
    before = await snapshot(admin)
    form = "email=valid%40example.com&name=Valid&password=valid-password&role=admin"
    reset = f"/api/admin/users/{target['user_id']}/2fa/reset"
    patch = f"/api/admin/users/{target['user_id']}"
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", "application/octet-stream",
                         "application/jsonx", "text/json"):
        headers = {"Content-Type": content_type}
        for method, path, body in [("POST", "/api/admin/users", orjson.dumps(NEW_USER)),
                                   ("POST", "/api/admin/users", form),
                                   ("PATCH", patch, orjson.dumps({"role": "admin"})),
                                   ("POST", reset, b"")]:
            status, answer = await send(admin, method, path, body, headers)
            assert (status, error_code(answer)) == (403, "forbidden"), (content_type, path)
    # Logging in is state-changing too: a cross-site form cannot log a browser in.
    browser = await new_browser()
    status, answer = await send(browser, "POST", "/api/login", orjson.dumps(
        {"email": org.admin_email, "password": org.admin_password}),
        {"Content-Type": "text/plain"})
    assert (status, error_code(answer)) == (403, "forbidden")
    assert (await browser.get("/api/me"))[0] == 401
    assert await snapshot(admin) == before
    # The same requests with application/json (a charset is fine) go through.
    status, answer = await send(admin, "POST", "/api/admin/users", NEW_USER,
                                {"Content-Type": "application/json; charset=utf-8"})
    assert status == 201, answer


async def test_a_foreign_origin_is_403_and_the_own_origin_works(
        admin: Api, server: TestServer, target: dict[str, Any]) -> None:
    own = f"http://{server.host}:{server.port}"
    before = await snapshot(admin)
    patch = f"/api/admin/users/{target['user_id']}"
    reset = f"{patch}/2fa/reset"
    for origin in ("https://evil.example", "null", f"https://{server.host}:{server.port}",
                   f"http://{server.host}:{server.port + 1}", f"http://{server.host}",
                   f"{own}.evil.example", f"http://evil.example/{own}"):
        for method, path, body in [("POST", "/api/admin/users", NEW_USER),
                                   ("PATCH", patch, {"role": "admin"}),
                                   ("POST", reset, {}), ("POST", "/api/logout", {})]:
            status, answer = await send(admin, method, path, body, {"Origin": origin})
            assert (status, error_code(answer)) == (403, "forbidden"), (origin, path)
    assert await snapshot(admin) == before
    assert (await admin.get("/api/me"))[0] == 200  # the refused logout did not log out

    status, answer = await send(admin, "PATCH", patch, {"name": "Same Origin"}, {"Origin": own})
    assert (status, answer["name"]) == (200, "Same Origin")
    status, answer = await send(admin, "POST", "/api/admin/users", NEW_USER, {"Origin": own})
    assert status == 201, answer


async def test_unknown_path_is_404_and_wrong_method_405_in_json(
        admin: Api, new_browser, target: dict[str, Any]) -> None:
    before = await snapshot(admin)
    anonymous = await new_browser()
    for api in (admin, anonymous):
        for method, path in [("GET", "/api/nope"), ("GET", "/nope"), ("POST", "/api/nope"),
                             ("GET", "/api/admin/users/x/y/z"), ("GET", "/api/admin"),
                             ("PATCH", "/api/nope"), ("GET", "/api/me/2fa/nope")]:
            status, answer = await send(api, method, path)
            assert (status, error_code(answer)) == (404, "not_found"), (method, path)
    for method, path in [("DELETE", "/api/admin/users"), ("PUT", "/api/admin/users"),
                         ("DELETE", f"/api/admin/users/{target['user_id']}"),
                         ("PUT", f"/api/admin/users/{target['user_id']}"),
                         ("GET", f"/api/admin/users/{target['user_id']}/2fa/reset"),
                         ("PATCH", "/api/admin/users"), ("GET", "/api/login"),
                         ("GET", "/api/logout"), ("POST", "/api/me")]:
        status, answer = await send(admin, method, path)
        assert (status, error_code(answer)) == (405, "method_not_allowed"), (method, path)
    assert await snapshot(admin) == before


async def test_a_405_lists_the_allowed_methods(admin: Api) -> None:
    status, _ = await send(admin, "DELETE", "/api/admin/users")
    assert status == 405
    assert set(admin.last_headers.get("Allow", "").replace(" ", "").split(",")) >= {
        "GET", "POST"}


async def test_weird_query_strings_and_ids_are_4xx_and_never_500(admin: Api, new_browser,
                                                                 target: dict[str, Any]) -> None:
    before = await snapshot(admin)
    for path in [
        "/api/admin/users?limit=0", "/api/admin/users?limit=99999999999999999999999",
        "/api/admin/users?limit=%EF%BC%91", "/api/admin/users?status=ON",
        "/api/admin/users?required=maybe", "/api/admin/users?cursor=%ED%A0%80",
        "/api/admin/users?cursor=" + "A" * 5000, "/api/admin/users?q=%00",
        "/api/admin/users?q=" + "a" * 5000, "/api/admin/users/%ED%A0%80",
        "/api/admin/users/" + "a" * 3000, "/api/admin/users/%00",
    ]:
        status, _ = await send(admin, "GET", path)
        assert 400 <= status < 500, path
    for path in ["/api/admin/users?q=%ED%A0%80", "/api/admin/users?q=%FF%FE",
                 "/api/admin/users?q=%25%5F%5C'%22;--", "/api/admin/users?q=%F0%9F%94%91"]:
        status, answer = await send(admin, "GET", path)
        assert (status, answer["users"]) == (200, []), path
    # A session cookie of any shape is just no session.
    stranger = await new_browser()
    for cookie in ("x" * 4000, "%00", "a=b; mfa_session=", "\u00e9"):
        status, answer = await send(stranger, "GET", "/api/admin/users",
                                    headers={"Cookie": f"mfa_session={cookie}"})
        assert (status, error_code(answer)) == (401, "unauthenticated"), cookie
    assert await snapshot(admin) == before


async def test_security_headers_on_every_kind_of_answer(admin: Api, new_browser, org: Org,
                                                        target: dict[str, Any]) -> None:
    anonymous = await new_browser()
    for api, method, path, body in [
        (admin, "GET", "/api/admin/users", None),
        (admin, "GET", f"/api/admin/users/{target['user_id']}", None),
        (admin, "GET", "/api/me", None),
        (anonymous, "GET", "/api/me", None),
        (anonymous, "GET", "/healthz", None),
        (anonymous, "POST", "/api/login", {"email": org.admin_email, "password": "wrong!"}),
        (admin, "POST", "/api/admin/users", {"email": 5}),
        (admin, "GET", "/nope", None),
    ]:
        await send(api, method, path, body)  # asserts the headers
    assert admin.last_headers["X-Frame-Options"] == "DENY"
