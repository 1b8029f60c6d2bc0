"""Settings from the environment, through pydantic-settings, with one clear line per bad value.

Each service declares its own settings class on `ProcessSettings` (services/mfa/config.py,
services/notifier/config.py), listing exactly the variables it reads; the field types below
carry the rules they share. A value given in code (`Settings(port=8080)`, the tests) is used
as is: only `from_env` reads the environment, so a variable exported in a shell never leaks
into a test's settings.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PREFIX = "MFA_"


class ConfigError(Exception):
    """A setting is missing or malformed; the process cannot start."""


def _origin(raw: str) -> str:
    raw = raw.rstrip("/")
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path \
            or parts.query or parts.fragment or parts.username:
        raise ValueError("must be an origin such as https://mfa.example.com "
                         "(scheme, host and optional port, nothing else)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _url(schemes: tuple[str, ...]) -> Any:
    def check(raw: str) -> str:
        raw = raw.rstrip("/") if schemes[0].startswith("http") else raw
        if not raw:
            return ""
        parts = urlsplit(raw)
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a URL with a host, of scheme {' or '.join(schemes)}")
        return raw

    return AfterValidator(check)


def _comma_separated(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _network(raw: str) -> str:
    try:
        return str(ipaddress.ip_network(raw, strict=False))
    except ValueError:
        raise ValueError(f"{raw!r} is not an IP address or CIDR") from None


Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=1)]
Origin = Annotated[str, AfterValidator(_origin)]
HttpUrl = Annotated[str, _url(("http", "https"))]
AmqpUrl = Annotated[str, _url(("amqp", "amqps"))]
# Comma-separated in the environment (not JSON, pydantic-settings' default for a sequence).
Origins = Annotated[tuple[Annotated[str, AfterValidator(lambda o: o.rstrip("/"))], ...],
                    NoDecode, BeforeValidator(_comma_separated)]
Networks = Annotated[tuple[Annotated[str, AfterValidator(_network)], ...], NoDecode,
                     BeforeValidator(_comma_separated)]
# One or more base URLs, comma-separated (MFA_API_URL: the API instances a notifier asks).
HttpUrls = Annotated[tuple[HttpUrl, ...], NoDecode, BeforeValidator(_comma_separated),
                     Field(min_length=1)]
# A wait in seconds that may be a fraction, up to an hour.
Wait = Annotated[float, Field(gt=0, le=3600)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class _Environment(EnvSettingsSource):
    """The environment (or a mapping standing for it), each value stripped; an empty value is
    no value, so the default applies."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value.strip() for name, value in self._environ.items()
                if name.startswith(PREFIX) and value.strip()}


class ProcessSettings(BaseSettings):
    """The base of each service's settings: `MFA_` + the field's name, upper case."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore",
                                      str_strip_whitespace=True)

    log_level: Annotated[LogLevel, BeforeValidator(lambda v: str(v).upper())] = "INFO"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment only through from_env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings the environment gives, or ConfigError naming each bad variable."""
        values = _Environment(cls, os.environ if env is None else env)()
        try:
            return cls(**values)
        except ValidationError as error:
            raise ConfigError("; ".join(_explain(cls, e) for e in error.errors())) from None


def _explain(cls: type[ProcessSettings], error: Any) -> str:
    """One error as an operator reads it: the variable, what it must be, what it got (never
    for a secret)."""
    field = str(error["loc"][0]) if error["loc"] else ""
    name = PREFIX + field.upper()
    shown = cls.model_fields[field].repr if field in cls.model_fields else True
    # An item of a list names itself in the message.
    shown = shown and len(error["loc"]) == 1 and isinstance(error.get("input"), str)
    got = f", got {error['input']!r}" if shown else ""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "int_parsing":
        return f"{name} must be an integer{got}"
    if kind == "greater_than_equal":
        return f"{name} must be at least {ctx['ge']}{got}"
    if kind == "less_than_equal":
        return f"{name} must be at most {ctx['le']}{got}"
    if kind == "bool_parsing":
        return f"{name} must be 1 or 0 (true/false, yes/no){got}"
    if kind == "literal_error":
        return f"{name} must be one of {ctx['expected']}{got}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name} {message}{got}" if message.startswith("must") else f"{name}: {message}{got}"
