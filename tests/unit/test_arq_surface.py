"""taskline uses arq through its public surface only, and speaks arq's wire format."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import arq.constants
from taskline_producer import keys
from taskline_producer.wire import DEFAULT_JOB_TTL_MS

ROOT = Path(__file__).resolve().parents[2]
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}
"""namedtuple's documented methods carry an underscore so as not to clash with field names."""
SOURCES = [*ROOT.joinpath("worker").rglob("*.py"), *ROOT.joinpath("producers/python").rglob("*.py")]


def test_arq_wire_keys_are_the_ones_taskline_builds():
    """taskline_producer.keys names arq's keys exactly as arq 0.28 does (and the job TTL default)."""
    assert arq.constants.job_key_prefix == keys.JOB_KEY_PREFIX
    assert arq.constants.in_progress_key_prefix == keys.IN_PROGRESS_KEY_PREFIX
    assert arq.constants.retry_key_prefix == keys.RETRY_KEY_PREFIX
    assert arq.constants.result_key_prefix == keys.RESULT_KEY_PREFIX
    assert arq.constants.expires_extra_ms == DEFAULT_JOB_TTL_MS


def _private_uses(path: Path) -> list[str]:
    """Underscore names taken from anything but our own objects, and underscore names imported."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith(("worker", "taskline")):
            found += [f"from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if node.attr in NAMEDTUPLE_API:
                continue
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in {"self", "cls"}):
                found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


def test_no_module_reaches_into_another_packages_private_names():
    """No `x._name` on another object and no `from pkg import _name`, in the worker or the producer."""
    assert len(SOURCES) > 30
    offenders = {str(path.relative_to(ROOT)): uses for path in SOURCES if (uses := _private_uses(path))}
    assert offenders == {}


def test_no_source_names_an_arq_key_outside_the_keys_module():
    """Every 'arq:' and 'taskline:' key literal lives in taskline_producer/keys.py."""
    offenders = []
    for path in SOURCES:
        if path.name == "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and node.value.startswith(("arq:", "taskline:")) and " " not in node.value:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert offenders == []


def test_arqs_cli_refuses_to_start_a_stock_worker_and_names_the_command_to_run():
    """`arq worker.arq_seam.wiring.WorkerSettings` exits non-zero saying `taskline worker`: arq's CLI
    would build a stock arq Worker without taskline's guarantees."""
    arq_cli = Path(sys.executable).parent / "arq"
    result = subprocess.run(
        [str(arq_cli), "worker.arq_seam.wiring.WorkerSettings"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "taskline worker" in result.stderr
    assert "Traceback" not in result.stderr
