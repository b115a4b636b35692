/**
 * A stand-in for a node-redis client that records what the producer sends and answers from a
 * script: no network, no Redis. Only the commands the producer uses exist.
 */
import type { BlockingRedis, EvalArguments, ProducerRedis, QueuedCommands } from "../src/redis-client.js";

export interface Call {
  command: string;
  args: unknown[];
}

export class FakeRedis implements ProducerRedis {
  calls: Call[] = [];
  pipelines: Call[][] = [];
  scripts = new Set<string>();
  /** Answers an EVAL/EVALSHA: by default every job is queued (1). */
  onEnqueue: (options: EvalArguments) => unknown = (options) => jobsIn(options).map(() => 1);
  /** Key values GET and EXISTS read. */
  store = new Map<string, string>();
  /** Called by BLMOVE with its arguments; may change `store` (a worker finishing meanwhile). */
  onBlock: (timeout: number) => unknown = () => null;
  duplicates: FakeBlocking[] = [];

  async eval(script: string, options: EvalArguments): Promise<unknown> {
    this.calls.push({ command: "EVAL", args: [script, options] });
    this.scripts.add(script);
    return this.onEnqueue(options);
  }

  async evalSha(sha1: string, options: EvalArguments): Promise<unknown> {
    if (this.scripts.size === 0) {
      this.calls.push({ command: "EVALSHA (NOSCRIPT)", args: [sha1, options] });
      throw new Error("NOSCRIPT No matching script. Please use EVAL.");
    }
    this.calls.push({ command: "EVALSHA", args: [sha1, options] });
    return this.onEnqueue(options);
  }

  multi(): QueuedCommands {
    const queued: Array<() => Promise<unknown>> = [];
    const record: Call[] = [];
    const chain: QueuedCommands = {
      eval: (script, options) => {
        record.push({ command: "EVAL", args: [script, options] });
        queued.push(() => this.eval(script, options));
        return chain;
      },
      get: (key) => {
        record.push({ command: "GET", args: [key] });
        queued.push(async () => this.store.get(key) ?? null);
        return chain;
      },
      exists: (keys) => {
        record.push({ command: "EXISTS", args: keys });
        queued.push(async () => keys.filter((key) => this.store.has(key)).length);
        return chain;
      },
      exec: async () => {
        this.pipelines.push(record);
        return Promise.all(queued.map((run) => run()));
      },
      execAsPipeline: async () => {
        this.pipelines.push(record);
        return Promise.all(queued.map((run) => run()));
      },
    };
    return chain;
  }

  duplicate(): FakeBlocking {
    const copy = new FakeBlocking(this);
    this.duplicates.push(copy);
    return copy;
  }
}

export class FakeBlocking implements BlockingRedis {
  connected = false;
  closed = false;
  timeouts: number[] = [];

  constructor(private readonly parent: FakeRedis) {}

  async connect(): Promise<unknown> {
    this.connected = true;
    return this;
  }

  async close(): Promise<unknown> {
    this.closed = true;
    return undefined;
  }

  on(): unknown {
    return this;
  }

  async blMove(source: string, destination: string, from: "LEFT", to: "LEFT", timeout: number): Promise<unknown> {
    if (!this.connected || this.closed) throw new Error("BLMOVE on a connection that is not open");
    this.parent.calls.push({ command: "BLMOVE", args: [source, destination, from, to, timeout] });
    this.timeouts.push(timeout);
    return this.parent.onBlock(timeout);
  }
}

/** The (job id, job JSON) pairs of one enqueue call. */
export function jobsIn(options: EvalArguments): Array<{ id: string; job: Record<string, unknown> }> {
  const jobs = [];
  for (let i = 2; i + 1 < options.arguments.length; i += 2) {
    jobs.push({ id: options.arguments[i] as string, job: JSON.parse(options.arguments[i + 1] as string) });
  }
  return jobs;
}

/** The trace context an enqueue call writes beside its jobs (its last, odd argument), if any. */
export function traceIn(options: EvalArguments): string | undefined {
  const args = options.arguments;
  return args.length % 2 === 1 ? (args[args.length - 1] as string) : undefined;
}
