"""The published 2FA event contract, imported by the MFA service (producer, audit) and the
notifier (consumer). The JSON Schema in `contracts/schemas/event.schema.json` and the AsyncAPI
document `contracts/asyncapi.yaml` describe the same messages.

A public event never carries a TOTP secret, a recovery code, a password or its hash: `data`
holds only the fields listed in PUBLIC_DATA for its type, nothing else is ever copied.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, TypedDict

SCHEMA_VERSION = 1
DEFAULT_EXCHANGE = "mfa.events"

# Every public event type (a message's `type`) with the `data` fields it publishes. These names
# are the contract, not class names: the MFA service maps each stored event class to one of
# them explicitly (services/mfa/public_events.py PUBLISHED), so renaming a class changes none.
PUBLIC_DATA: dict[str, tuple[str, ...]] = {
    "OrganizationCreated": ("name",),
    "OrganizationPolicySet": ("require_all", "require_new"),
    "AccountCreated": ("email", "name", "role"),
    "ProfileChanged": ("name", "role"),
    "MfaCreated": ("required",),
    "EnrollmentStarted": ("expires_at",),
    "TotpConfirmed": ("recovery_codes_issued",),
    "TotpAccepted": ("address",),
    "RecoveryCodeConsumed": ("remaining", "address",),
    "CodesRegenerated": ("recovery_codes_issued",),
    "SecondFactorRejected": ("factor", "failures", "locked_until", "address"),
    "PasswordRejected": ("factor", "failures", "locked_until", "address"),
    "PasswordAccepted": ("purpose", "address"),
    "AttemptThrottled": ("factor", "until", "address"),
    "RequirementSet": ("required", "reason"),
    "ResetByAdmin": (),
    "TwoFactorDisabled": (),
    # Security keys and passkeys: the credential id and the name the user gave, never the
    # public key or any other key material.
    "PasskeyRegistered": ("passkey_id", "name", "user_verified", "recovery_codes_issued"),
    "PasskeyRenamed": ("passkey_id", "name"),
    "PasskeyUsed": ("passkey_id", "user_verified", "address"),
    "PasskeyCloneSuspected": ("passkey_id", "address"),
    "PasskeyRemoved": ("passkey_id", "still_on"),
}
EVENT_TYPES = tuple(PUBLIC_DATA)

# The events after which the user's open pages get a security notice (NIST SP 800-63B asks that
# the subscriber be told of changes to their authenticators), and the platform mailer an email.
SECURITY_NOTICES = {
    "ResetByAdmin": "Your two-factor authentication was reset.",
    "TwoFactorDisabled": "Two-factor authentication was disabled on your account.",
    "CodesRegenerated": "New recovery codes were generated; the old ones no longer work.",
    "TotpConfirmed": "Two-factor authentication was configured on your account.",
    "PasskeyRegistered": "A security key or passkey was added to your account.",
    "PasskeyRemoved": "A security key or passkey was removed from your account.",
    "PasskeyCloneSuspected": ("A sign-in with a copy of one of your security keys was refused. "
                              "Remove that key and tell your administrator."),
}
LOW_RECOVERY_CODES = 2  # RecoveryCodeConsumed with this many or fewer left also gets a notice


class UserState(TypedDict):
    """The user's shown 2FA state (contracts/shown_state.py) as a public event carries it."""

    status: Literal["on", "off"]
    required: bool


class PublicEvent(TypedDict):
    id: str  # stable per stored event: consumers deduplicate on it
    version: int
    type: str
    position: int
    user_id: str | None
    org_id: str
    actor: str
    occurred_at: str
    data: dict[str, Any]
    state: UserState | None  # the user's 2FA state right after this event


class SessionEnded(TypedDict):
    """Not an event of the log: the API says a login session ended (logout, or a new login in
    the same browser), so notifiers close that session's open pages. Best effort, at most once;
    notifiers also check their sockets' sessions periodically. Schema:
    `contracts/schemas/session-ended.schema.json`."""

    id: str
    version: int
    type: Literal["SessionEnded"]
    user_id: str
    session_id: str | None  # None: every session of the user
    reason: str  # "logout" | "login"
    occurred_at: str


SESSION_ENDED: Final = "SessionEnded"
BusMessage = PublicEvent | SessionEnded


def routing_key(event_type: str) -> str:
    """`mfa.<event>` in snake case, e.g. `mfa.requirement_set`."""
    return "mfa." + re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()

