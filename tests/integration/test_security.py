"""My account > Security through a real server: F2 configure (window, setup key, otpauth URI,
QR code, verify), F4 recovery codes, F9 disable, F6 forced setup, and GET /api/me's shape."""

from __future__ import annotations

import io
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import segno

from services.mfa.bootstrap import Service
from tests.conftest import Api, FrozenClock, Org, create_user, enable_two_factor, totp_code
from tests.integration.flows import (
    NewBrowser,
    error_code,
    logged_in,
    session_cookie,
    settle_followers,
    user_with_two_factor,
    with_cookie,
)

SVG_NS = "{http://www.w3.org/2000/svg}"
ISO_UTC_MICROSECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(\+00:00|Z)$")


@pytest.fixture(autouse=True)
async def _quiet_teardown(service: Service, new_browser: NewBrowser) -> AsyncIterator[None]:
    yield
    await settle_followers(service)


async def logged_in_user(admin: Api, new_browser: NewBrowser,
                         **kwargs: Any) -> tuple[dict[str, Any], Api]:
    user = await create_user(admin, **kwargs)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) in ("done", "setup_2fa")
    return user, browser


def parse_iso(text: str) -> datetime:
    assert ISO_UTC_MICROSECONDS.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- the QR code, read back from the SVG ----------------------------------------------------


def svg_modules(svg: str) -> list[list[bool]]:
    """The dark modules of a QR code drawn as segno draws it: one path of horizontal runs
    (`M x y`, `m dx dy`, `h n`) in module units, scaled by a transform. Returns the symbol
    without its quiet zone (the finder patterns make its corners dark)."""
    root = ET.fromstring(svg)  # noqa: S314 (our own server's output, in a test)
    assert root.tag == f"{SVG_NS}svg"
    paths = root.findall(f"{SVG_NS}path")
    assert len(paths) == 1
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for command, args in re.findall(r"([MmHh])([^MmHh]*)", paths[0].attrib["d"]):
        numbers = [float(n) for n in args.replace(",", " ").split()]
        if command == "M":
            x, y = numbers
        elif command == "m":
            x, y = x + numbers[0], y + numbers[1]
        else:
            end = x + numbers[0] if command == "h" else numbers[0]
            dark.update((int(y), col) for col in range(int(x), int(end)))
            x = end
    rows = [r for r, _ in dark]
    cols = [c for _, c in dark]
    top, left = min(rows), min(cols)
    size = max(rows) - top + 1
    assert max(cols) - left + 1 == size
    return [[(top + r, left + c) in dark for c in range(size)] for r in range(size)]


def qr_encodes(modules: list[list[bool]], text: str) -> bool:
    """True when the modules are a standard QR code of exactly `text`: the same symbol as a
    reference encoder makes for it, with whichever error level and mask the server chose."""
    size = len(modules)
    version = (size - 17) // 4
    if version < 1 or 4 * version + 17 != size:
        return False
    for error in "LMQH":
        for mask in range(8):
            try:
                reference = segno.make(text, version=version, error=error, mask=mask,
                                       boost_error=False, micro=False)
            except segno.DataOverflowError:
                break
            if [[bool(v) for v in row] for row in reference.matrix] == modules:
                return True
    return False


# ---- F2: the password window -------------------------------------------------------------------


async def test_setup_needs_reauthentication(admin: Api, new_browser: NewBrowser) -> None:
    _, browser = await logged_in_user(admin, new_browser)
    for path, body in (("/api/me/2fa/setup", {}), ("/api/me/2fa/setup/verify",
                                                   {"code": "123456"})):
        status, answer = await browser.post(path, body)
        assert (status, error_code(answer)) == (403, "reauthentication_required"), path


async def test_reauthenticate_with_wrong_password(admin: Api, new_browser: NewBrowser) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    status, body = await browser.post("/api/me/reauthenticate", {"password": "not-my-password"})
    assert (status, error_code(body)) == (401, "invalid_credentials")
    status, body = await browser.post("/api/me/2fa/setup")
    assert (status, error_code(body)) == (403, "reauthentication_required")
    # the session itself survives a mistyped password
    status, me = await browser.get("/api/me")
    assert status == 200 and me["email"] == user["email"]


async def test_reauthenticate_needs_a_password(admin: Api, new_browser: NewBrowser) -> None:
    _, browser = await logged_in_user(admin, new_browser)
    for body in ({}, {"password": ""}, {"password": 12345678}, "{"):
        status, answer = await browser.post("/api/me/reauthenticate", body)
        assert (status, error_code(answer)) == (400, "validation_error"), body


