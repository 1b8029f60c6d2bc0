"""The read side's SQL: one async interface over SQLite (sqlite3 in threads) and PostgreSQL
(asyncpg). Views, their tracking positions and sessions live here, beside the event store.

Queries are written once with `?` placeholders; PostgreSQL gets them renumbered as `$n`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import asyncpg
import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)
Statement = tuple[str, Sequence[Any]]


class Database(Protocol):
    dialect: str

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Runs one statement; returns the number of rows it changed."""
        ...

    async def mutate(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Runs one writing statement with a RETURNING clause; returns its rows."""
        ...

    async def transaction(self, statements: Sequence[Statement]) -> bool:
        """Runs the statements in one transaction. When the first one changes no row, nothing is
        committed and False is returned: the first statement is the guard (a tracking update)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self._path = path
        self._write = self._connect()
        self._read = self._connect()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None,
                               timeout=10)
        conn.row_factory = sqlite3.Row
        # SQLite's own lower() knows only ASCII: search "Émilie" like PostgreSQL does.
        conn.create_function("lower", 1, str.lower, deterministic=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._fetch, sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> int:
        return await asyncio.to_thread(self._execute, sql, args)

    async def mutate(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._mutate, sql, args)

    async def transaction(self, statements: Sequence[Statement]) -> bool:
        return await asyncio.to_thread(self._transaction, statements)

    async def ping(self) -> None:
        await self.fetch("SELECT 1")

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._write_lock, self._read_lock:  # never under a statement in another thread
            self._write.close()
            self._read.close()

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        with self._read_lock:
            return [dict(row) for row in self._read.execute(sql, tuple(args)).fetchall()]

    def _execute(self, sql: str, args: Sequence[Any]) -> int:
        with self._write_lock:
            return self._write.execute(sql, tuple(args)).rowcount

    def _mutate(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        with self._write_lock:
            return [dict(row) for row in self._write.execute(sql, tuple(args)).fetchall()]

    def _transaction(self, statements: Sequence[Statement]) -> bool:
        if not statements:
            return True
        with self._write_lock:
            conn = self._write
            conn.execute("BEGIN IMMEDIATE")
            try:
                (guard_sql, guard_args), rest = statements[0], statements[1:]
                if conn.execute(guard_sql, tuple(guard_args)).rowcount == 0:
                    conn.execute("ROLLBACK")
                    return False
                for sql, run in itertools.groupby(rest, key=lambda statement: statement[0]):
                    conn.executemany(sql, [tuple(args) for _, args in run])
                conn.execute("COMMIT")
                return True
            except BaseException:
                conn.execute("ROLLBACK")
                raise


async def ensure_columns(db: Database, table: str, columns: Sequence[tuple[str, str]]) -> None:
    """Adds the columns (name, SQL type) a table created by an older version lacks."""
    if db.dialect == "sqlite":
        rows = await db.fetch(f"PRAGMA table_info({table})")
        present = {row["name"] for row in rows}
    else:
        rows = await db.fetch("SELECT column_name FROM information_schema.columns"
                              " WHERE table_name = ? AND table_schema = current_schema()", table)
        present = {row["column_name"] for row in rows}
    for name, kind in columns:
        if name not in present:
            await db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


_PLACEHOLDER = re.compile(r"\?")


def to_postgres(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


async def _keep_session(connection: asyncpg.Connection) -> None:
    return None


def to_psycopg(sql: str) -> str:
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


def _rows_changed(status: str) -> int:
    # asyncpg returns the command tag, e.g. "INSERT 0 1" or "UPDATE 3".
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresDatabase:
    """Reads with asyncpg. Transactions of many statements (projection batches) go through
    psycopg's pipeline mode, which sends them without waiting for each reply: one round trip
    per batch instead of one per statement."""

    dialect = "postgres"

    def __init__(self, pool: asyncpg.Pool, writers: AsyncConnectionPool,
                 connect_args: dict[str, Any], schema: str) -> None:
        self._pool = pool
        self._writers = writers
        self._connect_args = connect_args
        self.schema = schema

    @classmethod
    async def connect(cls, *, host: str, port: int, user: str, password: str, dbname: str,
                      schema: str, max_size: int = 10, timeout_seconds: float = 5.0,
                      command_timeout: float | None = 30.0) -> PostgresDatabase:
        """`timeout_seconds` bounds connecting (a store that is away answers nothing, not even
        a refusal), `command_timeout` each statement (None: no bound, e.g. a rebuild's VACUUM)."""
        connect_args: dict[str, Any] = dict(
            host=host, port=port, user=user, password=password or None, database=dbname,
            timeout=timeout_seconds, server_settings={"search_path": schema})
        pool = await asyncpg.create_pool(
            host=host, port=port, user=user, password=password or None, database=dbname,
            min_size=1, max_size=max_size, command_timeout=command_timeout,
            timeout=timeout_seconds,
            # Every read is planned with its values. A prepared statement may switch to a plan
            # made without them after five runs: five searches only a scan can answer (1 or 2
            # letters, no match) would leave that scan cached for every later search on the
            # connection, rare names included (18 ms instead of 1 at 100,000 users).
            server_settings={"search_path": schema, "plan_cache_mode": "force_custom_plan"},
            reset=_keep_session,  # no session state to reset: skip a query per release
        )
        writers = AsyncConnectionPool(
            conninfo=psycopg.conninfo.make_conninfo(
                host=host, port=port, user=user, password=password or None, dbname=dbname,
                options=f"-c search_path={schema}", connect_timeout=max(2, int(timeout_seconds))),
            min_size=1, max_size=4, open=False, timeout=timeout_seconds,
            check=AsyncConnectionPool.check_connection,  # drop connections an outage broke
            kwargs={"autocommit": True})
        await writers.open()
        return cls(pool, writers, connect_args, schema)

    async def connect_one(self) -> asyncpg.Connection:
        """A connection of its own, outside the pools (a session-level lock lives as long as
        its connection)."""
        return await asyncpg.connect(**self._connect_args)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(to_postgres(sql), *args)
        return [dict(row) for row in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(to_postgres(sql), *args)
        return dict(row) if row is not None else None

    async def execute(self, sql: str, *args: Any) -> int:
        return _rows_changed(await self._pool.execute(to_postgres(sql), *args))

    async def mutate(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await self.fetch(sql, *args)

    async def transaction(self, statements: Sequence[Statement]) -> bool:
        if not statements:
            return True
        (guard_sql, guard_args), rest = statements[0], statements[1:]
        applied = False
        async with self._writers.connection() as conn, conn.transaction():
            cursor = await conn.execute(to_psycopg(guard_sql), tuple(guard_args))
            if cursor.rowcount == 0:
                raise psycopg.Rollback()  # ends the transaction block, nothing written
            async with conn.pipeline():
                cursor = conn.cursor()
                for sql, run in itertools.groupby(rest, key=lambda statement: statement[0]):
                    await cursor.executemany(to_psycopg(sql), [tuple(args) for _, args in run])
            applied = True
        return applied

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def install_extension(self, name: str) -> str:
        """Makes sure the database has the extension `name` and returns the schema it lives in,
        quoted for SQL, to qualify its objects with. An extension lives in one schema per
        database: where it is installed already (e.g. in `public` by
        infra/postgres/create-database.sql) it is used from there, whatever schema this service
        uses; otherwise it is created in this service's schema."""
        where = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = $1"
        schema = await self._pool.fetchval(where, name)
        if schema is None:
            try:
                await self._pool.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}"')
            except asyncpg.UniqueViolationError:
                pass  # another process created it at the same moment
            except asyncpg.PostgresError as e:
                raise RuntimeError(
                    f"PostgreSQL extension {name} is missing and could not be created ({e}): "
                    "run infra/postgres/create-database.sql as the database owner") from e
            schema = await self._pool.fetchval(where, name)
        return str(schema)

    @contextlib.asynccontextmanager
    async def listening(self, channel: str,
                        callback: Callable[[str | None], None]) -> AsyncIterator[None]:
        """Calls `callback(payload)` on every NOTIFY on `channel` while the block runs, and
        `callback(None)` each time listening (re)starts: whatever was announced while nobody
        listened is to be read again. The event store NOTIFYs in each insert transaction, so
        followers in other processes wake at once. A lost connection (PostgreSQL restarted)
        is replaced; followers poll in the meantime."""
        stop = asyncio.Event()
        task = asyncio.create_task(self._listen(channel, callback, stop), name="listen")
        try:
            yield
        finally:
            stop.set()
            await task

    async def _listen(self, channel: str, callback: Callable[[str | None], None],
                      stop: asyncio.Event) -> None:
        pause = 0.5
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                conn = await self._pool.acquire()
            except Exception:  # PostgreSQL away: try again, more slowly
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, 2)
                continue
            def on_notify(_conn: object, _pid: object, _channel: object, payload: str) -> None:
                callback(payload)

            try:
                await conn.add_listener(channel, on_notify)
                conn.add_termination_listener(lambda *_, lost=lost: lost.set())
                callback(None)  # catch up with anything saved while nobody listened
                pause = 0.5
                waits = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for waiting in pending:
                    waiting.cancel()
            except Exception:
                log.debug("listening on %s failed; starting again", channel)
            finally:
                with contextlib.suppress(Exception):  # the pool does not reset connections
                    await conn.remove_listener(channel, on_notify)
                with contextlib.suppress(Exception):
                    await self._pool.release(conn)

    async def close(self) -> None:
        await self._writers.close()
        await self._pool.close()
