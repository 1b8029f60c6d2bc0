"""F3 login and F1 TOTP through a real server: the `next` values, wrong credentials, the drift
window, replay, recovery codes (down to the last one), session states and the session cookie."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.mfa.bootstrap import Service
from tests.conftest import Api, FrozenClock, create_user, totp_code
from tests.integration.flows import (
    NewBrowser,
    error_code,
    logged_in,
    session_cookie,
    set_cookies,
    settle_followers,
    user_with_two_factor,
    with_cookie,
)


@pytest.fixture(autouse=True)
async def _quiet_teardown(service: Service, new_browser: NewBrowser) -> AsyncIterator[None]:
    yield
    await settle_followers(service)


# ---- step 1: email and password ------------------------------------------------------------


async def test_next_is_done_without_2fa(admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    status, body = await browser.post("/api/login", {"email": user["email"],
                                                     "password": user["password"]})
    assert (status, body) == (200, {"next": "done"})
    status, me = await browser.get("/api/me")
    assert status == 200 and me["user_id"] == user["user_id"]


async def test_next_is_second_factor_with_2fa_on(admin: Api, new_browser: NewBrowser,
                                                 clock: FrozenClock) -> None:
    user, _, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"


async def test_next_is_setup_2fa_when_required_and_off(admin: Api,
                                                       new_browser: NewBrowser) -> None:
    user = await create_user(admin, required=True)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"


async def test_required_user_with_2fa_on_gets_second_factor(admin: Api, new_browser: NewBrowser,
                                                           clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock, required=True)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor",
                                      {"code": totp_code(key, clock)})
    assert (status, body) == (200, {"next": "done"})


async def test_wrong_password_and_unknown_email_get_the_same_401(
        admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    wrong = await browser.post("/api/login", {"email": user["email"], "password": "not-it-1"})
    unknown = await browser.post("/api/login", {"email": "nobody-here@example.com",
                                                "password": user["password"]})
    assert wrong[0] == 401 and error_code(wrong[1]) == "invalid_credentials"
    assert unknown == wrong  # nothing tells an attacker which emails have accounts
    assert session_cookie(browser) is None
    status, body = await browser.get("/api/me")
    assert status == 401 and error_code(body) == "unauthenticated"


async def test_email_is_matched_case_insensitively(admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"].upper(), user["password"]) == "done"


# ---- F1: TOTP drift window and replay --------------------------------------------------------


async def test_totp_accepted_one_step_either_side_refused_two_steps(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    clock.advance(60)  # well after the setup step, so only the drift window decides
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for steps in (-2, 2):
        status, body = await browser.post("/api/login/second-factor",
                                          {"code": totp_code(key, clock, steps)})
        assert (status, error_code(body)) == (401, "invalid_code"), steps
    # the code of the previous step (the app's clock is 30 s behind)
    status, body = await browser.post("/api/login/second-factor",
                                      {"code": totp_code(key, clock, -1)})
    assert (status, body) == (200, {"next": "done"})

    # and the code of the next step (the app's clock is 30 s ahead), in a later login
    await browser.post("/api/logout")
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor",
                                      {"code": totp_code(key, clock, 1)})
    assert (status, body) == (200, {"next": "done"})


async def test_a_code_works_once_also_in_another_session(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    code = totp_code(key, clock)
    first = await new_browser()
    second = await new_browser()
    assert await first.login(user["email"], user["password"]) == "second_factor"
    assert await second.login(user["email"], user["password"]) == "second_factor"
    assert await first.post("/api/login/second-factor", {"code": code}) == (200, {"next": "done"})

    status, body = await second.post("/api/login/second-factor", {"code": code})
    assert (status, error_code(body)) == (401, "invalid_code")
    # the same browser, logging in again within the code's lifetime
    await first.post("/api/logout")
    assert await first.login(user["email"], user["password"]) == "second_factor"
    status, body = await first.post("/api/login/second-factor", {"code": code})
    assert (status, error_code(body)) == (401, "invalid_code")
    status, body = await second.get("/api/me")
    assert (status, error_code(body)) == (401, "unauthenticated")


async def test_an_older_code_than_the_last_accepted_is_refused(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    clock.advance(60)
    await logged_in(new_browser, user, totp_code(key, clock, 1))  # the newest acceptable code
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for steps in (0, -1):  # still inside the drift window, but older than the one used
        status, body = await browser.post("/api/login/second-factor",
                                          {"code": totp_code(key, clock, steps)})
        assert (status, error_code(body)) == (401, "invalid_code"), steps


async def test_setup_code_cannot_be_replayed_at_login(admin: Api, new_browser: NewBrowser,
                                                      clock: FrozenClock) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    _, setup = await browser.post("/api/me/2fa/setup")
    code = totp_code(setup["setup_key"], clock)
    assert (await browser.post("/api/me/2fa/setup/verify", {"code": code}))[0] == 200
    await browser.post("/api/logout")
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor", {"code": code})
    assert (status, error_code(body)) == (401, "invalid_code")


# ---- F3: recovery codes ------------------------------------------------------------------------


async def test_recovery_code_works_once(admin: Api, new_browser: NewBrowser,
                                        clock: FrozenClock) -> None:
    user, _, codes = await user_with_two_factor(admin, new_browser, clock)
    assert all(len(c) == 8 and c.isdigit() for c in codes)
    browser = await logged_in(new_browser, user, codes[4])
    status, me = await browser.get("/api/me")
    assert status == 200 and me["two_factor"]["recovery_codes_left"] == 9

    again = await new_browser()
    assert await again.login(user["email"], user["password"]) == "second_factor"
    status, body = await again.post("/api/login/second-factor", {"code": codes[4]})
    assert (status, error_code(body)) == (401, "invalid_code")
    status, body = await again.post("/api/login/second-factor", {"code": codes[5]})
    assert (status, body) == (200, {"next": "done"})


async def test_last_recovery_code_forces_regeneration(admin: Api, new_browser: NewBrowser,
                                                      clock: FrozenClock) -> None:
    # an admin, so that "done" can be told apart from "forbidden" on the admin API
    user, _, codes = await user_with_two_factor(admin, new_browser, clock, role="admin")
    browser = await new_browser()
    for code in codes[:-1]:
        assert await browser.login(user["email"], user["password"]) == "second_factor"
        assert await browser.post("/api/login/second-factor", {"code": code}) == (
            200, {"next": "done"})
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor", {"code": codes[-1]})
    assert (status, body) == (200, {"next": "regenerate_codes"})

    status, me = await browser.get("/api/me")
    assert status == 200
    assert me["two_factor"]["status"] == "on" and me["two_factor"]["recovery_codes_left"] == 0
    for method, path in [("GET", "/api/me/2fa/recovery-codes"),
                         ("GET", "/api/me/2fa/recovery-codes.txt"),
                         ("GET", "/api/admin/users"),
                         ("POST", "/api/me/2fa/setup"),
                         ("POST", "/api/me/2fa/disable")]:
        status, body = await browser.call(method, path, {} if method == "POST" else None)
        assert (status, error_code(body)) == (403, "regenerate_codes_required"), path

    # no reauthenticate call: the login that ended here opened the window
    status, body = await browser.post("/api/me/2fa/recovery-codes/regenerate")
    assert status == 200, body
    fresh = body["recovery_codes"]
    assert len(set(fresh)) == 10 and all(len(c) == 8 and c.isdigit() for c in fresh)

    status, body = await browser.get("/api/admin/users")
    assert status == 200, body  # the session is done now
    status, body = await browser.get("/api/me/2fa/recovery-codes")
    assert status == 200 and body["codes"] == [{"code": c, "used": False} for c in fresh]
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["recovery_codes_left"] == 10


async def test_second_factor_session_cannot_use_the_api(admin: Api, new_browser: NewBrowser,
                                                        clock: FrozenClock) -> None:
    user, _, _ = await user_with_two_factor(admin, new_browser, clock, role="admin")
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for method, path in [("GET", "/api/me"), ("GET", "/api/admin/users"),
                         ("POST", "/api/me/reauthenticate"),
                         ("POST", "/api/me/2fa/setup"),
                         ("GET", "/api/me/2fa/recovery-codes")]:
        body = {"password": user["password"]} if method == "POST" else None
        status, answer = await browser.call(method, path, body)
        assert (status, error_code(answer)) == (401, "unauthenticated"), path


async def test_second_factor_without_a_session(new_browser: NewBrowser) -> None:
    browser = await new_browser()
    status, body = await browser.post("/api/login/second-factor", {"code": "123456"})
    assert (status, error_code(body)) == (401, "unauthenticated")


async def test_done_session_cannot_send_a_second_factor(admin: Api, new_browser: NewBrowser,
                                                       clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await logged_in(new_browser, user, totp_code(key, clock))
    status, _ = await browser.post("/api/login/second-factor",
                                   {"code": totp_code(key, clock, 1)})
    assert status in (401, 403)


# ---- the session cookie ------------------------------------------------------------------------


async def test_session_cookie_attributes(admin: Api, new_browser: NewBrowser,
                                         clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    after_password = set_cookies(browser)
    await browser.post("/api/login/second-factor", {"code": totp_code(key, clock)})
    after_code = set_cookies(browser)
    assert len(after_password) == 1 and len(after_code) == 1
    for morsel in after_password + after_code:
        assert morsel.value
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Lax"
        assert morsel["path"] == "/"


async def test_logout_ends_the_session(admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    token = session_cookie(browser)
    assert token
    thief = await new_browser()
    status, _ = await with_cookie(thief, token, "GET", "/api/me")
    assert status == 200  # the captured cookie works while the session lives

    status, _ = await browser.post("/api/logout")
    assert status == 200
    assert session_cookie(browser) is None
    status, body = await browser.get("/api/me")
    assert (status, error_code(body)) == (401, "unauthenticated")
    status, body = await with_cookie(thief, token, "GET", "/api/me")
    assert (status, error_code(body)) == (401, "unauthenticated")


async def test_session_token_rotates_on_second_factor(admin: Api, new_browser: NewBrowser,
                                                      clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    half = session_cookie(browser)
    await browser.post("/api/login/second-factor", {"code": totp_code(key, clock)})
    full = session_cookie(browser)
    assert half and full and half != full
    assert (await browser.get("/api/me"))[0] == 200

    other = await new_browser()
    status, body = await with_cookie(other, half, "GET", "/api/me")
    assert (status, error_code(body)) == (401, "unauthenticated")
    status, body = await with_cookie(other, half, "POST", "/api/login/second-factor",
                                     {"code": totp_code(key, clock, 1)})
    assert (status, error_code(body)) == (401, "unauthenticated")


async def test_a_new_login_replaces_the_previous_session(admin: Api,
                                                         new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    first = session_cookie(browser)
    await browser.login(user["email"], user["password"])
    second = session_cookie(browser)
    assert first and second and first != second
    other = await new_browser()
    assert (await with_cookie(other, first, "GET", "/api/me"))[0] == 401
    assert (await with_cookie(other, second, "GET", "/api/me"))[0] == 200


async def test_malformed_second_factor_is_a_validation_error(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for body in ({"code": "12345"}, {"code": "1234567"}, {"code": "abcdef"}, {"code": 123456},
                 {}, "not json"):
        status, answer = await browser.post("/api/login/second-factor", body)
        assert (status, error_code(answer)) == (400, "validation_error"), body
    # none of these counted as an attempt: the right code still works, not locked out
    status, answer = await browser.post("/api/login/second-factor",
                                        {"code": totp_code(key, clock)})
    assert (status, answer) == (200, {"next": "done"})


async def test_a_recovery_code_works_once_when_requests_race(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, _, codes = await user_with_two_factor(admin, new_browser, clock)
    browsers = [await new_browser() for _ in range(50)]
    for browser in browsers:
        assert await browser.login(user["email"], user["password"]) == "second_factor"
    answers = await asyncio.gather(*(
        browser.post("/api/login/second-factor", {"code": codes[2]}) for browser in browsers))
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 401, 429}, statuses
    winner = browsers[[s for s, _ in answers].index(200)]
    status, me = await winner.get("/api/me")
    assert status == 200 and me["two_factor"]["recovery_codes_left"] == 9


async def test_a_totp_code_works_once_when_requests_race(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browsers = [await new_browser() for _ in range(20)]
    for browser in browsers:
        assert await browser.login(user["email"], user["password"]) == "second_factor"
    code = totp_code(key, clock)
    answers = await asyncio.gather(*(
        browser.post("/api/login/second-factor", {"code": code}) for browser in browsers))
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == 1, statuses
