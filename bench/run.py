"""taskline's benchmark: throughput, latency and cost of the worker against a hand-written floor.

    .venv/bin/python -m bench.run [--quick] [--commands N] [--out bench/results/latest.json]
                                  [--profile] [--only SCENARIO ...]

It creates its own PostgreSQL database (`taskline_bench_<random>`, migrated, users 1..100) and
claims a Redis database number of its own (the same claim key the test suite uses, so the two
never share one), runs every scenario against the same services in one go, prints a table and
writes every number to a JSON file, then drops the database and flushes its Redis database.
See bench/README.md for what each scenario measures and how to read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import asyncpg
from redis.asyncio import Redis
from taskline_producer.client import TaskProducer
from taskline_producer.contract import CreateTask
from taskline_producer.keys import IN_PROGRESS_KEY_PREFIX, JOB_KEY_PREFIX, RESULT_KEY_PREFIX, RETRY_KEY_PREFIX

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dev dependency; /proc is the fallback
    psutil = None

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_DATABASE_URL = os.environ.get(
    "TASKLINE_BENCH_ADMIN_DATABASE_URL",
    os.environ.get("TASKLINE_TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
REDIS_BASE_URL = os.environ.get(
    "TASKLINE_BENCH_REDIS_URL", os.environ.get("TASKLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
)
REDIS_CLAIM_KEY = "taskline-test:claimed-by"  # the test suite's claim key: a claimed db is never shared
USERS = 100
BULK_SIZE = 100
POLL_S = 0.05
STALL_S = 60.0
SCENARIOS = ("enqueue", "floor", "bulk-floor", "drain", "drain-bulk", "latency", "outcomes")
OUTCOME_TTL_S = 600
"""Scenario 7: how long the drained commands' outcomes are kept (they are left to expire)."""


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# -- services ----------------------------------------------------------------------------------


@dataclass
class Env:
    run_id: str
    db_name: str
    database_url: str
    redis_url: str
    redis_db: int
    redis: Redis
    admin: asyncpg.Connection
    tmp: Path
    port_redis: int
    notes: list[str] = field(default_factory=list)

    async def bench_conn(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)


def _swap_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def claim_redis_db() -> tuple[int, Redis]:
    """A Redis database number nobody else uses (scanned from 15 down; tests scan up from 1)."""
    for db in range(15, 0, -1):
        client = Redis.from_url(f"{REDIS_BASE_URL}/{db}")
        claimed = await client.set(REDIS_CLAIM_KEY, "bench", nx=True, ex=7200)
        if claimed and await client.dbsize() == 1:
            return db, client
        if claimed:  # empty when we looked, not when we claimed: give it back
            await client.delete(REDIS_CLAIM_KEY)
        await client.aclose()
    raise SystemExit("no free Redis database (15..1) to claim for the benchmark")


async def setup() -> Env:
    run_id = secrets.token_hex(4)
    db_name = f"taskline_bench_{run_id}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    database_url = _swap_database(ADMIN_DATABASE_URL, db_name)
    from worker.store.migrate import upgrade

    await asyncio.to_thread(upgrade, database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            'INSERT INTO "user" (id, email, hashed_password) VALUES ($1, $2, $3)',
            [(i, f"bench{i}@example.com", "!") for i in range(1, USERS + 1)],
        )
    finally:
        await conn.close()
    redis_db, redis = await claim_redis_db()
    tmp = Path(tempfile.mkdtemp(prefix="taskline-bench-"))
    port = int(REDIS_BASE_URL.rsplit(":", 1)[-1].split("/")[0]) if REDIS_BASE_URL.count(":") >= 2 else 6379
    log(f"database {db_name}, Redis db {redis_db}, logs in {tmp}")
    return Env(run_id, db_name, database_url, f"{REDIS_BASE_URL}/{redis_db}", redis_db, redis, admin, tmp, port)


async def teardown(env: Env, keep_logs: bool) -> None:
    with contextlib.suppress(Exception):
        await env.redis.flushdb()
        await env.redis.aclose()
    with contextlib.suppress(Exception):
        await env.admin.execute(f'DROP DATABASE IF EXISTS "{env.db_name}" WITH (FORCE)')
        await env.admin.close()
    if not keep_logs:
        shutil.rmtree(env.tmp, ignore_errors=True)
    log(f"dropped {env.db_name}, flushed Redis db {env.redis_db}")


async def reset_tables(env: Env) -> None:
    conn = await env.bench_conn()
    try:
        await conn.execute("TRUNCATE task, processed_command, dead_letter")
    finally:
        await conn.close()


async def xact_counts(env: Env) -> tuple[int, int]:
    await env.admin.execute("SELECT pg_stat_clear_snapshot()")
    row = await env.admin.fetchrow(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1", env.db_name
    )
    assert row is not None, env.db_name
    return int(row[0]), int(row[1])


async def backend_pids(env: Env, exclude: Sequence[int] = ()) -> list[int]:
    rows = await env.admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", env.db_name)
    return [r[0] for r in rows if r[0] not in exclude]


