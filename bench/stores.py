"""A throwaway event store for one bench run: a SQLite file in a temporary directory, or a
fresh schema in the local PostgreSQL that is dropped afterwards (so runs never see each other's
events and a failed run leaves nothing behind)."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def scratch_store(store: str, prefix: str) -> Iterator[tuple[str, Path]]:
    """Yield (database URL, scratch directory) for `store` ("sqlite" or "postgres")."""
    with tempfile.TemporaryDirectory(prefix=f"mfa-{prefix}-") as tmp:
        if store != "postgres":
            yield f"sqlite:///{tmp}/mfa.db", Path(tmp)
            return
        schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{PG_DSN}?schema={schema}", Path(tmp)
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
