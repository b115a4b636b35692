"""The TypeScript producer and the Python one agree: the same enqueue script, key names, envelope
options and contract checks. The TypeScript side is read from its built package (node)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError
from taskline_producer import keys, wire
from taskline_producer.contract import command_from_json

from tests.node_producer import built_package, node_json

WIRE = """
import * as wire from "./dist/wire.js";
const keyFunctions = Object.fromEntries(
  ["jobKey", "inProgressKey", "resultKey", "wakeKey", "outcomeKey", "outcomeDoneKey"]
    .map((name) => [name, wire[name]("ID-1")]),
);
const constants = Object.fromEntries(Object.entries(wire).filter(([, v]) => typeof v !== "function"));
const kwargs = { none: wire.jobKwargs({}), sixty: wire.jobKwargs({ outcomeTtl: 60 }) };
console.log(JSON.stringify({ constants, keyFunctions, kwargs }));
"""


@pytest.fixture(scope="module")
def ts_wire() -> dict[str, Any]:
    """The TypeScript package's wire constants, key names and envelope options."""
    result: dict[str, Any] = node_json(WIRE)
    return result


def test_the_enqueue_script_is_the_python_one_character_for_character(ts_wire: dict[str, Any]) -> None:
    """src/enqueue-script.ts builds exactly taskline_producer.wire.ENQUEUE_SCRIPT."""
    assert ts_wire["constants"]["ENQUEUE_SCRIPT"] == wire.ENQUEUE_SCRIPT


def test_the_fair_enqueue_script_is_the_python_one_character_for_character(ts_wire: dict[str, Any]) -> None:
    """src/enqueue-script.ts builds exactly taskline_producer.wire.ENQUEUE_FAIR_SCRIPT."""
    assert ts_wire["constants"]["ENQUEUE_FAIR_SCRIPT"] == wire.ENQUEUE_FAIR_SCRIPT


@pytest.mark.parametrize(
    "name",
    [
        "DEFAULT_QUEUE",
        "JOB_KEY_PREFIX",
        "IN_PROGRESS_KEY_PREFIX",
        "RESULT_KEY_PREFIX",
        "WAKE_KEY_SUFFIX",
        "FAIR_LANE_INFIX",
        "FAIR_TURNS_SUFFIX",
        "FAIR_CLOCK_SUFFIX",
    ],
)
def test_each_key_constant_is_the_python_one(ts_wire: dict[str, Any], name: str) -> None:
    """src/keys.ts holds the same value as taskline_producer.keys under the same name."""
    assert ts_wire["constants"][name] == getattr(keys, name)


def test_key_names_are_built_the_same_way(ts_wire: dict[str, Any]) -> None:
    """The TypeScript key functions give the Python ones' names for the same id."""
    built = ts_wire["keyFunctions"]
    assert built["jobKey"] == keys.job_key("ID-1")
    assert built["inProgressKey"] == keys.in_progress_key("ID-1")
    assert built["resultKey"] == keys.result_key("ID-1")
    assert built["wakeKey"] == keys.wake_key("ID-1")


def test_every_key_constant_of_the_typescript_client_exists_in_python(ts_wire: dict[str, Any]) -> None:
    """The TypeScript client invents no key of its own: each *_KEY_* constant is a Python one."""
    names = [name for name in ts_wire["constants"] if "_KEY_" in name or name.endswith("_SUFFIX")]
    assert names
    missing = [name for name in names if not hasattr(keys, name)]
    assert missing == []
    assert {name: ts_wire["constants"][name] for name in names} == {name: getattr(keys, name) for name in names}


def test_outcome_keys_and_envelope_options_are_the_python_ones(ts_wire: dict[str, Any]) -> None:
    """Outcome keys, the contract version for outcomes and `k` are what the Python client uses."""
    assert ts_wire["keyFunctions"]["outcomeKey"] == keys.outcome_key("ID-1")
    assert ts_wire["keyFunctions"]["outcomeDoneKey"] == keys.outcome_done_key("ID-1")
    assert ts_wire["kwargs"]["none"] == wire.job_options(None) == {}
    assert ts_wire["kwargs"]["sixty"] == wire.job_options(60)


def test_only_whitespace_means_what_pythons_isspace_means(ts_wire: dict[str, Any]) -> None:
    """The TypeScript WHITESPACE set (blank titles) is exactly the characters str.isspace() accepts."""
    expected = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    assert ts_wire["constants"]["WHITESPACE"] == expected


# --- the contract checks: the same verdict for the same command ---------------------------------

CHECK = """
import { readFileSync } from "node:fs";
import { checkCommand } from "./dist/index.js";
const samples = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify(samples.map(([fn, command]) => {
  try { checkCommand(fn, command); return null; } catch (error) { return `${error.name}: ${error.message}`; }
})));
"""


def command(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "command_id": str(uuid4()),
        "issued_at": "2026-11-25T09:30:00.123456+01:00",
        "task_id": str(uuid4()),
        "user_id": 12,
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not DROP}


DROP = object()
PYTHON_WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]

