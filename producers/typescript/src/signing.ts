/**
 * Signed jobs (contract version 3), exactly as the Python producer signs them
 * (taskline_producer/signing.py; docs/signing.md).
 *
 * A signed job's `k` carries `"sig": {"kid": <key id>, "mac": <64 lower-case hex digits>}` and
 * `"contract"` at least 3. The MAC is HMAC-SHA256, keyed with the secret's UTF-8 bytes, over the
 * job's exact UTF-8 bytes with the mac written as 64 zeros; the zeros are then replaced by it.
 * Everything in the job is covered, `t` and `et` included.
 */
import { createHmac } from "node:crypto";

import { InvalidSendError } from "./errors.js";

/** The contract version that added `k.sig`. */
export const SIGNATURE_CONTRACT_VERSION = 3;
/** A secret is at least this many characters (e.g. `openssl rand -hex 32`). */
export const MIN_SECRET_CHARS = 32;
/** What the mac is written as while the MAC is computed. */
export const MAC_PLACEHOLDER = "0".repeat(64);
const KEY_ID = /^[A-Za-z0-9._:@-]{1,64}$/;
const MARKER = '"sig":{"kid":"';

/** A producer's signing key: its id, named in every job, and its secret. */
export interface SigningKey {
  keyId: string;
  secret: string;
}

/** Check a key now rather than at the first send. */
export function checkSigningKey(key: SigningKey): SigningKey {
  if (typeof key.keyId !== "string" || !KEY_ID.test(key.keyId)) {
    throw new InvalidSendError(
      `a signing key id is 1 to 64 letters, digits or . _ : @ -, got ${JSON.stringify(key.keyId)}`,
    );
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

/** The job options ready to be sealed: `contract` raised to 3, `sig` last with the mac as zeros. */
export function signatureKwargs(key: SigningKey, kwargs: Record<string, unknown>): Record<string, unknown> {
  const signed: Record<string, unknown> = Object.fromEntries(Object.entries(kwargs).filter(([name]) => name !== "sig"));
  signed.contract = Math.max(Number(signed.contract ?? 1), SIGNATURE_CONTRACT_VERSION);
  signed.sig = { kid: key.keyId, mac: MAC_PLACEHOLDER };
  return signed;
}

/** A job written with `signatureKwargs`, its zeros replaced by its MAC. */
export function seal(job: string, key: SigningKey): string {
  const placeholder = `${MARKER}${key.keyId}","mac":"${MAC_PLACEHOLDER}"}`;
  const at = job.indexOf(placeholder);
  if (at < 0 || job.indexOf(MARKER, job.indexOf(MARKER) + 1) >= 0) {
    throw new InvalidSendError('the job must hold "sig":{"kid":<key id>,"mac":<64 zeros>} exactly once');
  }
  const mac = createHmac("sha256", Buffer.from(key.secret, "utf8")).update(Buffer.from(job, "utf8")).digest("hex");
  const start = at + placeholder.length - 66;
  return job.slice(0, start) + mac + job.slice(start + 64);
}

/** A ready job envelope (JSON text), signed with `key`; `t` and `et` are kept as they are. */
export function signJob(job: string, key: SigningKey): string {
  const value = JSON.parse(job) as Record<string, unknown>;
  value.k = signatureKwargs(key, (value.k ?? {}) as Record<string, unknown>);
  return seal(JSON.stringify(value), key);
}
