"""`GET /ws`: the live channel of a logged-in page, authenticated by the session cookie."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import orjson
from aiohttp import WSMsgType, web

from contracts.http import SESSION_COOKIE
from contracts.shown_state import ShownState, Status
from services.notifier.live_sessions import LiveSessions
from services.notifier.notices import banner_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Viewer:
    """Who opened the socket (which session), and their 2FA state at that moment."""

    user_id: str
    status: Status
    required: bool
    session_id: str = ""

    @property
    def two_factor(self) -> ShownState:
        return ShownState(self.status, self.required)


class SessionCheckFailed(Exception):
    """Nobody could say whether the session is live (the API is unreachable): not a "no"."""


# The viewer of a session cookie, None if the session is not live; may raise SessionCheckFailed.
Authenticate = Callable[[str], Awaitable[Viewer | None]]


def _refuse(status: int, code: str, message: str,
            headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, content_type="application/json", headers=headers,
                        body=orjson.dumps({"error": {"code": code, "message": message}}))


def websocket_handler(live: LiveSessions, authenticate: Authenticate,
                      allowed_origins: Collection[str] = (), public_url: str = "",
                      ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`public_url`: MFA_PUBLIC_URL, the origin the pages are served from (behind a TLS proxy
    the request itself says http://)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        own = public_url or f"{request.scheme}://{request.host}"
        if origin is not None and origin != own and origin not in allowed_origins:
            # Cross-site WebSocket hijacking: a page of another site cannot open it.
            return _refuse(403, "forbidden", "cross-origin WebSocket refused")
        token = request.cookies.get(SESSION_COOKIE)
        try:
            viewer = await authenticate(token) if token and len(token) <= 128 else None
        except SessionCheckFailed as e:
            log.warning("socket refused for now: %s", e)
            return _refuse(503, "unavailable", "cannot check the session right now",
                           {"Retry-After": "5"})
        if viewer is None:
            return _refuse(401, "unauthenticated", "log in first")
        socket = web.WebSocketResponse(heartbeat=30)
        await socket.prepare(request)
        live.add(viewer.user_id, socket, token or "", viewer.session_id)
        try:
            await live.send_banner(viewer.user_id, banner_message(viewer.two_factor),
                                   only=socket)
            async for message in socket:  # the page only listens; anything it sends is ignored
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            live.remove(viewer.user_id, socket)
        return socket

    return handler


async def refresh_all(live: LiveSessions, authenticate: Authenticate) -> int:
    """Checks every open socket's session again and sends its current state where the bar
    shows something else (after a bus outage, say); a socket whose session ended (logged out,
    expired, idle too long) is closed. Returns how many sockets are still open."""
    checked = 0
    for user_id, socket, token in live.tokens():
        viewer = await authenticate(token) if token else None
        if viewer is None:
            live.remove(user_id, socket)
            await socket.close(code=4401, message=b"session ended")
            continue
        await live.send_banner(user_id, banner_message(viewer.two_factor), only=socket)
        checked += 1
    return checked


async def check_sessions_periodically(live: LiveSessions, authenticate: Authenticate,
                                      every_seconds: float) -> None:
    """Sessions also end without a message (their lifetime runs out, or a logout's message was
    lost while the bus was away): every open page's session is checked this often."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await refresh_all(live, authenticate)
        except SessionCheckFailed as e:  # pages stay open: nobody said their sessions ended
            log.warning("checking the open pages' sessions: %s; next try later", e)
        except Exception:
            log.exception("checking the open pages' sessions failed; next try later")
