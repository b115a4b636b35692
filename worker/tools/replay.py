"""Replay dead letters: put their original payloads back on the queue under the same job id,
and remove the dead letters, so that none is ever lost and none is ever doubled.

The race to survive: a replayed job that fails again fast (a decode error, a contract
violation) is dead-lettered again by a worker within milliseconds, maybe before the replay has
removed the old row. A replay that enqueues and then deletes by job id deletes that new dead
letter, and the job is gone from PostgreSQL and Redis alike.

How it is done, for each batch of at most `BATCH` dead letters, in one database transaction:

1. `SELECT ... FOR UPDATE` the batch's rows (`lock_dead_letters`). Until this transaction
   ends, a worker writing the dead letter of one of these job ids (`INSERT ... ON CONFLICT DO
   UPDATE`, worker/pipeline/dead_letters.py) waits for it.
2. Enqueue their payloads, all in one `EVAL` of the producers' enqueue script, which refuses a
   job id that is still in Redis (queued or running): those rows are kept.
3. `DELETE` the rows of the jobs that were queued: the very rows locked in step 1.
4. `COMMIT`. A worker that waited in step 1's lock now finds no row and inserts a new one.

Why nothing is lost: a replayed job can only fail after step 2, so its new dead letter is
written after step 4, and nothing deletes it. Why nothing is doubled: `job_id` is the table's
primary key, one row per job id, and a row is only deleted when its job was queued again.
If anything goes wrong between steps 2 and 4 (Redis errors, the database goes away, the
process is killed) the transaction rolls back and every row of the batch stays: a job that was
queued and fails again overwrites its own row, and one that succeeds leaves a dead letter that
outlived its job (replaying it again is harmless: its command is then a duplicate, a no-op).
So the worst outcome of a crash is a stale dead letter, never a missing one.

The list of job ids is read once at the start: a job replayed in one batch and dead-lettered
again is not picked up by a later batch of the same replay (which would loop forever).
A lock is held for one batch (one `EVAL` and one `DELETE`: milliseconds), so a worker writing
one of these dead letters waits that long at most.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, epoch_ms

from worker.config.redis_connection import make_tool_redis
from worker.config.settings import Settings
from worker.store.dead_letter_queries import (
    DeadLetterFilter,
    delete_dead_letters,
    find_dead_letters,
    find_job_ids,
    lock_dead_letters,
)
from worker.store.engine import Sessions, make_engine, make_sessions
from worker.store.models import DeadLetter
from worker.store.operator_actions import record_actions

__all__ = ["BATCH", "ReplayReport", "replay_dead_letters"]

BATCH: Final = 200
"""Dead letters locked, enqueued and deleted in one transaction."""

_REDIS_TIMEOUT_S: Final = 10.0


@dataclass
class ReplayReport:
    """What a replay did (or, in a dry run, would do)."""

    dry_run: bool
    replayed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        if self.dry_run:
            return {"dry_run": True, "would_replay": self.replayed, "skipped": self.skipped}
        return {"replayed": self.replayed, "skipped": self.skipped}


def _unreplayable(letter: DeadLetter) -> str | None:
    if letter.payload is None:
        return "no payload was captured (the job expired in Redis)"
    if len(letter.payload) < letter.payload_size:
        return f"the payload was truncated ({letter.payload_size} bytes received)"
    return None


async def replay_dead_letters(
    settings: Settings, where: DeadLetterFilter, *, dry_run: bool = False, who: str | None = None
) -> ReplayReport:
    """Re-enqueue each matching dead letter under its job id and delete it (see the module's
    docstring for why no dead letter can be lost). With `dry_run`, only say what would happen.
    With `who`, each batch's replays and skips are recorded in `operator_action` in the batch's
    own transaction (so the record says what was committed)."""
    engine = make_engine(settings)
    redis = make_tool_redis(settings.redis_url, _REDIS_TIMEOUT_S)
    report = ReplayReport(dry_run=dry_run)
    try:
        await redis.ping()  # a Redis that cannot be used is said before anything is read or locked
        sessions = make_sessions(engine)
        async with sessions() as session, session.begin():
            job_ids = await find_job_ids(session, where)
        for start in range(0, len(job_ids), BATCH):
            batch = job_ids[start : start + BATCH]
            if dry_run:
                await _preview_batch(sessions, redis, batch, where, report)
            else:
                await _replay_batch(sessions, redis, settings.queue, batch, where, report, who)
    finally:
        await redis.aclose()
        await engine.dispose()
    return report


async def _replay_batch(
    sessions: Sessions,
    redis: Redis,
    default_queue: str,
    batch: Sequence[str],
    where: DeadLetterFilter,
    report: ReplayReport,
    who: str | None,
) -> None:
    skipped_before = set(report.skipped)
    async with sessions() as session, session.begin():
        letters = await lock_dead_letters(session, batch, where)  # 1. locked until the commit
        by_queue: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            why = _unreplayable(letter)
            if why:
                report.skipped[letter.job_id] = why
            else:
                by_queue.setdefault(letter.queue or default_queue, []).append(letter)
        queued: list[str] = []
        for queue, group in by_queue.items():  # 2. enqueue (refused while the id is in Redis)
            args: list[Any] = [epoch_ms(), DEFAULT_JOB_TTL_MS]
            for letter in group:
                args += [letter.job_id, letter.payload]
            # An outcome recorded for it (if it asked for one) was this dead letter; it is about to
            # be queued again, so the old outcome goes first (after the enqueue a fast failure's
            # fresh outcome could already be there).
            await redis.delete(
                *(
                    key
                    for letter in group
                    for key in (keys.outcome_key(letter.job_id), keys.outcome_done_key(letter.job_id))
                )
            )
            results = await cast(Awaitable[list[int]], redis.eval(ENQUEUE_SCRIPT, 1, queue, *args))
            for letter, result in zip(group, results, strict=True):
                if result:
                    queued.append(letter.job_id)
                else:
                    report.skipped[letter.job_id] = "a job with this id is still in Redis (queued or running)"
        if queued:
            await delete_dead_letters(session, queued)  # 3. the rows locked in 1
        if who is not None:
            targets: list[tuple[str | None, str]] = [(job_id, "replayed") for job_id in queued]
            targets += [
                (job_id, f"not replayed: {why}")
                for job_id, why in report.skipped.items()
                if job_id not in skipped_before
            ]
            await record_actions(session, who=who, action="replay", queue=default_queue, targets=targets)
        # 4. the commit, on leaving the block; a worker waiting to re-write one of them goes on
    report.replayed += queued


async def _preview_batch(
    sessions: Sessions, redis: Redis, batch: Sequence[str], where: DeadLetterFilter, report: ReplayReport
) -> None:
    async with sessions() as session, session.begin():
        letters = await find_dead_letters(session, replace(where, job_ids=list(batch)))
    order = {job_id: index for index, job_id in enumerate(batch)}
    letters.sort(key=lambda letter: order[letter.job_id])
    for letter in letters:
        why = _unreplayable(letter)
        if why is None and await redis.exists(keys.job_key(letter.job_id), keys.result_key(letter.job_id)):
            why = "a job with this id is still in Redis (queued or running)"
        if why:
            report.skipped[letter.job_id] = why
        else:
            report.replayed.append(letter.job_id)
