"""Settings > Users through the running server, on both stores: creating and editing users (F5),
the users grid with its filters, search and keyset pagination (F8), and the admin reset (F7)."""

from __future__ import annotations

import base64
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest

from services.mfa.bootstrap import Service
from tests.conftest import Api, FrozenClock, Org, enable_two_factor, totp_code


@pytest.fixture
async def admin(admin: Api, service: Service) -> Api:
    """The admin, once the views show the organization the `org` fixture created (outside the
    API, as `mfa create-org` does: nothing waited for the views then)."""
    await service.settle(await service.call(service.app.recorder.max_notification_id))
    return admin


ROW_FIELDS = {"user_id", "email", "name", "role", "two_factor_status", "two_factor_required",
              "two_factor_required_by"}


def error_code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


async def grid_page(admin: Api, **params: str) -> dict[str, Any]:
    status, body = await admin.get(f"/api/admin/users?{urlencode(params)}")
    assert status == 200, body
    assert all(ROW_FIELDS <= set(row) for row in body["users"])
    return body


async def whole_grid(admin: Api, limit: int = 1000, **params: str) -> list[dict[str, Any]]:
    """Every row, page after page, following next_cursor to the end."""
    rows: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(1000):
        page = await grid_page(admin, **params, limit=str(limit), cursor=cursor)
        assert len(page["users"]) <= limit
        rows += page["users"]
        if page["next_cursor"] is None:
            return rows
        assert page["users"], "a page with a next_cursor has rows"
        cursor = page["next_cursor"]
    raise AssertionError("pagination never ended")


async def new_user(admin: Api, email: str | None = None, name: str = "Test User", *,
                   role: str = "client", required: bool = False) -> dict[str, Any]:
    password = "user-password-1"
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    status, body = await admin.post("/api/admin/users", {
        "email": email, "name": name, "role": role, "password": password,
        "two_factor_required": required})
    assert status == 201, body
    return {**body, "password": password}


async def with_two_factor(admin: Api, new_browser, clock: FrozenClock, *, required: bool = False,
                          name: str = "Test User") -> tuple[dict[str, Any], Api, str, list[str]]:
    """A user with 2FA On and a logged-in browser (the setup code's step counts as used)."""
    user = await new_user(admin, name=name, required=required)
    browser = await new_browser()
    step = await browser.login(user["email"], user["password"])
    if step == "setup_2fa":  # forced setup: the login opened the window
        status, setup = await browser.post("/api/me/2fa/setup")
        assert status == 200, setup
        status, body = await browser.post("/api/me/2fa/setup/verify",
                                          {"code": totp_code(setup["setup_key"], clock)})
        assert status == 200, body
        key, codes = setup["setup_key"], body["recovery_codes"]
    else:
        assert step == "done"
        key, codes = await enable_two_factor(browser, user["password"], clock)
    return user, browser, key, codes


async def login_step(new_browser, email: str, password: str) -> tuple[Api, str]:
    browser = await new_browser()
    return browser, await browser.login(email, password)


# ---- F5: create and edit ------------------------------------------------------------------------


async def test_create_user_answers_201_with_the_user(admin: Api, new_browser) -> None:
    status, body = await admin.post("/api/admin/users", {
        "email": "New.Person@Example.com", "name": "New Person", "role": "admin",
        "password": "a-good-password", "two_factor_required": True})
    assert status == 201, body
    assert set(body) >= ROW_FIELDS
    assert str(uuid.UUID(body["user_id"])) == body["user_id"]
    assert body["email"].lower() == "new.person@example.com"
    assert (body["name"], body["role"]) == ("New Person", "admin")
    assert (body["two_factor_status"], body["two_factor_required"]) == ("off", True)

    status, one = await admin.get(f"/api/admin/users/{body['user_id']}")
    assert (status, one) == (200, body)
    grid = await whole_grid(admin)
    assert [row for row in grid if row["user_id"] == body["user_id"]] == [body]

    # The account works: the email in any case, the password given; Required means setup first.
    _, step = await login_step(new_browser, "new.person@EXAMPLE.com", "a-good-password")
    assert step == "setup_2fa"


