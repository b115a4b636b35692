/**
 * @taskline/producer/testing: a recording producer that sends what the real one sends, refuses
 * what a worker refuses (the shared contract cases), and assertions that show decoded commands.
 */
import assert from "node:assert/strict";
import { AssertionError } from "node:assert";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { createTaskCommand, InvalidCommandError, TaskProducer, type Command } from "../src/index.js";
import {
  ABSENT,
  assertNotSent,
  assertSent,
  inspectJob,
  RecordingProducer,
  tasklineMatchers,
  WouldBeRefusedError,
} from "../src/testing/index.js";
import type { EvalArguments } from "../src/redis-client.js";
import { FakeRedis } from "./fake-redis.js";

interface ContractCase {
  name: string;
  function: string;
  command: Record<string, unknown>;
  valid: boolean;
  field: string | null;
}

/** The shared contract cases: the worker's decoder tests and the Python producer's run the same file. */
const CASES_FILE = new URL("../../../../tests/contract_cases.json", import.meta.url);
const CASES = (JSON.parse(readFileSync(CASES_FILE, "utf8")) as { cases: ContractCase[] }).cases;
const KEY = { keyId: "billing-1", secret: "s".repeat(40) };
const TASK = "0b6f9b5e-3c1e-4a8e-9f00-7d2b4c1a9e11";
const ISSUED = "2026-11-25T09:30:00Z";

function caseJob(c: ContractCase): string {
  return JSON.stringify({ f: c.function, a: [c.command], k: {}, t: null, et: 1 });
}

describe("the contract cases, as the worker judges them", () => {
  test("the cases file is there and holds both kinds", () => {
    assert.ok(CASES.filter((c) => c.valid).length > 10 && CASES.filter((c) => !c.valid).length > 10);
  });

  for (const c of CASES) {
    test(`send: ${c.name}`, async () => {
      const producer = new RecordingProducer({ futureToleranceS: null }); // some cases are dated years ahead
      const item = { function: c.function, command: c.command } as Command;
      if (c.valid) {
        await producer.send(item);
        producer.assertSent(c.function, c.command);
        return;
      }
      await assert.rejects(producer.send(item), (error: unknown) => {
        assert.ok(error instanceof InvalidCommandError, String(error));
        if (c.field !== null) assert.equal(error.field, c.field);
        return true;
      });
      assert.deepEqual(producer.jobs, []);
    });

    test(`job text reaching its Redis: ${c.name}`, () => {
      const producer = new RecordingProducer({ futureToleranceS: null });
      const call = { keys: [producer.queue], arguments: ["1", "1000", "job-1", caseJob(c)] };
      if (c.valid) {
        producer.memory.enqueue(call);
        assert.equal(producer.assertSent(c.function).job.raw, caseJob(c));
        return;
      }
      assert.throws(() => producer.memory.enqueue(call), (error: unknown) => {
        assert.ok(error instanceof WouldBeRefusedError, String(error));
        if (c.field !== null) assert.equal(error.field, c.field);
        return true;
      });
      assert.equal(producer.memory.strings.size, 0);
    });
  }
});

