"""The SQL that applies commands: one multi-row statement per step, whatever the batch size.

Each statement takes parallel arrays (one element per command or per task) and is prepared
once per connection. Locks are taken in key order and in the same phases by every batch
(commands, then new tasks, then the existing tasks a batch changes, all locked before any is
updated), so concurrent batches wait for each other but never deadlock.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import TextClause, text

__all__ = [
    "CLASSIFY_TASKS",
    "FORGET_COMMANDS",
    "INSERT_TASKS",
    "LOCK_TASKS",
    "RECORD_AND_INSERT_TASKS",
    "RECORD_COMMANDS",
    "UPDATE_TASKS",
]

# Each row records the worker and the transaction (now() is the transaction's start, so
# processed_at and transaction_id together name it). A command already recorded is a duplicate:
# its row counts one more duplicate (this touches only duplicates, which are rare) and is
# returned with duplicates > 0, so only fresh rows (duplicates = 0) count as newly recorded.
_RECORD_SQL: Final = """
    INSERT INTO processed_command (
        command_id, function, task_id, issued_at, processed_at, worker_id, transaction_id
    )
    SELECT c.command_id, c.function, c.task_id, c.issued_at, now(),
           CAST(:worker_id AS text), pg_current_xact_id()::text::bigint
    FROM unnest(
        CAST(:command_ids AS uuid[]), CAST(:functions AS text[]),
        CAST(:task_ids AS uuid[]), CAST(:issued_ats AS timestamptz[])
    ) AS c(command_id, function, task_id, issued_at)
    ORDER BY c.command_id
    ON CONFLICT (command_id) DO UPDATE SET duplicates = processed_command.duplicates + 1
    RETURNING command_id, duplicates
"""


def _insert_tasks_sql(prefix: str = "", only_if: str = "") -> str:
    return f"""
    INSERT INTO task (
        id, user_id, title, description, completed, created_at, updated_at,
        title_issued_at, title_command_id, description_issued_at, description_command_id
    )
    SELECT c.id, c.user_id, c.title, c.description, false, now(), now(),
           c.issued_at, c.command_id, c.issued_at, c.command_id
    FROM unnest(
        CAST(:{prefix}task_ids AS uuid[]), CAST(:{prefix}user_ids AS integer[]),
        CAST(:{prefix}titles AS text[]), CAST(:{prefix}descriptions AS text[]),
        CAST(:{prefix}issued_ats AS timestamptz[]), CAST(:{prefix}command_ids AS uuid[])
    ) AS c(id, user_id, title, description, issued_at, command_id)
    WHERE EXISTS (SELECT 1 FROM "user" AS u WHERE u.id = c.user_id){only_if}
    ORDER BY c.id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""


RECORD_COMMANDS: Final[TextClause] = text(
    f"WITH recorded AS ({_RECORD_SQL}) SELECT r.command_id FROM recorded AS r WHERE r.duplicates = 0"
)
"""Claim the commands as processed; the ids returned are the ones not processed before."""

FORGET_COMMANDS: Final[TextClause] = text(
    "DELETE FROM processed_command WHERE command_id = ANY(CAST(:command_ids AS uuid[]))"
)
"""Undo the claim of commands that were refused or must wait (same transaction)."""

INSERT_TASKS: Final[TextClause] = text(_insert_tasks_sql())
"""Create tasks whose user exists; an id already taken is skipped (the caller classifies it)."""

RECORD_AND_INSERT_TASKS: Final[TextClause] = text(
    f"""
    WITH recorded AS ({_RECORD_SQL}),
    fresh AS (SELECT r.command_id FROM recorded AS r WHERE r.duplicates = 0),
    created AS ({_insert_tasks_sql("create_", " AND c.command_id IN (SELECT f.command_id FROM fresh AS f)")})
    SELECT f.command_id, NULL::uuid AS task_id FROM fresh AS f
    UNION ALL
    SELECT NULL::uuid, t.id FROM created AS t
    """
)
"""RECORD_COMMANDS and INSERT_TASKS in one round trip, for a batch with creates (at most one per
task id): records every command, and creates the tasks of the creates that were not processed
before (`create_`-prefixed arrays). Returns (command_id, NULL) per newly recorded command and
(NULL, task_id) per task created. Locks are taken in the same order as the two statements
would take them: commands, then tasks."""

