"""The wire format: which Redis keys hold a queued command, and how one is enqueued atomically.

arq's layout, which taskline keeps so that arq workers can run the jobs:

* the queue is a sorted set (`TASKLINE_QUEUE`, default `taskline:queue`) whose members are job
  ids, scored by the epoch milliseconds at which the job may run;
* the job is the string `arq:job:<job id>` holding the JSON envelope
  `{"f": <function>, "a": [<command>], "k": {}, "t": null, "et": <enqueue epoch ms>}`, with a
  time to live after which an unstarted job expires (a dead letter);
* a job id whose `arq:job:` or `arq:result:` key exists is a duplicate and is not enqueued.

The enqueue script below does the duplicate check and both writes in one atomic step; it is
the same thing arq does with WATCH/MULTI/EXEC, for many commands per round trip.
"""

from __future__ import annotations

import time
from typing import Any, Final

from taskline_producer.contract import Command, dumps

__all__ = [
    "DEFAULT_JOB_TTL_MS",
    "ENQUEUE_SCRIPT",
    "IN_PROGRESS_KEY_PREFIX",
    "JOB_KEY_PREFIX",
    "RESULT_KEY_PREFIX",
    "RETRY_KEY_PREFIX",
    "WAKE_KEY_SUFFIX",
    "envelope",
    "epoch_ms",
    "job_of_command",
    "wire_argument",
]

JOB_KEY_PREFIX: Final = "arq:job:"
IN_PROGRESS_KEY_PREFIX: Final = "arq:in-progress:"
RESULT_KEY_PREFIX: Final = "arq:result:"
RETRY_KEY_PREFIX: Final = "arq:retry:"

WAKE_KEY_SUFFIX: Final = ":wake"
"""`<queue>:wake` is a short list the enqueue script pushes a token onto; idle workers block on
it, so a new job starts within a millisecond instead of at the next poll. Optional for other
producers: without it a job waits at most TASKLINE_POLL_DELAY."""

DEFAULT_JOB_TTL_MS: Final = 86_400_000
"""How long a queued job may wait before it expires unrun (arq's default: one day)."""

ENQUEUE_SCRIPT: Final = """
-- KEYS[1]: the queue; ARGV[1]: score (epoch ms); ARGV[2]: job TTL in ms;
-- ARGV[3..]: job id, job JSON, job id, job JSON, ...
-- Returns one integer per job: 1 = queued, 0 = refused as a duplicate.
local queued = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('EXISTS', 'arq:job:' .. id, 'arq:result:' .. id) == 0 then
    redis.call('SET', 'arq:job:' .. id, ARGV[i + 1], 'PX', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    queued[#queued + 1] = 1
  else
    queued[#queued + 1] = 0
  end
end
if #queued > 0 then
  -- Wake one idle worker now rather than at its next poll (bounded: a few tokens at most).
  redis.call('LPUSH', KEYS[1] .. ':wake', 1)
  redis.call('LTRIM', KEYS[1] .. ':wake', 0, 15)
end
return queued
"""


def epoch_ms() -> int:
    return int(time.time() * 1000)


def wire_argument(command: Command) -> dict[str, Any]:
    """A command as its job's JSON argument; exclude_unset keeps "absent" and "null" apart for
    update_task's optional fields."""
    return command.model_dump(mode="json", exclude_unset=True)


def job_of_command(command: Command, enqueued_ms: int) -> bytes:
    """The arq job JSON of one command as its own job."""
    return envelope(command.function, wire_argument(command), enqueued_ms)


def envelope(function: str, argument: Any, enqueued_ms: int) -> bytes:
    """The arq job JSON for one job function and its single positional argument."""
    return dumps({"f": function, "a": [argument], "k": {}, "t": None, "et": enqueued_ms})
