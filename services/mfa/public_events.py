"""Turns stored domain events into the public events of `contracts/events.py`.

Used by the audit API and export (history) and by the relay (the bus). Each stored event class
is either published, under the public type PUBLISHED names, or PRIVATE; only the allowlisted
fields of its type leave the service.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.utils import get_topic

from contracts.events import PUBLIC_DATA, SCHEMA_VERSION, PublicEvent, UserState
from contracts.shown_state import ShownState
from services.mfa.domain.account import Account, EmailIndex, Organization
from services.mfa.domain.mfa import MFA

_EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:mfa-service:event")

# The public type each stored event class is published as. The public name is part of the
# contract: renaming a class changes nothing here but the key.
PUBLISHED: dict[type[Any], str] = {
    Organization.OrganizationCreated: "OrganizationCreated",
    Organization.PolicySet: "OrganizationPolicySet",
    Account.AccountCreated: "AccountCreated",
    Account.ProfileChanged: "ProfileChanged",
    MFA.MfaCreated: "MfaCreated",
    MFA.EnrollmentStarted: "EnrollmentStarted",
    MFA.TotpConfirmed: "TotpConfirmed",
    MFA.TotpAccepted: "TotpAccepted",
    MFA.RecoveryCodeConsumed: "RecoveryCodeConsumed",
    MFA.CodesRegenerated: "CodesRegenerated",
    MFA.SecondFactorRejected: "SecondFactorRejected",
    MFA.PasswordRejected: "PasswordRejected",
    MFA.PasswordAccepted: "PasswordAccepted",
    MFA.AttemptThrottled: "AttemptThrottled",
    MFA.RequirementSet: "RequirementSet",
    MFA.ResetByAdmin: "ResetByAdmin",
    MFA.TwoFactorDisabled: "TwoFactorDisabled",
    MFA.PasskeyRegistered: "PasskeyRegistered",
    MFA.PasskeyRenamed: "PasskeyRenamed",
    MFA.PasskeyUsed: "PasskeyUsed",
    MFA.PasskeyCloneSuspected: "PasskeyCloneSuspected",
    MFA.PasskeyRemoved: "PasskeyRemoved",
}
# Stored, never published: the email claim only makes emails unique (its account is public).
PRIVATE: frozenset[type[Any]] = frozenset({EmailIndex.EmailClaimed})

# Looked up by the topic an event is stored under, so whatever class a topic resolves to (a
# class renamed or moved) publishes the same type.
_PUBLIC_TYPES = {get_topic(cls): kind for cls, kind in PUBLISHED.items()}


def event_id(originator_id: UUID, originator_version: int) -> str:
    """A stored event's stable id: the same on every read and every redelivery."""
    return str(uuid5(_EVENT_ID_NAMESPACE, f"{originator_id}:{originator_version}"))


def event_type(event: Any) -> str:
    """The public type of a published event (KeyError for a private one)."""
    return _PUBLIC_TYPES[get_topic(type(event))]


def is_public(event: Any) -> bool:
    return get_topic(type(event)) in _PUBLIC_TYPES


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, UUID):
        return str(value)
    return value


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def public_data(event: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in PUBLIC_DATA[event_type(event)]:
        if name == "recovery_codes_issued":
            data[name] = len(event.recovery_codes)  # how many, never which
        else:
            data[name] = _json_value(getattr(event, name))
    return data


def to_public(event: Any, position: int, state: UserState | None) -> PublicEvent:
    kind = event_type(event)
    user_id = getattr(event, "user_id", None)
    org_id = getattr(event, "org_id", None) or event.originator_id  # an organization's own event
    return PublicEvent(
        id=event_id(event.originator_id, event.originator_version),
        version=SCHEMA_VERSION,
        type=kind,
        position=position,
        user_id=str(user_id) if user_id is not None else None,
        org_id=str(org_id),
        actor=str(event.actor),
        occurred_at=iso(event.timestamp),
        data=public_data(event),
        state=state,
    )


def to_audit(event: Any, position: int) -> dict[str, Any]:
    """An audit record (SPEC section 4): the public event without the bus-only fields."""
    public = to_public(event, position, None)
    return {key: public[key] for key in AUDIT_FIELDS}  # type: ignore[literal-required]


AUDIT_FIELDS = ("position", "id", "type", "user_id", "org_id", "actor", "occurred_at", "data")


def next_state(state: UserState | None, event: Any) -> UserState | None:
    """The user's shown 2FA state after `event`, as public events carry it (status and
    required), from the state before it (None: the user's MFA aggregate did not exist)."""
    if isinstance(event, MFA.MfaCreated):
        return ShownState.of(False, bool(event.required), 0).to_bus()
    if state is None:
        return None
    shown = ShownState.from_bus(state)
    if isinstance(event, MFA.TotpConfirmed | MFA.PasskeyRegistered):
        shown = replace(shown, status="on")
    elif isinstance(event, MFA.PasskeyRemoved) and not event.still_on:
        shown = replace(shown, status="off")
    elif isinstance(event, MFA.ResetByAdmin | MFA.TwoFactorDisabled):
        shown = replace(shown, status="off")
    elif isinstance(event, MFA.RequirementSet):
        shown = replace(shown, required=bool(event.required))
    return shown.to_bus()
