"""OpenTelemetry from producer to commit: the spans of an applied command, a duplicate, a retry, a
dead letter, a bulk job and a group commit, collected by an in-memory exporter from the real
worker loop (in-process burst workers) and the Python producer, sharing one tracer provider."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from taskline_producer import CreateTask, TaskProducer, UpdateTask, keys
from taskline_producer.wire import (
    DEFAULT_JOB_TTL_MS,
    ENQUEUE_SCRIPT,
    enqueue_arguments,
    envelope,
    epoch_ms,
    wire_argument,
)

from tests.conftest import run_burst, wait_for
from tests.support.tracing import PROVIDER as _PROVIDER
from tests.support.tracing import capturing
from worker.observe.tracing import WorkerTracing

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (the producer's spans) exports into memory; emptied per test."""
    with capturing() as exporter:
        yield exporter


async def traced_burst(settings: Any) -> None:
    tracing = WorkerTracing(_PROVIDER, queue=settings.queue, database={"db.namespace": "taskline_test"})
    await run_burst(settings, ctx={"settings": settings, "tracing": tracing})


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]


def children(exporter: InMemorySpanExporter, parent: ReadableSpan, name: str) -> list[ReadableSpan]:
    return [
        span
        for span in exporter.get_finished_spans()
        if span.name == name and span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


def created(user_id: int = 1, **overrides: Any) -> CreateTask:
    data: dict[str, Any] = {
        "command_id": uuid4(),
        "issued_at": datetime.now(UTC) - timedelta(seconds=5),
        "task_id": uuid4(),
        "user_id": user_id,
        "title": "traced",
    }
    data.update(overrides)
    return CreateTask(**data)


async def test_an_applied_command_is_one_trace_from_the_producers_send_to_the_commit(settings, redis, users, spans):
    """send (PRODUCER) → process (CONSUMER) as its child, starting at the claim, with the queue
    wait and the decoder's end on it → the transaction (a child: it served one job) → COMMIT;
    messaging and database attributes after the semantic conventions; the outcome on the process span."""
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    receipt = await producer.create_task(user_id=1, title="one trace")
    await traced_burst(settings)

    (send,) = named(spans, "send ")
    assert send.kind is SpanKind.PRODUCER
    assert send.name == f"send {settings.queue}"
    assert send.attributes is not None
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.message.id"] == str(receipt.command_id)
    (process,) = named(spans, "process ")
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    attributes = process.attributes or {}
    assert attributes["messaging.destination.name"] == settings.queue
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == str(receipt.command_id)
    assert attributes["taskline.command.id"] == str(receipt.command_id)
    assert attributes["taskline.outcome"] == "applied"
    assert attributes["taskline.job.queued_ms"] >= 0
    assert send.end_time is not None
    assert process.start_time is not None
    assert send.end_time <= process.start_time  # the gap between them is the time in the queue
    (validated,) = [event for event in process.events if event.name == "taskline.validated"]
    assert process.start_time <= validated.timestamp <= (process.end_time or 0)
    (transaction,) = children(spans, process, "transaction")
    assert transaction.kind is SpanKind.CLIENT
    tx_attributes = transaction.attributes or {}
    assert tx_attributes["db.system.name"] == "postgresql"
    assert tx_attributes["db.operation.batch.size"] == 1
    (commit,) = children(spans, transaction, "COMMIT")
    assert (commit.attributes or {})["db.operation.name"] == "COMMIT"
    assert await redis.exists(keys.trace_key(str(receipt.command_id))) == 0  # deleted with the job


async def test_a_duplicate_shows_as_its_own_process_span_with_outcome_duplicate(settings, redis, users, spans):
    """The same command sent again after it took effect: a second send and process, `duplicate`."""
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    command = created()
    await producer.send(command)
    await traced_burst(settings)
    await producer.send(command)
    await traced_burst(settings)
    outcomes = [(span.attributes or {})["taskline.outcome"] for span in named(spans, "process ")]
    assert outcomes == ["applied", "duplicate"]
    sends = named(spans, "send ")
    assert len({span.context.trace_id for span in sends}) == 2  # two sends: two traces


async def test_a_retry_is_an_event_with_its_reason_and_the_next_try_stays_in_the_trace(settings, redis, users, spans):
    """An update whose task does not exist yet: the first try's process span says `retry`, with an
    event naming the reason; after the create, the next try is another process span of the update's
    trace and applies it."""
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    task_id = uuid4()
    update = UpdateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=task_id, user_id=1, title="later")
    await producer.send(update)
    worker = asyncio.create_task(traced_burst(settings))
    try:
        await wait_for(lambda: named(spans, "process "), timeout=60)
        await producer.send(created(task_id=task_id))
        await asyncio.wait_for(worker, timeout=60)
    finally:
        worker.cancel()
    tries = [span for span in named(spans, "process ") if span.attributes["taskline.function"] == "update_task"]
    first, last = tries[0], tries[-1]
    assert (first.attributes or {})["taskline.outcome"] == "retry"
    (event,) = [event for event in first.events if event.name == "taskline.retry"]
    assert event.attributes is not None
    assert event.attributes["taskline.failure.kind"] == "not_yet"
    assert "task not found" in str(event.attributes["taskline.reason"])
    assert (first.attributes or {})["taskline.job.ending"] == "defer"
    assert {span.context.trace_id for span in tries} == {first.context.trace_id}  # every try in one trace
    assert [(span.attributes or {})["taskline.job.try"] for span in tries] == list(range(1, len(tries) + 1))
    assert (last.attributes or {})["taskline.outcome"] == "applied"


