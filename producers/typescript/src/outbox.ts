/**
 * The transactional outbox (docs/outbox.md), over a PostgreSQL client the caller passes in: a `pg`
 * `Client` or `PoolClient` inside the caller's own `BEGIN`/`COMMIT`, so the commands are published
 * by `taskline relay` only if that transaction commits. Nothing here imports `pg`: any client with
 * `query(text, values)` will do.
 */
import { checkItem, type Command } from "./contract.js";

/** What `addToOutbox` needs of a PostgreSQL client (`pg`'s `Client` and `PoolClient` have it). */
export interface OutboxClient {
  query(text: string, values?: unknown[]): Promise<unknown>;
}

/** The one statement `addToOutbox` runs: every command of the call in one round trip. */
export const OUTBOX_INSERT =
  "INSERT INTO taskline_outbox (function, command) SELECT f, c::jsonb FROM unnest($1::text[], $2::text[]) AS u(f, c)";

/**
 * Add one command or many (from `createTaskCommand` etc., or `{function, command}` items, checked
 * against the contract first) to the outbox, in the transaction `client` is in. Returns how many.
 * Throws `InvalidCommandError` before writing anything when one of them breaks the contract.
 */
export async function addToOutbox(client: OutboxClient, commands: Command | readonly Command[]): Promise<number> {
  const items: readonly Command[] = Array.isArray(commands) ? commands : [commands as Command];
  if (items.length === 0) return 0;
  const checked = items.map((item) => checkItem(item));
  await client.query(OUTBOX_INSERT, [checked.map((c) => c.function), checked.map((c) => JSON.stringify(c.command))]);
  return checked.length;
}
