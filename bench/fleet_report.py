"""The fleet scenario's report (`--only fleet`, bench/scenarios/fleet.py): per-command costs, the
scaling rows with the floor of as many processes beside them, PgBouncer beside direct, and what
saturates where. docs/scaling.md is written from this output."""

from __future__ import annotations

from typing import Any

from bench.scenarios.fleet import PROCESS_COUNTS

__all__ = ["fleet_lines", "fleet_summary"]

_SINGLE_CORE_MS = 1000.0
"""CPU milliseconds one core gives per second: one worker process and one Redis are one core each."""


def _row(key: str, r: dict[str, Any], floor_rate: float | None) -> dict[str, Any]:
    side = r.get("side") or {}
    transactions = r.get("transactions_approx") or 0
    return {
        "scenario": key,
        "commands_per_s": r["commands_per_s"],
        "ratio_to_floor": r["commands_per_s"] / floor_rate if floor_rate else None,
        "redis_commands_per_command": side.get("redis_commands_per_command"),
        "redis_cpu_ms_per_command": side.get("redis_cpu_ms_per_command"),
        "commits_per_command": transactions / r["commands"] if r.get("commands") else None,
        "wal_bytes_per_command": side.get("wal_bytes_per_command"),
        "stored_bytes_per_command": (side["task_bytes_per_command"] + side["processed_command_bytes_per_command"])
        if "task_bytes_per_command" in side
        else None,
        "worker_cpu_ms_per_command": r["client_cpu_ms_per_command"],
        "pg_cpu_ms_per_command": r["pg_cpu_ms_per_command"],
        "machine_busy_pct": r["usage"].get("machine_busy_pct"),
    }


def fleet_summary(results: dict[str, Any]) -> dict[str, Any] | None:
    """The fleet rows and the saturation estimates, or None when the scenario did not run."""
    s = results["scenarios"]
    if not any(key.startswith("10 fleet") for key in s):
        return None
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}

    def rate(key: str) -> float | None:
        value = s.get(key, {}).get("commands_per_s")
        return float(value) if value is not None else None

    keys: list[tuple[str, str | None]] = []
    for k in PROCESS_COUNTS:
        keys += [(f"10 fleet floor P={k}", None), (f"10 fleet taskline K={k}", f"10 fleet floor P={k}")]
    keys += [("10 fleet taskline bulk K=1", "10 fleet floor P=1")]
    keys += [
        (f"10 fleet taskline K=1 {how} #{i}", "10 fleet floor P=1") for i in (1, 2) for how in ("direct", "pgbouncer")
    ]
    keys += [("10 fleet taskline K=2 pgbouncer", "10 fleet floor P=2")]
    for key, base in keys:
        if key not in s:
            continue
        if "error" in s[key]:
            errors[key] = s[key]["error"]
            continue
        rows.append(_row(key, s[key], rate(base) if base else None))
    if "10 fleet pgbouncer" in s:
        errors["10 fleet pgbouncer"] = s["10 fleet pgbouncer"]["error"]

    summary: dict[str, Any] = {"rows": rows, "errors": errors}
    one = next((r for r in rows if r["scenario"] == "10 fleet taskline K=1"), None)
    if one is not None:
        summary["saturation"] = _saturation(one)
    direct = [rate(f"10 fleet taskline K=1 direct #{i}") for i in (1, 2)]
    pooled = [rate(f"10 fleet taskline K=1 pgbouncer #{i}") for i in (1, 2)]
    if all(direct) and all(pooled):
        summary["pgbouncer_to_direct"] = sum(p for p in pooled if p) / sum(d for d in direct if d)
    return summary


def _saturation(row: dict[str, Any]) -> dict[str, float | None]:
    """Commands/s at which each part runs out of one core (or of its whole CPU), from K=1's costs."""

    def per_core(ms: float | None) -> float | None:
        return _SINGLE_CORE_MS / ms if ms else None

    return {
        "one_worker_process": per_core(row["worker_cpu_ms_per_command"]),
        "one_redis": per_core(row["redis_cpu_ms_per_command"]),
        "postgresql_per_core": per_core(row["pg_cpu_ms_per_command"]),
    }


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def fleet_lines(results: dict[str, Any]) -> list[str]:
    """The fleet section of the printed report (empty when the scenario did not run)."""
    summary = results.get("fleet")
    if not summary:
        return []
    headers = ["scenario", "cmd/s", "/floor", "Redis cmd/cmd", "Redis CPU ms", "commits/cmd", "WAL B/cmd", "stored B"]
    headers += ["worker CPU ms", "PG CPU ms", "busy %"]
    lines = [
        [
            r["scenario"],
            _fmt(r["commands_per_s"], ",.0f"),
            _fmt(r["ratio_to_floor"], ".2f") if "floor" not in r["scenario"] else "floor",
            _fmt(r["redis_commands_per_command"], ".2f"),
            _fmt(r["redis_cpu_ms_per_command"], ".4f"),
            _fmt(r["commits_per_command"], ".3f"),
            _fmt(r["wal_bytes_per_command"], ",.0f"),
            _fmt(r.get("stored_bytes_per_command"), ",.0f"),
            _fmt(r["worker_cpu_ms_per_command"], ".3f"),
            _fmt(r["pg_cpu_ms_per_command"], ".3f"),
            _fmt(r["machine_busy_pct"], ".0f"),
        ]
        for r in summary["rows"]
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines, strict=False)]
    out = ["", "fleet (per command over each drain's timed window; docs/scaling.md):"]
    out.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("| " + " | ".join(cells) + " |")
    for key, error in summary["errors"].items():
        out.append(f"{key}: ERROR {error}")
    sat = summary.get("saturation")
    if sat:
        out.append(
            "saturation at K=1's costs: one worker process (one core) "
            f"{_fmt(sat['one_worker_process'], ',.0f')} cmd/s; one Redis (one core) "
            f"{_fmt(sat['one_redis'], ',.0f')} cmd/s; PostgreSQL {_fmt(sat['postgresql_per_core'], ',.0f')} cmd/s"
            " per core it can give its backends"
        )
    if "pgbouncer_to_direct" in summary:
        out.append(
            f"through PgBouncer ({results.get('pgbouncer_version', '?')}, transaction pooling): K=1 drains at "
            f"{summary['pgbouncer_to_direct']:.2f} of the direct rate (two alternating pairs)"
        )
    return out
