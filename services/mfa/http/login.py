"""F3: email and password, then the second factor; logout."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from services.mfa.adapters.device_cookies import COOKIE as DEVICE_COOKIE
from services.mfa.adapters.sessions import Session
from services.mfa.application import LoginStep
from services.mfa.domain import totp
from services.mfa.domain.account import normalize_email
from services.mfa.domain.session_states import OPENS_WINDOW
from services.mfa.http.auth import (
    clear_cookie,
    current_session,
    require,
    set_cookie,
    set_device_cookie,
    window_end,
)
from services.mfa.http.context import SERVICE
from services.mfa.http.middleware import client_address
from services.mfa.http.responses import json_response
from services.mfa.http.schemas import CodeBody, LoginBody, read_json
from services.mfa.http.sessions_ended import session_ended


async def login(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = LoginBody.model_validate(await read_json(request))
    previous = await current_session(request)
    if previous is not None:
        await service.sessions.end(previous)
        await session_ended(request, previous, "login")
    email = normalize_email(body.email)
    device = service.devices.nonce_for(request.cookies.get(DEVICE_COOKIE), email,
                                       service.clock.now())
    with service.metrics.password_step():
        step = await service.logins.login(email, body.password, client_address(request), device)
    window = window_end(request) if step.next in OPENS_WINDOW else None
    session = await service.sessions.create(step.user_id, step.next, window,
                                            service.clock.now(), service.devices.binding(email))
    response = json_response({"next": step.next})
    set_cookie(request, response, session)
    if step.next == "done":
        set_device_cookie(request, response, session)
    return response


async def second_factor(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "second_factor")
    code = CodeBody.model_validate(await read_json(request)).code
    # A TOTP code changes no view a client reads; a recovery code changes the count left.
    with service.metrics.second_factor("totp" if len(code) == totp.DIGITS else "recovery_code"):
        written = await service.command(
            partial(service.app.verify_second_factor, session.user_id, code,
                    client_address(request)),
            user_id=session.user_id, settle=len(code) != 6)
    return await second_factor_passed(request, session, written.value)


async def second_factor_passed(request: web.Request, session: Session,
                               step: LoginStep) -> web.Response:
    """A right second factor (a code or a key): the session moves on under a new token, and
    the browser is known from now on (device cookie)."""
    service = request.app[SERVICE]
    window = window_end(request) if step.next in OPENS_WINDOW else None
    session = await service.sessions.replace(session, step.next, window, service.clock.now())
    response = json_response({"next": step.next})
    set_cookie(request, response, session)
    set_device_cookie(request, response, session)
    return response


async def logout(request: web.Request) -> web.Response:
    session = await current_session(request)
    if session is not None:
        await request.app[SERVICE].sessions.end(session)
        await session_ended(request, session, "logout")
    response = json_response({"logged_out": True})
    clear_cookie(response)
    return response


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/login", login),
        web.post("/api/login/second-factor", second_factor),
        web.post("/api/logout", logout),
    ]
