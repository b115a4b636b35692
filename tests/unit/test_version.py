"""One version for the whole project: both Python packages read taskline_producer/version.py,
the TypeScript package and the changelog's newest entry carry the same number, and the command
lines and the workers' heartbeats report it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from taskline_producer.version import __version__

from worker.observe.monitor import taskline_version

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_both_python_packages_take_their_version_from_the_one_file():
    """Neither pyproject.toml states a version of its own; hatch reads version.py for both."""
    for pyproject, path in (
        (ROOT / "pyproject.toml", "producers/python/taskline_producer/version.py"),
        (ROOT / "producers/python/pyproject.toml", "taskline_producer/version.py"),
    ):
        data = tomllib.loads(pyproject.read_text())
        assert "version" not in data["project"]
        assert data["project"]["dynamic"] == ["version"]
        assert data["tool"]["hatch"]["version"]["path"] == path


def test_the_typescript_package_and_the_changelog_carry_the_same_version():
    """package.json, its lock file, and the first release heading of CHANGELOG.md."""
    package = json.loads((ROOT / "producers/typescript/package.json").read_text())
    lock = json.loads((ROOT / "producers/typescript/package-lock.json").read_text())
    assert package["version"] == lock["version"] == lock["packages"][""]["version"] == __version__
    first = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert first is not None
    assert first.group(1) == __version__


def test_the_workers_and_both_command_lines_report_it():
    """The heartbeat's version, `taskline --version` and `taskline-send --version`."""
    assert taskline_version() == __version__
    for program in ("taskline", "taskline-send"):
        result = subprocess.run([str(BIN / program), "--version"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"taskline {__version__}"
