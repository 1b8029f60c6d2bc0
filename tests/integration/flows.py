"""Small helpers shared by the login, lockout and security tests (not a test module)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http.cookies import Morsel, SimpleCookie
from typing import Any

from contracts.http import SESSION_COOKIE
from services.mfa.bootstrap import Service
from tests.conftest import Api, FrozenClock, create_user, enable_two_factor, totp_code

COOKIE = SESSION_COOKIE
NewBrowser = Callable[[], Awaitable[Api]]


def error_code(body: Any) -> str | None:
    """The contract's error code of a response body, or None when it is not an error."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


def session_cookie(api: Api) -> str | None:
    """The session token this browser holds now."""
    for cookie in api.client.session.cookie_jar:
        if cookie.key == COOKIE:
            return cookie.value
    return None


def set_cookies(api: Api) -> list[Morsel[str]]:
    """The session cookies set by the last response this browser received."""
    morsels = []
    for header in api.last_headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if COOKIE in jar:
            morsels.append(jar[COOKIE])
    return morsels


async def with_cookie(browser: Api, token: str, method: str, path: str,
                      body: Any = None) -> tuple[int, Any]:
    """Replay a captured session token from another browser, as an attacker would."""
    if method != "GET" and body is None:
        body = {}
    return await browser.call(method, path, body, headers={"Cookie": f"{COOKIE}={token}"})


def wrong_code(key: str, clock: FrozenClock) -> str:
    """A 6-digit code that is not valid in any step the server accepts right now."""
    valid = {totp_code(key, clock, steps) for steps in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


async def user_with_two_factor(admin: Api, new_browser: NewBrowser, clock: FrozenClock,
                               **kwargs: Any) -> tuple[dict[str, Any], str, list[str]]:
    """A user who configured 2FA, logged out again; the clock moved on one TOTP step, so the
    current code is a fresh one (the setup code's step counts as used)."""
    user = await create_user(admin, **kwargs)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) in ("done", "setup_2fa")
    if (await browser.get("/api/me"))[1]["two_factor"]["required"]:
        status, setup = await browser.post("/api/me/2fa/setup")
        assert status == 200, setup
        status, body = await browser.post("/api/me/2fa/setup/verify",
                                          {"code": totp_code(setup["setup_key"], clock)})
        assert status == 200, body
        key, codes = setup["setup_key"], body["recovery_codes"]
    else:
        key, codes = await enable_two_factor(browser, user["password"], clock)
    await browser.post("/api/logout")
    clock.advance(30)
    return user, key, codes


async def logged_in(new_browser: NewBrowser, user: dict[str, Any], code: str) -> Api:
    """A fresh browser through both login steps with `code`."""
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor", {"code": code})
    assert status == 200, body
    return browser


async def settle_followers(service: Service) -> None:
    """Teardown hygiene: the projectors and the relay handle the whole log before the server
    closes (close_service also stops them between batches)."""
    head = await service.call(service.app.recorder.max_notification_id)
    if head:
        for follower in service.followers:
            assert await follower.wait_for(head), follower.name
