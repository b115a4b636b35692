/**
 * The part of a node-redis client (`redis` 5 or 6: `createClient()`, or a `createClientPool()`)
 * this library uses. Typed structurally, so the caller's client is taken as it is, whatever
 * modules, scripts or RESP version it was created with.
 */

export interface EvalArguments {
  keys: string[];
  arguments: string[];
}

/** `client.multi()`: queued commands, sent together by `exec()` (MULTI) or `execAsPipeline()`. */
export interface QueuedCommands {
  eval(script: string, options: EvalArguments): QueuedCommands;
  get(key: string): QueuedCommands;
  exists(keys: string[]): QueuedCommands;
  exec(): Promise<unknown[]>;
  execAsPipeline(): Promise<unknown[]>;
}

/** The commands a producer sends on the caller's client. */
export interface ProducerRedis {
  eval(script: string, options: EvalArguments): Promise<unknown>;
  evalSha(sha1: string, options: EvalArguments): Promise<unknown>;
  multi(): QueuedCommands;
}

/** A connection `receipt.outcome()` may block on (BLMOVE) while it waits. */
export interface BlockingRedis {
  blMove(source: string, destination: string, sourceSide: "LEFT", destinationSide: "LEFT", timeout: number): Promise<unknown>;
}

/** A client the producer can copy to get a connection of its own to block on. */
export interface DuplicableRedis {
  duplicate(): BlockingRedis & {
    connect(): Promise<unknown>;
    close(): Promise<unknown>;
    on(event: "error", listener: (error: Error) => void): unknown;
  };
}
