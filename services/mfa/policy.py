"""The policy enforcer: applies each organization's 2FA policy to its users, as it follows the log.

*Require 2FA for all users* is one event on the organization (`PolicySet`); making 10,000 users
Required is then this follower's work, a few hundred users per transaction, each user's own
`RequirementSet` (reason "policy", the admin who set the policy as its actor) so the grid, the
counts, the audit and the live banner follow as for any other requirement. Turning it off lifts
the requirements the policy set and only those; an admin's own Required stays.

It resumes from its tracked position after a crash and re-applies idempotently (a user already
Required changes nothing). It applies the organization's current policy, not the event's, so a
policy switched on and off again while it lagged behind makes no churn. A user created while the
policy changes is caught by its own `MfaCreated`, checked against the current policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from services.mfa.adapters.database import Database
from services.mfa.application import MfaApplication, actor
from services.mfa.domain.account import Organization
from services.mfa.domain.mfa import MFA, REQUIRED_BY_POLICY
from services.mfa.log_follower import MOVE_POSITION, LogFollower
from services.mfa.projections import users_grid

log = logging.getLogger(__name__)
_POLICY_SET = get_topic(Organization.PolicySet)
_MFA_CREATED = get_topic(MFA.MfaCreated)


class PolicyEnforcer(LogFollower):
    name = "policy"

    def __init__(self, app: MfaApplication, db: Database, views: LogFollower,
                 **options: Any) -> None:
        super().__init__(app, db, **options)
        self.mfa_app = app
        self.views = views  # the users grid says who belongs to an organization
        self.last_written = 0  # the position of the last requirement this follower saved

    async def handle(self, notifications: Sequence[Notification], start: int) -> bool:
        for notification in notifications:
            if notification.topic == _POLICY_SET:
                event: Any = self.app.mapper.to_domain_event(notification)
                await self._apply(event.originator_id, notification.id, event.actor)
            elif notification.topic == _MFA_CREATED:
                created: Any = self.app.mapper.to_domain_event(notification)
                await self._new_user(created.org_id, created.user_id, created.required)
        moved = await self.db.execute(MOVE_POSITION, notifications[-1].id, self.name, start)
        return moved == 1

    async def _apply(self, org_id: UUID, position: int, by: str) -> None:
        """Every user of the organization, as its current policy says."""
        organization = await asyncio.to_thread(self.mfa_app.organization, org_id)
        # The grid holds every user created before the policy was set once it reached it.
        if not await self.views.wait_for(position, within_seconds=300):
            raise TimeoutError("the users grid is behind the policy; retrying")
        required = organization.require_all
        candidates = await users_grid.user_ids(self.db, org_id, required=not required)
        written = await asyncio.to_thread(
            self.mfa_app.set_requirements, org_id, candidates, required, by, REQUIRED_BY_POLICY)
        self.last_written = max(self.last_written, written.position)
        log.info("policy of organization %s applied: %d users now %s", org_id, written.value,
                 "required" if required else "no longer required by the policy")

    async def _new_user(self, org_id: UUID, user_id: UUID, required: bool) -> None:
        if required:
            return
        organization = await asyncio.to_thread(self.mfa_app.organization, org_id)
        if organization.new_users_required():
            written = await asyncio.to_thread(
                self.mfa_app.set_requirements, org_id, [user_id], True,
                actor("system", "policy"), REQUIRED_BY_POLICY)
            self.last_written = max(self.last_written, written.position)
