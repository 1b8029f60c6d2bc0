"""The aiohttp application factory of the MFA API."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import web

from services.mfa.adapters.passwords import Passwords
from services.mfa.bootstrap import build_service, close_service, running_projections
from services.mfa.config import Settings
from services.mfa.domain.clock import Clock
from services.mfa.http import admin, health, login, security
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import error_middleware
from services.mfa.http.middleware import csrf_middleware, security_headers_middleware

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings, *, clock: Clock | None = None,
               passwords: Passwords | None = None, run_projections: bool = True,
               ) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[security_headers_middleware, health.count_requests, error_middleware,
                     csrf_middleware],
    )
    app[health.REQUESTS] = Counter()
    app[health.STARTED] = time.monotonic()

    async def service_ctx(app: web.Application) -> AsyncIterator[None]:
        service = await build_service(settings, clock=clock, passwords=passwords)
        app[SERVICE] = service
        try:
            if run_projections:
                async with running_projections(service):
                    yield
            else:
                yield
        finally:
            await close_service(service)

    app.cleanup_ctx.append(service_ctx)
    for area in (login, security, admin, health):
        app.add_routes(area.routes())
    return app