describe("the same producer as the real one", () => {
  for (const key of [undefined, KEY]) {
    test(`the recorded text is the real producer's text (${key ? "signed" : "unsigned"})`, async (t) => {
      t.mock.method(Date, "now", () => 1_764_063_000_000);
      const redis = new FakeRedis();
      const real = new TaskProducer(redis, { signingKey: key ?? null });
      const recording = new RecordingProducer({ signingKey: key ?? null });
      const commands = [
        createTaskCommand({ userId: 7, title: "Write it", taskId: TASK, issuedAt: ISSUED }),
        createTaskCommand({ userId: 8, title: "And this", taskId: TASK, issuedAt: ISSUED }),
      ];
      for (const producer of [real, recording]) {
        await producer.send(commands[0] as Command);
        await producer.sendMany(commands, { outcomeTtl: 60 });
        await producer.sendBulk(commands, { jobId: "bulk-1" });
      }
      const realJobs = redis.calls
        .filter((call) => call.command === "EVAL" || call.command === "EVALSHA")
        .flatMap((call) => {
          const args = (call.args[1] as EvalArguments).arguments;
          return args.slice(2).filter((_, i) => i % 2 === 1);
        });
      assert.deepEqual(
        recording.jobs.map((job) => job.raw),
        realJobs,
      );
      assert.deepEqual(recording.jobs.map((job) => job.signedBy), recording.jobs.map(() => key?.keyId ?? null));
    });
  }

  test("a command the real producer refuses is refused the same way, before anything is kept", async () => {
    const producer = new RecordingProducer();
    await assert.rejects(producer.createTask({ userId: 0, title: "t" }), InvalidCommandError);
    assert.deepEqual(producer.jobs, []);
  });

  test("issued_at beyond the future tolerance is refused, measured from the given clock", async () => {
    const now = new Date("2026-11-25T09:00:00Z");
    const producer = new RecordingProducer({ clock: () => now });
    await producer.completeTask({ taskId: TASK, userId: 1, issuedAt: new Date(now.getTime() + 59 * 60_000) });
    await assert.rejects(
      producer.completeTask({ taskId: TASK, userId: 1, issuedAt: new Date(now.getTime() + 61 * 60_000) }),
      /ahead of the worker's clock/,
    );
  });

  test("WouldBeRefusedError is an AssertionError, so any test runner reports it as a failure", () => {
    assert.throws(() => inspectJob("{}", { jobId: "j", queue: "q" }), AssertionError);
  });

  test("a tampered or foreign signature is refused", async () => {
    const signer = new RecordingProducer({ signingKey: KEY });
    await signer.createTask({ userId: 7, title: "Mine" });
    const raw = signer.jobs[0]?.raw ?? "";
    const producer = new RecordingProducer({ signingKey: KEY });
    const call = (text: string) => ({ keys: [producer.queue], arguments: ["1", "1", "x", text] });
    assert.throws(() => producer.memory.enqueue(call(raw.replace("Mine", "Ours"))), /bad signature/);
    const stranger = new RecordingProducer();
    assert.throws(() => stranger.memory.enqueue(call(raw)), /unknown key/);
  });
});

describe("duplicates, bulk and outcomes", () => {
  test("a re-send of a queued command is refused as a duplicate and not counted", async () => {
    const producer = new RecordingProducer();
    const first = await producer.createTask({ userId: 7, title: "Once" });
    const again = await producer.createTask({ userId: 7, title: "Once", commandId: first.commandId });
    assert.deepEqual([first.queued, again.queued], [true, false]);
    producer.assertSent("create_task", { title: "Once" }, { count: 1 });
    producer.assertSent("create_task", { title: "Once" }, { queued: false });
  });

  test("bulk items are commands of their own, marked as sent in bulk", async () => {
    const producer = new RecordingProducer();
    const receipt = await producer.sendBulk([1, 2].map((userId) => createTaskCommand({ userId, title: "b" })));
    const item = producer.assertSent("create_task", { userId: 2 });
    assert.deepEqual([item.inBulk, item.job.jobId, item.job.function], [true, receipt.jobId, "apply_commands"]);
    producer.assertSent("create_task", { title: "b" }, { count: 2 });
  });

  test("settle gives waiting code the outcome a worker would write", async () => {
    const producer = new RecordingProducer();
    const receipt = await producer.createTask({ userId: 7, title: "t" }, { outcomeTtl: 60 });
    producer.settle(receipt.commandId, "dead_letter", { reason: "user not found" });
    const outcome = await receipt.outcome({ timeoutMs: 5_000 });
    assert.deepEqual([outcome.state, outcome.reason, outcome.timedOut], ["dead_letter", "user not found", false]);
    const plain = await producer.createTask({ userId: 7, title: "t" });
    assert.throws(() => producer.settle(plain.commandId), /without outcomeTtl/);
  });
});

