"""Session cookies and the session states of SPEC section 4.

Each route says which states it serves, and a restricted session gets the matching refusal.
Every change of state follows `services/mfa/domain/session_states.py`.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from aiohttp import web

from contracts.http import SESSION_COOKIE
from services.mfa.adapters.device_cookies import COOKIE as DEVICE_COOKIE
from services.mfa.adapters.sessions import Session
from services.mfa.bootstrap import Service
from services.mfa.domain import session_states
from services.mfa.domain.account import Account
from services.mfa.domain.session_states import RESTRICTED, State, Step, UserTwoFactor
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import ApiError, forbidden, unauthenticated
from services.mfa.http.middleware import is_https

COOKIE = SESSION_COOKIE  # the contract both services share

_REFUSALS = {
    "setup_2fa": ApiError(403, "setup_2fa_required", "configure 2FA before anything else"),
    "regenerate_codes": ApiError(403, "regenerate_codes_required",
                                 "regenerate your recovery codes before anything else"),
}
assert set(_REFUSALS) == set(RESTRICTED)


async def current_session(request: web.Request, *, touch: bool = True) -> Session | None:
    """The request's session as it stands now (a forced step whose reason is gone has moved
    on); `touch`: the request is a use of it (see SessionStore.get)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    service = request.app[SERVICE]
    session = await service.sessions.get(token, service.clock.now(), touch=touch)
    return await checked(service, session) if session is not None else None


async def require(request: web.Request, *states: State) -> Session:
    session = await current_session(request)
    if session is None:
        raise unauthenticated()
    if session.state not in states:
        if session.state == "second_factor":
            raise unauthenticated("enter your second factor first")
        if session.state in _REFUSALS:
            raise _REFUSALS[session.state]
        raise forbidden("not available in this step of the login")
    return session


async def factors(service: Service, user_id: UUID) -> UserTwoFactor:
    """The user's 2FA as the store has it now: the aggregate itself, not a view that may lag."""
    return await service.call(lambda: service.app.mfa(user_id).factors())


async def checked(service: Service, session: Session) -> Session:
    """A forced step lasts while its reason does; the state machine says where the session
    stands now. (Only restricted sessions can move this way.)"""
    if session.state not in RESTRICTED:
        return session
    state = session_states.after(session.state, Step.CHECKED,
                                 await factors(service, session.user_id))
    if state == session.state:
        return session
    # Owing the second factor again, the session also loses its password window.
    window = None if state == "second_factor" else session.window_until
    return await service.sessions.set_state(session, state, window)


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


async def advance(request: web.Request, response: web.StreamResponse, session: Session,
                  step: Step) -> Session:
    """Moves the session on by `step` under a new token (the window stays where it is)."""
    service = request.app[SERVICE]
    state = session_states.after(session.state, step, await factors(service, session.user_id))
    session = await service.sessions.replace(session, state, session.window_until,
                                             service.clock.now())
    set_cookie(request, response, session)
    return session


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    """The cookie lives as long as the session's absolute lifetime has left, never longer."""
    response.set_cookie(
        COOKIE, session.token, httponly=True, samesite="Lax", secure=is_https(request),
        path="/", max_age=session.seconds_left(request.app[SERVICE].clock.now()),
    )


def set_device_cookie(request: web.Request, response: web.StreamResponse,
                      session: Session) -> None:
    """After a completed login: this browser's password attempts for the login's email are
    counted apart from strangers' from now on (adapters/device_cookies.py)."""
    service = request.app[SERVICE]
    if not session.device_binding:
        return  # a session of an older version of the table
    response.set_cookie(
        DEVICE_COOKIE, service.devices.issue(session.device_binding, service.clock.now()),
        httponly=True,
        samesite="Lax", secure=is_https(request), path="/api/login",
        max_age=service.devices.max_age,
    )


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")
