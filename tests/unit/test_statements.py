"""The SQL built from the table models: each statement renders with the shape the pipeline, the
purge and the tools rely on, and no SQL text left in the worker names a table or a column."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from taskline_producer.contract import CompleteTask, CreateTask

from worker.pipeline import statements
from worker.purge.plan import DEAD_LETTERS, PROCESSED_COMMANDS, TASKS
from worker.store.compiled import compiled_text
from worker.store.dead_letter_queries import DEAD_LETTER_GROUPS_SINCE, RECENT_GROUPS
from worker.store.models import Task, metadata, table_of

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "worker" / "store" / "models.py"


def flat(clause: sa.TextClause) -> str:
    """The statement's text on one line, runs of white space made one space."""
    return re.sub(r"\s+", " ", clause.text).replace("( ", "(").replace(" )", ")").strip()


def binds(clause: sa.TextClause) -> set[str]:
    return set(clause.compile().params)


def test_record_commands_claims_commands_in_id_order_and_counts_redeliveries() -> None:
    """RECORD_COMMANDS inserts one processed_command row per element of the parallel arrays, in
    command id order, stamped with now(), the worker, the transaction, the command's fingerprint
    and the key that signed it; a command already there with the same fingerprint (or none)
    counts one more duplicate, one with another fingerprint is left alone (and not returned);
    every row recorded comes back with its duplicates."""
    sql = flat(statements.RECORD_COMMANDS)
    assert sql == (
        "INSERT INTO processed_command (command_id, function, task_id, issued_at, processed_at, worker_id,"
        " transaction_id, fingerprint, signed_by) SELECT c.command_id, c.function, c.task_id, c.issued_at,"
        " now() AS now_1,"
        " CAST(:worker_id AS TEXT) AS anon_1, CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT) AS"
        " pg_current_xact_id_1, c.fingerprint, c.signed_by"
        " FROM unnest(CAST(:command_ids AS UUID[]), CAST(:functions AS TEXT[]), CAST(:task_ids AS UUID[]),"
        " CAST(:issued_ats AS TIMESTAMP WITH TIME ZONE[]), CAST(:fingerprints AS BYTEA[]),"
        " CAST(:signed_bys AS TEXT[]))"
        " AS c(command_id, function, task_id, issued_at, fingerprint, signed_by)"
        " ORDER BY c.command_id"
        " ON CONFLICT (command_id) DO UPDATE SET duplicates = (processed_command.duplicates + 1)"
        " WHERE processed_command.fingerprint IS NULL OR processed_command.fingerprint = excluded.fingerprint"
        " RETURNING processed_command.command_id, processed_command.duplicates"
    ), sql


def test_insert_tasks_creates_in_id_order_only_for_existing_users_and_skips_taken_ids() -> None:
    """INSERT_TASKS stamps both fields with the create's (issued_at, command_id), needs the user,
    takes row locks in task id order, and returns only the ids it created."""
    sql = flat(statements.INSERT_TASKS)
    assert sql.startswith(
        "INSERT INTO task (id, user_id, title, description, completed, created_at, updated_at, title_issued_at,"
        " title_command_id, description_issued_at, description_command_id) SELECT c.id, c.user_id, c.title,"
        " c.description, false AS anon_1, now() AS now_1, now() AS now_2, c.issued_at, c.command_id,"
        " c.issued_at AS issued_at__1, c.command_id AS command_id__1"
    ), sql
    assert (
        "FROM unnest(CAST(:task_ids AS UUID[]), CAST(:user_ids AS INTEGER[]), CAST(:titles AS TEXT[]),"
        " CAST(:descriptions AS TEXT[]), CAST(:issued_ats AS TIMESTAMP WITH TIME ZONE[]), CAST(:command_ids AS"
        " UUID[])) AS c(id, user_id, title, description, issued_at, command_id)"
        ' WHERE EXISTS (SELECT * FROM "user" WHERE "user".id = c.user_id) ORDER BY c.id'
        " ON CONFLICT (id) DO NOTHING RETURNING task.id"
    ) in sql


def test_record_and_insert_tasks_records_first_then_creates_only_fresh_creates() -> None:
    """RECORD_AND_INSERT_TASKS is RECORD_COMMANDS then INSERT_TASKS (`create_` arrays) in one
    statement: the commands are recorded (and locked) before the tasks, a create runs only when its
    command is fresh, and the result is (command_id, duplicates, NULL) per command recorded,
    (NULL, NULL, id) per task."""
    sql = flat(statements.RECORD_AND_INSERT_TASKS)
    recorded, fresh, created = (sql.index(f"{name} AS (") for name in ("recorded", "fresh", "created"))
    assert sql.startswith("WITH recorded AS (INSERT INTO processed_command ")
    assert recorded < fresh < created
    assert "fresh AS (SELECT recorded.command_id AS command_id FROM recorded WHERE recorded.duplicates = 0)" in sql
    assert "created AS (INSERT INTO task " in sql
    assert "AND c.command_id IN (SELECT fresh.command_id FROM fresh) ORDER BY c.id ON CONFLICT (id) DO NOTHING" in sql
    assert sql.endswith(
        "SELECT recorded.command_id, recorded.duplicates, CAST(NULL AS UUID) AS task_id FROM recorded"
        " UNION ALL SELECT CAST(NULL AS UUID) AS anon_2, CAST(NULL AS INTEGER) AS duplicates, created.id FROM created"
    )


