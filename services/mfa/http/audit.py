"""Audit (admins of the organization): the ordered event history and time travel."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from aiohttp import web

from services.mfa.http.admin import parse_limit
from services.mfa.http.auth import require_admin
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import not_found, validation_error
from services.mfa.http.responses import iso, json_response
from services.mfa.projections import audit_log


def _position(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise validation_error("after: a position (a non-negative integer) from this API")
    return int(raw)


def _uuid(raw: str, what: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise validation_error(f"{what}: not a user id") from None


def parse_instant(raw: str | None, default: datetime) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    if raw is None or raw == "":
        return default
    try:
        when = datetime.fromisoformat(raw.replace(" ", "+"))  # a '+' sent unencoded in a query
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        return when.astimezone(UTC)  # overflows here for instants past year 9999 in UTC
    except (ValueError, OverflowError):
        raise validation_error("at: an ISO 8601 time, e.g. 2026-11-28T10:00:00Z") from None


async def events(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _, admin = await require_admin(request)
    after = _position(request.query.get("after"))
    limit = parse_limit(request.query.get("limit"))
    raw_user = request.query.get("user_id") or None
    user_id = _uuid(raw_user, "user_id") if raw_user else None
    page, more = await audit_log.page(service.db, admin.org_id, after, limit, user_id)
    return json_response({"events": page, "next": page[-1]["position"] if more else None})


async def user_state(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _, admin = await require_admin(request)
    try:
        user_id = UUID(request.match_info["user_id"])
    except ValueError:
        raise not_found("no such user") from None
    account = await service.call(service.app.account, user_id)
    if account.org_id != admin.org_id:
        raise not_found("no such user")
    at = parse_instant(request.query.get("at"), service.clock.now())
    mfa = await service.call(service.app.mfa_at, user_id, at)
    if mfa is None:
        raise not_found("the user did not exist at that time")
    return json_response({
        "at": iso(at),
        "user_id": str(user_id),
        "two_factor": {
            "status": mfa.status,
            "required": mfa.required,
            "recovery_codes_left": mfa.recovery_codes_left,
            "locked": mfa.is_locked(at),
            "failed_attempts": mfa.failures,
        },
    })


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/audit/events", events),
        web.get("/api/audit/users/{user_id}/state", user_state),
    ]
