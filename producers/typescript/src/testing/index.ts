/**
 * @taskline/producer/testing: test helpers for services that send taskline commands.
 *
 *     import { RecordingProducer } from "@taskline/producer/testing";
 *
 *     const producer = new RecordingProducer();
 *     await signup({ userId: 7, producer }); // the service's code, given the producer
 *     producer.assertSent("create_task", { userId: 7, title: "Welcome" });
 *
 * `RecordingProducer` is the real `TaskProducer` over Redis kept in memory: it checks, builds
 * and signs every job as the real one does, and reads each job back as a worker would, throwing
 * `WouldBeRefusedError` for one a worker would dead-letter.
 */
export { RecordingProducer } from "./recording-producer.js";
export type { RecordingProducerOptions } from "./recording-producer.js";
export { assertNotSent, assertSent, tasklineMatchers } from "./matchers.js";
export type { MatcherResult } from "./matchers.js";
export { ABSENT } from "./matching.js";
export type { SentCommand } from "./matching.js";
export { inspectJob, WouldBeRefusedError } from "./inspection.js";
export type { InspectOptions, SentJob } from "./inspection.js";
export type { JobFilter, SentOptions } from "./recording.js";
