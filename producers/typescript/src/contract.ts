/**
 * The command contract, checked before anything is sent: the same rules the workers apply
 * (docs/contract.md), so a command this client accepts is not dead-lettered for its shape.
 *
 * The wire objects are the types generated from docs/commands.schema.json; the rules a type
 * cannot say (UUID form, ranges, lengths in code points, forbidden characters, RFC 3339) are
 * checked here. A Python test feeds the same samples to these checks and to the Python models
 * and requires the same verdicts.
 */
import type { CompleteTask, CreateTask, UpdateTask } from "./commands.generated.js";
import { InvalidCommandError } from "./errors.js";

export type { CompleteTask, CreateTask, UpdateTask } from "./commands.generated.js";

export const CREATE_TASK = "create_task";
export const UPDATE_TASK = "update_task";
export const COMPLETE_TASK = "complete_task";
/** The job function of a bulk job: a list of `{function, command}` items. */
export const BULK_JOB = "apply_commands";

export const USER_ID_MAX = 2 ** 31 - 1;
export const TITLE_MAX = 200;
export const DESCRIPTION_MAX = 1000;
/** The most commands one `apply_commands` job may carry. */
export const MAX_BULK_COMMANDS = 1000;
/** The workers' default size limit of one job (TASKLINE_MAX_PAYLOAD_BYTES). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024;
/** The workers' default size limit of an `apply_commands` job (TASKLINE_MAX_BULK_PAYLOAD_BYTES). */
export const DEFAULT_MAX_BULK_PAYLOAD_BYTES = 1024 * 1024;

/** One command with its job function: a bulk item, and what `sendMany` and `sendBulk` take. */
export type Command = CreateTaskCommand | UpdateTaskCommand | CompleteTaskCommand;
export type CreateTaskCommand = { function: typeof CREATE_TASK; command: CreateTask };
export type UpdateTaskCommand = { function: typeof UPDATE_TASK; command: UpdateTask };
export type CompleteTaskCommand = { function: typeof COMPLETE_TASK; command: CompleteTask };

export type JobFunction = Command["function"];

const MEMBERS: Record<JobFunction, { required: readonly string[]; optional: readonly string[] }> = {
  create_task: { required: ["command_id", "issued_at", "task_id", "user_id", "title"], optional: ["description"] },
  update_task: { required: ["command_id", "issued_at", "task_id", "user_id"], optional: ["title", "description"] },
  complete_task: { required: ["command_id", "issued_at", "task_id", "user_id"], optional: [] },
};

