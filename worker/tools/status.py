"""The fleet at a glance, as data: what `taskline status` prints and the web page shows.

Everything comes from what exists already: the queue (two ZCOUNTs), the heartbeats (live
workers, schedulers, and the kept heartbeats of workers that stopped beating, for the claims
waiting to expire), the history samples (rates and latency percentiles), and the dead_letter
table (a count, and the last day grouped by function and kind). Reading it costs the workers
nothing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from taskline_producer import keys

from worker.observe.health import count_dead_letters, queue_depth
from worker.store.dead_letter_queries import DEAD_LETTER_GROUPS_SINCE, group_recent_dead_letters
from worker.text import describe_error
from worker.tools.claims import stranded_claims
from worker.tools.fair_limits import read_fairness
from worker.tools.fleet import read_heartbeats, summary
from worker.tools.fleet_watch import sample_now
from worker.tools.history import KEEP_S, counters_of, read_history, summarise
from worker.tools.pause import read_pause
from worker.tools.relays import outbox_status

__all__ = ["collect_dead_letters", "collect_status", "read_dead_letters"]


async def collect_dead_letters(engine: AsyncEngine, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """The dead letters' count and groups, or {"error": ...} when the database cannot be read."""
    try:
        return await read_dead_letters(engine, timeout_s=timeout_s)
    except Exception as exc:
        return {"error": f"database unreachable: {describe_error(exc, [engine.url.password or ''])}"}


async def read_dead_letters(engine: AsyncEngine, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """The dead letters' count and the last day's groups; raises when the database cannot be read."""
    async with asyncio.timeout(timeout_s), engine.connect() as conn:
        total = await count_dead_letters(conn)
        rows = await group_recent_dead_letters(conn)
    return {
        "total": total,
        "since": DEAD_LETTER_GROUPS_SINCE,
        "groups": [
            {
                "function": row["function"],
                "category": row["category"],
                "count": int(row["count"]),
                "last_at": row["last_at"].isoformat(),
                "latest_reason": row["latest_reason"][:300],
            }
            for row in rows
        ],
    }


def _worker_row(document: dict[str, Any]) -> dict[str, Any]:
    data = summary(document)
    counters = counters_of(document)
    return {
        "worker_id": data.get("worker_id"),
        "host": data.get("host"),
        "pid": data.get("pid"),
        "version": data.get("version"),
        "started_at": data.get("started_at"),
        "jobs_running": data.get("jobs_running"),
        "jobs_done": data.get("jobs_done"),
        "jobs_failed": data.get("jobs_failed"),
        "commands_applied": counters.applied,
        "last_beat_age_s": data.get("age_s"),
        "state": "stopping" if data.get("stopping") else ("ready" if data["ready"] else "database down"),
        "claiming_paused": data.get("claiming_paused"),
    }


async def collect_status(
    redis: Redis,
    engine: AsyncEngine | None,
    queue: str,
    *,
    sample_every_s: float,
    now: datetime | None = None,
    keep_s: float = KEEP_S,
) -> dict[str, Any]:
    """Everything `taskline status` shows, as one JSON-able dict. Takes this period's history
    sample when no other process has (so rates appear even without a scheduler or web process)."""
    heartbeats = await read_heartbeats(redis, queue)
    claims = await stranded_claims(redis, queue, heartbeats)
    ready, deferred = await queue_depth(redis, queue)
    pause = await read_pause(redis, queue)
    fairness = await read_fairness(redis, queue)
    schedulers = await read_heartbeats(redis, keys.scheduler_queue(queue))
    await sample_now(redis, queue, sample_every_s, claims, heartbeats, keep_s)
    hour = await read_history(redis, queue, since_s=3600)
    newest = hour[-1]["t"] if hour else 0.0
    minute = [sample for sample in hour if sample["t"] > newest - 60]
    purges = [doc["last_purge"] for doc in schedulers.live if doc.get("last_purge")]
    last_purge = max(purges, key=lambda p: str(p.get("now", ""))) if purges else None
    return {
        "queue": queue,
        "at": (now or datetime.now(UTC)).isoformat(),
        "depth": {
            "ready": ready,
            "deferred": deferred,
            "in_progress": sum(int(w.get("jobs_running") or 0) for w in heartbeats.live),
            "claims_waiting_to_expire": len(claims),
            "in_fair_lanes": fairness.jobs_waiting,
        },
        "fairness": fairness.as_dict(),
        "claims_waiting_to_expire": [claim.as_dict() for claim in claims],
        "claiming_paused": pause is not None,
        "pause": pause,
        "rates": {"last_minute": summarise(minute).as_dict(), "last_hour": summarise(hour).as_dict()},
        "history": [
            {
                "t": s["t"],
                "per_s": (s["applied"] + s["duplicates"]) / s["dt"] if s.get("dt") else 0.0,
                "p95": summarise([s]).latency_quantiles["p95"],
                "ready": s.get("ready"),
                "deferred": s.get("deferred"),
                "dead_lettered": s.get("dead_lettered"),
            }
            for s in hour
        ],
        "workers": [_worker_row(doc) for doc in heartbeats.live],
        "stopped_workers": [
            {"worker_id": d["worker_id"], "host": d.get("host"), "silent_for_s": d.get("age_s")}
            for d in heartbeats.gone
        ],
        "schedulers": [_worker_row(doc) for doc in schedulers.live],
        "last_purge": last_purge,
        "outbox": await outbox_status(redis, queue),
        "dead_letters": await collect_dead_letters(engine) if engine is not None else None,
    }
