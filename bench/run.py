"""taskline's benchmark: throughput, latency and cost of the worker against a hand-written floor.

    .venv/bin/python -m bench.run [--quick] [--commands N] [--out bench/results/latest.json]
                                  [--profile] [--only SCENARIO ...]

It creates its own PostgreSQL database (`taskline_bench_<random>`, migrated, users 1..100) and
claims a Redis database number of its own (the same claim key the test suite uses, so the two
never share one), runs every scenario against the same services in one go, prints a table and
writes every number to a JSON file, then drops the database and flushes its Redis database.
See bench/README.md for what each scenario measures and how to read the ratios.

This module is the command line; the parts: services.py (the database and the Redis database),
processes.py (workers and floor processes), meter.py (CPU, RSS), scenarios/ (each scenario;
catalogue.py lists them), profiling.py (py-spy, strace, MONITOR), suite.py (one run's state),
machine.py (the facts of the machine), report.py (the table and the notes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.fleet_report import fleet_lines, fleet_summary
from bench.machine import machine_info
from bench.report import notes, print_report, table_rows
from bench.scenarios.catalogue import EXTRAS, SCENARIOS, run_scenarios
from bench.services import ROOT, setup, teardown
from bench.suite import Sizes, Suite


def sizes_of(args: argparse.Namespace) -> Sizes:
    return Sizes(
        commands=args.commands or (3000 if args.quick else 20000),
        latency_seconds=args.latency_seconds or (4.0 if args.quick else 10.0),
        single_sends=200 if args.quick else 1000,
        floor_concurrency=args.floor_concurrency,
        rate=args.rate,
        profile_seconds=args.profile_seconds,
        profile_dir=Path(args.out).parent,
        diagnose_commands=2000 if not args.quick else 1000,
        signing_rounds=args.signing_rounds,
        idle_seconds=args.idle_seconds or (10.0 if args.quick else 30.0),
        burst_scale=args.burst_scale,
        fair_flood=args.fair_flood,
        fair_scale=args.fair_scale,
        fair_in_flight=(args.fair_in_flight,) if args.fair_in_flight else (),
        fair_rounds=args.fair_rounds,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sizes_of(args)
    only = set(SCENARIOS if args.only is None else args.only)
    extras = {name for name in EXTRAS if getattr(args, name)}
    env = await setup()
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
        "note": args.note,
        "commands": sizes.commands,
        "scenarios": {},
    }
    try:
        results["machine"] = await machine_info(env)
        await run_scenarios(Suite(env, sizes, results), only, extras)
        results["machine"]["loadavg_end"] = os.getloadavg()
    finally:
        await teardown(env, args.keep_logs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 commands, 4 s of steady rate")
    parser.add_argument("--commands", type=int, help="commands per drain scenario (default 20,000; --quick 3,000)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, help="run only these scenarios (none: only the extras)")
    parser.add_argument(
        "--rate", type=float, help="steady-rate scenario: commands/s (default: half the K=1 drain rate)"
    )
    parser.add_argument("--latency-seconds", type=float, help="steady-rate scenario length (default 10; --quick 4)")
    parser.add_argument(
        "--idle-seconds", type=float, help="bursts scenario: how long the idle worker is counted (default 30)"
    )
    parser.add_argument(
        "--burst-scale", type=float, default=1.0, help="bursts scenario: each pattern at this fraction of its rate"
    )
    parser.add_argument(
        "--fair-flood", type=int, default=200_000, help="fairness scenario: the flooding user's commands"
    )
    parser.add_argument(
        "--fair-scale", type=float, default=1.0, help="fairness scenario: the others' rate, a fraction of 1,000/s"
    )
    parser.add_argument(
        "--fair-in-flight", type=int, help="fairness scenario: the workers' TASKLINE_FAIR_IN_FLIGHT (default: theirs)"
    )
    parser.add_argument("--fair-rounds", type=int, default=2, help="fairness scenario: rounds (quiet, unfair, fair)")
    parser.add_argument("--floor-concurrency", type=int, default=8, help="coroutines per floor process")
    parser.add_argument("--profile", action="store_true", help="also run py-spy on a worker and on the floor")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument(
        "--uvloop", action="store_true", help="also drain with uvloop's event loop (floor P=1 and worker K=1)"
    )
    parser.add_argument(
        "--diagnose", action="store_true", help="also count Redis commands (MONITOR) and syscalls (strace) per command"
    )
    parser.add_argument(
        "--signing-rounds", type=int, default=3, help="signing scenario: rounds of one unsigned and one signed drain"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs (temporary directory)")
    parser.add_argument("--note", help="free text stored in the JSON (e.g. which commit a copied tree is)")
    args = parser.parse_args()

    results = asyncio.run(run(args))
    results["table"] = table_rows(results)
    results["notes"] = notes(results)
    results["fleet"] = fleet_summary(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print_report(results, out, args.profile_seconds)
    for line in fleet_lines(results):
        print(line)


if __name__ == "__main__":
    main()
