"""What every HTTP server of both services does around its handlers, and its health endpoints.

- `observe(app, registry)`: the outermost middleware. It gives each request its id
  (services/runtime/request_id.py) for the whole of its handling, returns it in `X-Request-Id`,
  writes one access line (method, route, status, milliseconds: never the query, a body or a
  cookie) and times the request into `mfa_http_request_duration_seconds`, labelled by the
  route's canonical path (`/api/admin/users/{id}`, not the id), the method and the status class.
- `health_routes(...)`: `/healthz` (the process answers), `/readyz` (each named check passes:
  503 and which failed otherwise) and `/metrics` (the process's own registry, Prometheus text).
- `health_server(...)`: those three on a port of their own, for the processes that serve no
  other HTTP (`mfa projector`, `mfa relay`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from services.runtime import request_id

access_log = logging.getLogger("services.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A readiness check raises (anything) when its dependency is not usable.
Check = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """A readiness check's own verdict, shown as it says (other errors show their type only:
    their messages may say more than a probe should)."""
_REQUEST_ID = web.RequestKey("request_id", str)
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
# A `*_created` timestamp beside every counter doubles the series and no alert reads it.
disable_created_metrics()


def new_registry() -> CollectorRegistry:
    """A registry of this process (or this app, in tests running several), never the global
    default one: with the process's own `process_*` and `python_*` metrics."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def observe(app: web.Application, registry: CollectorRegistry) -> None:
    """Request ids, access lines and latency for every request of `app` (call before it
    starts: the middleware goes first, around every other)."""
    latency = Histogram("mfa_http_request_duration_seconds",
                        "HTTP requests: time to answer, by route, method and status class.",
                        ["route", "method", "status"], registry=registry)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request_id.accept(request.headers.get(request_id.HEADER))
        request[_REQUEST_ID] = rid
        started = time.perf_counter()
        status, socket = 500, False
        with request_id.bound(rid):
            try:
                response = await handler(request)
                status, socket = response.status, isinstance(response, web.WebSocketResponse)
                return response
            except web.HTTPException as e:
                status = e.status
                raise
            finally:
                seconds = time.perf_counter() - started
                route = _route(request)
                if not socket:  # a socket's time is how long the page stayed open
                    latency.labels(route, request.method, f"{status // 100}xx").observe(seconds)
                # Probes and scrapes come every few seconds: their lines only at DEBUG.
                level = logging.DEBUG if route in _PROBES else logging.INFO
                access_log.log(level, "%s %s %d", request.method, route, status, extra={
                    "method": request.method, "route": route, "status": status,
                    "duration_ms": round(seconds * 1000, 2)})

    async def add_header(request: web.Request, response: web.StreamResponse) -> None:
        rid = request.get(_REQUEST_ID)
        if rid is not None:
            response.headers[request_id.HEADER] = rid

    app.middlewares.insert(0, middleware)
    app.on_response_prepare.append(add_header)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def health_routes(checks: Callable[[web.Request], Mapping[str, Check]],
                  registry: Callable[[web.Request], CollectorRegistry],
                  refresh: Callable[[web.Request], Awaitable[None]] | None = None,
                  about: Callable[[web.Request], dict[str, Any]] | None = None,
                  ) -> list[web.RouteDef]:
    """Each argument is asked per request (what a process has may be built after its routes):
    `checks`, the readiness checks by name; `registry`, what /metrics exposes; `refresh`,
    updates sampled metrics (lags) before a scrape; `about`, more for /healthz to say."""

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok", **(about(request) if about else {})})

    async def readyz(request: web.Request) -> web.Response:
        results: dict[str, str] = {}
        for name, check in checks(request).items():
            try:
                await check()
                results[name] = "ok"
            except NotReady as e:
                results[name] = str(e)
            except Exception as e:  # readiness reports, it does not fail
                results[name] = f"unreachable: {type(e).__name__}"
        ready = all(value == "ok" for value in results.values())
        return _json({"ready": ready, "checks": results}, 200 if ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        if refresh is not None:
            await refresh(request)
        return web.Response(body=generate_latest(registry(request)),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz),
            web.get("/metrics", metrics)]


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


@contextlib.asynccontextmanager
async def health_server(host: str, port: int, routes: Sequence[web.RouteDef],
                        registry: CollectorRegistry) -> AsyncIterator[web.AppRunner]:
    """/healthz, /readyz and /metrics on `port`, for as long as the block runs."""
    app = web.Application()
    observe(app, registry)
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield runner
    finally:
        await runner.cleanup()
