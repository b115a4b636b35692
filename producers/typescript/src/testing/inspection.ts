/**
 * What a worker would make of a job's text: its commands, checked, or why it would refuse it.
 *
 * `inspectJob` applies the workers' rules that depend on the job alone: the size limits, the
 * envelope, the job options a worker knows (`contract`, `outcome_ttl`, `sig`), the command or
 * every item of an apply_commands job (the contract's checks, `checkCommand`), the signature
 * under the producer's key, and how far ahead of now `issued_at` may lie. It asks no database
 * (whether the task or user exists) and knows neither the workers' key scopes nor
 * TASKLINE_REQUIRE_SIGNATURES. Envelope members and job options newer than this code are kept in
 * `envelope` and not judged: the workers decide about them.
 */
import { AssertionError } from "node:assert";
import { createHmac, timingSafeEqual } from "node:crypto";

import {
  BULK_JOB,
  checkCommand,
  DEFAULT_MAX_BULK_PAYLOAD_BYTES,
  DEFAULT_MAX_PAYLOAD_BYTES,
  MAX_BULK_COMMANDS,
  type Command,
} from "../contract.js";
import { OUTCOME_TTL_MAX_S, OUTCOMES_CONTRACT_VERSION } from "../envelope.js";
import { InvalidCommandError } from "../errors.js";
import { MAC_PLACEHOLDER, SIGNATURE_CONTRACT_VERSION, type SigningKey } from "../signing.js";

/** The newest contract version this package writes (signed jobs). */
const NEWEST_CONTRACT = SIGNATURE_CONTRACT_VERSION;
/** The workers' default TASKLINE_FUTURE_TOLERANCE, in seconds. */
export const DEFAULT_FUTURE_TOLERANCE_S = 3600;
const SIGNATURE = /^"sig":\{"kid":"([A-Za-z0-9._:@-]{1,64})","mac":"([0-9a-f]{64})"\}/;
const MARKER = '"sig":{"kid":"';

/** A job a worker would dead-letter: `reason` says why, `field` names the member (null: the job). */
export class WouldBeRefusedError extends AssertionError {
  override name = "WouldBeRefusedError";
  readonly reason: string;
  readonly field: string | null;
  readonly raw: string;

  constructor(reason: string, raw: string, field: string | null = null) {
    super({
      message:
        `a taskline worker would dead-letter this job: ${reason}. Fix the command before it is sent ` +
        "(the real producer would send it and a worker would refuse it).",
    });
    this.reason = reason;
    this.field = field;
    this.raw = raw;
  }
}

/** One job as a worker would read it. */
export interface SentJob {
  jobId: string;
  /** create_task, update_task, complete_task, or apply_commands. */
  function: string;
  /** Its commands, checked and normalised (one, or the items of an apply_commands job). */
  commands: Command[];
  /** Exactly the text that would be in Redis under `arq:job:<jobId>`. */
  raw: string;
  /** The job's JSON, every member (new ones included). */
  envelope: Record<string, unknown>;
  queue: string;
  /** false: Redis would have refused it as a duplicate of a job it holds (same job id). */
  queued: boolean;
  /** The key id whose signature was verified (null: unsigned). */
  signedBy: string | null;
  outcomeTtl: number | null;
  contract: number;
}

export interface InspectOptions {
  jobId: string;
  queue: string;
  queued?: boolean | undefined;
  signingKey?: SigningKey | undefined;
  /** The clock (default: now). */
  now?: Date | undefined;
  maxPayloadBytes?: number | undefined;
  maxBulkPayloadBytes?: number | undefined;
  /** How far ahead of `now` `issued_at` may lie; null leaves that rule out. */
  futureToleranceS?: number | null | undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkSignature(raw: string, key: SigningKey | undefined): string | null {
  const at = raw.indexOf(MARKER);
  if (at < 0) return null;
  const found = SIGNATURE.exec(raw.slice(at));
  if (found === null || raw.indexOf(MARKER, at + 1) >= 0) {
    throw new WouldBeRefusedError('bad signature: k.sig must be written once as "sig":{"kid":…,"mac":…}', raw, "k");
  }
  const keyId = found[1] as string;
  const mac = found[2] as string;
  if (key === undefined || key.keyId !== keyId) {
    throw new WouldBeRefusedError(`unknown key: the job is signed with "${keyId}", not this producer's key`, raw, "k");
  }
  const macAt = at + found[0].length - 66;
  const zeroed = raw.slice(0, macAt) + MAC_PLACEHOLDER + raw.slice(macAt + 64);
  const expected = createHmac("sha256", Buffer.from(key.secret, "utf8")).update(Buffer.from(zeroed, "utf8")).digest();
  if (!timingSafeEqual(expected, Buffer.from(mac, "hex"))) {
    throw new WouldBeRefusedError(`bad signature: the MAC does not match key "${keyId}"`, raw, "k");
  }
  return keyId;
}

function checkOptions(k: unknown, raw: string): { contract: number; outcomeTtl: number | null } {
  if (!isObject(k)) throw new WouldBeRefusedError('"k" must be an object', raw, "k");
  const contract = k.contract ?? 1;
  if (typeof contract !== "number" || !Number.isInteger(contract) || contract < 1 || contract > NEWEST_CONTRACT) {
    throw new WouldBeRefusedError(`k: "contract" must be a whole number from 1 to ${NEWEST_CONTRACT}`, raw, "k");
  }
  if ("sig" in k && contract < SIGNATURE_CONTRACT_VERSION) {
    throw new WouldBeRefusedError(`k: "sig" needs "contract": ${SIGNATURE_CONTRACT_VERSION}`, raw, "k");
  }
  if (!("outcome_ttl" in k)) return { contract, outcomeTtl: null };
  const ttl = k.outcome_ttl;
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > OUTCOME_TTL_MAX_S || contract < OUTCOMES_CONTRACT_VERSION) {
    throw new WouldBeRefusedError(
      `k: "outcome_ttl" must be 1 to ${OUTCOME_TTL_MAX_S} seconds with "contract" at least ${OUTCOMES_CONTRACT_VERSION}`,
      raw,
      "k",
    );
  }
  return { contract, outcomeTtl: ttl };
}

