"""A user's 2FA as it is shown: status On or Off, Required, recovery codes left, and the F6
banner (required and not On). One definition for both services.

The MFA aggregate, the per-user view, the relay (the `state` of every public event) and the
notifier all build this value, and only its `banner` decides whether the bar shows. It lives in
`contracts/` because the notifier, which never imports the MFA service, needs the same rule;
the MFA service imports it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from contracts.events import UserState

Status = Literal["on", "off"]


@dataclass(frozen=True)
class ShownState:
    status: Status
    required: bool
    recovery_codes_left: int | None = None  # None where it is not carried: the bus `state`

    @classmethod
    def of(cls, on: bool, required: bool, recovery_codes_left: int) -> ShownState:
        return cls("on" if on else "off", required, recovery_codes_left)

    @classmethod
    def from_bus(cls, state: UserState) -> ShownState:
        """From the `state` of a public event: status and required, no count of codes."""
        return cls(state["status"], state["required"])

    @property
    def banner(self) -> bool:
        """F6: the notification bar shows while 2FA is required and not configured."""
        return self.required and self.status == "off"

    def to_bus(self) -> UserState:
        """As the `state` of a public event."""
        return UserState(status=self.status, required=self.required)

    def to_json(self) -> dict[str, Any]:
        """As the `two_factor` object of GET /api/me, the pages and the socket check."""
        return {"status": self.status, "required": self.required,
                "recovery_codes_left": self.recovery_codes_left, "banner": self.banner}
