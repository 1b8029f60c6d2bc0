"""F3: email and password, then the second factor; logout."""

from __future__ import annotations

from aiohttp import web

from services.mfa.application import LoginStep
from services.mfa.http.auth import (
    clear_cookie,
    current_session,
    require,
    set_cookie,
    window_end,
)
from services.mfa.http.context import SERVICE
from services.mfa.http.responses import json_response
from services.mfa.http.schemas import CodeBody, LoginBody, read_json

# Forced setup and forced regeneration need no second password entry (SPEC section 4).
_OPENS_WINDOW = ("setup_2fa", "regenerate_codes")


async def login(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = LoginBody.model_validate(await read_json(request))
    previous = await current_session(request)
    if previous is not None:
        await service.sessions.end(previous)
    # The password step changes no view a client reads (only the lockout state), so no wait.
    step: LoginStep = (await service.command(service.app.login, body.email, body.password,
                                             settle=False)).value
    window = window_end(request) if step.next in _OPENS_WINDOW else None
    session = await service.sessions.create(step.user_id, step.next, window,
                                            service.clock.now())
    response = json_response({"next": step.next})
    set_cookie(request, response, session)
    return response


async def second_factor(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "second_factor")
    code = CodeBody.model_validate(await read_json(request)).code
    # A TOTP code changes no view a client reads; a recovery code changes the count left.
    written = await service.command(service.app.verify_second_factor, session.user_id, code,
                                    user_id=session.user_id, settle=len(code) != 6)
    step: LoginStep = written.value
    window = window_end(request) if step.next in _OPENS_WINDOW else None
    session = await service.sessions.replace(session, step.next, window, service.clock.now())
    response = json_response({"next": step.next})
    set_cookie(request, response, session)
    return response


async def logout(request: web.Request) -> web.Response:
    session = await current_session(request)
    if session is not None:
        await request.app[SERVICE].sessions.end(session)
    response = json_response({"logged_out": True})
    clear_cookie(response)
    return response


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/login", login),
        web.post("/api/login/second-factor", second_factor),
        web.post("/api/logout", logout),
    ]