async def test_a_dead_letter_sets_the_status_to_error_with_its_reason(settings, redis, users, spans):
    """A command for another user's task: its process span ends in ERROR, with a dead-letter event."""
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    create = created(user_id=1)
    await producer.send(create)
    await producer.update_task(task_id=create.task_id, user_id=2, title="not mine")
    await traced_burst(settings)
    (refused,) = [span for span in named(spans, "process ") if span.attributes["taskline.function"] == "update_task"]
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.status.description is not None
    assert refused.status.description.startswith("dead letter: ")
    (event,) = [event for event in refused.events if event.name == "taskline.dead_letter"]
    assert event.attributes is not None
    assert event.attributes["taskline.failure.kind"] == "permanent"
    assert (refused.attributes or {})["taskline.outcome"] == "dead_letter"


async def test_a_job_the_decoder_refuses_is_traced_in_its_producers_trace(settings, redis, users, spans):
    """An invalid command carrying a trace context: its process span is in that trace, its
    `taskline.validated` event says why it was refused, and it ends as a dead letter."""
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    tracer = _PROVIDER.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        context: dict[str, str] = {}
        from opentelemetry import propagate

        propagate.inject(context)
    job_id = str(uuid4())
    bad = {"command_id": job_id, "issued_at": "yesterday", "task_id": str(uuid4()), "user_id": 1, "title": "x"}
    from taskline_producer.wire import envelope, epoch_ms

    job = envelope("create_task", bad, epoch_ms(), {"contract": 4, **context})
    await redis.set(f"arq:job:{job_id}", job)
    await redis.zadd(settings.queue, {job_id: 0})
    await traced_burst(settings)
    (process,) = named(spans, "process ")
    assert process.context.trace_id == caller.get_span_context().trace_id
    (validated,) = [event for event in process.events if event.name == "taskline.validated"]
    assert "issued_at" in str((validated.attributes or {})["taskline.refused"])
    assert process.status.status_code is StatusCode.ERROR
    del producer


async def test_a_bulk_job_is_one_process_span_over_its_transaction(settings, redis, users, spans):
    """send_bulk of 3: one send, one process span counting 3 messages, its transaction applies 3."""
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    await producer.send_bulk([created(), created(), created()])
    await traced_burst(settings)
    (send,) = named(spans, "send ")
    assert (send.attributes or {})["messaging.batch.message_count"] == 3
    (process,) = named(spans, "process ")
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert (process.attributes or {})["messaging.batch.message_count"] == 3
    (transaction,) = children(spans, process, "transaction")
    assert (transaction.attributes or {})["db.operation.batch.size"] == 3


async def test_a_group_commit_links_the_transaction_to_each_jobs_apply_span(settings, redis, users, spans):
    """Many single-command jobs running at once share transactions: such a transaction is a root
    span linked to the process span of every job it served, and each of those links back to it."""
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    for _ in range(40):
        await producer.send(created())  # forty sends, forty traces
    await traced_burst(settings)
    shared = [span for span in named(spans, "transaction") if len(span.links) > 1]
    assert shared, "no transaction applied the commands of more than one job"
    processes = {span.context.span_id: span for span in named(spans, "process ")}
    for transaction in shared:
        assert transaction.parent is None
        assert (transaction.attributes or {})["taskline.jobs"] == len(transaction.links)
        traces = set()
        for link in transaction.links:
            process = processes[link.context.span_id]
            traces.add(process.context.trace_id)
            assert [back.context.span_id for back in process.links] == [transaction.context.span_id]
        assert len(traces) == len(transaction.links)  # one transaction, many traces
    assert len(named(spans, "process ")) == 40