def test_update_tasks_applies_last_writer_wins_to_rows_that_change() -> None:
    """UPDATE_TASKS reads the merged changes in task id order, matches task and owner, changes a
    field only when the command's (issued_at, command_id) is newer than the field's stamp, keeps
    the earliest completion, moves updated_at only when a value changed, and leaves alone the rows
    where nothing is newer."""
    sql = flat(statements.UPDATE_TASKS)
    title_newer = "(v.set_title AND (v.title_at, v.title_command) > (task.title_issued_at, task.title_command_id))"
    description_newer = (
        "(v.set_description AND (v.description_at, v.description_command)"
        " > (task.description_issued_at, task.description_command_id))"
    )
    earlier = "(v.completed_at IS NOT NULL AND (task.completed_at IS NULL OR task.completed_at > v.completed_at))"
    assert sql.startswith("UPDATE task SET ")
    assert f"title=CASE WHEN {title_newer} THEN v.title ELSE task.title END" in sql
    assert f"title_issued_at=CASE WHEN {title_newer} THEN v.title_at ELSE task.title_issued_at END" in sql
    assert f"title_command_id=CASE WHEN {title_newer} THEN v.title_command ELSE task.title_command_id END" in sql
    assert f"description=CASE WHEN {description_newer} THEN v.description ELSE task.description END" in sql
    assert "completed=(task.completed OR v.completed_at IS NOT NULL)" in sql
    assert f"completed_at=CASE WHEN {earlier} THEN v.completed_at ELSE task.completed_at END" in sql
    assert "v.title IS DISTINCT FROM task.title" in sql
    assert "v.description IS DISTINCT FROM task.description" in sql
    assert "THEN now() ELSE task.updated_at END" in sql
    assert "ORDER BY u.task_id) AS v WHERE task.id = v.task_id AND task.user_id = v.user_id" in sql
    assert sql.endswith(f"AND ({title_newer} OR {description_newer} OR {earlier})")


def test_lock_classify_and_forget_work_on_arrays_of_ids() -> None:
    """LOCK_TASKS locks the tasks in id order; CLASSIFY_TASKS only reads them; FORGET_COMMANDS
    deletes the claims of the commands given."""
    by_ids = "SELECT task.id, task.user_id FROM task WHERE task.id = ANY (CAST(:task_ids AS UUID[]))"
    assert flat(statements.LOCK_TASKS) == f"{by_ids} ORDER BY task.id FOR UPDATE"
    assert flat(statements.CLASSIFY_TASKS) == by_ids
    assert flat(statements.FORGET_COMMANDS) == (
        "DELETE FROM processed_command WHERE processed_command.command_id = ANY (CAST(:command_ids AS UUID[]))"
    )


def test_the_statements_take_exactly_the_arrays_the_builders_give() -> None:
    """record_arrays and task_arrays (which the worker and the benchmark's floor both use) give
    every parameter of the statements they feed, and nothing else."""
    now = datetime.now(UTC)
    commands = [CreateTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=1, title="t")]
    recorded = statements.record_arrays(commands, "w")
    created = statements.task_arrays(commands)
    assert set(recorded) == binds(statements.RECORD_COMMANDS)
    assert set(created) == binds(statements.INSERT_TASKS)
    both = {**recorded, **statements.task_arrays(commands, prefix="create_")}
    assert set(both) == binds(statements.RECORD_AND_INSERT_TASKS)
    assert binds(statements.UPDATE_TASKS) == {
        "task_ids",
        "user_ids",
        "set_titles",
        "titles",
        "title_ats",
        "title_commands",
        "set_descriptions",
        "descriptions",
        "description_ats",
        "description_commands",
        "completed_ats",
    }
    complete = CompleteTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=1)
    assert statements.record_arrays([complete], None)["functions"] == ["complete_task"]


def test_compiled_text_refuses_parameters_nobody_would_pass() -> None:
    """A constant bound when the statement is built, or a typed parameter (`:x::UUID`, which text()
    does not read as a parameter), is refused when the statement is rendered, with what to do."""
    task = table_of(Task)
    with pytest.raises(ValueError, match="binds values when it is built"):
        compiled_text(sa.select(task.c.id).where(task.c.user_id == 1))
    with pytest.raises(ValueError, match="untyped inside a cast"):
        compiled_text(sa.select(task.c.id).where(task.c.id == sa.bindparam("id")))
    fine = compiled_text(sa.select(task.c.id).where(task.c.id == sa.cast(sa.bindparam("id"), task.c.id.type)))
    assert binds(fine) == {"id"}


