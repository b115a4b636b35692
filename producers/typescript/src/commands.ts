/**
 * Typed helpers that build a checked `Command` from camelCase input, generating `commandId`
 * (and, for a new task, `taskId`) and `issuedAt` when they are not given. `TaskProducer` uses
 * them for `createTask`, `updateTask` and `completeTask`; use them directly to build the lists
 * for `sendMany` and `sendBulk`.
 */
import { randomUUID } from "node:crypto";

import {
  checkCommand,
  COMPLETE_TASK,
  CREATE_TASK,
  UPDATE_TASK,
  type CompleteTaskCommand,
  type CreateTaskCommand,
  type FieldNames,
  type UpdateTaskCommand,
} from "./contract.js";
import { InvalidCommandError } from "./errors.js";

/** Members every command may be given; generated when left out. */
export interface CommandStamp {
  /** A UUID; the job id of a single send, and what deduplicates the command. Default: random. */
  commandId?: string | undefined;
  /** When the command was issued; orders commands per field. Default: now. */
  issuedAt?: Date | string | undefined;
}

export interface CreateTaskInput extends CommandStamp {
  userId: number;
  title: string;
  /** Absent or `null`: no description. */
  description?: string | null | undefined;
  /** The new task's id, a UUID. Default: random (read it back from the receipt). */
  taskId?: string | undefined;
}

export interface UpdateTaskInput extends CommandStamp {
  taskId: string;
  userId: number;
  /** Leave out to keep the title. */
  title?: string | undefined;
  /** Leave out to keep the description; `null` clears it. */
  description?: string | null | undefined;
}

export interface CompleteTaskInput extends CommandStamp {
  taskId: string;
  userId: number;
}

const CAMEL: Record<string, string> = {
  command_id: "commandId",
  issued_at: "issuedAt",
  task_id: "taskId",
  user_id: "userId",
};
const camelNames: FieldNames = (name) => CAMEL[name] ?? name;
const SNAKE: Record<string, string> = Object.fromEntries(Object.entries(CAMEL).map(([snake, camel]) => [camel, snake]));

function wire(fn: string, input: object, allowed: readonly string[]): Record<string, unknown> {
  if (typeof input !== "object" || input === null) {
    throw new InvalidCommandError(fn, "input", `must be an object, got ${String(input)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(input)) {
    if (!allowed.includes(name)) {
      if (value === undefined) continue;
      throw new InvalidCommandError(fn, name, `is not an option of ${fn} (it takes ${allowed.join(", ")})`);
    }
    out[SNAKE[name] ?? name] = value;
  }
  out.command_id ??= randomUUID();
  out.issued_at ??= new Date();
  return out;
}

const STAMP = ["commandId", "issuedAt"] as const;

/** A checked create_task; `taskId`, `commandId` and `issuedAt` are generated when not given. */
export function createTaskCommand(input: CreateTaskInput): CreateTaskCommand {
  const command = wire(CREATE_TASK, input, [...STAMP, "taskId", "userId", "title", "description"]);
  command.task_id ??= randomUUID();
  return checkCommand(CREATE_TASK, command, camelNames) as CreateTaskCommand;
}

/** A checked update_task: leave `title` or `description` out to keep it; `description: null` clears it. */
export function updateTaskCommand(input: UpdateTaskInput): UpdateTaskCommand {
  const command = wire(UPDATE_TASK, input, [...STAMP, "taskId", "userId", "title", "description"]);
  return checkCommand(UPDATE_TASK, command, camelNames) as UpdateTaskCommand;
}

/** A checked complete_task. */
export function completeTaskCommand(input: CompleteTaskInput): CompleteTaskCommand {
  const command = wire(COMPLETE_TASK, input, [...STAMP, "taskId", "userId"]);
  return checkCommand(COMPLETE_TASK, command, camelNames) as CompleteTaskCommand;
}
