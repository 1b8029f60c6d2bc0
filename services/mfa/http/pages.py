"""The web pages: server-rendered screens of the help-center page, on top of the JSON API.

Pages only read (the session, the account and the views); every change goes through the JSON
API, called by the page's small script. A page needing a session sends the visitor to where their
session state allows them to be: /login, the second step, the forced setup or regeneration.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

import aiohttp_jinja2
import jinja2
from aiohttp import web
from yarl import URL

from services.mfa.adapters.sessions import Session
from services.mfa.domain.account import Account
from services.mfa.domain.session_states import STATES
from services.mfa.http import admin
from services.mfa.http.auth import require
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import ApiError, validation_error
from services.mfa.projections import users_grid
from services.mfa.web import STATIC, TEMPLATES

# SPEC section 6: no inline script or style; the QR code is an image from a data: URI.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
PAGE_SIZE = 20

# Where each restricted session state may be, and nowhere else.
_STATE_HOME = {
    "second_factor": "/login/code",
    "setup_2fa": "/account/security",
    "regenerate_codes": "/account/recovery-codes",
}


@dataclasses.dataclass(frozen=True)
class Viewer:
    session: Session
    account: Account
    two_factor: dict[str, Any]

    @property
    def is_admin(self) -> bool:
        return self.account.role == "admin"


def _home(session: Session, account: Account | None = None) -> str:
    if session.state in _STATE_HOME:
        return _STATE_HOME[session.state]
    return "/settings/users" if account is not None and account.role == "admin" \
        else "/account/security"


async def _session(request: web.Request) -> Session | None:
    """The visitor's session in its current state (the API's own rules decide when a forced
    step no longer applies), or None."""
    try:
        return await require(request, *STATES)
    except ApiError:
        return None


async def _viewer(request: web.Request, *states: str) -> Viewer:
    """The logged-in visitor, if their session may see this page; otherwise a redirect."""
    session = await _session(request)
    if session is None:
        raise web.HTTPFound("/login")
    service = request.app[SERVICE]
    account = await service.call(service.app.account, session.user_id)
    if session.state not in states:
        raise web.HTTPFound(_home(session, account))
    return Viewer(session, account, await request.app[SERVICE].two_factor(session.user_id))


def _render(request: web.Request, template: str, context: dict[str, Any],
            status: int = 200) -> web.Response:
    service = request.app[SERVICE]
    context = {"server_now": service.clock.now().isoformat(), "issuer": service.settings.issuer,
               **context}
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def _layout(viewer: Viewer, section: str) -> dict[str, Any]:
    """What the header and the notification bar of every logged-in page need."""
    return {"viewer": viewer, "account": viewer.account, "two_factor": viewer.two_factor,
            "section": section, "restricted": viewer.session.state != "done"}


def _error(request: web.Request, viewer: Viewer, status: int, title: str,
           message: str) -> web.Response:
    return _render(request, "error.html",
                   {**_layout(viewer, ""), "title": title, "message": message}, status)


# ---- pages ------------------------------------------------------------------------------------

async def root(request: web.Request) -> web.Response:
    session = await _session(request)
    if session is None:
        raise web.HTTPFound("/login")
    service = request.app[SERVICE]
    raise web.HTTPFound(_home(session, await service.call(service.app.account, session.user_id)))


async def login_page(request: web.Request) -> web.Response:
    session = await _session(request)
    if session is not None and session.state != "second_factor":
        raise web.HTTPFound("/")
    return _render(request, "login.html", {})


async def second_step_page(request: web.Request) -> web.Response:
    session = await _session(request)
    if session is None:
        raise web.HTTPFound("/login")
    if session.state != "second_factor":
        raise web.HTTPFound("/")
    return _render(request, "login_code.html", {})


async def security_page(request: web.Request) -> web.Response:
    viewer = await _viewer(request, "done", "setup_2fa")
    service = request.app[SERVICE]
    mfa = await service.call(service.app.mfa, viewer.session.user_id)
    return _render(request, "security.html", {
        **_layout(viewer, "account"),
        "forced": viewer.session.state == "setup_2fa",
        "window_seconds": service.settings.setup_window_seconds,
        "has_app": mfa.has_authenticator_app,
        "passkeys": await service.call(service.app.passkeys, viewer.session.user_id),
    })


async def recovery_codes_page(request: web.Request) -> web.Response:
    viewer = await _viewer(request, "done", "regenerate_codes")
    now = request.app[SERVICE].clock.now()
    return _render(request, "recovery_codes.html", {
        **_layout(viewer, "account"),
        "forced": viewer.session.state == "regenerate_codes",
        "window_open": viewer.session.window_open(now),
    })


async def _admin_viewer(request: web.Request) -> Viewer:
    viewer = await _viewer(request, "done")
    if not viewer.is_admin:
        raise _NotAdmin(viewer)
    return viewer


class _NotAdmin(Exception):
    def __init__(self, viewer: Viewer) -> None:
        super().__init__("not an admin")
        self.viewer = viewer


def _forbidden(request: web.Request, error: _NotAdmin) -> web.Response:
    return _error(request, error.viewer, 403, "You don't have access to this page",
                  "Settings > Users is for your organization's administrators.")


def _grid_query(request: web.Request, org_id: UUID) -> users_grid.GridQuery:
    """The API's grid query, with the page's own default size and `before` (Previous)."""
    query = admin.grid_query(request, org_id)
    if "limit" not in request.query:
        query = dataclasses.replace(query, limit=PAGE_SIZE)
    before = request.query.get("before")
    if before:
        if query.after is not None:
            raise validation_error("before: not together with cursor")
        query = dataclasses.replace(query, before=admin.decode_cursor(before, "before"))
    return query


def _page_number(raw: str | None) -> int:
    """The number shown for a page after the first: only a label, carried in the links."""
    if raw and raw.isascii() and raw.isdigit() and 2 <= int(raw) <= 1_000_000:
        return int(raw)
    return 2


def _grid_link(filters: dict[str, str], query: users_grid.GridQuery, **position: str) -> str:
    """A link to another page: the filters, the page size and one cursor (the last row for Next,
    the first row for Previous), so links stay the same length however deep one pages."""
    params = {name: value for name, value in filters.items() if value}
    if query.limit != PAGE_SIZE:
        params["limit"] = str(query.limit)
    return str(URL("/settings/users").with_query({**params, **position}))


async def users_page(request: web.Request) -> web.Response:
    try:
        viewer = await _admin_viewer(request)
    except _NotAdmin as e:
        return _forbidden(request, e)
    service = request.app[SERVICE]
    org_id = viewer.account.org_id
    # The links carry `q` exactly as searched (the API takes its spaces literally too), so the
    # next page is the same search.
    filters = {"q": request.query.get("q", ""),
               **{name: request.query.get(name, "").strip() for name in ("status", "required")}}
    problem = None
    try:
        query = _grid_query(request, org_id)
    except ApiError as e:
        problem = f"Those filters could not be applied ({e.message})."
        filters = {"q": "", "status": "", "required": ""}
        query = users_grid.GridQuery(org_id=org_id, limit=PAGE_SIZE)
    users, more = await users_grid.page(service.db, query)
    if query.before is not None and not more:
        # Paged back to the beginning: show the first page itself, with all its rows.
        query = dataclasses.replace(query, before=None)
        users, more = await users_grid.page(service.db, query)
    counts = await users_grid.counts(service.db, org_id)
    first = query.after is None and query.before is None
    page_number = 1 if first else _page_number(request.query.get("page"))
    # Paging back, the page after this one is the one we came from.
    next_url = None
    if users and (more or query.before is not None):
        next_url = _grid_link(filters, query, cursor=admin.encode_cursor(users[-1]),
                              page=str(page_number + 1))
    previous_url = None
    if not first and users:
        previous_url = _grid_link(filters, query, before=admin.encode_cursor(users[0]),
                                  page=str(page_number - 1))
    elif not first:  # nothing left past the cursor: back to the first page
        previous_url = _grid_link(filters, query)
    matching = await users_grid.count_matching(
        service.db, org_id, required=query.required, status=query.status, q=query.q)
    organization = await service.call(service.app.organization, org_id)
    return _render(request, "users.html", {
        **_layout(viewer, "settings"), "users": users, "counts": counts,
        "problem": problem, "page_number": page_number, "next_url": next_url,
        "previous_url": previous_url, "filters": filters,
        "filtered": any(filters.values()), "matching": matching,
        "require_all": organization.require_all,
    })


async def policy_page(request: web.Request) -> web.Response:
    """Settings > Security policy: Require 2FA for all users, for new users."""
    try:
        viewer = await _admin_viewer(request)
    except _NotAdmin as e:
        return _forbidden(request, e)
    service = request.app[SERVICE]
    org_id = viewer.account.org_id
    organization = await service.call(service.app.organization, org_id)
    return _render(request, "policy.html", {
        **_layout(viewer, "settings"), "counts": await users_grid.counts(service.db, org_id),
        "require_all": organization.require_all, "require_new": organization.require_new,
    })


async def new_user_page(request: web.Request) -> web.Response:
    try:
        viewer = await _admin_viewer(request)
    except _NotAdmin as e:
        return _forbidden(request, e)
    return _render(request, "user_new.html", _layout(viewer, "settings"))


async def user_page(request: web.Request) -> web.Response:
    try:
        viewer = await _admin_viewer(request)
    except _NotAdmin as e:
        return _forbidden(request, e)
    service = request.app[SERVICE]
    try:
        user_id = UUID(request.match_info["user_id"])
    except ValueError:
        user_id = None
    row = await users_grid.read(service.db, viewer.account.org_id, user_id) if user_id else None
    if row is None or user_id is None:
        return _error(request, viewer, 404, "User not found",
                      "There is no such user in your organization.")
    return _render(request, "user.html", {
        **_layout(viewer, "settings"), "user": row,
        "user_two_factor": await service.two_factor(user_id),
        "is_self": user_id == viewer.account.id,
    })


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", root),
        web.get("/login", login_page),
        web.get("/login/code", second_step_page),
        web.get("/account/security", security_page),
        web.get("/account/recovery-codes", recovery_codes_page),
        web.get("/settings/users", users_page),
        web.get("/settings/users/new", new_user_page),
        web.get("/settings/users/{user_id}", user_page),
        web.get("/settings/security-policy", policy_page),
    ]


def setup_templates(app: web.Application) -> None:
    """Jinja2 with autoescaping, and the static files under /static/ (versioned URLs)."""
    static = app.router.add_static("/static/", STATIC, name="static", append_version=True)

    def asset(filename: str) -> str:
        return str(static.url_for(filename=filename))  # versioned: append_version above

    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES),
                               autoescape=jinja2.select_autoescape(default=True),
                               undefined=jinja2.StrictUndefined, default_helpers=False)
    env.globals["asset"] = asset
