"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile by default).

argon2 is slow on purpose, so it runs in threads of its own with a bounded queue in front
(`HashingPool`): a flood of logins fills that capacity and is then told to come back (503)
instead of queueing, while every other request keeps the event loop and the store's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Verified against when the email is unknown, so both answers take the same time.
        self._decoy = self._hasher.hash("decoy password that matches nothing")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._decoy, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


class HashingBusy(Exception):
    """Every hashing thread is busy and the queue is full: the caller should come back soon."""


class HashingPool:
    def __init__(self, passwords: Passwords, threads: int, queue: int) -> None:
        self.passwords = passwords
        self.capacity = threads + queue
        self.capacity_returning = 1 + queue
        self.busy = self.busy_returning = 0
        self.refused = 0
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="argon2")
        self._returning = ThreadPoolExecutor(1, thread_name_prefix="argon2-returning")

    @contextlib.asynccontextmanager
    async def slot(self, *, returning: bool = False) -> AsyncIterator[bool]:
        """Admission: a place among the hashing threads or their short queue, or HashingBusy
        at once. Held across the whole password step, so a flood is refused before it costs
        the store anything. `returning`: a browser that completed a login before (device
        cookie) has a lane of its own (one thread, the same queue length), so a flood of
        strangers neither refuses nor queues the regular users. Yields which lane."""
        lane = returning and self.busy_returning < self.capacity_returning
        if not lane and self.busy >= self.capacity:
            self.refused += 1
            raise HashingBusy()
        if lane:
            self.busy_returning += 1
        else:
            self.busy += 1
        try:
            yield lane
        finally:
            if lane:
                self.busy_returning -= 1
            else:
                self.busy -= 1

    async def verify(self, password_hash: str | None, password: str, *,
                     lane: bool = False) -> bool:
        """Within a slot (`lane`: what the slot yielded)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._returning if lane else self._executor,
                                          self.passwords.verify, password_hash, password)

    async def hash(self, password: str) -> str:
        async with self.slot():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self.passwords.hash, password)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._returning.shutdown(wait=True, cancel_futures=True)