@pytest.mark.parametrize(
    ("target", "where"),
    [
        (TASKS, "task.completed AND task.completed_at < :cutoff ORDER BY task.completed_at"),
        (PROCESSED_COMMANDS, "processed_command.processed_at < :cutoff ORDER BY processed_command.processed_at"),
        (DEAD_LETTERS, "dead_letter.failed_at < :cutoff ORDER BY dead_letter.failed_at"),
    ],
)
def test_a_purge_batch_deletes_locked_rows_by_address(target, where: str) -> None:
    """A purge batch deletes, by ctid, the oldest due rows it could lock without waiting (SKIP
    LOCKED), at most :batch of them; the count is of the same rows."""
    table = target.table
    assert flat(target.delete_sql) == (
        f"DELETE FROM {table} WHERE ctid = ANY (array((SELECT ctid FROM {table} WHERE {where}"
        " LIMIT :batch FOR UPDATE SKIP LOCKED)))"
    )
    assert flat(target.count_sql) == f"SELECT count(*) AS count_1 FROM {table} WHERE {where.split(' ORDER BY')[0]}"


def test_the_status_groups_recent_dead_letters_by_function_and_kind() -> None:
    """The status's groups: the last DEAD_LETTER_GROUPS_SINCE of dead letters (a range of the
    failed_at index), by function ('?' when unknown) and category, largest first, with the newest
    reason of each group."""
    sql = re.sub(r"\s+", " ", str(RECENT_GROUPS.compile(dialect=pg_asyncpg.dialect())))
    assert "SELECT coalesce(dead_letter.function, '?') AS function, dead_letter.category, count(*) AS count" in sql
    assert "(array_agg(dead_letter.reason ORDER BY dead_letter.failed_at DESC))[" in sql
    assert f"WHERE dead_letter.failed_at > now() - interval '{DEAD_LETTER_GROUPS_SINCE}'" in sql
    assert "GROUP BY coalesce(dead_letter.function, '?'), dead_letter.category" in sql
    assert "ORDER BY count DESC, function, dead_letter.category" in sql


# -- no SQL text names the schema --------------------------------------------------------------

_TEXT_CALLS = {"text", "literal_column"}


def _sql_texts(path: Path) -> list[tuple[int, str]]:
    """The SQL given as text in a module: the string arguments of text() and literal_column(), with
    the f-string placeholders (built from code, such as a model's table name) blanked out."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name not in _TEXT_CALLS:
            continue
        argument = node.args[0]
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            found.append((node.lineno, argument.value))
        elif isinstance(argument, ast.JoinedStr):
            parts = [p.value if isinstance(p, ast.Constant) else "\0" for p in argument.values]
            found.append((node.lineno, "".join(str(p) for p in parts)))
    return found


def _identifiers(sql: str) -> set[str]:
    """The words of a SQL text outside its quoted literals and its :parameters."""
    bare = re.sub(r"'[^']*'", " ", sql)
    bare = re.sub(r"(?<!:):\w+", " ", bare)
    return {word.strip('"').lower() for word in re.findall(r'"[^"]+"|[A-Za-z_]\w*', bare)}


def test_no_sql_text_in_the_worker_names_a_table_or_a_column() -> None:
    """Every statement that names a table or a column of worker/store/models.py is built from the
    models: what is left as text (catalog queries, session settings, literals) names none of them,
    so a renamed column fails where a statement is built, never in a query only one test runs."""
    schema = {table.name for table in metadata.tables.values()}
    schema |= {column.name for table in metadata.tables.values() for column in table.columns}
    modules = [path for path in sorted((ROOT / "worker").rglob("*.py")) if path != MODELS]  # the models may
    texts = [(path, line, sql) for path in modules for line, sql in _sql_texts(path)]
    assert texts, "found no text() at all: the scan is broken"
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {sorted(_identifiers(sql) & schema)} in {sql!r}"
        for path, line, sql in texts
        if _identifiers(sql) & schema
    ]
    assert not offenders, (
        "SQL text names the models' tables or columns; build it from worker.store.models (see"
        " worker/store/compiled.py for a hot statement):\n" + "\n".join(offenders)
    )


def test_the_identifier_scan_sees_table_and_column_names() -> None:
    """The scan above finds a table and a column in plain text, and not in literals or placeholders."""
    assert {"task", "title"} <= _identifiers('SELECT title FROM "task" WHERE x = :id')
    assert "task" not in _identifiers("SELECT reltuples FROM pg_class WHERE oid = '\0'::regclass")
    assert "id" not in _identifiers("SELECT 1 WHERE a = :id")