const UUID_TEXT = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;
/** NUL, or a surrogate that is not half of a pair. */
const FORBIDDEN_CHARACTER = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Python's str.isspace(): the contract's "only whitespace" (JavaScript's \s is a different set). */
export const WHITESPACE =
  "\t\n\u000b\u000c\r\u001c\u001d\u001e\u001f \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005" +
  "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";
const ONLY_WHITESPACE = new RegExp(`^[${WHITESPACE}]+$`, "u");

/** How a check names a wire member in its error: as the caller spelled it. */
export type FieldNames = (wireName: string) => string;
const wireNames: FieldNames = (name) => name;

class Checker {
  constructor(
    private readonly jobFunction: string,
    private readonly names: FieldNames,
  ) {}

  fail(field: string, problem: string): never {
    throw new InvalidCommandError(this.jobFunction, this.names(field), problem);
  }

  uuid(field: string, value: unknown): string {
    if (typeof value !== "string" || !UUID_TEXT.test(value)) {
      this.fail(field, `must be a UUID in its canonical 8-4-4-4-12 hexadecimal form, got ${describe(value)}`);
    }
    return value.toLowerCase();
  }

  userId(field: string, value: unknown): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > USER_ID_MAX) {
      this.fail(field, `must be an integer from 1 to ${USER_ID_MAX}, got ${describe(value)}`);
    }
    return value;
  }

  text(field: string, value: unknown, min: number, max: number): string {
    if (typeof value !== "string") this.fail(field, `must be a string, got ${describe(value)}`);
    if (FORBIDDEN_CHARACTER.test(value)) this.fail(field, "must not contain NUL characters or unpaired surrogates");
    const length = codePoints(value);
    if (length < min || length > max) {
      this.fail(field, `must be ${min} to ${max} characters (Unicode code points) long, got ${length}`);
    }
    return value;
  }

  title(field: string, value: unknown): string {
    const title = this.text(field, value, 1, TITLE_MAX);
    if (ONLY_WHITESPACE.test(title)) this.fail(field, "must contain at least one character that is not whitespace");
    return title;
  }

  description(field: string, value: unknown): string | null {
    return value === null ? null : this.text(field, value, 0, DESCRIPTION_MAX);
  }

  issuedAt(field: string, value: unknown): string {
    if (value instanceof Date) {
      const text = Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
      if (!isRfc3339(text)) this.fail(field, `must be a Date from year 1 to 9999, got ${text}`);
      return text;
    }
    if (typeof value !== "string" || !isRfc3339(value)) {
      this.fail(
        field,
        "must be an RFC 3339 date-time with an explicit offset and at most microsecond precision, " +
          `e.g. 2026-11-25T09:30:00.123456Z or 2026-11-25T10:30:00+01:00; got ${describe(value)}`,
      );
    }
    return value;
  }

  members(command: Record<string, unknown>, fn: JobFunction): void {
    const { required, optional } = MEMBERS[fn];
    for (const name of Object.keys(command)) {
      if (command[name] !== undefined && !required.includes(name) && !optional.includes(name)) {
        this.fail(name, `is not a member of ${fn} (it takes ${[...required, ...optional].join(", ")})`);
      }
    }
    for (const name of required) {
      if (command[name] === undefined) this.fail(name, "is required");
    }
  }
}

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "bigint") return `${value}n`;
  return value === undefined ? "undefined" : (JSON.stringify(value) ?? String(value));
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** RFC 3339 with an offset, at most six fractional digits, and a date and time that exist. */
export function isRfc3339(text: string): boolean {
  const match = RFC3339.exec(text);
  if (match === null) return false;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [
    number, number, number, number, number, number,
  ];
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
  const offsetOk = match[7] === undefined || (Number(match[7]) <= 23 && Number(match[8]) <= 59);
  return (
    year >= 1 && days !== undefined && day >= 1 && day <= days && hour <= 23 && minute <= 59 && second <= 59 && offsetOk
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Check one wire command against the contract and return it normalised (UUIDs lower-cased, a
 * `Date` turned into RFC 3339, members whose value is `undefined` dropped). Throws
 * `InvalidCommandError` naming the member at fault.
 */
export function checkCommand(fn: string, command: unknown, names: FieldNames = wireNames): Command {
  if (fn !== CREATE_TASK && fn !== UPDATE_TASK && fn !== COMPLETE_TASK) {
    throw new InvalidCommandError(
      String(fn),
      names("function"),
      `must be one of ${CREATE_TASK}, ${UPDATE_TASK}, ${COMPLETE_TASK}, got ${describe(fn)}`,
    );
  }
  const check: Checker = new Checker(fn, names);
  if (!isObject(command)) check.fail("command", `must be an object, got ${describe(command)}`);
  check.members(command, fn);
  const base = {
    command_id: check.uuid("command_id", command.command_id),
    issued_at: check.issuedAt("issued_at", command.issued_at),
    task_id: check.uuid("task_id", command.task_id),
    user_id: check.userId("user_id", command.user_id),
  };
  switch (fn) {
    case CREATE_TASK: {
      const created: CreateTask = { ...base, title: check.title("title", command.title) };
      if (command.description !== undefined) created.description = check.description("description", command.description);
      return { function: fn, command: created };
    }
    case UPDATE_TASK: {
      if (command.title === null) check.fail("title", "cannot be null; leave it out to keep the current title");
      if (command.title === undefined && command.description === undefined) {
        throw new InvalidCommandError(
          fn,
          `${names("title")} or ${names("description")}`,
          "is required: an update must change at least one of them",
        );
      }
      const changes: { title?: string; description?: string | null } = {};
      if (command.title !== undefined) changes.title = check.title("title", command.title);
      if (command.description !== undefined) changes.description = check.description("description", command.description);
      return { function: fn, command: { ...base, ...changes } as UpdateTask };
    }
    case COMPLETE_TASK:
      return { function: fn, command: base };
  }
}

/** Check a `{function, command}` item (a bulk item, or one line of `taskline-send stream`). */
export function checkItem(item: unknown): Command {
  if (!isObject(item)) {
    throw new InvalidCommandError("command", "item", `must be a {function, command} object, got ${describe(item)}`);
  }
  const extra = Object.keys(item).filter((key) => key !== "function" && key !== "command");
  if (extra.length > 0) {
    throw new InvalidCommandError(String(item.function), extra[0] ?? "", "is not allowed next to function and command");
  }
  return checkCommand(item.function as string, item.command);
}
