/**
 * `@taskline/producer/wire`: the wire format for tools that speak Redis directly: every key
 * name, the enqueue script and the envelope. The Python test that keeps the two clients in step
 * reads these.
 */
export * from "./keys.js";
export { ENQUEUE_FAIR_SCRIPT, ENQUEUE_SCRIPT } from "./enqueue-script.js";
export { envelope, jobKwargs, OUTCOMES_CONTRACT_VERSION, OUTCOME_TTL_MAX_S } from "./envelope.js";
export { WHITESPACE, isRfc3339 } from "./contract.js";
export { MAC_PLACEHOLDER, seal, signatureKwargs, signJob, SIGNATURE_CONTRACT_VERSION } from "./signing.js";
