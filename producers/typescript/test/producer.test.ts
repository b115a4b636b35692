/** What TaskProducer puts on the wire, checked against a recording stand-in for the Redis client. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  completeTaskCommand,
  createTaskCommand,
  InvalidCommandError,
  InvalidSendError,
  TaskProducer,
  updateTaskCommand,
  type Command,
} from "../src/index.js";
import { ENQUEUE_FAIR_SCRIPT, ENQUEUE_SCRIPT } from "../src/wire.js";
import { FakeRedis, jobsIn } from "./fake-redis.js";
import type { EvalArguments } from "../src/redis-client.js";

const TASK = "0b6f9b5e-3c1e-4a8e-9f00-7d2b4c1a9e11";

function enqueued(redis: FakeRedis): Array<{ id: string; job: Record<string, unknown> }> {
  const fromCalls = redis.calls.filter((c) => c.command === "EVAL" || c.command === "EVALSHA");
  return fromCalls.flatMap((c) => jobsIn(c.args[1] as EvalArguments));
}

function creates(count: number): Command[] {
  return Array.from({ length: count }, (_, i) => createTaskCommand({ userId: 1, title: `task ${i}` }));
}

describe("one command at a time", () => {
  test("createTask sends the five-member envelope with an empty k, job id = command id", async () => {
    const redis = new FakeRedis();
    const before = Date.now();
    const receipt = await new TaskProducer(redis).createTask({ userId: 7, title: "Write the report" });
    const [{ id, job }] = enqueued(redis) as [{ id: string; job: Record<string, unknown> }];
    assert.equal(id, receipt.commandId);
    assert.deepEqual(Object.keys(job), ["f", "a", "k", "t", "et"]);
    assert.equal(job.f, "create_task");
    assert.deepEqual(job.k, {});
    assert.equal(job.t, null);
    assert.ok((job.et as number) >= before && (job.et as number) <= Date.now());
    const [command] = job.a as [Record<string, unknown>];
    assert.deepEqual(
      { ...command, issued_at: "-" },
      { command_id: receipt.commandId, issued_at: "-", task_id: receipt.taskId, user_id: 7, title: "Write the report" },
    );
    assert.deepEqual(receipt.toJSON(), { commandId: id, jobId: id, taskId: receipt.taskId, queued: true });
  });

  test("the queue, the job TTL and the score go where the script reads them", async () => {
    const redis = new FakeRedis();
    await new TaskProducer(redis, { queue: "q:other", jobTtlMs: 5_000 }).completeTask({ taskId: TASK, userId: 1 });
    const call = redis.calls.at(-1)?.args[1] as EvalArguments;
    assert.deepEqual(call.keys, ["q:other"]);
    const [score, ttl] = call.arguments;
    assert.equal(ttl, "5000");
    assert.equal(JSON.parse(call.arguments[3] as string).et, Number(score));
  });

  test("EVALSHA first; on NOSCRIPT the script itself is sent (EVAL), then EVALSHA again", async () => {
    const redis = new FakeRedis();
    const producer = new TaskProducer(redis);
    await producer.completeTask({ taskId: TASK, userId: 1 });
    await producer.completeTask({ taskId: TASK, userId: 1 });
    assert.deepEqual(redis.calls.map((c) => c.command), ["EVALSHA (NOSCRIPT)", "EVAL", "EVALSHA"]);
    assert.equal(redis.calls[1]?.args[0], ENQUEUE_SCRIPT);
  });

  test("a job refused as a duplicate gives a receipt with queued: false", async () => {
    const redis = new FakeRedis();
    redis.onEnqueue = () => [0];
    const receipt = await new TaskProducer(redis).updateTask({ taskId: TASK, userId: 1, description: null });
    assert.equal(receipt.queued, false);
  });

  test("a job over the workers' size limit (maxPayloadBytes) is refused before it is sent", async () => {
    const redis = new FakeRedis();
    const producer = new TaskProducer(redis, { maxPayloadBytes: 300 });
    await assert.rejects(producer.createTask({ userId: 1, title: "t".repeat(200) }), /over the workers' limit of 300/);
    assert.deepEqual(redis.calls, []);
  });

  test("an invalid command throws before anything is sent", async () => {
    const redis = new FakeRedis();
    await assert.rejects(new TaskProducer(redis).createTask({ userId: 1, title: "" }), InvalidCommandError);
    assert.deepEqual(redis.calls, []);
  });
});

describe("outcomeTtl and the contract version", () => {
  test("outcomeTtl puts contract 2 and outcome_ttl in k", async () => {
    const redis = new FakeRedis();
    await new TaskProducer(redis).createTask({ userId: 1, title: "t" }, { outcomeTtl: 3600 });
    assert.deepEqual(enqueued(redis)[0]?.job.k, { contract: 2, outcome_ttl: 3600 });
  });

  test("the producer's default applies to every send; outcomeTtl: null turns it off for one", async () => {
    const redis = new FakeRedis();
    const producer = new TaskProducer(redis, { outcomeTtl: 60 });
    await producer.completeTask({ taskId: TASK, userId: 1 });
    await producer.completeTask({ taskId: TASK, userId: 1 }, { outcomeTtl: null });
    await producer.completeTask({ taskId: TASK, userId: 1 }, { outcomeTtl: 5 });
    assert.deepEqual(
      enqueued(redis).map((j) => j.job.k),
      [{ contract: 2, outcome_ttl: 60 }, {}, { contract: 2, outcome_ttl: 5 }],
    );
  });

  test("an outcomeTtl outside 1..604800 seconds is refused", async () => {
    const redis = new FakeRedis();
    for (const ttl of [0, 604_801, 1.5, Number.NaN]) {
      await assert.rejects(new TaskProducer(redis).completeTask({ taskId: TASK, userId: 1 }, { outcomeTtl: ttl }), InvalidSendError);
    }
    assert.throws(() => new TaskProducer(redis, { outcomeTtl: -1 }), InvalidSendError);
    assert.deepEqual(redis.calls, []);
  });
});

describe("sendMany", () => {
  test("one job per command, 500 per EVAL, all in one pipelined round trip", async () => {
    const redis = new FakeRedis();
    const commands = creates(1_201);
    const report = await new TaskProducer(redis).sendMany(commands);
    assert.equal(redis.pipelines.length, 1);
    assert.deepEqual(redis.pipelines[0]?.map((c) => jobsIn(c.args[1] as EvalArguments).length), [500, 500, 201]);
    assert.deepEqual(
      enqueued(redis).map((j) => j.id),
      commands.map((c) => c.command.command_id),
    );
    assert.equal(report.queued, 1_201);
    assert.equal(report.receipts.length, 1_201);
  });

  test("more than 10,000 commands take one round trip per 10,000", async () => {
    const redis = new FakeRedis();
    await new TaskProducer(redis).sendMany(creates(10_001));
    assert.deepEqual(redis.pipelines.map((p) => p.length), [20, 1]);
  });

  test("duplicates are reported by command id, in order", async () => {
    const redis = new FakeRedis();
    redis.onEnqueue = (options) => jobsIn(options).map((_, i) => (i % 2 === 0 ? 1 : 0));
    const commands = creates(4);
    const report = await new TaskProducer(redis).sendMany(commands);
    assert.equal(report.queued, 2);
    assert.deepEqual(report.duplicates, [commands[1]?.command.command_id, commands[3]?.command.command_id]);
    assert.deepEqual(report.receipts.map((r) => r.queued), [true, false, true, false]);
  });

  test("one invalid command among many: it throws and nothing is sent", async () => {
    const redis = new FakeRedis();
    const broken = { function: "complete_task", command: { ...completeTaskCommand({ taskId: TASK, userId: 1 }).command, user_id: 0 } };
    await assert.rejects(new TaskProducer(redis).sendMany([...creates(3), broken as Command]), /user_id must be an integer/);
    assert.deepEqual(redis.pipelines, []);
  });

  test("raw {function, command} objects (e.g. parsed JSON lines) are checked and accepted", async () => {
    const redis = new FakeRedis();
    const raw = JSON.parse(JSON.stringify(updateTaskCommand({ taskId: TASK, userId: 3, title: "x" }))) as Command;
    const report = await new TaskProducer(redis).sendMany([raw]);
    assert.equal(report.queued, 1);
  });
});

describe("sendBulk", () => {
  test("one apply_commands job carrying every {function, command}, under a fresh job id", async () => {
    const redis = new FakeRedis();
    const commands = [...creates(2), completeTaskCommand({ taskId: TASK, userId: 1 })];
    const bulk = await new TaskProducer(redis).sendBulk(commands, { outcomeTtl: 30 });
    const jobs = enqueued(redis);
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]?.id, bulk.jobId);
    assert.equal(jobs[0]?.job.f, "apply_commands");
    assert.deepEqual(jobs[0]?.job.a, [commands]);
    assert.deepEqual(jobs[0]?.job.k, { contract: 2, outcome_ttl: 30 });
    assert.deepEqual(
      bulk.receipts.map((r) => [r.commandId, r.jobId]),
      commands.map((c) => [c.command.command_id, bulk.jobId]),
    );
  });

  test("the job JSON begins with {\"f\":\"apply_commands\" as the workers require", async () => {
    const redis = new FakeRedis();
    await new TaskProducer(redis).sendBulk(creates(1), { jobId: "bulk-1" });
    const call = redis.calls.at(-1)?.args[1] as EvalArguments;
    assert.equal(call.arguments[2], "bulk-1");
    assert.ok((call.arguments[3] as string).startsWith('{"f":"apply_commands"'));
  });

  test("0 or 1,001 commands are refused", async () => {
    const producer = new TaskProducer(new FakeRedis());
    await assert.rejects(producer.sendBulk([]), /1 to 1000 commands, got 0/);
    await assert.rejects(producer.sendBulk(creates(1_001)), /1 to 1000 commands, got 1001/);
  });

  test("a bulk job over the workers' 1 MiB limit is refused before it is sent", async () => {
    const redis = new FakeRedis();
    const big = Array.from({ length: 1_000 }, () =>
      createTaskCommand({ userId: 1, title: "t", description: "ü".repeat(1_000) }),
    );
    await assert.rejects(new TaskProducer(redis).sendBulk(big), /over the workers' limit of 1048576.*fewer commands/);
    assert.deepEqual(redis.calls, []);
    await new TaskProducer(redis, { maxBulkPayloadBytes: 4 * 1024 * 1024 }).sendBulk(big);
    assert.equal(enqueued(redis).length, 1);
  });
});

describe("fair turns", () => {
  test("a fair producer sends the fair script with each job's user as its key, cost 1", async () => {
    const redis = new FakeRedis();
    const producer = new TaskProducer(redis, { fair: true });
    const receipt = await producer.createTask({ userId: 7, title: "mine" });
    await producer.completeTask({ taskId: TASK, userId: 8 }, { fairnessKey: "tenant:acme" });
    assert.equal(redis.calls[1]?.args[0], ENQUEUE_FAIR_SCRIPT);
    const first = (redis.calls[1]?.args[1] as EvalArguments).arguments;
    assert.deepEqual(first.slice(2, 3).concat(first.slice(4)), [receipt.commandId, "user:7", "1"]);
    const second = (redis.calls.at(-1)?.args[1] as EvalArguments).arguments;
    assert.deepEqual(second.slice(4), ["tenant:acme", "1"]);
  });

  test("a bulk job costs its commands and takes its most common user's turns", async () => {
    const redis = new FakeRedis();
    const items = [
      createTaskCommand({ userId: 5, title: "a" }),
      createTaskCommand({ userId: 6, title: "b" }),
      createTaskCommand({ userId: 5, title: "c" }),
    ];
    await new TaskProducer(redis, { fair: true }).sendBulk(items);
    const args = (redis.calls.at(-1)?.args[1] as EvalArguments).arguments;
    assert.deepEqual(args.slice(4), ["user:5", "3"]);
  });

  test("a fairness key that cannot be one is refused before anything is sent", async () => {
    const redis = new FakeRedis();
    const producer = new TaskProducer(redis, { fair: true });
    await assert.rejects(producer.createTask({ userId: 1, title: "t" }, { fairnessKey: "has space" }), /fairness key/);
    assert.deepEqual(redis.calls, []);
  });
});
