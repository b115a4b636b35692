/** addToOutbox against the real PostgreSQL (a scratch database of its own, dropped at the end). */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";

import pg from "pg";

import { addToOutbox, createTaskCommand, InvalidCommandError, updateTaskCommand, type Command } from "../src/index.js";

const ADMIN_URL = process.env.TASKLINE_TEST_ADMIN_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const NAME = `taskline_ts_outbox_${randomBytes(4).toString("hex")}`;
const OUTBOX_SQL = readFileSync(new URL("../../../python/taskline_producer/sql/outbox.sql", import.meta.url), "utf8");

let client: pg.Client;

before(async () => {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${NAME}"`);
  await admin.end();
  client = new pg.Client({ connectionString: ADMIN_URL.replace(/\/[^/]*$/, `/${NAME}`) });
  await client.connect();
  await client.query(OUTBOX_SQL);
});

after(async () => {
  await client?.end();
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${NAME}" WITH (FORCE)`);
  await admin.end();
});

async function rowsFor(ids: string[]): Promise<Array<{ function: string; command_id: string; command: unknown }>> {
  const result = await client.query(
    "SELECT function, command_id, command FROM taskline_outbox WHERE command_id = ANY($1::text[]) ORDER BY id",
    [ids],
  );
  return result.rows;
}

describe("addToOutbox", () => {
  test("commits many commands in the caller's transaction, in order, as the contract's JSON", async () => {
    const created = createTaskCommand({ userId: 7, title: "from node" });
    const commands: Command[] = [created, updateTaskCommand({ taskId: created.command.task_id, userId: 7, description: null })];
    await client.query("BEGIN");
    assert.equal(await addToOutbox(client, commands), 2);
    await client.query("COMMIT");
    const rows = await rowsFor(commands.map((c) => c.command.command_id));
    assert.deepEqual(
      rows.map((r) => [r.function, r.command_id]),
      commands.map((c) => [c.function, c.command.command_id]),
    );
    assert.deepEqual(rows[1]?.command, { ...commands[1]?.command, description: null });
  });

  test("a rolled-back transaction leaves nothing in the outbox", async () => {
    const command = createTaskCommand({ userId: 7, title: "never" });
    await client.query("BEGIN");
    await addToOutbox(client, command);
    await client.query("ROLLBACK");
    assert.deepEqual(await rowsFor([command.command.command_id]), []);
  });

  test("an item that breaks the contract is refused before anything is written", async () => {
    const good = createTaskCommand({ userId: 7, title: "fine" });
    const bad = { function: "create_task", command: { ...good.command, command_id: "not-a-uuid" } } as Command;
    await assert.rejects(addToOutbox(client, [good, bad]), InvalidCommandError);
    assert.deepEqual(await rowsFor([good.command.command_id]), []);
  });
});
