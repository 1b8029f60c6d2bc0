"""Issue 8: each attack that got through, tried again as an attacker would, on both stores.

The server believes `X-Forwarded-For` from 127.0.0.1 here (MFA_TRUSTED_PROXIES), so one test
client can speak from many addresses; a test further down checks that nobody else is believed.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from services.mfa.adapters.passwords import Passwords
from services.mfa.bootstrap import Service
from services.mfa.config import Settings
from services.mfa.http.app import LIVE, create_app
from services.mfa.http.context import SERVICE
from services.mfa.http.live import session_authenticator
from services.notifier.websocket import refresh_all
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
from tests.integration.flows import (
    NewBrowser,
    error_code,
    logged_in,
    set_cookies,
    settle_followers,
    user_with_two_factor,
)

PER_ADDRESS, PER_ACCOUNT = 20, 10  # small thresholds keep the floods short


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The test's settings; `@pytest.mark.settings(name=value)` changes some."""
    marker = request.node.get_closest_marker("settings")
    return Settings(**{
        "database_url": database_url, "secret_key": SECRET_KEY, "var_dir": tmp_path / "var",
        "trusted_proxies": ("127.0.0.1/32",), "password_address_threshold": PER_ADDRESS,
        "password_account_threshold": PER_ACCOUNT, **(marker.kwargs if marker else {})})


@pytest.fixture
def passwords(request: pytest.FixtureRequest) -> Passwords:
    """FAST_PASSWORDS; parametrized indirectly, a BlockedPasswords that the `admin` fixture's
    login passes through first."""
    if getattr(request, "param", "fast") is None:
        blocked = BlockedPasswords()
        blocked.release.set()
        return blocked
    return FAST_PASSWORDS


@pytest.fixture
async def server(settings: Settings, clock: FrozenClock,
                 passwords: Passwords) -> AsyncIterator[TestServer]:
    test_server = TestServer(create_app(settings, clock=clock, passwords=passwords))
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.fixture(autouse=True)
async def _quiet_teardown(service: Service, new_browser: NewBrowser) -> AsyncIterator[None]:
    yield
    await settle_followers(service)


async def login_from(browser: Api, address: str, email: str,
                     password: str) -> tuple[int, str | None, str | None]:
    """(status, `next` or the error code, Retry-After), sent through the trusted proxy."""
    status, body = await browser.call("POST", "/api/login", {"email": email,
                                                            "password": password},
                                      headers={"X-Forwarded-For": address})
    answer = body["next"] if status == 200 else error_code(body)
    return status, answer, browser.last_headers.get("Retry-After")


# ---- 1. a password-only session never becomes a full session ---------------------------------


