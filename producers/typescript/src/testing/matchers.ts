/**
 * Assertions on a `RecordingProducer`, in two forms:
 *
 * - plain functions that throw node's `AssertionError` (Node's test runner, Jest, Vitest, Mocha);
 * - `tasklineMatchers`, for `expect.extend(tasklineMatchers)` in Jest or Vitest:
 *   `expect(producer).toHaveSent("create_task", { userId: 7 })`, `.not.toHaveSent(...)`.
 */
import type { SentCommand } from "./matching.js";
import { RecordingProducer } from "./recording-producer.js";
import type { JobFilter, SentOptions } from "./recording.js";

/** Assert `producer` sent a matching command (see `Recording.assertSent`); returns the last one. */
export function assertSent(
  producer: RecordingProducer,
  fn?: string,
  fields: Record<string, unknown> = {},
  options: SentOptions = {},
): SentCommand {
  return producer.recording.assertSent(fn, fields, options);
}

/** Assert `producer` sent no matching command. */
export function assertNotSent(
  producer: RecordingProducer,
  fn?: string,
  fields: Record<string, unknown> = {},
  filter: JobFilter = {},
): void {
  producer.recording.assertNotSent(fn, fields, filter);
}

/** What a Jest or Vitest matcher returns. */
export interface MatcherResult {
  pass: boolean;
  message: () => string;
}

function producerOf(received: unknown): RecordingProducer {
  if (!(received instanceof RecordingProducer)) {
    throw new TypeError("expect(...) must be given a RecordingProducer from @taskline/producer/testing");
  }
  return received;
}

/** Matchers for `expect.extend(tasklineMatchers)` (Jest, Vitest). */
export const tasklineMatchers = {
  /** `expect(producer).toHaveSent(fn?, fields?, { count, signedBy, outcomeTtl, queued }?)` */
  toHaveSent(received: unknown, fn?: string, fields: Record<string, unknown> = {}, options: SentOptions = {}): MatcherResult {
    const producer = producerOf(received);
    try {
      producer.recording.assertSent(fn, fields, options);
    } catch (error) {
      return { pass: false, message: () => (error as Error).message };
    }
    return {
      pass: true,
      message: () => {
        try {
          producer.recording.assertNotSent(fn, fields, options);
          return "expected no such command to have been sent";
        } catch (error) {
          return (error as Error).message;
        }
      },
    };
  },
};
