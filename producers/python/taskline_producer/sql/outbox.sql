-- taskline's transactional outbox: commands a service adds in its own transaction, published to
-- Redis by `taskline relay` only once that transaction has committed.
--
-- A service adds a command with one plain INSERT, in the same transaction as its own writes:
--
--   INSERT INTO taskline_outbox (function, command)
--   VALUES ('create_task', '{"command_id": "…", "issued_at": "…", "task_id": "…", "user_id": 7, "title": "…"}');
--
-- `function` is create_task, update_task or complete_task; `command` is the command's JSON, as
-- docs/contract.md and docs/commands.schema.json describe it. Every other column belongs to the
-- relay. Re-running this file is harmless (IF NOT EXISTS throughout).

CREATE TABLE IF NOT EXISTS taskline_outbox (
    id             bigserial   PRIMARY KEY,
    function       text        NOT NULL,
    command        jsonb       NOT NULL,
    command_id     text        GENERATED ALWAYS AS (command ->> 'command_id') STORED,
    added_at       timestamptz NOT NULL DEFAULT now(),
    -- the relay's bookkeeping
    published_at   timestamptz,            -- the last time the relay published it
    publications   integer     NOT NULL DEFAULT 0,
    next_check_at  timestamptz,            -- when the relay next asks Redis for its outcome
    confirmed_at   timestamptz,            -- when its final outcome was seen
    outcome        text,                   -- applied, duplicate or dead_letter
    invalid_reason text                    -- why the relay refused it (the contract's words); kept, never published
);

-- What the relay reads: rows to publish, rows to confirm, confirmed rows to prune.
CREATE INDEX IF NOT EXISTS ix_taskline_outbox_unpublished
    ON taskline_outbox (id) WHERE published_at IS NULL AND invalid_reason IS NULL;
CREATE INDEX IF NOT EXISTS ix_taskline_outbox_unconfirmed
    ON taskline_outbox (next_check_at) WHERE published_at IS NOT NULL AND confirmed_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_taskline_outbox_confirmed
    ON taskline_outbox (confirmed_at) WHERE confirmed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_taskline_outbox_invalid
    ON taskline_outbox (id) WHERE invalid_reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_taskline_outbox_command_id
    ON taskline_outbox (command_id);
