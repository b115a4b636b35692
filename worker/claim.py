"""Claiming jobs: one Redis round trip per poll instead of one plus four per job.

arq reads the due job ids (ZRANGEBYSCORE), then claims each job with WATCH in-progress key →
EXISTS → ZSCORE → MULTI/SET/EXEC, four round trips per job, one job after the other. The script
below makes the same decisions atomically in one call: it reads the due jobs in queue order and
claims each one nobody holds by setting its in-progress key with arq's expiry, exactly as arq
does, up to the worker's free slots.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["CLAIM_SCRIPT", "parse_claimed"]

CLAIM_SCRIPT: Final = """
-- KEYS[1]: the queue; ARGV[1]: now (epoch ms); ARGV[2]: in-progress expiry (ms);
-- ARGV[3]: most jobs to claim; ARGV[4]: how many due jobs to look at (arq's queue_read_limit).
-- Returns job id, score, job id, score, ... for the jobs claimed, in queue order.
local claimed = {}
local limit = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
for i = 1, #due, 2 do
  if #claimed >= 2 * limit then break end
  local id = due[i]
  if redis.call('SET', 'arq:in-progress:' .. id, '1', 'NX', 'PX', ARGV[2]) then
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = due[i + 1]
  end
end
return claimed
"""


def parse_claimed(reply: list[Any]) -> list[tuple[str, int]]:
    """[id, score, id, score, ...] → [(job id, score)]."""
    pairs = []
    for index in range(0, len(reply), 2):
        job_id = reply[index]
        job_id = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
        pairs.append((job_id, int(float(reply[index + 1]))))
    return pairs
