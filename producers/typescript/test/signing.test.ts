/** Signed jobs: the canonical form and the signature, as the Python producer and the worker have them. */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { describe, test } from "node:test";

import { canonicalJson, InvalidSendError, signJob, signingInput, signingKeyFromEnv } from "../src/index.js";
import { envelope } from "../src/wire.js";

const KEY = { keyId: "producer-a", secret: "a".repeat(40) };

describe("canonical JSON", () => {
  test("sorts members, drops whitespace and undefined members, escapes only what JSON requires", () => {
    const value = { b: [1, null, true], a: { z: 'é\n\u0001"\\', y: -3, x: undefined } };
    assert.equal(canonicalJson(value), '{"a":{"y":-3,"z":"é\\n\\u0001\\"\\\\"},"b":[1,null,true]}');
  });

  test("refuses numbers that are not integers", () => {
    assert.throws(() => canonicalJson({ user_id: 1.5 }), InvalidSendError);
  });
});

describe("signing", () => {
  test("a signed envelope carries contract 3 and the HMAC of f, a and k without sig", () => {
    const job = JSON.parse(envelope("complete_task", { user_id: 1 }, { contract: 2, outcome_ttl: 60 }, 5, KEY));
    assert.equal(job.k.contract, 3);
    assert.equal(job.k.outcome_ttl, 60);
    assert.equal(job.k.sig.kid, "producer-a");
    const input = signingInput("complete_task", [{ user_id: 1 }], { contract: 3, outcome_ttl: 60 });
    assert.equal(input, '{"a":[{"user_id":1}],"f":"complete_task","k":{"contract":3,"outcome_ttl":60}}');
    assert.equal(job.k.sig.mac, createHmac("sha256", KEY.secret).update(input).digest("hex"));
  });

  test("signJob signs a ready envelope like envelope() does and keeps t and et", () => {
    const plain = envelope("complete_task", { user_id: 1 }, {}, 123);
    assert.deepEqual(JSON.parse(signJob(plain, KEY)), JSON.parse(envelope("complete_task", { user_id: 1 }, {}, 123, KEY)));
  });

  test("the key comes from both environment variables or neither", () => {
    assert.equal(signingKeyFromEnv({}), undefined);
    assert.deepEqual(
      signingKeyFromEnv({ TASKLINE_SIGNING_KEY_ID: "producer-a", TASKLINE_SIGNING_SECRET: KEY.secret }),
      KEY,
    );
    assert.throws(() => signingKeyFromEnv({ TASKLINE_SIGNING_KEY_ID: "producer-a" }), /TASKLINE_SIGNING_SECRET is not set/);
    assert.throws(() => signingKeyFromEnv({ TASKLINE_SIGNING_KEY_ID: "k", TASKLINE_SIGNING_SECRET: "short" }), /too short/);
  });
});