async def test_a_forced_setup_session_owes_the_second_factor_once_2fa_is_on_elsewhere(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    """The reported bypass: someone with the password of a Required user logs in (forced setup,
    with the 10-minute window); the real user then configures 2FA in another session. The
    first session used to become `done` and read the ten new recovery codes."""
    user = await create_user(admin, required=True)
    attacker = await new_browser()
    assert await attacker.login(user["email"], user["password"]) == "setup_2fa"
    real_user = await new_browser()
    assert await real_user.login(user["email"], user["password"]) == "setup_2fa"
    key, codes = await enable_two_factor(real_user, user["password"], clock)

    for method, path in [("GET", "/api/me/2fa/recovery-codes"), ("GET", "/api/me"),
                         ("POST", "/api/me/2fa/setup"), ("POST", "/api/me/2fa/setup/verify"),
                         ("GET", "/api/me/2fa/recovery-codes.txt"),
                         ("POST", "/api/me/2fa/recovery-codes/regenerate"),
                         ("POST", "/api/me/reauthenticate"), ("GET", "/api/admin/users")]:
        body = {"code": "123456", "password": user["password"]} if method == "POST" else None
        status, answer = await attacker.call(method, path, body)
        assert (status, error_code(answer)) == (401, "unauthenticated"), (path, answer)
        assert not any(code in orjson.dumps(answer).decode() for code in codes)
    # Nor does the notifier give it a socket, nor its check call it a session.
    status, body = await attacker.get("/api/session")
    assert (status, error_code(body)) == (401, "unauthenticated")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await attacker.client.ws_connect("/ws")
    # It owes the second factor now: with it (the real user's phone), it goes on.
    status, body = await attacker.post("/api/login/second-factor",
                                       {"code": totp_code(key, clock, 1)})
    assert (status, body) == (200, {"next": "done"})


async def test_a_forced_setup_cannot_replace_a_factor_configured_meanwhile(
        admin: Api, new_browser: NewBrowser, service: Service, clock: FrozenClock) -> None:
    """The same race one step later: the password holder started a setup of its own before
    the real user finished theirs. Its confirmation is refused by the aggregate itself, and
    the real user's app keeps working."""
    user = await create_user(admin, required=True)
    attacker = await new_browser()
    assert await attacker.login(user["email"], user["password"]) == "setup_2fa"
    status, own = await attacker.post("/api/me/2fa/setup")
    assert status == 200
    real_user = await new_browser()
    assert await real_user.login(user["email"], user["password"]) == "setup_2fa"
    key, _ = await enable_two_factor(real_user, user["password"], clock)
    status, body = await attacker.post("/api/me/2fa/setup/verify",
                                       {"code": totp_code(own["setup_key"], clock)})
    assert (status, error_code(body)) == (401, "unauthenticated")
    mfa = await service.call(service.app.mfa, _uuid(user["user_id"]))
    assert mfa.secret is not None and mfa.secret == key.replace(" ", "")


# ---- 2. an admin cannot reset their own 2FA ---------------------------------------------------


async def test_an_admin_cannot_reset_their_own_two_factor(
        admin: Api, org: Org, new_browser: NewBrowser, clock: FrozenClock,
        service: Service) -> None:
    await enable_two_factor(admin, org.admin_password, clock)
    status, body = await admin.post(f"/api/admin/users/{org.admin_id}/2fa/reset")
    assert (status, error_code(body)) == (403, "forbidden")
    assert (await service.call(service.app.mfa, _uuid(org.admin_id))).is_on
    # Another admin of the organization still can (F7), and support can (F10, test_cli.py).
    other = await create_user(admin, role="admin")
    other_browser = await new_browser()
    assert await other_browser.login(other["email"], other["password"]) == "done"
    status, body = await other_browser.post(f"/api/admin/users/{org.admin_id}/2fa/reset")
    assert status == 200 and body["two_factor_status"] == "off"


# ---- 3. a stranger cannot lock a user out, nor learn which emails have accounts ---------------


async def test_a_stranger_from_one_address_cannot_keep_the_user_out(
        admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    stranger, owner = await new_browser(), await new_browser()
    answers = [await login_from(stranger, "203.0.113.9", user["email"], "guess-password-1")
               for _ in range(12)]
    assert answers[:5] == [(401, "invalid_credentials", None)] * 5
    assert answers[5] == (429, "too_many_attempts", "30")
    assert all(status == 429 for status, _, _ in answers[5:])  # guessing on extends nothing
    # The real user, from their own address, is not affected.
    assert await login_from(owner, "198.51.100.20", user["email"], user["password"]) == (
        200, "done", None)
    # Nor is the second factor's lockout: the stranger's guesses never counted there.
    user2, key, _ = await user_with_two_factor(admin, new_browser, _clock_of(admin))
    for _ in range(8):
        await login_from(stranger, "203.0.113.9", user2["email"], "guess-password-1")
    browser = await new_browser()
    assert await login_from(browser, "198.51.100.20", user2["email"], user2["password"]) == (
        200, "second_factor", None)
    status, body = await browser.post("/api/login/second-factor",
                                      {"code": totp_code(key, _clock_of(admin))})
    assert (status, body) == (200, {"next": "done"})


async def test_throttling_tells_nobody_which_emails_have_accounts(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user = await create_user(admin)
    stranger = await new_browser()

    async def probe(email: str, address: str) -> list[tuple[int, str | None, str | None]]:
        answers = [await login_from(stranger, address, email, "guess-password-1")
                   for _ in range(7)]
        clock.advance(31)
        answers += [await login_from(stranger, address, email, "guess-password-1")
                    for _ in range(2)]
        return answers

    known = await probe(user["email"], "203.0.113.10")
    unknown = await probe("nobody-at-all@example.com", "203.0.113.11")
    assert known == unknown
    assert known[5] == (429, "too_many_attempts", "30")
    assert known[7:] == [(401, "invalid_credentials", None), (429, "too_many_attempts", "60")]


async def test_spraying_one_password_over_many_emails_from_one_address_is_throttled(
        admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    sprayer = await new_browser()
    for n in range(PER_ADDRESS):
        status, _, _ = await login_from(sprayer, "203.0.113.12", f"someone{n}@example.com",
                                        "Summer2026!")
        assert status == 401
    # The address waits now, whichever email it tries next, even a right password.
    assert await login_from(sprayer, "203.0.113.12", user["email"], user["password"]) == (
        429, "too_many_attempts", "30")
    assert (await login_from(sprayer, "203.0.113.13", user["email"], user["password"]))[0] \
        == 200


async def test_many_addresses_meet_the_account_cap_but_a_returning_browser_does_not(
        admin: Api, new_browser: NewBrowser) -> None:
    """1,000 addresses guessing one account: past the per-account cap every new client waits;
    a browser that completed a login before (device cookie) is counted apart and gets in."""
    user = await create_user(admin)
    returning = await new_browser()
    assert await login_from(returning, "198.51.100.30", user["email"], user["password"]) == (
        200, "done", None)
    assert any(m.key == "mfa_device" for m in returning.client.session.cookie_jar)
    await returning.post("/api/logout")

    botnet = await new_browser()
    for n in range(PER_ACCOUNT):
        status, _, _ = await login_from(botnet, f"10.0.{n // 250}.{n % 250 + 1}",
                                        user["email"], "guess-password-1")
        assert status == 401
    assert (await login_from(botnet, "10.9.9.9", user["email"], "guess-password-1"))[0] == 429
    new_browser_of_the_user = await new_browser()
    assert (await login_from(new_browser_of_the_user, "198.51.100.31", user["email"],
                             user["password"]))[0] == 429
    # The returning browser, even from a new address, is not held by the strangers' guesses.
    assert await login_from(returning, "198.51.100.32", user["email"], user["password"]) == (
        200, "done", None)


async def test_a_device_cookie_is_throttled_on_its_own(admin: Api,
                                                       new_browser: NewBrowser) -> None:
    """A stolen device cookie is no skeleton key: guesses under it wait like any client's."""
    user = await create_user(admin)
    browser = await new_browser()
    assert (await login_from(browser, "198.51.100.40", user["email"], user["password"]))[0] == 200
    answers = [await login_from(browser, f"198.51.100.{41 + n}", user["email"], "guess-1xyz")
               for n in range(6)]
    assert [a[0] for a in answers] == [401] * 5 + [429]


async def test_a_device_cookie_of_one_email_does_not_help_another(
        admin: Api, new_browser: NewBrowser) -> None:
    mine, victim = await create_user(admin), await create_user(admin)
    browser = await new_browser()
    assert (await login_from(browser, "198.51.100.50", mine["email"], mine["password"]))[0] == 200
    answers = [await login_from(browser, "198.51.100.50", victim["email"], "guess-1xyz")
               for _ in range(6)]
    assert answers[5][0] == 429  # counted by address and email, like any stranger


@pytest.mark.settings(trusted_proxies=())
async def test_forwarded_headers_from_anyone_else_are_ignored(new_browser: NewBrowser) -> None:
    """Without MFA_TRUSTED_PROXIES a client cannot pick a new address per guess."""
    api = await new_browser()
    answers = [await login_from(api, f"203.0.113.{n}", "x@example.com", "guess-1xyz")
               for n in range(1, 7)]
    assert [a[0] for a in answers] == [401] * 5 + [429]


# ---- 4. a flood of logins cannot starve signed-in users ---------------------------------------


class BlockedPasswords(Passwords):
    """argon2 that waits until released: the hashing capacity stays full as long as a test
    needs, with no timing involved."""

    def __init__(self) -> None:
        super().__init__(FAST_PASSWORDS._hasher)
        self.entered = threading.Event()
        self.release = threading.Event()

    def verify(self, password_hash: str | None, password: str) -> bool:
        self.entered.set()
        self.release.wait(10)
        return super().verify(password_hash, password)


@pytest.mark.settings(hashing_threads=1, hashing_queue=1)
@pytest.mark.parametrize("passwords", [pytest.param(None, id="blocked")], indirect=True)
async def test_past_the_hashing_capacity_logins_are_told_to_retry_and_others_go_on(
        admin: Api, new_browser: NewBrowser, passwords: BlockedPasswords,
        service: Service) -> None:
    blocked = passwords
    blocked.release.clear()  # from now on every password check waits
    blocked.entered.clear()
    flood_a, flood_b, flood_c = [await new_browser() for _ in range(3)]
    first = asyncio.create_task(login_from(flood_a, "203.0.113.1", "a@example.com", "x"))
    second = asyncio.create_task(login_from(flood_b, "203.0.113.2", "b@example.com", "x"))
    await asyncio.to_thread(blocked.entered.wait, 5)  # one hashing, one waiting
    # Capacity full: the next login is refused at once, told when to retry.
    assert await login_from(flood_c, "203.0.113.3", "c@example.com", "x") == (
        503, "unavailable", "1")
    # A signed-in user is not held up by the hashing at all.
    status, me = await admin.get("/api/me")
    assert status == 200 and me["role"] == "admin"
    assert not first.done() and not second.done()
    # A returning browser (device cookie of its email) has a lane of its own: it is neither
    # refused nor queued behind the strangers, who still are refused.
    returning = await new_browser()
    returning.client.session.cookie_jar.update_cookies(
        {c.key: c.value for c in admin.client.session.cookie_jar if c.key == "mfa_device"})
    back = asyncio.create_task(login_from(returning, "198.51.100.9", me["email"],
                                          "admin-password-1"))
    async with asyncio.timeout(5):
        while service.hashing.busy_returning < 1:  # noqa: ASYNC110 (a counter, not an event)
            await asyncio.sleep(0.01)  # in a lane of its own, not refused
    assert (await login_from(flood_c, "203.0.113.4", "d@example.com", "x"))[0] == 503
    blocked.release.set()
    assert (await first)[0] == 401 and (await second)[0] == 401
    assert await back == (200, "done", None)
    # The refused attempt counted nothing: the same client may try again at once.
    assert (await login_from(flood_c, "203.0.113.3", "c@example.com", "x"))[0] == 401


# ---- 5. sessions: absolute and idle lifetimes, forced steps, sockets ---------------------------


async def test_reentering_the_password_never_extends_the_absolute_lifetime(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    cookie = set_cookies(browser)[0]
    assert int(cookie["max-age"]) == 12 * 3600
    for _ in range(11):
        clock.advance(3500)  # used within every idle hour
        status, body = await browser.post("/api/me/reauthenticate",
                                          {"password": user["password"]})
        assert status == 200, body
    assert int(set_cookies(browser)[0]["max-age"]) == 12 * 3600 - 11 * 3500
    clock.advance(12 * 3600 - 11 * 3500)  # twelve hours after the login
    status, body = await browser.get("/api/me")
    assert (status, error_code(body)) == (401, "unauthenticated")


async def test_an_idle_session_ends(admin: Api, new_browser: NewBrowser,
                                    clock: FrozenClock) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    clock.advance(3000)
    assert (await browser.get("/api/me"))[0] == 200  # a use renews it
    clock.advance(3000)
    assert (await browser.get("/api/me"))[0] == 200
    clock.advance(3600)
    status, body = await browser.get("/api/me")
    assert (status, error_code(body)) == (401, "unauthenticated")


async def test_a_forced_regeneration_that_outlived_its_window_is_no_dead_end(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user, _, codes = await user_with_two_factor(admin, new_browser, clock)
    for code in codes[:-1]:
        browser = await logged_in(new_browser, user, code)
        await browser.post("/api/logout")
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    status, body = await browser.post("/api/login/second-factor", {"code": codes[-1]})
    assert (status, body) == (200, {"next": "regenerate_codes"})
    clock.advance(601)
    status, body = await browser.post("/api/me/2fa/recovery-codes/regenerate")
    assert (status, error_code(body)) == (403, "reauthentication_required")
    status, body = await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    assert status == 200, body
    status, body = await browser.post("/api/me/2fa/recovery-codes/regenerate")
    assert status == 200 and len(body["recovery_codes"]) == 10
    assert (await browser.get("/api/admin/users"))[1]["error"]["code"] == "forbidden"


async def test_a_forced_setup_that_outlived_its_window_is_no_dead_end(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user = await create_user(admin, required=True)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"
    clock.advance(601)
    status, body = await browser.post("/api/me/2fa/setup")
    assert (status, error_code(body)) == (410, "setup_window_expired")
    assert (await browser.post("/api/me/reauthenticate", {"password": user["password"]}))[0] \
        == 200
    status, setup = await browser.post("/api/me/2fa/setup")
    assert status == 200
    status, body = await browser.post("/api/me/2fa/setup/verify",
                                      {"code": totp_code(setup["setup_key"], clock)})
    assert status == 200 and len(body["recovery_codes"]) == 10


async def test_logout_closes_that_sessions_sockets_only(
        admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    laptop, phone = await new_browser(), await new_browser()
    for browser in (laptop, phone):
        assert await browser.login(user["email"], user["password"]) == "done"
    laptop_page = await laptop.client.ws_connect("/ws")
    phone_page = await phone.client.ws_connect("/ws")
    for page in (laptop_page, phone_page):
        assert orjson.loads(await page.receive_str())["type"] == "banner"
    await laptop.post("/api/logout")
    async with asyncio.timeout(5):
        closed = await laptop_page.receive()
    assert closed.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert laptop_page.close_code == 4401
    # The phone's page stays open and keeps getting the banner.
    await admin.patch(f"/api/admin/users/{user['user_id']}", {"two_factor_required": True})
    async with asyncio.timeout(5):
        banner = orjson.loads(await phone_page.receive_str())
    assert banner["show"] is True
    await phone_page.close()


async def test_a_session_that_ran_out_loses_its_sockets(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock, server: TestServer,
        service: Service) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    page = await browser.client.ws_connect("/ws")
    assert orjson.loads(await page.receive_str())["type"] == "banner"
    live = server.app[LIVE]
    # The notifier's periodic check is not a use: it does not keep the session alive.
    assert await refresh_all(live, session_authenticator(service)) == 1
    clock.advance(3600)
    assert await refresh_all(live, session_authenticator(service)) == 0
    async with asyncio.timeout(5):
        await page.receive()
    assert page.close_code == 4401


# ---- 6. concurrent logins of one user -----------------------------------------------------------


@pytest.mark.settings(hashing_queue=20)
async def test_twenty_simultaneous_right_logins_all_succeed(
        admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    """They used to answer 409 `conflict`, outside the contract: commands on one user are
    queued, and races across processes retried."""
    user, _, _ = await user_with_two_factor(admin, new_browser, clock)
    browsers = [await new_browser() for _ in range(20)]
    answers = await asyncio.gather(*(login_from(b, "198.51.100.60", user["email"],
                                                user["password"]) for b in browsers))
    assert answers == [(200, "second_factor", None)] * 20


@pytest.mark.settings(hashing_threads=1, hashing_queue=2)
async def test_past_capacity_simultaneous_logins_get_a_contract_answer(
        admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browsers = [await new_browser() for _ in range(8)]
    answers = await asyncio.gather(*(login_from(b, "198.51.100.61", user["email"],
                                                user["password"]) for b in browsers))
    assert {answer for answer in answers} <= {(200, "done", None), (503, "unavailable", "1")}
    assert answers.count((200, "done", None)) >= 3
    for browser, answer in zip(browsers, answers, strict=True):
        if answer[0] == 503:  # retrying as told works
            assert (await login_from(browser, "198.51.100.61", user["email"],
                                     user["password"]))[0] == 200


# ---- 7. headers everywhere, HSTS and Secure behind TLS ----------------------------------------


async def test_redirects_carry_the_security_headers(new_browser: NewBrowser) -> None:
    browser = await new_browser()
    async with browser.client.get("/", allow_redirects=False) as response:
        assert response.status == 302
        for header in ("X-Frame-Options", "X-Content-Type-Options", "Content-Security-Policy",
                       "Referrer-Policy", "Cache-Control"):
            assert header in response.headers, header
        assert "Strict-Transport-Security" not in response.headers  # plain http here


async def test_behind_a_tls_proxy_cookies_are_secure_and_hsts_is_sent(
        admin: Api, new_browser: NewBrowser) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    proxied = {"X-Forwarded-For": "198.51.100.70", "X-Forwarded-Proto": "https"}
    status, _ = await browser.call("POST", "/api/login", {"email": user["email"],
                                                         "password": user["password"]},
                                   headers=proxied)
    assert status == 200
    assert browser.last_headers["Strict-Transport-Security"].startswith("max-age=")
    assert all(cookie["secure"] for cookie in set_cookies(browser))
    host = browser.client.make_url("/").host
    port = browser.client.make_url("/").port
    status, body = await browser.call(
        "POST", "/api/logout", {}, headers={**proxied, "Origin": f"https://{host}:{port}"})
    assert status == 200, body


@pytest.mark.settings(public_url="https://mfa.example.com")
async def test_the_public_url_decides_the_origin_cookies_and_hsts(
        new_browser: NewBrowser) -> None:
    api = await new_browser()
    body: Any = {"email": "x@example.com", "password": "guess-1xyz"}
    status, _ = await api.call("POST", "/api/login", body,
                               headers={"Origin": "https://mfa.example.com"})
    assert status == 401  # past the CSRF check
    assert api.last_headers["Strict-Transport-Security"].startswith("max-age=")
    url = api.client.make_url("/")
    own_address = f"http://{url.host}:{url.port}"
    status, refused = await api.call("POST", "/api/login", body,
                                     headers={"Origin": own_address})
    assert (status, error_code(refused)) == (403, "forbidden")
    with pytest.raises(aiohttp.WSServerHandshakeError) as socket:
        await api.client.ws_connect("/ws", headers={"Origin": own_address})
    assert socket.value.status == 403


def _uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)


def _clock_of(api: Api) -> FrozenClock:
    clock = api.client.server.app[SERVICE].clock
    assert isinstance(clock, FrozenClock)
    return clock
