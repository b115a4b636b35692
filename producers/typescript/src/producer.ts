/** The client other services embed to publish task commands onto a taskline queue. */
import { createHash, randomUUID } from "node:crypto";

import {
  completeTaskCommand,
  createTaskCommand,
  updateTaskCommand,
  type CompleteTaskInput,
  type CreateTaskInput,
  type UpdateTaskInput,
} from "./commands.js";
import {
  BULK_JOB,
  checkItem,
  DEFAULT_MAX_BULK_PAYLOAD_BYTES,
  DEFAULT_MAX_PAYLOAD_BYTES,
  MAX_BULK_COMMANDS,
  type Command,
} from "./contract.js";
import { ENQUEUE_FAIR_SCRIPT, ENQUEUE_SCRIPT } from "./enqueue-script.js";
import { envelope, jobKwargs, type JobOptions } from "./envelope.js";
import { checkSigningKey, signingKeyFromEnv, type SigningKey } from "./signing.js";
import { sending } from "./tracing.js";
import { InvalidSendError } from "./errors.js";
import { DEFAULT_QUEUE } from "./keys.js";
import { waitForOutcome, type Outcome } from "./outcome.js";
import {
  DEFAULT_OUTCOME_TIMEOUT_MS,
  Receipt,
  type BulkReceipt,
  type OutcomeOptions,
  type SendReport,
} from "./receipts.js";
import type { BlockingRedis, DuplicableRedis, ProducerRedis } from "./redis-client.js";

/** How long a queued job may wait before it expires unrun (arq's default: one day). */
export const DEFAULT_JOB_TTL_MS = 86_400_000;
/** Commands per EVAL: bounds how long one script holds Redis (about a millisecond). */
const SCRIPT_CHUNK = 500;
/** EVALs per pipeline: sendMany sends up to 10,000 commands per round trip. */
const CHUNKS_PER_ROUND_TRIP = 20;
const ENQUEUE_SHA1 = createHash("sha1").update(ENQUEUE_SCRIPT).digest("hex");
const ENQUEUE_FAIR_SHA1 = createHash("sha1").update(ENQUEUE_FAIR_SCRIPT).digest("hex");
const FAIRNESS_KEY = /^[!-~]{1,128}$/;

/** Whether TASKLINE_FAIR_TURNS asks for fair turns (1/true/yes/on; unset or 0/false: no). */
export function fairTurnsFromEnv(env: Record<string, string | undefined> = process.env): boolean {
  const value = (env.TASKLINE_FAIR_TURNS ?? "").trim().toLowerCase();
  if (["", "0", "false", "no", "off"].includes(value)) return false;
  if (["1", "true", "yes", "on"].includes(value)) return true;
  throw new InvalidSendError(`TASKLINE_FAIR_TURNS must be 1 or 0 (true or false), got ${JSON.stringify(value)}: fix the variable or unset it`);
}

function checkFairnessKey(key: string): string {
  if (typeof key !== "string" || !FAIRNESS_KEY.test(key)) {
    throw new InvalidSendError(
      `a fairness key is 1 to 128 printable ASCII characters without spaces (for example 'user:42' or 'tenant:acme'), got ${JSON.stringify(key)}`,
    );
  }
  return key;
}

export interface ProducerOptions {
  /** The queue (TASKLINE_QUEUE of the workers). Default `taskline:queue`. */
  queue?: string | undefined;
  /** How long a job may wait unrun before it expires (and becomes a dead letter). Default: a day. */
  jobTtlMs?: number | undefined;
  /** `outcomeTtl` for every send that does not say otherwise (see `JobOptions`). Default: none. */
  outcomeTtl?: number | undefined;
  /**
   * A connection `receipt.outcome()` blocks on while it waits (a client pool is a good choice).
   * Default: a copy of `client` (`client.duplicate()`) opened for each wait and closed after;
   * when `client` is itself a pool (`createClientPool()`), the pool.
   */
  blockingClient?: BlockingRedis | undefined;
  /** The workers' TASKLINE_MAX_PAYLOAD_BYTES, if not the default 65536. */
  maxPayloadBytes?: number | undefined;
  /** The workers' TASKLINE_MAX_BULK_PAYLOAD_BYTES, if not the default 1048576. */
  maxBulkPayloadBytes?: number | undefined;
  /**
   * Sign every job with this key (contract version 3; docs/contract.md, "Signed jobs"). Not
   * given: the key in TASKLINE_SIGNING_KEY_ID and TASKLINE_SIGNING_SECRET when they are set;
   * `null`: unsigned whatever the environment says.
   */
  signingKey?: SigningKey | null | undefined;
  /**
   * Fair turns (docs/operations.md, "Fair turns"): every job carries a fairness key, by default
   * its command's user (`user:<userId>`), and the workers take turns between keys. Not given:
   * on when TASKLINE_FAIR_TURNS is 1 (or true). Upgrade every worker before turning it on.
   */
  fair?: boolean | undefined;
}

