"""Telling the notifiers that a login session ended, so its open pages close (SPEC section 4)."""

from __future__ import annotations

import asyncio
import logging
from uuid import uuid4

from aiohttp import web

from contracts.events import SESSION_ENDED, SessionEnded
from services.mfa.adapters.sessions import Session
from services.mfa.http.context import SERVICE
from services.mfa.http.responses import iso

log = logging.getLogger(__name__)
PENDING = web.AppKey("session_ended_pending", set[asyncio.Task[None]])  # set by create_app


async def session_ended(request: web.Request, session: Session, reason: str) -> None:
    """Publishes `SessionEnded` without making the client wait for the bus: a logout must not
    hang on a broker outage. If the message is lost, the notifiers' periodic check of their
    sockets' sessions closes the pages instead."""
    service = request.app[SERVICE]
    message = SessionEnded(id=str(uuid4()), version=1, type=SESSION_ENDED,
                           user_id=str(session.user_id), session_id=session.sid, reason=reason,
                           occurred_at=iso(service.clock.now()))

    async def publish() -> None:
        try:
            await service.bus.publish([message])
        except Exception as e:
            service.metrics.sessions_ended.labels("failed").inc()
            log.warning("SessionEnded not published (%s); notifiers will find out by their "
                        "periodic check", type(e).__name__)
        else:
            service.metrics.sessions_ended.labels("published").inc()

    pending = request.app[PENDING]
    task = asyncio.create_task(publish())
    pending.add(task)
    task.add_done_callback(pending.discard)


async def wait_for_pending(app: web.Application) -> None:
    """At shutdown, before the bus closes."""
    if app[PENDING]:
        await asyncio.gather(*app[PENDING], return_exceptions=True)
