/**
 * What became of a command sent with `outcomeTtl` (docs/contract.md, "Outcomes"), read from
 * Redis alone. The worker writes `taskline:outcome:<command id>` each time the command reaches a
 * state and, on a final one, pushes a token onto `taskline:outcome:<command id>:done`; a waiter
 * blocks on that list with `BLMOVE list list LEFT LEFT` (it moves the token onto the same list,
 * so any number of waiters see it).
 *
 * A re-send (the same command sent again after its job ended) is a new job: its waiter ignores
 * the outcome an earlier job of the same command wrote (`enqueued_at_ms`, the job's `et`, older
 * than the re-send's) and gets the new job's own, `duplicate`.
 */
import { inProgressKey, jobKey, outcomeDoneKey, outcomeKey } from "./keys.js";
import type { BlockingRedis, ProducerRedis } from "./redis-client.js";

/** Written by the worker. `applied`, `duplicate` and `dead_letter` are final. */
export type RecordedState = "applied" | "duplicate" | "dead_letter" | "retrying";
/**
 * With no outcome recorded: `queued` (the job waits in Redis), `running` (a worker holds it),
 * or `unknown` (no such job: it was sent without `outcomeTtl`, or its outcome expired).
 */
export type PendingState = "queued" | "running" | "unknown";
export type OutcomeState = RecordedState | PendingState;

export const FINAL_STATES: ReadonlySet<OutcomeState> = new Set(["applied", "duplicate", "dead_letter"]);

export interface Outcome {
  commandId: string;
  jobId: string;
  state: OutcomeState;
  /** Whether the state is final (applied, duplicate, dead_letter). */
  final: boolean;
  /** Why: the dead letter's reason, or what a retry waits for. */
  reason: string | null;
  /** When the worker recorded the state (RFC 3339, UTC); null when none was recorded. */
  at: string | null;
  /** For `retrying`: when the next try is due. */
  nextTryAt: string | null;
  /** When the job that wrote the state was enqueued (its `et`, epoch ms); null when none was recorded. */
  enqueuedAtMs: number | null;
  /** True when `outcome()` returned because its timeout ran out before a final state. */
  timedOut: boolean;
}

interface RecordedOutcome {
  command_id: string;
  job_id: string;
  state: RecordedState;
  reason: string | null;
  at: string;
  next_try_at: string | null;
  enqueued_at_ms?: number | null;
}

function text(reply: unknown): string | null {
  if (reply === null || reply === undefined) return null;
  return typeof reply === "string" ? reply : String(reply);
}

/**
 * One consistent look (MULTI) at the outcome key and the job's own keys. With `sentAtMs` (the
 * send's `et`), an outcome written for an earlier send of the same command is not this one's.
 */
export async function readOutcome(
  redis: ProducerRedis,
  commandId: string,
  jobId: string,
  sentAtMs: number | null = null,
): Promise<Outcome> {
  const [recorded, queued, running] = await redis
    .multi()
    .get(outcomeKey(commandId))
    .exists([jobKey(jobId)])
    .exists([inProgressKey(jobId)])
    .exec();
  const document = text(recorded);
  const outcome = document === null ? null : (JSON.parse(document) as RecordedOutcome);
  const pending = {
    commandId,
    jobId,
    reason: null,
    at: null,
    nextTryAt: null,
    enqueuedAtMs: null,
    final: false,
    timedOut: false,
  };
  const enqueuedAtMs = outcome?.enqueued_at_ms ?? null;
  const earlier = sentAtMs !== null && enqueuedAtMs !== null && enqueuedAtMs < sentAtMs;
  if (outcome === null || earlier) {
    if (Number(running) > 0) return { ...pending, state: "running" };
    return { ...pending, state: Number(queued) > 0 ? "queued" : "unknown" };
  }
  return {
    commandId,
    jobId: outcome.job_id ?? jobId,
    state: outcome.state,
    final: FINAL_STATES.has(outcome.state),
    reason: outcome.reason ?? null,
    at: outcome.at ?? null,
    nextTryAt: outcome.next_try_at ?? null,
    enqueuedAtMs,
    timedOut: false,
  };
}

/**
 * The longest one BLMOVE blocks before the keys are read again: a wait never depends on one
 * long-blocked connection, and a state that is not final (retrying, running) is seen fresh.
 */
const LONGEST_BLOCK_MS = 2_000;
/**
 * The pause after a token that came without a final outcome of this send: an earlier send's
 * token (a re-send polls for its own outcome), or a race with a retrying write.
 */
const DEFENSIVE_PAUSE_MS = 100;

/**
 * Wait until the command's outcome is final or `timeoutMs` has passed, and return the last
 * state seen (`timedOut: true` when it is not final). `unknown` is waited on like any other
 * state that is not final: the outcome may still be written.
 */
export async function waitForOutcome(
  redis: ProducerRedis,
  blocking: () => Promise<BlockingRedis>,
  commandId: string,
  jobId: string,
  timeoutMs: number,
  sentAtMs: number | null = null,
): Promise<Outcome> {
  const deadline = Date.now() + timeoutMs;
  const done = outcomeDoneKey(commandId);
  let last = await readOutcome(redis, commandId, jobId, sentAtMs);
  while (!last.final) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) return { ...last, timedOut: true };
    // BLMOVE's timeout is in seconds, decimals allowed; 0 would mean "forever", hence >= 1 ms.
    const seconds = Math.max(1, Math.min(remaining, LONGEST_BLOCK_MS)) / 1000;
    const token = await (await blocking()).blMove(done, done, "LEFT", "LEFT", seconds);
    last = await readOutcome(redis, commandId, jobId, sentAtMs);
    if (token !== null && token !== undefined && !last.final) {
      await sleep(Math.min(DEFENSIVE_PAUSE_MS, Math.max(0, deadline - Date.now())));
    }
  }
  return last;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
