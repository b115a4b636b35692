/** Signed jobs: the MAC over the job's bytes with the mac zeroed, as the Python producer and the worker have it. */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { describe, test } from "node:test";

import { InvalidSendError, signJob, signingKeyFromEnv, TaskProducer } from "../src/index.js";
import { envelope, MAC_PLACEHOLDER } from "../src/wire.js";

const KEY = { keyId: "producer-a", secret: "a".repeat(40) };

describe("signing", () => {
  test("a signed envelope carries contract 3 and the HMAC of its own bytes with the mac as zeros", () => {
    const text = envelope("complete_task", { user_id: 1 }, { contract: 2, outcome_ttl: 60 }, 5, KEY);
    const job = JSON.parse(text);
    assert.deepEqual(Object.keys(job.k), ["contract", "outcome_ttl", "sig"]);
    assert.equal(job.k.contract, 3);
    assert.equal(job.k.sig.kid, "producer-a");
    const zeroed = text.replace(job.k.sig.mac, MAC_PLACEHOLDER);
    assert.ok(zeroed.includes(`"sig":{"kid":"producer-a","mac":"${MAC_PLACEHOLDER}"}`));
    assert.equal(job.k.sig.mac, createHmac("sha256", KEY.secret).update(zeroed).digest("hex"));
  });

  test("signJob signs a ready envelope like envelope() does and keeps t and et", () => {
    const plain = envelope("complete_task", { user_id: 1 }, {}, 123);
    assert.equal(signJob(plain, KEY), envelope("complete_task", { user_id: 1 }, {}, 123, KEY));
  });

  test("a key id JSON would escape, or a short secret, is refused at once", () => {
    assert.throws(() => signJob("{}", { keyId: 'a"b', secret: KEY.secret }), InvalidSendError);
    const client = {} as unknown as ConstructorParameters<typeof TaskProducer>[0];
    assert.throws(() => new TaskProducer(client, { signingKey: { keyId: "k", secret: "short" } }), /too short/);
    assert.throws(() => new TaskProducer(client, { signingKey: { keyId: "a b", secret: KEY.secret } }), /key id/);
    assert.equal(new TaskProducer(client, { signingKey: KEY }).signingKeyId, "producer-a");
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
