"""Tracing's pieces without services: when the OTEL_* environment turns it on, what a job carries
(contract 4) and how that meets signing, the log processor, and that a worker which does not
trace never imports OpenTelemetry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr
from taskline_producer.signing import SigningKey, sign_job
from taskline_producer.tracing import trace_context_of, traced_options
from taskline_producer.wire import envelope

from worker.config.signing_keys import KeyConfig
from worker.config.tracing_env import traces_exporter
from worker.observe.tracing import add_trace_ids
from worker.pipeline.signatures import Refusal, Signer, Verifier

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECRET = "s" * 40


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "x"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "zipkin"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
    ],
)
def test_tracing_is_off_unless_the_standard_otel_variables_ask_for_it(environ, exporter):
    """An exporter or an OTLP endpoint turns it on; `none` and OTEL_SDK_DISABLED keep it off."""
    assert traces_exporter(environ) == exporter


def test_a_job_carries_the_traceparent_and_tracestate_and_contract_4():
    """The propagator's carrier becomes k members; the version is raised to 4, never lowered."""
    context = trace_context_of({"traceparent": TRACEPARENT, "tracestate": "a=1", "baggage": "k=v"})
    assert context == {"traceparent": TRACEPARENT, "tracestate": "a=1"}
    assert traced_options({}, context) == {"contract": 4, **context}
    assert traced_options({"contract": 2, "outcome_ttl": 5}, context)["contract"] == 4
    assert traced_options({"contract": 2}, {}) == {"contract": 2}  # nothing to carry: unchanged
    assert trace_context_of({"tracestate": "a=1"}) == {}  # a tracestate alone is not sent
    assert trace_context_of({"traceparent": "x" * 300}) == {}  # too long for the contract


def verifier() -> Verifier:
    return Verifier({"svc": KeyConfig(secret=SecretStr(SECRET))}, required=True)


def traced_signed_job() -> bytes:
    command = {"command_id": "b67f8081-dc51-4982-8054-6af48f7539c8", "title": "t"}
    options = traced_options({}, {"traceparent": TRACEPARENT})
    return envelope("create_task", command, 1, options, SigningKey.of("svc", SECRET))


def test_the_trace_context_is_inside_the_signed_bytes():
    """A traced, signed job verifies; the same job with its traceparent changed does not: the MAC
    covers the whole job, trace context included (docs/tracing.md says why)."""
    raw = traced_signed_job()
    assert json.loads(raw)["k"]["contract"] == 4
    assert isinstance(verifier().verify(raw), Signer)
    tampered = raw.replace(b"b7ad6b7169203331", b"0000000000000001")
    refusal = verifier().verify(tampered)
    assert isinstance(refusal, Refusal)
    assert refusal.reason.startswith("bad signature")


def test_a_traced_job_signed_again_keeps_its_trace_context():
    """What signs a ready-made envelope again (the relay, a replay under another key) keeps the
    trace context and signs over it."""
    resigned = sign_job(traced_signed_job(), SigningKey.of("svc", SECRET))
    assert json.loads(resigned)["k"]["traceparent"] == TRACEPARENT
    assert isinstance(verifier().verify(resigned), Signer)


def test_log_lines_inside_a_span_carry_its_trace_and_span_ids():
    """The processor adds the current span's ids as hex; outside any span it adds nothing."""
    tracer = TracerProvider().get_tracer("test")
    assert add_trace_ids(None, "info", {}) == {}
    with tracer.start_as_current_span("job") as span:
        event = add_trace_ids(None, "info", {"event": "x"})
    context = span.get_span_context()
    assert event["trace_id"] == format(context.trace_id, "032x")
    assert event["span_id"] == format(context.span_id, "016x")


def test_a_worker_that_does_not_trace_never_imports_opentelemetry():
    """With no OTEL_* variable, the worker's modules and its tracing decision import nothing of
    OpenTelemetry: tracing off costs one check per job, no span objects."""
    code = """
import sys
import worker.arq_seam.wiring
import worker.arq_seam.job_runner, worker.pipeline.jobs, worker.pipeline.group_commit, worker.entry
from worker.config.tracing_env import traces_exporter
from worker.observe.tracing_setup import process_tracing, trace_id_processors
assert traces_exporter({}) is None
assert process_tracing(None, queue="q", database_url="postgresql://h/d", worker_id="w", log=None) is None
assert trace_id_processors(None) == []
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"