NODE_TRACED_SEND = """
import { createClient } from "redis";
import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import * as taskline from "./dist/index.js";
const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const client = createClient({ url: process.env.REDIS_URL });
await client.connect();
const producer = new taskline.TaskProducer(client, { queue: process.env.TASKLINE_QUEUE });
const receipt = await producer.createTask({ userId: 1, title: "traced from Node.js" });
await client.close();
const [send] = exporter.getFinishedSpans();
console.log(JSON.stringify({
  commandId: receipt.commandId, name: send.name, kind: send.kind, ...send.spanContext(),
}));
"""


async def test_a_command_sent_from_typescript_continues_in_the_workers_spans(settings, redis, users, spans):
    """The TypeScript producer with an OpenTelemetry SDK: its `send` span (PRODUCER) is the parent
    of the worker's process span, across Node.js, Redis and Python."""
    from tests.node_producer import node_json

    env = {**os.environ, "REDIS_URL": settings.redis_url, "TASKLINE_QUEUE": settings.queue}
    sent = node_json(NODE_TRACED_SEND, env=env, timeout=120)
    assert sent["name"] == f"send {settings.queue}"
    assert sent["kind"] == 3  # SpanKind.PRODUCER in @opentelemetry/api
    await traced_burst(settings)
    (process,) = named(spans, "process ")
    assert format(process.context.trace_id, "032x") == sent["traceId"]
    assert process.parent is not None
    assert format(process.parent.span_id, "016x") == sent["spanId"]
    assert (process.attributes or {})["taskline.command.id"] == sent["commandId"]
    assert (process.attributes or {})["taskline.outcome"] == "applied"


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def enqueue_traced(redis: Any, queue: str, commands: list[CreateTask], trace: str | None) -> None:
    """The commands as their own untraced jobs, with `trace` written beside them (the enqueue script)."""
    now = epoch_ms()
    jobs: list[Any] = []
    for command in commands:
        jobs += [str(command.command_id), envelope("create_task", wire_argument(command), now)]
    await redis.eval(ENQUEUE_SCRIPT, 1, queue, *enqueue_arguments(now, DEFAULT_JOB_TTL_MS, jobs, trace))


async def test_a_job_whose_trace_is_not_sampled_gets_no_span(settings, redis, db, users, spans):
    """A trace key whose traceparent's sampled flag is clear: the worker (its sampler follows the
    parent) records nothing for it, not even a transaction, and applies it as usual."""
    command = created()
    unsampled = TRACEPARENT[:-2] + "00"
    await enqueue_traced(redis, settings.queue, [command], f'{{"traceparent":"{unsampled}"}}')
    await traced_burst(settings)
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", command.task_id) == 1
    assert spans.get_finished_spans() == ()


async def test_a_version_4_job_written_before_the_trace_key_still_continues_its_trace(settings, redis, users, spans):
    """Jobs the producers of this release wrote before the trace key (contract 4, k.traceparent)
    are still applied, in their producer's trace."""
    command = created()
    job = envelope("create_task", wire_argument(command), epoch_ms(), {"contract": 4, "traceparent": TRACEPARENT})
    await redis.eval(ENQUEUE_SCRIPT, 1, settings.queue, epoch_ms(), DEFAULT_JOB_TTL_MS, str(command.command_id), job)
    await traced_burst(settings)
    (process,) = named(spans, "process ")
    assert format(process.context.trace_id, "032x") == TRACEPARENT[3:35]
    assert (process.attributes or {})["taskline.outcome"] == "applied"


async def test_a_trace_key_that_is_not_a_trace_context_starts_a_new_trace(settings, redis, db, users, spans):
    """A trace key holding something else (not JSON, no traceparent) is no reason to refuse the
    job: it is applied, in a trace of its own."""
    first, second = created(), created()
    await enqueue_traced(redis, settings.queue, [first], "not json")
    await enqueue_traced(redis, settings.queue, [second], '{"tracestate":"a=1"}')
    await traced_burst(settings)
    processes = named(spans, "process ")
    assert len(processes) == 2
    assert all(span.parent is None for span in processes)
    assert [(span.attributes or {})["taskline.outcome"] for span in processes] == ["applied", "applied"]


