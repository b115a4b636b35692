"""Every scenario of bench/run.py by its `--only` name, and the extras by their flag, in the order
a run takes them; each measures one or more keys of the table (bench/README.md, "Scenarios").

Each entry is an async function of a `Suite` (bench/suite.py), so a test can run any one of them
with tiny sizes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.processes import Proc
from bench.profiling import diagnose, pyspy
from bench.scenarios.bursts import PATTERNS, burst_latency
from bench.scenarios.drain import drain
from bench.scenarios.enqueue import enqueue
from bench.scenarios.fairness import fairness_figures, flood_and_others
from bench.scenarios.fleet import fleet
from bench.scenarios.latency import steady_latency
from bench.scenarios.signing import signing
from bench.scenarios.tracing import tracing
from bench.scenarios.workload import make_stream
from bench.seam import idle_commands_per_s
from bench.suite import Suite

OUTCOME_TTL_S = 600
"""Scenario 7: how long the drained commands' outcomes are kept (they are left to expire)."""

Scenario = Callable[[Suite], Awaitable[None]]


async def enqueue_scenario(suite: Suite) -> None:
    sizes = suite.sizes
    await suite.attempt("6 enqueue", enqueue(suite.env, sizes.commands, sizes.memory_commands, sizes.single_sends))


async def floor(suite: Suite) -> None:
    env, n = suite.env, suite.sizes.commands
    await suite.attempt("1 floor P=1", drain(env, "floor1", n, False, suite.floors("single", 1), "floor"))
    await suite.attempt("1 floor P=2", drain(env, "floor2", n, False, suite.floors("single", 2), "floor"))


async def bulk_floor(suite: Suite) -> None:
    env, n = suite.env, suite.sizes.commands
    await suite.attempt(
        "2 bulk floor, 100 single jobs/tx P=1",
        drain(env, "bfloorc", n, False, suite.floors("bulk-commands", 1), "floor"),
    )
    await suite.attempt(
        "2 bulk floor, bulk jobs P=1", drain(env, "bfloor1", n, True, suite.floors("bulk-jobs", 1), "floor")
    )
    await suite.attempt(
        "2 bulk floor, bulk jobs P=2", drain(env, "bfloor2", n, True, suite.floors("bulk-jobs", 2), "floor")
    )


async def drain_single(suite: Suite) -> None:
    env, n = suite.env, suite.sizes.commands
    await suite.attempt("3 taskline K=1", drain(env, "drain1", n, False, suite.workers(1), "worker"))
    await suite.attempt("3 taskline K=2", drain(env, "drain2", n, False, suite.workers(2), "worker"))


async def drain_bulk(suite: Suite) -> None:
    env, n = suite.env, suite.sizes.commands
    await suite.attempt("4 taskline bulk K=1", drain(env, "bulk1", n, True, suite.workers(1), "worker"))
    await suite.attempt("4 taskline bulk K=2", drain(env, "bulk2", n, True, suite.workers(2), "worker"))


async def outcomes(suite: Suite) -> None:
    """Outcomes off and on, twice each, alternating: the difference is what asking costs."""
    env, n = suite.env, suite.sizes.commands
    for round_ in (1, 2):
        for label, ttl in (("off", None), ("on", OUTCOME_TTL_S)):
            await suite.attempt(
                f"7 taskline K=1 outcomes {label} #{round_}",
                drain(env, f"out{label}{round_}", n, False, suite.workers(1), "worker", outcome_ttl=ttl),
            )
    for label, ttl in (("off", None), ("on", OUTCOME_TTL_S)):
        await suite.attempt(
            f"7 taskline bulk K=1 outcomes {label}",
            drain(env, f"bout{label}", n, True, suite.workers(1), "worker", outcome_ttl=ttl),
        )


STREAM_ENV = {"TASKLINE_LOG_LEVEL": "INFO"}
"""Scenario 9's workers log at INFO, where each not-yet retry is a line (the drain counts them)."""


