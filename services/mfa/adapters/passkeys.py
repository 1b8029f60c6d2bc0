"""WebAuthn ceremonies (security keys and passkeys), with Duo's `webauthn` library.

The relying party is the service as users reach it: its id is the host of MFA_PUBLIC_URL (else of
the request), and a response must come from that origin exactly. Challenges are random, single
use and kept in the login session (adapters/sessions.py); the public keys are kept by the user's
MFA aggregate, which also decides on the signature counters.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
    WebAuthnException,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

CHALLENGE_BYTES = 32
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+=*")
TIMEOUT_MS = 120_000


class PasskeyResponseInvalid(Exception):
    """A browser's answer that is not a valid ceremony response (malformed, wrong challenge,
    wrong origin or relying party, bad attestation)."""


@dataclass(frozen=True)
class RelyingParty:
    id: str  # a host name, no scheme or port
    name: str
    origin: str  # scheme://host[:port]


@dataclass(frozen=True)
class NewKey:
    passkey_id: str  # base64url credential id
    public_key: str  # base64url COSE key
    sign_count: int
    user_verified: bool


@dataclass(frozen=True)
class Signature:
    sign_count: int
    user_verified: bool


def credential_id(credential: dict[str, Any]) -> str:
    """The credential id a browser's response names (base64url), or PasskeyResponseInvalid."""
    raw = credential.get("rawId", credential.get("id"))
    if not isinstance(raw, str) or not 1 <= len(raw) <= 1400:
        raise PasskeyResponseInvalid("no credential id")
    if not _BASE64URL.fullmatch(raw):
        raise PasskeyResponseInvalid("the credential id is not base64url")
    try:
        return bytes_to_base64url(base64url_to_bytes(raw))
    except (ValueError, TypeError):
        raise PasskeyResponseInvalid("the credential id is not base64url") from None


def registration_options(rp: RelyingParty, user_id: UUID, email: str, display_name: str,
                         existing: list[str]) -> tuple[dict[str, Any], str]:
    """Options for navigator.credentials.create() (as JSON), and their challenge (base64url)."""
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_id=user_id.bytes, user_name=email,
        user_display_name=display_name, challenge=challenge, timeout=TIMEOUT_MS,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(key))
                             for key in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED),
    )
    return orjson.loads(options_to_json(options)), bytes_to_base64url(challenge)


def verify_registration(rp: RelyingParty, credential: dict[str, Any], challenge: str) -> NewKey:
    try:
        verified = verify_registration_response(
            credential=credential, expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.id, expected_origin=rp.origin)
    except (InvalidRegistrationResponse, InvalidJSONStructure, WebAuthnException, ValueError,
            KeyError, TypeError) as e:
        raise PasskeyResponseInvalid(str(e)) from None
    return NewKey(bytes_to_base64url(verified.credential_id),
                  bytes_to_base64url(verified.credential_public_key), verified.sign_count,
                  verified.user_verified)


def authentication_options(rp: RelyingParty, keys: list[str]) -> tuple[dict[str, Any], str]:
    """Options for navigator.credentials.get() naming the user's keys, and their challenge."""
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options = generate_authentication_options(
        rp_id=rp.id, challenge=challenge, timeout=TIMEOUT_MS,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(key))
                           for key in keys],
        user_verification=UserVerificationRequirement.PREFERRED)
    return orjson.loads(options_to_json(options)), bytes_to_base64url(challenge)


def verify_signature(rp: RelyingParty, credential: dict[str, Any], challenge: str,
                     public_key: str) -> Signature | None:
    """The signature's counter and flags, or None when it does not verify. The counter is
    not compared here: the aggregate does it, and records a copy of a key it catches."""
    try:
        verified = verify_authentication_response(
            credential=credential, expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.id, expected_origin=rp.origin,
            credential_public_key=base64url_to_bytes(public_key),
            credential_current_sign_count=0)
    except (InvalidAuthenticationResponse, InvalidJSONStructure, WebAuthnException, ValueError,
            KeyError, TypeError):
        return None
    return Signature(verified.new_sign_count, verified.user_verified)
