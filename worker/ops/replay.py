"""Replay dead letters: put their original payloads back on the queue under the same job id."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, epoch_ms

from worker.pipeline.dead_letters import DeadLetterFilter, delete_dead_letters, find_dead_letters
from worker.settings import Settings
from worker.store.engine import make_engine, make_sessions

__all__ = ["replay_dead_letters"]


async def replay_dead_letters(settings: Settings, where: DeadLetterFilter) -> dict[str, Any]:
    """Re-enqueue each matching dead letter, then delete it; a job that fails again comes back
    as a dead letter with the same job id. Returns {"replayed": [...], "skipped": {id: why}}."""
    engine = make_engine(settings)
    redis = Redis.from_url(settings.redis_url)
    replayed: list[str] = []
    skipped: dict[str, str] = {}
    try:
        async with make_sessions(engine)() as session, session.begin():
            for letter in await find_dead_letters(session, where):
                if letter.payload is None:
                    skipped[letter.job_id] = "no payload was captured (the job expired in Redis)"
                    continue
                if len(letter.payload) < letter.payload_size:
                    skipped[letter.job_id] = f"the payload was truncated ({letter.payload_size} bytes received)"
                    continue
                queue = letter.queue or settings.queue
                (queued,) = await redis.eval(
                    ENQUEUE_SCRIPT, 1, queue, epoch_ms(), DEFAULT_JOB_TTL_MS, letter.job_id, letter.payload
                )
                if not queued:
                    skipped[letter.job_id] = "a job with this id is still in Redis (queued or running)"
                    continue
                # Its recorded outcome (if it asked for one) was the dead letter: it is queued again.
                await redis.delete(keys.outcome_key(letter.job_id), keys.outcome_done_key(letter.job_id))
                replayed.append(letter.job_id)
            if replayed:
                await delete_dead_letters(session, replayed)
    finally:
        await redis.aclose()
        await engine.dispose()
    return {"replayed": replayed, "skipped": skipped}
