/** The checks made before sending: the contract's rules, with errors that name the member. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  checkCommand,
  checkItem,
  completeTaskCommand,
  createTaskCommand,
  InvalidCommandError,
  updateTaskCommand,
} from "../src/index.js";

const TASK = "0b6f9b5e-3c1e-4a8e-9f00-7d2b4c1a9e11";
const COMMAND = "5d8a2f0c-1b7e-4c3d-8a9b-0e1f2a3b4c5d";

function base(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { command_id: COMMAND, issued_at: "2026-11-25T09:30:00.123456+01:00", task_id: TASK, user_id: 12, ...overrides };
}

function refusal(run: () => unknown): InvalidCommandError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof InvalidCommandError, `expected InvalidCommandError, got ${String(error)}`);
    return error;
  }
  assert.fail("the command was accepted");
}

describe("accepted commands", () => {
  test("a create with only the required members gets generated ids and an RFC 3339 issued_at", () => {
    const { function: fn, command } = createTaskCommand({ userId: 7, title: "Write the report" });
    assert.equal(fn, "create_task");
    assert.match(command.command_id, /^[0-9a-f-]{36}$/);
    assert.match(command.task_id, /^[0-9a-f-]{36}$/);
    assert.match(command.issued_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.equal("description" in command, false, "an absent description stays absent");
  });

  test("upper-case UUIDs are sent lower-case, so the job id deduplicates whatever the case", () => {
    const { command } = completeTaskCommand({ taskId: TASK.toUpperCase(), userId: 1, commandId: COMMAND.toUpperCase() });
    assert.equal(command.task_id, TASK);
    assert.equal(command.command_id, COMMAND);
  });

  test("a Date becomes its ISO form; a string is sent exactly as given", () => {
    const date = new Date("2026-11-25T08:30:00.5Z");
    assert.equal(completeTaskCommand({ taskId: TASK, userId: 1, issuedAt: date }).command.issued_at, "2026-11-25T08:30:00.500Z");
    const text = "2026-11-25T10:30:00.123456+01:00";
    assert.equal(completeTaskCommand({ taskId: TASK, userId: 1, issuedAt: text }).command.issued_at, text);
  });

  test("an update keeps absent and null apart: description null clears, absent leaves it", () => {
    const cleared = updateTaskCommand({ taskId: TASK, userId: 1, description: null }).command;
    assert.deepEqual([cleared.description, "title" in cleared], [null, false]);
    const renamed = updateTaskCommand({ taskId: TASK, userId: 1, title: "New" }).command;
    assert.deepEqual([renamed.title, "description" in renamed], ["New", false]);
  });

  test("200 emoji make a 200-character title (code points, not UTF-16 units)", () => {
    assert.equal(createTaskCommand({ userId: 1, title: "😀".repeat(200) }).command.title.length, 400);
  });

  test("text is kept exactly as given: no trimming", () => {
    assert.equal(createTaskCommand({ userId: 1, title: "  padded \n" }).command.title, "  padded \n");
  });

  test("the boundaries of user_id and description are inside the contract", () => {
    checkCommand("create_task", base({ title: "t", user_id: 2 ** 31 - 1, description: "d".repeat(1000) }));
    checkCommand("create_task", base({ title: "t", user_id: 1, description: "" }));
  });
});

const REFUSED: Array<[string, string, Record<string, unknown>, string, RegExp]> = [
  ["empty title", "create_task", base({ title: "" }), "title", /1 to 200 characters/],
  ["201-character title", "create_task", base({ title: "😀".repeat(201) }), "title", /got 201/],
  ["whitespace-only title", "create_task", base({ title: " \t\u3000" }), "title", /not whitespace/],
  ["title with NUL", "create_task", base({ title: "a\u0000b" }), "title", /NUL/],
  ["title with a lone surrogate", "create_task", base({ title: "a\uD800b" }), "title", /unpaired surrogates/],
  ["description with a lone low surrogate", "create_task", base({ title: "t", description: "\uDC00" }), "description", /surrogates/],
  ["1001-character description", "create_task", base({ title: "t", description: "d".repeat(1001) }), "description", /0 to 1000/],
  ["title a number", "create_task", base({ title: 5 }), "title", /must be a string/],
  ["missing title", "create_task", base(), "title", /required/],
  ["user_id 0", "complete_task", base({ user_id: 0 }), "user_id", /from 1 to 2147483647/],
  ["user_id 2^31", "complete_task", base({ user_id: 2 ** 31 }), "user_id", /from 1 to 2147483647/],
  ["user_id 1.5", "complete_task", base({ user_id: 1.5 }), "user_id", /integer/],
  ["user_id a string", "complete_task", base({ user_id: "12" }), "user_id", /got "12"/],
  ["user_id a boolean", "complete_task", base({ user_id: true }), "user_id", /got true/],
  ["UUID without hyphens", "complete_task", base({ command_id: COMMAND.replaceAll("-", "") }), "command_id", /8-4-4-4-12/],
  ["UUID in braces", "complete_task", base({ task_id: `{${TASK}}` }), "task_id", /8-4-4-4-12/],
  ["issued_at without offset", "complete_task", base({ issued_at: "2026-11-25T09:30:00" }), "issued_at", /explicit offset/],
  ["issued_at with 7 fractional digits", "complete_task", base({ issued_at: "2026-11-25T09:30:00.1234567Z" }), "issued_at", /microsecond/],
  ["issued_at on 29 February 2026", "complete_task", base({ issued_at: "2026-02-29T09:30:00Z" }), "issued_at", /RFC 3339/],
  ["issued_at at hour 24", "complete_task", base({ issued_at: "2026-11-25T24:00:00Z" }), "issued_at", /RFC 3339/],
  ["issued_at an epoch number", "complete_task", base({ issued_at: 1764063000 }), "issued_at", /RFC 3339/],
  ["unknown member", "complete_task", base({ completed: true }), "completed", /not a member of complete_task/],
  ["update changing nothing", "update_task", base(), "title or description", /at least one/],
  ["update with title null", "update_task", base({ title: null }), "title", /cannot be null/],
];

describe("refused commands name the member and the rule", () => {
  for (const [name, fn, command, field, problem] of REFUSED) {
    test(name, () => {
      const error = refusal(() => checkCommand(fn, command));
      assert.equal(error.field, field);
      assert.equal(error.jobFunction, fn);
      assert.match(error.message, problem);
      assert.ok(error.message.startsWith(`${fn}: ${field} `), error.message);
    });
  }

  test("a Date that is invalid, or outside years 1 to 9999, is refused", () => {
    for (const date of [new Date(Number.NaN), new Date(8.64e15), new Date(Date.UTC(-1, 0, 1))]) {
      assert.equal(refusal(() => completeTaskCommand({ taskId: TASK, userId: 1, issuedAt: date })).field, "issuedAt");
    }
  });

  test("29 February of a leap year is a date", () => {
    checkCommand("complete_task", base({ issued_at: "2028-02-29T09:30:00Z" }));
  });

  test("the typed helpers name members as the caller spelled them", () => {
    assert.equal(refusal(() => createTaskCommand({ userId: 0, title: "t" })).field, "userId");
    assert.equal(refusal(() => completeTaskCommand({ taskId: "nope", userId: 1 })).field, "taskId");
    assert.equal(refusal(() => updateTaskCommand({ taskId: TASK, userId: 1 })).field, "title or description");
  });

  test("a misspelt option of a typed helper is refused, not dropped", () => {
    const input = { userId: 1, title: "t", descripton: "typo" } as unknown as Parameters<typeof createTaskCommand>[0];
    const error = refusal(() => createTaskCommand(input));
    assert.equal(error.field, "descripton");
    assert.match(error.message, /not an option of create_task/);
  });

  test("an unknown job function is refused", () => {
    assert.equal(refusal(() => checkItem({ function: "os.system", command: base() })).field, "function");
  });

  test("a bulk item with a member besides function and command is refused", () => {
    assert.match(refusal(() => checkItem({ function: "complete_task", command: base(), x: 1 })).message, /x is not allowed/);
  });
});
