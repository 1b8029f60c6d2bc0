"""The one settings object, read from the environment (SPEC section 4 names the variables)."""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the process cannot start."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 3600:
        raise ConfigError(f"{name} must be above 0 and at most 3600, got {value:g}")
    return value


def _public_url(env: Mapping[str, str]) -> str:
    raw = env.get("MFA_PUBLIC_URL", "").strip().rstrip("/")
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path \
            or parts.query or parts.fragment or parts.username:
        raise ConfigError("MFA_PUBLIC_URL must be an origin such as https://mfa.example.com "
                          f"(scheme, host and optional port, nothing else), got {raw!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    networks = []
    for item in env.get(name, "").split(","):
        if not item.strip():
            continue
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {item.strip()!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _api_urls(env: Mapping[str, str]) -> tuple[str, ...]:
    """MFA_API_URL: one or more base URLs of the API (comma-separated), tried in turn."""
    urls = []
    for item in env.get("MFA_API_URL", "").split(","):
        url = item.strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"MFA_API_URL: {url!r} is not an http(s) URL")
        urls.append(url)
    return tuple(urls) or Settings.api_urls


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    notifier_port: int = 8081
    database_url: str = "sqlite:///var/mfa.db"
    amqp_url: str = ""
    amqp_exchange: str = "mfa.events"
    api_urls: tuple[str, ...] = ("http://127.0.0.1:8080",)
    allowed_origins: tuple[str, ...] = ()
    secret_key: str = field(default="", repr=False)
    issuer: str = "MFA Service"
    setup_window_seconds: int = 600
    lockout_threshold: int = 5
    lockout_base_seconds: int = 30
    lockout_max_seconds: int = 3600
    session_max_age_seconds: int = 12 * 3600
    session_idle_seconds: int = 3600
    # Wrong passwords: per client address and email (lockout_threshold), per address over all
    # emails, and per email over all addresses (clients without a device cookie of that email).
    password_address_threshold: int = 100
    password_account_threshold: int = 50
    throttle_forget_seconds: int = 24 * 3600
    device_cookie_max_age_seconds: int = 180 * 24 * 3600
    # argon2 runs in its own threads; past threads + queue waiting, the password step says 503.
    hashing_threads: int = field(default_factory=lambda: max(1, _cpus() - 1))
    hashing_queue: int = 8
    public_url: str = ""
    trusted_proxies: tuple[str, ...] = ()
    socket_check_seconds: int = 60
    # After a command, how long the API waits for the views to apply it before answering 503
    # (never from views that do not show it yet).
    views_wait_seconds: float = 5.0
    # The longest a request waits for the store before answering 503.
    store_timeout_seconds: float = 3.0
    demo: bool = False
    var_dir: Path = Path("var")

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        database_url = env.get("MFA_DATABASE_URL", "").strip() or cls.database_url
        if not database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError(
                "MFA_DATABASE_URL must start with sqlite:/// or postgresql://, "
                f"got {database_url.split(':', 1)[0]!r}"
            )
        var_dir = Path(env.get("MFA_VAR_DIR", "var"))
        settings = cls(
            host=env.get("MFA_HOST", "").strip() or cls.host,
            port=_int(env, "MFA_PORT", cls.port),
            notifier_port=_int(env, "MFA_NOTIFIER_PORT", cls.notifier_port),
            database_url=database_url,
            amqp_url=env.get("MFA_AMQP_URL", "").strip(),
            amqp_exchange=env.get("MFA_AMQP_EXCHANGE", "").strip() or cls.amqp_exchange,
            api_urls=_api_urls(env),
            allowed_origins=tuple(o.strip().rstrip("/") for o in
                                  env.get("MFA_ALLOWED_ORIGINS", "").split(",") if o.strip()),
            secret_key=env.get("MFA_SECRET_KEY", "").strip(),
            issuer=env.get("MFA_ISSUER", "").strip() or cls.issuer,
            setup_window_seconds=_int(env, "MFA_SETUP_WINDOW_SECONDS", cls.setup_window_seconds),
            lockout_threshold=_int(env, "MFA_LOCKOUT_THRESHOLD", cls.lockout_threshold),
            lockout_base_seconds=_int(env, "MFA_LOCKOUT_BASE_SECONDS", cls.lockout_base_seconds),
            lockout_max_seconds=_int(env, "MFA_LOCKOUT_MAX_SECONDS", cls.lockout_max_seconds),
            session_max_age_seconds=_int(
                env, "MFA_SESSION_MAX_AGE_SECONDS", cls.session_max_age_seconds
            ),
            session_idle_seconds=_int(
                env, "MFA_SESSION_IDLE_SECONDS", cls.session_idle_seconds),
            password_address_threshold=_int(
                env, "MFA_PASSWORD_ADDRESS_THRESHOLD", cls.password_address_threshold),
            password_account_threshold=_int(
                env, "MFA_PASSWORD_ACCOUNT_THRESHOLD", cls.password_account_threshold),
            throttle_forget_seconds=_int(
                env, "MFA_THROTTLE_FORGET_SECONDS", cls.throttle_forget_seconds),
            device_cookie_max_age_seconds=_int(
                env, "MFA_DEVICE_COOKIE_MAX_AGE_SECONDS", cls.device_cookie_max_age_seconds),
            hashing_threads=_int(env, "MFA_HASHING_THREADS", max(1, _cpus() - 1)),
            hashing_queue=_int(env, "MFA_HASHING_QUEUE", cls.hashing_queue, minimum=0),
            public_url=_public_url(env),
            trusted_proxies=_networks(env, "MFA_TRUSTED_PROXIES"),
            socket_check_seconds=_int(env, "MFA_SOCKET_CHECK_SECONDS", cls.socket_check_seconds),
            views_wait_seconds=_seconds(env, "MFA_VIEWS_WAIT_SECONDS", cls.views_wait_seconds),
            store_timeout_seconds=_seconds(env, "MFA_STORE_TIMEOUT_SECONDS",
                                           cls.store_timeout_seconds),
            demo=env.get("MFA_DEMO", "0").strip().lower() in ("1", "true", "yes"),
            var_dir=var_dir,
        )
        return settings.with_secret_key()

    def with_secret_key(self) -> Settings:
        """The platform must be given a key; the embedded default makes one once, under var/."""
        if self.secret_key:
            if len(self.secret_key) < 32:
                raise ConfigError("MFA_SECRET_KEY must be at least 32 characters")
            return self
        if self.is_postgres:
            raise ConfigError("MFA_SECRET_KEY is required with a PostgreSQL database")
        key_file = self.var_dir / "secret.key"
        if not key_file.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        return _replace(self, secret_key=key_file.read_text().strip())


def _replace(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)  # type: ignore[arg-type]
