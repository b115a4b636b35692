"""One benchmark run's state: its services, its sizes, and the results of each scenario by name.

A scenario (bench/scenarios/catalogue.py) is an async function of a `Suite`: it runs one or more
measurements through `Suite.attempt`, which stores each result (or the error that stopped it)
under its key in `Suite.scenarios`. A test can run any scenario on tiny sizes:

    env = await setup()
    suite = Suite(env, Sizes(commands=50, latency_seconds=1, single_sends=20, memory_commands=100))
    await SCENARIOS["drain"](suite)
    await teardown(env, keep_logs=False)
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.processes import Proc, Starter, start_floor, start_worker
from bench.services import ROOT, Env, log


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does (bench/run.py's flags)."""

    commands: int = 20_000
    """Commands per drain; enqueue's `send_many` and `send_bulk` send as many."""
    latency_seconds: float = 10.0
    """Length of the steady-rate scenario."""
    single_sends: int = 1000
    """Sequential `send` calls timed by the enqueue scenario."""
    memory_commands: int = 10_000
    """Commands queued to measure Redis memory per command."""
    floor_concurrency: int = 8
    """Coroutines per floor process."""
    rate: float | None = None
    """Steady-rate scenario: commands/s (None: half the K=1 drain rate, at most 1,000/s)."""
    profile_seconds: float = 10.0
    profile_dir: Path = ROOT / "bench" / "results"
    """Where `--profile` writes py-spy's raw files."""
    diagnose_commands: int = 2000
    signing_rounds: int = 3
    """Scenario 8: rounds of one unsigned and one signed drain each."""
    idle_seconds: float = 30.0
    """How long the idle worker's Redis commands are counted (scenario 9)."""
    burst_scale: float = 1.0
    """Scenario 9's patterns at this fraction of their rate (a machine too busy for 2,000/s)."""
    fair_flood: int = 200_000
    """Scenario 13: the flooding user's commands."""
    fair_scale: float = 1.0
    """Scenario 13: the other users' rate at this fraction of 50 x 20 commands/s."""
    fair_in_flight: tuple[int, ...] = ()
    """Scenario 13: the workers' TASKLINE_FAIR_IN_FLIGHT (the first value; none: their default)."""
    fair_rounds: int = 2
    """Scenario 13: rounds of quiet, unfair and fair runs, every other round in reverse order."""


class Suite:
    def __init__(self, env: Env, sizes: Sizes, results: dict[str, Any] | None = None) -> None:
        self.env = env
        self.sizes = sizes
        self.results: dict[str, Any] = results if results is not None else {}
        self.scenarios: dict[str, Any] = self.results.setdefault("scenarios", {})

    async def attempt(self, key: str, coro: Awaitable[dict[str, Any]]) -> None:
        """Run one measurement and keep its result under `key`; a failure is kept as its error."""
        log(f"{key} ...")
        try:
            self.scenarios[key] = await coro
            summary = self.scenarios[key].get("commands_per_s") or self.scenarios[key].get("latency_ms", {}).get("p50")
            log(f"{key}: {summary}")
        except Exception as exc:
            self.scenarios[key] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{key} FAILED: {exc}")

    def floors(self, mode: str, count: int, serve: bool = False, uvloop: bool = False) -> Starter:
        """Starts `count` floor processes (bench/floor.py) in `mode`."""
        conc = self.sizes.floor_concurrency

        async def start(queue: str) -> list[Proc]:
            return [await start_floor(self.env, queue, mode, conc, serve, uvloop) for _ in range(count)]

        return start

    def workers(self, count: int, uvloop: bool = False, extra_env: dict[str, str] | None = None) -> Starter:
        """Starts `count` taskline worker processes (with `extra_env` added to their settings)."""

        async def start(queue: str) -> list[Proc]:
            return [await start_worker(self.env, queue, i, extra_env, uvloop=uvloop) for i in range(count)]

        return start
