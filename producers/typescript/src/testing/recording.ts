/** What a recording producer sent, and the assertions a service's tests make about it. */
import { AssertionError } from "node:assert";

import type { SigningKey } from "../signing.js";
import { inspectJob, type SentJob } from "./inspection.js";
import { describe, differences, showExpected, wireFields, type SentCommand } from "./matching.js";
import type { EnqueueAttempt } from "./memory-redis.js";

const SHOWN = 20;

/** Filters on the job that carried a command. */
export interface JobFilter {
  /** true (the default): only jobs Redis took; false: only those it refused as duplicates; null: both. */
  queued?: boolean | null | undefined;
  /** A key id; null: unsigned only. Left out: any. */
  signedBy?: string | null | undefined;
  /** Seconds; null: sent without outcomes. Left out: any. */
  outcomeTtl?: number | null | undefined;
}

export interface SentOptions extends JobFilter {
  /** Exactly this many must match. */
  count?: number | undefined;
}

export interface RecordingSettings {
  signingKey?: SigningKey | undefined;
  maxPayloadBytes?: number | undefined;
  maxBulkPayloadBytes?: number | undefined;
  futureToleranceS?: number | null | undefined;
  clock?: (() => Date) | undefined;
}

function criteria(fields: Record<string, unknown>, filter: JobFilter): string {
  const parts = Object.entries(fields).map(([name, value]) => `${name}=${showExpected(value)}`);
  if (filter.signedBy !== undefined) parts.push(`signedBy=${JSON.stringify(filter.signedBy)}`);
  if (filter.outcomeTtl !== undefined) parts.push(`outcomeTtl=${JSON.stringify(filter.outcomeTtl)}`);
  if (filter.queued === false) parts.push("refused as a duplicate");
  return parts.length > 0 ? ` with ${parts.join(", ")}` : "";
}

/** Every job a recording producer sent, in order, each checked as a worker would check it. */
export class Recording {
  readonly jobs: SentJob[] = [];

  constructor(private readonly settings: RecordingSettings = {}) {}

  /** Keep one enqueue attempt; throws `WouldBeRefusedError` when a worker would refuse the job. */
  record(attempt: EnqueueAttempt): void {
    this.jobs.push(
      inspectJob(attempt.raw, {
        jobId: attempt.jobId,
        queue: attempt.queue,
        queued: attempt.queued,
        signingKey: this.settings.signingKey,
        now: this.settings.clock?.(),
        maxPayloadBytes: this.settings.maxPayloadBytes,
        maxBulkPayloadBytes: this.settings.maxBulkPayloadBytes,
        futureToleranceS: this.settings.futureToleranceS,
      }),
    );
  }

  clear(): void {
    this.jobs.length = 0;
  }

  /** The sent commands that match, in the order they were sent (bulk items in their order). */
  commands(fn?: string, fields: Record<string, unknown> = {}, filter: JobFilter = {}): SentCommand[] {
    const wire = wireFields(fn, fields);
    return this.candidates(fn, filter).filter((sent) => differences(sent, wire).length === 0);
  }

  private candidates(fn: string | undefined, filter: JobFilter): SentCommand[] {
    const queued = filter.queued === undefined ? true : filter.queued;
    return this.jobs
      .filter((job) => queued === null || job.queued === queued)
      .filter((job) => filter.signedBy === undefined || job.signedBy === filter.signedBy)
      .filter((job) => filter.outcomeTtl === undefined || job.outcomeTtl === filter.outcomeTtl)
      .flatMap((job) =>
        job.commands.map(({ function: name, command }) => ({
          function: name,
          command: command as unknown as Record<string, unknown>,
          job,
          inBulk: job.function !== name,
        })),
      )
      .filter((sent) => fn === undefined || sent.function === fn);
  }

  /**
   * Assert that a matching command was sent (exactly `count` of them, when given) and return the
   * last one; the AssertionError names what was expected and lists what was sent, decoded.
   */
  assertSent(fn?: string, fields: Record<string, unknown> = {}, options: SentOptions = {}): SentCommand {
    const found = this.commands(fn, fields, options);
    const last = found[found.length - 1];
    if (last !== undefined && (options.count === undefined || found.length === options.count)) return last;
    const what = fn ?? "command";
    const wanted = options.count === undefined ? `a ${what}` : `exactly ${options.count} ${what}`;
    throw new AssertionError({
      message: `expected ${wanted}${criteria(fields, options)} to have been sent; found ${found.length}.\n${this.listing(fn, fields)}`,
    });
  }

  /** Assert that no matching command was sent; the AssertionError shows the ones that were. */
  assertNotSent(fn?: string, fields: Record<string, unknown> = {}, filter: JobFilter = {}): void {
    const found = this.commands(fn, fields, filter);
    if (found.length === 0) return;
    const shown = found.slice(0, SHOWN).map((sent) => `  ${describe(sent)}`).join("\n");
    throw new AssertionError({
      message: `expected no ${fn ?? "command"}${criteria(fields, filter)} to have been sent; ${found.length} ${found.length === 1 ? "was" : "were"}:\n${shown}`,
    });
  }

  private listing(fn: string | undefined, fields: Record<string, unknown>): string {
    const sent = this.candidates(undefined, { queued: null });
    if (sent.length === 0) return "Nothing was sent.";
    const wire = wireFields(fn, fields);
    const lines = [`${sent.length} command${sent.length === 1 ? " was" : "s were"} sent:`];
    for (const item of sent.slice(0, SHOWN)) {
      lines.push(`  ${describe(item, fn === undefined || fn === item.function ? differences(item, wire) : [])}`);
    }
    if (sent.length > SHOWN) lines.push(`  … and ${sent.length - SHOWN} more`);
    return lines.join("\n");
  }
}
