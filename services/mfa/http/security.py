"""My account > Security: the user's own 2FA (F2 configure, F4 recovery codes, F9 disable)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from functools import partial

import segno
from aiohttp import web

from services.mfa.adapters.sessions import Session
from services.mfa.application import Enrollment
from services.mfa.domain.session_states import Step
from services.mfa.http.auth import (
    advance,
    current_session,
    require,
    require_window,
    set_cookie,
    set_device_cookie,
    window_end,
)
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import unauthenticated, validation_error
from services.mfa.http.middleware import client_address
from services.mfa.http.responses import iso, json_response
from services.mfa.http.schemas import CodeBody, PasswordBody, read_json


def _session_fields(session: Session) -> dict[str, object]:
    return {"id": session.sid, "state": session.state, "expires_at": iso(session.expires_at)}


async def me(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done", "setup_2fa", "regenerate_codes")
    account = await service.call(service.app.account, session.user_id)
    return json_response({
        "user_id": str(account.id),
        "org_id": str(account.org_id),
        "email": account.email,
        "name": account.name,
        "role": account.role,
        "two_factor": await service.two_factor(session.user_id),
        "session": _session_fields(session),
    })


async def session_check(request: web.Request) -> web.Response:
    """For the notifier: is this session still live, and the user's 2FA state. A check, not a
    use: it does not renew the idle lifetime (an open page must not keep a session alive)."""
    service = request.app[SERVICE]
    session = await current_session(request, touch=False)
    if session is None or session.state == "second_factor":
        raise unauthenticated()
    return json_response({"user_id": str(session.user_id),
                          "two_factor": await service.two_factor(session.user_id),
                          "session": _session_fields(session)})


async def reauthenticate(request: web.Request) -> web.Response:
    """Opens the password window. Also from a forced setup or regeneration whose window ran
    out (SPEC section 4: not a dead end). Renews the window only: the session still ends when
    its login's absolute lifetime does."""
    service = request.app[SERVICE]
    session = await require(request, "done", "setup_2fa", "regenerate_codes")
    password = PasswordBody.model_validate(await read_json(request)).password
    with service.metrics.password_step():
        await service.logins.reauthenticate(session.user_id, session.sid, password,
                                            client_address(request))
    until = min(window_end(request), session.expires_at)
    session = await service.sessions.replace(session, session.state, until, service.clock.now())
    response = json_response({"window_expires_at": iso(until)})
    set_cookie(request, response, session)
    return response


def _qr_svg(uri: str) -> str:
    buffer = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(buffer, kind="svg", scale=4, xmldecl=False,
                                                 title="QR code for your authenticator app")
    return buffer.getvalue().decode()


async def setup(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done", "setup_2fa")
    require_window(request, session, setup=True)
    assert session.window_until is not None
    ends = datetime.fromtimestamp(session.window_until, tz=UTC)
    enrollment: Enrollment = (await service.command(
        partial(service.app.start_enrollment, session.user_id, ends,
                forced=session.state == "setup_2fa"),
        user_id=session.user_id)).value
    return json_response({
        "setup_key": enrollment.setup_key,
        "otpauth_uri": enrollment.otpauth_uri,
        "qr_svg": _qr_svg(enrollment.otpauth_uri),
        "expires_at": iso(enrollment.expires_at),
    })


async def verify_setup(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done", "setup_2fa")
    require_window(request, session, setup=True)
    code = CodeBody.model_validate(await read_json(request)).code
    if len(code) != 6:
        raise validation_error("code: the setup code is the 6 digits of your authenticator app")
    forced = session.state == "setup_2fa"
    codes = (await service.command(
        partial(service.app.confirm_enrollment, session.user_id, code, forced=forced),
        user_id=session.user_id)).value
    response = json_response({"recovery_codes": codes})
    if forced:  # configuring 2FA proved the new factor: the login is complete
        session = await advance(request, response, session, Step.SETUP_COMPLETED)
        set_device_cookie(request, response, session)
    return response


async def recovery_codes(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done")
    require_window(request, session, setup=False)
    codes = await service.call(service.app.recovery_codes, session.user_id)
    return json_response({"codes": [{"code": code, "used": used} for code, used in codes]})


async def recovery_codes_txt(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done")
    require_window(request, session, setup=False)
    codes = await service.call(service.app.recovery_codes, session.user_id)
    account = await service.call(service.app.account, session.user_id)
    lines = [f"{service.settings.issuer} recovery codes for {account.email}",
             "Each code works once. Keep them somewhere safe.", ""]
    lines += [f"{code}{'  (used)' if used else ''}" for code, used in codes]
    return web.Response(
        text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="recovery-codes.txt"'},
    )


async def regenerate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done", "regenerate_codes")
    require_window(request, session, setup=False)
    codes = (await service.command(service.app.regenerate_codes, session.user_id,
                                   user_id=session.user_id)).value
    response = json_response({"recovery_codes": codes})
    if session.state != "done":
        await advance(request, response, session, Step.CODES_REGENERATED)
    return response


async def disable(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done")
    require_window(request, session, setup=False)
    await service.command(service.app.disable, session.user_id, user_id=session.user_id)
    return json_response({"two_factor": {"status": "off"}})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/me", me),
        web.get("/api/session", session_check),
        web.post("/api/me/reauthenticate", reauthenticate),
        web.post("/api/me/2fa/setup", setup),
        web.post("/api/me/2fa/setup/verify", verify_setup),
        web.get("/api/me/2fa/recovery-codes", recovery_codes),
        web.get("/api/me/2fa/recovery-codes.txt", recovery_codes_txt),
        web.post("/api/me/2fa/recovery-codes/regenerate", regenerate),
        web.post("/api/me/2fa/disable", disable),
    ]
