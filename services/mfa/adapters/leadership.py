"""Leadership among processes of one kind, by a PostgreSQL advisory lock.

The lock is session-level and lives on a connection of its own: whoever holds it leads, and the
others stand by, trying again every `retry_seconds`. When the leader dies (even by SIGKILL),
PostgreSQL ends its session as the socket closes, which releases the lock: a standby takes over
within a retry. The leader checks its connection every `check_seconds`; if the check fails the
leader steps down at once, and `idle_session_timeout` (the lease) makes PostgreSQL end a
session whose leader stopped checking (a frozen process, a cut network), so a standby can
take over within the lease even then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from services.mfa.adapters.database import PostgresDatabase

log = logging.getLogger(__name__)


class Leadership:
    def __init__(self, db: PostgresDatabase, name: str, *, retry_seconds: float = 0.5,
                 check_seconds: float = 1.0, lease_seconds: float = 5.0) -> None:
        self.db = db
        self.key = f"mfa-service {name} {db.schema}"
        self.name = name
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.lease_seconds = lease_seconds
        self.is_leader = False
        self._conn: asyncpg.Connection | None = None
        self._stopping = asyncio.Event()

    async def acquire(self) -> bool:
        """Waits until this process leads (True), or until `stop()` (False)."""
        said_standby = False
        while not self._stopping.is_set():
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self.db.connect_one()
                    await self._conn.execute(
                        f"SET idle_session_timeout = {int(self.lease_seconds * 1000)}")
                if await self._conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))",
                                             self.key, timeout=self.check_seconds * 2):
                    self.is_leader = True
                    log.info("%s: this process leads", self.name)
                    return True
                if not said_standby:
                    log.info("%s: standing by (another process leads)", self.name)
                    said_standby = True
            except Exception as e:  # the store is away: keep trying, quietly
                log.debug("%s: leadership not acquired: %s", self.name, e)
                await self._drop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.retry_seconds)
        return False

    async def lost(self) -> None:
        """Returns when this process may no longer hold the lock (its connection failed)."""
        while not self._stopping.is_set():
            conn = self._conn
            if conn is None or conn.is_closed():
                break
            try:
                await conn.fetchval("SELECT 1", timeout=self.check_seconds * 2)
            except Exception as e:
                log.warning("%s: leadership lost (%s: %s)", self.name, type(e).__name__, e)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.check_seconds)
        self.is_leader = False
        await self._drop()

    def stop(self) -> None:
        self._stopping.set()

    async def release(self) -> None:
        """Ends the session, which releases the lock."""
        self.is_leader = False
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.check_seconds)
            if not conn.is_closed():
                conn.terminate()
