"""Security keys and passkeys in Debian's Chromium with its virtual authenticator (Chrome
DevTools Protocol `WebAuthn.addVirtualAuthenticator`): add a key under My account > Security,
log in with it, log in with a code instead, see a copied key refused, rename and remove it.

WebAuthn needs a domain as relying party id, never an IP address: these pages are opened at
http://localhost (a secure context), which the service takes as its origin."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import CDPSession, Page, expect

from tests.conftest import Api, FrozenClock, create_user, enable_two_factor, totp_code
from tests.e2e.conftest import Web
from tests.integration.flows import NewBrowser


async def virtual_authenticator(page: Page) -> tuple[CDPSession, str]:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "usb", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
    return cdp, str(added["authenticatorId"])


async def credentials(cdp: CDPSession, authenticator: str) -> list[dict[str, Any]]:
    found = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    return list(found["credentials"])


async def login_to_second_step(page: Page, email: str, password: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(re.compile(r"/login/code$"))


async def add_key_on_the_page(web: Web, page: Page, password: str,
                              name: str = "Virtual key") -> list[str]:
    """Adds a key as the first factor; returns the recovery codes the page showed."""
    await page.goto("/account/security")
    keys = page.locator("#passkeys")
    await keys.get_by_role("button", name="Add a security key or passkey").click()
    form = keys.locator("#passkey-form")
    await form.get_by_label("Name").fill(name)
    await form.get_by_label("Current password").fill(password)
    await web.screen(page, "passkey-add")
    await form.get_by_role("button", name="Add key").click()
    shown = page.locator("#passkey-codes li")
    await expect(shown).to_have_count(10)
    codes = [str(await item.get_attribute("data-code")) for item in await shown.all()]
    await page.locator("#passkey-codes").get_by_label(
        "I've saved my recovery codes in a safe place").check()
    await page.locator("#passkey-finish").click()
    await expect(page.locator("#tfa-status")).to_have_text("On")
    return codes


async def test_add_a_key_log_in_with_it_then_with_a_code_and_remove_it(
        web: Web, admin: Api, new_browser: NewBrowser, clock: FrozenClock) -> None:
    user = await create_user(admin)
    page = await web.new_page(host="localhost")
    cdp, authenticator = await virtual_authenticator(page)
    await web.login(page, user["email"], user["password"])
    codes = await add_key_on_the_page(web, page, user["password"])
    keys = page.locator("#passkeys")
    await expect(keys.locator(".key-name")).to_have_text(["Virtual key"])
    await web.screen(page, "passkey-list")
    assert len(await credentials(cdp, authenticator)) == 1

    # Log in again with the key.
    await web.logout(page)
    await login_to_second_step(page, user["email"], user["password"])
    await web.screen(page, "passkey-login")
    await page.get_by_role("button", name="Use a security key or passkey").click()
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    await expect(keys.locator(".key")).to_contain_text("Last used")

    # An authenticator app beside the key (through the API, with a recovery code)...
    phone = await new_browser()
    assert await phone.login(user["email"], user["password"]) == "second_factor"
    answer = await phone.post("/api/login/second-factor", {"code": codes[0]})
    assert answer[0] == 200, (codes, answer)
    setup_key, _ = await enable_two_factor(phone, user["password"], clock)
    clock.advance(30)
    # ...and its code works instead of the key.
    await web.logout(page)
    await login_to_second_step(page, user["email"], user["password"])
    await expect(page.get_by_role("button", name="Use a security key or passkey")).to_be_visible()
    await page.get_by_label("6-digit code").fill(totp_code(setup_key, clock))
    await page.get_by_role("button", name="Verify").click()
    await expect(page).to_have_url(re.compile(r"/account/security$"))

    # Rename, then remove (the app remains: 2FA stays On).
    page.once("dialog", lambda dialog: dialog.accept("Desk key"))
    await keys.get_by_role("button", name="Rename").click()
    await expect(keys.locator(".key-name")).to_have_text(["Desk key"])
    await keys.get_by_role("button", name="Remove").click()
    await page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    removal = keys.locator("#passkey-remove-password")
    await removal.get_by_label("Current password").fill(user["password"])
    await removal.get_by_role("button", name="Remove key").click()
    await expect(page.locator("#no-passkeys")).to_be_visible()
    await expect(page.locator("#tfa-status")).to_have_text("On")


async def test_a_copied_key_is_refused(web: Web, admin: Api) -> None:
    user = await create_user(admin)
    page = await web.new_page(host="localhost")
    cdp, authenticator = await virtual_authenticator(page)
    await web.login(page, user["email"], user["password"])
    await add_key_on_the_page(web, page, user["password"])
    await web.logout(page)

    await login_to_second_step(page, user["email"], user["password"])
    await page.get_by_role("button", name="Use a security key or passkey").click()
    await expect(page).to_have_url(re.compile(r"/account/security$"))
    (credential,) = await credentials(cdp, authenticator)
    assert credential["signCount"] >= 1
    await web.logout(page)

    # A copy of the key: same private key, its counter back where it started.
    await cdp.send("WebAuthn.clearCredentials", {"authenticatorId": authenticator})
    await cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator, "credential": {
        **{k: credential[k] for k in ("credentialId", "isResidentCredential", "rpId",
                                      "privateKey", "userHandle")},
        "signCount": 0}})
    await login_to_second_step(page, user["email"], user["password"])
    await page.get_by_role("button", name="Use a security key or passkey").click()
    await expect(page.get_by_role("alert")).to_contain_text("a copy of it may exist")
    await web.screen(page, "passkey-copy-refused")
    await expect(page).to_have_url(re.compile(r"/login/code$"))
