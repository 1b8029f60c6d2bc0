"""Session cookies and the session states of SPEC section 4.

After the password a session is `second_factor`, `setup_2fa`, `regenerate_codes` or `done`; each
route says which states it serves, and a restricted session gets the matching refusal.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from contracts.http import SESSION_COOKIE
from services.mfa.adapters.sessions import Session
from services.mfa.domain.account import Account
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import ApiError, forbidden, unauthenticated

COOKIE = SESSION_COOKIE  # the contract both services share
_SESSION = web.RequestKey("session", Session)

_RESTRICTED = {
    "setup_2fa": ApiError(403, "setup_2fa_required", "configure 2FA before anything else"),
    "regenerate_codes": ApiError(403, "regenerate_codes_required",
                                 "regenerate your recovery codes before anything else"),
}


async def current_session(request: web.Request) -> Session | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    service = request.app[SERVICE]
    return await service.sessions.get(token, service.clock.now())


async def require(request: web.Request, *states: str) -> Session:
    session = await current_session(request)
    if session is None:
        raise unauthenticated()
    if session.state in _RESTRICTED:
        session = await _still_restricted(request, session)
    if session.state not in states:
        if session.state == "second_factor":
            raise unauthenticated("enter your second factor first")
        if session.state in _RESTRICTED:
            raise _RESTRICTED[session.state]
        raise forbidden("not available in this step of the login")
    return session


async def _still_restricted(request: web.Request, session: Session) -> Session:
    """A restriction holds only while its reason does: an admin's reset ends a forced
    regeneration, lifting Required or configuring 2FA elsewhere ends a forced setup."""
    service = request.app[SERVICE]
    state = await service.two_factor(session.user_id)
    forced_setup = state["required"] and state["status"] == "off"
    if session.state == "setup_2fa" and forced_setup:
        return session
    if session.state == "regenerate_codes" and state["status"] == "on" and \
            state["recovery_codes_left"] == 0:
        return session
    return await service.sessions.set_state(session, "setup_2fa" if forced_setup else "done")


def require_window(request: web.Request, session: Session, *, setup: bool) -> None:
    """The 10-minute password-confirmation window of F2, F4 and F9.

    Setup calls after the window ran out get 410 `setup_window_expired`; a window never opened
    (or closed, for the other calls) gets 403 `reauthentication_required`.
    """
    now = request.app[SERVICE].clock.now()
    if session.window_open(now):
        return
    if setup and session.window_until is not None:
        raise ApiError(410, "setup_window_expired",
                       "the 10-minute setup window ran out: re-enter your password")
    raise ApiError(403, "reauthentication_required", "re-enter your password first")


async def require_admin(request: web.Request) -> tuple[Session, Account]:
    session = await require(request, "done")
    service = request.app[SERVICE]
    account = await service.call(service.app.account, session.user_id)
    if account.role != "admin":
        raise forbidden("only an organization admin can do this")
    return session, account


def window_end(request: web.Request) -> float:
    service = request.app[SERVICE]
    return (service.clock.now() + timedelta(seconds=service.settings.setup_window_seconds)
            ).timestamp()


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        COOKIE, session.token, httponly=True, samesite="Lax", secure=request.secure, path="/",
        max_age=request.app[SERVICE].settings.session_max_age_seconds,
    )


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")
