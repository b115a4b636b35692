"""The floor: a hand-written consumer doing the same work as a taskline worker, and nothing else.

It reads the jobs `TaskProducer` puts on Redis (arq's wire format) with plain redis-py and
applies them with plain asyncpg, so its speed is what Python, redis-py, asyncpg and
PostgreSQL allow on this machine: a bound for what taskline's worker could reach.

Per command it does what the worker must do: pop the job id from the queue (ZPOPMIN, a few at
a time), GET the job JSON, `json.loads` it, validate the command with the contract's
`CreateTask` model, then in one transaction INSERT into processed_command and INSERT into task,
then DEL the job key. What it leaves out is everything arq and taskline add around that:
claiming the job (in-progress key, WATCH/MULTI), the try counter, timeouts, retries, dead
letters, metrics, logs, group commit bookkeeping, SQLAlchemy at run time (its statements are
built from the worker's table models once, at start, and sent to asyncpg as plain SQL text).

Modes:

* `single`: one transaction per command, single-row statements (`--pop` ids per ZPOPMIN);
  they record no worker or transaction id;
* `bulk-commands`: ZPOPMIN 100 single-command jobs, MGET them, apply them in one transaction
  with the worker's own multi-row (unnest) statements and parameters from
  `worker.pipeline.statements`, DEL them;
* `bulk-jobs`: pop one `apply_commands` job (made by `TaskProducer.send_bulk`), validate its
  commands, apply them in one transaction with the same multi-row statements.

Run by `bench.run` as its own process (`python -m bench.floor ...`): it prints `ready` once
connected, and a JSON line of counters when it stops. Without `--serve` it waits for the queue
to appear, drains it with `--concurrency` coroutines each popping `--pop` ids at a time, and
waits for SIGTERM; with `--serve` (single mode) one poller looks at the queue every
`--poll-delay` when it is empty, as arq's loop does, and feeds `--concurrency` appliers until
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import Integer, Text, TextClause, bindparam, cast, exists, false, func, select
from sqlalchemy.dialects.postgresql import UUID, insert
from taskline_producer.contract import CreateTask
from taskline_producer.keys import JOB_KEY_PREFIX

from worker.pipeline import statements
from worker.store.compiled import compiled_text
from worker.store.models import ProcessedCommand, Task, User, table_of


def _single_statements() -> tuple[TextClause, TextClause]:
    """The single-row statements of `single` mode, built from the table models like the worker's:
    record one command (no worker or transaction id), and create its task if its user exists."""
    commands, tasks, users = table_of(ProcessedCommand), table_of(Task), table_of(User)
    command_id, task_id = cast(bindparam("command_id"), UUID), cast(bindparam("task_id"), UUID)
    issued_at = cast(bindparam("issued_at"), tasks.c.title_issued_at.type)
    user_id = cast(bindparam("user_id"), Integer)
    record = (
        insert(commands)
        .values(
            command_id=command_id,
            function=cast(bindparam("function"), Text),
            task_id=task_id,
            issued_at=issued_at,
            processed_at=func.now(),
        )
        .on_conflict_do_nothing(index_elements=[commands.c.command_id])
        .returning(commands.c.command_id)
    )
    row = select(
        task_id,
        user_id,
        cast(bindparam("title"), Text),
        cast(bindparam("description"), Text),
        false(),
        func.now(),
        func.now(),
        issued_at,
        command_id,
        issued_at,
        command_id,
    ).where(exists().where(users.c.id == user_id))
    t = tasks.c
    columns = statements.new_task_columns()
    create = insert(tasks).from_select(columns, row).on_conflict_do_nothing(index_elements=[t.id]).returning(t.id)
    return compiled_text(record), compiled_text(create)


def positional(clause: TextClause) -> tuple[str, list[str]]:
    """A SQLAlchemy text() statement with `:name` binds as asyncpg SQL with `$n`, and the names."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return re.sub(r"(?<![:\w]):(\w+)", number, clause.text), names


FLOOR_ID = "bench-floor"
"""Recorded as the worker id of the commands the bulk floor applies, as a worker records its own."""

_RECORD_ONE, _CREATE_ONE = _single_statements()
INSERT_COMMAND, INSERT_COMMAND_PARAMS = positional(_RECORD_ONE)
INSERT_TASK, INSERT_TASK_PARAMS = positional(_CREATE_ONE)
RECORD_COMMANDS, RECORD_PARAMS = positional(statements.RECORD_COMMANDS)
INSERT_TASKS, INSERT_TASKS_PARAMS = positional(statements.INSERT_TASKS)


Conn = Any  # an asyncpg Connection or the pool's proxy of one


@dataclass
class Counters:
    commands: int = 0
    transactions: int = 0
    duplicates: int = 0
    refused: int = 0


async def apply_bulk(conn: Conn, commands: list[CreateTask], counters: Counters) -> None:
    """The worker's two multi-row statements, in one transaction, with the worker's own
    parameters (`statements.record_arrays` and `statements.task_arrays`)."""
    async with conn.transaction():
        recorded = statements.record_arrays(commands, FLOOR_ID)
        rows = await conn.fetch(RECORD_COMMANDS, *[recorded[n] for n in RECORD_PARAMS])
        fresh = {row[0] for row in rows if row[1] == 0}  # (command_id, duplicates)
        todo = [c for c in commands if c.command_id in fresh]
        counters.duplicates += len(commands) - len(todo)
        if todo:
            tasks = statements.task_arrays(todo)
            rows = await conn.fetch(INSERT_TASKS, *[tasks[n] for n in INSERT_TASKS_PARAMS])
            counters.refused += len(todo) - len(rows)
    counters.transactions += 1
    counters.commands += len(commands)


