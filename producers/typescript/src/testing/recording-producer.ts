/** `RecordingProducer`: the real `TaskProducer`, over Redis kept in memory, keeping what it sends. */
import { outcomeDoneKey, outcomeKey } from "../keys.js";
import type { RecordedState } from "../outcome.js";
import { TaskProducer, type ProducerOptions } from "../producer.js";
import type { SigningKey } from "../signing.js";
import type { SentJob } from "./inspection.js";
import type { SentCommand } from "./matching.js";
import { MemoryRedis } from "./memory-redis.js";
import { Recording, type JobFilter, type SentOptions } from "./recording.js";

export interface RecordingProducerOptions extends Omit<ProducerOptions, "blockingClient" | "signingKey"> {
  /** Sign every job with this key, as the real producer does. Default: unsigned (the environment is not read). */
  signingKey?: SigningKey | null | undefined;
  /** How far ahead of the clock `issued_at` may lie (the workers' TASKLINE_FUTURE_TOLERANCE, default 3600); null: not checked. */
  futureToleranceS?: number | null | undefined;
  /** The clock the future tolerance is measured from. Default: now. */
  clock?: (() => Date) | undefined;
}

/**
 * A `TaskProducer` for a service's own tests: no Redis server, no worker.
 *
 * Every call runs the real producer's code (the same checks, the same job text, signed when
 * given a key, the same duplicate rule by job id) against Redis kept in memory, and each job is
 * then read back as a worker would read it: a job a worker would dead-letter throws
 * `WouldBeRefusedError` from the call that sent it. `jobs` and `commands()` hold what was sent;
 * `assertSent` and `assertNotSent` check it; `settle()` writes the outcome a worker would.
 */
export class RecordingProducer extends TaskProducer {
  readonly memory: MemoryRedis;
  readonly recording: Recording;

  constructor(options: RecordingProducerOptions = {}) {
    const memory = new MemoryRedis();
    const signingKey = options.signingKey ?? null;
    super(memory, { ...options, signingKey, blockingClient: memory });
    this.memory = memory;
    this.recording = new Recording({
      signingKey: signingKey ?? undefined,
      maxPayloadBytes: options.maxPayloadBytes,
      maxBulkPayloadBytes: options.maxBulkPayloadBytes,
      futureToleranceS: options.futureToleranceS,
      clock: options.clock,
    });
    memory.onEnqueue = (attempt) => this.recording.record(attempt);
  }

  /** Every job sent, in order: queued ones and ones Redis refused as duplicates (`queued: false`). */
  get jobs(): SentJob[] {
    return [...this.recording.jobs];
  }

  /** The sent commands that match, in the order they were sent. */
  commands(fn?: string, fields: Record<string, unknown> = {}, filter: JobFilter = {}): SentCommand[] {
    return this.recording.commands(fn, fields, filter);
  }

  /** Assert a matching command was sent (`{ count }` for exactly that many); returns the last one. */
  assertSent(fn?: string, fields: Record<string, unknown> = {}, options: SentOptions = {}): SentCommand {
    return this.recording.assertSent(fn, fields, options);
  }

  /** Assert no matching command was sent. */
  assertNotSent(fn?: string, fields: Record<string, unknown> = {}, filter: JobFilter = {}): void {
    this.recording.assertNotSent(fn, fields, filter);
  }

  /** Forget what was sent, and the jobs Redis would hold (so nothing counts as a duplicate). */
  clear(): void {
    this.recording.clear();
    this.memory.strings.clear();
    this.memory.queues.clear();
    this.memory.lists.clear();
  }

  /**
   * Write the outcome a worker would write for a command sent with `outcomeTtl`, so that
   * `receipt.outcome()` and `producer.outcome()` return it.
   */
  settle(commandId: string, state: RecordedState = "applied", options: { reason?: string | null } = {}): void {
    const id = commandId.toLowerCase();
    const sent = this.recording.commands(undefined, { command_id: id });
    const job = sent[sent.length - 1]?.job;
    if (job === undefined) throw new Error(`command ${id} was not queued by this producer: nothing to settle`);
    if (job.outcomeTtl === null) throw new Error(`command ${id} was sent without outcomeTtl: a worker records no outcome for it`);
    const outcome = {
      command_id: id,
      job_id: job.jobId,
      state,
      reason: options.reason ?? null,
      at: new Date().toISOString(),
      next_try_at: null,
      enqueued_at_ms: job.envelope.et,
    };
    this.memory.strings.set(outcomeKey(id), JSON.stringify(outcome));
    if (state !== "retrying") this.memory.lists.set(outcomeDoneKey(id), ["1"]);
  }
}
