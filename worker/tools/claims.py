"""Claims waiting to expire: jobs a crashed worker had claimed, which nobody runs until the claim
(`arq:in-progress:<job id>`) expires, and their pickup afterwards.

A worker's heartbeat lists the jobs it runs (`running_job_ids`) and is kept after a crash until
its claims have expired (worker/observe/heartbeat.py). A claim is *waiting to expire* when its worker
stopped beating and the claim key still exists and names that worker (the claim's value is the
claiming worker's id; a legacy claim holding '1' is taken at its word). Its PTTL says when it
expires; then any worker claims the job again from the queue.

What it costs: nothing on the workers. Readers (`taskline status`, `taskline health`, the web
page, the fleet metrics page) look once per read; `ClaimWatch` (run by the scheduler and the web
process, once per heartbeat interval) logs a WARNING when claims start waiting and an INFO line
when they were picked up, and keeps the `taskline_claims_waiting_to_expire` gauge.

The heartbeat's list is at most one interval old: a job claimed in the last interval before a
crash is not listed (it is picked up all the same, only not shown as waiting).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer import keys

from worker.text import reply_text
from worker.tools.fleet import Heartbeats, read_heartbeats

__all__ = ["LEGACY_CLAIM_VALUE", "ClaimWatch", "StrandedClaim", "stranded_claims"]

LEGACY_CLAIM_VALUE: Final = "1"
"""What arq's own claim (and taskline's before it named the worker) stores in the claim key."""


@dataclass(frozen=True, slots=True)
class StrandedClaim:
    job_id: str
    worker_id: str
    """The worker that claimed the job and stopped beating."""
    host: str
    expires_in_s: float
    """Seconds until the claim expires and the job can run again (measured by Redis)."""
    silent_for_s: float
    """Seconds since that worker's last heartbeat."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def stranded_claims(redis: Redis, gone: Iterable[dict[str, Any]]) -> list[StrandedClaim]:
    """The claims of workers that stopped beating (their kept heartbeats) that still exist,
    soonest to expire first. One round trip, two commands per job listed."""
    listed = [
        (document, str(job_id)) for document in gone for job_id in document.get("running_job_ids") or [] if job_id
    ]
    if not listed:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for _, job_id in listed:
            pipe.get(keys.in_progress_key(job_id))
            pipe.pttl(keys.in_progress_key(job_id))
        replies = await pipe.execute()
    claims = []
    for (document, job_id), holder, pttl in zip(listed, replies[0::2], replies[1::2], strict=True):
        holder = None if holder is None else reply_text(holder)
        worker_id = str(document["worker_id"])
        if holder is None or holder not in (worker_id, LEGACY_CLAIM_VALUE) or int(pttl) < 0:
            continue  # expired already, or claimed again by another worker
        claims.append(
            StrandedClaim(
                job_id=job_id,
                worker_id=worker_id,
                host=str(document.get("host", "?")),
                expires_in_s=round(int(pttl) / 1000, 3),
                silent_for_s=float(document.get("age_s", 0.0)),
            )
        )
    return sorted(claims, key=lambda claim: (claim.expires_in_s, claim.job_id))


class ClaimWatch:
    """Logs claims that start waiting to expire, and their pickup; keeps the gauge.

    Call `check()` once per heartbeat interval from one long-running process (the scheduler, the
    web page); with several such processes each logs the same events, which is harmless."""

    def __init__(self, redis: Redis, queue: str, log: Any, gauge: Any = None) -> None:
        self.redis = redis
        self.queue = queue
        self.log = log
        self.gauge = gauge
        self.waiting: dict[str, StrandedClaim] = {}

    async def check(self, heartbeats: Heartbeats | None = None) -> list[StrandedClaim]:
        """Log what changed since the last check; returns the claims waiting now. `heartbeats`
        saves a read when the caller has them already."""
        if heartbeats is None:
            heartbeats = await read_heartbeats(self.redis, self.queue)
        claims = await stranded_claims(self.redis, heartbeats.gone)
        now = {claim.job_id: claim for claim in claims}
        new = [claim for job_id, claim in now.items() if job_id not in self.waiting]
        ended = [claim for job_id, claim in self.waiting.items() if job_id not in now]
        for worker_id, group in _by_worker(new).items():
            self.log.warning(
                "claims waiting to expire: a worker stopped beating while running jobs",
                stopped_worker=worker_id,
                jobs=len(group),
                expires_in_s=max(claim.expires_in_s for claim in group),
                silent_for_s=group[0].silent_for_s,
                job_ids=[claim.job_id for claim in group[:20]],
            )
        if ended:
            await self._report_pickup(ended)
        self.waiting = now
        if self.gauge is not None:
            self.gauge.set(len(claims))
        return claims

    async def _report_pickup(self, ended: list[StrandedClaim]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for claim in ended:
                pipe.get(keys.in_progress_key(claim.job_id))
                pipe.zscore(self.queue, claim.job_id)
            replies = await pipe.execute()
        fates = {
            claim.job_id: _fate(None if holder is None else reply_text(holder), score)
            for claim, holder, score in zip(ended, replies[0::2], replies[1::2], strict=True)
        }
        for worker_id, group in _by_worker(ended).items():
            picked = {c.job_id: fates[c.job_id] for c in group}
            self.log.info(
                "claims expired: the stopped worker's jobs are free to run again",
                stopped_worker=worker_id,
                jobs=len(group),
                running_again=sum(fate.startswith("running") for fate in picked.values()),
                queued=sum(fate == "queued" for fate in picked.values()),
                finished=sum(fate == "finished" for fate in picked.values()),
                fates=dict(list(picked.items())[:20]),
            )


def _fate(holder: str | None, score: Any) -> str:
    if holder is not None:
        return "running" if holder == LEGACY_CLAIM_VALUE else f"running on {holder}"
    return "queued" if score is not None else "finished"


def _by_worker(claims: Iterable[StrandedClaim]) -> dict[str, list[StrandedClaim]]:
    groups: dict[str, list[StrandedClaim]] = {}
    for claim in claims:
        groups.setdefault(claim.worker_id, []).append(claim)
    return groups