class RedisMonitor:
    """Every command Redis runs while it watches (MONITOR), as text: what a worker sent."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.commands: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RedisMonitor:
        ready = asyncio.Event()

        async def watch() -> None:
            async with self.redis.monitor() as monitor:
                ready.set()
                async for command in monitor.listen():
                    self.commands.append(str(command["command"]))

        self._task = asyncio.create_task(watch())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(0.2)  # MONITOR is on once Redis has answered it
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.redis.ping()  # a last command: everything before it has been seen
        await wait_for(lambda: any(c.startswith("PING") for c in self.commands), timeout=10)
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    def mentioning(self, key: str) -> list[str]:
        return [c for c in self.commands if key in c]


@pytest.mark.parametrize("worker_traces", [True, False])
async def test_the_trace_keys_are_read_in_one_mget_per_claim_only_by_a_worker_that_traces(
    settings, redis_url, redis, db, users, spans, worker_traces
):
    """Three traced jobs claimed at once: a worker that traces reads their trace keys in one MGET;
    one that does not sends no command for them at all. Either way they leave in the DEL that
    deletes the jobs' own keys."""
    from redis.asyncio import Redis

    batch = [created() for _ in range(3)]
    await enqueue_traced(redis, settings.queue, batch, f'{{"traceparent":"{TRACEPARENT}"}}')
    trace_keys = [keys.trace_key(str(command.command_id)) for command in batch]
    watcher = Redis.from_url(redis_url)
    try:
        async with RedisMonitor(watcher) as monitor:
            if worker_traces:
                await traced_burst(settings)
            else:
                await run_burst(settings)
    finally:
        await watcher.aclose()
    ids = [task.task_id for task in batch]
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", ids) == 3
    assert await redis.exists(*trace_keys) == 0
    touching = [c for c in monitor.commands if any(key in c for key in trace_keys)]
    reads = [c for c in touching if not c.startswith("DEL")]
    if worker_traces:
        (read,) = reads
        assert read.startswith("MGET")
        assert all(key in read for key in trace_keys)
        assert len(named(spans, "process ")) == 3
    else:
        assert reads == []
    deletes = [c for c in touching if c.startswith("DEL")]
    for command, key in zip(batch, trace_keys, strict=True):  # in the DEL of the job's own keys
        assert any(key in c and keys.job_key(str(command.command_id)) in c for c in deletes)


async def test_outside_a_tracing_test_the_producer_sends_no_trace_context(settings, redis):
    """The test process's provider stays global, but its propagator is off outside `capturing()`:
    other tests' producers keep sending the jobs they always sent (no trace key)."""
    import json

    from opentelemetry import trace

    with capturing():
        pass
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    with trace.get_tracer("test").start_as_current_span("caller"):
        receipt = await producer.create_task(user_id=1, title="untraced")
    raw = await redis.get(f"arq:job:{receipt.command_id}")
    assert json.loads(raw)["k"] == {}
    assert await redis.exists(keys.trace_key(str(receipt.command_id))) == 0


async def test_a_bulk_item_retried_on_its_own_keeps_the_bulk_jobs_trace_key(settings, redis, users, spans):
    """An update in a traced bulk job whose task is created later is enqueued again on its own with
    the bulk job's trace key beside it, so its own process span is in the bulk job's trace."""
    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    late_task = uuid4()
    waits = UpdateTask(
        command_id=uuid4(), issued_at=datetime.now(UTC), task_id=late_task, user_id=1, title="after its create"
    )
    await producer.send_bulk([waits])
    late = created(task_id=late_task)
    due_later = epoch_ms() + 500  # the create becomes runnable only after the bulk job ran
    job = envelope("create_task", wire_argument(late), due_later)
    await redis.eval(ENQUEUE_SCRIPT, 1, settings.queue, due_later, DEFAULT_JOB_TTL_MS, str(late.command_id), job)
    await traced_burst(settings)
    (send,) = named(spans, "send ")
    processes = [span for span in named(spans, "process ") if span.context.trace_id == send.context.trace_id]
    ids = [(span.attributes or {})["messaging.message.id"] for span in processes]
    assert str(waits.command_id) in ids  # the item's own job, in the bulk job's trace
    (item,) = [span for span in processes if (span.attributes or {})["messaging.message.id"] == str(waits.command_id)]
    assert (item.attributes or {})["taskline.outcome"] == "applied"
    assert await redis.exists(keys.trace_key(str(waits.command_id))) == 0
