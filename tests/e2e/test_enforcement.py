"""A required user without 2FA (F6): the forced setup at login, and the notification bar that
appears live when the admin saves Required, cannot be dismissed, leads to Configure 2FA and goes
away when setup completes."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Page, expect

from tests.conftest import Api, FrozenClock, create_user, totp_code
from tests.e2e.conftest import Web


async def _finish_setup(page: Page, clock: FrozenClock) -> None:
    flow = page.locator("#configure")
    await expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    await flow.get_by_role("button", name="Type code manually").click()
    setup_key = await flow.locator("#setup-key").inner_text()
    await flow.get_by_label("6-digit code").fill(totp_code(setup_key, clock))
    await flow.get_by_role("button", name="Verify").click()
    await expect(flow.locator("#setup-codes li")).to_have_count(10)


async def test_required_user_configures_2fa_at_login(web: Web, admin: Api,
                                                     clock: FrozenClock) -> None:
    user = await create_user(admin, required=True)
    page = await web.new_page()
    await web.login(page, user["email"], user["password"])
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    await expect(page.get_by_role("heading", name="Configure 2FA", level=1)).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    # No second password entry: the login opened the 10-minute window.
    await expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    await expect(page.get_by_role("timer")).to_contain_text(re.compile(r"(10:00|9:5\d)"))
    await web.screen(page, "forced-setup")

    await page.goto("/settings/users")  # nothing else before setup
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    await _finish_setup(page, clock)
    await web.screen(page, "forced-setup-codes")
    await page.get_by_label("I've saved my recovery codes in a safe place").check()
    await page.get_by_role("button", name="End configuration").click()

    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(page.locator("#tfa-status")).to_have_text("On")
    await expect(page.get_by_text("Your administrator requires 2FA for your account.")
                 ).to_be_visible()
    await expect(page.get_by_role("button", name="Disable 2FA")).to_have_count(0)  # required


async def test_notification_bar_is_pushed_live(web: Web, admin: Api, org: object,
                                               clock: FrozenClock) -> None:
    user = await create_user(admin)
    page = await web.new_page()
    await web.login(page, user["email"], user["password"])
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    banner = page.locator("#twofa-banner")
    await expect(banner).to_be_hidden()
    await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    # The admin requires 2FA for this user in Settings > Users.
    admin_page = await web.new_page()
    await web.login(admin_page, org.admin_email, org.admin_password)  # type: ignore[attr-defined]
    await admin_page.goto(f"/settings/users/{user['user_id']}")
    await admin_page.get_by_role("radio", name=re.compile("^Required")).check()
    await admin_page.get_by_role("button", name="Save changes").click()
    await admin_page.get_by_role("dialog").get_by_role("button", name="Require 2FA").click()
    await expect(admin_page.locator("#user-required")).to_have_text("Yes")

    # The user's open page shows the bar without a reload.
    await expect(banner).to_be_visible(timeout=2000)
    await expect(banner).to_have_attribute("role", "alert")
    assert await page.evaluate("window.loadedOnce") is True
    await expect(banner.get_by_role("button")).to_have_count(0)  # nothing dismisses it
    await web.screen(page, "notification-bar")
    await page.keyboard.press("Escape")
    await page.reload()
    await expect(banner).to_be_visible()

    # It leads to Configure 2FA, and goes away once setup completes.
    await banner.get_by_role("link", name="Configure 2FA").click()
    await expect(page).to_have_url(re.compile(r"/account/security#configure$"))
    flow = page.locator("#configure")
    await flow.get_by_label("Current password").fill(user["password"])
    await flow.get_by_role("button", name="Continue").click()
    await _finish_setup(page, clock)
    await expect(banner).to_be_hidden()
    await expect(page.get_by_role("status").filter(
        has_text="Two-factor authentication was configured on your account.")).to_be_visible()
    await page.locator("#configure").get_by_label(
        "I've saved my recovery codes in a safe place").check()
    await page.get_by_role("button", name="End configuration").click()
    await expect(page.locator("#tfa-status")).to_have_text("On")
    await expect(banner).to_be_hidden()


async def test_logging_out_in_one_tab_ends_the_other_tabs(web: Web, admin: Api) -> None:
    """Issue 8: logout closes that session's sockets; its other open pages go to the login."""
    user = await create_user(admin)
    first = await web.new_page()
    await web.login(first, user["email"], user["password"])
    second = await first.context.new_page()
    await second.goto("/account/security")
    async with asyncio.timeout(10):
        while web.live.count() < 2:  # noqa: ASYNC110 (the server's socket count)
            await asyncio.sleep(0.05)
    await web.logout(first)
    await expect(second).to_have_url(re.compile(r"/login$"))
