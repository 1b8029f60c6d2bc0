"""Brute force of the second factor (SPEC section 6): after MFA_LOCKOUT_THRESHOLD consecutive wrong
second factors, counted per account across sessions and addresses, the account waits (429 +
Retry-After); the wait doubles with each further failure; only a completed login resets the
count. Wrong passwords are throttled by address and email instead: tests/integration/
test_attacks.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from tests.conftest import Api, FrozenClock, create_user, totp_code
from tests.integration.flows import (
    NewBrowser,
    error_code,
    settle_followers,
    user_with_two_factor,
    wrong_code,
)


@pytest.fixture(autouse=True)
async def _quiet_teardown(service: Service, new_browser: NewBrowser) -> AsyncIterator[None]:
    yield
    await settle_followers(service)


async def send_code(browser: Api, code: str) -> tuple[int, str | None, str | None]:
    """(status, `next` or the error code, Retry-After)"""
    status, body = await browser.post("/api/login/second-factor", {"code": code})
    if status == 200:
        return status, body["next"], None
    return status, error_code(body), browser.last_headers.get("Retry-After")


async def login(browser: Api, email: str, password: str) -> tuple[int, str | None, str | None]:
    status, body = await browser.post("/api/login", {"email": email, "password": password})
    if status == 200:
        return status, body["next"], None
    return status, error_code(body), browser.last_headers.get("Retry-After")


async def test_lockout_across_sessions_then_wait(admin: Api, new_browser: NewBrowser,
                                                 clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browsers = [await new_browser() for _ in range(3)]
    for browser in browsers:
        assert await browser.login(user["email"], user["password"]) == "second_factor"
    # five wrong codes, spread over three sessions of the same account
    for browser in (browsers[0], browsers[1], browsers[2], browsers[0], browsers[1]):
        assert await send_code(browser, wrong_code(key, clock)) == (401, "invalid_code", None)

    # locked: even the right code is refused, in any session, with how long to wait
    assert await send_code(browsers[2], totp_code(key, clock)) == (
        429, "too_many_attempts", "30")
    clock.advance(10)
    assert await send_code(browsers[0], totp_code(key, clock)) == (
        429, "too_many_attempts", "20")
    # a new login passes the password (the password step shows nobody whether an account's
    # second factor is locked), and is refused at the code
    late = await new_browser()
    assert await login(late, user["email"], user["password"]) == (200, "second_factor", None)
    assert await send_code(late, totp_code(key, clock)) == (429, "too_many_attempts", "20")

    clock.advance(21)  # 31 s after the fifth failure
    assert await send_code(browsers[2], totp_code(key, clock)) == (200, "done", None)
    status, me = await browsers[2].get("/api/me")
    assert status == 200 and me["email"] == user["email"]


async def test_retry_after_header_on_the_429(admin: Api, new_browser: NewBrowser,
                                             clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(5):
        await send_code(browser, wrong_code(key, clock))
    status, body = await browser.post("/api/login/second-factor",
                                      {"code": totp_code(key, clock)})
    assert status == 429
    assert body["error"]["code"] == "too_many_attempts" and body["error"]["message"]
    assert browser.last_headers["Retry-After"] == "30"


async def test_right_code_after_the_wait(admin: Api, new_browser: NewBrowser,
                                         clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(5):
        await send_code(browser, wrong_code(key, clock))
    assert (await send_code(browser, totp_code(key, clock)))[0] == 429
    clock.advance(31)
    status, body = await browser.post("/api/login/second-factor",
                                      {"code": totp_code(key, clock)})
    assert (status, body) == (200, {"next": "done"})


async def test_the_wait_doubles(admin: Api, new_browser: NewBrowser,
                                clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(5):
        await send_code(browser, wrong_code(key, clock))
    assert await send_code(browser, wrong_code(key, clock)) == (429, "too_many_attempts", "30")

    clock.advance(31)
    # the sixth failure: refused as a wrong code, and the next wait is 60 s
    assert await send_code(browser, wrong_code(key, clock)) == (401, "invalid_code", None)
    assert await send_code(browser, totp_code(key, clock)) == (429, "too_many_attempts", "60")
    clock.advance(59)
    assert await send_code(browser, totp_code(key, clock)) == (429, "too_many_attempts", "1")
    clock.advance(2)
    assert await send_code(browser, wrong_code(key, clock)) == (401, "invalid_code", None)
    assert await send_code(browser, totp_code(key, clock)) == (429, "too_many_attempts", "120")


async def test_refused_attempts_while_locked_do_not_extend_the_wait(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(5):
        await send_code(browser, wrong_code(key, clock))
    for _ in range(5):
        assert (await send_code(browser, wrong_code(key, clock)))[0] == 429
    clock.advance(31)
    assert await send_code(browser, totp_code(key, clock)) == (200, "done", None)


async def test_wrong_passwords_count(admin: Api, new_browser: NewBrowser,
                                     clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    for _ in range(5):
        assert await login(browser, user["email"], "wrong-password-9") == (
            401, "invalid_credentials", None)
    assert await login(browser, user["email"], user["password"]) == (
        429, "too_many_attempts", "30")
    clock.advance(31)
    assert await login(browser, user["email"], user["password"]) == (200, "second_factor", None)
    assert await send_code(browser, totp_code(key, clock)) == (200, "done", None)


async def test_wrong_passwords_count_without_2fa(admin: Api, new_browser: NewBrowser,
                                                 clock: FrozenClock) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    for _ in range(5):
        assert (await login(browser, user["email"], "wrong-password-9"))[:2] == (
            401, "invalid_credentials")
    assert await login(browser, user["email"], user["password"]) == (
        429, "too_many_attempts", "30")
    clock.advance(31)
    assert await login(browser, user["email"], user["password"]) == (200, "done", None)
    # that completed login reset the count: four more mistakes do not lock the account
    for _ in range(4):
        assert (await login(browser, user["email"], "wrong-password-9"))[:2] == (
            401, "invalid_credentials")
    assert await login(browser, user["email"], user["password"]) == (200, "done", None)


async def test_wrong_passwords_do_not_count_toward_the_second_factor(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    for _ in range(4):
        assert (await login(browser, user["email"], "wrong-password-9"))[0] == 401
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(4):
        assert (await send_code(browser, wrong_code(key, clock)))[0] == 401
    assert await send_code(browser, totp_code(key, clock)) == (200, "done", None)


async def test_right_password_does_not_reset_wrong_second_factors(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(3):
        assert (await send_code(browser, wrong_code(key, clock)))[0] == 401
    await browser.post("/api/logout")
    # a right password again: the count of wrong second factors goes on
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(2):
        assert (await send_code(browser, wrong_code(key, clock)))[0] == 401
    assert await send_code(browser, totp_code(key, clock)) == (429, "too_many_attempts", "30")


async def test_a_completed_login_resets_the_count(admin: Api, new_browser: NewBrowser,
                                                  clock: FrozenClock) -> None:
    user, key, codes = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(4):
        assert (await send_code(browser, wrong_code(key, clock)))[0] == 401
    assert await send_code(browser, totp_code(key, clock)) == (200, "done", None)

    await browser.post("/api/logout")
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    for _ in range(4):  # without the reset the first of these would have locked the account
        assert (await send_code(browser, wrong_code(key, clock)))[0] == 401
    assert await send_code(browser, codes[0]) == (200, "done", None)


async def test_recovery_codes_are_throttled_too(admin: Api, new_browser: NewBrowser,
                                                clock: FrozenClock) -> None:
    user, _, codes = await user_with_two_factor(admin, new_browser, clock)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    guesses = [f"{n:08d}" for n in range(100) if f"{n:08d}" not in codes][:5]
    for guess in guesses:
        assert await send_code(browser, guess) == (401, "invalid_code", None)
    assert await send_code(browser, codes[0]) == (429, "too_many_attempts", "30")
    clock.advance(31)
    assert await send_code(browser, codes[0]) == (200, "done", None)


async def test_wrong_reauthentication_passwords_count(admin: Api, new_browser: NewBrowser,
                                                      clock: FrozenClock) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    for _ in range(5):
        status, body = await browser.post("/api/me/reauthenticate", {"password": "nope-nope-1"})
        assert (status, error_code(body)) == (401, "invalid_credentials")
    status, body = await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    assert (status, error_code(body)) == (429, "too_many_attempts")
    assert browser.last_headers["Retry-After"] == "30"


class TestPolicyFromSettings:
    """MFA_LOCKOUT_THRESHOLD and MFA_LOCKOUT_BASE_SECONDS are honoured (and the cap)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"lockout_threshold": 3, "lockout_base_seconds": 10,
                                           "lockout_max_seconds": 40})

    async def test_threshold_base_and_cap(self, admin: Api, new_browser: NewBrowser,
                                          clock: FrozenClock) -> None:
        user, key, _ = await user_with_two_factor(admin, new_browser, clock)
        browser = await new_browser()
        assert await browser.login(user["email"], user["password"]) == "second_factor"
        for _ in range(3):
            assert (await send_code(browser, wrong_code(key, clock)))[0] == 401
        assert await send_code(browser, totp_code(key, clock)) == (
            429, "too_many_attempts", "10")
        for wait, expected in ((11, "20"), (21, "40"), (41, "40")):  # doubles, up to the cap
            clock.advance(wait)
            assert (await send_code(browser, wrong_code(key, clock)))[0] == 401
            assert await send_code(browser, totp_code(key, clock)) == (
                429, "too_many_attempts", expected)