async def test_create_user_defaults_to_a_client_not_required(admin: Api) -> None:
    status, body = await admin.post("/api/admin/users", {
        "email": "plain@example.com", "name": "Plain", "password": "a-good-password"})
    assert status == 201, body
    assert (body["role"], body["two_factor_status"], body["two_factor_required"]) == (
        "client", "off", False)


async def test_duplicate_email_in_another_case_is_409(admin: Api, new_browser) -> None:
    user = await new_user(admin, "someone@example.com", "First Owner")
    before = await whole_grid(admin)
    status, body = await admin.post("/api/admin/users", {
        "email": "SomeOne@EXAMPLE.com", "name": "Usurper", "role": "admin",
        "password": "another-password", "two_factor_required": True})
    assert status == 409, body
    assert error_code(body)
    assert await whole_grid(admin) == before
    # The first account is untouched: its own password works, the usurper's does not.
    _, step = await login_step(new_browser, "someone@example.com", user["password"])
    assert step == "done"
    browser = await new_browser()
    status, body = await browser.post("/api/login", {"email": "someone@example.com",
                                                     "password": "another-password"})
    assert (status, error_code(body)) == (401, "invalid_credentials")


async def test_patch_required_name_and_role(admin: Api, new_browser) -> None:
    user = await new_user(admin)
    path = f"/api/admin/users/{user['user_id']}"

    status, body = await admin.patch(path, {"two_factor_required": True})
    assert status == 200, body
    assert (body["two_factor_required"], body["name"], body["role"]) == (True, "Test User",
                                                                          "client")
    assert (await admin.get(path))[1]["two_factor_required"] is True
    _, step = await login_step(new_browser, user["email"], user["password"])
    assert step == "setup_2fa"

    status, body = await admin.patch(path, {"two_factor_required": False})
    assert (status, body["two_factor_required"]) == (200, False)
    _, step = await login_step(new_browser, user["email"], user["password"])
    assert step == "done"

    status, body = await admin.patch(path, {"name": "Renamed Person"})
    assert (status, body["name"], body["two_factor_required"]) == (200, "Renamed Person", False)
    assert (await admin.get(path))[1]["name"] == "Renamed Person"
    rows = await whole_grid(admin, q="renamed")
    assert [row["user_id"] for row in rows] == [user["user_id"]]

    # Promoted, the user's own session can manage users at once; demoted, it cannot.
    browser, step = await login_step(new_browser, user["email"], user["password"])
    assert (await browser.get("/api/admin/users"))[0] == 403
    status, body = await admin.patch(path, {"role": "admin"})
    assert (status, body["role"]) == (200, "admin")
    assert (await browser.get("/api/admin/users"))[0] == 200
    status, body = await admin.patch(path, {"role": "client"})
    assert (status, body["role"]) == (200, "client")
    status, body = await browser.get("/api/admin/users")
    assert (status, error_code(body)) == (403, "forbidden")

    # An empty change changes nothing.
    status, body = await admin.patch(path, {})
    assert status == 200
    assert (body["name"], body["role"], body["two_factor_required"]) == (
        "Renamed Person", "client", False)


async def test_get_one_user_matches_its_grid_row(admin: Api, org: Org, new_browser,
                                                 clock: FrozenClock) -> None:
    user, _, _, _ = await with_two_factor(admin, new_browser, clock, required=True)
    status, body = await admin.get(f"/api/admin/users/{user['user_id']}")
    assert status == 200, body
    assert body["two_factor_status"] == "on" and body["two_factor_required"] is True
    assert [row for row in await whole_grid(admin) if row["user_id"] == user["user_id"]] == [
        {k: body[k] for k in ROW_FIELDS}]
    status, me = await admin.get(f"/api/admin/users/{org.admin_id}")
    assert (status, me["role"], me["email"]) == (200, "admin", org.admin_email)


async def test_an_admin_cannot_remove_their_own_admin_role(admin: Api, org: Org) -> None:
    path = f"/api/admin/users/{org.admin_id}"
    status, body = await admin.patch(path, {"role": "client"})
    assert (status, error_code(body)) == (403, "forbidden")
    status, body = await admin.patch(f"/api/admin/users/{org.admin_id.upper()}",
                                     {"role": "client", "name": "Still Me"})
    assert (status, error_code(body)) == (403, "forbidden")
    status, body = await admin.get(path)
    assert (status, body["role"], body["name"]) == (200, "admin", "Ada Admin")
    assert (await admin.get("/api/admin/users"))[0] == 200
    # Keeping the role, or changing only the name, is fine.
    status, body = await admin.patch(path, {"role": "admin", "name": "Ada Boss"})
    assert (status, body["role"], body["name"]) == (200, "admin", "Ada Boss")