# -- measuring processes -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    try:
        if psutil is not None:
            t = psutil.Process(pid).cpu_times()
            return float(t.user + t.system)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except Exception:
        return None


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if psutil is not None:
        with contextlib.suppress(Exception):
            return float(psutil.Process(pid).memory_info().rss) / 2**20
    return None


def events(pid: int) -> dict[str, int]:
    """Minor page faults and context switches of a process so far."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found["minor_faults"] = int(fields[7])
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                found["voluntary_switches"] = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                found["involuntary_switches"] = int(line.split()[1])
    return found


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far (all cores)."""
    if psutil is None:
        return None
    t = psutil.cpu_times()
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


class Meter:
    """CPU of our client processes and of their PostgreSQL backends over an interval."""

    def __init__(self, env: Env, pids: list[int], exclude_backends: Sequence[int] = ()) -> None:
        self.env = env
        self.pids = pids
        self.exclude = list(exclude_backends)
        self.proc0: dict[int, float] = {}
        self.pg0: dict[int, float] = {}
        self.machine0: tuple[float, float] | None = None
        self.t0 = 0.0

    async def start(self) -> None:
        self.proc0 = {pid: cpu_seconds(pid) or 0.0 for pid in self.pids}
        self.events0 = {pid: events(pid) for pid in self.pids}
        self.pg0 = {pid: cpu_seconds(pid) or 0.0 for pid in await backend_pids(self.env, self.exclude)}
        self.machine0 = machine_cpu()
        self.t0 = time.perf_counter()

    async def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        proc = sum((cpu_seconds(pid) or 0.0) - self.proc0.get(pid, 0.0) for pid in self.pids)
        counted: dict[str, int] = {}
        for pid in self.pids:
            for name, value in events(pid).items():
                counted[name] = counted.get(name, 0) + value - self.events0.get(pid, {}).get(name, 0)
        pg = 0.0
        for pid in await backend_pids(self.env, self.exclude):
            now = cpu_seconds(pid)
            if now is not None:
                pg += now - self.pg0.get(pid, 0.0)
        result: dict[str, Any] = {"wall_s": wall, "client_cpu_s": proc, "pg_cpu_s": pg, "client_events": counted}
        machine1 = machine_cpu()
        if self.machine0 and machine1:
            busy = machine1[0] - self.machine0[0]
            total = machine1[1] - self.machine0[1]
            ncpu = os.cpu_count() or 1
            result["machine_busy_pct"] = 100.0 * busy / total if total else None
            # what the rest of the machine (other agents' test suites, ...) used meanwhile
            result["others_cpu_s"] = max(0.0, busy - proc - pg)
            result["machine_cores_busy"] = busy / total * ncpu if total else None
        return result


@dataclass
class Proc:
    label: str
    process: asyncio.subprocess.Process
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid


def clean_environ() -> dict[str, str]:
    """Our environment without taskline settings, importing taskline from this source tree."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("TASKLINE_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    return environ


UVLOOP_WORKER = (
    "import asyncio, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from worker.cli.app import main; main()"
)
"""`taskline worker` with uvloop's event loop (asyncio.run honours the policy on Python 3.11)."""


async def start_worker(
    env: Env, queue: str, index: int, extra_env: dict[str, str] | None = None, uvloop: bool = False
) -> Proc:
    environ = clean_environ()
    environ.update(
        DATABASE_URL=env.database_url,
        REDIS_URL=env.redis_url,
        TASKLINE_QUEUE=queue,
        TASKLINE_LOG_LEVEL="WARNING",
        TASKLINE_LOG_FORMAT="json",
    )
    environ.update(extra_env or {})
    log_path = env.tmp / f"worker-{queue.rsplit(':', 1)[-1]}-{index}.log"
    with log_path.open("ab") as out:
        argv = [sys.executable, "-c", UVLOOP_WORKER, "worker"] if uvloop else [str(BIN / "taskline"), "worker"]
        process = await asyncio.create_subprocess_exec(
            *argv, env=environ, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT)
        )
    return Proc(f"worker-{index}", process, log_path)


async def start_floor(
    env: Env, queue: str, mode: str, concurrency: int, serve: bool = False, uvloop: bool = False
) -> Proc:
    argv = [
        sys.executable,
        "-m",
        "bench.floor",
        "--database-url",
        env.database_url,
        "--redis-url",
        env.redis_url,
        "--queue",
        queue,
        "--mode",
        mode,
        "--concurrency",
        str(concurrency),
    ]
    if serve:
        argv.append("--serve")
    if uvloop:
        argv.append("--uvloop")
    process = await asyncio.create_subprocess_exec(
        *argv, env=clean_environ(), stdout=asyncio.subprocess.PIPE, cwd=str(ROOT)
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"floor process did not start: {line!r}")
    return Proc(f"floor-{mode}", process, None)


