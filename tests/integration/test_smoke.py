"""The first path through a real server, on both stores: configure 2FA, log in with it."""

from __future__ import annotations

from tests.conftest import Api, FrozenClock, create_user, enable_two_factor, totp_code


async def test_configure_then_login_with_totp(admin: Api, new_browser, clock: FrozenClock) -> None:
    user = await create_user(admin)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "done"
    key, codes = await enable_two_factor(browser, user["password"], clock)
    assert len(codes) == 10
    status, me = await browser.get("/api/me")
    assert me["two_factor"] == {"status": "on", "required": False, "recovery_codes_left": 10,
                                "banner": False}
    await browser.post("/api/logout")
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    clock.advance(30)
    status, body = await browser.post("/api/login/second-factor", {"code": totp_code(key, clock)})
    assert (status, body) == (200, {"next": "done"})


async def test_grid_counts_on_off_required(admin: Api, new_browser, clock: FrozenClock) -> None:
    user = await create_user(admin, required=True)
    await create_user(admin)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    await enable_two_factor(browser, user["password"], clock)
    status, body = await admin.get("/api/admin/users?status=on")
    assert status == 200 and [u["email"] for u in body["users"]] == [user["email"]]
    assert body["counts"] == {"total": 3, "on": 1, "off": 2, "required": 1}
