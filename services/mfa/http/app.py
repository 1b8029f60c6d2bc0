"""The aiohttp application factory of the MFA API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import web

from services.messaging.bus import Bus, RabbitBus
from services.mfa.adapters.passwords import Passwords
from services.mfa.bootstrap import build_service, close_service, running
from services.mfa.config import Settings
from services.mfa.domain.clock import Clock
from services.mfa.http import admin, audit, health, login, pages, security
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import error_middleware
from services.mfa.http.live import session_authenticator
from services.mfa.http.middleware import (
    MAX_BODY_BYTES,
    csrf_middleware,
    forwarded_middleware,
    security_headers_middleware,
)
from services.mfa.http.sessions_ended import PENDING, wait_for_pending
from services.notifier.live_sessions import LiveSessions
from services.notifier.notices import Notifier
from services.notifier.websocket import (
    Viewer,
    check_sessions_periodically,
    refresh_all,
    websocket_handler,
)

LIVE = web.AppKey("live", LiveSessions)
NOTIFIER = web.AppKey("notifier", Notifier)


def create_app(settings: Settings, *, clock: Clock | None = None,
               passwords: Passwords | None = None, bus: Bus | None = None,
               embedded: bool = True) -> web.Application:
    """The API. `embedded` (`mfa serve`) also runs the projections, the relay and the notifier
    in this process, with `/ws` on the same port; `mfa api` runs the API alone."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[forwarded_middleware(settings.trusted_proxies), security_headers_middleware,
                     health.count_requests, error_middleware, csrf_middleware],
    )
    app[health.REQUESTS] = Counter()
    app[PENDING] = set()
    app[health.STARTED] = time.monotonic()

    live = LiveSessions()
    app[LIVE] = live

    async def authenticate(token: str) -> Viewer | None:
        return await session_authenticator(app[SERVICE])(token)

    async def service_ctx(app: web.Application) -> AsyncIterator[None]:
        service = await build_service(settings, clock=clock, passwords=passwords, bus=bus)
        app[SERVICE] = service
        try:
            if embedded:
                notifier = Notifier(live)
                app[NOTIFIER] = notifier
                await service.bus.subscribe(notifier.handle)
                if isinstance(service.bus, RabbitBus):
                    service.bus.on_reconnect(lambda: refresh_all(live, authenticate))
                checks = asyncio.create_task(check_sessions_periodically(
                    live, authenticate, settings.socket_check_seconds))
                try:
                    async with running(service, projections=True, relay=True, sessions=True):
                        yield
                finally:
                    checks.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await checks
                await live.close_all()
            else:
                async with running(service, sessions=True):
                    yield
        finally:
            await wait_for_pending(app)
            await close_service(service)

    async def close_sockets(_: web.Application) -> None:
        # Before aiohttp waits for handlers to finish: an open page would hold shutdown ~1 min.
        await live.close_all()

    app.on_shutdown.append(close_sockets)
    app.cleanup_ctx.append(service_ctx)
    for area in (login, security, admin, audit, health, pages):
        app.add_routes(area.routes())
    pages.setup_templates(app)
    if embedded:
        app.router.add_get("/ws", websocket_handler(live, authenticate,
                                                    settings.allowed_origins,
                                                    settings.public_url))
    return app

