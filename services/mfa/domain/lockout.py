"""Brute-force throttling: after `threshold` consecutive failures the account waits.

The first wait is `base_seconds`; each further failure doubles it, up to `max_seconds`. The count
is per account, across sessions (RFC 4226 section 7.3), and only a completed login resets it, so
a right password cannot be used to clear the count of wrong second factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5
    base_seconds: int = 30
    max_seconds: int = 3600

    def locked_until(self, failures: int, now: datetime) -> datetime | None:
        if failures < self.threshold:
            return None
        wait = min(self.base_seconds * 2 ** (failures - self.threshold), self.max_seconds)
        return now + timedelta(seconds=wait)
