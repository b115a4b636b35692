"""One in-memory tracer provider for the whole test process (OpenTelemetry allows one global
provider per process): the Python producer's spans, and in-process workers' spans, land in it."""

from __future__ import annotations

from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["EXPORTER", "PROVIDER", "install"]

EXPORTER: Final = InMemorySpanExporter()
PROVIDER: Final = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


def install() -> InMemorySpanExporter:
    """The provider as the process's global one (idempotent), its exporter emptied."""
    if trace.get_tracer_provider() is not PROVIDER:
        trace.set_tracer_provider(PROVIDER)
    EXPORTER.clear()
    return EXPORTER
