"""docs/commands.schema.json is generated from the models, and says the same thing they do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from taskline_producer.contract import command_from_json, command_json_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "commands.schema.json"
REGENERATE = (
    'regenerate it: python -c "import json, pathlib; from taskline_producer.contract import command_json_schema; '
    "pathlib.Path('docs/commands.schema.json').write_text(json.dumps(command_json_schema(), indent=2, "
    "sort_keys=True) + '\\n')\""
)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validator_for(schema: dict[str, Any], definition: str | None = None) -> Draft202012Validator:
    """A validator (with format checks: uuid) for the whole schema or one of its $defs."""
    if definition is not None:
        schema = {"$schema": schema["$schema"], "$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def fields(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "command_id": str(uuid4()),
        "issued_at": "2026-11-25T09:30:00.123456+01:00",
        "task_id": str(uuid4()),
        "user_id": 12,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not _DROP}


_DROP = object()


def test_the_committed_schema_file_is_generated_from_the_models() -> None:
    """docs/commands.schema.json is exactly command_json_schema() as indented, key-sorted JSON."""
    expected = json.dumps(command_json_schema(), indent=2, sort_keys=True) + "\n"
    assert SCHEMA_PATH.read_text(encoding="utf-8") == expected, f"{SCHEMA_PATH} is stale; {REGENERATE}"


def test_the_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    """The published schema is itself valid JSON Schema 2020-12."""
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


SAMPLES: list[tuple[str, str, dict[str, Any], bool]] = [
    # (id, function, command, valid?)
    ("create-minimal", "create_task", fields(title="Buy milk"), True),
    ("create-description-null", "create_task", fields(title="t", description=None), True),
    ("create-description-empty", "create_task", fields(title="t", description=""), True),
    ("create-200-emoji", "create_task", fields(title="😀" * 200), True),
    ("create-max-user-id", "create_task", fields(title="t", user_id=2**31 - 1), True),
    ("create-uppercase-uuid", "create_task", fields(title="t", task_id=str(uuid4()).upper()), True),
    ("update-title-only", "update_task", fields(title="New title"), True),
    ("update-description-null-only", "update_task", fields(description=None), True),
    ("update-both", "update_task", fields(title="t", description="d"), True),
    ("complete", "complete_task", fields(), True),
    ("update-neither", "update_task", fields(), False),
    ("update-title-null", "update_task", fields(title=None), False),
    ("create-no-title", "create_task", fields(), False),
    ("create-empty-title", "create_task", fields(title=""), False),
    ("create-201-chars", "create_task", fields(title="😀" * 201), False),
    ("create-1001-description", "create_task", fields(title="t", description="d" * 1001), False),
    ("create-title-number", "create_task", fields(title=5), False),
    ("user-id-zero", "complete_task", fields(user_id=0), False),
    ("user-id-2-31", "complete_task", fields(user_id=2**31), False),
    ("user-id-string", "complete_task", fields(user_id="12"), False),
    ("user-id-boolean", "complete_task", fields(user_id=True), False),
    ("user-id-missing", "complete_task", fields(user_id=_DROP), False),
    ("unknown-field", "complete_task", fields(completed=True), False),
    ("unknown-field-on-create", "create_task", fields(title="t", tags=[]), False),
    ("uuid-without-hyphens", "complete_task", fields(command_id=uuid4().hex), False),
    ("issued-at-epoch-number", "complete_task", fields(issued_at=1764063000), False),
    ("issued-at-null", "complete_task", fields(issued_at=None), False),
]


@pytest.mark.parametrize(("function", "data", "valid"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES])
def test_schema_and_models_agree(schema: dict[str, Any], function: str, data: dict[str, Any], valid: bool) -> None:
    """Each sample command is accepted by both its $defs schema and its Pydantic model, or by neither."""
    schema_errors = [e.message for e in validator_for(schema, function).iter_errors(data)]
    try:
        command_from_json(function, json.dumps(data))
    except ValidationError as exc:
        model_error: str | None = str(exc)
    else:
        model_error = None
    assert (not schema_errors, model_error is None) == (valid, valid), (schema_errors, model_error)


@pytest.mark.parametrize(("function", "data"), [s[1:3] for s in SAMPLES if s[3]], ids=[s[0] for s in SAMPLES if s[3]])
def test_every_valid_command_matches_the_top_level_schema(
    schema: dict[str, Any], function: str, data: dict[str, Any]
) -> None:
    """A valid command of any function validates against the schema's root, not only its own $defs entry."""
    errors = [e.message for e in validator_for(schema).iter_errors(data)]
    assert errors == []


def test_the_top_level_schema_refuses_what_no_command_accepts(schema: dict[str, Any]) -> None:
    """The root schema refuses a command no function accepts (an unknown field; a null title)."""
    assert not validator_for(schema).is_valid(fields(unknown=1))
    assert not validator_for(schema).is_valid(fields(title=None))


def test_a_bulk_argument_validates_against_the_apply_commands_definition(schema: dict[str, Any]) -> None:
    """apply_commands takes a non-empty list of {"function", "command"} objects, each checked by its function."""
    bulk = validator_for(schema, "apply_commands")
    items = [
        {"function": "create_task", "command": fields(title="t")},
        {"function": "update_task", "command": fields(description=None)},
        {"function": "complete_task", "command": fields()},
    ]
    assert list(bulk.iter_errors(items)) == []
    assert not bulk.is_valid([])
    assert not bulk.is_valid([{"function": "complete_task", "command": fields(title="t")}])
    assert not bulk.is_valid([{"function": "create_task", "command": fields(title="t"), "extra": 1}])
    assert not bulk.is_valid([{"function": "os.system", "command": fields()}])
    assert not bulk.is_valid([{"function": "complete_task", "command": fields()}] * 1001)
