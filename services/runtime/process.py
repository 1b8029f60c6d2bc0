"""The start of every long-running process of both services, before anything else is built."""

from __future__ import annotations

from services.runtime import logs, tracing


def start(name: str, log_level: str) -> None:
    """JSON logs on stderr, and tracing if OTEL_EXPORTER_OTLP_ENDPOINT asks for it. `name`:
    what the process is (mfa-api, mfa-projector, mfa-notifier, ...), the traces' service."""
    logs.configure(log_level)
    tracing.start(name)