/** Per-send options; `outcomeTtl: null` sends without outcomes whatever the producer's default. */
export interface SendOptions {
  outcomeTtl?: number | null | undefined;
  /** With fair turns: whose turns the job takes (default: its command's user, `user:<id>`). */
  fairnessKey?: string | undefined;
}

export interface BulkOptions extends SendOptions {
  /** The bulk job's id (deduplicates the job itself). Default: a random UUID. */
  jobId?: string | undefined;
}

/**
 * Publishes commands with the caller's node-redis client, which it never closes.
 *
 *     const producer = new TaskProducer(client, { queue: "taskline:queue" });
 *     const receipt = await producer.createTask({ userId: 7, title: "Write the report" });
 */
export class TaskProducer {
  readonly queue: string;
  readonly jobTtlMs: number;
  private readonly defaults: JobOptions;
  private readonly maxPayloadBytes: number;
  private readonly maxBulkPayloadBytes: number;
  private readonly signingKey: SigningKey | undefined;
  readonly fair: boolean;

  constructor(
    readonly client: ProducerRedis & Partial<DuplicableRedis> & Partial<BlockingRedis>,
    private readonly options: ProducerOptions = {},
  ) {
    this.queue = options.queue ?? DEFAULT_QUEUE;
    this.jobTtlMs = options.jobTtlMs ?? DEFAULT_JOB_TTL_MS;
    if (!Number.isInteger(this.jobTtlMs) || this.jobTtlMs < 1) {
      throw new InvalidSendError(`jobTtlMs must be a positive whole number of milliseconds, got ${this.jobTtlMs}`);
    }
    this.defaults = { outcomeTtl: options.outcomeTtl };
    jobKwargs(this.defaults); // refuse a bad default now rather than at the first send
    this.maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.maxBulkPayloadBytes = options.maxBulkPayloadBytes ?? DEFAULT_MAX_BULK_PAYLOAD_BYTES;
    const key = options.signingKey === undefined ? signingKeyFromEnv() : (options.signingKey ?? undefined);
    this.signingKey = key === undefined ? undefined : checkSigningKey(key);
    this.fair = options.fair ?? fairTurnsFromEnv();
  }

  /** The id of the key this producer signs with, if it signs. */
  get signingKeyId(): string | undefined {
    return this.signingKey?.keyId;
  }

  // -- one command at a time ---------------------------------------------------------------

  /** Queue a create_task; `taskId`, `commandId` and `issuedAt` are generated when not given. */
  async createTask(input: CreateTaskInput, options: SendOptions = {}): Promise<Receipt> {
    return this.send(createTaskCommand(input), options);
  }

  /** Queue an update_task; leave `title` or `description` out to keep it, `description: null` clears it. */
  async updateTask(input: UpdateTaskInput, options: SendOptions = {}): Promise<Receipt> {
    return this.send(updateTaskCommand(input), options);
  }

  /** Queue a complete_task. */
  async completeTask(input: CompleteTaskInput, options: SendOptions = {}): Promise<Receipt> {
    return this.send(completeTaskCommand(input), options);
  }

  /** Queue one `{function, command}` as its own job (job id = command id). */
  async send(item: Command, options: SendOptions = {}): Promise<Receipt> {
    const { function: fn, command } = checkItem(item);
    const kwargs = this.kwargs(options);
    return sending(this.queue, { messageId: command.command_id }, async (trace) => {
      const now = Date.now();
      const job = this.sized(envelope(fn, command, kwargs, now, this.signingKey), this.maxPayloadBytes, "PAYLOAD");
      const args = [String(now), String(this.jobTtlMs), command.command_id, job];
      if (this.fair) args.push(this.fairnessKey(options, command.user_id), "1");
      const [queued] = (await this.enqueue(withTrace(args, trace))) as unknown[];
      const wasQueued = Number(queued) === 1;
      return this.receipt(command.command_id, command.command_id, command.task_id, wasQueued, wasQueued ? now : null);
    });
  }

