"""OpenTelemetry in the worker: each job's span in its producer's trace, and each transaction's.

Imported only when the standard OTEL_* environment turns tracing on
(`worker.config.tracing_env`); otherwise nothing of OpenTelemetry is imported, the job runner
checks one `None` per job, and the pipeline is handed no tracer. Names and attributes follow
OpenTelemetry's semantic conventions for messaging and for databases; taskline's own are
`taskline.*`. One span per job, because a span is most of what tracing costs (bench scenario 9);
docs/tracing.md draws the tree:

* `process <queue>` (CONSUMER), a child of the producer's `send` span when the producer wrote its
  trace context beside the job (its trace key, read at the claim: worker/arq_seam/trace_keys.py;
  or, in a contract-4 job written before the trace key, `k.traceparent`), else a new trace; from
  the claim to the job's end. The time the job
  waited in the queue is the gap after the `send` span and `taskline.job.queued_ms`; the decoder's
  work ends at the `taskline.validated` event (with the reason when it refused the job); then the
  outcome, each retry and each dead letter (events with the reason; a dead letter sets the
  status to ERROR). A retried job's next try is another `process` span in the same trace.
* `transaction` (CLIENT, PostgreSQL), with `COMMIT` inside it. One transaction applies the
  commands of many jobs (group commit): it is a child of the job's `process` span when it serves
  one job, and otherwise a root span with a link to each job's `process` span (and each links
  back to it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from taskline_producer.contract import TRACEPARENT_MAX_CHARS, TRACESTATE_MAX_CHARS

from worker.text import json_object

__all__ = ["JobSpans", "WorkerTracing", "add_trace_ids"]

TRACER_NAME: Final = "taskline.worker"
MESSAGING_SYSTEM: Final = "taskline"  # as the producers write it (taskline_producer.tracing)
_W3C: Final = TraceContextTextMapPropagator()
"""What reads a job's traceparent/tracestate (W3C's format, whatever OTEL_PROPAGATORS says: the
trace key and a version-4 `k` carry exactly these two)."""
STATUS_CHARS: Final = 500
"""A dead letter's reason is cut to this many characters in a span's status (the event holds it whole)."""


def add_trace_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: the current span's trace_id and span_id on every log line."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event.setdefault("span_id", format(span_context.span_id, "016x"))
    return event


def _carrier(argument: Any, raw: bytes | None, carried: str | None) -> dict[str, str]:
    """The trace context of a job: its trace key's value (`carried`) when its producer wrote one,
    else (a contract-4 job) its decoded options, or (a refused job) its bytes. A value that is not
    a JSON object of strings is no trace context (the job starts a new trace)."""
    if carried is not None:
        value = json_object(carried)
        parent = value.get("traceparent") if value is not None else None
        state = value.get("tracestate") if value is not None else None
        if isinstance(parent, str) and 0 < len(parent) <= TRACEPARENT_MAX_CHARS:
            context = {"traceparent": parent}
            if isinstance(state, str) and len(state) <= TRACESTATE_MAX_CHARS:
                context["tracestate"] = state
            return context
        return {}
    options = getattr(argument, "options", None)
    if options is not None:
        parent, state = options.traceparent, options.tracestate
    else:
        value = json_object(raw) if raw else None
        k = value.get("k") if value is not None else None
        parent = k.get("traceparent") if isinstance(k, dict) else None
        state = k.get("tracestate") if isinstance(k, dict) else None
    carrier = {"traceparent": parent} if isinstance(parent, str) else {}
    if carrier and isinstance(state, str):
        carrier["tracestate"] = state
    return carrier


def _not_sampled(traceparent: str) -> bool:
    """A version-00 traceparent whose sampled flag is clear (anything else: not known here)."""
    if len(traceparent) != 55 or not traceparent.startswith("00-"):
        return False
    try:
        return not int(traceparent[53:], 16) & 1
    except ValueError:
        return False


class JobSpans:
    """One job's `process` span (current while the job runs, so its log lines carry its ids)."""

    __slots__ = ("_token", "linked", "process")

    def __init__(self, process: Span) -> None:
        self.process = process
        self.linked = False
        """Whether a transaction shared with other jobs links to it (it links back)."""
        self._token = otel_context.attach(trace.set_span_in_context(process))

    def outcome(self, value: str) -> None:
        self.process.set_attribute("taskline.outcome", value)

    def retry(self, kind: str, reason: str, delay_s: float) -> None:
        self.process.set_attribute("taskline.outcome", "retry")
        self.process.add_event(
            "taskline.retry", {"taskline.failure.kind": kind, "taskline.reason": reason, "taskline.retry_in_s": delay_s}
        )

    def dead_letter(self, kind: str, reason: str, *, item: int | None = None, command_id: str | None = None) -> None:
        attributes: dict[str, Any] = {"taskline.failure.kind": kind, "taskline.reason": reason}
        if item is not None:
            attributes["taskline.item"] = item
        if command_id is not None:
            attributes["taskline.command.id"] = command_id
        self.process.add_event("taskline.dead_letter", attributes)
        if item is None:
            self.process.set_attribute("taskline.outcome", "dead_letter")
            self.process.set_status(Status(StatusCode.ERROR, f"dead letter: {reason}"[:STATUS_CHARS]))

    def end(self, ending: str, result: str | None) -> None:
        if ending != "finish":
            self.process.set_attribute("taskline.job.ending", ending)
        if result is not None and result != "applied" and result != "duplicate":
            self.process.set_attribute("taskline.job.result", result)
        self.process.end()
        otel_context.detach(self._token)


