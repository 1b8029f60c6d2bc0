"""The login page and its second step (F3): a 6-digit code or an 8-digit recovery code, clear
messages for wrong codes and lockouts, and the forced regeneration after the last recovery code."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from playwright.async_api import Page, expect

from tests.conftest import Api, FrozenClock, create_user, enable_two_factor, totp_code
from tests.e2e.conftest import Web, other_code


async def _second_step(page: Page) -> None:
    await expect(page).to_have_url(re.compile(r"/login/code$"))
    await expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()


async def _use_recovery_code(page: Page, code: str) -> None:
    await page.get_by_role("button", name="Use a recovery code instead").click()
    await page.get_by_label("8-digit recovery code").fill(code)
    await page.get_by_role("button", name="Verify").click()


async def test_second_step_with_a_code_or_a_recovery_code(
        web: Web, admin: Api, new_browser: Callable[[], Awaitable[Api]],
        clock: FrozenClock) -> None:
    user = await create_user(admin)
    phone = await new_browser()
    await phone.login(user["email"], user["password"])
    setup_key, codes = await enable_two_factor(phone, user["password"], clock)
    clock.advance(30)  # the setup's code was used: the app shows the next one

    page = await web.new_page()
    await web.login(page, user["email"], user["password"])
    await _second_step(page)
    await web.screen(page, "login-code")
    await page.get_by_label("6-digit code").fill(other_code(setup_key, clock))
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("alert")).to_contain_text("That code didn't work")
    await web.screen(page, "login-code-wrong")
    await page.get_by_label("6-digit code").fill(totp_code(setup_key, clock))
    await page.get_by_role("button", name="Verify").click()
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    await expect(page.locator("#tfa-status")).to_have_text("On")

    # No access to the app: one of the 8-digit recovery codes, once.
    await web.logout(page)
    await web.login(page, user["email"], user["password"])
    await _second_step(page)
    await page.get_by_role("button", name="Use a recovery code instead").click()
    await page.get_by_label("8-digit recovery code").fill(codes[0])
    await web.screen(page, "login-recovery-code")
    await page.get_by_role("button", name="Verify").click()
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    await expect(page.locator("#codes-left")).to_have_text("9 of 10")

    await web.logout(page)
    await web.login(page, user["email"], user["password"])
    await _use_recovery_code(page, codes[0])
    await expect(page.get_by_role("alert")).to_have_text(
        "That recovery code didn't work. It may be mistyped or already used.")

    # Lockout after repeated failures: a clear message saying how long to wait.
    alert = page.get_by_role("alert")
    for _ in range(6):
        await page.get_by_label("8-digit recovery code").fill("00000000")
        await page.get_by_role("button", name="Verify").click()
        await expect(alert).to_have_text(re.compile("didn't work|Too many"))
        if "Too many" in await alert.inner_text():
            break
    await expect(alert).to_have_text(
        "Too many failed attempts. For your security, wait 30 seconds before trying again.")
    await web.screen(page, "login-lockout")


async def test_last_recovery_code_forces_a_new_set(
        web: Web, admin: Api, new_browser: Callable[[], Awaitable[Api]],
        clock: FrozenClock) -> None:
    user = await create_user(admin)
    phone = await new_browser()
    await phone.login(user["email"], user["password"])
    _, codes = await enable_two_factor(phone, user["password"], clock)
    for code in codes[:9]:
        other = await new_browser()
        assert await other.login(user["email"], user["password"]) == "second_factor"
        status, body = await other.post("/api/login/second-factor", {"code": code})
        assert status == 200, body

    page = await web.new_page()
    await web.login(page, user["email"], user["password"])
    await _use_recovery_code(page, codes[9])
    await expect(page).to_have_url(re.compile(r"/account/recovery-codes$"))
    await expect(page.get_by_role("heading", name="Regenerate recovery codes")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    await web.screen(page, "forced-regenerate")

    await page.goto("/account/security")  # nothing else until the new set exists
    await expect(page).to_have_url(re.compile(r"/account/recovery-codes$"))
    await page.get_by_role("button", name="Regenerate codes").click()
    new_codes = page.locator("#forced-codes li")
    await expect(new_codes).to_have_count(10)
    shown = [c.replace(" ", "") for c in await new_codes.locator(".code-value").all_inner_texts()]
    assert not set(shown) & set(codes)
    finish = page.get_by_role("button", name="Continue")
    await expect(finish).to_be_disabled()
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download").click()
    assert (await download_info.value).suggested_filename == "recovery-codes.txt"
    await web.screen(page, "forced-regenerate-codes")
    await page.get_by_label("I've saved my recovery codes in a safe place").check()
    await finish.click()
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    await expect(page.locator("#codes-left")).to_have_text("10 of 10")


async def test_a_forced_regeneration_whose_window_ran_out_asks_for_the_password(
        web: Web, admin: Api, new_browser: Callable[[], Awaitable[Api]],
        clock: FrozenClock) -> None:
    """Issue 8: once the login's 10-minute window is gone, the forced step is no dead end."""
    user = await create_user(admin)
    phone = await new_browser()
    await phone.login(user["email"], user["password"])
    _, codes = await enable_two_factor(phone, user["password"], clock)
    for code in codes[:9]:
        other = await new_browser()
        assert await other.login(user["email"], user["password"]) == "second_factor"
        assert (await other.post("/api/login/second-factor", {"code": code}))[0] == 200

    page = await web.new_page()
    await web.login(page, user["email"], user["password"])
    await _use_recovery_code(page, codes[9])
    await expect(page.get_by_role("heading", name="Regenerate recovery codes")).to_be_visible()
    clock.advance(601)
    await page.get_by_role("button", name="Regenerate codes").click()
    await page.get_by_label("Current password").fill(user["password"])
    await web.screen(page, "forced-regenerate-password")
    await page.get_by_role("button", name="Regenerate codes").click()
    await expect(page.locator("#forced-codes li")).to_have_count(10)
