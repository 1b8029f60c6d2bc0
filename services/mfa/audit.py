"""The audit export: the whole history as JSON Lines, read from the event store itself (the
source of truth, not a view), page by page, so memory stays constant whatever the log's size."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from services.mfa.application import MfaApplication
from services.mfa.public_events import is_public, to_audit

PAGE = 1000


def history(app: MfaApplication, *, org_id: UUID | None = None,
            since: datetime | None = None) -> Iterator[dict[str, object]]:
    position = 0
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=PAGE, inclusive_of_start=False)
        if not notifications:
            return
        for notification in notifications:
            event: Any = app.mapper.to_domain_event(notification)
            if not is_public(event):
                continue
            if since is not None and event.timestamp < since:
                continue
            record = to_audit(event, notification.id)
            if org_id is not None and record["org_id"] != str(org_id):
                continue
            yield record
        position = notifications[-1].id
