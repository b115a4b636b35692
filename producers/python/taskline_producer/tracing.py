"""Trace context in jobs (contract version 4): the producer's side of OpenTelemetry.

When the service runs OpenTelemetry (`opentelemetry-api` installed, the `otel` extra, and an SDK
set up by the service as usual), each send is a PRODUCER span `send <queue>` named and described
as OpenTelemetry's messaging conventions say, and each of its jobs carries that span's W3C trace
context in `k.traceparent` (and `k.tracestate`), written by the service's global propagator: the
standard `OTEL_PROPAGATORS` decides what is sent (`none`: nothing). A job that carries a trace
context is contract version 4 (docs/contract.md).

Without `opentelemetry-api`, or without a valid span context to send (no SDK, a propagator that
writes no traceparent), a job is written exactly as before: no member, no version raised, and the
cost is one check of a module-level value.

The trace context is **inside the signed bytes** (taskline_producer/signing.py covers the whole
job, its mac aside): docs/tracing.md says why.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from taskline_producer.contract import TRACE_CONTEXT_VERSION, TRACEPARENT_MAX_CHARS, TRACESTATE_MAX_CHARS

__all__ = ["MESSAGING_SYSTEM", "SendTracer", "send_tracer", "traced_options"]

MESSAGING_SYSTEM: Final = "taskline"
"""`messaging.system` on the spans of both sides."""

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"


class SendTracer:
    """Starts the producer's spans and reads the trace context each job is to carry."""

    def __init__(self, trace: Any, propagate: Any) -> None:
        self._trace = trace
        self._propagate = propagate
        self._tracer = trace.get_tracer("taskline_producer")

    @contextmanager
    def sending(
        self, queue: str, *, message_count: int = 1, message_id: str | None = None, bulk: bool = False
    ) -> Iterator[dict[str, str]]:
        """A `send <queue>` span around one send; yields the trace context for its jobs (empty when
        there is none to send)."""
        attributes: dict[str, Any] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": queue,
        }
        if message_id is not None:
            attributes["messaging.message.id"] = message_id
        if message_count != 1 or bulk:
            attributes["messaging.batch.message_count"] = message_count
        kind = self._trace.SpanKind.PRODUCER
        with self._tracer.start_as_current_span(f"send {queue}", kind=kind, attributes=attributes):
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier)
            yield trace_context_of(carrier)


def trace_context_of(carrier: Mapping[str, str]) -> dict[str, str]:
    """The members a job carries from a propagator's carrier: `traceparent` (when it fits the
    contract), and `tracestate` beside it."""
    parent = carrier.get(TRACEPARENT)
    if not isinstance(parent, str) or not 0 < len(parent) <= TRACEPARENT_MAX_CHARS:
        return {}
    context = {TRACEPARENT: parent}
    state = carrier.get(TRACESTATE)
    if isinstance(state, str) and 0 < len(state) <= TRACESTATE_MAX_CHARS:
        context[TRACESTATE] = state
    return context


def traced_options(options: dict[str, Any], context: Mapping[str, str]) -> dict[str, Any]:
    """Job options (`k`) carrying a trace context: contract raised to 4. Unchanged without one."""
    if not context:
        return options
    traced = dict(options)
    traced["contract"] = max(int(traced.get("contract", 1)), TRACE_CONTEXT_VERSION)
    traced.update(context)
    return traced


_NOT_LOADED: Final[Any] = object()
_loaded: Any = _NOT_LOADED


def send_tracer() -> SendTracer | None:
    """The producer's tracer when opentelemetry-api is installed, else None (checked once)."""
    global _loaded
    if _loaded is _NOT_LOADED:
        try:
            from opentelemetry import propagate, trace
        except ImportError:
            _loaded = None
        else:
            _loaded = SendTracer(trace, propagate)
    return _loaded  # type: ignore[no-any-return]