# ---- F8: the grid -------------------------------------------------------------------------------


async def test_grid_columns_and_filters(admin: Api, org: Org, new_browser,
                                        clock: FrozenClock) -> None:
    on_free, _, _, _ = await with_two_factor(admin, new_browser, clock)
    on_required, _, _, _ = await with_two_factor(admin, new_browser, clock, required=True)
    off_required = await new_user(admin, required=True)
    off_free = await new_user(admin)
    expected = {
        org.admin_id: ("off", False), on_free["user_id"]: ("on", False),
        on_required["user_id"]: ("on", True), off_required["user_id"]: ("off", True),
        off_free["user_id"]: ("off", False),
    }
    rows = await whole_grid(admin)
    assert {r["user_id"]: (r["two_factor_status"], r["two_factor_required"]) for r in rows} == (
        expected)

    async def ids(**params: str) -> set[str]:
        return {row["user_id"] for row in await whole_grid(admin, **params)}

    def where(status: str | None = None, required: bool | None = None) -> set[str]:
        return {uid for uid, (s, r) in expected.items()
                if status in (None, s) and required in (None, r)}

    assert await ids(status="on") == where("on") == {on_free["user_id"],
                                                     on_required["user_id"]}
    assert await ids(status="off") == where("off")
    assert await ids(required="true") == where(required=True) == {
        on_required["user_id"], off_required["user_id"]}
    assert await ids(required="false") == where(required=False)
    for status in ("on", "off"):
        for required in (True, False):
            assert await ids(status=status, required=str(required).lower()) == where(
                status, required)
    for params in ({"status": "maybe"}, {"required": "perhaps"}):
        status, body = await admin.get(f"/api/admin/users?{urlencode(params)}")
        assert (status, error_code(body)) == (400, "validation_error")


async def test_grid_search_by_email_or_name_case_insensitive_with_literal_wildcards(
        admin: Api, org: Org) -> None:
    names = {
        "percent": ("pct@example.com", "Really 100% Sure"),
        "percent_decoy": ("pctdecoy@example.com", "Really 100X Sure"),
        "under": ("und@example.com", "snake_case name"),
        "under_decoy": ("unddecoy@example.com", "snakeXcase name"),
        "back": ("bks@example.com", "Back\\Slash"),
        "plain": ("Findme.Person@Example.com", "Mary Findley"),
    }
    made = {key: await new_user(admin, email, name) for key, (email, name) in names.items()}

    async def found(q: str) -> set[str]:
        return {row["user_id"] for row in await whole_grid(admin, q=q)}

    def only(*keys: str) -> set[str]:
        return {made[k]["user_id"] for k in keys}

    assert await found("%") == only("percent")
    assert await found("100%") == only("percent")
    assert await found("0% s") == only("percent")
    assert await found("_") == only("under")
    assert await found("e_c") == only("under")
    assert await found("\\") == only("back")
    assert await found("k\\s") == only("back")
    # Case-insensitive, on the name and on the email.
    assert await found("FINDLEY") == only("plain")
    assert await found("mary findley") == only("plain")
    assert await found("FINDME.PERSON@") == only("plain")
    assert await found("pctDecoy") == only("percent_decoy")
    assert await found("ADA ADMIN") == {org.admin_id}
    assert await found("nobody-has-this") == set()
    # The search combines with the filters and paginates like the rest.
    assert await found("example.com") == {org.admin_id} | only(*names)
    rows = await whole_grid(admin, limit=2, q="REALLY", status="off", required="false")
    assert {row["user_id"] for row in rows} == only("percent", "percent_decoy")