  // -- many commands -----------------------------------------------------------------------

  /**
   * Queue many commands, one job each, up to 10,000 per round trip. Every command is checked
   * before anything is sent: one invalid command throws and nothing is queued. Each job is
   * deduplicated by its command id.
   */
  async sendMany(items: Iterable<Command>, options: SendOptions = {}): Promise<SendReport> {
    const commands = Array.from(items, (item) => checkItem(item));
    const kwargs = this.kwargs(options);
    return sending(this.queue, { messageCount: commands.length }, (trace) =>
      this.sendEach(commands, kwargs, options, trace),
    );
  }

  private async sendEach(
    commands: ReturnType<typeof checkItem>[],
    kwargs: Record<string, unknown>,
    options: SendOptions,
    trace: string | undefined,
  ): Promise<SendReport> {
    const report: SendReport = { queued: 0, duplicates: [], receipts: [] };
    const perRoundTrip = SCRIPT_CHUNK * CHUNKS_PER_ROUND_TRIP;
    for (let start = 0; start < commands.length; start += perRoundTrip) {
      const slice = commands.slice(start, start + perRoundTrip);
      const now = Date.now();
      const pipeline = this.client.multi();
      for (let i = 0; i < slice.length; i += SCRIPT_CHUNK) {
        const args = [String(now), String(this.jobTtlMs)];
        for (const { function: fn, command } of slice.slice(i, i + SCRIPT_CHUNK)) {
          const job = this.sized(envelope(fn, command, kwargs, now, this.signingKey), this.maxPayloadBytes, "PAYLOAD");
          args.push(command.command_id, job);
          if (this.fair) args.push(this.fairnessKey(options, command.user_id), "1");
        }
        // EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT, and the script is small
        // next to 500 commands.
        pipeline.eval(this.fair ? ENQUEUE_FAIR_SCRIPT : ENQUEUE_SCRIPT, {
          keys: [this.queue],
          arguments: withTrace(args, trace),
        });
      }
      const flags = (await pipeline.execAsPipeline()).flatMap((reply) => reply as unknown[]);
      slice.forEach(({ command }, i) => {
        const queued = Number(flags[i]) === 1;
        if (queued) report.queued += 1;
        else report.duplicates.push(command.command_id);
        const sentAtMs = queued ? now : null;
        report.receipts.push(this.receipt(command.command_id, command.command_id, command.task_id, queued, sentAtMs));
      });
    }
    return report;
  }

  /**
   * Queue 1 to 1,000 commands as one `apply_commands` job, applied in few transactions. Each
   * command keeps its own exactly-once and dead-letter semantics (and its own outcome); the
   * job id only deduplicates the job itself.
   */
  async sendBulk(items: readonly Command[], options: BulkOptions = {}): Promise<BulkReceipt> {
    if (items.length < 1 || items.length > MAX_BULK_COMMANDS) {
      throw new InvalidSendError(`sendBulk takes 1 to ${MAX_BULK_COMMANDS} commands, got ${items.length}`);
    }
    const commands = items.map((item) => checkItem(item));
    const jobId = options.jobId ?? randomUUID();
    if (jobId.length === 0) throw new InvalidSendError("jobId must not be empty");
    const kwargs = this.kwargs(options);
    const details = { messageId: jobId, messageCount: commands.length, bulk: true };
    return sending(this.queue, details, async (trace) => {
      const now = Date.now();
      const job = this.sized(envelope(BULK_JOB, commands, kwargs, now, this.signingKey), this.maxBulkPayloadBytes, "BULK");
      const args = [String(now), String(this.jobTtlMs), jobId, job];
      if (this.fair) args.push(this.fairnessKey(options, mostCommonUser(commands)), String(commands.length));
      const [queued] = (await this.enqueue(withTrace(args, trace))) as unknown[];
      const wasQueued = Number(queued) === 1;
      return {
        jobId,
        queued: wasQueued,
        receipts: commands.map(({ command }) =>
          this.receipt(command.command_id, jobId, command.task_id, wasQueued, wasQueued ? now : null),
        ),
      };
    });
  }

  // -- outcomes ----------------------------------------------------------------------------

