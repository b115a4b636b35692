"""Building the worker's tracer from the standard OTEL_* environment (docs/tracing.md).

Importing this module imports nothing of OpenTelemetry: `process_tracing` does, and only when
`worker.config.tracing_env.traces_exporter` names an exporter. The SDK reads the rest of the
environment itself: the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES; the service is
`taskline-worker` when neither names it), the sampler (OTEL_TRACES_SAMPLER, _ARG), the batch
processor (OTEL_BSP_*) and the OTLP exporter (OTEL_EXPORTER_OTLP_*, HTTP/protobuf).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.engine import make_url

from worker.config.tracing_env import EXPORTER_VARIABLE, SUPPORTED_EXPORTERS

if TYPE_CHECKING:
    from worker.observe.tracing import WorkerTracing

__all__ = ["DEFAULT_SERVICE_NAME", "database_attributes", "process_tracing", "trace_id_processors"]

DEFAULT_SERVICE_NAME: Final = "taskline-worker"
EXTRA_MISSING: Final = (
    "tracing is asked for by the OTEL_* environment, but OpenTelemetry is not installed: install"
    " the otel extra (pip install 'taskline[otel]', or requirements.lock); running without tracing"
)


def trace_id_processors(exporter: str | None) -> list[Any]:
    """The log processor that writes trace_id and span_id, when the process traces."""
    if exporter is None:
        return []
    try:
        from worker.observe.tracing import add_trace_ids
    except ImportError:
        return []
    return [add_trace_ids]


def database_attributes(database_url: str) -> dict[str, Any]:
    """db.namespace, server.address and server.port of the workers' database (no credentials)."""
    url = make_url(database_url)
    attributes: dict[str, Any] = {"server.port": url.port or 5432}
    if url.database:
        attributes["db.namespace"] = url.database
    if url.host:
        attributes["server.address"] = url.host
    return attributes


def process_tracing(
    exporter: str | None, *, queue: str, database_url: str, worker_id: str, log: Any
) -> WorkerTracing | None:
    """The process's tracer when the environment names an exporter, else None (nothing imported).
    Its provider is the process's global one; its resource names this worker process
    (`service.instance.id`: its worker id, as in its heartbeat)."""
    if exporter is None:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        from worker.observe.tracing import WorkerTracing
    except ImportError:
        log.warning(EXTRA_MISSING)
        return None
    if exporter not in SUPPORTED_EXPORTERS:
        log.warning(
            "unsupported trace exporter: using otlp",
            setting=EXPORTER_VARIABLE,
            value=exporter,
            supported=", ".join(SUPPORTED_EXPORTERS),
        )
        exporter = "otlp"
    if exporter == "console":
        span_exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    if SERVICE_INSTANCE_ID not in resource.attributes:
        resource = resource.merge(Resource({SERVICE_INSTANCE_ID: worker_id}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing on", exporter=exporter, service=str(resource.attributes.get(SERVICE_NAME)))
    return WorkerTracing(provider, queue=queue, database=database_attributes(database_url), owns_provider=True)
