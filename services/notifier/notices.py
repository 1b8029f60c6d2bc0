"""What a user's open pages are told about each event: the F6 banner and security notices."""

from __future__ import annotations

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
            await self.live.end_session(ended["user_id"], ended["session_id"])
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
                await self.live.send_banner(user_id, banner_message(state, event["position"]))
        notice = notice_for(event)
        if notice is not None:
            await self.live.send(user_id, {
                "type": "notice", "event": event["type"], "message": notice,
                "occurred_at": event["occurred_at"],
                "banner": state is not None and state.banner,
            })