# A field changes when the command's (issued_at, command_id) stamp is newer than the one that
# set it last; a completion counts when it is earlier than the recorded one. Rows where nothing
# is newer are not touched at all, updated_at included.
_TITLE_NEWER = "(v.set_title AND (v.title_at, v.title_command) > (t.title_issued_at, t.title_command_id))"
_DESCRIPTION_NEWER = (
    "(v.set_description AND (v.description_at, v.description_command)"
    " > (t.description_issued_at, t.description_command_id))"
)
_COMPLETION_EARLIER = "(v.completed_at IS NOT NULL AND (t.completed_at IS NULL OR v.completed_at < t.completed_at))"

UPDATE_TASKS: Final[TextClause] = text(
    f"""
    UPDATE task AS t SET
        title = CASE WHEN {_TITLE_NEWER} THEN v.title ELSE t.title END,
        title_issued_at = CASE WHEN {_TITLE_NEWER} THEN v.title_at ELSE t.title_issued_at END,
        title_command_id = CASE WHEN {_TITLE_NEWER} THEN v.title_command ELSE t.title_command_id END,
        description = CASE WHEN {_DESCRIPTION_NEWER} THEN v.description ELSE t.description END,
        description_issued_at = CASE WHEN {_DESCRIPTION_NEWER}
            THEN v.description_at ELSE t.description_issued_at END,
        description_command_id = CASE WHEN {_DESCRIPTION_NEWER}
            THEN v.description_command ELSE t.description_command_id END,
        completed = t.completed OR v.completed_at IS NOT NULL,
        completed_at = CASE WHEN {_COMPLETION_EARLIER} THEN v.completed_at ELSE t.completed_at END,
        updated_at = CASE
            WHEN ({_TITLE_NEWER} AND v.title IS DISTINCT FROM t.title)
              OR ({_DESCRIPTION_NEWER} AND v.description IS DISTINCT FROM t.description)
              OR {_COMPLETION_EARLIER}
            THEN now() ELSE t.updated_at END
    FROM (
        SELECT * FROM unnest(
            CAST(:task_ids AS uuid[]), CAST(:user_ids AS integer[]),
            CAST(:set_titles AS boolean[]), CAST(:titles AS text[]),
            CAST(:title_ats AS timestamptz[]), CAST(:title_commands AS uuid[]),
            CAST(:set_descriptions AS boolean[]), CAST(:descriptions AS text[]),
            CAST(:description_ats AS timestamptz[]), CAST(:description_commands AS uuid[]),
            CAST(:completed_ats AS timestamptz[])
        ) AS u(task_id, user_id, set_title, title, title_at, title_command,
               set_description, description, description_at, description_command, completed_at)
        ORDER BY u.task_id
    ) AS v
    WHERE t.id = v.task_id AND t.user_id = v.user_id
      AND ({_TITLE_NEWER} OR {_DESCRIPTION_NEWER} OR {_COMPLETION_EARLIER})
    """
)
"""Apply merged updates/completions, one row per task, to rows LOCK_TASKS has locked."""

CLASSIFY_TASKS: Final[TextClause] = text("SELECT id, user_id FROM task WHERE id = ANY(CAST(:task_ids AS uuid[]))")
"""Who owns the tasks a statement did not touch (absent: not created yet)."""

LOCK_TASKS: Final[TextClause] = text(
    "SELECT id, user_id FROM task WHERE id = ANY(CAST(:task_ids AS uuid[])) ORDER BY id FOR UPDATE"
)
"""Lock the tasks a batch changes, in id order, and read their owners at the latest committed
version. A task whose create has not committed yet is not found: its changes must wait."""
