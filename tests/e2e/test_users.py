"""Settings > Users (F5, F7, F8): the grid with 2FA Status and 2FA Required, filters, search and
pages; creating and editing a user with Two-factor authentication: Not required / Required,
confirmed before saving Required; the profile's 2-factor authentication section and Reset."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from playwright.async_api import Page, expect

from tests.conftest import Api, FrozenClock, Org, create_user, enable_two_factor, totp_code
from tests.e2e.conftest import Web


async def _admin_page(web: Web, org: Org) -> Page:
    page = await web.new_page()
    await web.login(page, org.admin_email, org.admin_password)
    await expect(page).to_have_url(re.compile(r"/settings/users$"))
    return page


async def _names(page: Page) -> list[str]:
    return await page.locator("table tbody th[scope=row] a").all_inner_texts()


async def test_users_grid_filters_search_and_pages(
        web: Web, org: Org, admin: Api, new_browser: Callable[[], Awaitable[Api]],
        clock: FrozenClock) -> None:
    for number in range(1, 24):
        status, body = await admin.post("/api/admin/users", {
            "email": f"member{number:02}@example.com", "name": f"Member {number:02}",
            "role": "client", "password": "user-password-1",
            "two_factor_required": number % 5 == 0})
        assert status == 201, body
        if number in (3, 7):
            phone = await new_browser()
            await phone.login(body["email"], "user-password-1")
            await enable_two_factor(phone, "user-password-1", clock)

    page = await _admin_page(web, org)
    headers = await page.locator("table thead th[scope=col]").all_inner_texts()
    assert headers == ["", "Name", "Email", "Role", "2FA Status", "2FA Required"]
    await expect(page.locator("table tbody tr")).to_have_count(20)
    row = page.locator("tr", has=page.get_by_role("link", name="Member 03"))
    await expect(row.locator("td").nth(3)).to_have_text("On")
    await expect(row.locator("td").nth(4)).to_have_text("No")
    row = page.locator("tr", has=page.get_by_role("link", name="Member 05"))
    await expect(row.locator("td").nth(3)).to_have_text("Off")
    await expect(row.locator("td").nth(4)).to_have_text("Yes")
    await expect(page.locator(".stats")).to_contain_text("24")
    await web.screen(page, "users-grid")

    # Stable pages: Next shows the rest, Previous the same first page again.
    first_page = await _names(page)
    await page.get_by_role("link", name="Next").click()
    await expect(page.get_by_text("Page 2")).to_be_visible()
    second_page = await _names(page)
    assert len(second_page) == 4 and not set(first_page) & set(second_page)
    await page.get_by_role("link", name="Previous").click()
    await expect(page.get_by_text("Page 1")).to_be_visible()
    assert await _names(page) == first_page

    # Filters by 2FA Status and 2FA Required, search by email or name.
    await page.get_by_label("2FA Status").select_option(label="On")
    await page.get_by_role("button", name="Apply").click()
    assert await _names(page) == ["Member 03", "Member 07"]
    await page.get_by_label("2FA Status").select_option(label="All")
    await page.get_by_label("2FA Required").select_option(label="Yes")
    await page.get_by_role("button", name="Apply").click()
    assert await _names(page) == ["Member 05", "Member 10", "Member 15", "Member 20"]
    await web.screen(page, "users-grid-filtered")
    await page.get_by_role("link", name="Clear").click()
    await page.get_by_label("Search").fill("member17@")
    await page.get_by_role("button", name="Apply").click()
    assert await _names(page) == ["Member 17"]
    await page.get_by_label("Search").fill("member 2")
    await page.get_by_role("button", name="Apply").click()
    assert await _names(page) == ["Member 20", "Member 21", "Member 22", "Member 23"]
    await page.get_by_label("Search").fill("nobody")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.get_by_text("No users match these filters.")).to_be_visible()


async def test_page_links_stay_short_however_deep_one_pages(web: Web, org: Org,
                                                            admin: Api) -> None:
    for number in range(40):  # emails of one length: so are the cursors
        status, body = await admin.post("/api/admin/users", {
            "email": f"deep{number:03}@example.com", "name": f"Deep {number:03}",
            "role": "client", "password": "user-password-1", "two_factor_required": False})
        assert status == 201, body
    page = await _admin_page(web, org)
    await page.goto("/settings/users?q=deep&limit=1")
    next_link, previous_link = (page.get_by_role("link", name="Next"),
                                page.get_by_role("link", name="Previous"))
    seen = await _names(page)
    lengths = set()
    for number in range(2, 41):  # one user a page, to the last page
        href = await next_link.get_attribute("href")
        assert href is not None and "trail" not in href
        lengths.add(len(href) - len(str(number)))  # only the page number's digits may grow
        await next_link.click()
        await expect(page.get_by_text(f"Page {number}", exact=True)).to_be_visible()
        seen += await _names(page)
        href = await previous_link.get_attribute("href")
        assert href is not None
        lengths.add(len(href) - len(str(number - 1)))
    assert seen == [f"Deep {number:03}" for number in range(40)]
    assert len(lengths) == 1 and max(lengths) < 160, lengths  # one cursor, never a trail
    await expect(page.locator(".pagination .is-disabled")).to_have_text("Next")

    # Previous walks back through the same pages, down to the first.
    for number in range(39, 0, -1):
        await previous_link.click()
        await expect(page.get_by_text(f"Page {number}", exact=True)).to_be_visible()
        assert await _names(page) == [f"Deep {number - 1:03}"]
    await expect(page.locator(".pagination .is-disabled")).to_have_text("Previous")
    assert len(page.url) < 160 + len("http://127.0.0.1:65535")


async def test_create_and_edit_a_user_with_required_2fa(web: Web, org: Org,
                                                         admin: Api) -> None:
    page = await _admin_page(web, org)
    await page.get_by_role("link", name="Add user").click()
    await expect(page).to_have_url(re.compile(r"/settings/users/new$"))
    await page.get_by_label("Name").fill("Grace Hopper")
    await page.get_by_label("Email").fill("grace@example.com")
    await page.get_by_label("Password").fill("grace-password-1")
    await page.get_by_label("Role").select_option(label="Client")
    group = page.get_by_role("group", name="Two-factor authentication")
    await expect(group.get_by_role("radio", name=re.compile("^Not required"))).to_be_checked()
    await group.get_by_role("radio", name=re.compile("^Required")).check()
    await web.screen(page, "user-new")

    # Saving Required asks first; Cancel saves nothing.
    await page.get_by_role("button", name="Create user").click()
    dialog = page.get_by_role("dialog", name="Require two-factor authentication?")
    await expect(dialog).to_be_visible()
    await web.screen(page, "user-new-confirm-required")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(page).to_have_url(re.compile(r"/settings/users/new$"))
    status, body = await admin.get("/api/admin/users?q=grace")
    assert status == 200 and body["users"] == []

    await page.get_by_role("button", name="Create user").click()
    await dialog.get_by_role("button", name="Require 2FA").click()
    await expect(page).to_have_url(re.compile(r"/settings/users/[0-9a-f-]{36}$"))
    await expect(page.get_by_role("heading", name="Grace Hopper", level=1)).to_be_visible()
    await expect(page.locator("#user-required")).to_have_text("Yes")
    await expect(page.locator("#user-status")).to_have_text("Off")
    await expect(group.get_by_role("radio", name=re.compile("^Required"))).to_be_checked()
    await web.screen(page, "user-profile-new")

    # Editing: Not required saves without a prompt; Required again asks again.
    await page.get_by_label("Name").fill("Grace B. Hopper")
    await group.get_by_role("radio", name=re.compile("^Not required")).check()
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.locator("#user-required")).to_have_text("No")
    await expect(page.get_by_role("heading", name="Grace B. Hopper", level=1)).to_be_visible()
    await group.get_by_role("radio", name=re.compile("^Required")).check()
    await page.get_by_role("button", name="Save changes").click()
    await dialog.get_by_role("button", name="Require 2FA").click()
    await expect(page.locator("#user-required")).to_have_text("Yes")

    # A second user with the same email is refused with a clear message.
    await page.goto("/settings/users/new")
    await page.get_by_label("Name").fill("Someone Else")
    await page.get_by_label("Email").fill("grace@example.com")
    await page.get_by_label("Password").fill("another-password")
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "Another account already uses this email.")

    await page.goto("/settings/users?q=grace")
    row = page.locator("tr", has=page.get_by_role("link", name="Grace B. Hopper"))
    await expect(row.locator("td").nth(4)).to_have_text("Yes")


async def test_reset_from_the_profile(web: Web, org: Org, admin: Api,
                                      clock: FrozenClock) -> None:
    user = await create_user(admin, required=True)
    user_page = await web.new_page()
    await web.login(user_page, user["email"], user["password"])
    flow = user_page.locator("#configure")
    await flow.get_by_role("button", name="Type code manually").click()
    setup_key = await flow.locator("#setup-key").inner_text()
    await flow.get_by_label("6-digit code").fill(totp_code(setup_key, clock))
    await flow.get_by_role("button", name="Verify").click()
    await flow.get_by_label("I've saved my recovery codes in a safe place").check()
    await flow.get_by_role("button", name="End configuration").click()
    await expect(user_page.locator("#tfa-status")).to_have_text("On")

    page = await _admin_page(web, org)
    await page.get_by_role("link", name="Test User").click()
    section = page.get_by_role("region", name="2-factor authentication")
    await expect(section.locator("#user-status")).to_have_text("On")
    await web.screen(page, "user-profile")

    await section.get_by_role("button", name="Reset").click()
    dialog = page.get_by_role("dialog", name=re.compile("^Reset 2FA for Test User"))
    await expect(dialog).to_be_visible()
    await web.screen(page, "user-reset-prompt")
    await dialog.get_by_role("button", name="Reset").click()
    await expect(section.locator("#user-status")).to_have_text("Off")
    await expect(section.locator("#user-required")).to_have_text("Yes")  # unchanged
    await expect(section.get_by_role("button", name="Reset")).to_be_disabled()

    # The user is not logged out: their open page now shows the notification bar.
    await expect(user_page.locator("#twofa-banner")).to_be_visible()
    await user_page.reload()
    await expect(user_page).to_have_url(re.compile(r"/account/security$"))
    await expect(user_page.locator("#tfa-status")).to_have_text("Off")


async def test_security_policy_and_bulk_requirement(web: Web, admin: Api,
                                                    new_browser: Callable[[], Awaitable[Api]],
                                                    org: Org) -> None:
    """Issue 11: Require 2FA for all users (confirmed with how many it affects), the grid's
    (policy) mark, its end, then the grid's bulk action on selected users."""
    for _ in range(3):
        await create_user(admin)
    page = await web.new_page()
    await web.login(page, org.admin_email, org.admin_password)
    await page.get_by_role("navigation", name="Settings").get_by_role(
        "link", name="Security policy").click()
    await expect(page.get_by_role("heading", name="Security policy")).to_be_visible()
    await page.get_by_label("Require 2FA for all users").check()
    await page.get_by_role("button", name="Save").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("all 4 users: 4 users not required now")
    await web.screen(page, "policy-confirm")
    await dialog.get_by_role("button", name="Require 2FA for all users").click()
    await expect(page.get_by_role("status")).to_contain_text("4 users of 4 now required")

    await page.get_by_role("navigation", name="Settings").get_by_role("link", name="Users").click()
    rows = page.locator("table.grid tbody tr")
    await expect(rows.filter(has_text="(policy)")).to_have_count(4)
    await expect(page.get_by_text("Your organization requires 2FA for all users")).to_be_visible()
    await web.screen(page, "users-policy")

    await page.goto("/settings/security-policy")
    await page.get_by_label("Require 2FA for all users").uncheck()
    await page.get_by_role("button", name="Save").click()
    await page.get_by_role("dialog").get_by_role("button", name="Stop requiring").click()
    await expect(page.get_by_role("status")).to_contain_text("0 users of 4 now required")

    # The grid: select two users, Set Required, confirmed.
    await page.goto("/settings/users")
    boxes = page.locator(".select-user")
    await boxes.nth(0).check()
    await boxes.nth(1).check()
    await expect(page.locator("#bulk-count")).to_have_text("2 users selected")
    await web.screen(page, "users-selected")
    await page.get_by_role("button", name="Set Required").click()
    await page.get_by_role("dialog").get_by_role("button", name="Require 2FA").click()
    await expect(page.get_by_role("status")).to_contain_text("2 users updated")
    await expect(rows.filter(has=page.locator(".pill-required"))).to_have_count(2)
