"""Liveness, readiness and Prometheus metrics of the API (services/runtime/web.py answers them;
what "ready" means is services/mfa/readiness.py, what is measured services/mfa/metrics.py)."""

from __future__ import annotations

from aiohttp import web

from services.mfa import readiness
from services.mfa.http.context import SERVICE
from services.runtime.web import health_routes


def routes() -> list[web.RouteDef]:
    return health_routes(lambda request: readiness.checks(request.app[SERVICE]),
                         lambda request: request.app[SERVICE].metrics.registry,
                         refresh=lambda request: request.app[SERVICE].metrics.sample())
