"""Claims waiting to expire: jobs claimed by a worker that stopped beating, which nobody runs until
the claim (`arq:in-progress:<job id>`) is taken over or expires, and their pickup afterwards.

The claim names its worker from the moment it is taken (worker/arq_seam/claim.py), and a claimed
job keeps its place in the queue until it ends, so readers find every claim from the queue itself:
the first `CLAIM_SCAN` due jobs, the claim of each, and the heartbeats of their holders. A claim
is *stranded* when its holder's heartbeat is kept but older than `SILENT_AFTER_BEATS` intervals:

* **silent**: the worker missed its beats but is not yet dead (`BEATS_PER_TTL` intervals); its
  jobs run again when it is, at the next claim with take-over of any live worker (at most one
  heartbeat interval later), or when the claim expires, whichever is first;
* **dead**: the next such claim takes its jobs over, within one heartbeat interval.

A claim holding '1' (arq's own worker) or naming a worker without any heartbeat (one that has not
written its first yet) is not judged. `runs_again_in_s` is the estimate above, bounded by the
claim's PTTL (measured by Redis).

What it costs: nothing on the workers. Readers (`taskline status`, `taskline health`, the web
page, the fleet metrics page) look once per read: one ZRANGEBYSCORE, one pipeline of GETs, one of
PTTLs for the stranded; `ClaimWatch` (run by the scheduler and the web process, twice per
heartbeat interval) logs a WARNING when claims start waiting and an INFO line when they were
picked up, and keeps the `taskline_claims_waiting_to_expire` gauge.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer import keys

from worker.observe.heartbeat import BEATS_PER_TTL
from worker.text import reply_text
from worker.tools.fleet import Heartbeats, read_heartbeats

__all__ = ["CLAIM_SCAN", "LEGACY_CLAIM_VALUE", "SILENT_AFTER_BEATS", "ClaimWatch", "StrandedClaim", "stranded_claims"]

LEGACY_CLAIM_VALUE: Final = "1"
"""What arq's own claim (and taskline's before it named the worker) stores in the claim key."""
CLAIM_SCAN: Final = 2000
"""Readers look at the claims of this many due jobs from the head of the queue: claims are taken
in queue order, so every running job is among them unless the fleet runs more at once."""
SILENT_AFTER_BEATS: Final = 2
"""A worker whose heartbeat is this many intervals old has missed a beat: its claims show as
stranded. (A live worker's beat can be up to an interval late while its database check times out.)"""


@dataclass(frozen=True, slots=True)
class StrandedClaim:
    job_id: str
    worker_id: str
    """The worker that claimed the job and stopped beating."""
    host: str
    expires_in_s: float
    """Seconds until the claim expires (measured by Redis)."""
    silent_for_s: float
    """Seconds since that worker's last heartbeat."""
    worker_state: str
    """'silent' (missed its beats) or 'dead' (its claims are taken over at the next claim)."""
    runs_again_in_s: float
    """Seconds until the job can run again, at the latest: taken over, or its claim expired."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def stranded_claims(redis: Redis, queue: str, heartbeats: Heartbeats) -> list[StrandedClaim]:
    """The claims on due jobs held by workers that stopped beating, soonest to run again first.
    Three round trips at most."""
    silent = {}
    for document in [*heartbeats.live, *heartbeats.gone]:
        interval = float(document.get("interval_s") or 0)
        if float(document.get("age_s", 0.0)) > interval * SILENT_AFTER_BEATS:
            silent[str(document["worker_id"])] = document
    if not silent:
        return []
    due = await redis.zrangebyscore(queue, "-inf", int(time.time() * 1000), start=0, num=CLAIM_SCAN)
    if not due:
        return []
    job_ids = [reply_text(job_id) for job_id in due]
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(keys.in_progress_key(job_id))
        holders = [None if raw is None else reply_text(raw) for raw in await pipe.execute()]
    stranded = [(job_id, holder) for job_id, holder in zip(job_ids, holders, strict=True) if holder in silent]
    if not stranded:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for job_id, _ in stranded:
            pipe.pttl(keys.in_progress_key(job_id))
        pttls = await pipe.execute()
    claims = []
    for (job_id, holder), pttl in zip(stranded, pttls, strict=True):
        if int(pttl) < 0:
            continue  # expired since
        document = silent[str(holder)]
        expires_in_s = round(int(pttl) / 1000, 3)
        interval = float(document.get("interval_s") or 0)
        age = float(document.get("age_s", 0.0))
        dead_in_s = max(0.0, interval * BEATS_PER_TTL - age)
        claims.append(
            StrandedClaim(
                job_id=job_id,
                worker_id=str(holder),
                host=str(document.get("host", "?")),
                expires_in_s=expires_in_s,
                silent_for_s=age,
                worker_state="dead" if dead_in_s <= 0 else "silent",
                runs_again_in_s=round(min(expires_in_s, dead_in_s + interval), 3),
            )
        )
    return sorted(claims, key=lambda claim: (claim.runs_again_in_s, claim.job_id))


class ClaimWatch:
    """Logs claims that start waiting to expire, and their pickup; keeps the gauge.

    Call `check()` twice per heartbeat interval from one long-running process (the scheduler, the
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
        claims = await stranded_claims(self.redis, self.queue, heartbeats)
        now = {claim.job_id: claim for claim in claims}
        new = [claim for job_id, claim in now.items() if job_id not in self.waiting]
        ended = [claim for job_id, claim in self.waiting.items() if job_id not in now]
        for worker_id, group in _by_worker(new).items():
            self.log.warning(
                "claims waiting to expire: a worker stopped beating while running jobs",
                stopped_worker=worker_id,
                jobs=len(group),
                runs_again_in_s=max(claim.runs_again_in_s for claim in group),
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
                "claims expired or taken over: the stopped worker's jobs are free to run again",
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
