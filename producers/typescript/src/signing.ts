/**
 * Signed jobs (contract version 3), exactly as the Python producer signs them
 * (taskline_producer/signing.py; docs/contract.md, "Signed jobs").
 *
 * The MAC is HMAC-SHA256, keyed with the secret's UTF-8 bytes, over the canonical JSON of
 * `{"a": <a>, "f": <f>, "k": <k without "sig">}`: members sorted by name, no whitespace, strings
 * escaped as JSON.stringify escapes them, integers only. It goes into `k.sig` as
 * `{"kid": <key id>, "mac": <64 lower-case hex digits>}`, with `k.contract` at least 3. `t` and
 * `et` are not covered.
 */
import { createHmac } from "node:crypto";

import { InvalidSendError } from "./errors.js";

/** The contract version that added `k.sig`. */
export const SIGNATURE_CONTRACT_VERSION = 3;
/** A secret is at least this many characters (e.g. `openssl rand -hex 32`). */
export const MIN_SECRET_CHARS = 32;
const KEY_ID_MAX_CHARS = 64;

/** A producer's signing key: its id, named in every job, and its secret. */
export interface SigningKey {
  keyId: string;
  secret: string;
}

/** Check a key now rather than at the first send. */
export function checkSigningKey(key: SigningKey): SigningKey {
  if (typeof key.keyId !== "string" || key.keyId.length < 1 || key.keyId.length > KEY_ID_MAX_CHARS) {
    throw new InvalidSendError(`a signing key id is 1 to ${KEY_ID_MAX_CHARS} characters, got ${JSON.stringify(key.keyId)}`);
  }
  if (typeof key.secret !== "string" || Buffer.byteLength(key.secret, "utf8") < MIN_SECRET_CHARS) {
    throw new InvalidSendError(
      `the secret of signing key ${JSON.stringify(key.keyId)} is too short; use at least ${MIN_SECRET_CHARS} random characters (openssl rand -hex 32)`,
    );
  }
  return key;
}

/** The key in TASKLINE_SIGNING_KEY_ID and TASKLINE_SIGNING_SECRET; undefined when neither is set. */
export function signingKeyFromEnv(env: Record<string, string | undefined> = process.env): SigningKey | undefined {
  const keyId = env.TASKLINE_SIGNING_KEY_ID;
  const secret = env.TASKLINE_SIGNING_SECRET;
  if (keyId === undefined && secret === undefined) return undefined;
  if (keyId === undefined || secret === undefined) {
    const missing = keyId === undefined ? "TASKLINE_SIGNING_KEY_ID" : "TASKLINE_SIGNING_SECRET";
    throw new InvalidSendError(`${missing} is not set: set both TASKLINE_SIGNING_KEY_ID and TASKLINE_SIGNING_SECRET, or neither`);
  }
  return checkSigningKey({ keyId, secret });
}

/** The canonical JSON text of a value (members sorted, no whitespace, integers only). */
export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new InvalidSendError(`${value} is not an integer: numbers in a signed job must be integers`);
    }
    return String(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((member) => canonicalJson(member ?? null)).join(",")}]`;
  if (typeof value === "object") {
    const members = Object.entries(value as Record<string, unknown>)
      .filter(([, member]) => member !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, member]) => `${JSON.stringify(name)}:${canonicalJson(member)}`);
    return `{${members.join(",")}}`;
  }
  throw new InvalidSendError(`${typeof value} is not a JSON value`);
}

/** What a job's MAC covers: its function, its arguments and its options without `sig`. */
export function signingInput(fn: unknown, args: unknown, kwargs: Record<string, unknown>): string {
  const unsigned = Object.fromEntries(Object.entries(kwargs).filter(([name]) => name !== "sig"));
  return canonicalJson({ a: args, f: fn, k: unsigned });
}

/** The job options `kwargs` with the job's signature added (and `contract` raised to 3). */
export function signKwargs(
  key: SigningKey,
  fn: unknown,
  args: unknown,
  kwargs: Record<string, unknown>,
): Record<string, unknown> {
  const signed: Record<string, unknown> = Object.fromEntries(Object.entries(kwargs).filter(([name]) => name !== "sig"));
  signed.contract = Math.max(Number(signed.contract ?? 1), SIGNATURE_CONTRACT_VERSION);
  const mac = createHmac("sha256", Buffer.from(key.secret, "utf8")).update(signingInput(fn, args, signed), "utf8").digest("hex");
  signed.sig = { kid: key.keyId, mac };
  return signed;
}

/** A ready job envelope (JSON text), signed with `key`; `t` and `et` are kept as they are. */
export function signJob(job: string, key: SigningKey): string {
  const value = JSON.parse(job) as Record<string, unknown>;
  value.k = signKwargs(key, value.f, value.a, (value.k ?? {}) as Record<string, unknown>);
  return JSON.stringify(value);
}
