"""Request bodies, validated with pydantic: strict types, clear messages, size bounds."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.mfa.http.errors import validation_error

# Bidirectional embeddings, overrides and isolates: in a name they make the grid show text in
# another order than it was typed (a "Trojan Source" style spoof of who is who).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """Control characters (NUL above all) have no place in names or emails, and PostgreSQL
    text cannot even store NUL: refuse them here, before they reach the store or a view."""
    if any(unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS for ch in text):
        raise ValueError("control characters are not allowed")
    return text


Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254),
                  AfterValidator(printable)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
NewPassword = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                 AfterValidator(printable)]
Role = Literal["client", "admin"]

# Enough to catch typos; the label of the otpauth URI may not contain a colon (key-uri format).
_EMAIL = re.compile(r"^[^@\s:/]+@[^@\s:/]+\.[^@\s:/]+$")
_SEPARATORS = re.compile(r"[\s-]")


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class LoginBody(Body):
    email: Email
    password: Password


class CodeBody(Body):
    code: Annotated[str, StringConstraints(max_length=32)]

    @field_validator("code")
    @classmethod
    def digits(cls, code: str) -> str:
        code = _SEPARATORS.sub("", code)
        if not code.isascii() or not code.isdigit() or len(code) not in (6, 8):
            raise ValueError("a code is 6 digits (authenticator app) or 8 (recovery code)")
        return code


class PasswordBody(Body):
    password: Password


class NewUserBody(Body):
    email: Email
    name: Name
    role: Role = "client"
    password: NewPassword
    two_factor_required: bool = False

    @field_validator("email")
    @classmethod
    def email_shape(cls, email: str) -> str:
        if not _EMAIL.match(email):
            raise ValueError("not an email address")
        return email.lower()


PasskeyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=64), AfterValidator(printable)]


class PasskeyNameBody(Body):
    name: PasskeyName


class CredentialBody(Body):
    """A browser's PublicKeyCredential, as JSON (base64url fields), from the WebAuthn API."""

    credential: dict[str, Any]


class NewPasskeyBody(CredentialBody):
    name: PasskeyName


class PolicyBody(Body):
    """Settings > Security policy."""

    require_all: bool
    require_new: bool


class UsersFilter(Body):
    """The users grid's filters, as in GET /api/admin/users."""

    status: Literal["on", "off"] | None = None
    required: bool | None = None
    q: Annotated[str, StringConstraints(max_length=200), AfterValidator(printable)] | None = None


class BulkRequirementBody(Body):
    """Required / Not required for the users selected in the grid (`user_ids`, at most 1,000),
    or for all users matching the grid's filters (`filter`): exactly one of them."""

    required: bool
    user_ids: Annotated[list[Annotated[str, StringConstraints(max_length=36)]],
                        Field(max_length=1000)] | None = None
    filter: UsersFilter | None = None

    @model_validator(mode="after")
    def one_selection(self) -> BulkRequirementBody:
        if (self.user_ids is None) == (self.filter is None):
            raise ValueError("give either user_ids or filter")
        return self


class UserChangeBody(Body):
    name: Name | None = None
    role: Role | None = None
    two_factor_required: bool | None = None


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body counts as `{}`."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise validation_error("malformed JSON body") from None
    if not isinstance(data, dict):
        raise validation_error("the body must be a JSON object")
    return data
