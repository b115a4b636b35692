"""The benchmark cannot silently rot: every scenario of every benchmark command runs here on a tiny
size against real PostgreSQL and Redis, through its own command line, and must finish without an
error. A schema change, a renamed setting or a moved helper that breaks a benchmark fails here,
not in the next person's measurement. (tests/unit/test_bench_modules.py only imports them.)

The figures are meaningless at these sizes and are not checked; what is checked is that each
scenario ran and reported what its report reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.scenarios.catalogue import EXTRAS, SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def bench(*argv: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    """`python -m bench.<argv>` from the project root, with this run's services (the tests' URLs)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKLINE_") or k.startswith("TASKLINE_TEST_")}
    done = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr[-4000:]}"
    return done


def errors_in(value: Any, where: str = "") -> Iterator[str]:
    """Every `error` a result holds, however deep (a scenario that failed keeps its error and goes on)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "error":
                yield f"{where}: {item}"
            else:
                yield from errors_in(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from errors_in(item, f"{where}[{index}]")


GROUPS = {
    "drains": (["enqueue", "floor", "bulk-floor", "drain", "drain-bulk"], []),
    "outcomes, signing, latency": (["outcomes", "signing", "latency"], []),
    "stream, tracing": (["stream", "tracing"], []),
    "bursts, fleet": (["bursts", "fleet"], []),
    "fairness": (["fairness"], []),
    "extras": ([], ["uvloop", "profile", "diagnose"]),
}
"""`bench.run`'s catalogue in six runs (each well inside the test timeout on a loaded machine; each
its own pytest-xdist group, so that they spread over the test processes)."""
EXPECTED = {
    "enqueue": ["6 enqueue"],
    "floor": ["1 floor P=1", "1 floor P=2"],
    "bulk-floor": ["2 bulk floor, bulk jobs P=1"],
    "drain": ["3 taskline K=1", "3 taskline K=2"],
    "drain-bulk": ["4 taskline bulk K=1", "4 taskline bulk K=2"],
    "outcomes": ["7 taskline K=1 outcomes on #1", "7 taskline bulk K=1 outcomes on"],
    "signing": ["8 taskline K=1 signing on #1", "8 signing cost"],
    "latency": ["5 latency floor", "5 latency taskline K=1"],
    "uvloop": ["x taskline K=1 uvloop"],
    "profile": ["profile worker", "profile floor"],
    "diagnose": ["diagnose taskline K=1", "diagnose taskline bulk K=1"],
    "stream": ["11 creates alone K=1 #1", "11 create-update-complete K=1 #1"],
    "tracing": ["12 taskline K=1 tracing all #1", "12 taskline bulk K=1 tracing all #1", "12 tracing cost"],
    "bursts": ["9 idle worker"],
    "fleet": ["10 fleet taskline K=1", "10 fleet taskline K=4", "10 fleet taskline K=1 pgbouncer #1"],
    "fairness": ["13 fairness, quiet #1", "13 fairness, flood unfair #1", "13 fairness, flood fair #1"],
}


def test_the_groups_cover_the_whole_catalogue() -> None:
    """Every scenario and every extra of `bench.run` is in one of the smoke runs, with the keys it stores."""
    covered = [name for scenarios, extras in GROUPS.values() for name in scenarios + extras]
    assert sorted(covered) == sorted([*SCENARIOS, *EXTRAS]) == sorted(EXPECTED)


@pytest.mark.parametrize(
    "group", [pytest.param(group, marks=pytest.mark.xdist_group(f"bench-smoke: {group}")) for group in GROUPS]
)
def test_every_scenario_of_bench_run_and_every_extra_runs(group: str, tmp_path: Path) -> None:
    """`python -m bench.run` with these scenarios of its catalogue (or these extras: uvloop, profile,
    diagnose): each stores its results, none an error, and the report prints."""
    scenarios, extras = GROUPS[group]
    if extras:
        missing = [tool for tool in ("strace", "redis-cli") if shutil.which(tool) is None]
        if not (shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")):
            missing.append("py-spy")
        if missing:
            pytest.skip(f"the extras need py-spy, strace and redis-cli; missing: {', '.join(missing)}")
    out = tmp_path / "run.json"
    done = bench(
        "bench.run",
        "--commands", "60",
        "--latency-seconds", "1",
        "--rate", "100",
        "--profile-seconds", "1",
        "--idle-seconds", "1",
        "--burst-scale", "0.05",
        "--fair-flood", "400",
        "--fair-scale", "0.05",
        "--fair-rounds", "1",
        "--only", *scenarios,
        *(f"--{name}" for name in extras),
        "--out", str(out),
    )  # fmt: skip
    results = json.loads(out.read_text())
    stored = results["scenarios"]
    assert list(errors_in(stored)) == []
    for name in scenarios + extras:
        assert set(EXPECTED[name]) <= set(stored), (name, sorted(stored))
    assert "taskline benchmark" in done.stdout


@pytest.mark.xdist_group("bench-smoke: test_the_purge_benchmark_runs_every_part")
def test_the_purge_benchmark_runs_every_part(tmp_path: Path) -> None:
    """`python -m bench.purge` on a few hundred rows: the floor, this tree's `taskline purge`, an older
    commit's (HEAD, checked out aside), the start-up alone, and a round beside a real worker."""
    out = tmp_path / "purge.json"
    done = bench(
        "bench.purge",
        "--completed", "300", "--open", "20", "--rounds", "1", "--old", "HEAD",
        "--load-completed", "300", "--commands", "60", "--load-rounds", "1",
        "--json", str(out),
    )  # fmt: skip
    results = json.loads(out.read_text())
    (speed,) = results["speed"]["rounds"]
    assert {"floor", "taskline purge", "taskline purge HEAD", "start-up"} <= set(speed)
    assert speed["floor"]["rows"] == speed["taskline purge"]["rows"] == 300
    assert speed["taskline purge"]["longest_tx_s"] is not None
    (beside,) = results["beside_workers"]["rounds"]
    assert beside["purge"]["rows"]["task"] == 300
    assert "of the floor" in done.stdout
    assert "kept" in done.stdout