async def test_grid_search_is_case_insensitive_beyond_ascii(admin: Api, database_url: str,
                                                            request: pytest.FixtureRequest,
                                                            ) -> None:
    user = await new_user(admin, name="Émilie Ørsted")
    for q in ("Émilie", "émilie", "ÉMILIE", "ørsted", "ØRSTED"):
        rows = await whole_grid(admin, q=q)
        assert [row["user_id"] for row in rows] == [user["user_id"]], q


async def test_grid_keyset_pagination_covers_every_user_exactly_once(admin: Api,
                                                                    org: Org) -> None:
    made = [await new_user(admin, f"{prefix}-{uuid.uuid4().hex[:6]}@example.com",
                           required=i % 2 == 0)
            for i, prefix in enumerate(["m", "b", "x", "c", "k", "d", "q", "e", "g"])]
    everyone = {org.admin_id} | {u["user_id"] for u in made}

    full = await grid_page(admin)  # default limit (50): one page
    assert {r["user_id"] for r in full["users"]} == everyone and full["next_cursor"] is None
    assert (await grid_page(admin, limit="1000"))["users"] == full["users"]

    for limit in (1, 3, 4, 10):
        rows = await whole_grid(admin, limit=limit)
        ids = [r["user_id"] for r in rows]
        assert len(ids) == len(set(ids)) == len(everyone), limit
        assert set(ids) == everyone
        assert rows == full["users"], "pages concatenate to the same order"
    page = await grid_page(admin, limit="3")
    assert len(page["users"]) == 3 and page["next_cursor"]

    # Filters paginate too.
    required = {u["user_id"] for u in made if u["two_factor_required"]}
    rows = await whole_grid(admin, limit=2, required="true")
    assert sorted(r["user_id"] for r in rows) == sorted(required)


async def test_grid_pagination_is_stable_while_users_are_added(admin: Api, org: Org) -> None:
    made = [await new_user(admin, f"n{i}-{uuid.uuid4().hex[:6]}@example.com") for i in range(6)]
    original = {org.admin_id} | {u["user_id"] for u in made}
    first = await grid_page(admin, limit="3")
    seen = [r["user_id"] for r in first["users"]]
    # New users on both sides of the cursor: the walk neither repeats nor skips anyone.
    before = await new_user(admin, "aaa-first@example.com")
    after = await new_user(admin, "zzz-last@example.com")
    cursor = first["next_cursor"]
    while cursor is not None:
        page = await grid_page(admin, limit="3", cursor=cursor)
        seen += [r["user_id"] for r in page["users"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))
    assert original <= set(seen)
    assert after["user_id"] in seen and before["user_id"] not in seen


@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-1", "2.5", "1e3", " 5", "\uff15"])
async def test_grid_limit_outside_1_to_1000_is_400(admin: Api, limit: str) -> None:
    status, body = await admin.get(f"/api/admin/users?limit={quote(limit)}")
    assert (status, error_code(body)) == (400, "validation_error"), body
    assert "limit" in body["error"]["message"]


async def test_grid_bad_cursor_is_400(admin: Api) -> None:
    await new_user(admin)
    good = (await grid_page(admin, limit="1"))["next_cursor"]
    assert good
    forged = [base64.urlsafe_b64encode(orjson.dumps(value)).decode() for value in (
        [], [1, 2], ["a@b.c", "not-a-uuid"], ["a\u0000@b.c", str(uuid.uuid4())], {"a": 1})]
    for cursor in ("not-a-cursor", "AAAA", good[:-3] + "x!!", "%00", *forged):
        status, body = await admin.get(f"/api/admin/users?cursor={quote(cursor)}")
        assert (status, error_code(body)) == (400, "validation_error"), cursor
        assert "cursor" in body["error"]["message"]


# ---- F7: reset ----------------------------------------------------------------------------------


