/**
 * The client and docs/commands.schema.json agree: what the client sends validates against the
 * schema (ajv, with format checks), and src/commands.generated.ts is what the schema generates.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";

import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

import {
  completeTaskCommand,
  createTaskCommand,
  TaskProducer,
  updateTaskCommand,
  type Command,
} from "../src/index.js";
import { FakeRedis, jobsIn } from "./fake-redis.js";
import type { EvalArguments } from "../src/redis-client.js";

const PACKAGE = fileURLToPath(new URL("../..", import.meta.url)); // .test-build/test/ -> the package
const SCHEMA = JSON.parse(readFileSync(`${PACKAGE}/../../docs/commands.schema.json`, "utf8")) as {
  $schema: string;
  $defs: Record<string, unknown>;
};
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

function validatorFor(definition: string) {
  const ajv = addFormats(new Ajv2020({ strict: false, allErrors: true }));
  return ajv.compile({ $schema: SCHEMA.$schema, $ref: `#/$defs/${definition}`, $defs: SCHEMA.$defs });
}

const TASK = "0b6f9b5e-3c1e-4a8e-9f00-7d2b4c1a9e11";
const SAMPLES: Command[] = [
  createTaskCommand({ userId: 1, title: "Buy milk" }),
  createTaskCommand({ userId: 2 ** 31 - 1, title: "😀".repeat(200), description: "d".repeat(1000) }),
  createTaskCommand({ userId: 3, title: "t", description: null, issuedAt: "2026-11-25T10:30:00.123456+01:00" }),
  createTaskCommand({ userId: 3, title: "t", description: "", taskId: TASK.toUpperCase() }),
  updateTaskCommand({ taskId: TASK, userId: 4, title: "New title" }),
  updateTaskCommand({ taskId: TASK, userId: 4, description: null }),
  updateTaskCommand({ taskId: TASK, userId: 4, title: "t", description: "d", issuedAt: new Date(0) }),
  completeTaskCommand({ taskId: TASK, userId: 5 }),
];

describe("what the client builds validates against the published schema", () => {
  for (const sample of SAMPLES) {
    test(`${sample.function} ${JSON.stringify(sample.command).slice(0, 80)}`, () => {
      const validate = validatorFor(sample.function);
      assert.ok(validate(sample.command), JSON.stringify(validate.errors));
    });
  }

  test("the argument of a sendBulk job validates against apply_commands", async () => {
    const redis = new FakeRedis();
    await new TaskProducer(redis).sendBulk(SAMPLES);
    const [{ job }] = jobsIn(redis.calls.at(-1)?.args[1] as EvalArguments) as unknown as [{ job: { a: unknown[] } }];
    const validate = validatorFor("apply_commands");
    assert.ok(validate(job.a[0]), JSON.stringify(validate.errors));
  });

  test("the schema is strict enough for this test to mean something: it refuses a broken command", () => {
    const validate = validatorFor("complete_task");
    assert.equal(validate({ ...SAMPLES[7]?.command, user_id: 0 }), false);
    assert.equal(validate({ ...SAMPLES[7]?.command, task_id: "not-a-uuid" }), false);
  });
});

describe("the generated types", () => {
  test("src/commands.generated.ts is exactly what docs/commands.schema.json generates (npm run gen)", async () => {
    const { generate, OUTPUT_PATH } = (await import(`${PACKAGE}/scripts/generate-types.mjs`)) as {
      generate: () => Promise<string>;
      OUTPUT_PATH: string;
    };
    assert.equal(readFileSync(OUTPUT_PATH, "utf8"), await generate(), "stale: run npm run gen and commit the result");
  });
});
