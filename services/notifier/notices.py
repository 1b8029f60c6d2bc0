"""What a user's open pages are told about each event: the F6 banner and security notices."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, cast

from contracts.events import (
    LOW_RECOVERY_CODES,
    SECURITY_NOTICES,
    SESSION_ENDED,
    BusMessage,
    PublicEvent,
    SessionEnded,
)
from contracts.shown_state import ShownState
from services.notifier.live_sessions import LiveSessions

log = logging.getLogger(__name__)

# The events that can change whether the banner shows.
BANNER_EVENTS = frozenset({"MfaCreated", "TotpConfirmed", "ResetByAdmin", "TwoFactorDisabled",
                           "RequirementSet", "PasskeyRegistered", "PasskeyRemoved"})


def banner_message(state: ShownState, position: int | None = None) -> dict[str, Any]:
    return {"type": "banner", "show": state.banner, "status": state.status,
            "required": state.required, "position": position}


def notice_for(event: PublicEvent) -> str | None:
    if event["type"] == "RecoveryCodeConsumed":
        left = int(event["data"].get("remaining", 0))
        if left <= LOW_RECOVERY_CODES:
            return f"{left} recovery code{'s' if left != 1 else ''} left: regenerate a new set."
        return None
    return SECURITY_NOTICES.get(event["type"])


class Notifier:
    """Idempotent: an event seen before (by id) is ignored, and a banner older than the last
    one pushed for that user (by log position) is never shown over a newer one."""

    def __init__(self, live: LiveSessions, memory: int = 100_000) -> None:
        self.live = live
        self.memory = memory
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._positions: OrderedDict[str, int] = OrderedDict()
        self.handled = 0
        self.duplicates = 0
        # Messages sent to open pages, by kind, and pages closed because their session ended.
        self.pushed = {"banner": 0, "notice": 0}
        self.closed = 0

    def _remember(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > self.memory:
            table.popitem(last=False)

    async def handle(self, message: BusMessage) -> None:
        if message["id"] in self._seen:
            self.duplicates += 1
            return
        self._remember(self._seen, message["id"], None)
        self.handled += 1
        if message["type"] == SESSION_ENDED:
            ended = cast("SessionEnded", message)
            closed = await self.live.end_session(ended["user_id"], ended["session_id"])
            self.closed += closed
            if closed:
                log.info("closed %d open pages: session ended (%s)", closed, ended["reason"],
                         extra={"user_id": ended["user_id"], "sockets": closed})
            return
        event = cast("PublicEvent", message)
        user_id = event["user_id"]
        if user_id is None:
            return
        state = ShownState.from_bus(event["state"]) if event["state"] is not None else None
        if event["type"] in BANNER_EVENTS and state is not None:
            last = self._positions.get(user_id)
            if last is None or event["position"] > last:
                self._remember(self._positions, user_id, event["position"])
                self._pushed("banner", event, await self.live.send_banner(
                    user_id, banner_message(state, event["position"])))
        notice = notice_for(event)
        if notice is not None:
            self._pushed("notice", event, await self.live.send(user_id, {
                "type": "notice", "event": event["type"], "message": notice,
                "occurred_at": event["occurred_at"],
                "banner": state is not None and state.banner,
            }))

    def _pushed(self, kind: str, event: PublicEvent, sockets: int) -> None:
        """Logged with the request id the message came with: one login or admin save can be
        followed from its HTTP request to this push."""
        if sockets:
            self.pushed[kind] += sockets
            log.info("pushed a %s to %d open pages", kind, sockets, extra={
                "event": event["type"], "event_id": event["id"], "user_id": event["user_id"],
                "position": event["position"], "sockets": sockets})
