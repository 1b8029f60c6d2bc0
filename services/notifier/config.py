"""The standalone notifier's settings: only the variables it reads (README "Settings")."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.runtime.settings import (
    AmqpUrl,
    HttpUrls,
    Origin,
    Origins,
    Port,
    ProcessSettings,
    Seconds,
)


class NotifierSettings(ProcessSettings):
    host: str = "127.0.0.1"
    notifier_port: Port = 8081
    amqp_url: Annotated[AmqpUrl, Field(repr=False)] = ""  # required: checked at start
    amqp_exchange: str = "mfa.events"
    api_url: HttpUrls = ("http://127.0.0.1:8080",)  # MFA_API_URL: one or more, comma-separated
    allowed_origins: Origins = ()
    public_url: Origin = ""
    socket_check_seconds: Seconds = 60