async def apply_single(conn: Conn, redis: Redis, job_id: str, counters: Counters) -> None:
    """One job, one command, one transaction of two single-row statements."""
    key = JOB_KEY_PREFIX + job_id
    job = json.loads(await redis.get(key))
    command = CreateTask.model_validate(job["a"][0])
    async with conn.transaction():
        claimed = await conn.fetchval(INSERT_COMMAND, *[getattr(command, n) for n in INSERT_COMMAND_PARAMS])
        if claimed is None:
            counters.duplicates += 1
        else:
            created = await conn.fetchval(INSERT_TASK, *[getattr(command, n) for n in INSERT_TASK_PARAMS])
            if created is None:
                counters.refused += 1
    counters.transactions += 1
    counters.commands += 1
    await redis.delete(key)


async def consume(
    mode: str, redis: Redis, pool: asyncpg.Pool, queue: str, pop: int, stopping: asyncio.Event, counters: Counters
) -> None:
    """Drain: pop a few job ids, apply them, again, until the queue is empty."""
    async with pool.acquire() as conn:
        while not stopping.is_set():
            popped = await redis.zpopmin(queue, pop)
            if not popped:
                return
            job_ids = [member.decode() for member, _ in popped]
            if mode == "single":
                for job_id in job_ids:
                    await apply_single(conn, redis, job_id, counters)
            elif mode == "bulk-commands":
                keys = [JOB_KEY_PREFIX + job_id for job_id in job_ids]
                commands = [CreateTask.model_validate(json.loads(raw)["a"][0]) for raw in await redis.mget(keys)]
                await apply_bulk(conn, commands, counters)
                await redis.delete(*keys)
            else:  # bulk-jobs
                for job_id in job_ids:
                    key = JOB_KEY_PREFIX + job_id
                    job = json.loads(await redis.get(key))
                    commands = [CreateTask.model_validate(item["command"]) for item in job["a"][0]]
                    await apply_bulk(conn, commands, counters)
                    await redis.delete(key)


async def serve(
    redis: Redis,
    pool: asyncpg.Pool,
    queue: str,
    concurrency: int,
    poll_delay: float,
    stopping: asyncio.Event,
    counters: Counters,
) -> None:
    """Steady load (single mode): one poller, like arq's loop, hands job ids to `concurrency`
    appliers; it polls an empty queue every `poll_delay` (arq's poll_delay), else at once."""
    ready: asyncio.Queue[str] = asyncio.Queue(maxsize=concurrency)

    async def poller() -> None:
        while not stopping.is_set():
            free = max(1, ready.maxsize - ready.qsize())
            popped = await redis.zpopmin(queue, free)
            if not popped:
                await asyncio.sleep(poll_delay)
                continue
            for member, _ in popped:
                await ready.put(member.decode())

    async def applier() -> None:
        async with pool.acquire() as conn:
            while True:
                job_id = await ready.get()
                await apply_single(conn, redis, job_id, counters)

    tasks = [asyncio.create_task(poller())] + [asyncio.create_task(applier()) for _ in range(concurrency)]
    await stopping.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--mode", choices=["single", "bulk-commands", "bulk-jobs"], default="single")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pop", type=int, default=None, help="job ids per ZPOPMIN (default 5; 100 for bulk-commands)")
    parser.add_argument(
        "--poll-delay",
        type=float,
        default=0.01,
        help="--serve: how often the poller looks at an empty queue (arq's poll_delay, 10 ms by default)",
    )
    parser.add_argument("--serve", action="store_true", help="poll until SIGTERM instead of draining once")
    parser.add_argument("--uvloop", action="store_true", help="(read by __main__) run on uvloop's event loop")
    args = parser.parse_args(argv)
    pop = args.pop or {"single": 5, "bulk-commands": 100, "bulk-jobs": 1}[args.mode]

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    redis = Redis.from_url(args.redis_url)
    pool = await asyncpg.create_pool(
        args.database_url.replace("postgresql+asyncpg://", "postgresql://"),
        min_size=args.concurrency,
        max_size=args.concurrency,
        server_settings={"application_name": "taskline-bench-floor"},
    )
    counters = Counters()
    try:
        await redis.ping()
        print("ready", flush=True)
        if args.serve:
            if args.mode != "single":
                raise SystemExit("--serve is for --mode single")
            await serve(redis, pool, args.queue, args.concurrency, args.poll_delay, stopping, counters)
        else:
            while not stopping.is_set() and not await redis.exists(args.queue):  # noqa: ASYNC110 (polling Redis)
                await asyncio.sleep(0.002)
            await asyncio.gather(
                *[consume(args.mode, redis, pool, args.queue, pop, stopping, counters) for _ in range(args.concurrency)]
            )
            # Drained: stay up (connections open) until told to stop, so that the benchmark can
            # still read this process's CPU time and that of its PostgreSQL backends.
            await stopping.wait()
    finally:
        await pool.close()
        await redis.aclose()
        print(json.dumps(asdict(counters)), flush=True)


if __name__ == "__main__":
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main(sys.argv[1:]))