describe("assertions", () => {
  test("fields match by wire or typed-helper name, a Date, a UUID in any case, a predicate, ABSENT", async () => {
    const producer = new RecordingProducer();
    await producer.updateTask({ taskId: TASK, userId: 7, description: null, issuedAt: ISSUED });
    producer.assertSent("update_task", { taskId: TASK.toUpperCase(), issued_at: new Date(ISSUED) });
    producer.assertSent("update_task", { description: null, title: ABSENT, user_id: (id: number) => id > 5 });
    producer.assertNotSent("update_task", { title: null });
  });

  test("a failed assertSent lists the decoded commands and what differs, never the raw signed text", async () => {
    const producer = new RecordingProducer({ signingKey: KEY });
    await producer.createTask({ userId: 7, title: "Write the report", taskId: TASK });
    assert.throws(
      () => assertSent(producer, "create_task", { userId: 7, title: "Write the summary" }),
      (error: unknown) => {
        assert.ok(error instanceof AssertionError);
        const text = error.message;
        assert.match(text, /expected a create_task with userId=7, title="Write the summary" to have been sent; found 0/);
        assert.match(text, /"title":"Write the report"/);
        assert.match(text, /signed by "billing-1"; differs in title/);
        assert.doesNotMatch(text, /"sig"/);
        return true;
      },
    );
  });

  test("assertNotSent fails showing the commands that match", async () => {
    const producer = new RecordingProducer();
    assertNotSent(producer, "complete_task");
    await producer.completeTask({ taskId: TASK, userId: 3 });
    assert.throws(() => assertNotSent(producer, "complete_task", { userId: 3 }), /1 was:\n {2}complete_task\(/);
  });

  test("count and the job filters", async () => {
    const producer = new RecordingProducer({ signingKey: KEY });
    await producer.completeTask({ taskId: TASK, userId: 3 }, { outcomeTtl: 30 });
    await producer.completeTask({ taskId: TASK, userId: 3 });
    producer.assertSent("complete_task", {}, { count: 2, signedBy: "billing-1" });
    producer.assertSent("complete_task", {}, { count: 1, outcomeTtl: 30 });
    producer.assertNotSent(undefined, {}, { signedBy: null });
    assert.throws(() => producer.assertSent("complete_task", {}, { count: 3 }), /exactly 3 complete_task/);
  });

  test("a misspelt field or function throws at once rather than matching nothing", () => {
    const producer = new RecordingProducer();
    assert.throws(() => producer.assertNotSent("create_task", { titel: "x" }), /"titel" is not a member of create_task/);
    assert.throws(() => producer.assertNotSent("create"), /"create" is not a command function/);
  });

  test("tasklineMatchers.toHaveSent passes, fails, and words the negation, as expect.extend wants", async () => {
    const producer = new RecordingProducer();
    await producer.createTask({ userId: 7, title: "Hello" });
    const hit = tasklineMatchers.toHaveSent(producer, "create_task", { userId: 7 });
    assert.equal(hit.pass, true);
    assert.match(hit.message(), /expected no create_task with userId=7 to have been sent; 1 was/);
    const miss = tasklineMatchers.toHaveSent(producer, "create_task", { userId: 8 });
    assert.equal(miss.pass, false);
    assert.match(miss.message(), /expected a create_task with userId=8 to have been sent; found 0/);
    assert.throws(() => tasklineMatchers.toHaveSent({}, "create_task"), /must be given a RecordingProducer/);
  });

  test("the memory Redis refuses a script it does not stand in for", async () => {
    const producer = new RecordingProducer();
    await assert.rejects(producer.memory.eval("return 1", { keys: [], arguments: [] }), /stands in for the calls a TaskProducer makes/);
  });
});

