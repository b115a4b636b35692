"""The relay's work, one step at a time: publish, confirm, re-publish, prune.

* **Publish.** In one transaction per batch: lock up to `TASKLINE_RELAY_BATCH` committed,
  unpublished rows (`FOR UPDATE SKIP LOCKED`: another relay takes the next ones) and record their
  publication in the same statement, refuse the invalid ones with the contract's reason, enqueue
  the rest in one Redis round trip, commit. The batches of a step overlap: while one batch is
  checked, the next ones are being claimed (`CLAIMS_AHEAD`, PostgreSQL) and the one before is
  being taken by Redis, each on its own connection in its own transaction (`RELAY_CONNECTIONS`).
  A step publishes at most `PUBLISH_BATCHES_PER_STEP` batches, holds no claim once it returns,
  and rolls back every batch still in hand when it fails. A relay killed before a commit leaves
  that batch's rows unpublished and unlocked: another relay (or this one, restarted) publishes
  them again, and the enqueue script or the worker's `processed_command` makes that harmless. At
  least once; exactly once in effect.
* **Confirm.** In one transaction: lock published rows whose next check is due, read their states
  from Redis in one round trip, and record each final outcome (applied, duplicate, dead letter).
  A command still queued, retrying or running is asked about again later (half its age, at most
  the re-publication window), so a long backlog is never re-published. A command of which Redis
  knows nothing once `TASKLINE_RELAY_REPUBLISH_AFTER` has passed since its publication was lost by
  Redis (a FLUSHALL, a restart without persistence, a failover): it is published again.
* **Prune.** Rows confirmed longer ago than `TASKLINE_RELAY_RETENTION` are deleted, a batch at a
  time.

Each step returns how much it did; the loop (worker/relay/process.py) idles when nothing is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.observe.metrics import Metrics
from worker.relay.envelopes import Envelopes, Prepared
from worker.relay.redis_side import publish_jobs, read_states
from worker.store import outbox_queries as q

__all__ = ["RELAY_CONNECTIONS", "RedisUnavailable", "Relay", "RelayCounts"]

CHECK_SHARE: Final = 0.1
"""A publication's outcome is first asked this share of the re-publication window after it (and a
command still waiting is asked again no sooner), between `MIN_CHECK_S` and `MAX_FIRST_CHECK_S`:
6 s with the default window. Asking sooner only confirms sooner, and costs the database an UPDATE
per command per check while the workers share it."""
MIN_CHECK_S: Final = 0.5
MAX_FIRST_CHECK_S: Final = 10.0
PRUNE_BATCH: Final = 5000
CLAIMS_AHEAD: Final = 2
"""Batches a publish step claims ahead of the one it checks, each on its own connection: the claim
(PostgreSQL locking and updating a thousand rows) is the longest stage, so two run at once."""
RELAY_CONNECTIONS: Final = CLAIMS_AHEAD + 3
"""The relay's connections to the outbox's database: the batches claimed ahead, the one checked,
the one Redis is taking, and the heartbeat's figures."""
PUBLISH_BATCHES_PER_STEP: Final = 8
"""Batches one publish step sends at most (claiming each next one while the last goes out) before
the loop confirms and prunes."""
PREPARE_CHUNK: Final = 250
"""Rows checked between two turns of the event loop while another batch is being claimed or sent,
so those round trips proceed during the checks."""
_FINAL: Final = ("applied", "duplicate", "dead_letter")


class RedisUnavailable(Exception):
    """Redis failed during a step (the step's transaction was rolled back)."""


@dataclass(slots=True)
class RelayCounts:
    """What this relay has done since it started (its heartbeat and metrics carry them)."""

    published: int = 0
    republished: int = 0
    invalid: int = 0
    pruned: int = 0
    confirmed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_FINAL, 0))


