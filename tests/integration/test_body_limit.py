"""A body over 64 KiB is refused with 413 on every state-changing call, also on the calls that
never read their body (setup, regenerate, disable, reset, logout), and changes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import Api, create_user

BIG = b'{"pad": "' + b"x" * (65 * 1024) + b'"}'


@pytest.mark.parametrize("path", [
    "/api/me/2fa/setup", "/api/me/2fa/recovery-codes/regenerate", "/api/me/2fa/disable",
    "/api/logout", "/api/login", "/api/me/reauthenticate",
])
async def test_oversized_bodies_are_413(admin: Api, path: str) -> None:
    status, body = await admin.call("POST", path, BIG)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    status, _ = await admin.get("/api/me")
    assert status == 200  # logout with a huge body did not log out


async def test_oversized_reset_changes_nothing(admin: Api) -> None:
    user = await create_user(admin)
    status, body = await admin.call("POST", f"/api/admin/users/{user['user_id']}/2fa/reset", BIG)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
