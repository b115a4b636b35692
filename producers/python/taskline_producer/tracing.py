"""Trace context beside jobs: the producer's side of OpenTelemetry.

When the service runs OpenTelemetry (`opentelemetry-api` installed, the `otel` extra, and an SDK
set up by the service as usual), each send is a PRODUCER span `send <queue>` named and described
as OpenTelemetry's messaging conventions say, and that span's W3C trace context (`traceparent`,
`tracestate`, written by the service's global propagator: the standard `OTEL_PROPAGATORS` decides
what is sent, `none`: nothing) goes into a small key beside each of its jobs,
`taskline:trace:<job id>` (keys.trace_key), which the enqueue script writes with the job, in the
same atomic step and with the same expiry (taskline_producer/wire.py).

The job's own bytes do not change: a traced job is byte for byte the untraced one, of the contract
version it otherwise needs, so every worker runs it, whether it knows tracing or not (a worker
that does not trace never reads the key). Without `opentelemetry-api`, or without a valid span
context to send (no SDK, a propagator that writes no traceparent), nothing more is written, and
the cost is one check of a module-level value.

The trace context is outside the signed bytes: docs/tracing.md says why that is safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from taskline_producer.contract import TRACEPARENT_MAX_CHARS, TRACESTATE_MAX_CHARS

__all__ = ["MESSAGING_SYSTEM", "SendTracer", "send_tracer", "trace_context_of", "trace_value"]

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
    ) -> Iterator[str | None]:
        """A `send <queue>` span around one send; yields the value of its jobs' trace keys (None
        when there is no trace context to send)."""
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
            yield trace_value(trace_context_of(carrier))


def trace_context_of(carrier: Mapping[str, str]) -> dict[str, str]:
    """What a job's trace key holds from a propagator's carrier: `traceparent` (when it fits the
    contract's limits), and `tracestate` beside it."""
    parent = carrier.get(TRACEPARENT)
    if not isinstance(parent, str) or not 0 < len(parent) <= TRACEPARENT_MAX_CHARS:
        return {}
    context = {TRACEPARENT: parent}
    state = carrier.get(TRACESTATE)
    if isinstance(state, str) and 0 < len(state) <= TRACESTATE_MAX_CHARS:
        context[TRACESTATE] = state
    return context


def trace_value(context: Mapping[str, str]) -> str | None:
    """The trace key's value: the context as compact JSON, `traceparent` first (the TypeScript
    client writes the same text); None when there is nothing to pass on."""
    if not context:
        return None
    return json.dumps(dict(context), separators=(",", ":"), ensure_ascii=False)


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
