"""Security keys and passkeys (WebAuthn): *My account > Security > Add a security key or
passkey*, the list (rename, remove), and login step 2 with a key.

Each ceremony is two calls: options (with a challenge kept in the session, single use, two
minutes), then the browser's answer. Adding or removing a key needs the 10-minute password
window, like *Configure 2FA*; a forced setup may add a key as its first factor.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from services.mfa.adapters import passkeys as webauthn
from services.mfa.adapters.sessions import Session
from services.mfa.domain.session_states import Step
from services.mfa.http.auth import (
    advance,
    require,
    require_window,
    set_device_cookie,
)
from services.mfa.http.context import SERVICE
from services.mfa.http.errors import not_found, validation_error
from services.mfa.http.login import second_factor_passed
from services.mfa.http.middleware import client_address, own_origin
from services.mfa.http.responses import iso, json_response
from services.mfa.http.schemas import CredentialBody, NewPasskeyBody, PasskeyNameBody, read_json

CHALLENGE_SECONDS = 120


def relying_party(request: web.Request) -> webauthn.RelyingParty:
    """The service as users reach it: MFA_PUBLIC_URL, else the request's own origin."""
    origin = own_origin(request)
    return webauthn.RelyingParty(id=urlsplit(origin).hostname or "localhost",
                                 name=request.app[SERVICE].settings.issuer, origin=origin)


def _listed(key: dict[str, Any]) -> dict[str, Any]:
    return {"id": key["id"], "name": key["name"], "added_at": iso(key["added_at"]),
            "last_used_at": iso(key["last_used_at"]) if key["last_used_at"] else None,
            "user_verified": key["user_verified"]}


def _credential(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    try:
        return raw, webauthn.credential_id(raw)
    except webauthn.PasskeyResponseInvalid as e:
        raise validation_error(f"credential: {e}") from None


async def _challenge(request: web.Request, session: Session, kind: str) -> str:
    service = request.app[SERVICE]
    challenge = await service.sessions.take_challenge(session, kind, service.clock.now())
    if challenge is None:
        raise validation_error("credential: no ceremony in progress (ask for the options "
                               "first; they last two minutes and serve one answer)")
    return challenge


# ---- My account > Security ---------------------------------------------------------------------

async def list_passkeys(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done")
    keys = await service.call(service.app.passkeys, session.user_id)
    return json_response({"passkeys": [_listed(key) for key in keys]})


async def registration_options(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done", "setup_2fa")
    require_window(request, session, setup=True)
    account = await service.call(service.app.account, session.user_id)
    existing = [key["id"] for key in await service.call(service.app.passkeys, session.user_id)]
    options, challenge = webauthn.registration_options(
        relying_party(request), session.user_id, account.email, account.name, existing)
    await service.sessions.set_challenge(
        session, "register", challenge, service.clock.now().timestamp() + CHALLENGE_SECONDS)
    return json_response({"options": options})


async def register(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done", "setup_2fa")
    require_window(request, session, setup=True)
    body = NewPasskeyBody.model_validate(await read_json(request))
    credential, _ = _credential(body.credential)
    challenge = await _challenge(request, session, "register")
    try:
        key = webauthn.verify_registration(relying_party(request), credential, challenge)
    except webauthn.PasskeyResponseInvalid as e:
        raise validation_error(f"credential: the security key's answer did not verify ({e})"
                               ) from None
    forced = session.state == "setup_2fa"
    codes = (await service.command(
        partial(service.app.register_passkey, session.user_id, key, body.name, forced=forced),
        user_id=session.user_id)).value
    keys = await service.call(service.app.passkeys, session.user_id)
    added = next(k for k in keys if k["id"] == key.passkey_id)
    response = json_response({"passkey": _listed(added), "recovery_codes": codes or None},
                             status=201)
    if forced:  # the key is the first factor: the forced setup is complete
        session = await advance(request, response, session, Step.SETUP_COMPLETED)
        set_device_cookie(request, response, session)
    return response


async def rename(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done")
    name = PasskeyNameBody.model_validate(await read_json(request)).name
    passkey_id = request.match_info["passkey_id"]
    await service.command(service.app.rename_passkey, session.user_id, passkey_id, name,
                          user_id=session.user_id)
    keys = await service.call(service.app.passkeys, session.user_id)
    return json_response({"passkey": _listed(next(k for k in keys if k["id"] == passkey_id))})


async def remove(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "done")
    require_window(request, session, setup=False)
    await service.command(service.app.remove_passkey, session.user_id,
                          request.match_info["passkey_id"], user_id=session.user_id)
    return json_response({"two_factor": await service.two_factor(session.user_id)})


# ---- login step 2 --------------------------------------------------------------------------------

async def login_options(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "second_factor")
    keys = [key["id"] for key in await service.call(service.app.passkeys, session.user_id)]
    if not keys:
        raise not_found("no security key or passkey on this account: use a code")
    options, challenge = webauthn.authentication_options(relying_party(request), keys)
    await service.sessions.set_challenge(
        session, "login", challenge, service.clock.now().timestamp() + CHALLENGE_SECONDS)
    return json_response({"options": options})


async def login_with_passkey(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session = await require(request, "second_factor")
    credential, passkey_id = _credential(
        CredentialBody.model_validate(await read_json(request)).credential)
    challenge = await _challenge(request, session, "login")
    rp = relying_party(request)

    def check(public_key: str) -> webauthn.Signature | None:
        return webauthn.verify_signature(rp, credential, challenge, public_key)

    with service.metrics.second_factor("passkey"):
        written = await service.command(
            partial(service.app.verify_passkey, session.user_id, passkey_id, check,
                    client_address(request)),
            user_id=session.user_id, settle=False)
    return await second_factor_passed(request, session, written.value)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/me/passkeys", list_passkeys),
        web.post("/api/me/passkeys/options", registration_options),
        web.post("/api/me/passkeys", register),
        web.patch("/api/me/passkeys/{passkey_id}", rename),
        web.delete("/api/me/passkeys/{passkey_id}", remove),
        web.post("/api/login/passkey/options", login_options),
        web.post("/api/login/passkey", login_with_passkey),
    ]