def redis_connections(pid: int, port: int) -> int:
    if psutil is None:
        return 1
    try:
        return sum(
            1
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        )
    except Exception:
        return 0


async def wait_workers_ready(env: Env, queue: str, procs: list[Proc], limit_s: float = 60.0) -> None:
    """arq writes `<queue>:health-check` on its first poll; each process must hold a Redis connection."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.process.returncode is not None:
                raise RuntimeError(f"{p.label} exited with {p.process.returncode}: {tail(p.log_path)}")
        if await env.redis.exists(f"{queue}:health-check") and all(
            redis_connections(p.pid, env.port_redis) > 0 for p in procs
        ):
            await asyncio.sleep(0.5)
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"workers not ready after {limit_s} s: {[tail(p.log_path) for p in procs]}")


def tail(path: Path | None, lines: int = 5) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def stop(procs: list[Proc], limit_s: float = 30.0) -> list[str]:
    """SIGTERM each of our processes, wait, kill the ones that hang; returns floor stdout tails."""
    for p in procs:
        if p.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.process.send_signal(signal.SIGTERM)
    outputs = []
    for p in procs:
        try:
            if p.process.stdout is not None:
                out = await asyncio.wait_for(p.process.stdout.read(), limit_s)
                outputs.append(out.decode(errors="replace"))
            await asyncio.wait_for(p.process.wait(), limit_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                p.process.kill()
            await p.process.wait()
    return outputs


def warnings_in(procs: list[Proc]) -> list[str]:
    lines: list[str] = []
    for p in procs:
        if p.log_path and p.log_path.exists():
            lines += [line for line in p.log_path.read_text(errors="replace").splitlines() if line.strip()]
    return lines


# -- commands --------------------------------------------------------------------------------------


def make_commands(n: int, offset: int = 0) -> list[CreateTask]:
    now = datetime.now(UTC)
    return [
        CreateTask(
            command_id=uuid4(),
            issued_at=now,
            task_id=uuid4(),
            user_id=(offset + i) % USERS + 1,
            title=f"bench task {offset + i}",
            description="created by the taskline benchmark",
        )
        for i in range(n)
    ]


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def enqueue_staged(
    env: Env, staging: str, commands: list[CreateTask], bulk: bool, outcome_ttl: int | None = None
) -> list[str]:
    """Queue the commands on a staging key (renamed to the real queue when the clock starts)."""
    producer = TaskProducer(env.redis, queue=staging)
    if bulk:
        ids = []
        for start in range(0, len(commands), BULK_SIZE):
            receipt = await producer.send_bulk(commands[start : start + BULK_SIZE], outcome_ttl=outcome_ttl)
            ids.append(receipt.job_id)
        return ids
    report = await producer.send_many(commands, outcome_ttl=outcome_ttl)
    if report.duplicates:
        raise RuntimeError(f"{len(report.duplicates)} duplicates while queueing")
    return [str(c.command_id) for c in commands]


async def leftovers(env: Env, queue: str, job_ids: list[str]) -> dict[str, int]:
    """Keys arq could leave per job (job, in-progress, retry, result), and the rest of the db."""
    counts = {"job": 0, "in_progress": 0, "retry": 0, "result": 0}
    prefixes = {
        "job": JOB_KEY_PREFIX,
        "in_progress": IN_PROGRESS_KEY_PREFIX,
        "retry": RETRY_KEY_PREFIX,
        "result": RESULT_KEY_PREFIX,
    }
    for start in range(0, len(job_ids), 1000):
        chunk = job_ids[start : start + 1000]
        async with env.redis.pipeline(transaction=False) as pipe:
            for name in counts:
                pipe.exists(*[prefixes[name] + job_id for job_id in chunk])
            for name, found in zip(counts, await pipe.execute(), strict=True):
                counts[name] += int(found)
    arq_keys = 0
    async for _ in env.redis.scan_iter(match=JOB_KEY_PREFIX.split(":")[0] + ":*", count=1000):
        arq_keys += 1
    counts["queue_members"] = int(await env.redis.zcard(queue))
    counts["arq_keys_in_db"] = arq_keys
    counts["per_job_total"] = counts["job"] + counts["in_progress"] + counts["retry"] + counts["result"]
    return counts


# -- scenarios ---------------------------------------------------------------------------------------


Starter = Callable[[str], Awaitable[list[Proc]]]
Side = Callable[[list[Proc], asyncio.Event, asyncio.Event], Coroutine[Any, Any, Any]]
"""Runs beside a drain: sets its first event once attached (the clock starts after it), and
may stop when the second is set (all tasks are in)."""


async def drain(
    env: Env,
    name: str,
    n: int,
    bulk: bool,
    start: Starter,
    kind: str,
    during: Side | None = None,
    outcome_ttl: int | None = None,
) -> dict[str, Any]:
    """Queue n commands (asking for outcomes if `outcome_ttl`), start the consumers, release the
    queue, time until n tasks exist."""
    await reset_tables(env)
    queue = f"taskline:bench:{env.run_id}:{name}"
    staging = f"{queue}:staging"
    commands = make_commands(n)
    job_ids = await enqueue_staged(env, staging, commands, bulk, outcome_ttl)
    del commands
    procs = await start(queue)
    side_task: asyncio.Task[Any] | None = None
    try:
        if kind == "worker":
            await wait_workers_ready(env, queue, procs)
        x0 = await xact_counts(env)
        monitor = await env.bench_conn()
        monitor_queries = 0
        meter = Meter(env, [p.pid for p in procs], exclude_backends=[monitor.get_server_pid()])
        done = asyncio.Event()
        if during is not None:
            attached = asyncio.Event()
            side_task = asyncio.create_task(during(procs, attached, done))
            await asyncio.wait_for(attached.wait(), 30)
        await meter.start()
        t0 = time.perf_counter()
        await env.redis.rename(staging, queue)
        timeline: list[tuple[float, int]] = []
        last_change, last_count, count = t0, -1, 0
        rss: dict[int, float] = {}
        while True:
            await asyncio.sleep(POLL_S)
            count = await monitor.fetchval("SELECT count(*) FROM task")
            monitor_queries += 1
            now = time.perf_counter()
            timeline.append((round(now - t0, 3), count))
            if count != last_count:
                last_change, last_count = now, count
            if count >= n:
                break
            if now - last_change > STALL_S:
                raise RuntimeError(f"stalled at {count}/{n} tasks for {STALL_S:.0f} s")
            for p in procs:
                if p.process.returncode is not None and kind == "worker":
                    raise RuntimeError(f"{p.label} exited with {p.process.returncode}: {tail(p.log_path)}")
        elapsed = time.perf_counter() - t0
        done.set()
        usage = await meter.stop()
        for p in procs:
            value = peak_rss_mib(p.pid)
            if value is not None:
                rss[p.pid] = value
        processed = await monitor.fetchval("SELECT count(*) FROM processed_command")
        dead = await monitor.fetchval("SELECT count(*) FROM dead_letter")
        monitor_queries += 2
        await monitor.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and await env.redis.zcard(queue):  # noqa: ASYNC110 (polling Redis)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the last jobs' finish_job pipelines
        left = await leftovers(env, queue, job_ids) if kind == "worker" else None
        if side_task is not None:
            side_result = await side_task
            side_task = None
        else:
            side_result = None
    finally:
        if side_task is not None:
            side_task.cancel()
        outputs = await stop(procs)
    await asyncio.sleep(0.5)  # backends exit and flush their statistics
    x1 = await xact_counts(env)
    transactions = x1[0] - x0[0] - monitor_queries
    result: dict[str, Any] = {
        "commands": n,
        "jobs": len(job_ids),
        "processes": len(procs),
        "elapsed_s": elapsed,
        "commands_per_s": n / elapsed,
        "steady_commands_per_s": steady_rate(timeline, n),
        "client_cpu_ms_per_command": 1000 * usage["client_cpu_s"] / n,
        "pg_cpu_ms_per_command": 1000 * usage["pg_cpu_s"] / n,
        "client_events_per_command": {k: round(v / n, 3) for k, v in usage["client_events"].items()},
        "peak_rss_mib": max(rss.values()) if rss else None,
        "transactions_approx": transactions,
        "commands_per_transaction_approx": n / transactions if transactions > 0 else None,
        "rollbacks": x1[1] - x0[1],
        "processed_command_rows": processed,
        "dead_letters": dead,
        "usage": usage,
        "timeline": timeline[:: max(1, len(timeline) // 200)],
    }
    if left is not None:
        result["redis_leftovers"] = left
    if kind == "worker":
        logged = warnings_in(procs)
        result["worker_log_lines"] = len(logged)
        result["worker_log_sample"] = logged[:5]
    else:
        counters = [json.loads(o.strip().splitlines()[-1]) for o in outputs if o.strip()]
        result["floor_counters"] = counters
    if side_result is not None:
        result["side"] = side_result
    return result


def steady_rate(timeline: list[tuple[float, int]], n: int) -> float | None:
    """Commands/s between 10 % and 90 % of the tasks (no start-up or tail effects)."""

    def when(target: float) -> float | None:
        previous = (0.0, 0)
        for t, c in timeline:
            if c >= target:
                t0, c0 = previous
                return t0 + (t - t0) * ((target - c0) / (c - c0)) if c != c0 else t
            previous = (t, c)
        return None

    a, b = when(0.1 * n), when(0.9 * n)
    if a is None or b is None or b <= a:
        return None
    return 0.8 * n / (b - a)


async def steady_latency(
    env: Env,
    name: str,
    rate: float,
    duration: float,
    start: Starter,
    kind: str,
    sender: Callable[[Redis, str], Callable[[CreateTask], Awaitable[Any]]] | None = None,
) -> dict[str, Any]:
    """Send single create_task commands at a fixed rate; latency = task.created_at - issued_at.
    `sender(redis, queue)` makes the send function (default: TaskProducer.send, which pushes the
    wake-up token)."""
    await reset_tables(env)
    queue = f"taskline:bench:{env.run_id}:{name}"
    procs = await start(queue)
    try:
        if kind == "worker":
            await wait_workers_ready(env, queue, procs)
        send = sender(env.redis, queue) if sender is not None else TaskProducer(env.redis, queue=queue).send
        await send(make_commands(1)[0])  # loads the script; also warms the consumer up
        monitor = await env.bench_conn()
        await wait_count(monitor, 1, 30)
        await monitor.execute("TRUNCATE task, processed_command")
        meter = Meter(env, [p.pid for p in procs], exclude_backends=[monitor.get_server_pid()])
        await meter.start()
        interval = 1.0 / rate
        t_start = time.perf_counter()
        sent, late = 0, 0
        send_times: list[float] = []
        while True:
            target = t_start + sent * interval
            if target - t_start >= duration:
                break
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            command = CreateTask(
                command_id=uuid4(),
                issued_at=datetime.now(UTC),
                task_id=uuid4(),
                user_id=sent % USERS + 1,
                title=f"latency {sent}",
                description="created by the taskline benchmark",
            )
            before = time.perf_counter()
            await send(command)
            send_times.append(time.perf_counter() - before)
            sent += 1
        actual = sent / (time.perf_counter() - t_start)
        await wait_count(monitor, sent, max(60.0, sent / 20))
        caught_up = time.perf_counter() - t_start
        usage = await meter.stop()
        rows = await monitor.fetch("SELECT extract(epoch FROM created_at - title_issued_at) * 1000 AS ms FROM task")
        rss = [v for v in (peak_rss_mib(p.pid) for p in procs) if v is not None]
        await monitor.close()
    finally:
        await stop(procs)
    latencies = [float(r["ms"]) for r in rows]
    return {
        "offered_rate": rate,
        "achieved_rate": actual,
        "all_applied_after_s": caught_up,
        "duration_s": duration,
        "sent": sent,
        "late_sends": late,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else None,
            "min": min(latencies) if latencies else None,
            "mean": statistics.fmean(latencies) if latencies else None,
        },
        "send_call_ms_p50": 1000 * (percentile(send_times, 50) or 0),
        "client_cpu_ms_per_command": 1000 * usage["client_cpu_s"] / max(sent, 1),
        "pg_cpu_ms_per_command": 1000 * usage["pg_cpu_s"] / max(sent, 1),
        "peak_rss_mib": max(rss) if rss else None,
        "usage": usage,
    }


async def wait_count(conn: asyncpg.Connection, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while await conn.fetchval("SELECT count(*) FROM task") < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {n} tasks after {limit_s} s")
        await asyncio.sleep(0.02)


async def unlink_jobs(env: Env, queue: str, job_ids: list[str]) -> None:
    for start in range(0, len(job_ids), 1000):
        await env.redis.unlink(*[JOB_KEY_PREFIX + j for j in job_ids[start : start + 1000]])
    await env.redis.unlink(queue)


async def used_memory(env: Env) -> int:
    samples = []
    for _ in range(3):
        samples.append(int((await env.redis.info("memory"))["used_memory"]))
        await asyncio.sleep(0.05)
    return int(statistics.median(samples))


async def enqueue(env: Env, n: int, memory_n: int, single_n: int) -> dict[str, Any]:
    """How fast a producer queues commands, and what a queued command costs Redis."""
    result: dict[str, Any] = {}
    base = f"taskline:bench:{env.run_id}:enqueue"

    t = time.perf_counter()
    commands = make_commands(n)
    result["build_us_per_command"] = 1e6 * (time.perf_counter() - t) / n

    producer = TaskProducer(env.redis, queue=f"{base}:many")
    cpu, t = time.process_time(), time.perf_counter()
    report = await producer.send_many(commands)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert report.queued == n, report
    result["send_many"] = {
        "commands": n,
        "elapsed_s": elapsed,
        "commands_per_s": n / elapsed,
        "producer_cpu_ms_per_command": 1000 * cpu / n,
    }
    await unlink_jobs(env, f"{base}:many", [str(c.command_id) for c in commands])

    producer = TaskProducer(env.redis, queue=f"{base}:bulk")
    cpu, t = time.process_time(), time.perf_counter()
    ids = []
    for start in range(0, n, BULK_SIZE):
        ids.append((await producer.send_bulk(commands[start : start + BULK_SIZE])).job_id)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    result["send_bulk"] = {
        "commands": n,
        "jobs": len(ids),
        "elapsed_s": elapsed,
        "commands_per_s": n / elapsed,
        "producer_cpu_ms_per_command": 1000 * cpu / n,
    }
    await unlink_jobs(env, f"{base}:bulk", ids)
    del commands

    memory_commands = make_commands(memory_n)
    queue = f"{base}:memory"
    producer = TaskProducer(env.redis, queue=queue)
    before = await used_memory(env)
    await producer.send_many(memory_commands)
    after = await used_memory(env)
    sample = [str(c.command_id) for c in memory_commands[:: max(1, memory_n // 200)]]
    per_key = [await env.redis.memory_usage(JOB_KEY_PREFIX + job_id, samples=0) or 0 for job_id in sample]
    zset = await env.redis.memory_usage(queue, samples=0) or 0
    result["redis_memory"] = {
        "commands": memory_n,
        "used_memory_delta_bytes_per_command": (after - before) / memory_n,
        "memory_usage_job_key_bytes": statistics.fmean(per_key),
        "memory_usage_queue_bytes_per_command": zset / memory_n,
        "memory_usage_bytes_per_command": statistics.fmean(per_key) + zset / memory_n,
        "job_json_bytes": len(await env.redis.get(JOB_KEY_PREFIX + sample[0]) or b""),
    }
    await unlink_jobs(env, queue, [str(c.command_id) for c in memory_commands])

    queue = f"{base}:single"
    producer = TaskProducer(env.redis, queue=queue)
    singles = make_commands(single_n + 1)
    await producer.send(singles[0])  # SCRIPT LOAD on the first EVALSHA
    times = []
    for command in singles[1:]:
        t = time.perf_counter()
        await producer.send(command)
        times.append(1000 * (time.perf_counter() - t))
    result["send"] = {
        "calls": single_n,
        "p50_ms": percentile(times, 50),
        "p90_ms": percentile(times, 90),
        "p99_ms": percentile(times, 99),
    }
    await unlink_jobs(env, queue, [str(c.command_id) for c in singles])
    return result


# -- profiling ---------------------------------------------------------------------------------------


async def pyspy(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    exe = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if exe is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    await asyncio.sleep(0.5)  # past the start of the drain
    process = await asyncio.create_subprocess_exec(
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "100",
        "--format",
        "raw",
        "-o",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0 or not os.path.exists(out):  # noqa: ASYNC240
        return {"error": output.decode(errors="replace")[-2000:]}
    from bench.profile import render, summarise

    summary = summarise(await asyncio.to_thread(out.read_text), top=20)
    summary["raw_file"] = str(out)
    summary["text"] = render(summary)
    return summary


def diagnose(env: Env, commands: int) -> Side:
    """Count the Redis commands (MONITOR) and system calls (strace -c) of one consumer process."""

    async def side(procs: list[Proc], attached: asyncio.Event, done: asyncio.Event) -> dict[str, Any]:
        pid = procs[0].pid
        out = env.tmp / f"strace-{pid}.txt"
        strace = shutil.which("strace")
        tracer = None
        if strace:
            tracer = await asyncio.create_subprocess_exec(
                strace, "-c", "-f", "-o", str(out), "-p", str(pid),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        # redis-cli MONITOR into a file: exact (redis-py's monitor loses lines when a read is cancelled)
        monitor_out = env.tmp / f"monitor-{pid}.txt"
        url = urlsplit(REDIS_BASE_URL)
        with monitor_out.open("wb") as sink:
            monitor = await asyncio.create_subprocess_exec(
                shutil.which("redis-cli") or "redis-cli", "-h", url.hostname or "127.0.0.1",
                "-p", str(url.port or 6379), "MONITOR", stdout=sink, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        await asyncio.sleep(0.5)  # strace and MONITOR attached
        attached.set()
        await done.wait()
        await asyncio.sleep(1.0)  # the last jobs' finish pipelines
        monitor.terminate()
        # the consumer's own Redis connections (MONITOR names clients by address)
        mine: set[str] = set()
        if psutil is not None:
            with contextlib.suppress(Exception):
                mine = {
                    f"{c.laddr.ip}:{c.laddr.port}"
                    for c in psutil.Process(pid).net_connections(kind="tcp")
                    if c.raddr and c.raddr.port == env.port_redis
                }
        await monitor.wait()
        counts: dict[str, int] = {}
        clients: set[str] = set()
        pattern = re.compile(r'^[\d.]+ \[(\d+) ([^\]]+)\] "([^"]+)"')
        for line in (await asyncio.to_thread(monitor_out.read_text, errors="replace")).splitlines():
            match = pattern.match(line)
            if not match or int(match.group(1)) != env.redis_db or (mine and match.group(2) not in mine):
                continue
            name = match.group(3).upper()
            counts[name] = counts.get(name, 0) + 1
            clients.add(match.group(2))
        # the idle polling of the second after the last task is not the jobs' work
        counts.pop("ZRANGEBYSCORE", None)
        syscalls: dict[str, int] = {}
        if tracer is not None:
            with contextlib.suppress(ProcessLookupError):
                tracer.send_signal(signal.SIGINT)
            await tracer.wait()
            for line in (await asyncio.to_thread(out.read_text)).splitlines():
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and not line.lstrip().startswith("100.00"):
                    with contextlib.suppress(ValueError):
                        syscalls[parts[-1]] = int(parts[3])
        total = sum(counts.values())
        return {
            "redis_commands_per_command": total / commands,
            "redis_commands_by_name_per_command": {
                k: round(v / commands, 3) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
            },
            "redis_connections_seen": len(clients),
            "syscalls_per_command": sum(syscalls.values()) / commands if syscalls else None,
            "syscalls_by_name_per_command": {
                k: round(v / commands, 2) for k, v in sorted(syscalls.items(), key=lambda kv: -kv[1])[:12]
            },
            "note": "measured under strace and MONITOR: counts are exact, the speed of this run is not",
        }

    return side


# -- the run -------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "arq",
        "redis",
        "hiredis",
        "asyncpg",
        "sqlalchemy",
        "sqlmodel",
        "pydantic",
        "pydantic-core",
        "psutil",
        "py-spy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _local_facts() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "worker", "producers"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {"model": model, "commit": commit, "dirty": dirty}


async def machine_info(env: Env) -> dict[str, Any]:
    facts = await asyncio.to_thread(_local_facts)
    commit, dirty = facts["commit"], facts["dirty"]
    info = await env.redis.info("server")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": facts["model"],
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1) if psutil else None,
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": await env.admin.fetchval("SHOW server_version"),
        "redis": info.get("redis_version"),
        "packages": versions(),
        "git_commit": (commit + (" (worker/ or producers/ modified)" if dirty else ""))
        or "unknown (not a git checkout)",
        "shared_machine_note": "other agents' test suites ran on the same 2 cores, PostgreSQL and Redis "
        "during this run: absolute numbers are noisy; compare ratios measured in the same run",
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.commands or (3000 if args.quick else 20000)
    duration = args.latency_seconds or (4.0 if args.quick else 10.0)
    single_n = 200 if args.quick else 1000
    only = set(SCENARIOS if args.only is None else args.only)
    conc = args.floor_concurrency
    env = await setup()
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
        "note": args.note,
        "commands": n,
        "scenarios": {},
    }
    scenarios = results["scenarios"]

    async def attempt(key: str, coro: Awaitable[dict[str, Any]]) -> None:
        log(f"{key} ...")
        try:
            scenarios[key] = await coro
            summary = scenarios[key].get("commands_per_s") or scenarios[key].get("latency_ms", {}).get("p50")
            log(f"{key}: {summary}")
        except Exception as exc:
            scenarios[key] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{key} FAILED: {exc}")

    def floors(mode: str, count: int, serve: bool = False, uvloop: bool = False) -> Starter:
        async def start(queue: str) -> list[Proc]:
            return [await start_floor(env, queue, mode, conc, serve, uvloop) for _ in range(count)]

        return start

    def workers(count: int, uvloop: bool = False) -> Starter:
        async def start(queue: str) -> list[Proc]:
            return [await start_worker(env, queue, i, uvloop=uvloop) for i in range(count)]

        return start

    try:
        results["machine"] = await machine_info(env)
        if "enqueue" in only:
            await attempt("6 enqueue", enqueue(env, n, 10_000, single_n))
        if "floor" in only:
            await attempt("1 floor P=1", drain(env, "floor1", n, False, floors("single", 1), "floor"))
            await attempt("1 floor P=2", drain(env, "floor2", n, False, floors("single", 2), "floor"))
        if "bulk-floor" in only:
            await attempt(
                "2 bulk floor, 100 single jobs/tx P=1",
                drain(env, "bfloorc", n, False, floors("bulk-commands", 1), "floor"),
            )
            await attempt(
                "2 bulk floor, bulk jobs P=1", drain(env, "bfloor1", n, True, floors("bulk-jobs", 1), "floor")
            )
            await attempt(
                "2 bulk floor, bulk jobs P=2", drain(env, "bfloor2", n, True, floors("bulk-jobs", 2), "floor")
            )
        if "drain" in only:
            await attempt("3 taskline K=1", drain(env, "drain1", n, False, workers(1), "worker"))
            await attempt("3 taskline K=2", drain(env, "drain2", n, False, workers(2), "worker"))
        if "drain-bulk" in only:
            await attempt("4 taskline bulk K=1", drain(env, "bulk1", n, True, workers(1), "worker"))
            await attempt("4 taskline bulk K=2", drain(env, "bulk2", n, True, workers(2), "worker"))
        if "outcomes" in only:
            # Outcomes off and on, twice each, alternating: the difference is what asking costs.
            for round_ in (1, 2):
                for label, ttl in (("off", None), ("on", OUTCOME_TTL_S)):
                    await attempt(
                        f"7 taskline K=1 outcomes {label} #{round_}",
                        drain(env, f"out{label}{round_}", n, False, workers(1), "worker", outcome_ttl=ttl),
                    )
            for label, ttl in (("off", None), ("on", OUTCOME_TTL_S)):
                await attempt(
                    f"7 taskline bulk K=1 outcomes {label}",
                    drain(env, f"bout{label}", n, True, workers(1), "worker", outcome_ttl=ttl),
                )
        if "latency" in only:
            measured = scenarios.get("3 taskline K=1", {}).get("commands_per_s")
            rate = args.rate or min(1000.0, 0.5 * measured) if measured else (args.rate or 200.0)
            results["latency_rate"] = rate
            await attempt(
                "5 latency floor",
                steady_latency(env, "latfloor", rate, duration, floors("single", 1, serve=True), "floor"),
            )
            await attempt(
                "5 latency taskline K=1", steady_latency(env, "latworker", rate, duration, workers(1), "worker")
            )
        if args.uvloop:
            await attempt(
                "x floor P=1 uvloop", drain(env, "floor1uv", n, False, floors("single", 1, uvloop=True), "floor")
            )
            await attempt("x taskline K=1 uvloop", drain(env, "drain1uv", n, False, workers(1, uvloop=True), "worker"))
        if args.profile:
            profile_dir = Path(args.out).parent
            profile_dir.mkdir(parents=True, exist_ok=True)
            seconds = args.profile_seconds
            for key, label, rate_key, starter, bulk in (
                ("profile worker", "worker", "3 taskline K=1", workers(1), False),
                ("profile floor", "floor", "1 floor P=1", floors("single", 1), False),
            ):
                rate = scenarios.get(rate_key, {}).get("commands_per_s") or 1000.0
                size = max(n, int(rate * (seconds + 5)))
                out = profile_dir / f"profile-{label}.raw.txt"

                async def during(
                    procs: list[Proc], attached: asyncio.Event, done: asyncio.Event, out: Path = out
                ) -> dict[str, Any]:
                    attached.set()
                    return await pyspy(procs[0].pid, seconds, out)

                await attempt(
                    key,
                    drain(
                        env, f"prof{label}", size, bulk, starter, label if label == "worker" else "floor", during=during
                    ),
                )
        if args.diagnose:
            size = 2000 if not args.quick else 1000
            for key, name, starter, kind, bulk in (
                ("diagnose floor P=1", "diagfloor", floors("single", 1), "floor", False),
                ("diagnose taskline K=1", "diagworker", workers(1), "worker", False),
                ("diagnose bulk floor P=1", "diagbfloor", floors("bulk-jobs", 1), "floor", True),
                ("diagnose taskline bulk K=1", "diagbworker", workers(1), "worker", True),
            ):
                await attempt(
                    key,
                    drain(env, name, size, bulk, starter, kind, during=diagnose(env, size)),
                )
        results["machine"]["loadavg_end"] = os.getloadavg()
    finally:
        await teardown(env, args.keep_logs)
    return results


# -- output --------------------------------------------------------------------------------------------

RATIO_BASE = {
    "x taskline K=1 uvloop": "x floor P=1 uvloop",
    "3 taskline K=1": "1 floor P=1",
    "3 taskline K=2": "1 floor P=2",
    "4 taskline bulk K=1": "2 bulk floor, bulk jobs P=1",
    "4 taskline bulk K=2": "2 bulk floor, bulk jobs P=2",
}


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
    if "latency_rate" in results:
        out.append(
            f"steady-rate scenario offered {results['latency_rate']:.0f} commands/s "
            "(half the K=1 drain rate, capped at 1,000/s)"
        )
    return out


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
    parser.add_argument("--floor-concurrency", type=int, default=8, help="coroutines per floor process")
    parser.add_argument("--profile", action="store_true", help="also run py-spy on a worker and on the floor")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument(
        "--uvloop", action="store_true", help="also drain with uvloop's event loop (floor P=1 and worker K=1)"
    )
    parser.add_argument(
        "--diagnose", action="store_true", help="also count Redis commands (MONITOR) and syscalls (strace) per command"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs (temporary directory)")
    parser.add_argument("--note", help="free text stored in the JSON (e.g. which commit a copied tree is)")
    args = parser.parse_args()

    results = asyncio.run(run(args))
    rows = table_rows(results)
    results["table"] = rows
    results["notes"] = notes(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    machine = results.get("machine", {})
    print(
        f"taskline benchmark, {machine.get('date')}, {results['commands']:,} commands per drain, "
        f"nproc {machine.get('nproc')}, Python {machine.get('python')}, PostgreSQL {machine.get('postgres')}, "
        f"Redis {machine.get('redis')}, load average {machine.get('loadavg_start')} -> {machine.get('loadavg_end')}"
    )
    print("Shared machine: other test suites ran concurrently; numbers are noisy, ratios are within one run.\n")
    print(render_table(rows))
    print()
    for line in results["notes"]:
        print("- " + line)
    for key in ("profile worker", "profile floor"):
        prof = results["scenarios"].get(key, {}).get("side")
        if prof and "text" in prof:
            print(f"\n{key} (py-spy, {args.profile_seconds:.0f} s, separate run):\n{prof['text']}")
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


if __name__ == "__main__":
    main()
