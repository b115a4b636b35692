"""`taskline`'s entry point: the long-running processes start without the CLI's imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import atexit, sys
sys.argv = ["taskline", *sys.argv[1:]]
CLI = ("typer", "click", "rich", "worker.cli")
atexit.register(lambda: print("loaded:", sorted(m for m in CLI if sys.modules.get(m))))
from worker.entry import main
main()
"""


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TASKLINE_", "DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **env},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("process", ["worker", "scheduler"])
def test_a_long_running_process_with_bad_settings_says_so_and_loads_no_cli(process: str) -> None:
    result = _run(process, DATABASE_URL="mysql://nope", REDIS_URL="redis://127.0.0.1:6379/0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: configuration: ")
    assert "DATABASE_URL" in result.stderr
    assert "loaded: []" in result.stdout


def test_every_other_command_goes_to_the_cli() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert "worker" in result.stdout
    assert "dead-letters" in result.stdout
    assert "'typer'" in result.stdout.splitlines()[-1]


def test_worker_help_is_the_clis() -> None:
    result = _run("worker", "--help")
    assert result.returncode == 0, result.stderr
    assert "SIGTERM" in result.stdout


def test_the_long_running_processes_never_import_the_web_stack() -> None:
    """`taskline worker` and `taskline scheduler` stay lean: only `taskline web` loads Starlette,
    Jinja2, uvicorn and python-multipart."""
    probe = (
        "import sys, worker.arq_seam.wiring, worker.arq_seam.scheduler, worker.entry;"
        "print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn', 'multipart', 'worker.web') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
