"""Shutting down while the log followers are in the middle of a store call (a race between
the service's own threads): the store must not be closed under a call still running."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

from services.mfa.bootstrap import build_service, close_service, running
from services.mfa.config import Settings
from tests.conftest import FAST_PASSWORDS, SECRET_KEY, START, FrozenClock


async def test_sqlite_shutdown_waits_for_store_calls_in_flight(tmp_path: Path) -> None:
    """A follower is reading the log in a thread when the service shuts down; the store must not
    close before that call is over. Deterministic: the call is held until the shutdown has had
    every chance to close the store, and it records whether the store closed under it."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'mfa.db'}", secret_key=SECRET_KEY,
                        var_dir=tmp_path / "var")
    service = await build_service(settings, clock=FrozenClock(START), passwords=FAST_PASSWORDS)
    recorder: Any = service.app.recorder
    select_notifications = recorder.select_notifications
    armed, entered, release = threading.Event(), threading.Event(), threading.Event()
    store_closed = threading.Event()
    ran_after_close: list[str] = []

    def held_select_notifications(*args: Any, **kwargs: Any) -> Any:
        if armed.is_set():
            entered.set()
            release.wait(timeout=30)
            if store_closed.is_set():  # the real call would now crash the interpreter
                ran_after_close.append(threading.current_thread().name)
                return []
        return select_notifications(*args, **kwargs)

    recorder.select_notifications = held_select_notifications
    close_db = service.db.close

    async def recording_close() -> None:
        store_closed.set()
        await close_db()

    service.db.close = recording_close  # type: ignore[method-assign]

    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(running(service, projections=True, relay=True))
    written = await service.call(service.app.create_organization, "Org", "a@example.com",
                                 "Ada", FAST_PASSWORDS.hash("password-123"), "support:test")
    for follower in service.followers:  # all caught up: none has a store call of its own left
        assert await follower.wait_for(written.position)
    armed.set()
    for follower in service.followers:
        follower.kick()
    assert await asyncio.to_thread(entered.wait, 30)

    async def shut_down() -> None:
        await stack.aclose()
        await close_service(service)

    stopping = asyncio.create_task(shut_down())
    for _ in range(100):  # let the shutdown run as far as it goes without the held call
        await asyncio.sleep(0)
    release.set()
    await stopping
    assert ran_after_close == []
