"""My account > Security > Show recovery codes (F4): used codes marked, Download, Copy,
Regenerate codes behind a confirmation prompt."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from playwright.async_api import expect

from tests.conftest import Api, FrozenClock, create_user, enable_two_factor
from tests.e2e.conftest import Web


async def test_show_download_copy_and_regenerate(
        web: Web, admin: Api, new_browser: Callable[[], Awaitable[Api]],
        clock: FrozenClock) -> None:
    user = await create_user(admin)
    phone = await new_browser()
    await phone.login(user["email"], user["password"])
    _, codes = await enable_two_factor(phone, user["password"], clock)

    page = await web.new_page()
    await web.login(page, user["email"], user["password"])
    await page.get_by_role("button", name="Use a recovery code instead").click()
    await page.get_by_label("8-digit recovery code").fill(codes[0])
    await page.get_by_role("button", name="Verify").click()
    await expect(page).to_have_url(re.compile(r"/account/security$"))

    # Viewing needs the password again (the same 10-minute window as setup).
    await page.get_by_role("link", name="Show recovery codes").click()
    await expect(page).to_have_url(re.compile(r"/account/recovery-codes$"))
    await web.screen(page, "recovery-codes-password")
    await page.get_by_label("Current password").fill(user["password"])
    await page.get_by_role("button", name="Show recovery codes").click()
    items = page.locator("#current-codes li")
    await expect(items).to_have_count(10)
    used = page.locator("#current-codes li.used")
    await expect(used).to_have_count(1)
    await expect(used).to_contain_text("Used")
    assert (await used.get_attribute("data-code")) == codes[0]
    await expect(page.locator("#codes-summary")).to_have_text("9 of 10 left")
    await web.screen(page, "recovery-codes")

    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download").click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".txt")
    text = open(await download.path()).read()  # noqa: ASYNC230 - a small local file
    assert f"{codes[0]}  (used)" in text and all(code in text for code in codes)

    await page.get_by_role("button", name="Copy").click()
    clipboard = await page.evaluate("navigator.clipboard.readText()")
    assert all(code in clipboard for code in codes)

    # Regenerate codes asks first; Cancel changes nothing.
    await page.get_by_role("button", name="Regenerate codes").click()
    dialog = page.get_by_role("dialog", name="Regenerate recovery codes?")
    await expect(dialog).to_be_visible()
    await web.screen(page, "recovery-codes-regenerate-prompt")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(used).to_have_count(1)

    await page.get_by_role("button", name="Regenerate codes").click()
    await dialog.get_by_role("button", name="Regenerate codes").click()
    await expect(used).to_have_count(0)
    await expect(page.locator("#codes-summary")).to_have_text("10 of 10 left")
    fresh = await items.evaluate_all("items => items.map(item => item.dataset.code)")
    assert len(fresh) == 10 and not set(fresh) & set(codes)

    # Every old code stopped working at once.
    other = await new_browser()
    assert await other.login(user["email"], user["password"]) == "second_factor"
    status, _ = await other.post("/api/login/second-factor", {"code": codes[1]})
    assert status == 401
