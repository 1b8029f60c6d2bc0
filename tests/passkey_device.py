"""A software security key for tests: soft-webauthn's authenticator (real P-256 keys and
signatures), speaking the JSON a browser's WebAuthn API gives the service (base64url fields)."""

from __future__ import annotations

import copy
from base64 import urlsafe_b64decode, urlsafe_b64encode
from typing import Any

from soft_webauthn import SoftWebauthnDevice


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftKey:
    def __init__(self) -> None:
        self.device = SoftWebauthnDevice()

    def create(self, options: dict[str, Any], origin: str) -> dict[str, Any]:
        """navigator.credentials.create() with the service's registration options."""
        public_key = {**options, "challenge": unb64url(options["challenge"]),
                      "user": {**options["user"], "id": unb64url(options["user"]["id"])}}
        created = self.device.create({"publicKey": public_key}, origin)
        return {"id": b64url(created["rawId"]), "rawId": b64url(created["rawId"]),
                "type": "public-key",
                "response": {"clientDataJSON": b64url(created["response"]["clientDataJSON"]),
                             "attestationObject": b64url(
                                 created["response"]["attestationObject"])}}

    def get(self, options: dict[str, Any], origin: str) -> dict[str, Any]:
        """navigator.credentials.get() with the service's authentication options."""
        public_key = {**options, "challenge": unb64url(options["challenge"])}
        signed = self.device.get({"publicKey": public_key}, origin)
        response = signed["response"]
        return {"id": b64url(signed["rawId"]), "rawId": b64url(signed["rawId"]),
                "type": "public-key",
                "response": {"authenticatorData": b64url(response["authenticatorData"]),
                             "clientDataJSON": b64url(response["clientDataJSON"]),
                             "signature": b64url(response["signature"]),
                             "userHandle": b64url(response["userHandle"])}}

    def clone(self) -> SoftKey:
        """A copy of this key (same private key, same counter from now on): what a cloned
        authenticator is."""
        twin = SoftKey()
        twin.device = copy.deepcopy(self.device)
        return twin

    @property
    def credential_id(self) -> str:
        return b64url(self.device.credential_id)
