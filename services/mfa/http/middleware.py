"""CSRF rules and security headers of SPEC section 6."""

from __future__ import annotations

from aiohttp import web

from services.mfa.http.errors import ApiError, Handler, forbidden
from services.mfa.http.schemas import read_json

MAX_BODY_BYTES = 64 * 1024

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A cross-site form cannot send `application/json`, and a browser always sends `Origin`
    on cross-origin requests: together they keep other sites from acting for the user."""
    if request.method in STATE_CHANGING and request.path.startswith("/api/"):
        if (request.content_length or 0) > MAX_BODY_BYTES:
            # Also for calls that never read their body: a client learns the limit the same way.
            raise ApiError(413, "payload_too_large", "body larger than 64 KiB")
        if request.content_type != "application/json":
            raise forbidden("state-changing requests must have Content-Type: application/json")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise forbidden("cross-origin request refused")
        # Every body is read (so a chunked one over 64 KiB is refused too) and must be a JSON
        # object, also on calls that take no fields: bad input never acts.
        await read_json(request)
    return await handler(request)


@web.middleware
async def security_headers_middleware(request: web.Request,
                                      handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
