/** receipt.outcome(): reading the outcome key and the job's keys, and waiting on the done list. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { TaskProducer } from "../src/index.js";
import { FakeRedis } from "./fake-redis.js";

const COMMAND = "5d8a2f0c-1b7e-4c3d-8a9b-0e1f2a3b4c5d";
const TASK = "0b6f9b5e-3c1e-4a8e-9f00-7d2b4c1a9e11";

function recorded(state: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    command_id: COMMAND,
    job_id: COMMAND,
    state,
    reason: null,
    at: "2026-11-29T10:00:00.000000Z",
    next_try_at: null,
    ...extra,
  });
}

async function sent(redis: FakeRedis, producer = new TaskProducer(redis)) {
  return producer.completeTask({ taskId: TASK, userId: 1, commandId: COMMAND }, { outcomeTtl: 60 });
}

describe("a final outcome", () => {
  test("is returned at once, without opening a blocking connection", async () => {
    const redis = new FakeRedis();
    redis.store.set(`taskline:outcome:${COMMAND}`, recorded("applied"));
    const outcome = await (await sent(redis)).outcome({ timeoutMs: 5_000 });
    assert.deepEqual(outcome, {
      commandId: COMMAND,
      jobId: COMMAND,
      state: "applied",
      final: true,
      reason: null,
      at: "2026-11-29T10:00:00.000000Z",
      nextTryAt: null,
      enqueuedAtMs: null,
      timedOut: false,
    });
    assert.equal(redis.duplicates.length, 0);
  });

  test("a dead letter carries its reason", async () => {
    const redis = new FakeRedis();
    redis.store.set(`taskline:outcome:${COMMAND}`, recorded("dead_letter", { reason: "task not found" }));
    const outcome = await (await sent(redis)).outcome();
    assert.deepEqual([outcome.state, outcome.final, outcome.reason], ["dead_letter", true, "task not found"]);
  });
});

describe("waiting", () => {
  test("blocks on the done list (BLMOVE list list LEFT LEFT) until the worker records a final state", async () => {
    const redis = new FakeRedis();
    const receipt = await sent(redis);
    redis.store.set(`arq:job:${COMMAND}`, "{}");
    redis.onBlock = () => {
      redis.store.set(`taskline:outcome:${COMMAND}`, recorded("duplicate"));
      return "1";
    };
    const outcome = await receipt.outcome({ timeoutMs: 10_000 });
    assert.equal(outcome.state, "duplicate");
    const blmove = redis.calls.find((c) => c.command === "BLMOVE");
    const done = `taskline:outcome:${COMMAND}:done`;
    assert.deepEqual(blmove?.args.slice(0, 4), [done, done, "LEFT", "LEFT"]);
    assert.equal(redis.duplicates.length, 1);
    assert.ok(redis.duplicates[0]?.closed, "the connection opened to block on is closed afterwards");
  });

  test("on timeout it returns the last state seen: retrying, with its reason and next try", async () => {
    const redis = new FakeRedis();
    const receipt = await sent(redis);
    redis.store.set(`arq:job:${COMMAND}`, "{}");
    redis.store.set(
      `taskline:outcome:${COMMAND}`,
      recorded("retrying", { reason: "task not created yet", next_try_at: "2026-11-29T10:00:05Z" }),
    );
    const outcome = await receipt.outcome({ timeoutMs: 50 });
    assert.deepEqual(
      [outcome.state, outcome.final, outcome.timedOut, outcome.reason, outcome.nextTryAt],
      ["retrying", false, true, "task not created yet", "2026-11-29T10:00:05Z"],
    );
  });

  test("no outcome yet: queued while the job key exists, running while a worker holds it", async () => {
    const redis = new FakeRedis();
    const receipt = await sent(redis);
    redis.store.set(`arq:job:${COMMAND}`, "{}");
    assert.equal((await receipt.outcome({ timeoutMs: 0 })).state, "queued");
    redis.store.set(`arq:in-progress:${COMMAND}`, "1");
    const running = await receipt.outcome({ timeoutMs: 0 });
    assert.deepEqual([running.state, running.timedOut], ["running", true]);
  });

  test("no outcome and no job: unknown, still waited on until the timeout (the outcome may come)", async () => {
    const redis = new FakeRedis();
    const receipt = await sent(redis);
    const unknown = await receipt.outcome({ timeoutMs: 30 });
    assert.deepEqual([unknown.state, unknown.final, unknown.timedOut], ["unknown", false, true]);
    redis.onBlock = () => {
      redis.store.set(`taskline:outcome:${COMMAND}`, recorded("applied"));
      return "1";
    };
    assert.equal((await receipt.outcome({ timeoutMs: 10_000 })).state, "applied");
  });

  test("a token without a final outcome (racing a retrying write) does not make it spin", async () => {
    const redis = new FakeRedis();
    const receipt = await sent(redis);
    redis.onBlock = () => "1";
    const started = Date.now();
    const outcome = await receipt.outcome({ timeoutMs: 250 });
    assert.equal(outcome.timedOut, true);
    assert.ok(Date.now() - started >= 250);
    assert.ok(redis.duplicates[0]!.timeouts.length <= 4, `blocked ${redis.duplicates[0]!.timeouts.length} times`);
  });

  test("the job of a bulk command is the bulk job: its keys decide queued or running", async () => {
    const redis = new FakeRedis();
    redis.store.set("arq:in-progress:bulk-7", "1");
    const outcome = await new TaskProducer(redis).outcome(COMMAND.toUpperCase(), { jobId: "bulk-7", timeoutMs: 0 });
    assert.deepEqual([outcome.commandId, outcome.jobId, outcome.state], [COMMAND, "bulk-7", "running"]);
  });

  test("each BLMOVE blocks a positive time no longer than 2 s, and never 0 (which is forever)", async () => {
    const redis = new FakeRedis();
    const receipt = await sent(redis);
    redis.store.set(`arq:job:${COMMAND}`, "{}");
    let blocks = 0;
    redis.onBlock = () => {
      blocks += 1;
      if (blocks === 3) redis.store.set(`taskline:outcome:${COMMAND}`, recorded("applied"));
      return null;
    };
    const outcome = await receipt.outcome({ timeoutMs: 60_000 });
    assert.equal(outcome.state, "applied");
    const timeouts = redis.duplicates.flatMap((d) => d.timeouts);
    assert.equal(timeouts.length, 3);
    assert.ok(timeouts.every((t) => t > 0 && t <= 2), String(timeouts));
  });

  test("a caller's blockingClient is used as it is, and not closed", async () => {
    const redis = new FakeRedis();
    const mine = redis.duplicate();
    await mine.connect();
    redis.duplicates.length = 0;
    const producer = new TaskProducer(redis, { blockingClient: mine });
    const receipt = await sent(redis, producer);
    redis.store.set(`arq:job:${COMMAND}`, "{}");
    await receipt.outcome({ timeoutMs: 20 });
    assert.ok(mine.timeouts.length >= 1);
    assert.equal(mine.closed, false);
    assert.equal(redis.duplicates.length, 0);
  });

  test("a client pool (no duplicate(), its own blMove) is blocked on itself", async () => {
    const redis = new FakeRedis();
    const connection = redis.duplicate();
    await connection.connect();
    const pool = Object.assign(redis, { duplicate: undefined, blMove: connection.blMove.bind(connection) });
    const receipt = await sent(pool as unknown as FakeRedis, new TaskProducer(pool));
    redis.store.set(`arq:job:${COMMAND}`, "{}");
    await receipt.outcome({ timeoutMs: 20 });
    assert.ok(connection.timeouts.length >= 1);
  });

  test("a negative timeout is refused", async () => {
    const redis = new FakeRedis();
    await assert.rejects((await sent(redis)).outcome({ timeoutMs: -1 }), /timeoutMs/);
  });
});