async def test_reauthenticate_without_a_session(new_browser: NewBrowser) -> None:
    browser = await new_browser()
    status, body = await browser.post("/api/me/reauthenticate", {"password": "whatever-1"})
    assert (status, error_code(body)) == (401, "unauthenticated")


async def test_setup_response(admin: Api, new_browser: NewBrowser, clock: FrozenClock,
                              service: Service) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    opened = clock.now()
    assert (await browser.post("/api/me/reauthenticate", {"password": user["password"]}))[0] \
        == 200
    clock.advance(100)  # the window runs from the password, not from the setup call
    status, setup = await browser.post("/api/me/2fa/setup")
    assert status == 200, setup
    assert set(setup) >= {"setup_key", "otpauth_uri", "qr_svg", "expires_at"}

    key = setup["setup_key"]
    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{4})*", key), key
    secret = key.replace(" ", "")
    assert len(secret) * 5 >= 160  # 160-bit secret

    issuer = service.settings.issuer
    assert issuer == "MFA Service"
    assert setup["otpauth_uri"] == (
        f"otpauth://totp/MFA%20Service:{user['email']}?secret={secret}&issuer=MFA%20Service"
        "&algorithm=SHA1&digits=6&period=30")
    parts = urlsplit(setup["otpauth_uri"])
    assert parse_qs(parts.query)["issuer"] == [issuer]

    assert parse_iso(setup["expires_at"]) == opened + timedelta(seconds=600)

    svg = setup["qr_svg"]
    assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert qr_encodes(svg_modules(svg), setup["otpauth_uri"])

    # the secret is the one the server verifies against
    status, body = await browser.post("/api/me/2fa/setup/verify",
                                      {"code": totp_code(key, clock)})
    assert status == 200, body


async def test_qr_code_check_tells_other_uris_apart() -> None:
    """The QR check above is not vacuous: another URI's symbol does not pass it."""
    uri = "otpauth://totp/MFA%20Service:a@example.com?secret=JBSWY3DPEHPK3PXP&issuer=x"
    buffer = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(buffer, kind="svg", scale=4, xmldecl=False)
    modules = svg_modules(buffer.getvalue().decode())
    assert qr_encodes(modules, uri)
    assert not qr_encodes(modules, uri.replace("a@", "b@"))


async def test_each_setup_gets_a_fresh_secret(admin: Api, new_browser: NewBrowser) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    first = (await browser.post("/api/me/2fa/setup"))[1]["setup_key"]
    second = (await browser.post("/api/me/2fa/setup"))[1]["setup_key"]
    assert first != second


async def test_setup_window_runs_out(admin: Api, new_browser: NewBrowser,
                                     clock: FrozenClock) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    clock.advance(599)
    status, setup = await browser.post("/api/me/2fa/setup")
    assert status == 200, setup
    clock.advance(2)  # 601 s after the password: the verify of a started setup fails
    status, body = await browser.post("/api/me/2fa/setup/verify",
                                      {"code": totp_code(setup["setup_key"], clock)})
    assert (status, error_code(body)) == (410, "setup_window_expired")
    status, body = await browser.post("/api/me/2fa/setup")
    assert (status, error_code(body)) == (410, "setup_window_expired")
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["status"] == "off"

    # re-entering the password opens a new window
    assert (await browser.post("/api/me/reauthenticate", {"password": user["password"]}))[0] \
        == 200
    status, setup = await browser.post("/api/me/2fa/setup")
    assert status == 200
    status, body = await browser.post("/api/me/2fa/setup/verify",
                                      {"code": totp_code(setup["setup_key"], clock)})
    assert status == 200, body


async def test_setup_then_window_closes_before_setup_call(admin: Api, new_browser: NewBrowser,
                                                          clock: FrozenClock) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    clock.advance(601)
    status, body = await browser.post("/api/me/2fa/setup")
    assert (status, error_code(body)) == (410, "setup_window_expired")
    status, body = await browser.post("/api/me/2fa/setup/verify", {"code": "123456"})
    assert (status, error_code(body)) == (410, "setup_window_expired")


