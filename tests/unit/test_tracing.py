"""Tracing's pieces without services: when the OTEL_* environment turns it on, what a traced send
writes (the same job, and its trace key beside it) and how version-4 jobs meet signing, the log
processor, and that a worker which does not trace never imports OpenTelemetry."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from types import SimpleNamespace
from uuid import UUID

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr
from taskline_producer import CreateTask, TaskProducer, keys, wire
from taskline_producer.signing import SigningKey, sign_job
from taskline_producer.testing.memory_redis import MemoryRedis
from taskline_producer.tracing import trace_context_of, trace_value
from taskline_producer.wire import envelope

from tests.support.tracing import capturing
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


def test_the_trace_key_holds_the_carriers_traceparent_and_tracestate_as_compact_json():
    """The propagator's carrier becomes the trace key's value: traceparent first, then tracestate,
    nothing else; nothing to pass on, no value (no key written)."""
    context = trace_context_of({"traceparent": TRACEPARENT, "tracestate": "a=1", "baggage": "k=v"})
    assert context == {"traceparent": TRACEPARENT, "tracestate": "a=1"}
    assert trace_value(context) == f'{{"traceparent":"{TRACEPARENT}","tracestate":"a=1"}}'
    assert trace_value({}) is None
    assert trace_context_of({"tracestate": "a=1"}) == {}  # a tracestate alone is not sent
    assert trace_context_of({"traceparent": "x" * 300}) == {}  # too long for the contract


FIXED_MS = 1_764_063_000_123
COMMANDS = [
    CreateTask(
        command_id=UUID(int=index + 1),
        issued_at=datetime(2026, 12, 8, 1, 0, index, tzinfo=UTC),
        task_id=UUID(int=index + 100),
        user_id=7,
        title=f"task {index}",
    )
    for index in range(2)
]


async def send_fixed(redis: MemoryRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same sends (one, many, bulk; unsigned and signed) with the producer's clock held still."""
    monkeypatch.setattr(wire, "time", SimpleNamespace(time=lambda: FIXED_MS / 1000))
    for key in (None, SigningKey.of("svc", SECRET)):
        producer = TaskProducer(redis, queue="q", signing_key=key)  # type: ignore[arg-type]
        await producer.send(COMMANDS[0])
        await producer.send_many(COMMANDS)
        await producer.send_bulk(COMMANDS, job_id="bulk-1")


async def test_a_traced_send_writes_the_same_job_bytes_and_its_trace_context_beside_them(monkeypatch):
    """With an SDK and the W3C propagator, every job (one, many, bulk, signed or not) is byte for
    byte the job of an untraced send, and its trace key holds the send span's traceparent; an
    untraced send writes no trace key at all."""
    untraced = MemoryRedis()
    await send_fixed(untraced, monkeypatch)
    traced = MemoryRedis()
    with capturing() as exporter:
        await send_fixed(traced, monkeypatch)
        sends = exporter.get_finished_spans()
    job_keys = sorted(key for key in untraced.strings if key.startswith(keys.JOB_KEY_PREFIX))
    assert len(job_keys) == 3  # the two commands and the bulk job (sent again: duplicates)
    assert {key: traced.strings[key] for key in job_keys} == {key: untraced.strings[key] for key in job_keys}
    assert not any(key.startswith(keys.TRACE_KEY_PREFIX) for key in untraced.strings)
    assert all(b"traceparent" not in traced.strings[key] for key in job_keys)
    first = sends[0].get_span_context()
    value = json.loads(traced.strings[keys.trace_key(str(COMMANDS[0].command_id))])
    assert list(value) == ["traceparent"]
    assert value["traceparent"].startswith(f"00-{first.trace_id:032x}-{first.span_id:016x}-")
    assert int(value["traceparent"][-2:], 16) & 1  # sampled
    assert keys.trace_key("bulk-1") in traced.strings


def verifier() -> Verifier:
    return Verifier({"svc": KeyConfig(secret=SecretStr(SECRET))}, required=True)


def version_4_signed_job() -> bytes:
    """A job as the producers of this release wrote it before the trace key: k.traceparent, contract 4."""
    command = {"command_id": "b67f8081-dc51-4982-8054-6af48f7539c8", "title": "t"}
    options = {"contract": 4, "traceparent": TRACEPARENT}
    return envelope("create_task", command, 1, options, SigningKey.of("svc", SECRET))


def test_a_version_4_job_is_still_verified_over_every_byte_but_its_mac():
    """A contract-4 job already written with k.traceparent still verifies, and any changed byte in
    it (its traceparent too) is a bad signature: verification stays "every byte except the MAC"."""
    raw = version_4_signed_job()
    assert isinstance(verifier().verify(raw), Signer)
    tampered = raw.replace(b"b7ad6b7169203331", b"0000000000000001")
    refusal = verifier().verify(tampered)
    assert isinstance(refusal, Refusal)
    assert refusal.reason.startswith("bad signature")


def test_a_version_4_job_signed_again_keeps_its_trace_context():
    """What signs a ready-made envelope again (the relay, a replay under another key) keeps it whole."""
    resigned = sign_job(version_4_signed_job(), SigningKey.of("svc", SECRET))
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
