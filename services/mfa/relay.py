"""The relay: every stored event, as a public event, onto the bus. At least once, in order per
user, resuming from its tracked position after any crash.

The position moves only after the broker confirmed the whole batch, so a crash between publish
and record re-sends that batch: consumers deduplicate on the event id.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from contracts.bus import Bus
from contracts.events import PublicEvent, UserState
from services.mfa.adapters.database import Database
from services.mfa.application import MfaApplication
from services.mfa.domain.mfa import MFA, mfa_id
from services.mfa.log_follower import MOVE_POSITION, LogFollower
from services.mfa.public_events import is_public, next_state, to_public


class UserStates:
    """Each user's 2FA state as the relay goes through the log, so every message can carry the
    state after its event. Learned from the log as it passes; after a restart, a user met for the
    first time is read from the store at the version of the event at hand."""

    def __init__(self, app: MfaApplication, size: int = 100_000) -> None:
        self.app = app
        self.size = size
        self._states: OrderedDict[UUID, UserState | None] = OrderedDict()

    async def after(self, event: Any) -> UserState | None:
        user_id = getattr(event, "user_id", None)
        if user_id is None:
            return None
        if user_id in self._states:
            state = next_state(self._states[user_id], event)
        else:
            state = await asyncio.to_thread(self._read, user_id, event)
        self._states[user_id] = state
        self._states.move_to_end(user_id)
        if len(self._states) > self.size:
            self._states.popitem(last=False)
        return state

    def _read(self, user_id: UUID, event: Any) -> UserState | None:
        own = event.originator_id == mfa_id(user_id)
        try:
            mfa: Any = self.app.repository.get(
                mfa_id(user_id), version=event.originator_version if own else None)
        except Exception:  # not created yet (an account's first event comes before it)
            return None
        assert isinstance(mfa, MFA)
        return UserState(status="on" if mfa.is_on else "off", required=mfa.required)


class Relay(LogFollower):
    name = "relay"

    def __init__(self, app: MfaApplication, db: Database, bus: Bus, **options: Any) -> None:
        super().__init__(app, db, **options)
        self.bus = bus
        self.states = UserStates(app)
        self.published = 0

    async def handle(self, notifications: Sequence[Notification], start: int) -> bool:
        events: list[PublicEvent] = []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            if is_public(event):
                events.append(to_public(event, notification.id, await self.states.after(event)))
        await self.bus.publish(events)
        self.published += len(events)
        moved = await self.db.execute(MOVE_POSITION, notifications[-1].id, self.name, start)
        return moved == 1
