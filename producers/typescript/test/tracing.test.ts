/** Trace context in jobs (contract 4): what a traced send puts on the wire, and that an untraced one is unchanged. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

import { createTaskCommand, signJob, TaskProducer } from "../src/index.js";
import { traceContextOf, tracedKwargs } from "../src/tracing.js";
import { FakeRedis, jobsIn } from "./fake-redis.js";
import type { EvalArguments } from "../src/redis-client.js";

const SECRET = "s".repeat(40);

function enqueued(redis: FakeRedis): Array<{ id: string; job: Record<string, unknown> }> {
  const fromCalls = redis.calls.filter((c) => c.command === "EVAL" || c.command === "EVALSHA");
  return fromCalls.flatMap((c) => jobsIn(c.args[1] as EvalArguments));
}

describe("trace context", () => {
  test("without a registered SDK a job is written as before: no trace context, no version", async () => {
    const redis = new FakeRedis();
    await new TaskProducer(redis).createTask({ userId: 7, title: "untraced" });
    const [{ job }] = enqueued(redis) as [{ id: string; job: Record<string, unknown> }];
    assert.deepEqual(job.k, {});
  });

  test("with an SDK, each send is a PRODUCER span and its jobs carry its traceparent with contract 4", async () => {
    const exporter = new InMemorySpanExporter();
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const redis = new FakeRedis();
    const producer = new TaskProducer(redis, { queue: "q" });
    const receipt = await producer.createTask({ userId: 7, title: "traced" });
    await producer.sendBulk([createTaskCommand({ userId: 7, title: "a" }), createTaskCommand({ userId: 7, title: "b" })]);
    const spans = exporter.getFinishedSpans();
    assert.deepEqual(spans.map((span) => span.name), ["send q", "send q"]);
    assert.equal(spans[0]!.attributes["messaging.message.id"], receipt.commandId);
    assert.equal(spans[1]!.attributes["messaging.batch.message_count"], 2);
    const jobs = enqueued(redis);
    jobs.forEach(({ job }, i) => {
      const k = job.k as Record<string, unknown>;
      const { traceId, spanId } = spans[i]!.spanContext();
      assert.equal(k.contract, 4);
      assert.equal(k.traceparent, `00-${traceId}-${spanId}-01`);
    });
  });

  test("the trace context is signed with the rest of the job", () => {
    const kwargs = tracedKwargs({}, { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
    const job = JSON.stringify({ f: "complete_task", a: [{}], k: kwargs, t: null, et: 1 });
    const signed = JSON.parse(signJob(job, { keyId: "svc", secret: SECRET })) as { k: Record<string, unknown> };
    assert.equal(signed.k.contract, 4);
    assert.equal(signed.k.traceparent, kwargs.traceparent);
  });

  test("a carrier's traceparent and tracestate are kept; a too long one or a tracestate alone is not", () => {
    assert.deepEqual(traceContextOf({ traceparent: "00-a-b-01", tracestate: "x=1", baggage: "y" }), {
      traceparent: "00-a-b-01",
      tracestate: "x=1",
    });
    assert.deepEqual(traceContextOf({ tracestate: "x=1" }), {});
    assert.deepEqual(traceContextOf({ traceparent: "x".repeat(300) }), {});
    assert.deepEqual(tracedKwargs({ contract: 2, outcome_ttl: 5 }, {}), { contract: 2, outcome_ttl: 5 });
  });
});
