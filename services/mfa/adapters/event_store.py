"""Translates MFA_DATABASE_URL and MFA_SECRET_KEY into the eventsourcing library's environment."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry

# eventsourcing 9.5.6 tries every PostgreSQL call 10 times, 0.2 s apart, each waiting up to
# POSTGRES_CONNECT_TIMEOUT for a pooled connection: a store outage held each caller for tens
# of seconds. Two attempts still ride over one broken pooled connection (pre-ping drops the
# others), and a caller hears of an outage within about twice the connect timeout.
STORE_ATTEMPTS = 2


class BoundedPostgresApplicationRecorder(PostgresApplicationRecorder):
    """The library's recorder with its retried calls tried STORE_ATTEMPTS times."""


for _name in dir(PostgresApplicationRecorder):
    _method = getattr(PostgresApplicationRecorder, _name)
    if callable(_method) and hasattr(_method, "__wrapped__"):
        setattr(BoundedPostgresApplicationRecorder, _name,
                retry((InterfaceError, OperationalError), max_attempts=STORE_ATTEMPTS,
                      wait=0.1)(_method.__wrapped__))


def derive_key(secret_key: str, purpose: str, length: int = 32) -> bytes:
    """One key per purpose from MFA_SECRET_KEY, so no purpose can recover another's key."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"mfa-service", info=purpose.encode()
    ).derive(secret_key.encode())


@dataclass(frozen=True)
class StoreLocation:
    """Where events and views live: an SQLite file, or a PostgreSQL database and schema."""

    kind: str  # "sqlite" | "postgres"
    sqlite_path: str = ""
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    schema: str = "public"

    @classmethod
    def parse(cls, url: str) -> StoreLocation:
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :]
            if not path:
                raise ValueError("sqlite URL needs a file path, e.g. sqlite:///var/mfa.db")
            return cls(kind="sqlite", sqlite_path=path)
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        return cls(
            kind="postgres",
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            user=unquote(parsed.username or "postgres"),
            password=unquote(parsed.password or ""),
            dbname=(parsed.path or "/").lstrip("/") or "postgres",
            schema=query.get("schema", ["public"])[0],
        )

    def eventsourcing_env(self, secret_key: str, timeout_seconds: float = 5.0) -> dict[str, str]:
        """`timeout_seconds`: the longest wait for a pooled connection or the table lock (the
        library takes whole seconds)."""
        env = {
            # Every stored event's state is AES-GCM encrypted: secrets, codes and hashes included.
            "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
            "CIPHER_KEY": base64.b64encode(derive_key(secret_key, "event-store")).decode(),
            # Aggregates cached per process, fast-forwarded from the store at every read.
            "AGGREGATE_CACHE_MAXSIZE": "50000",
            "AGGREGATE_CACHE_FASTFORWARD": "y",
        }
        if self.kind == "sqlite":
            Path(self.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            env.update(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=self.sqlite_path,
                       SQLITE_LOCK_TIMEOUT="10")
        else:
            env.update(
                PERSISTENCE_MODULE="eventsourcing.postgres",
                POSTGRES_DBNAME=self.dbname,
                POSTGRES_HOST=self.host,
                POSTGRES_PORT=str(self.port),
                POSTGRES_USER=self.user,
                POSTGRES_PASSWORD=self.password,
                POSTGRES_SCHEMA=self.schema,
                APPLICATION_RECORDER_TOPIC=(
                    "services.mfa.adapters.event_store:BoundedPostgresApplicationRecorder"),
                POSTGRES_CONNECT_TIMEOUT=str(max(1, math.ceil(timeout_seconds))),
                POSTGRES_LOCK_TIMEOUT=str(max(1, math.ceil(timeout_seconds))),
                # A pooled connection is checked before use: after an outage the dead ones are
                # dropped instead of failing the first calls.
                POSTGRES_PRE_PING="y",
                POSTGRES_POOL_SIZE="5",
                POSTGRES_MAX_OVERFLOW="10",
                POSTGRES_ENABLE_DB_FUNCTIONS="n",  # unsafe in 9.5.6: readers can skip events
            )
        return env
