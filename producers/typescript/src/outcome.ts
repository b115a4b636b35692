/**
 * What became of a command sent with `outcomeTtl` (docs/contract.md, "Outcomes"), read from
 * Redis alone. The worker writes `taskline:outcome:<command id>` each time the command reaches a
 * state and, on a final one, pushes a token onto `taskline:outcome:<command id>:done`; a waiter
 * blocks on that list with `BLMOVE list list LEFT LEFT` (it moves the token onto the same list,
 * so any number of waiters see it).
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
}

function text(reply: unknown): string | null {
  if (reply === null || reply === undefined) return null;
  return typeof reply === "string" ? reply : String(reply);
}

/** One consistent look (MULTI) at the outcome key and the job's own keys. */
export async function readOutcome(redis: ProducerRedis, commandId: string, jobId: string): Promise<Outcome> {
  const [recorded, queued, running] = await redis
    .multi()
    .get(outcomeKey(commandId))
    .exists([jobKey(jobId)])
    .exists([inProgressKey(jobId)])
    .exec();
  const document = text(recorded);
  const pending = { commandId, jobId, reason: null, at: null, nextTryAt: null, final: false, timedOut: false };
  if (document === null) {
    if (Number(running) > 0) return { ...pending, state: "running" };
    return { ...pending, state: Number(queued) > 0 ? "queued" : "unknown" };
  }
  const outcome = JSON.parse(document) as RecordedOutcome;
  return {
    commandId,
    jobId: outcome.job_id ?? jobId,
    state: outcome.state,
    final: FINAL_STATES.has(outcome.state),
    reason: outcome.reason ?? null,
    at: outcome.at ?? null,
    nextTryAt: outcome.next_try_at ?? null,
    timedOut: false,
  };
}

/** The longest one BLMOVE blocks before the job's own keys are looked at again (see below). */
const LOOK_AGAIN_MS = 2_000;

/**
 * Wait until the command's outcome is final or `timeoutMs` has passed; returns the last state
 * seen (`timedOut: true` when it is not final). Stops early at `unknown`: no outcome and no job
 * means none is coming (the job was sent without outcomeTtl and is gone, or its outcome expired).
 * Blocks at most LOOK_AGAIN_MS at a time, so that a job an older worker applied without
 * recording an outcome is seen as `unknown` within seconds rather than at the timeout.
 */
export async function waitForOutcome(
  redis: ProducerRedis,
  blocking: () => Promise<BlockingRedis>,
  commandId: string,
  jobId: string,
  timeoutMs: number,
): Promise<Outcome> {
  const deadline = Date.now() + timeoutMs;
  let last = await readOutcome(redis, commandId, jobId);
  while (!last.final && last.state !== "unknown") {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const wait = Math.max(1, Math.min(remaining, LOOK_AGAIN_MS));
    const done = outcomeDoneKey(commandId);
    // BLMOVE's timeout is in seconds, decimals allowed; 0 would mean "forever", hence max(1 ms).
    await (await blocking()).blMove(done, done, "LEFT", "LEFT", wait / 1000);
    last = await readOutcome(redis, commandId, jobId);
  }
  return { ...last, timedOut: !last.final && last.state !== "unknown" };
}