# (id, function, command). user_id 1.0 is left out on purpose: JSON.parse reads it as 1, so the
# TypeScript client cannot tell it apart, and it never sends it (JSON.stringify(1) is "1").
SAMPLES: list[tuple[str, str, dict[str, Any]]] = [
    ("create-minimal", "create_task", command(title="Buy milk")),
    ("create-description-null", "create_task", command(title="t", description=None)),
    ("create-description-empty", "create_task", command(title="t", description="")),
    ("create-200-emoji", "create_task", command(title="😀" * 200)),
    ("create-201-emoji", "create_task", command(title="😀" * 201)),
    ("create-1000-description", "create_task", command(title="t", description="é" * 1000)),
    ("create-1001-description", "create_task", command(title="t", description="é" * 1001)),
    ("create-empty-title", "create_task", command(title="")),
    ("create-no-title", "create_task", command()),
    ("create-title-null", "create_task", command(title=None)),
    ("create-title-number", "create_task", command(title=5)),
    ("create-title-nul", "create_task", command(title="a\x00b")),
    ("create-title-padded", "create_task", command(title="  a  ")),
    ("create-title-zero-width-space", "create_task", command(title="\u200b")),
    ("create-title-bom", "create_task", command(title="\ufeff")),
    ("create-title-combining", "create_task", command(title="e\u0301" * 100)),
    *[(f"create-title-space-{ord(c):04x}", "create_task", command(title=c * 3)) for c in PYTHON_WHITESPACE],
    ("update-title-only", "update_task", command(title="New")),
    ("update-description-null-only", "update_task", command(description=None)),
    ("update-neither", "update_task", command()),
    ("update-title-null", "update_task", command(title=None)),
    ("update-title-blank", "update_task", command(title=" ")),
    ("complete", "complete_task", command()),
    ("complete-with-title", "complete_task", command(title="t")),
    ("unknown-member", "complete_task", command(completed=True)),
    ("user-id-max", "complete_task", command(user_id=2**31 - 1)),
    ("user-id-zero", "complete_task", command(user_id=0)),
    ("user-id-negative", "complete_task", command(user_id=-3)),
    ("user-id-2-31", "complete_task", command(user_id=2**31)),
    ("user-id-string", "complete_task", command(user_id="12")),
    ("user-id-boolean", "complete_task", command(user_id=True)),
    ("user-id-float", "complete_task", command(user_id=1.5)),
    ("user-id-missing", "complete_task", command(user_id=DROP)),
    ("uuid-upper-case", "complete_task", command(task_id=str(uuid4()).upper())),
    ("uuid-without-hyphens", "complete_task", command(command_id=uuid4().hex)),
    ("uuid-braces", "complete_task", command(task_id="{" + str(uuid4()) + "}")),
    ("uuid-urn", "complete_task", command(task_id="urn:uuid:" + str(uuid4()))),
    ("uuid-number", "complete_task", command(task_id=7)),
    *[
        (f"issued-at {text}", "complete_task", command(issued_at=text))
        for text in [
            "2026-11-25T09:30:00Z",
            "2026-11-25T09:30:00z",
            "2026-11-25t09:30:00Z",
            "2026-11-25T09:30:00.123456Z",
            "2026-11-25T09:30:00.1234567Z",
            "2026-11-25T09:30:00.Z",
            "2026-11-25T09:30:00",
            "2026-11-25 09:30:00Z",
            "2026-11-25T09:30Z",
            "2026-11-25T09:30:00+01:00",
            "2026-11-25T09:30:00-00:00",
            "2026-11-25T09:30:00+0100",
            "2026-11-25T09:30:00+23:59",
            "2026-11-25T09:30:00+24:00",
            "2026-11-25T09:30:00+05:60",
            "2026-02-29T09:30:00Z",
            "2028-02-29T09:30:00Z",
            "2100-02-29T09:30:00Z",
            "2000-02-29T09:30:00Z",
            "2026-04-31T09:30:00Z",
            "2026-13-01T09:30:00Z",
            "2026-00-10T09:30:00Z",
            "2026-11-00T09:30:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T23:60:00Z",
            "2026-11-25T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-11-25",
            "",
        ]
    ],
    ("issued-at-number", "complete_task", command(issued_at=1764063000)),
    ("issued-at-null", "complete_task", command(issued_at=None)),
]


def python_verdict(function: str, data: dict[str, Any]) -> str | None:
    try:
        command_from_json(function, json.dumps(data))
    except ValidationError as exc:
        return str(exc)
    return None


def test_both_clients_accept_and_refuse_the_same_commands() -> None:
    """Every sample is accepted by both the TypeScript checks and the Python models, or by neither."""
    verdicts = node_json(CHECK, stdin=json.dumps([[fn, data] for _, fn, data in SAMPLES]))
    disagreements = {
        name: {"typescript": ts, "python": python_verdict(fn, data)}
        for (name, fn, data), ts in zip(SAMPLES, verdicts, strict=True)
        if (ts is None) != (python_verdict(fn, data) is None)
    }
    assert disagreements == {}
    refused = sum(verdict is not None for verdict in verdicts)
    assert 0 < refused < len(SAMPLES)  # both kinds are really exercised


def test_the_typescript_types_are_generated_from_the_current_schema() -> None:
    """src/commands.generated.ts is what docs/commands.schema.json generates (else: npm run gen)."""
    package = built_package()
    result = subprocess.run(
        ["node", "scripts/generate-types.mjs", "--check"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
