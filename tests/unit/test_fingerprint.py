"""A command's fingerprint: equal for every delivery of one command, different for another command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from taskline_producer.contract import CompleteTask, CreateTask, UpdateTask

from worker.pipeline.fingerprint import command_fingerprint


def test_the_same_command_has_one_fingerprint_however_it_was_sent() -> None:
    """Parsed from JSON or built in Python, with an unset optional field or its default sent, and
    stamped anew (issued_at): one fingerprint."""
    ids = {"command_id": uuid4(), "task_id": uuid4(), "user_id": 7}
    built = CreateTask(issued_at=datetime.now(UTC), title="t", **ids)
    parsed = CreateTask.model_validate_json(
        built.model_copy(update={"description": None}).model_dump_json(exclude_unset=False)
    )
    restamped = built.model_copy(update={"issued_at": built.issued_at + timedelta(seconds=5)})
    assert command_fingerprint(built) == command_fingerprint(parsed) == command_fingerprint(restamped)
    assert len(command_fingerprint(built)) == 32


def test_another_function_or_other_fields_make_another_fingerprint() -> None:
    """Another function under the same ids, another title, and an update that clears the
    description versus one that leaves it alone: all different."""
    ids = {"command_id": uuid4(), "task_id": uuid4(), "user_id": 7, "issued_at": datetime.now(UTC)}
    create = CreateTask(title="t", **ids)
    prints = {
        command_fingerprint(create),
        command_fingerprint(CreateTask(title="other", **ids)),
        command_fingerprint(CompleteTask(**ids)),
        command_fingerprint(UpdateTask(title="t", **ids)),
        command_fingerprint(UpdateTask(title="t", description=None, **ids)),
    }
    assert len(prints) == 5
