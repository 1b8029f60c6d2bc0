"""JSON responses with orjson (UUIDs and datetimes serialized as the contract says)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_UTC_Z), status=status,
                        content_type="application/json")


def iso(when: datetime | float) -> str:
    """ISO 8601 in UTC with microseconds, as SPEC section 4 asks."""
    if isinstance(when, float | int):
        when = datetime.fromtimestamp(when, tz=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds")
