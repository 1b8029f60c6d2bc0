"""`mfa notifier`: the standalone notifier of the platform deployment.

It consumes the bus (its own queue, so every instance sees every event) and serves `/ws`. It
keeps no database: a socket's session cookie is checked by asking the API (`GET /api/session`,
a check that does not count as use, through any healthy instance: session_check.py), which also
gives the state sent on connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Sequence

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.messaging.bus import Bus, RabbitBus
from services.notifier.live_sessions import LiveSessions
from services.notifier.metrics import NotifierMetrics
from services.notifier.notices import Notifier
from services.notifier.session_check import ApiSessionCheck
from services.notifier.websocket import (
    Viewer,
    check_sessions_periodically,
    refresh_all,
    websocket_handler,
)
from services.runtime.web import health_routes, new_registry, observe

log = logging.getLogger(__name__)
LIVE = web.AppKey("live", LiveSessions)
NOTIFIER = web.AppKey("notifier", Notifier)
BUS = web.AppKey("bus", Bus)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
SESSION_CHECK = web.AppKey("session_check", ApiSessionCheck)
REGISTRY = web.AppKey("registry", CollectorRegistry)


def create_notifier_app(*, amqp_url: str, exchange: str, api_urls: Sequence[str],
                        allowed_origins: Collection[str] = (), public_url: str = "",
                        check_seconds: float = 60) -> web.Application:
    app = web.Application()
    registry = app[REGISTRY] = new_registry()  # this app's own: tests run several at once
    observe(app, registry)  # request ids, access lines, latency
    live = LiveSessions()
    notifier = Notifier(live)
    app[LIVE] = live
    app[NOTIFIER] = notifier
    registry.register(NotifierMetrics(live, notifier))

    async def resources(app: web.Application) -> AsyncIterator[None]:
        client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        app[CLIENT] = client
        app[SESSION_CHECK] = ApiSessionCheck(client, api_urls)
        bus = await RabbitBus(amqp_url, exchange).connect()
        app[BUS] = bus
        await bus.subscribe(notifier.handle)

        async def catch_up() -> None:
            log.info("bus reconnected: %d open pages checked",
                     await refresh_all(live, authenticate))

        bus.on_reconnect(catch_up)
        checks = asyncio.create_task(check_sessions_periodically(live, authenticate,
                                                                 check_seconds))
        yield
        checks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checks
        await live.close_all()
        await bus.close()
        await client.close()

    async def authenticate(token: str) -> Viewer | None:
        return await app[SESSION_CHECK](token)

    async def close_sockets(_: web.Application) -> None:
        await live.close_all()  # before aiohttp waits for the socket handlers to end

    app.on_shutdown.append(close_sockets)
    app.cleanup_ctx.append(resources)
    app.router.add_get("/ws", websocket_handler(live, authenticate, allowed_origins,
                                                public_url))
    # Ready: the bus is connected (no database: sessions are checked through the API).
    app.add_routes(health_routes(lambda request: {"bus": request.app[BUS].ping},
                                 lambda _: registry, about=lambda _: {"sockets": live.count()}))
    return app
