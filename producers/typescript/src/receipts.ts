/** What a send returns: the ids, whether Redis queued the job, and a way to wait for the outcome. */
import type { Outcome } from "./outcome.js";

export interface OutcomeOptions {
  /** How long to wait for a final outcome, in ms. Default 30000; 0 looks once without waiting. */
  timeoutMs?: number | undefined;
}

type Waiter = (commandId: string, jobId: string, timeoutMs: number, sentAtMs: number | null) => Promise<Outcome>;

export const DEFAULT_OUTCOME_TIMEOUT_MS = 30_000;

/** One command sent. */
export class Receipt {
  constructor(
    /** The command's id (normalised: lower case). */
    readonly commandId: string,
    /** The job that carries it: the command id itself, or a bulk job's id. */
    readonly jobId: string,
    readonly taskId: string,
    /** false: the job id was already queued or running, so Redis refused it as a duplicate. */
    readonly queued: boolean,
    private readonly waiter: Waiter,
    /**
     * The queued job's `et` (epoch ms): its outcome is the one written for it (a re-send of an
     * applied command reports `duplicate`). null when refused as a duplicate: the job already
     * in the queue is waited for.
     */
    readonly sentAtMs: number | null = null,
  ) {}

  /**
   * Wait for what became of the command (applied, duplicate, dead_letter) and return it; on
   * timeout, return the last state seen with `timedOut: true`. Needs the command to have been
   * sent with `outcomeTtl`; otherwise the answer is `queued`, `running` or `unknown`.
   */
  outcome(options: OutcomeOptions = {}): Promise<Outcome> {
    return this.waiter(this.commandId, this.jobId, options.timeoutMs ?? DEFAULT_OUTCOME_TIMEOUT_MS, this.sentAtMs);
  }

  toJSON(): { commandId: string; jobId: string; taskId: string; queued: boolean } {
    return { commandId: this.commandId, jobId: this.jobId, taskId: this.taskId, queued: this.queued };
  }
}

/** What `sendMany` did: one receipt per command, in order. */
export interface SendReport {
  /** How many jobs were queued. */
  queued: number;
  /** The command ids Redis refused as duplicates. */
  duplicates: string[];
  receipts: Receipt[];
}

/** One `apply_commands` job. */
export interface BulkReceipt {
  jobId: string;
  /** false: a job with this id was already queued or running. */
  queued: boolean;
  /** One per command in it, each with the bulk job's id as `jobId`. */
  receipts: Receipt[];
}
