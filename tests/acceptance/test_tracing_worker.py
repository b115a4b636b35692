"""A real worker process traced through the standard OTEL_* environment alone: it continues the
producer's trace from the trace key beside the job, exports its spans (the console exporter, into
its log) and its log lines carry the trace and span ids."""

from __future__ import annotations

import json
import re

import pytest
from opentelemetry import trace
from taskline_producer import TaskProducer, keys

from tests.conftest import wait_for
from tests.support.tracing import capturing

pytestmark = pytest.mark.acceptance


async def test_a_worker_traced_by_otel_variables_continues_the_producers_trace_and_logs_its_ids(
    settings, redis, db, users, start_worker
):
    """OTEL_TRACES_EXPORTER=console: the worker's process span is a child of the producer's send
    span (same trace id, read from the job's trace key, which is gone once the job ends), the
    service is named by OTEL_SERVICE_NAME, and a job's log line carries trace_id and span_id."""
    worker = start_worker(
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="taskline-test-worker",
        OTEL_BSP_SCHEDULE_DELAY="100",
        TASKLINE_LOG_LEVEL="DEBUG",  # a line per applied command
    )
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    with capturing(), trace.get_tracer("test").start_as_current_span("caller") as caller:
        receipt = await producer.create_task(user_id=1, title="traced by a real worker")
    trace_id = format(caller.get_span_context().trace_id, "032x")
    trace_key = keys.trace_key(str(receipt.command_id))
    if await redis.exists(trace_key):  # unless the worker has already finished the job
        assert json.loads(await redis.get(trace_key))["traceparent"][3:35] == trace_id

    async def applied() -> bool:
        return await db.fetchval("SELECT count(*) FROM task WHERE id = $1", receipt.task_id) == 1

    await wait_for(applied, timeout=60)

    async def trace_key_gone() -> bool:
        return await redis.exists(trace_key) == 0

    await wait_for(trace_key_gone, timeout=30)  # deleted with the job's keys
    assert worker.stop() == 0
    log = worker.log()
    assert "tracing on" in log
    assert f'"trace_id": "0x{trace_id}"' in log  # the console exporter writes ids as 0x-hex
    assert f'"name": "process {settings.queue}"' in log
    assert '"service.name": "taskline-test-worker"' in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and line.endswith("}")]
    (applied_line,) = [line for line in lines if line.get("event") == "command applied"]
    assert applied_line["trace_id"] == trace_id
    assert re.fullmatch(r"[0-9a-f]{16}", applied_line["span_id"])
