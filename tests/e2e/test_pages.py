"""The pages as HTTP resources: where each session state lands, the security headers of SPEC
section 6, no inline script or style, and a page script that never logs."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from services.mfa.web import STATIC
from tests.conftest import Api, FrozenClock, create_user, enable_two_factor

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'")
PAGES = ["/login", "/account/security", "/account/recovery-codes", "/settings/users",
         "/settings/users/new"]


async def _get(api: Api, path: str) -> tuple[int, str, dict[str, str]]:
    async with api.client.get(path, allow_redirects=False) as response:
        return response.status, await response.text(), dict(response.headers)


async def _lands(api: Api, path: str) -> str:
    status, _, headers = await _get(api, path)
    assert status == 302, (path, status)
    return headers["Location"]


async def test_each_session_state_lands_in_its_place(
        admin: Api, new_browser: Callable[[], Awaitable[Api]], clock: FrozenClock) -> None:
    anonymous = await new_browser()
    for path in ["/", *PAGES[1:], "/login/code"]:
        assert await _lands(anonymous, path) == "/login"
    assert await _lands(admin, "/") == "/settings/users"
    assert await _lands(admin, "/login") == "/"

    client = await new_browser()
    user = await create_user(admin)
    await client.login(user["email"], user["password"])
    assert await _lands(client, "/") == "/account/security"
    status, body, _ = await _get(client, "/settings/users")
    assert status == 403 and "have access" in body

    await enable_two_factor(client, user["password"], clock)
    await client.post("/api/logout")
    assert await client.login(user["email"], user["password"]) == "second_factor"
    assert await _lands(client, "/") == "/login/code"
    assert await _lands(client, "/account/security") == "/login/code"
    assert (await _get(client, "/login/code"))[0] == 200

    required = await new_browser()
    forced = await create_user(admin, required=True)
    assert await required.login(forced["email"], forced["password"]) == "setup_2fa"
    assert await _lands(required, "/") == "/account/security"
    assert await _lands(required, "/account/recovery-codes") == "/account/security"
    assert await _lands(required, "/settings/users") == "/account/security"

    status, body, _ = await _get(admin, "/settings/users/not-a-user")
    assert status == 404 and "User not found" in body
    for query in ("status=maybe&cursor=junk", "before=junk",
                  "cursor=WyJhQGIuYyIsIjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCJd"
                  "&before=WyJhQGIuYyIsIjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCJd"):
        status, body, _ = await _get(admin, f"/settings/users?{query}")
        assert status == 200 and "could not be applied" in body, query


@pytest.mark.parametrize("path", PAGES)
async def test_pages_send_the_security_headers(
        admin: Api, new_browser: Callable[[], Awaitable[Api]], path: str) -> None:
    visitor = await new_browser() if path == "/login" else admin
    status, body, headers = await _get(visitor, path)
    assert status == 200
    assert headers["Content-Security-Policy"].startswith(PAGE_CSP)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"].startswith("text/html")
    # Nothing inline: every script has a src, no style attribute or element.
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)
    assert " style=" not in body and "<style" not in body


def test_page_scripts_never_log() -> None:
    scripts = list(Path(STATIC).rglob("*.js"))
    assert scripts
    for script in scripts:
        assert "console." not in script.read_text(), script.name
