/**
 * Matching sent commands against what a test expects, and describing them when they differ.
 *
 * Fields are named as the contract does (`user_id`) or as the typed helpers do (`userId`).
 * Values match when equal, with the spellings a test is likely to write accepted: a UUID in any
 * case, `issued_at` as a `Date` or as RFC 3339 text of the same instant, a function as a
 * predicate, an asymmetric matcher (`expect.any(String)`), and `ABSENT` for an update_task
 * member left out (absent and null differ there).
 */
import { isDeepStrictEqual } from "node:util";

import type { Command } from "../contract.js";
import type { SentJob } from "./inspection.js";

/** Matches a member the command leaves out (an update_task's `title` or `description`). */
export const ABSENT: unique symbol = Symbol("ABSENT");

/** One command that was sent: on its own job, or as an item of an apply_commands job. */
export interface SentCommand {
  function: Command["function"];
  /** The command as a worker reads it (wire member names). */
  command: Record<string, unknown>;
  job: SentJob;
  /** Sent as an item of an apply_commands job (`sendBulk`). */
  inBulk: boolean;
}

const CAMEL_TO_WIRE: Record<string, string> = {
  commandId: "command_id",
  issuedAt: "issued_at",
  taskId: "task_id",
  userId: "user_id",
};
const BASE = ["command_id", "issued_at", "task_id", "user_id"];
export const MEMBERS: Record<string, readonly string[]> = {
  create_task: [...BASE, "title", "description"],
  update_task: [...BASE, "title", "description"],
  complete_task: BASE,
};
const ALL_MEMBERS = new Set(Object.values(MEMBERS).flat());

/** The expected fields under their wire names; a misspelt one throws (it would match nothing). */
export function wireFields(fn: string | undefined, fields: Record<string, unknown>): Record<string, unknown> {
  if (fn !== undefined && !(fn in MEMBERS)) {
    throw new TypeError(`"${fn}" is not a command function; use one of ${Object.keys(MEMBERS).join(", ")}`);
  }
  const known = fn === undefined ? ALL_MEMBERS : new Set(MEMBERS[fn]);
  const wire: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(fields)) {
    const member = CAMEL_TO_WIRE[name] ?? name;
    if (!known.has(member)) {
      throw new TypeError(`"${name}" is not a member of ${fn ?? "a command"}; its members are ${[...known].join(", ")}`);
    }
    wire[member] = value;
  }
  return wire;
}

function isAsymmetric(value: unknown): value is { asymmetricMatch(actual: unknown): boolean } {
  return typeof value === "object" && value !== null && typeof (value as { asymmetricMatch?: unknown }).asymmetricMatch === "function";
}

function instant(text: unknown): number {
  return typeof text === "string" ? Date.parse(text.toUpperCase()) : Number.NaN;
}

function same(member: string, actual: unknown, expected: unknown): boolean {
  if (typeof expected === "function") return Boolean((expected as (value: unknown) => unknown)(actual));
  if (isAsymmetric(expected)) return expected.asymmetricMatch(actual);
  if (member === "issued_at") {
    if (expected instanceof Date) return instant(actual) === expected.getTime();
    if (typeof expected === "string" && expected !== actual) return instant(actual) === instant(expected);
  }
  if ((member === "command_id" || member === "task_id") && typeof expected === "string" && typeof actual === "string") {
    return actual.toLowerCase() === expected.toLowerCase();
  }
  return isDeepStrictEqual(actual, expected);
}

/** The names of the expected (wire) fields this command does not match. */
export function differences(sent: SentCommand, fields: Record<string, unknown>): string[] {
  const members = MEMBERS[sent.function] ?? [];
  return Object.entries(fields)
    .filter(([member, expected]) => {
      if (!members.includes(member)) return true;
      const given = member in sent.command && sent.command[member] !== undefined;
      if (expected === ABSENT) return given;
      if (!given && sent.function === "update_task") return true; // left out is not null
      const actual = given ? sent.command[member] : null; // create_task: an absent description is null
      return !same(member, actual, expected);
    })
    .map(([member]) => member);
}

/** One line: the function, the command as a worker reads it (never the raw, signed text), the job. */
export function describe(sent: SentCommand, differing: string[] = []): string {
  const notes: string[] = [];
  if (sent.inBulk) notes.push(`in apply_commands job ${sent.job.jobId}`);
  if (sent.job.signedBy !== null) notes.push(`signed by "${sent.job.signedBy}"`);
  if (sent.job.outcomeTtl !== null) notes.push(`outcome_ttl=${sent.job.outcomeTtl}`);
  if (!sent.job.queued) notes.push("refused by Redis as a duplicate");
  if (differing.length > 0) notes.push(`differs in ${differing.join(", ")}`);
  return `${sent.function}(${JSON.stringify(sent.command)})${notes.length > 0 ? `  [${notes.join("; ")}]` : ""}`;
}

export function showExpected(value: unknown): string {
  if (value === ABSENT) return "ABSENT";
  if (typeof value === "function") return "<predicate>";
  if (value instanceof Date) return value.toISOString();
  if (isAsymmetric(value)) return String(value);
  return JSON.stringify(value) ?? String(value);
}