@dataclass(slots=True)
class Relay:
    engine: AsyncEngine
    redis: Redis
    queue: str
    envelopes: Envelopes
    batch: int
    republish_after_s: float
    retention_s: float
    job_ttl_ms: int
    clock_ms: Callable[[], int]
    metrics: Metrics | None = None
    counts: RelayCounts = field(default_factory=RelayCounts)
    redis_answered: bool = False
    """Set when Redis answered a step (the process reads and clears it, for its outage log)."""

    @property
    def first_check_s(self) -> float:
        return min(max(self.republish_after_s * CHECK_SHARE, MIN_CHECK_S), MAX_FIRST_CHECK_S)

    async def publish(self) -> int:
        """Publish committed rows, batch after batch (at most `PUBLISH_BATCHES_PER_STEP`); how many
        rows it handled (published or refused).

        Several batches are in hand at once: `CLAIMS_AHEAD` being claimed (PostgreSQL), one being
        checked (here) and one whose jobs Redis is taking; each is committed once Redis has taken
        its jobs, before the next one is sent. A batch keeps its rows in `id` order; batches
        claimed at once may take their rows in either order, which the worker does not mind."""
        handled = 0
        claimed = await self._claim()
        ahead: deque[asyncio.Task[_Claimed | None]] = deque()
        sending: _Sending | None = None
        try:
            for step in range(1, PUBLISH_BATCHES_PER_STEP + 1):
                if claimed is None:
                    break
                full = len(claimed.rows) == self.batch
                while full and len(ahead) < CLAIMS_AHEAD and step + len(ahead) < PUBLISH_BATCHES_PER_STEP:
                    ahead.append(asyncio.create_task(self._claim()))
                now = self.clock_ms()
                prepared = await self._prepare(claimed.rows, now, overlapped=bool(ahead) or sending is not None)
                if sending is not None:
                    done, sending = sending, None
                    await self._finish(done)
                jobs = [(job_id, job) for _, job_id, job in prepared.jobs]
                sending = _Sending(claimed, prepared, asyncio.create_task(self._enqueue(now, jobs)))
                handled += len(claimed.rows)
                claimed = None
                if ahead:
                    claimed = await ahead.popleft()
            if sending is not None:
                done, sending = sending, None
                await self._finish(done)
        except BaseException:
            await _discard(ahead, sending, claimed)
            raise
        await _discard(ahead, None, claimed)  # claimed ahead but not reached: back to the table
        return handled

    async def _claim(self) -> _Claimed | None:
        """A batch of rows locked (and recorded as published) in a transaction left open on a
        connection of its own; None, and nothing held, when there is none."""
        conn = await self.engine.connect()
        try:
            await conn.begin()
            rows = await q.claim_for_publication(conn, self.batch, self.first_check_s)
        except BaseException:
            await conn.close()  # rolls the claim back
            raise
        if not rows:
            await conn.close()
            return None
        return _Claimed(conn, rows)

    async def _finish(self, sending: _Sending) -> None:
        """Once Redis took a batch's jobs: mark its refused rows and commit; rolled back on any failure."""
        conn, prepared = sending.claimed.conn, sending.prepared
        try:
            await sending.sent
            await q.mark_invalid(conn, prepared.refused)
            await conn.commit()
        finally:
            await conn.close()  # after a failure: rolls the batch back, nothing is lost
        self.counts.published += len(prepared.jobs)
        self.counts.invalid += len(prepared.refused)
        if self.metrics is not None:
            self.metrics.outbox_step(published=len(prepared.jobs), invalid=len(prepared.refused))

    async def _prepare(self, rows: Sequence[q.ToPublish], now_ms: int, overlapped: bool) -> Prepared:
        """The batch's jobs; while the next batch is being claimed, a turn of the event loop every
        `PREPARE_CHUNK` rows lets that claim's round trips go on meanwhile."""
        if not overlapped:
            return self.envelopes.prepare(((r.id, r.function, r.command) for r in rows), now_ms)
        prepared = Prepared()
        for start in range(0, len(rows), PREPARE_CHUNK):
            chunk = rows[start : start + PREPARE_CHUNK]
            self.envelopes.prepare(((r.id, r.function, r.command) for r in chunk), now_ms, prepared)
            await asyncio.sleep(0)
        return prepared

    async def confirm(self) -> int:
        """Ask Redis about one batch of published rows whose check is due; how many it asked about."""
        async with self.engine.begin() as conn:
            rows = await q.claim_due_checks(conn, self.batch)
            if not rows:
                return 0
            ids = [_job_id(row.command_id) for row in rows]
            try:
                states = await read_states(self.redis, ids)
            except (RedisError, OSError) as exc:
                raise RedisUnavailable from exc
            self.redis_answered = True
            final: dict[str, list[int]] = {state: [] for state in _FINAL}
            waiting: list[int] = []
            lost: list[q.ToCheck] = []
            now = self.clock_ms()
            for row, state in zip(rows, states, strict=True):
                if state in final:
                    final[state].append(row.id)
                elif state == "unknown" and row.age_s >= self.republish_after_s:
                    lost.append(row)
                else:
                    waiting.append(row.id)
            if lost:
                prepared = self.envelopes.prepare(((r.id, r.function, r.command) for r in lost), now)
                await self._enqueue(now, [(job_id, job) for _, job_id, job in prepared.jobs])
                await q.mark_published(conn, [row_id for row_id, _, _ in prepared.jobs], self.first_check_s)
            for state, state_ids in final.items():
                await q.confirm(conn, state_ids, state)
            await q.postpone_checks(conn, waiting, self.first_check_s, self.republish_after_s)
        for state, state_ids in final.items():
            self.counts.confirmed[state] += len(state_ids)
            if self.metrics is not None:
                self.metrics.outbox_confirmed_as(state, len(state_ids))
        self.counts.republished += len(lost)
        if self.metrics is not None:
            self.metrics.outbox_step(republished=len(lost))
        return len(rows)

    async def prune(self) -> int:
        """Delete one batch of rows confirmed longer ago than the retention; how many went."""
        async with self.engine.begin() as conn:
            pruned = await q.prune_confirmed(conn, self.retention_s, PRUNE_BATCH)
        self.counts.pruned += pruned
        return pruned

    async def figures(self) -> q.OutboxFigures:
        async with self.engine.connect() as conn:
            return await q.outbox_figures(conn)

    async def _enqueue(self, now_ms: int, jobs: list[tuple[str, bytes]]) -> None:
        if not jobs:
            return
        try:
            await publish_jobs(self.redis, self.queue, self.job_ttl_ms, now_ms, jobs)
        except (RedisError, OSError) as exc:
            raise RedisUnavailable from exc
        self.redis_answered = True


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A claimed batch: its rows, and the connection whose open transaction holds their locks."""

    conn: AsyncConnection
    rows: list[q.ToPublish]


@dataclass(frozen=True, slots=True)
class _Sending:
    """A claimed batch whose jobs are on their way to Redis (`sent` ends when Redis took them)."""

    claimed: _Claimed
    prepared: Prepared
    sent: asyncio.Task[None]


async def _discard(
    ahead: Iterable[asyncio.Task[_Claimed | None]], sending: _Sending | None, claimed: _Claimed | None
) -> None:
    """Roll back every batch still in hand (a failed publish step; claims ahead of an empty one):
    their rows stay unpublished, and jobs Redis took anyway are published again later and refused
    then as duplicates."""
    # Awaited, not cancelled: a statement cut short would leave its connection in doubt, and each
    # ends within its timeout anyway.
    held: list[AsyncConnection] = []
    if claimed is not None:
        held.append(claimed.conn)
    if sending is not None:
        with contextlib.suppress(Exception):
            await sending.sent
        held.append(sending.claimed.conn)
    for task in ahead:
        with contextlib.suppress(Exception):
            next_batch = await task
            if next_batch is not None:
                held.append(next_batch.conn)
    for conn in held:
        with contextlib.suppress(Exception):
            await conn.close()


def _job_id(command_id: str | None) -> str:
    """A published row's job id: its command id in canonical form (the decoder accepted it)."""
    return str(UUID(command_id)) if command_id else ""