async def test_verify_with_a_wrong_code(admin: Api, new_browser: NewBrowser,
                                        clock: FrozenClock) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    _, setup = await browser.post("/api/me/2fa/setup")
    valid = {totp_code(setup["setup_key"], clock, s) for s in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)
    status, body = await browser.post("/api/me/2fa/setup/verify", {"code": wrong})
    assert (status, error_code(body)) == (401, "invalid_code")
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["status"] == "off"
    # the setup is still in progress: the right code completes it
    status, body = await browser.post("/api/me/2fa/setup/verify",
                                      {"code": totp_code(setup["setup_key"], clock)})
    assert status == 200, body


async def test_verify_code_of_wrong_shape(admin: Api, new_browser: NewBrowser,
                                          clock: FrozenClock) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    _, setup = await browser.post("/api/me/2fa/setup")
    for body in ({"code": "12345"}, {"code": "1234567"}, {"code": "12345678"},
                 {"code": "12a456"}, {"code": 123456}, {"code": None}, {}, "[1]", "{"):
        status, answer = await browser.post("/api/me/2fa/setup/verify", body)
        assert (status, error_code(answer)) == (400, "validation_error"), body
        assert answer["error"]["message"]
    status, body = await browser.post("/api/me/2fa/setup/verify",
                                      {"code": totp_code(setup["setup_key"], clock)})
    assert status == 200, body


