"""Where taskline's worker departs from arq's: the one module that overrides arq's `Worker`.

taskline runs arq's own loop (`Worker.main`: start-up hook, the poll loop, burst mode, signals
and graceful shutdown) with arq's public settings, job functions (`arq.func`) and `Retry`. It
overrides two public methods, each for a reason arq's behaviour cannot serve; the tests in
tests/integration/test_arq_seam.py pin the arq behaviour each override relies on, so an arq upgrade
that changes it fails them.

`start_jobs(job_ids)`: arq's poll reads the due job ids and calls this. arq's version claims
each id with five or more round trips, then `run_job` fetches it, logs and drops what it cannot
deserialize or has no function for, and drops jobs whose key expired or whose tries ran out.
taskline sets `queue_read_limit=1`, so arq's read only tells whether any job is due, and claims
every due job it has room for in one round trip (worker/arq_seam/claim.py), then jobs from the
fair lanes in turn (worker/arq_seam/fair_turns.py; those are not in the queue arq reads, so the
claim also runs when the last one left keys waiting or a wake-up token came); each runs in
taskline's own runner (worker/arq_seam/job_runner.py), where every job ends applied, a
duplicate, deferred with a reason, or a dead letter. Relies on: arq calling it from each poll
iteration with the due ids while `job_counter < max_jobs` and `allow_pick_jobs`; arq waiting
for `self.tasks` in burst mode and on a graceful stop; arq reading `jobs_complete`,
`jobs_failed` and `jobs_retried` for its shutdown lines (kept up to date here). arq's
`after_job_end` hook is not called (taskline sets none); `on_job_start` and `on_job_end` are.

`heart_beat()`: arq calls it at the end of each poll iteration, then sleeps `poll_delay`. Its
own work (arq's health key, cron) still runs; then, since taskline gives arq a `poll_delay` of
0, this is where the worker waits for work: a worker that found nothing blocks on the queue's
wake-up list (keys.wake_key) for a tenth of the time since its last claim (5 ms just after one,
up to TASKLINE_POLL_DELAY; worker/arq_seam/idle_wait.py), and never past the moment one of its
own deferred jobs falls due; a busy one waits for a free slot without asking Redis anything. So
an idle worker sends two commands per poll delay, and a job whose producer pushed the wake-up
token starts at once. A steady stream from a producer without the token (arq's `enqueue_job`)
waits about a tenth of the quiet gap before each burst (bench scenario 9, bench/README.md: at
500 commands/s in bursts of 250 every second, p90 1,194-1,474 ms before, 251-300 ms after); its
first job after a long idle still waits up to the poll delay. Relies on: arq calling
`heart_beat` once per poll iteration, after `start_jobs`.

Nothing else of arq's is replaced, and no underscore name of arq's is read or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import time
from typing import Any

from arq.worker import Worker
from taskline_producer import keys

from worker.arq_seam.bookkeeping import Bookkeeper
from worker.arq_seam.claim import CLAIM_SCRIPT, Claimed, claim_arguments, claim_keys, parse_claimed
from worker.arq_seam.idle_wait import IdleWait
from worker.arq_seam.job_runner import Ending, JobEnd, JobRunner
from worker.arq_seam.trace_keys import read_trace_contexts
from worker.logs import get_logger
from worker.pipeline.decode import BULK_PREFIX

__all__ = ["SeamOptions", "TasklineWorker"]


class SeamOptions:
    """taskline's own settings of the loop (arq's constructor has no room for them)."""

    def __init__(
        self,
        *,
        idle_wait_s: float,
        bulk_concurrency: int,
        scan_limit: int,
        max_job_bytes: int,
        fair_in_flight: int = 400,
    ) -> None:
        self.idle_wait_s = idle_wait_s
        """How long an idle worker waits for a wake-up token before polling again; 0 (burst mode
        in tests) polls again at once."""
        self.bulk_concurrency = bulk_concurrency
        """How many apply_commands jobs are decoded and applied at once (memory)."""
        self.scan_limit = scan_limit
        """How many due jobs one claim looks at (running jobs stay at the head of the queue)."""
        self.max_job_bytes = max_job_bytes
        """The largest job value a claim reads; a larger one is dead-lettered unread."""
        self.fair_in_flight = fair_in_flight
        """Commands of one fairness key this worker holds at once (worker/arq_seam/fair_turns.py)."""


class TasklineWorker(Worker):
    """arq's Worker with `start_jobs` and `heart_beat` overridden (see the module docstring)."""

    def __init__(self, *args: Any, seam: SeamOptions, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seam = _SeamState(self, seam)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        await self.seam.claim_and_start(job_ids)

    async def heart_beat(self) -> None:
        await super().heart_beat()
        await self.seam.wait_for_work()


class _SeamState:
    """Everything taskline keeps beside arq's Worker, in one attribute so no name can collide."""

    def __init__(self, worker: TasklineWorker, options: SeamOptions) -> None:
        self.worker = worker
        self.options = options
        self.log = get_logger("taskline.worker")
        self.polled = False
        self.claimed = 0
        self.idle_wait = IdleWait(options.idle_wait_s)
        """How long to wait after a poll that found nothing: grows with the time since the last claim."""
        self.slot_freed = asyncio.Event()
        self.own_due_ms: list[int] = []
        """When this worker's deferred jobs fall due (a heap): an idle wait ends then."""
        self.bulk_slots = asyncio.Semaphore(options.bulk_concurrency)
        self.claim_script: Any = None
        self.paused = False
        """The last claim found claiming paused for the queue (keys.paused_key)."""
        self.next_take_over = 0.0
        """When (monotonic) the next claim also takes over the claims of dead workers."""
        self.only_held = False
        """The last claim found due jobs but claimed none: all held (by live workers, or dead)."""
        self.lane_held: dict[str, int] = {}
        """Fairness key → commands of its jobs taken from its lane and still running here."""
        self.lanes_waiting = True
        """Fair lanes may hold jobs (the last claim said so, or a wake-up token came since): claim
        even when arq's read of the queue found nothing due (worker/arq_seam/fair_turns.py)."""
        self.runner: JobRunner | None = None
        self.bookkeeper: Bookkeeper | None = None

    def _ready(self) -> tuple[JobRunner, Bookkeeper]:
        """Built on the first claim: the startup hook has filled ctx and the pool exists by then."""
        if self.runner is None or self.bookkeeper is None:
            w = self.worker
            self.claim_script = w.pool.register_script(CLAIM_SCRIPT)
            self.runner = JobRunner(
                functions=w.functions,  # type: ignore[arg-type]
                decode=w.job_deserializer,  # type: ignore[arg-type]
                ctx=w.ctx,
                max_tries=w.max_tries,
                timeout_s=w.job_timeout_s,
                log=self.log,
                on_job_start=w.on_job_start,
                on_job_end=w.on_job_end,
            )
            self.bookkeeper = Bookkeeper(w.pool, w.queue_name)
            runtime = w.ctx.get("runtime")
            if runtime is not None:
                runtime.committer.holding = self.waiting_jobs
        return self.runner, self.bookkeeper

    @property
    def worker_id(self) -> str:
        health = self.worker.ctx.get("health")
        return str(health.worker_id) if health is not None else "unknown"

    async def claim_and_start(self, job_ids: list[bytes]) -> None:
        w = self.worker
        self.polled = True
        self.claimed = 0
        free = w.max_jobs - w.job_counter
        # arq's read sees only the queue; jobs waiting in fair lanes are not in it until claimed,
        # so the claim also runs when the last claim left keys waiting or a token came since.
        if (not job_ids and not self.lanes_waiting) or free <= 0:
            return
        self._ready()
        expiry_ms = int(w.in_progress_timeout_s * 1000)
        # Dead workers' claims are looked for once per heartbeat interval, and at every claim
        # after one that found only held jobs (an idle worker facing stuck jobs then takes them
        # over within a poll delay of their worker's death); a worker busy claiming other jobs
        # keeps its hot path at one SET NX per job.
        take_over = self.only_held or time.monotonic() >= self.next_take_over
        if take_over:
            self.next_take_over = time.monotonic() + self.heartbeat_interval_s
        args = claim_arguments(
            _now_ms(),
            expiry_ms,
            self.worker_id,
            free,
            self.options.scan_limit,
            self.options.max_job_bytes,
            take_over=take_over,
            heartbeat_prefix=keys.heartbeat_key(w.queue_name, ""),
            per_key=self.options.fair_in_flight,
            held_by_key=self.lane_held,
        )
        reply = parse_claimed(await self.claim_script(keys=claim_keys(w.queue_name), args=args))
        self._note_pause(reply.paused)
        self.only_held = bool(job_ids) and not reply.claimed and not reply.paused
        self.lanes_waiting = reply.keys_waiting > 0 or reply.paused
        if reply.first_release_ms and len(self.own_due_ms) < 10_000:
            heapq.heappush(self.own_due_ms, reply.first_release_ms)
        if reply.taken_over:
            self.log.warning(
                "took over the claims of a dead worker: its jobs run again now",
                dead_workers=sorted(set(reply.taken_over.values())),
                jobs=len(reply.taken_over),
                job_ids=sorted(reply.taken_over)[:20],
            )
        claimed = reply.claimed
        self.claimed = len(claimed)
        if not claimed:
            return
        # Noted here, not when the worker next waits: a claim that fills every slot is
        # followed by a wait for a free slot, and the idle schedule must still see it.
        self.idle_wait.claimed()
        traces: list[str | None] = [None] * len(claimed)
        if w.ctx.get("tracing") is not None:  # only a worker that traces reads the trace keys
            traces = await read_trace_contexts(w.pool, [job.job_id for job in claimed], self.log)
        for job, trace in zip(claimed, traces, strict=True):
            w.job_counter += 1
            task = asyncio.create_task(self.run(job, trace))
            task.add_done_callback(self._job_done)
            from_lane = reply.lane_costs.get(job.job_id)
            if from_lane is not None:
                key, cost = from_lane
                self.lane_held[key] = self.lane_held.get(key, 0) + cost
                task.add_done_callback(functools.partial(self._lane_job_done, key, cost))
            w.tasks[job.job_id] = task

    @property
    def heartbeat_interval_s(self) -> float:
        health = self.worker.ctx.get("health")
        return float(health.interval) if health is not None else 5.0

    def _note_pause(self, paused: bool) -> None:
        if paused != self.paused:
            self.log.info(
                "claiming paused for the queue: this worker claims nothing until it is resumed"
                if paused
                else "claiming resumed for the queue"
            )
        self.paused = paused
        health = self.worker.ctx.get("health")
        if health is not None:
            health.paused = paused

    def _lane_job_done(self, key: str, cost: int, _: asyncio.Task[None]) -> None:
        left = self.lane_held.get(key, 0) - cost
        if left > 0:
            self.lane_held[key] = left
        else:
            self.lane_held.pop(key, None)

    def _job_done(self, _: asyncio.Task[None]) -> None:
        self.worker.job_counter -= 1
        self.slot_freed.set()

    def waiting_jobs(self, delta: int) -> None:
        """A job starts (-1) or stops (+1) waiting in the group committer for its task's create
        (worker/pipeline/waiting_room.py): a waiting job holds no slot, so the worker claims the
        creates it waits for even when every slot holds a waiting job. (A job starts waiting as
        its batch ends, when the batch's other jobs end and wake the poll: no wake-up of its own,
        which would claim a few jobs at a time.)"""
        self.worker.job_counter += delta

    async def run(self, job: Claimed, trace: str | None = None) -> None:
        """One claimed job, to its end; never raises (arq's loop re-raises what a job task raised).
        `trace`: its trace key's value, read only by a worker that traces."""
        runner, bookkeeper = self._ready()
        try:
            if job.payload is not None and job.payload.startswith(BULK_PREFIX):
                # A bulk job holds up to a thousand commands once decoded: only a few are decoded
                # and applied at once; the others wait here, claimed, before their timeout runs.
                async with self.bulk_slots:
                    end = await runner.run(job, trace)
            else:
                end = await runner.run(job, trace)
        except asyncio.CancelledError:
            # A stopping worker or a lost connection: the transaction rolled back; drop the
            # claim so that another try runs the job now rather than when the claim expires.
            with contextlib.suppress(Exception):
                await asyncio.shield(bookkeeper.record(job.job_id, JobEnd(Ending.RELEASE)))
            return
        self._count(end)
        try:
            await bookkeeper.record(job.job_id, end)
        except Exception as exc:
            # Redis went away between the job's end and its bookkeeping: the claim expires and
            # another try finds the command already recorded (a duplicate, nothing applied twice).
            self.log.info("could not record a job's end in Redis; its claim will expire", error=type(exc).__name__)

    def _count(self, end: JobEnd) -> None:
        w = self.worker
        if end.ending is Ending.DEFER:
            w.jobs_retried += 1
            if len(self.own_due_ms) < 10_000:
                heapq.heappush(self.own_due_ms, _now_ms() + end.defer_ms)
        elif end.ending is Ending.FINISH:
            if end.failed:
                w.jobs_failed += 1
            else:
                w.jobs_complete += 1

    async def wait_for_work(self) -> None:
        w = self.worker
        polled, claimed = self.polled, self.claimed
        self.polled = False
        wait_s = self.options.idle_wait_s
        if wait_s <= 0:
            return
        budget = self.options.fair_in_flight
        key_full = self.lanes_waiting and any(held >= budget for held in self.lane_held.values())
        if not w.allow_pick_jobs or w.job_counter >= w.max_jobs or key_full:
            # Stopping, every slot busy, or a key holding all it may here while its lane waits:
            # look again when a job ends (no Redis command; at most the wait below).
            self.slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.slot_freed.wait(), wait_s)
            return
        if polled and claimed:
            return  # more may be due right now
        if self.paused:
            # Claiming is paused: look again after twice the poll delay, without the wake-up list
            # (every new job would wake us for nothing). Two commands per look.
            await asyncio.sleep(2 * wait_s)
            return
        # Just after work, look again soon (a producer without the wake-up token may be sending
        # a stream); the longer the quiet, the longer the wait, up to the poll delay, which
        # bounds an idle worker's cost (worker/arq_seam/idle_wait.py).
        wait_s = min(wait_s, self.idle_wait.next_wait_s())
        now = _now_ms()
        if self.own_due_ms and self.own_due_ms[0] <= now:
            while self.own_due_ms and self.own_due_ms[0] <= now:
                heapq.heappop(self.own_due_ms)
            self.lanes_waiting = True
            return  # one of ours fell due since the poll: poll again now
        if self.own_due_ms:
            wait_s = min(wait_s, (self.own_due_ms[0] - now) / 1000)
        if wait_s < 0.001:
            return
        woken = await w.pool.execute_command("BLPOP", keys.wake_key(w.queue_name), wait_s)  # type: ignore[no-untyped-call]
        if woken is not None:
            self.lanes_waiting = True


def _now_ms() -> int:
    return int(time.time() * 1000)
