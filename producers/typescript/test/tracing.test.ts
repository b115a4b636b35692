/** Trace context beside the job: what a traced send puts on the wire, and that the job itself is unchanged. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

import { createTaskCommand, TaskProducer } from "../src/index.js";
import { MemoryRedis } from "../src/testing/memory-redis.js";
import { traceContextOf, traceValue } from "../src/tracing.js";
import { traceKey } from "../src/keys.js";
import { FakeRedis, jobsIn, traceIn } from "./fake-redis.js";
import type { EvalArguments } from "../src/redis-client.js";

const SECRET = "s".repeat(40);
const FIXED_MS = 1764063000123;

function enqueueCalls(redis: FakeRedis): EvalArguments[] {
  return redis.calls.filter((c) => c.command === "EVAL" || c.command === "EVALSHA").map((c) => c.args[1] as EvalArguments);
}

function enqueued(redis: FakeRedis): Array<{ id: string; job: Record<string, unknown> }> {
  return enqueueCalls(redis).flatMap((call) => jobsIn(call));
}

/** The raw job JSON of every job a producer enqueued. */
function rawJobs(redis: FakeRedis): string[] {
  return enqueueCalls(redis).flatMap((call) => {
    const raw: string[] = [];
    for (let i = 2; i + 1 < call.arguments.length; i += 2) raw.push(call.arguments[i + 1] as string);
    return raw;
  });
}

const FIXED_COMMANDS = [
  createTaskCommand({ userId: 7, title: "one", taskId: "7d3e9d6c-41d5-4bd2-9a52-6c1e8f0b0c11", commandId: "0b5e0f5e-7f7f-4a55-9e55-1c1d1e1f2021", issuedAt: "2026-12-08T01:00:00Z" }),
  createTaskCommand({ userId: 7, title: "two", taskId: "8d3e9d6c-41d5-4bd2-9a52-6c1e8f0b0c12", commandId: "1b5e0f5e-7f7f-4a55-9e55-1c1d1e1f2022", issuedAt: "2026-12-08T01:00:01Z" }),
];

/** The same sends (one, many, bulk; signed) with the clock held still: what each wrote. */
async function sendFixed(redis: FakeRedis): Promise<void> {
  const realNow = Date.now;
  Date.now = () => FIXED_MS;
  try {
    for (const key of [undefined, { keyId: "svc", secret: SECRET }]) {
      const producer = new TaskProducer(redis, { queue: "q", signingKey: key ?? null });
      await producer.send(FIXED_COMMANDS[0]!);
      await producer.sendMany(FIXED_COMMANDS);
      await producer.sendBulk(FIXED_COMMANDS, { jobId: "bulk-1" });
    }
  } finally {
    Date.now = realNow;
  }
}

describe("trace context", () => {
  test("without a registered SDK a job is written as before: no trace context, no version, no trace key", async () => {
    const redis = new FakeRedis();
    await new TaskProducer(redis).createTask({ userId: 7, title: "untraced" });
    const [{ job }] = enqueued(redis) as [{ id: string; job: Record<string, unknown> }];
    assert.deepEqual(job.k, {});
    assert.equal(traceIn(enqueueCalls(redis)[0]!), undefined);
  });

  test("with an SDK, each send is a PRODUCER span whose traceparent goes beside its jobs, and the jobs' bytes do not change", async () => {
    const untraced = new FakeRedis();
    await sendFixed(untraced);

    const exporter = new InMemorySpanExporter();
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    try {
      const redis = new FakeRedis();
      const producer = new TaskProducer(redis, { queue: "q" });
      const receipt = await producer.createTask({ userId: 7, title: "traced" });
      await producer.sendBulk([createTaskCommand({ userId: 7, title: "a" }), createTaskCommand({ userId: 7, title: "b" })]);
      const spans = exporter.getFinishedSpans();
      assert.deepEqual(spans.map((span) => span.name), ["send q", "send q"]);
      assert.equal(spans[0]!.attributes["messaging.message.id"], receipt.commandId);
      assert.equal(spans[1]!.attributes["messaging.batch.message_count"], 2);
      enqueueCalls(redis).forEach((call, i) => {
        const { traceId, spanId } = spans[i]!.spanContext();
        assert.equal(traceIn(call), JSON.stringify({ traceparent: `00-${traceId}-${spanId}-01` }));
        for (const { job } of jobsIn(call)) assert.deepEqual(job.k, {});
      });

      const traced = new FakeRedis();
      await sendFixed(traced);
      assert.deepEqual(rawJobs(traced), rawJobs(untraced));
      assert.equal(rawJobs(traced).length, 2 * (1 + 2 + 1));
      assert.ok(enqueueCalls(traced).every((call) => traceIn(call) !== undefined));
      assert.ok(rawJobs(traced).every((raw) => !raw.includes("traceparent")));

      const memory = new MemoryRedis();
      const queued = await new TaskProducer(memory, { queue: "q" }).createTask({ userId: 7, title: "kept" });
      assert.match(memory.strings.get(traceKey(queued.commandId)) ?? "", /^\{"traceparent":"00-[0-9a-f]{32}-[0-9a-f]{16}-01"\}$/);
    } finally {
      trace.disable();
      propagation.disable();
      context.disable();
    }
  });

  test("a carrier's traceparent and tracestate are kept; a too long one or a tracestate alone is not", () => {
    assert.deepEqual(traceContextOf({ traceparent: "00-a-b-01", tracestate: "x=1", baggage: "y" }), {
      traceparent: "00-a-b-01",
      tracestate: "x=1",
    });
    assert.deepEqual(traceContextOf({ tracestate: "x=1" }), {});
    assert.deepEqual(traceContextOf({ traceparent: "x".repeat(300) }), {});
    assert.equal(traceValue({}), undefined);
    assert.equal(traceValue({ traceparent: "00-a-b-01", tracestate: "x=1" }), '{"traceparent":"00-a-b-01","tracestate":"x=1"}');
  });
});
