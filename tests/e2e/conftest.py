"""Browser tests: the real server (create_app on SQLite, the frozen clock) driven through Debian's
Chromium with Playwright.

Each test gets its own Chromium; every page it opens is screenshotted to test-artifacts/ when the
test fails, and `web.screen(page, name)` keeps one screenshot per screen in test-artifacts/screens/
(after checking the screen's accessibility basics). Without Chromium the tests skip loudly, except
under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright, expect

from services.mfa.domain.clock import FrozenClock
from services.mfa.http.app import LIVE
from services.notifier.live_sessions import LiveSessions
from tests.conftest import totp_code

CHROMIUM = os.environ.get("MFA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENS = ARTIFACTS / "screens"
TIMEOUT_MS = 5000

expect.set_options(timeout=TIMEOUT_MS)

# Runs in the page: what every screen must get right by construction.
_ACCESSIBILITY_CHECK = """() => {
  const problems = [];
  const fields = document.querySelectorAll(
    "input:not([type=hidden]):not(.offscreen), select, textarea");
  for (const el of fields) {
    const named = (el.labels && el.labels.length) || el.getAttribute("aria-label")
      || el.getAttribute("aria-labelledby");
    if (!named) problems.push("field without a label: " + el.outerHTML.slice(0, 100));
  }
  for (const el of document.querySelectorAll("button, a")) {
    if (!el.textContent.trim() && !el.getAttribute("aria-label"))
      problems.push("unnamed control: " + el.outerHTML.slice(0, 100));
  }
  for (const el of document.querySelectorAll("a:not([href])"))
    problems.push("link without href: " + el.outerHTML.slice(0, 100));
  for (const el of document.querySelectorAll(
      "[onclick], [style]:not([style='']), div[role=button], span[role=button]"))
    problems.push("fake control or inline style: " + el.outerHTML.slice(0, 100));
  for (const table of document.querySelectorAll("table"))
    if (!table.querySelector("thead th[scope=col]")) problems.push("table without header cells");
  if (!document.querySelector("h1")) problems.push("no h1");
  if (!document.documentElement.lang) problems.push("no lang");
  return problems;
}"""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Browser tests run on SQLite only: the store is covered elsewhere, the pages here."""
    return f"sqlite:///{tmp_path / 'mfa.db'}"


@pytest.fixture(scope="session")
def chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    message = f"Chromium not found at {CHROMIUM} (make browser installs Debian's chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run the browser tests", pytrace=False)
    pytest.skip(f"!!! SKIPPING BROWSER TESTS: {message}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, Any, Any]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass
class Web:
    """One Chromium, any number of separate users (each page its own context, its own cookies)."""

    browser: Browser
    base_url: str
    clock: FrozenClock
    live: LiveSessions
    pages: list[Page] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def new_page(self, *, host: str | None = None) -> Page:
        """`host`: another name of the server (WebAuthn takes `localhost`, never an IP)."""
        base_url = self.base_url if host is None else re.sub(
            r"//[^:/]+", f"//{host}", self.base_url, count=1)
        context = await self.browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 860},
            permissions=["clipboard-read", "clipboard-write"], accept_downloads=True,
            reduced_motion="reduce")
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", lambda message: self.problems.append(
            f"console: {message.text}") if "Content Security Policy" in message.text else None)
        self.pages.append(page)
        return page

    async def close(self) -> None:
        # Closing a context only starts closing its pages' WebSockets; a browser that goes away
        # before they are closed leaves the server waiting on them until its heartbeat gives up.
        for page in self.pages:
            await page.context.close()
        for _ in range(50):
            if self.live.count() == 0:
                break
            await asyncio.sleep(0.05)
        await self.browser.close()

    async def screen(self, page: Page, name: str) -> None:
        """Checks the screen's accessibility basics, then keeps a screenshot of it."""
        problems = await page.evaluate(_ACCESSIBILITY_CHECK)
        assert problems == [], f"{name}: {problems}"
        SCREENS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SCREENS / f"{name}.png", full_page=True, animations="disabled")

    async def login(self, page: Page, email: str, password: str, *, screen: str | None = None
                    ) -> None:
        await page.goto("/login")
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(password)
        if screen:
            await self.screen(page, screen)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).not_to_have_url(re.compile(r"/login$"))

    async def login_with_code(self, page: Page, email: str, password: str, setup_key: str
                              ) -> None:
        """Both steps, with the current code of the authenticator app holding `setup_key`."""
        await self.login(page, email, password)
        await expect(page).to_have_url(re.compile(r"/login/code$"))
        await page.get_by_label("6-digit code").fill(totp_code(setup_key, self.clock))
        await page.get_by_role("button", name="Verify").click()
        await expect(page).not_to_have_url(re.compile(r"/login"))

    async def logout(self, page: Page) -> None:
        await page.get_by_role("button", name="Log out").click()
        await expect(page).to_have_url(re.compile(r"/login$"))


@pytest.fixture
async def web(request: pytest.FixtureRequest, chromium: str, server: TestServer,
              clock: FrozenClock, new_browser: object) -> AsyncIterator[Web]:
    # After new_browser (set up first, torn down last): closing its API clients closes the
    # server too, which must not happen while pages still hold their WebSockets open.
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        web = Web(browser, str(server.make_url("/")).rstrip("/"), clock, server.app[LIVE])
        try:
            yield web
        finally:
            report = getattr(request.node, "report_call", None)
            if report is None or report.failed:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                for index, page in enumerate(web.pages):
                    if not page.is_closed():
                        name = re.sub(r"[^\w.-]+", "_", request.node.name)
                        await page.screenshot(path=ARTIFACTS / f"{name}-{index}.png",
                                              full_page=True)
            await web.close()
        assert web.problems == [], web.problems


def other_code(setup_key: str, clock: FrozenClock) -> str:
    """A well-formed code the app does not show now (ten steps ahead: outside the drift)."""
    return totp_code(setup_key, clock, steps=10)

