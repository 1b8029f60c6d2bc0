"""Who is asking and from where (trusted proxies), CSRF rules and security headers (SPEC 4, 6)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_remotes import XForwardedFiltered

from services.mfa.http.context import SERVICE
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
HSTS = "max-age=31536000"


def forwarded_middleware(trusted_proxies: Sequence[str]) -> Middleware:
    """`X-Forwarded-For`, `-Proto` and `-Host` are believed only when the connection comes from a
    trusted proxy (MFA_TRUSTED_PROXIES); aiohttp-remotes then walks `X-Forwarded-For` from the
    right past the trusted hops to the client. From anyone else the headers change nothing, so
    a client cannot pick the address its attempts are throttled under."""
    networks = [ipaddress.ip_network(n) for n in trusted_proxies]
    believe = XForwardedFiltered(set(networks)) if networks else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if believe is not None and _peer_in(request, networks):
            return await believe.middleware(request, handler)
        return await handler(request)

    return middleware


def _peer_in(request: web.Request, networks: Sequence[ipaddress._BaseNetwork]) -> bool:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer or not isinstance(peer, tuple):
        return False  # a Unix socket: no address to trust
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    return any(address in network for network in networks)


def client_address(request: web.Request) -> str:
    """The address attempts are throttled under. An IPv6 client gets a whole /64 from its
    provider, so its attempts count under that prefix, not one of its 2^64 addresses."""
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def own_origin(request: web.Request) -> str:
    """The origin users reach the service at: MFA_PUBLIC_URL, else the one the request came to
    (after a trusted proxy's headers)."""
    public_url = request.app[SERVICE].settings.public_url
    return public_url or f"{request.scheme}://{request.host}"


def is_https(request: web.Request) -> bool:
    return own_origin(request).startswith("https://")


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
        if origin is not None and origin != own_origin(request):
            raise forbidden("cross-origin request refused")
        # Every body is read (so a chunked one over 64 KiB is refused too) and must be a JSON
        # object, also on calls that take no fields: bad input never acts.
        await read_json(request)
    return await handler(request)


@web.middleware
async def security_headers_middleware(request: web.Request,
                                      handler: Handler) -> web.StreamResponse:
    """On every response, redirects and other raised ones included."""
    try:
        response = await handler(request)
    except web.HTTPException as raised:
        _add_headers(request, raised)
        raise
    _add_headers(request, response)
    return response


def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/") or isinstance(response, web.HTTPException):
        response.headers.setdefault("Cache-Control", "no-store")
    if SERVICE in request.app and is_https(request):
        response.headers.setdefault("Strict-Transport-Security", HSTS)
