"""One in-memory tracer provider for the whole test process (OpenTelemetry allows one global
provider per process): the Python producer's spans, and in-process workers' spans, land in it.

`capturing()` makes the producer propagate trace context only while a tracing test runs: the
provider stays global afterwards, so the propagator is what is switched off again. Otherwise every
later test's producer would send traced jobs (contract version 4), and tests that hold a worker at
an older contract version would see a different reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from opentelemetry import propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["EXPORTER", "PROVIDER", "capturing"]

EXPORTER: Final = InMemorySpanExporter()
PROVIDER: Final = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
_SILENT: Final = CompositePropagator([])


@contextmanager
def capturing() -> Iterator[InMemorySpanExporter]:
    """The provider as the process's global one (idempotent) and the W3C propagator on, for the
    body; the exporter emptied before and after, the propagator silenced after."""
    if trace.get_tracer_provider() is not PROVIDER:
        trace.set_tracer_provider(PROVIDER)
    EXPORTER.clear()
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    try:
        yield EXPORTER
    finally:
        propagate.set_global_textmap(_SILENT)
        EXPORTER.clear()
