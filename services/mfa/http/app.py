"""The aiohttp application factory of the MFA API: its middlewares and routes. What it runs
while serving (the service, the in-process notifier, background work) is put together in the
composition root, services/mfa/bootstrap.py `api_service`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.messaging.bus import Bus
from services.mfa.adapters.passwords import Passwords
from services.mfa.bootstrap import api_service
from services.mfa.config import Settings
from services.mfa.domain.clock import Clock
from services.mfa.http import admin, audit, health, login, pages, passkeys, security
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
from services.notifier.websocket import Viewer, websocket_handler
from services.runtime.web import new_registry, observe

LIVE = web.AppKey("live", LiveSessions)
REGISTRY = web.AppKey("registry", CollectorRegistry)


def create_app(settings: Settings, *, clock: Clock | None = None,
               passwords: Passwords | None = None, bus: Bus | None = None,
               embedded: bool = True) -> web.Application:
    """The API. `embedded` (`mfa serve`) also runs the projections, the relay and the notifier
    in this process, with `/ws` on the same port; `mfa api` runs the API alone."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[forwarded_middleware(settings.trusted_proxies), security_headers_middleware,
                     error_middleware, csrf_middleware],
    )
    registry = app[REGISTRY] = new_registry()  # this app's own: tests run several at once
    observe(app, registry)  # request ids, access lines, latency: around everything else
    app[PENDING] = set()
    live = app[LIVE] = LiveSessions()

    async def authenticate(token: str) -> Viewer | None:
        return await session_authenticator(app[SERVICE])(token)

    async def service_ctx(app: web.Application) -> AsyncIterator[None]:
        async with api_service(settings, embedded=embedded, registry=registry, live=live,
                               authenticate=authenticate, clock=clock, passwords=passwords,
                               bus=bus) as service:
            app[SERVICE] = service
            try:
                yield
            finally:
                await wait_for_pending(app)  # SessionEnded messages, before the bus closes

    async def close_sockets(_: web.Application) -> None:
        # Before aiohttp waits for handlers to finish: an open page would hold shutdown ~1 min.
        await live.close_all()

    app.on_shutdown.append(close_sockets)
    app.cleanup_ctx.append(service_ctx)
    for area in (login, security, passkeys, admin, audit, health, pages):
        app.add_routes(area.routes())
    pages.setup_templates(app)
    if embedded:
        app.router.add_get("/ws", websocket_handler(live, authenticate,
                                                    settings.allowed_origins,
                                                    settings.public_url))
    return app
