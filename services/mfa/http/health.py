"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from collections import Counter

from aiohttp import web

from services.mfa.http.context import SERVICE
from services.mfa.http.errors import Handler
from services.mfa.http.responses import json_response

REQUESTS = web.AppKey("requests", Counter[tuple[str, int]])


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    request.app[REQUESTS][(f"{request.method} {name}", response.status)] += 1
    return response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    checks: dict[str, str] = {}
    try:
        await service.db.ping()
        await service.call(service.app.recorder.max_notification_id)
        checks["store"] = "ok"
    except Exception as e:  # readiness reports, it does not fail
        checks["store"] = f"unreachable: {type(e).__name__}"
    try:
        await service.bus.ping()
        checks["bus"] = "ok"
    except Exception as e:
        checks["bus"] = f"unreachable: {type(e).__name__}"
    if service.views.running:  # the views run in this process (mfa serve)
        stopped = [f"{runner.name}: {runner.failure.describe()}"
                   for runner in service.projections if runner.failure is not None]
        checks["views"] = "stopped on " + "; ".join(stopped) if stopped else "ok"
    ready = all(value == "ok" for value in checks.values())
    return json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    lines = [
        "# HELP mfa_http_requests_total HTTP requests by route and status.",
        "# TYPE mfa_http_requests_total counter",
    ]
    for (route, status), count in sorted(request.app[REQUESTS].items()):
        lines.append(f'mfa_http_requests_total{{route="{route}",status="{status}"}} {count}')
    lines += ["# HELP mfa_projection_position Last log position applied by each projection.",
              "# TYPE mfa_projection_position gauge"]
    for runner in service.projections:
        lines.append(f'mfa_projection_position{{projection="{runner.projection.name}"}} '
                     f"{runner.position}")
    lines += ["# HELP mfa_follower_failing 1 while a view or the relay of this process is "
              "stopped on a failure (it retries).", "# TYPE mfa_follower_failing gauge"]
    for follower in [*service.projections, service.relay]:
        lines.append(f'mfa_follower_failing{{follower="{follower.name}"}} '
                     f"{int(follower.failure is not None)}")
    lines += ["# HELP mfa_up_seconds Seconds since this process started.",
              "# TYPE mfa_up_seconds gauge",
              f"mfa_up_seconds {time.monotonic() - request.app[STARTED]:.3f}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


STARTED = web.AppKey("started", float)


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz),
            web.get("/metrics", metrics)]
