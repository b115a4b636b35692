"""The benchmark's report: the table (one row per measured key, with its ratio to its floor), the
notes under it, the profile and diagnose sections; bench/README.md, "Reading the table", says what
each column means."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RATIO_BASE = {
    "x taskline K=1 uvloop": "x floor P=1 uvloop",
    "3 taskline K=1": "1 floor P=1",
    "3 taskline K=2": "1 floor P=2",
    "4 taskline bulk K=1": "2 bulk floor, bulk jobs P=1",
    "4 taskline bulk K=2": "2 bulk floor, bulk jobs P=2",
    "11 create-update-complete K=1 #1": "11 creates alone K=1 #1",
    "11 create-update-complete K=1 #2": "11 creates alone K=1 #2",
}

RSS_GOAL_MIB = 80
"""A worker's peak RSS under a bulk drain stays at or under this (issue 19)."""


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    s = results["scenarios"]
    rows: list[dict[str, Any]] = []

    def rate_of(key: str) -> float | None:
        rate = s.get(key, {}).get("commands_per_s")
        return float(rate) if rate is not None else None

    for key in (
        "1 floor P=1",
        "1 floor P=2",
        "2 bulk floor, 100 single jobs/tx P=1",
        "2 bulk floor, bulk jobs P=1",
        "2 bulk floor, bulk jobs P=2",
        "3 taskline K=1",
        "3 taskline K=2",
        "4 taskline bulk K=1",
        "4 taskline bulk K=2",
        "x floor P=1 uvloop",
        "x taskline K=1 uvloop",
        "7 taskline K=1 outcomes off #1",
        "7 taskline K=1 outcomes on #1",
        "7 taskline K=1 outcomes off #2",
        "7 taskline K=1 outcomes on #2",
        "7 taskline bulk K=1 outcomes off",
        "7 taskline bulk K=1 outcomes on",
        *(key for key in s if key.startswith("8 taskline K=1 signing ")),
        "11 creates alone K=1 #1",
        "11 create-update-complete K=1 #1",
        "11 creates alone K=1 #2",
        "11 create-update-complete K=1 #2",
    ):
        if key not in s:
            continue
        r = s[key]
        if "error" in r:
            rows.append({"scenario": key, "error": r["error"]})
            continue
        base = RATIO_BASE.get(key)
        ratio = (r["commands_per_s"] / rate_of(base)) if base and rate_of(base) else None
        rows.append(
            {
                "scenario": key,
                "commands_per_s": r["commands_per_s"],
                "ratio": ratio,
                "ratio_to": base,
                "client_cpu_ms": r["client_cpu_ms_per_command"],
                "pg_cpu_ms": r["pg_cpu_ms_per_command"],
                "cmds_per_tx": r["commands_per_transaction_approx"],
                "rss_mib": r["peak_rss_mib"],
                "machine_busy_pct": r["usage"].get("machine_busy_pct"),
            }
        )
    for key in ("5 latency floor", "5 latency taskline K=1"):
        if key not in s:
            continue
        r = s[key]
        if "error" in r:
            rows.append({"scenario": key, "error": r["error"]})
            continue
        rows.append(
            {
                "scenario": f"{key} @ {r['offered_rate']:.0f}/s",
                "commands_per_s": r["achieved_rate"],
                "p50_ms": r["latency_ms"]["p50"],
                "p99_ms": r["latency_ms"]["p99"],
                "client_cpu_ms": r["client_cpu_ms_per_command"],
                "pg_cpu_ms": r["pg_cpu_ms_per_command"],
                "rss_mib": r["peak_rss_mib"],
                "machine_busy_pct": r["usage"].get("machine_busy_pct"),
            }
        )
    for key in [k for k in s if k.startswith("9 no token")]:
        r = s[key]
        if "error" in r:
            rows.append({"scenario": key, "error": r["error"]})
            continue
        rows.append(
            {
                "scenario": key,
                "commands_per_s": r["achieved_rate"],
                "p50_ms": r["latency_ms"]["p50"],
                "p99_ms": r["latency_ms"]["p99"],
            }
        )
    if "9 idle worker" in s:
        r = s["9 idle worker"]
        label = "9 idle worker" if "error" in r else f"9 idle worker: {r['per_s']:.2f} Redis commands/s"
        rows.append({"scenario": label, **({"error": r["error"]} if "error" in r else {})})
    for key in [k for k in s if k.startswith("13 fairness")]:
        r = s[key]
        if "error" in r:
            rows.append({"scenario": key, "error": r["error"]})
            continue
        rows.append(
            {
                "scenario": f"{key} (others' latency; cmd/s: all)",
                "commands_per_s": r["commands_per_s"],
                "p50_ms": r["latency_ms"]["p50"],
                "p99_ms": r["latency_ms"]["p99"],
            }
        )
    if "13 idle worker" in s:
        r = s["13 idle worker"]
        label = "13 idle worker" if "error" in r else f"13 idle worker: {r['per_s']:.2f} Redis commands/s"
        rows.append({"scenario": label, **({"error": r["error"]} if "error" in r else {})})
    if "6 enqueue" in s:
        r = s["6 enqueue"]
        if "error" in r:
            rows.append({"scenario": "6 enqueue", "error": r["error"]})
        else:
            rows.append(
                {
                    "scenario": "6 enqueue send_many (1 process)",
                    "commands_per_s": r["send_many"]["commands_per_s"],
                    "client_cpu_ms": r["send_many"]["producer_cpu_ms_per_command"],
                }
            )
            rows.append(
                {
                    "scenario": "6 enqueue send_bulk x100 (1 process)",
                    "commands_per_s": r["send_bulk"]["commands_per_s"],
                    "client_cpu_ms": r["send_bulk"]["producer_cpu_ms_per_command"],
                }
            )
            rows.append(
                {"scenario": "6 single send() call", "p50_ms": r["send"]["p50_ms"], "p99_ms": r["send"]["p99_ms"]}
            )
    return rows


def fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def render_table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "scenario",
        "cmd/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "CPU ms/cmd",
        "PG CPU ms/cmd",
        "cmd/tx",
        "RSS MiB",
        "busy %",
    ]
    lines = []
    for row in rows:
        if "error" in row:
            lines.append([row["scenario"], "ERROR: " + row["error"][:60]] + [""] * (len(headers) - 2))
            continue
        lines.append(
            [
                row["scenario"],
                fmt(row.get("commands_per_s"), ",.0f"),
                fmt(row.get("ratio"), ".2f")
                if row.get("ratio") is not None
                else ("floor" if "floor" in row["scenario"] and "latency" not in row["scenario"] else "–"),
                fmt(row.get("p50_ms"), ".2f"),
                fmt(row.get("p99_ms"), ".2f"),
                fmt(row.get("client_cpu_ms"), ".3f"),
                fmt(row.get("pg_cpu_ms"), ".3f"),
                fmt(row.get("cmds_per_tx"), ".1f"),
                fmt(row.get("rss_mib"), ".0f"),
                fmt(row.get("machine_busy_pct"), ".0f"),
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines, strict=False)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def notes(results: dict[str, Any]) -> list[str]:
    s = results["scenarios"]
    out = []
    e = s.get("6 enqueue", {})
    if "redis_memory" in e:
        m = e["redis_memory"]
        out.append(
            f"Redis memory per queued command: {m['memory_usage_bytes_per_command']:.0f} B by MEMORY USAGE "
            f"(job key {m['memory_usage_job_key_bytes']:.0f} B"
            f" + queue entry {m['memory_usage_queue_bytes_per_command']:.0f} B; job JSON {m['job_json_bytes']} B);"
            f" INFO used_memory delta {m['used_memory_delta_bytes_per_command']:.0f} B "
            f"(noisy: the Redis server is shared) over {m['commands']:,} commands"
        )
    for key in ("3 taskline K=1", "3 taskline K=2", "4 taskline bulk K=1", "4 taskline bulk K=2"):
        left = s.get(key, {}).get("redis_leftovers")
        if left:
            out.append(
                f"{key}: Redis keys left per job after processing = {left['per_job_total']} "
                f"(job {left['job']}, in-progress {left['in_progress']}, retry {left['retry']},"
                f" result {left['result']}); queue members {left['queue_members']},"
                f" arq:* keys in the db {left['arq_keys_in_db']}; dead letters {s[key]['dead_letters']},"
                f" worker log lines at WARNING {s[key]['worker_log_lines']}"
            )
    for key in ("1 floor P=1", "3 taskline K=1", "x floor P=1 uvloop", "x taskline K=1 uvloop"):
        ev = s.get(key, {}).get("client_events_per_command")
        if ev:
            out.append(
                f"{key}: per command, minor page faults {ev.get('minor_faults', 0):.2f}, context switches "
                f"{ev.get('voluntary_switches', 0):.2f} voluntary / {ev.get('involuntary_switches', 0):.2f} involuntary"
            )
    for key in ("3 taskline K=2", "4 taskline bulk K=2", "1 floor P=2", "2 bulk floor, bulk jobs P=2"):
        one = key.replace("K=2", "K=1").replace("P=2", "P=1")
        if s.get(key, {}).get("commands_per_s") and s.get(one, {}).get("commands_per_s"):
            out.append(f"{key}: {s[key]['commands_per_s'] / s[one]['commands_per_s']:.2f} x its one-process rate")
    for key in ("4 taskline bulk K=1", "4 taskline bulk K=2"):
        rss = s.get(key, {}).get("peak_rss_mib")
        if rss is not None:
            verdict = "within" if rss <= RSS_GOAL_MIB else "OVER"
            out.append(f"{key}: worker peak RSS {rss:.1f} MiB ({verdict} the {RSS_GOAL_MIB} MiB goal)")
    for round_ in (1, 2):
        key = f"11 create-update-complete K=1 #{round_}"
        r = s.get(key, {})
        if "not_yet_retries" in r:
            changes = r["commands"] - r["commands"] // 3
            out.append(
                f"{key}: {r['not_yet_retries']} of {changes} updates/completes went back to Redis as not-yet"
                f" retries ({100 * r['not_yet_retries'] / max(1, changes):.2f} %)"
            )
    cost = s.get("8 signing cost")
    if cost:
        out.extend(signing_notes(cost))
    if "latency_rate" in results:
        out.append(
            f"steady-rate scenario offered {results['latency_rate']:.0f} commands/s "
            "(half the K=1 drain rate, capped at 1,000/s)"
        )
    return out


def signing_notes(cost: dict[str, Any]) -> list[str]:
    """Scenario 8's lines: the direct CPU cost of signing and verifying, and the drains' median ratio."""
    lines = [
        f"signing: {cost['sign_us']:.1f} µs of CPU per command to sign (producer: {cost['producer_us_unsigned']:.1f}"
        f" -> {cost['producer_us_signed']:.1f} µs), {cost['verify_us']:.1f} µs to verify (worker decoder:"
        f" {cost['worker_decode_us_unsigned']:.1f} -> {cost['worker_decode_us_verified']:.1f} µs), best of"
        f" {cost['rounds']} interleaved rounds of {cost['commands']} jobs"
    ]
    if cost.get("rounds_measured"):
        ratios = ", ".join(f"{ratio:.3f}" for ratio in cost["rate_ratios"])
        lines.append(
            f"signing: together {cost['sign_and_verify_pct_of_worker_cpu']:.2f} % of the worker's CPU per command"
            f" in the unsigned drains ({cost['median_unsigned_worker_cpu_us']:.0f} µs; verifying alone"
            f" {cost['verify_pct_of_worker_cpu']:.2f} %) and {cost['sign_and_verify_pct_of_drain']:.2f} % of one"
            f" command's time at the unsigned K=1 drain rate ({cost['unsigned_drain_us_per_command']:.0f} µs)"
        )
        lines.append(
            f"signing: signed/unsigned drain rate, median of {cost['rounds_measured']} alternated rounds"
            f" {cost['median_rate_ratio']:.3f} (rounds: {ratios}; medians {cost['median_signed_per_s']:.0f} and"
            f" {cost['median_unsigned_per_s']:.0f} /s); worker CPU per command"
            f" {cost['median_signed_worker_cpu_us']:.0f} µs signed,"
            f" {cost['median_unsigned_worker_cpu_us']:.0f} µs unsigned"
        )
    return lines


def print_report(results: dict[str, Any], out: Path, profile_seconds: float) -> None:
    """Print the report of `results` (written to `out`) to stdout."""
    machine = results.get("machine", {})
    print(
        f"taskline benchmark, {machine.get('date')}, {results['commands']:,} commands per drain, "
        f"nproc {machine.get('nproc')}, Python {machine.get('python')}, PostgreSQL {machine.get('postgres')}, "
        f"Redis {machine.get('redis')}, load average {machine.get('loadavg_start')} -> {machine.get('loadavg_end')}"
    )
    print("Shared machine: other test suites ran concurrently; numbers are noisy, ratios are within one run.\n")
    print(render_table(results["table"]))
    print()
    for line in results["notes"]:
        print("- " + line)
    for key in ("profile worker", "profile floor"):
        prof = results["scenarios"].get(key, {}).get("side")
        if prof and "text" in prof:
            print(f"\n{key} (py-spy, {profile_seconds:.0f} s, separate run):\n{prof['text']}")
    for key in ("diagnose floor P=1", "diagnose taskline K=1", "diagnose bulk floor P=1", "diagnose taskline bulk K=1"):
        diag = results["scenarios"].get(key, {})
        side = diag.get("side")
        if not side:
            if "error" in diag:
                print(f"\n{key}: ERROR {diag['error']}")
            continue
        syscalls = side.get("syscalls_per_command")
        print(
            f"\n{key}: {side['redis_commands_per_command']:.2f} Redis commands per command "
            f"{side['redis_commands_by_name_per_command']}; "
            + (
                f"{syscalls:.1f} syscalls per command {side['syscalls_by_name_per_command']}"
                if syscalls
                else "no strace"
            )
        )
    print(f"\nJSON: {out}")
