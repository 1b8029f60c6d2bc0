"""Structured logs: one JSON object per line on stderr, for every process of both services.

Each line has `time` (ISO 8601, UTC), `level`, `logger`, `message`, the `request_id` of the
request or bus message in hand (when there is one), the fields a call passes in `extra=`, and
`exception` with the traceback when there is one. Configured once per process (`configure`),
through the standard `logging` module, so library loggers (aiohttp, aio-pika, eventsourcing)
come out the same way.

What never goes into a log: request bodies, passwords, codes, secrets, tokens, cookies. The
access line (services/runtime/web.py) has the method, the route, the status and the time.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from services.runtime import request_id

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "request_id", "taskName"}


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (a handler filter, so records of every
    logger get it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.current()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            line["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "INFO") -> None:
    """Every record of the process as JSON on stderr (replaces any earlier configuration)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aio-pika and aiormq say much at INFO about every channel; their warnings still show.
    for noisy in ("aio_pika", "aiormq"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
