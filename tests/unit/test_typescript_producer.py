"""The TypeScript producer and the Python one agree: the same enqueue script, key names, envelope
options and contract checks. The TypeScript side is read from its built package (node)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from taskline_producer import keys, wire
from taskline_producer.contract import command_from_json

from tests.contract_cases import CASES
from tests.node_producer import built_package, node_json

WIRE = """
import * as wire from "./dist/wire.js";
const keyFunctions = Object.fromEntries(
  ["jobKey", "inProgressKey", "resultKey", "wakeKey", "outcomeKey", "outcomeDoneKey", "traceKey"]
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
    assert built["traceKey"] == keys.trace_key("ID-1")


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


def python_verdict(function: str, data: dict[str, Any]) -> str | None:
    try:
        command_from_json(function, json.dumps(data))
    except ValidationError as exc:
        return str(exc)
    return None


def test_both_clients_accept_and_refuse_the_same_commands() -> None:
    """Every shared contract case (tests/contract_cases.json) gets its verdict from both the
    TypeScript checks and the Python models: accepted when valid, refused otherwise."""
    verdicts = node_json(CHECK, stdin=json.dumps([[case.function, case.command] for case in CASES]))
    wrong = {
        case.name: {"expected": case.valid, "typescript": ts, "python": python_verdict(case.function, case.command)}
        for case, ts in zip(CASES, verdicts, strict=True)
        if (ts is None) != case.valid or (python_verdict(case.function, case.command) is None) != case.valid
    }
    assert wrong == {}
    refused = sum(verdict is not None for verdict in verdicts)
    assert 0 < refused < len(CASES)  # both kinds are really exercised


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


def test_the_readme_example_of_the_recording_producer_passes_under_node_test() -> None:
    """The TypeScript README's example test of a service, saved as a file in the package and run by
    `node --test`, passes: `@taskline/producer/testing` resolves and its assertions hold."""
    package = built_package()
    readme = (package / "README.md").read_text()
    section = readme[readme.index("## Testing a service that sends commands") :]
    start = section.index("```js\n") + len("```js\n")
    example = section[start : section.index("```\n", start)]
    with tempfile.TemporaryDirectory(dir=package) as scratch:
        test_file = Path(scratch) / "signup.test.mjs"
        test_file.write_text(example)
        done = subprocess.run(
            ["node", "--test", str(test_file)], cwd=package, capture_output=True, text=True, timeout=120, check=False
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# pass 1" in done.stdout
