"""My account > Security > Configure 2FA in the browser (F2), the 10-minute window, Disable 2FA."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.conftest import Api, FrozenClock, create_user, totp_code
from tests.e2e.conftest import Web, other_code


async def _password_step(page: Page, password: str) -> str:
    """From the Configure 2FA button to the QR code; returns the setup key shown."""
    flow = page.locator("#configure")
    await flow.get_by_label("Current password").fill(password)
    await flow.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    await page.get_by_role("button", name="Type code manually").click()
    key = page.locator("#setup-key")
    await expect(key).to_have_text(re.compile(r"^([A-Z2-7]{4} ){7}[A-Z2-7]{4}$"))
    return await key.inner_text()


async def _verify(page: Page, code: str) -> None:
    flow = page.locator("#configure")
    await flow.get_by_label("6-digit code").fill(code)
    await flow.get_by_role("button", name="Verify").click()


async def test_configure_2fa_step_by_step(web: Web, admin: Api, clock: FrozenClock) -> None:
    user = await create_user(admin)
    page = await web.new_page()
    await page.goto("/login")
    await page.get_by_label("Email").fill(user["email"])
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("Wrong email or password"))
    await web.login(page, user["email"], user["password"], screen="login")
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    await expect(page.locator("#tfa-status")).to_have_text("Off")
    await expect(page.get_by_role("button", name="Disable 2FA")).to_have_count(0)
    await web.screen(page, "security-off")

    # Current password first; a wrong one is refused with a clear message.
    await page.get_by_role("button", name="Configure 2FA").click()
    flow = page.locator("#configure")
    await expect(flow.get_by_label("Current password")).to_be_focused()
    await web.screen(page, "configure-password")
    await flow.get_by_label("Current password").fill("wrong-password")
    await flow.get_by_role("button", name="Continue").click()
    await expect(flow.get_by_role("alert")).to_have_text("Wrong password. Try again.")

    setup_key = await _password_step(page, user["password"])
    await expect(page.get_by_role("timer")).to_contain_text(re.compile(r"(10:00|9:5\d)"))
    await web.screen(page, "configure-scan")

    await _verify(page, other_code(setup_key, clock))
    await expect(flow.get_by_role("alert")).to_contain_text("That code didn't work")
    await _verify(page, totp_code(setup_key, clock))

    # Recovery codes: 10 of 8 digits, Copy, Download, and the checkbox enabling End configuration.
    codes = flow.locator("#setup-codes li")
    await expect(codes).to_have_count(10)
    shown = [c.replace(" ", "") for c in await codes.locator(".code-value").all_inner_texts()]
    assert all(re.fullmatch(r"\d{8}", code) for code in shown)
    end = flow.get_by_role("button", name="End configuration")
    await expect(end).to_be_disabled()
    await flow.get_by_role("button", name="Copy").click()
    await expect(page.get_by_role("status").filter(has_text="copied")).to_be_visible()
    clipboard = await page.evaluate("navigator.clipboard.readText()")
    assert all(code in clipboard for code in shown)
    async with page.expect_download() as download_info:
        await flow.get_by_role("button", name="Download").click()
    download = await download_info.value
    assert download.suggested_filename == "recovery-codes.txt"
    text = open(await download.path()).read()  # noqa: ASYNC230 - a small local file
    assert all(code in text for code in shown)
    await web.screen(page, "configure-recovery-codes")
    await flow.get_by_label("I've saved my recovery codes in a safe place").check()
    await expect(end).to_be_enabled()
    await end.click()

    await expect(page).to_have_url(re.compile(r"/account/security$"))
    await expect(page.locator("#tfa-status")).to_have_text("On")
    await expect(page.locator("#codes-left")).to_have_text("10 of 10")
    await web.screen(page, "security-on")

    # Not required: Disable 2FA is offered, and needs the password.
    await page.get_by_role("button", name="Disable 2FA").click()
    form = page.locator("#disable-form")
    await form.get_by_label("Current password").fill("wrong-password")
    await form.get_by_role("button", name="Disable 2FA").click()
    await expect(form.get_by_role("alert")).to_have_text("Wrong password. Try again.")
    await web.screen(page, "disable-2fa")
    await form.get_by_label("Current password").fill(user["password"])
    await form.get_by_role("button", name="Disable 2FA").click()
    await expect(page.locator("#tfa-status")).to_have_text("Off")
    await expect(page.get_by_role("button", name="Configure 2FA")).to_be_visible()


async def test_the_10_minute_window_is_enforced(web: Web, admin: Api, clock: FrozenClock) -> None:
    user = await create_user(admin)
    page = await web.new_page()
    await web.login(page, user["email"], user["password"])
    await page.goto("/account/security#configure")  # where the notification bar's link leads
    first_key = await _password_step(page, user["password"])

    clock.advance(10 * 60 + 1)
    await _verify(page, totp_code(first_key, clock))
    flow = page.locator("#configure")
    await expect(flow.get_by_role("alert")).to_have_text(
        "Your 10 minutes to complete the setup ran out. Enter your password again to continue.")
    await expect(flow.get_by_label("Current password")).to_be_visible()
    await web.screen(page, "configure-window-expired")

    second_key = await _password_step(page, user["password"])
    assert second_key != first_key
    await _verify(page, totp_code(second_key, clock))
    await flow.get_by_label("I've saved my recovery codes in a safe place").check()
    await flow.get_by_role("button", name="End configuration").click()
    await expect(page.locator("#tfa-status")).to_have_text("On")
