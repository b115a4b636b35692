/**
 * The job envelope: `{"f": <function>, "a": [<argument>], "k": {...}, "t": null, "et": <ms>}`,
 * and the versioned per-job options carried in `k` (docs/contract.md, "Contract versions").
 */
import { InvalidSendError } from "./errors.js";
import { seal, signatureKwargs, type SigningKey } from "./signing.js";

/** The contract version that added `k.outcome_ttl`. A job without it carries no version (1). */
export const OUTCOMES_CONTRACT_VERSION = 2;
export const OUTCOME_TTL_MAX_S = 604_800;

/** What a job asks of the worker beyond applying its command(s). */
export interface JobOptions {
  /**
   * Seconds (1 to 604800) the worker keeps each command's outcome in Redis, for
   * `receipt.outcome()`. Leave it out (the default) and the job costs the worker nothing extra,
   * and workers of every version accept it.
   */
  outcomeTtl?: number | undefined;
}

/** The job's `k` member: empty (contract version 1) unless the job uses a newer option. */
export function jobKwargs(options: JobOptions): Record<string, unknown> {
  const ttl = options.outcomeTtl;
  if (ttl === undefined) return {};
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > OUTCOME_TTL_MAX_S) {
    throw new InvalidSendError(`outcomeTtl must be a whole number of seconds from 1 to ${OUTCOME_TTL_MAX_S}, got ${ttl}`);
  }
  // The lowest version that carries what the job uses: outcomes need version 2.
  return { contract: OUTCOMES_CONTRACT_VERSION, outcome_ttl: ttl };
}

/** The job JSON for one job function and its single positional argument, signed with `key` when given. */
export function envelope(
  fn: string,
  argument: unknown,
  kwargs: Record<string, unknown>,
  enqueuedMs: number,
  key?: SigningKey,
): string {
  if (key === undefined) return JSON.stringify({ f: fn, a: [argument], k: kwargs, t: null, et: enqueuedMs });
  return seal(JSON.stringify({ f: fn, a: [argument], k: signatureKwargs(key, kwargs), t: null, et: enqueuedMs }), key);
}
