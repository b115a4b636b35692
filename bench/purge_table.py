"""The purge benchmark's table and the three ways it is emptied (bench/purge.py runs them).

* `seed`: completed tasks (and open ones) written with `generate_series`, then VACUUM ANALYZE.
* `plain_loop`: the floor, a hand-written loop of `WITH doomed AS (SELECT id … LIMIT 5000 FOR
  UPDATE SKIP LOCKED) DELETE …` statements on one asyncpg connection, each its own transaction,
  timed from the connection's opening to its closing.
* `cli_purge`: `taskline purge --older-than 30d --json` as its own process, timed from the spawn
  to the exit (start-up included), importing taskline from this tree or from an older one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.processes import BIN, clean_environ
from bench.services import Env

USERS = 100
"""The users `bench.services.setup` creates."""

SEED_TASKS = """
INSERT INTO task (id, user_id, title, completed, completed_at, created_at, updated_at,
                  title_issued_at, title_command_id, description_issued_at, description_command_id)
SELECT gen_random_uuid(), 1 + g % $2::int, 'seeded task ' || g, $3::bool,
       CASE WHEN $3::bool THEN {completed_at} END,
       now() - interval '91 days', now() - interval '91 days',
       now() - interval '91 days', gen_random_uuid(), now() - interval '91 days', gen_random_uuid()
FROM generate_series(1, $1::int) AS g
"""
COMPLETED_AT = {
    # tasks complete roughly in the order they were written, within a day: neighbours in the
    # completed_at index are neighbours in the heap
    "correlated": "now() - interval '90 days' + (g::float / $1) * interval '59 days' + random() * interval '1 day'",
    # the worst case: every row of a batch on a different heap page
    "random": "now() - interval '31 days' - random() * interval '59 days'",
}
PLAIN_LOOP = """
WITH doomed AS (
    SELECT id FROM task WHERE completed AND completed_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM task WHERE id IN (SELECT id FROM doomed)
"""
CUTOFF = "SELECT now() - interval '30 days'"


async def seed(env: Env, completed: int, open_: int = 0, order: str = "correlated") -> float:
    """Seconds it took to write the rows and settle the table."""
    conn = await env.bench_conn()
    try:
        began = time.perf_counter()
        sql = SEED_TASKS.format(completed_at=COMPLETED_AT[order])
        await conn.execute(sql, completed, USERS, True)
        if open_:
            await conn.execute(sql, open_, USERS, False)
        await conn.execute("VACUUM ANALYZE task")
        return time.perf_counter() - began
    finally:
        await conn.close()


async def count(env: Env, where: str) -> int:
    conn = await env.bench_conn()
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM task WHERE {where}"))
    finally:
        await conn.close()


async def plain_loop(env: Env, batch: int = 5000) -> dict[str, Any]:
    """The floor: delete every completed task older than 30 days, `batch` rows a statement."""
    began = time.perf_counter()
    conn = await env.bench_conn()
    longest, rows, statements = 0.0, 0, 0
    try:
        cutoff = await conn.fetchval(CUTOFF)
        while True:
            t = time.perf_counter()
            status = await conn.execute(PLAIN_LOOP, cutoff, batch)
            longest = max(longest, time.perf_counter() - t)
            deleted = int(status.split()[-1])
            rows += deleted
            statements += 1
            if deleted < batch:
                break
    finally:
        await conn.close()
    seconds = time.perf_counter() - began
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "longest_tx_s": longest, "tx": statements}


async def cli_purge(env: Env, tree: Path | None = None) -> dict[str, Any]:
    """`taskline purge --older-than 30d --json`, wall time from spawn to exit; `tree`: an older checkout."""
    environ = clean_environ()
    environ.update(DATABASE_URL=env.database_url, REDIS_URL=env.redis_url)
    if tree is not None:  # that tree's taskline and its own producer package, this venv's libraries
        environ["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "producers" / "python")])
    argv = [str(BIN / "taskline"), "purge", "--older-than", "30d", "--json"]
    began = time.perf_counter()
    done = await asyncio.to_thread(subprocess.run, argv, env=environ, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"taskline purge exited with {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rows = int(summary["total"])
    return {
        "rows": rows,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "inside_s": summary["seconds"],  # the purge's own clock, start-up left out
        "longest_tx_s": summary.get("longest_batch_s"),  # an older tree does not report it
        "batches": summary["batches"],
    }
