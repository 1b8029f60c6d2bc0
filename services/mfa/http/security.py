"""My account > Security: the user's own 2FA (F2 configure, F4 recovery codes, F9 disable)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import segno
from aiohttp import web

from services.mfa.application import Enrollment
from services.mfa.http.auth import require, require_window, set_cookie, window_end
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import validation_error
from services.mfa.http.responses import iso, json_response
from services.mfa.http.schemas import CodeBody, PasswordBody, read_json


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
    })


async def reauthenticate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    # Restricted sessions already have the window from their login (SPEC section 4).
    session = await require(request, "done")
    password = PasswordBody.model_validate(await read_json(request)).password
    await service.command(service.app.reauthenticate, session.user_id, password,
                          user_id=session.user_id)
    until = window_end(request)
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
        service.app.start_enrollment, session.user_id, ends, user_id=session.user_id)).value
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
    codes = (await service.command(service.app.confirm_enrollment, session.user_id, code,
                                   user_id=session.user_id)).value
    response = json_response({"recovery_codes": codes})
    if session.state != "done":  # forced setup complete: the session gets full access
        session = await service.sessions.replace(session, "done", session.window_until,
                                                 service.clock.now())
        set_cookie(request, response, session)
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
        session = await service.sessions.replace(session, "done", session.window_until,
                                                 service.clock.now())
        set_cookie(request, response, session)
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
        web.post("/api/me/reauthenticate", reauthenticate),
        web.post("/api/me/2fa/setup", setup),
        web.post("/api/me/2fa/setup/verify", verify_setup),
        web.get("/api/me/2fa/recovery-codes", recovery_codes),
        web.get("/api/me/2fa/recovery-codes.txt", recovery_codes_txt),
        web.post("/api/me/2fa/recovery-codes/regenerate", regenerate),
        web.post("/api/me/2fa/disable", disable),
    ]