async def stream(suite: Suite) -> None:
    """create → update → complete back to back (`send_many`, one worker) against as many creates
    alone, twice each, alternating: the rate of the stream over that of the creates, and how
    many of its commands went back to Redis as not-yet retries."""
    env, n = suite.env, suite.sizes.commands
    tasks = max(1, n // 3)
    for round_ in (1, 2):
        await suite.attempt(
            f"11 creates alone K=1 #{round_}",
            drain(env, f"creates{round_}", 3 * tasks, False, suite.workers(1, extra_env=STREAM_ENV), "worker"),
        )
        workload = make_stream(tasks)
        await suite.attempt(
            f"11 create-update-complete K=1 #{round_}",
            drain(
                env,
                f"stream{round_}",
                len(workload),
                False,
                suite.workers(1, extra_env=STREAM_ENV),
                "worker",
                workload=workload,
            ),
        )


async def latency(suite: Suite) -> None:
    """At `Sizes.rate`, or half the K=1 drain rate of this run (at most 1,000/s; 200/s without one)."""
    env, sizes = suite.env, suite.sizes
    measured = suite.scenarios.get("3 taskline K=1", {}).get("commands_per_s")
    rate = sizes.rate or min(1000.0, 0.5 * measured) if measured else (sizes.rate or 200.0)
    suite.results["latency_rate"] = rate
    duration = sizes.latency_seconds
    await suite.attempt(
        "5 latency floor",
        steady_latency(env, "latfloor", rate, duration, suite.floors("single", 1, serve=True), "floor"),
    )
    await suite.attempt(
        "5 latency taskline K=1", steady_latency(env, "latworker", rate, duration, suite.workers(1), "worker")
    )


async def bursts(suite: Suite) -> None:
    """Tokenless producers in each burst pattern, `Sizes.latency_seconds` each, to one worker;
    then the Redis commands per second of an idle worker over `Sizes.idle_seconds`."""
    env, duration, scale = suite.env, suite.sizes.latency_seconds, suite.sizes.burst_scale
    for index, (label, batch, every_s) in enumerate(PATTERNS):
        # --burst-scale: the same pattern at a fraction of its rate (larger pipelines are made
        # smaller; the smooth stream is made slower)
        batch, every_s = (round(batch * scale), every_s) if batch > 1 else (1, every_s / scale)
        name = f"9 no token, {label}" + (f" x{scale:g}" if scale != 1 else "")
        await suite.attempt(name, burst_latency(env, f"burst{index}", batch, every_s, duration, suite.workers(1)))
    await suite.attempt("9 idle worker", idle_commands_per_s(env, None, suite.sizes.idle_seconds))


async def fairness(suite: Suite) -> None:
    """Scenario 13: per round, the others' latency quiet, then under a flood without and with fair
    turns (`Sizes.fair_flood`, `Sizes.fair_scale`), the order reversed every other round; then the
    Redis commands per second of an idle worker."""
    env, sizes = suite.env, suite.sizes
    extra = {"TASKLINE_FAIR_IN_FLIGHT": str(sizes.fair_in_flight[0])} if sizes.fair_in_flight else None
    runs = [("quiet", 0, True), ("flood unfair", sizes.fair_flood, False), ("flood fair", sizes.fair_flood, True)]
    for round_ in range(1, sizes.fair_rounds + 1):
        for label, flood, fair in runs if round_ % 2 else runs[::-1]:
            await suite.attempt(
                f"13 fairness, {label} #{round_}",
                flood_and_others(
                    env,
                    "fair" + "".join(ch for ch in label if ch.isalnum()) + str(round_),
                    suite.workers(1, extra_env=extra),
                    fair=fair,
                    flood_size=flood,
                    scale=sizes.fair_scale,
                    duration=sizes.latency_seconds,
                ),
            )
    suite.results["fairness"] = fairness_figures(suite.scenarios)
    await suite.attempt("13 idle worker", idle_commands_per_s(env, None, sizes.idle_seconds))


async def uvloop(suite: Suite) -> None:
    env, n = suite.env, suite.sizes.commands
    await suite.attempt(
        "x floor P=1 uvloop", drain(env, "floor1uv", n, False, suite.floors("single", 1, uvloop=True), "floor")
    )
    await suite.attempt(
        "x taskline K=1 uvloop", drain(env, "drain1uv", n, False, suite.workers(1, uvloop=True), "worker")
    )


async def profile(suite: Suite) -> None:
    """A K=1 drain and a floor P=1 drain, each sized to outlast py-spy's sampling window."""
    env, sizes = suite.env, suite.sizes
    sizes.profile_dir.mkdir(parents=True, exist_ok=True)
    seconds = sizes.profile_seconds
    for key, label, rate_key, starter, bulk in (
        ("profile worker", "worker", "3 taskline K=1", suite.workers(1), False),
        ("profile floor", "floor", "1 floor P=1", suite.floors("single", 1), False),
    ):
        rate = suite.scenarios.get(rate_key, {}).get("commands_per_s") or 1000.0
        size = max(sizes.commands, int(rate * (seconds + 5)))
        out = sizes.profile_dir / f"profile-{label}.raw.txt"

        async def during(
            procs: list[Proc], attached: asyncio.Event, done: asyncio.Event, out: Path = out
        ) -> dict[str, Any]:
            attached.set()
            return await pyspy(procs[0].pid, seconds, out)

        await suite.attempt(
            key,
            drain(env, f"prof{label}", size, bulk, starter, label if label == "worker" else "floor", during=during),
        )


async def diagnose_scenario(suite: Suite) -> None:
    """Small drains of the floor and of one worker under strace and MONITOR: exact counts, no speed."""
    env, size = suite.env, suite.sizes.diagnose_commands
    for key, name, starter, kind, bulk in (
        ("diagnose floor P=1", "diagfloor", suite.floors("single", 1), "floor", False),
        ("diagnose taskline K=1", "diagworker", suite.workers(1), "worker", False),
        ("diagnose bulk floor P=1", "diagbfloor", suite.floors("bulk-jobs", 1), "floor", True),
        ("diagnose taskline bulk K=1", "diagbworker", suite.workers(1), "worker", True),
    ):
        await suite.attempt(key, drain(env, name, size, bulk, starter, kind, during=diagnose(env, size)))


SCENARIOS: dict[str, Scenario] = {
    "enqueue": enqueue_scenario,
    "floor": floor,
    "bulk-floor": bulk_floor,
    "drain": drain_single,
    "drain-bulk": drain_bulk,
    "outcomes": outcomes,
    "signing": signing,
    "stream": stream,
    "tracing": tracing,
    "latency": latency,  # after "drain": it offers half of that scenario's K=1 rate
    "bursts": bursts,
    "fleet": fleet,  # per-command costs, 1/2/4 processes, PgBouncer (docs/scaling.md)
    "fairness": fairness,
}
EXTRAS: dict[str, Scenario] = {"uvloop": uvloop, "profile": profile, "diagnose": diagnose_scenario}


async def run_scenarios(suite: Suite, only: set[str], extras: set[str]) -> None:
    """The scenarios named in `only` and the extras named in `extras`, in the catalogue's order."""
    for name, scenario in SCENARIOS.items():
        if name in only:
            await scenario(suite)
    for name, scenario in EXTRAS.items():
        if name in extras:
            await scenario(suite)
