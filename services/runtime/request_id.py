"""The request id: which HTTP request a log line, a stored event or a bus message came from.

Taken from the client's `X-Request-Id` when it is a sane token (a load balancer's, say), else
made here; returned in the response, put in every log record of the request (the logging
filter reads it from this context variable), stored with the events the request causes and
carried on the bus in the message headers, so one login can be followed from the HTTP request
to the notifier's push on a socket.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

HEADER = "X-Request-Id"
BUS_HEADER = "request_id"
# Letters, digits and . _ : - only, so it is safe in a log line, a header and a metric-free
# event field whatever the client sent; long enough for a UUID or a trace id.
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current() -> str | None:
    """The request id of the work in hand (None outside a request or a message)."""
    return _current.get()


def accept(given: str | None) -> str:
    """The client's id when it is sane, else a new one."""
    if given is not None and _SANE.fullmatch(given):
        return given
    return uuid.uuid4().hex


def sane(given: object) -> str | None:
    """An id from elsewhere (a bus header, str or bytes) if it is sane, else None."""
    if isinstance(given, bytes):
        given = given.decode("ascii", "replace")
    return given if isinstance(given, str) and _SANE.fullmatch(given) else None


@contextlib.contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    """Within the block, `current()` is `request_id`."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)
