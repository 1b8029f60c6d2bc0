"""The one settings object of the MFA service, read from the environment (SPEC section 4 names
the variables; README "Settings" says what each does). The notifier reads its own
(services/notifier/config.py)."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, Field

from services.runtime.settings import (
    AmqpUrl,
    ConfigError,
    Count,
    HttpUrls,
    Networks,
    Origin,
    Origins,
    Port,
    ProcessSettings,
    Seconds,
    Wait,
)

__all__ = ["ConfigError", "Settings"]


def _database_url(raw: str) -> str:
    if not raw.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ValueError("must start with sqlite:/// or postgresql://")
    return raw


def _secret_key(raw: str) -> str:
    if raw and len(raw) < 32:
        raise ValueError("must be at least 32 characters")
    return raw


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


class Settings(ProcessSettings):
    host: str = "127.0.0.1"
    port: Port = 8080
    # Where `mfa projector` and `mfa relay` serve /healthz, /readyz and /metrics (no value:
    # 8090 for the projector, 8091 for the relay, so both fit on one host as they are).
    health_port: Port | None = None
    database_url: Annotated[str, AfterValidator(_database_url),
                            Field(repr=False)] = "sqlite:///var/mfa.db"
    amqp_url: Annotated[AmqpUrl, Field(repr=False)] = ""
    amqp_exchange: str = "mfa.events"
    # The standalone notifier's (services/notifier/config.py), read here too by `mfa notifier`
    # before it hands over, and kept for the embedded notifier's checks.
    notifier_port: Port = 8081
    api_url: HttpUrls = ("http://127.0.0.1:8080",)  # one or more, comma-separated
    allowed_origins: Origins = ()
    secret_key: Annotated[str, AfterValidator(_secret_key), Field(repr=False)] = ""
    issuer: str = "MFA Service"
    setup_window_seconds: Seconds = 600
    lockout_threshold: Count = 5
    lockout_base_seconds: Seconds = 30
    lockout_max_seconds: Seconds = 3600
    session_max_age_seconds: Seconds = 12 * 3600
    session_idle_seconds: Seconds = 3600
    # Wrong passwords: per client address and email (lockout_threshold), per address over all
    # emails, and per email over all addresses (clients without a device cookie of that email).
    password_address_threshold: Count = 100
    password_account_threshold: Count = 50
    throttle_forget_seconds: Seconds = 24 * 3600
    device_cookie_max_age_seconds: Seconds = 180 * 24 * 3600
    # argon2 runs in its own threads; past threads + queue waiting, the password step says 503.
    hashing_threads: Count = Field(default_factory=lambda: max(1, _cpus() - 1))
    hashing_queue: Annotated[int, Field(ge=0)] = 8
    public_url: Origin = ""
    trusted_proxies: Networks = ()
    socket_check_seconds: Seconds = 60
    # After a command, how long the API waits for the views to apply it before answering 503
    # (never from views that do not show it yet).
    views_wait_seconds: Wait = 5.0
    # The longest a request waits for the store before answering 503.
    store_timeout_seconds: Wait = 3.0
    demo: bool = False
    var_dir: Path = Path("var")

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        return super().from_env(env).with_secret_key()

    def with_secret_key(self) -> Self:
        """The platform must be given a key; the embedded default makes one once, under var/."""
        if self.secret_key:
            return self
        if self.is_postgres:
            raise ConfigError("MFA_SECRET_KEY is required with a PostgreSQL database")
        key_file = self.var_dir / "secret.key"
        if not key_file.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        return self.model_copy(update={"secret_key": key_file.read_text().strip()})
