"""The taskline-producer distribution on its own: installed alone into fresh venvs from PyPI.

Slow (each test builds a venv and installs from PyPI, about half a minute with a warm pip
cache): `pytest -m "not slow"` leaves them out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PRODUCER = ROOT / "producers" / "python"
WORKER_STACK = ("arq", "sqlalchemy", "sqlmodel", "asyncpg", "alembic", "taskline")
WORKER_MODULES = ("arq", "sqlalchemy", "sqlmodel", "asyncpg", "alembic", "worker")


def fresh_venv(path: Path) -> Path:
    """A new venv at `path`; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


def pip_install(python: Path, *requirements: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def installed(python: Path) -> dict[str, str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True, timeout=60
    )
    return {item["name"].lower(): item["version"] for item in json.loads(listing.stdout)}


def test_the_producer_installs_alone_without_the_worker_stack(tmp_path: Path) -> None:
    """`pip install producers/python` brings redis-py and pydantic, and nothing of the worker: no arq,
    SQLAlchemy, SQLModel, asyncpg, alembic or taskline; importing it loads none of them, and
    `taskline-send` says how to get the command line instead of failing with a traceback."""
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, str(PRODUCER))
    packages = installed(python)
    assert "taskline-producer" in packages
    assert {"redis", "pydantic"} <= set(packages)
    assert [name for name in WORKER_STACK if name in packages] == []

    code = (
        "import json, sys, taskline_producer\n"
        "from taskline_producer import TaskProducer, keys\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert [name for name in loaded if name.split(".")[0] in WORKER_MODULES] == []

    send = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "taskline-send"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert send.returncode == 2
    assert 'pip install "taskline-producer[cli]"' in send.stderr


def test_the_client_works_with_the_newest_redis_py(tmp_path: Path) -> None:
    """The producer's unit tests (fakeredis) pass in a venv with the newest redis-py from PyPI (the
    project's own venv has the worker's redis-py 5, which covers the oldest end of the range), and
    with the [cli] extra `taskline-send` runs."""
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, f"{PRODUCER}[cli]", "redis>=7", "pytest", "pytest-asyncio", "fakeredis[lua]")
    redis_version = installed(python)["redis"]
    assert int(redis_version.split(".")[0]) >= 7, redis_version

    config = tmp_path / "pytest.ini"
    config.write_text("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-c",
            str(config),
            "--rootdir",
            str(ROOT),
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            str(ROOT / "tests" / "unit" / "test_producer_outcomes.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"redis-py {redis_version}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
    assert " passed" in result.stdout
    program = tmp_path / "venv" / "bin" / "taskline-send"
    send = subprocess.run([str(program), "create", "--help"], capture_output=True, text=True, timeout=60)
    assert send.returncode == 0, send.stderr
    assert "--wait" in send.stdout
