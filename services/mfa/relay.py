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

from contracts.events import PublicEvent, UserState
from services.messaging.bus import Bus
from services.mfa.adapters.database import Database
from services.mfa.application import MfaApplication
from services.mfa.domain.mfa import MFA, mfa_id
from services.mfa.log_follower import MOVE_POSITION, LogFollower
from services.mfa.public_events import is_public, next_state, to_public


class UserStates:
    """Each user's 2FA state as the relay goes through the log, so every message can carry the
    state right after its event. Learned from the log as it passes; a user met for the first
    time (after a restart, say) is read from the store as it was at that point of the log."""

    def __init__(self, app: MfaApplication, db: Database, size: int = 100_000) -> None:
        self.app = app
        self.db = db
        self.size = size
        self._states: OrderedDict[UUID, UserState | None] = OrderedDict()

    async def after(self, event: Any, position: int) -> UserState | None:
        user_id = getattr(event, "user_id", None)
        if user_id is None:
            return None
        if user_id in self._states:
            state = next_state(self._states[user_id], event)
        else:
            state = await self._read(user_id, event, position)
        self._states[user_id] = state
        self._states.move_to_end(user_id)
        if len(self._states) > self.size:
            self._states.popitem(last=False)
        return state

    async def _read(self, user_id: UUID, event: Any, position: int) -> UserState | None:
        aggregate_id = mfa_id(user_id)
        if event.originator_id == aggregate_id:
            version: int | None = event.originator_version
        else:  # an account event: the MFA aggregate as stored before this point of the log
            version = await self._version_before(aggregate_id, position)
            if version is None:
                return None  # not created yet: an account's first event comes before it
        mfa: Any = await asyncio.to_thread(self.app.repository.get, aggregate_id, version=version)
        assert isinstance(mfa, MFA)
        return mfa.shown_state().to_bus()

    async def _version_before(self, aggregate_id: UUID, position: int) -> int | None:
        # The views live in the event store's database, so its table is at hand.
        key: UUID | str
        if self.db.dialect == "postgres":
            sql, key = ("SELECT max(originator_version) AS v FROM mfa_events"
                        " WHERE originator_id = ? AND notification_id < ?"), aggregate_id
        else:  # eventsourcing's SQLite table: ids as bare hex, the log position is the rowid
            sql, key = ("SELECT max(originator_version) AS v FROM stored_events"
                        " WHERE originator_id = ? AND rowid < ?"), aggregate_id.hex
        row = await self.db.fetchrow(sql, key, position)
        return int(row["v"]) if row and row["v"] is not None else None


class Relay(LogFollower):
    name = "relay"

    def __init__(self, app: MfaApplication, db: Database, bus: Bus, **options: Any) -> None:
        super().__init__(app, db, **options)
        self.bus = bus
        self.states = UserStates(app, db)
        self.published = 0
        self.publish_failures = 0

    async def handle(self, notifications: Sequence[Notification], start: int) -> bool:
        # A broker that is away (or reconnecting) fails the batch at once, rather than after
        # a publish timeout; the bus's reconnection resumes the relay (bootstrap.running).
        await self.bus.ping()
        events: list[PublicEvent] = []
        request_ids: list[str | None] = []  # each event's, into its message's headers
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            if is_public(event):
                events.append(to_public(event, notification.id,
                                        await self.states.after(event, notification.id)))
                request_ids.append(getattr(event, "request_id", None))
        try:
            await self.bus.publish(events, request_ids)
        except Exception:
            self.publish_failures += 1  # the follower retries the batch
            raise
        self.published += len(events)
        moved = await self.db.execute(MOVE_POSITION, notifications[-1].id, self.name, start)
        return moved == 1
