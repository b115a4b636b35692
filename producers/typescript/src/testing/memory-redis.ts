/**
 * An in-memory stand-in for the node-redis calls a `TaskProducer` makes, so that the real
 * producer code runs unchanged in a service's tests, with no Redis server.
 *
 * It understands exactly what the producer sends: the enqueue script (EVALSHA, EVAL, or EVAL in
 * a pipeline) and the reads of an outcome (GET, EXISTS, BLMOVE). The script's rules are kept: a
 * job id whose job or result is held is refused as a duplicate, and each job attempt, queued or
 * refused, is handed to `onEnqueue` with its exact text. Job TTLs are not enforced.
 */
import { createHash } from "node:crypto";

import { ENQUEUE_SCRIPT } from "../enqueue-script.js";
import { jobKey, resultKey, traceKey } from "../keys.js";
import type { BlockingRedis, EvalArguments, ProducerRedis, QueuedCommands } from "../redis-client.js";

const ENQUEUE_SHA1 = createHash("sha1").update(ENQUEUE_SCRIPT).digest("hex");
/** How long a BLMOVE on an empty list waits before answering nothing (its caller reads again). */
const IDLE_BLOCK_MS = 50;

/** One job the enqueue script was asked to queue, as Redis would have received it. */
export interface EnqueueAttempt {
  queue: string;
  jobId: string;
  raw: string;
  scoreMs: number;
  queued: boolean;
}

function unsupported(what: string): Error {
  return new Error(
    `@taskline/producer/testing's memory Redis does not do ${what}: it stands in for the calls a TaskProducer makes. ` +
      "Hand the producer under test to your code; for anything else use a real Redis",
  );
}

export class MemoryRedis implements ProducerRedis, BlockingRedis {
  /** Called for every job attempt before anything is kept; may refuse the job by throwing. */
  onEnqueue: ((attempt: EnqueueAttempt) => void) | undefined;
  readonly strings = new Map<string, string>();
  readonly queues = new Map<string, Map<string, number>>();
  readonly lists = new Map<string, string[]>();

  async eval(script: string, options: EvalArguments): Promise<unknown> {
    if (script !== ENQUEUE_SCRIPT) throw unsupported("this Lua script (only the producer's enqueue script)");
    return this.enqueue(options);
  }

  async evalSha(sha1: string, options: EvalArguments): Promise<unknown> {
    if (sha1 !== ENQUEUE_SHA1) throw unsupported("this script (only the producer's enqueue script)");
    return this.enqueue(options);
  }

  /** The enqueue script: ARGV = score, job TTL, job id and job JSON pairs, then (an odd count) the trace context. */
  enqueue({ keys, arguments: args }: EvalArguments): number[] {
    const queue = keys[0] ?? "";
    const scoreMs = Number(args[0]);
    const trace = args.length % 2 === 1 ? (args[args.length - 1] as string) : undefined;
    const flags: number[] = [];
    for (let i = 2; i + 1 < args.length; i += 2) {
      const jobId = args[i] as string;
      const raw = args[i + 1] as string;
      const held = this.strings.has(jobKey(jobId)) || this.strings.has(resultKey(jobId));
      this.onEnqueue?.({ queue, jobId, raw, scoreMs, queued: !held });
      if (!held) {
        this.strings.set(jobKey(jobId), raw);
        if (trace !== undefined) this.strings.set(traceKey(jobId), trace);
        const members = this.queues.get(queue) ?? new Map<string, number>();
        members.set(jobId, scoreMs);
        this.queues.set(queue, members);
      }
      flags.push(held ? 0 : 1);
    }
    return flags;
  }

  multi(): QueuedCommands {
    const calls: Array<() => unknown> = [];
    const chain: QueuedCommands = {
      eval: (script, options) => {
        if (script !== ENQUEUE_SCRIPT) throw unsupported("this Lua script in a pipeline");
        calls.push(() => this.enqueue(options));
        return chain;
      },
      get: (key) => {
        calls.push(() => this.strings.get(key) ?? null);
        return chain;
      },
      exists: (keys) => {
        calls.push(() => keys.filter((key) => this.strings.has(key) || this.lists.has(key)).length);
        return chain;
      },
      exec: async () => calls.map((call) => call()),
      execAsPipeline: async () => calls.map((call) => call()),
    };
    return chain;
  }

  async blMove(source: string, destination: string, _from: "LEFT", _to: "LEFT", timeout: number): Promise<unknown> {
    const tokens = this.lists.get(source);
    const token = tokens?.shift();
    if (token !== undefined) {
      this.lists.set(destination, [token, ...(this.lists.get(destination) ?? [])]);
      return token;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(timeout * 1000, IDLE_BLOCK_MS)));
    return null;
  }
}
