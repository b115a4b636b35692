/**
 * The producer takes node-redis clients as they come: a plain client, a client with RESP3, and
 * a client pool and a Sentinel client (`createSentinel`) all type-check as the producer's client
 * (and the pool as a blocking client).
 * Nothing connects: creating a node-redis client opens no connection.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient, createClientPool, createSentinel } from "redis";

import { TaskProducer } from "../src/index.js";

test("node-redis clients and pools are accepted as they are", () => {
  const client = createClient({ url: "redis://127.0.0.1:6379/0" });
  const resp3 = createClient({ RESP: 3 });
  const pool = createClientPool({ url: "redis://127.0.0.1:6379/0" });
  const producers = [
    new TaskProducer(client),
    new TaskProducer(resp3, { queue: "q", blockingClient: pool }),
    new TaskProducer(pool),
  ];
  assert.equal(producers.length, 3);
  assert.equal(client.isOpen, false);
});

test("a node-redis Sentinel client is accepted as it is", () => {
  const sentinel = createSentinel({ name: "taskline", sentinelRootNodes: [{ host: "127.0.0.1", port: 26379 }] });
  const producer = new TaskProducer(sentinel, { queue: "q" });
  assert.equal(producer.queue, "q");
  assert.equal(sentinel.isOpen, false);
});