class _CommitMark:
    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = 0

    def committing(self) -> None:
        self.at = time.time_ns()


class WorkerTracing:
    """The worker's tracer: starts each job's spans and each transaction's."""

    def __init__(
        self,
        provider: trace.TracerProvider,
        *,
        queue: str,
        database: Mapping[str, Any] | None = None,
        owns_provider: bool = False,
    ) -> None:
        self.provider = provider
        self.queue = queue
        self.tracer = provider.get_tracer(TRACER_NAME)
        self._process_name = f"process {queue}"
        self.database = {"db.system.name": "postgresql", **(database or {})}
        self.owns_provider = owns_provider
        self._parent_decides = isinstance(getattr(provider, "sampler", None), ParentBased)
        """The sampler follows the producer's sampled flag (the SDK's default, and every
        `parentbased_*` of OTEL_TRACES_SAMPLER): a job whose producer did not sample its trace is
        known to record nothing, so it gets no span at all."""

    def start_job(
        self,
        *,
        job_id: str,
        job_try: int,
        function: str | None,
        argument: Any,
        raw: bytes | None,
        carried: str | None = None,
        claimed_ns: int,
        decoded_ns: int,
        enqueued_ms: int | None,
    ) -> JobSpans | None:
        """The job's spans, or None when its trace is not sampled (nothing would be recorded).
        `carried`: the job's trace key value, when its producer wrote one."""
        carrier = _carrier(argument, raw, carried)
        if carrier and self._parent_decides and _not_sampled(carrier["traceparent"]):
            return None
        parent = _W3C.extract(carrier, context=Context()) if carrier else None
        attributes: dict[str, Any] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": self.queue,
            "messaging.message.id": job_id,
            "taskline.job.try": job_try,
        }
        refused = getattr(argument, "reason", None)
        function = getattr(argument, "function", function) if refused is not None else function
        if function is not None:
            attributes["taskline.function"] = function
        command = getattr(argument, "command", None)
        if command is not None:
            attributes["taskline.command.id"] = str(command.command_id)
            attributes["taskline.task.id"] = str(command.task_id)
        commands = getattr(argument, "commands", None)
        if commands is not None:
            attributes["messaging.batch.message_count"] = len(commands) + len(argument.rejected)
        signed_by = getattr(argument, "signed_by", None)
        if signed_by is not None:
            attributes["taskline.signed_by"] = signed_by
        if enqueued_ms:
            attributes["taskline.job.queued_ms"] = max(0.0, round(claimed_ns / 1e6 - enqueued_ms, 3))
        process = self.tracer.start_span(
            self._process_name, context=parent, kind=SpanKind.CONSUMER, start_time=claimed_ns, attributes=attributes
        )
        if not process.is_recording():
            return None
        if isinstance(refused, str):
            process.add_event("taskline.validated", {"taskline.refused": refused}, timestamp=decoded_ns)
        else:
            process.add_event("taskline.validated", timestamp=decoded_ns)
        return JobSpans(process)

    @contextmanager
    def transaction(self, traces: Sequence[Any], size: int) -> Iterator[_CommitMark]:
        jobs = list({id(spans): spans for spans in traces if isinstance(spans, JobSpans)}.values())
        links: list[Link] = []
        if len(jobs) == 1:
            parent = trace.set_span_in_context(jobs[0].process)
        else:
            parent = Context()
            links = [Link(spans.process.get_span_context()) for spans in jobs]
        attributes = {**self.database, "db.operation.batch.size": size, "taskline.jobs": len(jobs)}
        span = self.tracer.start_span(
            "transaction", context=parent, kind=SpanKind.CLIENT, links=links, attributes=attributes
        )
        mark = _CommitMark()
        try:
            yield mark
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            if mark.at:
                commit = self.tracer.start_span(
                    "COMMIT",
                    context=trace.set_span_in_context(span),
                    kind=SpanKind.CLIENT,
                    start_time=mark.at,
                    attributes={**self.database, "db.operation.name": "COMMIT"},
                )
                commit.end()
            span.end()
            if links:
                context = span.get_span_context()
                for spans in jobs:
                    if not spans.linked:  # one link back (a batch that failed is applied again one by one)
                        spans.linked = True
                        spans.process.add_link(context)

    def shutdown(self) -> None:
        """Export what is left (a provider this worker built for itself)."""
        if self.owns_provider:
            shutdown = getattr(self.provider, "shutdown", None)
            if shutdown is not None:
                shutdown()
