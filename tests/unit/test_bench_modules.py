"""The benchmark is code too: every module of `bench/` and of `tests/support/` (which the benchmark
shares with the tests) imports, and the benchmark's command line offers every scenario there is."""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import bench
import tests.support

ROOT = Path(__file__).resolve().parents[2]


def modules_of(package: object) -> list[str]:
    path, prefix = package.__path__, f"{package.__name__}."  # type: ignore[attr-defined]
    return sorted(m.name for m in pkgutil.walk_packages(path, prefix))


MODULES = modules_of(bench) + modules_of(tests.support)

IMPORT_EACH = """
import importlib, json, sys, traceback
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc()
print(json.dumps(failed))
"""


def test_every_bench_module_imports_in_a_fresh_interpreter() -> None:
    """Each module of bench/ and tests/support/ imports from the project root with an empty
    environment (no services needed): a broken import fails here, not in the next benchmark run."""
    assert {"bench.run", "bench.services", "bench.scenarios.drain", "tests.support.services"} <= set(MODULES)
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *MODULES],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}


def test_the_command_line_offers_exactly_the_catalogued_scenarios() -> None:
    """`python -m bench.run --only` accepts every scenario of the catalogue and nothing else, and
    every extra of the catalogue has its flag."""
    from bench.scenarios.catalogue import EXTRAS, SCENARIOS

    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    assert "{" + ",".join(SCENARIOS) + "}" in help_text
    assert all(f"--{name}" in help_text for name in EXTRAS)


def test_the_product_never_imports_the_benchmark_or_the_tests() -> None:
    """No module of worker/ or producers/ imports `bench` or `tests` (their helpers stay out of the
    product, which is installed without them)."""
    offenders = []
    for path in [*(ROOT / "worker").rglob("*.py"), *(ROOT / "producers").rglob("*.py")]:
        if "node_modules" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("bench", "tests")]
    assert offenders == []
