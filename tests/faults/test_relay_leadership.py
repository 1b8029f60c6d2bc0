"""One relay at a time (issue 10, item 4): two `mfa relay` processes on one store, the second
stands by; the leader is killed with SIGKILL mid-stream and the standby takes over within
seconds and publishes the rest: every public event reaches the queue, in order per user
(duplicates allowed, gaps not)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import Platform
from tests.faults.support import until
from tests.faults.test_faults import _at_least, check_published_in_order

pytestmark = [pytest.mark.postgres]


async def test_standby_relay_takes_over_when_the_leader_is_killed(platform: Platform) -> None:
    app = platform.app
    leader = platform.start("relay-a", "relay")
    head = await platform.head()
    await until(lambda: _at_least(platform.tracked("relay"), head), 30, "the first relay")
    standby = platform.start("relay-b", "relay")
    await until(lambda: "standing by" in standby.output(), 30, "the second relay to stand by")
    assert "this process leads" in leader.output()

    stop = asyncio.Event()
    written = 0

    async def write() -> None:  # a steady stream of public events for three users
        nonlocal written
        while not stop.is_set():
            user_id = platform.user_ids[written % 3]
            await asyncio.to_thread(app.update_user, platform.org_id, user_id,
                                    f"Name {written}", None, written % 2 == 0, "support:test")
            written += 1
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(write())
    try:
        start = await platform.tracked("relay")
        await until(lambda: _at_least(platform.tracked("relay"), start + 40), 30,
                    "the leader publishing the stream")
        assert "this process leads" not in standby.output()
        leader.kill()
        killed_at = time.monotonic()
        killed_position = await platform.tracked("relay")
        await until(lambda: _at_least(platform.tracked("relay"), killed_position + 20), 15,
                    "the standby to publish")
        took_over = time.monotonic() - killed_at
        assert "this process leads" in standby.output()
        assert took_over < 5, f"the standby took {took_over:.1f} s"
    finally:
        stop.set()
        await writer
    head = await platform.head()
    await until(lambda: _at_least(platform.tracked("relay"), head), 30, "the rest published")
    assert standby.alive
    check_published_in_order(platform, await platform.probe.drain())
    assert standby.stop() == 0