function checked(fn: unknown, command: unknown, raw: string, where = ""): Command {
  try {
    return checkCommand(fn as string, command);
  } catch (error) {
    if (error instanceof InvalidCommandError) throw new WouldBeRefusedError(where + error.message, raw, error.field);
    throw error;
  }
}

function bulkCommands(argument: unknown, raw: string): Command[] {
  if (!Array.isArray(argument) || argument.length < 1 || argument.length > MAX_BULK_COMMANDS) {
    throw new WouldBeRefusedError(`apply_commands takes a list of 1 to ${MAX_BULK_COMMANDS} items`, raw, "a");
  }
  return argument.map((item: unknown, index) => {
    const where = `commands[${index}]: `;
    if (!isObject(item) || Object.keys(item).sort().join() !== "command,function") {
      throw new WouldBeRefusedError(`${where}an item is {"function": <command job>, "command": {…}}`, raw, "function");
    }
    return checked(item.function, item.command, raw, where);
  });
}

/** The job as a worker would read it; throws `WouldBeRefusedError` when a worker would refuse it. */
export function inspectJob(raw: string, options: InspectOptions): SentJob {
  const bulk = raw.startsWith(`{"f":"${BULK_JOB}"`);
  const limit = bulk
    ? (options.maxBulkPayloadBytes ?? DEFAULT_MAX_BULK_PAYLOAD_BYTES)
    : (options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES);
  const size = Buffer.byteLength(raw, "utf8");
  if (size > limit) throw new WouldBeRefusedError(`the job is ${size} bytes; the workers' limit is ${limit}`, raw);
  let envelope: unknown;
  try {
    envelope = JSON.parse(raw);
  } catch (error) {
    throw new WouldBeRefusedError(`the job is not JSON: ${String(error)}`, raw);
  }
  if (!isObject(envelope) || !["f", "a", "k", "t", "et"].every((name) => name in envelope)) {
    throw new WouldBeRefusedError('a job is a JSON object with "f", "a", "k", "t" and "et"', raw);
  }
  const signedBy = checkSignature(raw, options.signingKey);
  const { contract, outcomeTtl } = checkOptions(envelope.k, raw);
  const fn = envelope.f;
  const args = envelope.a;
  if (!Array.isArray(args) || args.length !== 1) throw new WouldBeRefusedError('"a" must hold exactly one argument', raw, "a");
  const commands = fn === BULK_JOB ? bulkCommands(args[0], raw) : [checked(fn, args[0], raw)];
  const tolerance = options.futureToleranceS === undefined ? DEFAULT_FUTURE_TOLERANCE_S : options.futureToleranceS;
  if (tolerance !== null) {
    const horizon = (options.now ?? new Date()).getTime() + tolerance * 1000;
    for (const { function: name, command } of commands) {
      if (Date.parse(command.issued_at.toUpperCase()) > horizon) {
        throw new WouldBeRefusedError(
          `${name}: issued_at ${command.issued_at} is more than ${tolerance} s ahead of the worker's clock`,
          raw,
          "issued_at",
        );
      }
    }
  }
  return {
    jobId: options.jobId,
    function: String(fn),
    commands,
    raw,
    envelope,
    queue: options.queue,
    queued: options.queued ?? true,
    signedBy,
    outcomeTtl,
    contract,
  };
}