async def test_verify_turns_2fa_on_with_ten_codes(admin: Api, new_browser: NewBrowser,
                                                  clock: FrozenClock) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["status"] == "off"
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    _, setup = await browser.post("/api/me/2fa/setup")
    status, body = await browser.post("/api/me/2fa/setup/verify",
                                      {"code": totp_code(setup["setup_key"], clock)})
    assert status == 200 and set(body) >= {"recovery_codes"}
    codes = body["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(isinstance(c, str) and re.fullmatch(r"\d{8}", c) for c in codes)
    status, me = await browser.get("/api/me")
    assert me["two_factor"] == {"status": "on", "required": False, "recovery_codes_left": 10,
                                "banner": False}
    status, grid = await admin.get(f"/api/admin/users/{user['user_id']}")
    assert status == 200 and grid["two_factor_status"] == "on"


# ---- F4: recovery codes -------------------------------------------------------------------------


async def test_show_recovery_codes_with_used_ones_marked(admin: Api, new_browser: NewBrowser,
                                                         clock: FrozenClock) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    _, codes = await enable_two_factor(browser, user["password"], clock)
    status, body = await browser.get("/api/me/2fa/recovery-codes")
    assert status == 200
    assert len(body["codes"]) == 10
    assert {c["code"]: c["used"] for c in body["codes"]} == dict.fromkeys(codes, False)

    await logged_in(new_browser, user, codes[3])  # used at login, in another browser
    status, body = await browser.get("/api/me/2fa/recovery-codes")
    assert status == 200
    assert {c["code"]: c["used"] for c in body["codes"]} == {c: c == codes[3] for c in codes}
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["recovery_codes_left"] == 9


async def test_recovery_codes_need_the_window(admin: Api, new_browser: NewBrowser,
                                              clock: FrozenClock) -> None:
    user, _, codes = await user_with_two_factor(admin, new_browser, clock)
    browser = await logged_in(new_browser, user, codes[0])  # a full login opens no window
    for path in ("/api/me/2fa/recovery-codes", "/api/me/2fa/recovery-codes.txt"):
        status, body = await browser.get(path)
        assert (status, error_code(body)) == (403, "reauthentication_required"), path
    status, body = await browser.post("/api/me/2fa/recovery-codes/regenerate")
    assert (status, error_code(body)) == (403, "reauthentication_required")

    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    assert (await browser.get("/api/me/2fa/recovery-codes"))[0] == 200
    clock.advance(599)
    assert (await browser.get("/api/me/2fa/recovery-codes"))[0] == 200
    clock.advance(2)
    for path in ("/api/me/2fa/recovery-codes", "/api/me/2fa/recovery-codes.txt"):
        status, body = await browser.get(path)
        assert (status, error_code(body)) == (403, "reauthentication_required"), path
    status, body = await browser.post("/api/me/2fa/recovery-codes/regenerate")
    assert (status, error_code(body)) == (403, "reauthentication_required")
    # nothing was regenerated: the old codes still work
    await logged_in(new_browser, user, codes[1])


async def test_download_recovery_codes_as_text(admin: Api, new_browser: NewBrowser,
                                               clock: FrozenClock) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    _, codes = await enable_two_factor(browser, user["password"], clock)
    await logged_in(new_browser, user, codes[7])
    async with browser.client.get("/api/me/2fa/recovery-codes.txt") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        disposition = response.headers["Content-Disposition"]
        text = await response.text()
    assert disposition.startswith("attachment")
    assert re.search(r'filename="?[^";]+\.txt"?', disposition)
    lines = text.splitlines()
    for code in codes:
        assert code in text
    used_line = next(line for line in lines if codes[7] in line)
    unused_line = next(line for line in lines if codes[0] in line)
    assert used_line.replace(codes[7], "") != unused_line.replace(codes[0], "")  # marked


async def test_regenerate_invalidates_every_old_code(admin: Api, new_browser: NewBrowser,
                                                     clock: FrozenClock) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    _, old = await enable_two_factor(browser, user["password"], clock)
    await logged_in(new_browser, user, old[0])
    status, body = await browser.post("/api/me/2fa/recovery-codes/regenerate")
    assert status == 200
    new = body["recovery_codes"]
    assert len(new) == 10 and len(set(new)) == 10 and all(re.fullmatch(r"\d{8}", c) for c in new)
    assert set(new) != set(old)

    status, body = await browser.get("/api/me/2fa/recovery-codes")
    assert len(body["codes"]) == 10
    assert {c["code"]: c["used"] for c in body["codes"]} == dict.fromkeys(new, False)
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["recovery_codes_left"] == 10

    other = await new_browser()
    assert await other.login(user["email"], user["password"]) == "second_factor"
    for code in (old[1], old[9]):
        if code in new:
            continue
        status, answer = await other.post("/api/login/second-factor", {"code": code})
        assert (status, error_code(answer)) == (401, "invalid_code"), code
    status, answer = await other.post("/api/login/second-factor", {"code": new[0]})
    assert (status, answer) == (200, {"next": "done"})


async def test_recovery_codes_without_2fa(admin: Api, new_browser: NewBrowser) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    status, body = await browser.get("/api/me/2fa/recovery-codes")
    assert 400 <= status < 500 and error_code(body)
    status, body = await browser.post("/api/me/2fa/recovery-codes/regenerate")
    assert 400 <= status < 500 and error_code(body)


# ---- F9: disable -------------------------------------------------------------------------------


async def test_disable_needs_the_window(admin: Api, new_browser: NewBrowser,
                                        clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await logged_in(new_browser, user, totp_code(key, clock))
    status, body = await browser.post("/api/me/2fa/disable")
    assert (status, error_code(body)) == (403, "reauthentication_required")
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    clock.advance(601)
    status, body = await browser.post("/api/me/2fa/disable")
    assert (status, error_code(body)) == (403, "reauthentication_required")
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["status"] == "on"


async def test_disable_when_not_required(admin: Api, new_browser: NewBrowser,
                                         clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    browser = await logged_in(new_browser, user, totp_code(key, clock))
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    status, _ = await browser.post("/api/me/2fa/disable")
    assert status == 200
    status, me = await browser.get("/api/me")
    assert me["two_factor"] == {"status": "off", "required": False, "recovery_codes_left": 0,
                                "banner": False}
    status, row = await admin.get(f"/api/admin/users/{user['user_id']}")
    assert row["two_factor_status"] == "off"

    again = await new_browser()
    assert await again.login(user["email"], user["password"]) == "done"
    assert (await again.get("/api/me"))[0] == 200


async def test_disable_refused_when_required(admin: Api, new_browser: NewBrowser,
                                             clock: FrozenClock) -> None:
    user, key, _ = await user_with_two_factor(admin, new_browser, clock)
    status, _ = await admin.patch(f"/api/admin/users/{user['user_id']}",
                                  {"two_factor_required": True})
    assert status == 200
    browser = await logged_in(new_browser, user, totp_code(key, clock))
    await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    status, body = await browser.post("/api/me/2fa/disable")
    assert (status, error_code(body)) == (409, "two_factor_required")
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["status"] == "on" and me["two_factor"]["required"] is True
    await browser.post("/api/logout")
    assert await browser.login(user["email"], user["password"]) == "second_factor"


# ---- F6: forced setup ----------------------------------------------------------------------------


async def test_forced_setup_at_login(admin: Api, new_browser: NewBrowser,
                                     clock: FrozenClock) -> None:
    user = await create_user(admin, required=True, role="admin")
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"

    status, me = await browser.get("/api/me")
    assert status == 200
    assert me["two_factor"] == {"status": "off", "required": True, "recovery_codes_left": 0,
                                "banner": True}
    for method, path in [("GET", "/api/admin/users"),
                         ("GET", f"/api/admin/users/{user['user_id']}"),
                         ("GET", "/api/me/2fa/recovery-codes"),
                         ("GET", "/api/me/2fa/recovery-codes.txt"),
                         ("POST", "/api/me/2fa/recovery-codes/regenerate"),
                         ("POST", "/api/me/2fa/disable"),
                         ("GET", "/api/audit/events")]:
        status, body = await browser.call(method, path, {} if method == "POST" else None)
        assert (status, error_code(body)) == (403, "setup_2fa_required"), path

    # no reauthenticate call: the forced setup opened the window at login
    status, setup = await browser.post("/api/me/2fa/setup")
    assert status == 200, setup
    restricted = session_cookie(browser)
    status, body = await browser.post("/api/me/2fa/setup/verify",
                                      {"code": totp_code(setup["setup_key"], clock)})
    assert status == 200 and len(body["recovery_codes"]) == 10

    status, me = await browser.get("/api/me")
    assert me["two_factor"] == {"status": "on", "required": True, "recovery_codes_left": 10,
                                "banner": False}
    status, body = await browser.get("/api/admin/users")
    assert status == 200, body  # the session is done
    assert session_cookie(browser) != restricted
    other = await new_browser()
    assert restricted is not None
    status, body = await with_cookie(other, restricted, "GET", "/api/me")
    assert (status, error_code(body)) == (401, "unauthenticated")  # the token rotated


async def test_forced_setup_window_runs_out(admin: Api, new_browser: NewBrowser,
                                            clock: FrozenClock) -> None:
    user = await create_user(admin, required=True)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"
    clock.advance(601)
    status, body = await browser.post("/api/me/2fa/setup")
    assert (status, error_code(body)) == (410, "setup_window_expired")
    # logging in again opens a new window
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"
    status, setup = await browser.post("/api/me/2fa/setup")
    assert status == 200, setup


async def test_forced_setup_after_admin_requires(admin: Api, new_browser: NewBrowser) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    status, me = await browser.get("/api/me")
    assert me["two_factor"]["banner"] is False
    await admin.patch(f"/api/admin/users/{user['user_id']}", {"two_factor_required": True})
    status, me = await browser.get("/api/me")  # still logged in: the banner, no lock-out
    assert status == 200 and me["two_factor"]["banner"] is True
    await browser.post("/api/logout")
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"


async def test_a_forced_setup_may_reauthenticate(admin: Api, new_browser: NewBrowser) -> None:
    """SPEC section 4: a forced setup that outlived its window is not a dead end."""
    user = await create_user(admin, required=True)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"
    status, body = await browser.post("/api/me/reauthenticate", {"password": user["password"]})
    assert status == 200, body
    status, body = await browser.get("/api/admin/users")
    assert (status, error_code(body)) == (403, "setup_2fa_required")  # still restricted


# ---- GET /api/me -------------------------------------------------------------------------------


async def test_me_fields(admin: Api, org: Org, new_browser: NewBrowser) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    status, me = await browser.get("/api/me")
    assert status == 200
    assert set(me) == {"user_id", "org_id", "email", "name", "role", "two_factor", "session"}
    assert set(me["session"]) == {"id", "state", "expires_at"}
    assert me["session"]["state"] == "done"
    assert set(me["two_factor"]) == {"status", "required", "recovery_codes_left", "banner"}
    assert str(uuid.UUID(me["user_id"])) == me["user_id"] == user["user_id"]
    assert str(uuid.UUID(me["org_id"])) == me["org_id"] == org.org_id
    assert (me["email"], me["name"], me["role"]) == (user["email"], "Test User", "client")
    assert me["two_factor"] == {"status": "off", "required": False, "recovery_codes_left": 0,
                                "banner": False}

    status, me = await admin.get("/api/me")
    assert (me["user_id"], me["role"], me["email"]) == (org.admin_id, "admin", org.admin_email)


async def test_me_follows_admin_changes(admin: Api, new_browser: NewBrowser) -> None:
    user, browser = await logged_in_user(admin, new_browser)
    await admin.patch(f"/api/admin/users/{user['user_id']}", {"name": "Renamed", "role": "admin"})
    status, me = await browser.get("/api/me")
    assert status == 200 and (me["name"], me["role"]) == ("Renamed", "admin")


async def test_me_without_a_session(new_browser: NewBrowser) -> None:
    browser = await new_browser()
    status, body = await browser.get("/api/me")
    assert (status, error_code(body)) == (401, "unauthenticated")
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}

