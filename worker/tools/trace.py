"""The story of a command or a task, from what Redis and PostgreSQL hold (`taskline trace ID`).

A command (its id is its job id): queued (its job key and its place in the queue), running (a
claim, and whose), waiting for a crashed worker's claim to expire, retrying (why: transient
failures so far, or waiting for its task or user; and when it runs next, the queue score),
applied (when, by which worker, with which other commands in its transaction, and how many
deliveries were duplicates), or dead-lettered (why). Several can hold at once: an applied command
whose redelivery is queued will be a duplicate.

A task: its row, every recorded command that touched it in issued_at order, which command won
each field by last-writer-wins (the stamps on the row), the duplicates each command had, and the
dead letters whose payload names it. Processed commands are kept TASKLINE_PROCESSED_RETENTION;
older ones are gone from the story.

Cost: a command's story is one Redis round trip and two or three primary-key or index lookups. A
task's is two index lookups and a scan of the dead_letter payloads for its id (dead letters are
few, and kept TASKLINE_DEAD_LETTER_RETENTION; the callers bound it with a statement timeout).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection
from taskline_producer import keys

from worker.store import trace_queries as queries
from worker.store.outbox_queries import outbox_rows_of
from worker.text import json_object, payload_text, reply_text
from worker.tools.bounded_reads import Oversized, parse_json_bounded, read_job_values
from worker.tools.claims import LEGACY_CLAIM_VALUE, stranded_claims
from worker.tools.fleet import read_heartbeats

__all__ = ["ids_starting_with", "trace", "trace_command", "trace_task"]

QUEUE_SCAN_ROUNDS: Final = 20
"""A prefix is looked for among at most this many ZSCAN pages of the queue (1000 members each)."""
TRANSACTION_SHOWN: Final = 50
"""At most this many of a transaction's other commands are listed (all are counted)."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _command_of(envelope: bytes | Oversized | None) -> dict[str, Any] | None:
    """The function and command inside a job's JSON envelope, when it parses."""
    if isinstance(envelope, Oversized):
        return {"function": f"(too large to read: {int(envelope)} bytes)", "command": None}
    if not envelope:
        return None
    try:
        job = parse_json_bounded(envelope)
        argument = job["a"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return {"function": job.get("f"), "command": argument if isinstance(argument, dict) else None}


async def _redis_side(redis: Redis, queue: str, job_id: str) -> dict[str, Any]:
    (envelope,) = await read_job_values(redis, [job_id])
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zscore(queue, job_id)
        pipe.get(keys.in_progress_key(job_id))
        pipe.pttl(keys.in_progress_key(job_id))
        pipe.get(keys.transient_key(job_id))
        pipe.get(keys.retry_key(job_id))
        pipe.get(keys.outcome_key(job_id))
        score, holder, claim_pttl, transient, tries, outcome = await pipe.execute()
    return {
        "outcome": json_object(outcome),
        "envelope": envelope,
        "score": score,
        "holder": None if holder is None else reply_text(holder),
        "claim_pttl_ms": int(claim_pttl),
        "transient_failures": int(transient) if transient is not None else 0,
        "tries": int(tries) if tries is not None else 0,
    }


async def trace_command(conn: AsyncConnection, redis: Redis, queue: str, job_id: str) -> dict[str, Any] | None:
    """The command's story, or None when nothing anywhere knows the id."""
    side = await _redis_side(redis, queue, job_id)
    states: list[str] = []
    story: dict[str, Any] = {"kind": "command", "id": job_id, "states": states}
    payload = _command_of(side["envelope"])
    if payload is not None:
        story["job"] = payload
    if side["outcome"] is not None:
        story["outcome"] = side["outcome"]  # what the producer reads, when its job asked for outcomes
    if side["holder"] is not None:
        states.append(await _running(redis, queue, side, story))
    if side["score"] is not None and side["holder"] is None:
        states.append(await _queued(conn, side, story))  # a claimed job keeps its place in the queue
    await _applied(conn, job_id, story)
    dead = await queries.dead_letter(conn, job_id)
    if dead is not None:
        states.append("dead-lettered")
        story["dead_letter"] = {
            "reason": dead["reason"],
            "category": dead["category"],
            "attempts": dead["attempts"],
            "failed_at": _iso(dead["failed_at"]),
            "worker_id": dead["worker_id"],
            "signed_by": dead["signed_by"],
            "function": dead["function"],
            "payload_size": dead["payload_size"],
            "payload": payload_text(dead["payload"] or b"", 4096),
        }
    if "applied" in story:
        states.insert(0, "applied")
        if side["score"] is not None or side["holder"] is not None:
            story["note"] = "already applied: the delivery still in Redis will be a duplicate (a no-op)"
    if not states and payload is None and "outcome" not in story:
        return None
    if not states and payload is not None:
        states.append("queued")  # a job key without a place in the queue: about to be claimed
    elif not states:
        states.append(f"outcome: {story['outcome'].get('state', '?')}")  # only the producer's outcome is left
    return story


async def _running(redis: Redis, queue: str, side: dict[str, Any], story: dict[str, Any]) -> str:
    holder = side["holder"]
    heartbeats = await read_heartbeats(redis, queue)
    beats = {str(doc["worker_id"]): doc for doc in [*heartbeats.live, *heartbeats.gone]}
    claim: dict[str, Any] = {
        "worker_id": None if holder == LEGACY_CLAIM_VALUE else holder,
        "expires_in_s": side["claim_pttl_ms"] / 1000,
    }
    story["claim"] = claim
    if holder == LEGACY_CLAIM_VALUE:
        return "running"
    stranded = {c.job_id: c for c in await stranded_claims(redis, queue, heartbeats)}
    mine = stranded.get(story["id"])
    if mine is not None:
        claim.update(
            silent_for_s=mine.silent_for_s, worker_state=mine.worker_state, runs_again_in_s=mine.runs_again_in_s
        )
        if mine.worker_state == "dead":
            return f"waiting for a dead worker's claim to be taken over (within {mine.runs_again_in_s:.1f}s)"
        return f"waiting on a worker that stopped beating (runs again within {mine.runs_again_in_s:.1f}s)"
    if holder in beats:
        return "running"
    return "waiting for its claim to expire (its worker is unknown)"


async def _queued(conn: AsyncConnection, side: dict[str, Any], story: dict[str, Any]) -> str:
    score_ms = float(side["score"])
    now_ms = time.time() * 1000
    story["queue"] = {
        "runs_at": datetime.fromtimestamp(score_ms / 1000, UTC).isoformat(),
        "runs_in_s": round(max(0.0, score_ms - now_ms) / 1000, 3),
        "tries_so_far": side["tries"],
        "transient_failures": side["transient_failures"],
    }
    if side["tries"] == 0:
        return "queued"
    if side["transient_failures"]:
        why = f"{side['transient_failures']} transient failure(s) so far (connection lost, serialization, timeout)"
    elif score_ms <= now_ms:
        # Due again with no claim: a worker crashed or stopped during an earlier try, or a retry
        # fell due; the next claim runs it.
        why = "due for another try (an earlier try ended without an outcome, or its retry fell due)"
    else:
        why = "waiting for its task or user to exist (not yet)"
        job = story.get("job") or {}
        task_id = _uuid(str((job.get("command") or {}).get("task_id")))
        waits_for_task = job.get("function") != "create_task"
        if task_id is not None and waits_for_task and await queries.task_row(conn, task_id) is None:
            why = f"waiting for task {task_id} to exist (not yet)"
    story["queue"]["why"] = why
    return "retrying" if score_ms > now_ms else "queued for another try"


async def _applied(conn: AsyncConnection, job_id: str, story: dict[str, Any]) -> None:
    command_id = _uuid(job_id)
    if command_id is None:
        return
    row = await queries.processed_command(conn, command_id)
    if row is None:
        return
    applied: dict[str, Any] = {
        "function": row["function"],
        "task_id": str(row["task_id"]),
        "issued_at": _iso(row["issued_at"]),
        "applied_at": _iso(row["processed_at"]),
        "worker_id": row["worker_id"],
        "signed_by": row["signed_by"],
        "duplicates": row["duplicates"],
    }
    if row["transaction_id"] is not None:
        together = await queries.transaction_commands(conn, row["processed_at"], row["transaction_id"])
        others = [r for r in together if r["command_id"] != command_id]
        applied["transaction"] = {
            "id": row["transaction_id"],
            "commands": len(together),
            "others": [
                {"command_id": str(r["command_id"]), "function": r["function"], "task_id": str(r["task_id"])}
                for r in others[:TRANSACTION_SHOWN]
            ],
        }
    story["applied"] = applied


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


async def trace_task(conn: AsyncConnection, task_id: UUID) -> dict[str, Any] | None:
    """The task's story, or None when neither its row nor any record names it."""
    row = await queries.task_row(conn, task_id)
    commands = await queries.task_commands(conn, task_id)
    letters = await queries.dead_letters_naming(conn, task_id)
    if row is None and not commands and not letters:
        return None
    winners: dict[UUID, list[str]] = {}
    task: dict[str, Any] | None = None
    if row is not None:
        winners.setdefault(row["title_command_id"], []).append("title")
        winners.setdefault(row["description_command_id"], []).append("description")
        task = {
            "user_id": row["user_id"],
            "title": row["title"],
            "description": row["description"],
            "completed": row["completed"],
            "completed_at": _iso(row["completed_at"]),
            "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]),
        }
        if row["completed_at"] is not None:
            earliest = next(
                (c for c in commands if c["function"] == "complete_task" and c["issued_at"] == row["completed_at"]),
                None,
            )
            if earliest is not None:
                winners.setdefault(earliest["command_id"], []).append("completed_at")
    return {
        "kind": "task",
        "id": str(task_id),
        "task": task,
        "commands": [
            {
                "command_id": str(c["command_id"]),
                "function": c["function"],
                "issued_at": _iso(c["issued_at"]),
                "applied_at": _iso(c["processed_at"]),
                "worker_id": c["worker_id"],
                "signed_by": c["signed_by"],
                "transaction_id": c["transaction_id"],
                "duplicates": c["duplicates"],
                "won": winners.get(c["command_id"], []),
            }
            for c in commands
        ],
        "dead_letters": [
            {
                "job_id": d["job_id"],
                "function": d["function"],
                "reason": d["reason"],
                "category": d["category"],
                "failed_at": _iso(d["failed_at"]),
            }
            for d in letters
        ],
    }


async def outbox_story(outbox: AsyncConnection, command_id: str) -> list[dict[str, Any]] | None:
    """The command's way through the outbox (added, published, re-published, confirmed, or refused
    as invalid), one entry per row; None when the outbox holds no row for it or has no table."""
    from sqlalchemy.exc import DBAPIError

    try:
        rows = await outbox_rows_of(outbox, command_id)
    except DBAPIError:  # no taskline_outbox in that database: nothing to tell
        return None
    if not rows:
        return None
    return [
        {
            "row_id": row["id"],
            "function": row["function"],
            "added_at": _iso(row["added_at"]),
            "published_at": _iso(row["published_at"]),
            "publications": row["publications"],
            "republished": max(0, int(row["publications"]) - 1),
            "confirmed_at": _iso(row["confirmed_at"]),
            "outcome": row["outcome"],
            "invalid_reason": row["invalid_reason"],
            "state": _outbox_state(row),
        }
        for row in rows
    ]


def _outbox_state(row: dict[str, Any]) -> str:
    if row["invalid_reason"]:
        return "refused as invalid (never published)"
    if row["confirmed_at"] is not None:
        return f"confirmed: {row['outcome']}"
    if row["published_at"] is not None:
        again = f", re-published {row['publications'] - 1} times" if row["publications"] > 1 else ""
        return f"published{again}, waiting for its outcome"
    return "added, not yet published"


async def trace(
    conn: AsyncConnection, redis: Redis, queue: str, ident: str, outbox: AsyncConnection | None = None
) -> dict[str, Any] | None:
    """The story of `ident`: a command (or job) id, else a task id; None when neither is known.
    With `outbox` (a connection to the outbox's database), a command's story includes its rows
    in `taskline_outbox`."""
    ident = ident.strip()
    story = await trace_command(conn, redis, queue, ident)
    rows = await outbox_story(outbox, ident) if outbox is not None else None
    if rows:
        story = story or {"kind": "command", "id": ident, "states": [rows[-1]["state"]]}
        story["outbox"] = rows
    if story is not None:
        return story
    task_id = _uuid(ident)
    return await trace_task(conn, task_id) if task_id is not None else None


async def ids_starting_with(conn: AsyncConnection, redis: Redis, queue: str, prefix: str, *, limit: int) -> list[str]:
    """Up to `limit` ids starting with `prefix`, sorted: commands recorded or queued, tasks, dead
    letters. The queue is scanned a bounded number of pages (QUEUE_SCAN_ROUNDS)."""
    found = set(await queries.ids_starting_with(conn, prefix, limit=limit))
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
    cursor = 0
    for _ in range(QUEUE_SCAN_ROUNDS):
        cursor, members = await redis.zscan(queue, cursor, match=pattern, count=1000)
        found.update(m.decode() if isinstance(m, bytes) else str(m) for m, _score in members)
        if cursor == 0 or len(found) > limit:
            break
    return sorted(found)[:limit]