@pytest.mark.xdist_group("bench-smoke: test_the_outbox_benchmark_runs_both_comparisons")
def test_the_outbox_benchmark_runs_both_comparisons() -> None:
    """`python -m bench.outbox` on 50 commands: the relay's rate beside send_many, and a drain fed
    three ways (direct, direct asking for outcomes, the outbox)."""
    done = bench("bench.outbox", "--n", "50", "--drain", "50", "--workers", "1", "--repeat", "1", "--rounds", "1")
    results = json.loads(done.stdout)
    assert results["relay_rate"][0]["relay_commands_per_s"] > 0
    (round_,) = results["drain"]["rounds"]
    assert round_["outbox_to_direct_outcomes"] > 0
    assert round_["outbox_to_direct"] > 0


@pytest.mark.xdist_group("bench-smoke: test_the_seam_benchmark_runs_drains_idle_and_latency_against_an_older_tree")
def test_the_seam_benchmark_runs_drains_idle_and_latency_against_an_older_tree() -> None:
    """`python -m bench.seam` against HEAD (the comparison machinery, not a real older commit): the
    drains, the idle worker on a redis-server of its own, and latency with and without the token."""
    if shutil.which("redis-server") is None:
        pytest.skip("bench.seam's idle scenario runs a redis-server of its own; none is installed")
    done = bench(
        "bench.seam",
        "--old", "HEAD", "--commands", "40", "--rounds", "1",
        "--idle-seconds", "1", "--latency-seconds", "1", "--rate", "50",
    )  # fmt: skip
    assert "drain single K=1" in done.stdout
    assert "idle worker, old" in done.stdout
    assert "no token producer" in done.stdout
