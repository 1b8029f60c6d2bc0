"""F6 live: the banner reaches the user's open pages when the admin saves Required, and goes
away when setup completes (embedded deployment: in-process bus, on both stores)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import ClientWebSocketResponse, WSMsgType

from tests.conftest import Api, FrozenClock, create_user, enable_two_factor


async def next_message(socket: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            message: dict[str, Any] = orjson.loads(await socket.receive_str())
            if message["type"] == kind:
                return message


async def test_banner_appears_live_and_goes_away_after_setup(
        admin: Api, new_browser, clock: FrozenClock) -> None:
    user = await create_user(admin)
    browser, second_tab = await new_browser(), None
    assert await browser.login(user["email"], user["password"]) == "done"
    first = await browser.client.ws_connect("/ws")
    second_tab = await browser.client.ws_connect("/ws")
    assert (await next_message(first, "banner"))["show"] is False
    assert (await next_message(second_tab, "banner"))["show"] is False

    status, _ = await admin.patch(f"/api/admin/users/{user['user_id']}",
                                  {"two_factor_required": True})
    assert status == 200
    for socket in (first, second_tab):
        banner = await next_message(socket, "banner")
        assert banner["show"] is True and banner["required"] is True

    await enable_two_factor(browser, user["password"], clock)
    for socket in (first, second_tab):
        assert (await next_message(socket, "banner"))["show"] is False
        notice = await next_message(socket, "notice")
        assert notice["event"] == "TotpConfirmed"
    await first.close()
    await second_tab.close()


async def test_connect_sends_current_state(admin: Api, new_browser) -> None:
    user = await create_user(admin, required=True)
    browser = await new_browser()
    assert await browser.login(user["email"], user["password"]) == "setup_2fa"
    socket = await browser.client.ws_connect("/ws")
    assert (await next_message(socket, "banner"))["show"] is True
    await socket.close()


async def test_anonymous_and_half_logged_in_sockets_are_refused(
        admin: Api, new_browser, clock: FrozenClock) -> None:
    anonymous = await new_browser()
    async with anonymous.client.get("/ws") as response:
        assert response.status == 401
    user = await create_user(admin)
    browser = await new_browser()
    await browser.login(user["email"], user["password"])
    await enable_two_factor(browser, user["password"], clock)
    await browser.post("/api/logout")
    assert await browser.login(user["email"], user["password"]) == "second_factor"
    async with browser.client.get("/ws") as response:
        assert response.status == 401


async def test_cross_origin_socket_is_refused(admin: Api) -> None:
    async with admin.client.get("/ws", headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 403


async def test_catch_up_after_missed_events_sends_the_current_state(
        admin: Api, new_browser, server) -> None:
    """What the notifier does when the bus reconnects: events published while its queue was
    gone never arrive, so every open page is checked again and gets its current state."""
    from services.mfa.http.app import LIVE
    from services.mfa.http.context import SERVICE
    from services.mfa.http.live import session_authenticator
    from services.notifier.websocket import refresh_all

    user = await create_user(admin)
    browser, leaver = await new_browser(), await new_browser()
    await browser.login(user["email"], user["password"])
    await leaver.login(user["email"], user["password"])
    socket = await browser.client.ws_connect("/ws")
    gone = await leaver.client.ws_connect("/ws")
    assert (await next_message(socket, "banner"))["show"] is False
    assert (await next_message(gone, "banner"))["show"] is False
    service = server.app[SERVICE]
    service.bus._handlers.clear()  # the notifier no longer hears the bus, as with a lost queue
    status, _ = await admin.patch(f"/api/admin/users/{user['user_id']}",
                                  {"two_factor_required": True})
    assert status == 200
    await leaver.post("/api/logout")

    checked = await refresh_all(server.app[LIVE], session_authenticator(service))
    assert checked == 1
    banner = await next_message(socket, "banner")
    assert banner["show"] is True and banner["required"] is True
    async with asyncio.timeout(5):
        closing = await gone.receive()
    assert closing.type == WSMsgType.CLOSE and closing.data == 4401  # its session had ended
    await socket.close()