  /**
   * What became of a command sent earlier, perhaps by another process: as `receipt.outcome()`.
   * `jobId` is the bulk job's id for a command sent with `sendBulk`; by default the command id.
   * `sentAtMs` (a receipt's): ignore the outcome of an earlier send of the same command.
   */
  outcome(
    commandId: string,
    options: OutcomeOptions & { jobId?: string; sentAtMs?: number | null } = {},
  ): Promise<Outcome> {
    const id = commandId.toLowerCase();
    const timeoutMs = options.timeoutMs ?? DEFAULT_OUTCOME_TIMEOUT_MS;
    return this.waitFor(id, options.jobId ?? id, timeoutMs, options.sentAtMs ?? null);
  }

  private receipt(commandId: string, jobId: string, taskId: string, queued: boolean, sentAtMs: number | null): Receipt {
    const waiter = (c: string, j: string, timeoutMs: number, sent: number | null): Promise<Outcome> =>
      this.waitFor(c, j, timeoutMs, sent);
    return new Receipt(commandId, jobId, taskId, queued, waiter, sentAtMs);
  }

  private async waitFor(commandId: string, jobId: string, timeoutMs: number, sentAtMs: number | null): Promise<Outcome> {
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new InvalidSendError(`timeoutMs must be a number of milliseconds >= 0, got ${timeoutMs}`);
    }
    let own: ReturnType<DuplicableRedis["duplicate"]> | undefined;
    const blocking = async (): Promise<BlockingRedis> => {
      if (this.options.blockingClient) return this.options.blockingClient;
      if (own) return own;
      if (typeof this.client.duplicate !== "function") {
        // A client pool: each command, BLMOVE included, runs on a connection of its own.
        if (typeof this.client.blMove === "function") return this.client as BlockingRedis;
        throw new InvalidSendError("waiting for an outcome needs options.blockingClient or a client with duplicate()");
      }
      const copy = this.client.duplicate();
      copy.on("error", () => {}); // a failure surfaces as the rejected BLMOVE
      await copy.connect();
      own = copy;
      return own;
    };
    try {
      return await waitForOutcome(this.client, blocking, commandId, jobId, timeoutMs, sentAtMs);
    } finally {
      await own?.close();
    }
  }

  // -- the wire ----------------------------------------------------------------------------

  private kwargs(options: SendOptions): Record<string, unknown> {
    const ttl = options.outcomeTtl === undefined ? this.defaults.outcomeTtl : (options.outcomeTtl ?? undefined);
    return jobKwargs({ outcomeTtl: ttl });
  }

  /** The job, unless it is over the workers' size limit (they would dead-letter it unread). */
  private sized(job: string, limit: number, kind: "PAYLOAD" | "BULK"): string {
    const bytes = Buffer.byteLength(job, "utf8");
    if (bytes > limit) {
      const remedy =
        kind === "BULK"
          ? "send fewer commands per sendBulk, or raise TASKLINE_MAX_BULK_PAYLOAD_BYTES and maxBulkPayloadBytes together"
          : "raise TASKLINE_MAX_PAYLOAD_BYTES and maxPayloadBytes together";
      throw new InvalidSendError(
        `the job is ${bytes} bytes, over the workers' limit of ${limit}: a worker would dead-letter it unread; ${remedy}`,
      );
    }
    return job;
  }

  /** The job's fairness key: the one given, else its user's. */
  private fairnessKey(options: SendOptions, userId: number): string {
    return options.fairnessKey === undefined ? `user:${userId}` : checkFairnessKey(options.fairnessKey);
  }

  /** EVALSHA, falling back on EVAL when Redis does not hold the script yet (NOSCRIPT). */
  private async enqueue(args: string[]): Promise<unknown> {
    const call = { keys: [this.queue], arguments: args };
    const [sha, script] = this.fair ? [ENQUEUE_FAIR_SHA1, ENQUEUE_FAIR_SCRIPT] : [ENQUEUE_SHA1, ENQUEUE_SCRIPT];
    try {
      return await this.client.evalSha(sha, call);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("NOSCRIPT")) {
        return this.client.eval(script, call);
      }
      throw error;
    }
  }
}

/** The enqueue script's arguments with the trace context to write beside each queued job, when there is one. */
function withTrace(args: string[], trace: string | undefined): string[] {
  if (trace !== undefined) args.push(trace);
  return args;
}

/** The user with the most commands in a bulk job (the first such, on a tie). */
function mostCommonUser(commands: readonly Command[]): number {
  const counts = new Map<number, number>();
  for (const { command } of commands) counts.set(command.user_id, (counts.get(command.user_id) ?? 0) + 1);
  let best = commands[0]?.command.user_id ?? 0;
  for (const [user, count] of counts) if (count > (counts.get(best) ?? 0)) best = user;
  return best;
}