async def test_reset_turns_2fa_off_and_kills_the_secret_and_every_code(
        admin: Api, new_browser, clock: FrozenClock) -> None:
    user, own, key, codes = await with_two_factor(admin, new_browser, clock)
    await own.post("/api/logout")
    clock.advance(30)
    own, step = await login_step(new_browser, user["email"], user["password"])
    assert step == "second_factor"
    assert (await own.post("/api/login/second-factor", {"code": codes[0]}))[0] == 200
    # Halfway through a login when the admin resets: the old factors no longer open it.
    halfway, step = await login_step(new_browser, user["email"], user["password"])
    assert step == "second_factor"

    status, body = await admin.post(f"/api/admin/users/{user['user_id']}/2fa/reset")
    assert status == 200, body
    assert (body["two_factor_status"], body["two_factor_required"]) == ("off", False)
    status, body = await admin.get(f"/api/admin/users/{user['user_id']}")
    assert (body["two_factor_status"], body["two_factor_required"]) == ("off", False)

    # Not logged out: the existing session still works and shows 2FA Off.
    status, me = await own.get("/api/me")
    assert status == 200, me
    assert me["two_factor"]["status"] == "off" and me["two_factor"]["required"] is False
    assert me["two_factor"]["recovery_codes_left"] == 0

    clock.advance(30)
    for code in (codes[1], codes[9], totp_code(key, clock)):
        status, body = await halfway.post("/api/login/second-factor", {"code": code})
        assert (status, error_code(body)) == (401, "invalid_code"), code
    # A new login needs no second factor any more.
    _, step = await login_step(new_browser, user["email"], user["password"])
    assert step == "done"

    # Configured again, with a new secret: none of the old factors works.
    new_key, new_codes = await enable_two_factor(own, user["password"], clock)
    assert new_key != key and not set(new_codes) & set(codes)
    clock.advance(30)
    again, step = await login_step(new_browser, user["email"], user["password"])
    assert step == "second_factor"
    for code in (codes[2], codes[9], totp_code(key, clock)):
        status, body = await again.post("/api/login/second-factor", {"code": code})
        assert (status, error_code(body)) == (401, "invalid_code"), code
    status, body = await again.post("/api/login/second-factor",
                                    {"code": totp_code(new_key, clock)})
    assert (status, body) == (200, {"next": "done"})


async def test_reset_keeps_required_and_the_user_sets_up_again(
        admin: Api, new_browser, clock: FrozenClock) -> None:
    user, own, _, _ = await with_two_factor(admin, new_browser, clock, required=True)
    assert (await own.get("/api/me"))[1]["two_factor"]["status"] == "on"

    status, body = await admin.post(f"/api/admin/users/{user['user_id']}/2fa/reset")
    assert status == 200, body
    assert (body["two_factor_status"], body["two_factor_required"]) == ("off", True)

    status, me = await own.get("/api/me")
    assert status == 200, me
    assert me["two_factor"]["status"] == "off" and me["two_factor"]["required"] is True
    assert me["two_factor"]["banner"] is True
    rows = await whole_grid(admin, status="off", required="true")
    assert [r["user_id"] for r in rows] == [user["user_id"]]

    browser, step = await login_step(new_browser, user["email"], user["password"])
    assert step == "setup_2fa"
    status, body = await browser.get("/api/admin/users")
    assert (status, error_code(body)) == (403, "setup_2fa_required")


async def test_reset_of_a_user_without_2fa_keeps_them_off(admin: Api, new_browser) -> None:
    user = await new_user(admin, required=True)
    status, body = await admin.post(f"/api/admin/users/{user['user_id']}/2fa/reset")
    assert status == 200, body
    assert (body["two_factor_status"], body["two_factor_required"]) == ("off", True)
    _, step = await login_step(new_browser, user["email"], user["password"])
    assert step == "setup_2fa"


async def test_reset_frees_a_session_waiting_to_regenerate_codes(
        admin: Api, new_browser, clock: FrozenClock) -> None:
    user, own, _, codes = await with_two_factor(admin, new_browser, clock)
    await own.post("/api/logout")
    for code in codes:
        assert await own.login(user["email"], user["password"]) == "second_factor"
        status, body = await own.post("/api/login/second-factor", {"code": code})
        assert status == 200, body
        if code != codes[-1]:
            await own.post("/api/logout")
    assert body == {"next": "regenerate_codes"}

    status, body = await admin.post(f"/api/admin/users/{user['user_id']}/2fa/reset")
    assert status == 200, body

    status, me = await own.get("/api/me")
    assert (status, me["two_factor"]["status"]) == (200, "off")
    # Still logged in, 2FA Off and not Required: the session may configure 2FA again.
    _, new_codes = await enable_two_factor(own, user["password"], clock)
    assert len(new_codes) == 10
