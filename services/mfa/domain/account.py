"""Organizations and their users' accounts, event-sourced like the 2FA itself.

Every event class is stored under its TOPIC, which never changes, and has a class_version: see
services/mfa/domain/topics.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate

from services.mfa.domain.clock import not_before
from services.mfa.domain.mfa import RequestId, UserEvent
from services.mfa.domain.topics import stored_as
from services.runtime import request_id as request_ids

ROLES = ("client", "admin")
_EMAIL_NAMESPACE = uuid5(NAMESPACE_URL, "urn:mfa-service:email")


def normalize_email(email: str) -> str:
    return email.strip().lower()


class Organization(Aggregate):
    """An organization and its 2FA policy (*Settings > Security policy*): `require_all` makes
    every user Required (the policy enforcer applies it to each user, and to users created
    later); `require_new` makes new users Required by default."""

    # 2: the 2FA policy (an organization of version 1 had none).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["require_all"] = False
        state["require_new"] = False

    class OrganizationCreated(Aggregate.Created):
        TOPIC = "services.mfa.domain.account:Organization.OrganizationCreated"
        class_version = 1

        name: str
        actor: str
        request_id: str | None = RequestId

    def __init__(self, name: str, actor: str) -> None:
        self.name = name
        self.require_all = False
        self.require_new = False

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return uuid4()

    def set_policy(self, require_all: bool, require_new: bool, now: datetime,
                   actor: str) -> bool:
        """Returns whether anything changed."""
        if (require_all, require_new) == (self.require_all, self.require_new):
            return False
        self.trigger_event(self.PolicySet, timestamp=not_before(now, self.modified_on),
                           actor=actor, require_all=require_all, require_new=require_new)
        return True

    def new_users_required(self) -> bool:
        return self.require_all or self.require_new

    class PolicySet(Aggregate.Event):
        TOPIC = "services.mfa.domain.account:Organization.PolicySet"
        class_version = 1

        actor: str
        require_all: bool
        require_new: bool

        def apply(self, organization: Organization) -> None:
            organization.require_all = self.require_all
            organization.require_new = self.require_new


class Account(Aggregate):
    """A user: organization, email, name, role and argon2 password hash. Its id is the user id."""

    class_version = 1

    class AccountCreated(Aggregate.Created):
        TOPIC = "services.mfa.domain.account:Account.AccountCreated"
        class_version = 1

        user_id: UUID
        org_id: UUID
        actor: str
        email: str
        name: str
        role: str
        password_hash: str
        request_id: str | None = RequestId

    def __init__(self, user_id: UUID, org_id: UUID, actor: str, email: str, name: str,
                 role: str, password_hash: str) -> None:
        self.user_id = user_id
        self.org_id = org_id
        self.email = email
        self.name = name
        self.role = role
        self.password_hash = password_hash

    def change_profile(self, name: str, role: str, now: datetime, actor: str) -> None:
        if (name, role) != (self.name, self.role):
            self.trigger_event(self.ProfileChanged, timestamp=not_before(now, self.modified_on),
                               user_id=self.user_id,
                               org_id=self.org_id, actor=actor, name=name, role=role,
                               request_id=request_ids.current())

    class ProfileChanged(UserEvent):
        TOPIC = "services.mfa.domain.account:Account.ProfileChanged"
        class_version = 1

        name: str
        role: str

        def apply(self, account: Account) -> None:
            account.name = self.name
            account.role = self.role


class EmailIndex(Aggregate):
    """Claims an email for one account. Its id is derived from the email, so a second claim of
    the same email conflicts on version 1 in the event store: uniqueness without a lookup race."""

    class_version = 1

    class EmailClaimed(Aggregate.Created):
        TOPIC = "services.mfa.domain.account:EmailIndex.EmailClaimed"
        class_version = 1

        user_id: UUID
        request_id: str | None = RequestId

    def __init__(self, user_id: UUID) -> None:
        self.user_id = user_id

    @staticmethod
    def id_for(email: str) -> UUID:
        return uuid5(_EMAIL_NAMESPACE, normalize_email(email))


stored_as(Organization, "services.mfa.domain.account:Organization")
stored_as(Account, "services.mfa.domain.account:Account")
stored_as(EmailIndex, "services.mfa.domain.account:EmailIndex")
