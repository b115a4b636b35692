"""Group commit: commands of concurrently running jobs share one transaction.

Each job hands its command to `GroupCommitter.apply` and awaits its own outcome. A flusher
takes everything waiting (up to `max_batch`) and applies it in one transaction with
multi-row statements; while that transaction runs, new commands gather for the next one. At
low load a batch holds one command and adds no delay; under load, batches grow by themselves.

A database error that a transient cause explains fails the whole batch (each job retries on
its own). Any other database error may be one command's fault: the batch is then applied
again one command per transaction, so a bad command never fails its neighbours.

An update or completion whose task does not exist yet waits in the worker for its create
(`worker.pipeline.waiting_room`, up to `hold_s`) and is applied in the create's transaction,
instead of going back to Redis as a not-yet retry.

When the worker traces, it hands in a `TransactionTracer` and each traced job its `JobTrace`: a
transaction then has a span of its own, linked to every job whose commands it applies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from taskline_producer.contract import Command, CreateTask

from worker.pipeline.apply import Outcome, apply_commands, existing_tasks
from worker.pipeline.failures import Kind, classify_exception
from worker.pipeline.sinks import JobTrace, TransactionTracer
from worker.pipeline.waiting_room import Waiter, WaitingRoom
from worker.store.engine import Sessions

__all__ = ["GroupCommitter"]

HOLD_CAPACITY = 5000
"""At most this many commands wait for their task in one worker (memory); more get not-yet at once."""
RIDE_WAIT_S = 0.005
"""A held command whose task now exists joins the next batch, or after this long a batch of its own:
the jobs that end with a batch free their slots and the next claim's batch comes within
milliseconds, so released commands rarely cost a transaction of their own."""


class GroupCommitter:
    def __init__(
        self,
        sessions: Sessions,
        *,
        max_batch: int = 100,
        flushers: int = 1,
        worker_id: str | None = None,
        hold_s: float = 0.0,
        recheck_s: float = 0.25,
        tracer: TransactionTracer | None = None,
    ) -> None:
        self._sessions = sessions
        self._tracer = tracer
        self._worker_id = worker_id  # recorded with every processed command (`taskline trace`)
        self._max_batch = max_batch
        self._flushers = flushers
        self._waiting: list[Waiter] = []
        self._running: set[asyncio.Task[None]] = set()
        self._room = WaitingRoom(hold_s=hold_s, capacity=HOLD_CAPACITY)
        self._recheck_s = recheck_s
        self._rechecker: asyncio.Task[None] | None = None
        self._riders: list[Waiter] = []
        """Released held commands, for the next batch (see RIDE_WAIT_S)."""
        self._ride_timer: asyncio.TimerHandle | None = None
        self.holding: Callable[[int], None] | None = None
        """Told -1 when a job starts waiting for its task here, +1 when that job's outcome is
        settled: the worker does not count a waiting job against `max_jobs`."""
        self.batches = 0
        self.held = 0
        """How many commands have waited here for their task (each counted once)."""

    async def apply(
        self, command: Command, signed_by: str | None = None, *, may_wait: bool = True, trace: JobTrace | None = None
    ) -> Outcome:
        """Apply one command in the next group transaction; returns its outcome or raises.
        `signed_by`: the key that signed its job, recorded with it. `may_wait`: a command whose
        task does not exist yet may wait for its create (when the committer holds any). `trace`:
        its job's spans."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append(Waiter(command, signed_by, future, may_wait, trace=trace))
        self._start_flusher()
        return await future

    async def apply_many(
        self, commands: Sequence[Command], signed_by: str | None = None, *, trace: JobTrace | None = None
    ) -> list[Outcome | BaseException]:
        """Apply a bulk job's commands in their own transaction(s), `max_batch` at a time.

        Returns one outcome, or the exception that stopped it, per command."""
        results: list[Outcome | BaseException] = []
        for start in range(0, len(commands), self._max_batch):
            chunk = [(command, signed_by) for command in commands[start : start + self._max_batch]]
            results.extend(await self._apply_isolated(chunk, [trace]))
        return results

    async def wait_idle(self) -> None:
        """Try every waiting command once more and wait for the running flushers (at shutdown)."""
        if self._rechecker is not None:
            self._rechecker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rechecker
        self._room.hold_s = 0.0  # nothing waits any more: a task still missing is a not-yet retry
        self._requeue(self._room.all() + self._riders)
        self._riders = []
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _start_flusher(self) -> None:
        # A flusher that has finished is done at once, but leaves `_running` only when its done
        # callback runs (a loop iteration later): count the unfinished ones, or a command added
        # in between would wait for the next command to start a flusher.
        running = sum(not task.done() for task in self._running)
        if running < self._flushers and self._waiting:
            task = asyncio.create_task(self._drain())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            if self._riders:
                batch += self._riders
                self._riders = []
            batch = [waiter for waiter in batch if not waiter.future.done()]
            if not batch:
                continue
            now = loop.time()
            if self._room.size:
                # Commands waiting for a task this batch creates are applied in its transaction;
                # a change of a task other commands still wait for waits with them, untried.
                creates = [w.command.task_id for w in batch if isinstance(w.command, CreateTask)]
                batch += [w for w in self._room.release(creates) if not w.future.done()]
                batch = [w for w in batch if not (self._room.holds(w.command.task_id) and self._try_hold(w, now))]
                if not batch:
                    continue
            results = await self._apply_isolated([(w.command, w.signed_by) for w in batch], [w.trace for w in batch])
            now = loop.time()
            created = []
            for waiter, result in zip(batch, results, strict=True):
                if waiter.future.done():
                    continue
                if result is Outcome.TASK_MISSING and self._try_hold(waiter, now):
                    pass
                elif isinstance(result, BaseException):
                    waiter.future.set_exception(result)
                else:
                    waiter.future.set_result(result)
                    if isinstance(waiter.command, CreateTask):
                        created.append(waiter.command.task_id)
            if created and self._room.size:
                # Held by another flusher while this batch ran: their task exists now.
                self._ride(self._room.release(created))

    def _try_hold(self, waiter: Waiter, now: float) -> bool:
        """Hold the command for its task's create if it may wait; whether it was held."""
        if not self._room.can_hold(waiter, now):
            return False
        self._hold(waiter, now)
        return True

    def _hold(self, waiter: Waiter, now: float) -> None:
        if waiter.hold_until is None:
            self.held += 1
            if self.holding is not None:
                holding = self.holding
                holding(-1)
                waiter.future.add_done_callback(lambda _: holding(1))
        self._room.hold(waiter, now)
        if self._rechecker is None or self._rechecker.done():
            self._rechecker = asyncio.create_task(self._recheck())

    async def _recheck(self) -> None:
        """Every `recheck_s` while commands wait: those whose task exists now (created by another
        worker) and those whose hold is over go to the next batch."""
        loop = asyncio.get_running_loop()
        while self._room.size:
            await asyncio.sleep(self._recheck_s)
            task_ids = self._room.task_ids()
            try:
                async with self._sessions() as session, session.begin():
                    found = await existing_tasks(session, task_ids)
            except Exception:  # the database is away: the holds end on their own
                found = set()
            self._ride(self._room.release(found) + self._room.expired(loop.time()))

    def _ride(self, waiters: list[Waiter]) -> None:
        if not waiters:
            return
        self._riders += waiters
        if self._ride_timer is None:
            self._ride_timer = asyncio.get_running_loop().call_later(RIDE_WAIT_S, self._riders_due)

    def _riders_due(self) -> None:
        self._ride_timer = None
        riders, self._riders = self._riders, []
        self._requeue(riders)

    def _requeue(self, waiters: list[Waiter]) -> None:
        if waiters:
            self._waiting[:0] = waiters
            self._start_flusher()

    async def _apply_isolated(
        self, commands: list[tuple[Command, str | None]], traces: list[JobTrace | None]
    ) -> list[Outcome | BaseException]:
        try:
            return list(await self._transaction(commands, traces))
        except Exception as exc:
            if len(commands) == 1 or classify_exception(exc)[0] is Kind.TRANSIENT:
                return [exc] * len(commands)
        results: list[Outcome | BaseException] = []
        for index, command in enumerate(commands):
            try:
                one = traces[index : index + 1] if len(traces) == len(commands) else traces
                results.extend(await self._transaction([command], one))
            except Exception as exc:
                results.append(exc)
        return results

    async def _transaction(
        self, commands: list[tuple[Command, str | None]], traces: list[JobTrace | None]
    ) -> list[Outcome]:
        """One transaction for (command, the key that signed it) pairs; `traces`: their jobs' spans."""
        self.batches += 1
        signers = {command.command_id: signed_by for command, signed_by in commands if signed_by is not None}
        plain = [command for command, _ in commands]
        tracer = self._tracer
        traced = [trace for trace in traces if trace is not None] if tracer is not None else []
        if tracer is None or not traced:
            async with self._sessions() as session, session.begin():
                return await apply_commands(session, plain, worker_id=self._worker_id, signers=signers)
        with tracer.transaction(traced, len(plain)) as mark:
            async with self._sessions() as session, session.begin():
                outcomes = await apply_commands(session, plain, worker_id=self._worker_id, signers=signers)
                mark.committing()
            return outcomes
