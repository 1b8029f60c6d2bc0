"""OpenTelemetry tracing, only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

Then every HTTP request of the process is a span (opentelemetry-instrumentation-aiohttp-server),
exported over OTLP/HTTP in batches to that endpoint; the SDK reads the other `OTEL_*`
variables itself (headers, sampling, resource attributes). The packages are the optional extra
`otel` (`pip install -e '.[otel]'`), imported only here and only then: with the variable unset,
nothing of OpenTelemetry is imported or started.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


def start(service_name: str) -> bool:
    """Starts tracing for this process if asked to; True if it did."""
    if not os.environ.get(ENDPOINT, "").strip():
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("%s is set but OpenTelemetry is not installed (the `otel` extra): "
                    "no tracing", ENDPOINT)
        return False
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    AioHttpServerInstrumentor().instrument()
    log.info("tracing to %s", os.environ[ENDPOINT], extra={"service": service_name})
    return True
