"""Settings > Users: the users grid (F8), creating and editing users (F5), reset (F7).

An admin sees and changes only users of their own organization: anyone else's id answers 404,
as if it did not exist (F11).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from uuid import UUID

import orjson
from aiohttp import web

from services.mfa.application import actor
from services.mfa.domain.account import Account
from services.mfa.http.auth import require_admin
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import forbidden, not_found, validation_error
from services.mfa.http.responses import json_response
from services.mfa.http.schemas import (
    BulkRequirementBody,
    NewUserBody,
    PolicyBody,
    UserChangeBody,
    printable,
    read_json,
)
from services.mfa.projections import users_grid

_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _user_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["user_id"])
    except ValueError:
        raise not_found("no such user") from None


def encode_cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([row["email"], row["user_id"]])).decode()


def decode_cursor(cursor: str, name: str = "cursor") -> tuple[str, str]:
    try:
        email, user_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(email, str) or not isinstance(user_id, str):
            raise ValueError
        printable(email)
        UUID(user_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise validation_error(f"{name}: not a cursor returned by this API") from None
    return email, user_id


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 50
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise validation_error("limit: an integer from 1 to 1000")
    return int(raw)


def grid_query(request: web.Request, org_id: UUID) -> users_grid.GridQuery:
    params = request.query
    status = params.get("status") or None
    if status not in (None, "on", "off"):
        raise validation_error("status: 'on' or 'off'")
    required_raw = (params.get("required") or "").lower()
    if required_raw and required_raw not in _BOOLEANS:
        raise validation_error("required: 'true' or 'false'")
    q = params.get("q") or None
    if q is not None and (len(q) > 200 or not q.isprintable()):
        raise validation_error("q: at most 200 printable characters")
    cursor = params.get("cursor") or None
    return users_grid.GridQuery(
        org_id=org_id, status=status,
        required=_BOOLEANS[required_raw] if required_raw else None, q=q,
        after=decode_cursor(cursor) if cursor else None, limit=parse_limit(params.get("limit")),
    )


async def list_users(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _, admin = await require_admin(request)
    users, more = await users_grid.page(service.db, grid_query(request, admin.org_id))
    return json_response({"users": users,
                          "next_cursor": encode_cursor(users[-1]) if more else None,
                          "counts": await users_grid.counts(service.db, admin.org_id)})


async def _user_view(request: web.Request, admin: Account, user_id: UUID) -> dict[str, Any]:
    row = await users_grid.read(request.app[SERVICE].db, admin.org_id, user_id)
    if row is None:
        raise not_found("no such user")
    return row


async def create_user(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _, admin = await require_admin(request)
    body = NewUserBody.model_validate(await read_json(request))
    password_hash = await service.hashing.hash(body.password)
    written = await service.command(
        service.app.create_user, admin.org_id, body.email, body.name, body.role, password_hash,
        body.two_factor_required, actor("admin", admin.id))
    return json_response(await _user_view(request, admin, written.value), status=201)


async def get_user(request: web.Request) -> web.Response:
    _, admin = await require_admin(request)
    return json_response(await _user_view(request, admin, _user_id(request)))


async def change_user(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _, admin = await require_admin(request)
    user_id = _user_id(request)
    body = UserChangeBody.model_validate(await read_json(request))
    if user_id == admin.id and body.role not in (None, "admin"):
        raise forbidden("you cannot remove your own admin role")
    await service.command(service.app.update_user, admin.org_id, user_id,
                          body.name, body.role, body.two_factor_required,
                          actor("admin", admin.id), user_id=user_id)
    return json_response(await _user_view(request, admin, user_id))


async def reset_two_factor(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _, admin = await require_admin(request)
    user_id = _user_id(request)
    if user_id == admin.id:
        # A stolen admin cookie must not remove the admin's own second factor: an admin who
        # lost it asks platform support (F10, `mfa support reset-2fa`).
        raise forbidden("you cannot reset your own 2FA: platform support can (F10)")
    await service.command(service.app.reset_two_factor, admin.org_id, user_id,
                          actor("admin", admin.id), user_id=user_id)
    return json_response(await _user_view(request, admin, user_id))


# ---- Settings > Security policy, and requirements of many users at once -------------------

async def _policy(request: web.Request, org_id: UUID) -> dict[str, Any]:
    service = request.app[SERVICE]
    organization = await service.call(service.app.organization, org_id)
    return {"require_all": organization.require_all, "require_new": organization.require_new,
            "counts": await users_grid.counts(service.db, org_id)}


async def get_policy(request: web.Request) -> web.Response:
    _, admin = await require_admin(request)
    return json_response(await _policy(request, admin.org_id))


POLICY_WAIT_SECONDS = 120.0


async def set_policy(request: web.Request) -> web.Response:
    """Records the policy; the policy enforcer applies it to every user. The answer waits for
    that (an organization of 10,000 users takes seconds), and says `applied: false` if it
    could not wait so long: the enforcer goes on, and the grid shows the progress."""
    service = request.app[SERVICE]
    _, admin = await require_admin(request)
    body = PolicyBody.model_validate(await read_json(request))
    written = await service.command(service.app.set_policy, admin.org_id, body.require_all,
                                    body.require_new, actor("admin", admin.id))
    applied = True
    if written.position:
        applied = await service.policy.wait_for(written.position, POLICY_WAIT_SECONDS)
        if applied:
            head = await service.call(service.app.recorder.max_notification_id)
            await service.settle(head or 0)
    return json_response({**await _policy(request, admin.org_id), "applied": applied})


async def set_requirements(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _, admin = await require_admin(request)
    body = BulkRequirementBody.model_validate(await read_json(request))
    if body.user_ids is not None:
        try:
            targets = [UUID(user_id) for user_id in body.user_ids]
        except ValueError:
            raise validation_error("user_ids: user ids are UUIDs") from None
    else:
        assert body.filter is not None
        targets = await users_grid.user_ids(service.db, admin.org_id,
                                            required=body.filter.required,
                                            status=body.filter.status, q=body.filter.q)
    written = await service.command(service.app.set_requirements, admin.org_id, targets,
                                    body.required, actor("admin", admin.id))
    return json_response({"changed": written.value, "selected": len(targets),
                          "counts": await users_grid.counts(service.db, admin.org_id)})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/admin/users", list_users),
        web.post("/api/admin/users", create_user),
        web.get("/api/admin/users/{user_id}", get_user),
        web.patch("/api/admin/users/{user_id}", change_user),
        web.post("/api/admin/users/{user_id}/2fa/reset", reset_two_factor),
        web.get("/api/admin/policy", get_policy),
        web.put("/api/admin/policy", set_policy),
        web.post("/api/admin/users/requirement", set_requirements),
    ]
