/**
 * Every Redis key this client reads or writes, in one place.
 *
 * These mirror `taskline_producer.keys` (producers/python), which owns them; a test on the Python
 * side (tests/unit/test_typescript_producer.py) fails when the two disagree. The enqueue script
 * (`enqueue-script.ts`) is built from these constants.
 *
 * arq's keys (`arq:job:`, `arq:in-progress:`, `arq:result:`) are fixed by arq, whose wire format
 * is taskline's; everything taskline adds lives under `taskline:` or under the queue's own name.
 */

/** The default queue: a sorted set of job ids scored by the epoch ms at which each may run. */
export const DEFAULT_QUEUE = "taskline:queue";

/** `arq:job:<job id>`: the job's JSON envelope, with the job TTL. */
export const JOB_KEY_PREFIX = "arq:job:";
/** `arq:in-progress:<job id>`: a worker's claim on the job; it expires if the worker dies. */
export const IN_PROGRESS_KEY_PREFIX = "arq:in-progress:";
/** `arq:result:<job id>`: a job id whose result key exists is refused as a duplicate at enqueue. */
export const RESULT_KEY_PREFIX = "arq:result:";

/** `<queue>:wake`: the enqueue script pushes a token here so an idle worker starts at once. */
export const WAKE_KEY_SUFFIX = ":wake";
/** `taskline:trace:<job id>`: the W3C trace context (JSON) of the span that sent the job, beside it. */
export const TRACE_KEY_PREFIX = "taskline:trace:";
/** `taskline:outcome:<command id>`: the JSON outcome of a command sent with `outcomeTtl`. */
export const OUTCOME_KEY_PREFIX = "taskline:outcome:";
/** `taskline:outcome:<command id>:done`: a list that gets a token when the outcome is final. */
export const OUTCOME_DONE_SUFFIX = ":done";

/** `<queue>:fair:lane:<fairness key>`: the jobs of one fairness key waiting their turn. */
export const FAIR_LANE_INFIX = ":fair:lane:";
/** `<queue>:fair:turns`: the fairness keys with jobs in their lanes, by their next turn. */
export const FAIR_TURNS_SUFFIX = ":fair:turns";
/** `<queue>:fair:clock`: the turn last served; a key that starts sending joins there. */
export const FAIR_CLOCK_SUFFIX = ":fair:clock";

export function jobKey(jobId: string): string {
  return JOB_KEY_PREFIX + jobId;
}

export function inProgressKey(jobId: string): string {
  return IN_PROGRESS_KEY_PREFIX + jobId;
}

export function resultKey(jobId: string): string {
  return RESULT_KEY_PREFIX + jobId;
}

export function traceKey(jobId: string): string {
  return TRACE_KEY_PREFIX + jobId;
}

export function wakeKey(queue: string): string {
  return queue + WAKE_KEY_SUFFIX;
}

export function outcomeKey(commandId: string): string {
  return OUTCOME_KEY_PREFIX + commandId;
}

export function outcomeDoneKey(commandId: string): string {
  return outcomeKey(commandId) + OUTCOME_DONE_SUFFIX;
}
