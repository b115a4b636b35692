"""Package boundaries: what the producer client may pull in, and that nothing is built at import time."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import taskline_producer

import worker

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_PRODUCERS = ("sqlmodel", "sqlalchemy", "asyncpg", "alembic", "arq", "worker")
PUBLIC_API = {
    "BULK_JOB",
    "COMMAND_JOBS",
    "CONTRACT_VERSION",
    "DEFAULT_QUEUE",
    "BulkReceipt",
    "Command",
    "CompleteTask",
    "CreateTask",
    "Outcome",
    "OutcomeTimeout",
    "Receipt",
    "SendReport",
    "SigningKey",
    "TaskProducer",
    "UpdateTask",
    "command_json_schema",
    "sign_job",
}
TESTING_API = {"ABSENT", "RecordingProducer", "SentCommand", "SentJob", "WouldBeRefused", "inspect_job"}


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `code` (with `args` as sys.argv[1:]) in a fresh interpreter from the project root with
    an empty environment (PATH only)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def modules_of(package: object) -> list[str]:
    """Every module of the package, its subpackages' modules included."""
    path, prefix = package.__path__, f"{package.__name__}."  # type: ignore[attr-defined]
    return sorted(m.name for m in pkgutil.walk_packages(path, prefix) if not m.ispkg)


def test_importing_producers_loads_no_database_queue_or_worker_code() -> None:
    """A fresh `import taskline_producer` does not load sqlmodel, sqlalchemy, asyncpg, alembic, arq or worker."""
    result = run_python("import json, sys, taskline_producer; print(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "taskline_producer.client" in loaded  # the check below looks at a real import
    offenders = [name for name in loaded if name.split(".")[0] in FORBIDDEN_IN_PRODUCERS]
    assert offenders == []


@pytest.mark.parametrize(
    "module",
    [
        "taskline_producer.contract",
        "taskline_producer.wire",
        "taskline_producer.client",
        "taskline_producer.cli_errors",
        "taskline_producer.cli",
        "taskline_producer.testing",
    ],
)
def test_producer_library_modules_load_no_database_queue_or_worker_code(module: str) -> None:
    """Each producer library module, imported alone, stays free of database, arq and worker code."""
    result = run_python(f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    offenders = [name for name in json.loads(result.stdout) if name.split(".")[0] in FORBIDDEN_IN_PRODUCERS]
    assert offenders == []


ALL_MODULES = modules_of(taskline_producer) + modules_of(worker)


IMPORT_EACH = """
import importlib, json, sys, traceback
failures = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc()
print(json.dumps(failures))
"""


@pytest.fixture(scope="module")
def empty_environment_imports() -> dict[str, str]:
    """Import every module in one fresh interpreter with an empty environment, one after another,
    keeping each failure with its traceback (an interpreter per module took minutes on a busy
    2-core machine; what is checked, that importing builds nothing from the environment, is the
    same: each module's top-level code runs once, whichever imported it first)."""
    done = run_python(IMPORT_EACH, *ALL_MODULES, timeout=240)
    assert done.returncode == 0, done.stderr
    failures: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return failures


@pytest.mark.parametrize("module", ALL_MODULES)
def test_every_module_imports_with_an_empty_environment(module: str, empty_environment_imports: dict[str, str]) -> None:
    """Every module imports in an interpreter with no environment variables: nothing is built at import."""
    assert module not in empty_environment_imports, empty_environment_imports[module]


def test_the_module_list_is_not_empty() -> None:
    """The import check above covers the real modules (guards against an empty parametrisation)."""
    expected = {"taskline_producer.contract", "taskline_producer.client", "worker.pipeline.decode"}
    assert expected <= set(ALL_MODULES)


def test_producers_all_is_the_curated_public_api() -> None:
    """taskline_producer.__all__ lists exactly the curated public names, once each, and each one exists."""
    assert sorted(taskline_producer.__all__) == sorted(PUBLIC_API)
    assert len(taskline_producer.__all__) == len(set(taskline_producer.__all__))
    for name in taskline_producer.__all__:
        assert getattr(taskline_producer, name) is not None


def test_the_testing_helpers_all_is_their_curated_public_api() -> None:
    """taskline_producer.testing.__all__ lists exactly its curated public names, once each, and each exists."""
    import taskline_producer.testing as testing

    assert sorted(testing.__all__) == sorted(TESTING_API)
    assert len(testing.__all__) == len(set(testing.__all__))
    for name in testing.__all__:
        assert getattr(testing, name) is not None


def test_the_testing_helpers_load_no_pytest_and_the_plugin_is_declared() -> None:
    """`import taskline_producer.testing` needs nothing beyond the client (pytest comes only with its
    plugin module), and the distribution declares that plugin as a pytest11 entry point."""
    result = run_python("import json, sys, taskline_producer.testing; print(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    assert [name for name in json.loads(result.stdout) if name.split(".")[0] in {"pytest", "_pytest"}] == []
    pyproject = (ROOT / "producers" / "python" / "pyproject.toml").read_text()
    assert '[project.entry-points.pytest11]\ntaskline_producer = "taskline_producer.testing.pytest_plugin"' in pyproject
    assert 'testing = [\n    "pytest>=8",\n]' in pyproject


def test_the_outbox_extra_loads_sqlalchemy_and_nothing_of_the_worker() -> None:
    """`taskline_producer.outbox` (the `outbox` extra) needs SQLAlchemy only: no worker, arq,
    sqlmodel, asyncpg or alembic comes with it."""
    result = run_python("import json, sys, taskline_producer.outbox; print(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "sqlalchemy" in loaded
    offenders = [name for name in loaded if name.split(".")[0] in set(FORBIDDEN_IN_PRODUCERS) - {"sqlalchemy"}]
    assert offenders == []
