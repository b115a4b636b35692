"""Claiming jobs: the due jobs arq found, claimed, fetched and counted in one round trip.

arq's poll reads the due job ids (ZRANGEBYSCORE) and hands them to `Worker.start_jobs`, which
claims each with WATCH/EXISTS/ZSCORE/MULTI/SET/EXEC and then starts it with one more MULTI
(GET the job, INCR its try counter): five or more round trips per job, one job after the other.
taskline's `start_jobs` (worker/arq_seam/overrides.py) sends those ids to the script below,
which does the same work for all of them atomically: a job is claimed only if it is still in
the queue, due, and unclaimed; its claim is arq's in-progress key, holding the claiming worker's
id (so operators can tell whose claim a key is) and expiring like arq's; its payload and its
try number come back with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from taskline_producer.keys import IN_PROGRESS_KEY_PREFIX, JOB_KEY_PREFIX, RETRY_KEY_PREFIX, RETRY_KEY_TTL_S

__all__ = ["CLAIM_SCRIPT", "Claimed", "claim_arguments", "parse_claimed"]

CLAIM_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: now (epoch ms); ARGV[2]: claim expiry (ms); ARGV[3]: the
-- claiming worker's id; ARGV[4]: most jobs to claim; ARGV[5..]: candidate job ids, queue order.
-- Returns, per job claimed: job id, score, payload (false when its key expired), try number.
local claimed = {{}}
local limit = tonumber(ARGV[4])
local now = tonumber(ARGV[1])
for i = 5, #ARGV do
  if #claimed >= 4 * limit then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now
     and redis.call('SET', '{IN_PROGRESS_KEY_PREFIX}' .. id, ARGV[3], 'NX', 'PX', ARGV[2]) then
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = score
    claimed[#claimed + 1] = redis.call('GET', '{JOB_KEY_PREFIX}' .. id)
    claimed[#claimed + 1] = redis.call('INCR', '{RETRY_KEY_PREFIX}' .. id)
    redis.call('EXPIRE', '{RETRY_KEY_PREFIX}' .. id, {RETRY_KEY_TTL_S})
  end
end
return claimed
"""


class Claimed(NamedTuple):
    job_id: str
    score: int
    payload: bytes | None
    """None when the job's key had expired (the job TTL passed before it ran)."""
    job_try: int


def claim_arguments(
    now_ms: int, expiry_ms: int, worker_id: str, limit: int, job_ids: Sequence[bytes | str]
) -> list[Any]:
    """ARGV for CLAIM_SCRIPT."""
    return [now_ms, expiry_ms, worker_id, limit, *job_ids]


def parse_claimed(reply: list[Any]) -> list[Claimed]:
    """The script's flat reply → one `Claimed` per job, in queue order."""
    jobs = []
    for index in range(0, len(reply), 4):
        job_id = reply[index]
        job_id = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
        jobs.append(Claimed(job_id, int(float(reply[index + 1])), reply[index + 2] or None, int(reply[index + 3])))
    return jobs
