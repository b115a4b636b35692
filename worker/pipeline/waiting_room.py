"""Commands that arrived before their task: held in the worker until its create_task is applied.

A producer that sends create → update → complete back to back queues them with the same score,
and Redis orders equal scores by job id (a random command id), so a worker often claims an
update before the create of its task. Instead of sending such a command back to Redis as a
not-yet retry (a round trip, a transaction and a log line each), the group committer holds it
here, keyed by its task id, for at most `hold_s`:

* when a batch with that task's create is built, the held commands join it and are applied in
  the create's own transaction (after the create: `apply_commands` creates before it changes);
* when a batch with that create has committed, any command held meanwhile is applied in the
  next batch;
* every `recheck_s` one query asks which of the held commands' tasks exist now (another worker
  may have created them), and those commands go to the next batch;
* after `hold_s` it is tried once more and, if its task is still missing, its job gets the
  not-yet outcome as before and is retried through Redis. Only a job's first try waits here:
  its not-yet retries follow `TASKLINE_NOT_YET_WINDOW` as before, so a command whose task never
  comes is a dead letter at most `hold_s` later than without the wait.

Nothing about a held command is recorded anywhere but in its job, which stays claimed in Redis
(the hold is far shorter than the claim's expiry): a crash loses nothing, and the command is
applied exactly once whenever it is applied. A held job does not count against the worker's
`max_jobs` (the committer tells the worker through `holding`), so a worker whose slots are
full of waiting commands still claims the creates they wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from taskline_producer.contract import Command

from worker.pipeline.apply import Outcome
from worker.pipeline.sinks import JobTrace

__all__ = ["Waiter", "WaitingRoom"]


@dataclass(slots=True, eq=False)
class Waiter:
    """One command handed to the group committer, and the future its job awaits."""

    command: Command
    signed_by: str | None
    future: asyncio.Future[Outcome]
    may_wait: bool = True
    """Whether it may wait here at all: only a job's first try does (a not-yet retry has waited)."""
    hold_until: float | None = None
    """When its hold ends (loop time); None while it was never held."""
    trace: JobTrace | None = None
    """Its job's spans, when the worker traces."""


class WaitingRoom:
    """Held commands by task id, bounded by `capacity`."""

    def __init__(self, *, hold_s: float, capacity: int) -> None:
        self.hold_s = hold_s
        self.capacity = capacity
        self._by_task: dict[UUID, list[Waiter]] = {}
        self.size = 0

    def can_hold(self, waiter: Waiter, now: float) -> bool:
        """Whether a command its batch found without a task may wait (here) for that task."""
        if self.hold_s <= 0 or not waiter.may_wait or self.size >= self.capacity or waiter.future.done():
            return False
        return waiter.hold_until is None or now < waiter.hold_until

    def hold(self, waiter: Waiter, now: float) -> None:
        if waiter.hold_until is None:
            waiter.hold_until = now + self.hold_s
        self._by_task.setdefault(waiter.command.task_id, []).append(waiter)
        self.size += 1

    def holds(self, task_id: UUID) -> bool:
        """Whether commands wait here for this task (so it did not exist a moment ago)."""
        return task_id in self._by_task

    def task_ids(self) -> list[UUID]:
        return list(self._by_task)

    def release(self, task_ids: Iterable[UUID]) -> list[Waiter]:
        """The commands held for these tasks, taken out of the room."""
        released: list[Waiter] = []
        for task_id in task_ids:
            waiters = self._by_task.pop(task_id, None)
            if waiters:
                released.extend(waiters)
        self.size -= len(released)
        return released

    def expired(self, now: float) -> list[Waiter]:
        """The commands whose hold is over (or whose job is gone), taken out."""
        gone: list[Waiter] = []
        for task_id in list(self._by_task):
            waiters = self._by_task[task_id]
            left = [w for w in waiters if not w.future.done() and w.hold_until is not None and w.hold_until > now]
            if len(left) < len(waiters):
                gone.extend(w for w in waiters if w not in left)
                if left:
                    self._by_task[task_id] = left
                else:
                    del self._by_task[task_id]
        self.size -= len(gone)
        return gone

    def all(self) -> list[Waiter]:
        """Every held command, taken out (at shutdown: each is tried once more)."""
        return self.release(list(self._by_task))
