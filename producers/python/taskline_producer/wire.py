"""The wire format: which Redis keys hold a queued command, and how one is enqueued atomically.

arq's layout, which taskline keeps so that arq workers can run the jobs:

* the queue is a sorted set (`TASKLINE_QUEUE`, default `taskline:queue`) whose members are job
  ids, scored by the epoch milliseconds at which the job may run;
* the job is the string `arq:job:<job id>` holding the JSON envelope
  `{"f": <function>, "a": [<command>], "k": {}, "t": null, "et": <enqueue epoch ms>}`, with a
  time to live after which an unstarted job expires (a dead letter);
* `k` (arq's keyword arguments) carries taskline's job options: empty for a contract-1 job,
  `{"contract": 2, "outcome_ttl": <seconds>}` for a job whose outcomes are to be recorded, and
  `"sig"` with `"contract": 3` for a signed job (taskline_producer/signing.py);
* beside the job, only when its producer passes on a trace, the string `taskline:trace:<job id>`
  holds the W3C trace context of the producer's span (taskline_producer/tracing.py), with the
  job's expiry; the job's bytes are the same with or without it;
* a job id whose `arq:job:` or `arq:result:` key exists is a duplicate and is not enqueued.

The enqueue script below does the duplicate check and the writes in one atomic step; it is
the same thing arq does with WATCH/MULTI/EXEC, for many commands per round trip.

The fair enqueue script does the same for jobs that carry a fairness key (a user, a tenant): the
job's key is written the same way, but its id goes to the end of its key's lane instead of into
the queue, and the claim script takes turns between the keys (worker/arq_seam/fair_turns.py,
docs/operations.md "Fair turns"). The fairness key is not part of the envelope: it decides when a
job is claimed, not what it does, so no contract version changes and any worker that knows the
lanes applies the job.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Final

from taskline_producer.contract import OUTCOME_TTL_MAX_S, OUTCOME_VERSION, Command, dumps
from taskline_producer.keys import (
    FAIR_CLOCK_SUFFIX,
    FAIR_LANE_INFIX,
    FAIR_TURNS_SUFFIX,
    JOB_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    TRACE_KEY_PREFIX,
    WAKE_KEY_SUFFIX,
)
from taskline_producer.signing import SigningKey, seal, signature_options

__all__ = [
    "DEFAULT_JOB_TTL_MS",
    "ENQUEUE_FAIR_SCRIPT",
    "ENQUEUE_SCRIPT",
    "check_fairness_key",
    "default_fairness_key",
    "enqueue_arguments",
    "envelope",
    "epoch_ms",
    "fair_turns_from_env",
    "job_of_command",
    "job_options",
    "wire_argument",
]

DEFAULT_JOB_TTL_MS: Final = 86_400_000
"""How long a queued job may wait before it expires unrun (arq's default: one day)."""

ENQUEUE_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: score (epoch ms); ARGV[2]: job TTL in ms;
-- ARGV[3..]: job id, job JSON, job id, job JSON, ...; then, only from a producer passing on a
-- trace, one more: the trace context (JSON) written beside each queued job, with its expiry.
-- Returns one integer per job: 1 = queued, 0 = refused as a duplicate.
local last, trace = #ARGV, false
if last % 2 == 1 then trace, last = ARGV[last], last - 1 end
local queued = {{}}
for i = 3, last, 2 do
  local id = ARGV[i]
  if redis.call('EXISTS', '{JOB_KEY_PREFIX}' .. id, '{RESULT_KEY_PREFIX}' .. id) == 0 then
    redis.call('SET', '{JOB_KEY_PREFIX}' .. id, ARGV[i + 1], 'PX', ARGV[2])
    if trace then redis.call('SET', '{TRACE_KEY_PREFIX}' .. id, trace, 'PX', ARGV[2]) end
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    queued[#queued + 1] = 1
  else
    queued[#queued + 1] = 0
  end
end
if #queued > 0 then
  -- Wake one idle worker now rather than at its next poll (bounded: a few tokens at most).
  redis.call('LPUSH', KEYS[1] .. '{WAKE_KEY_SUFFIX}', 1)
  redis.call('LTRIM', KEYS[1] .. '{WAKE_KEY_SUFFIX}', 0, 15)
end
return queued
"""


def enqueue_arguments(score: int, job_ttl_ms: int, jobs: list[Any], trace: str | None = None) -> list[Any]:
    """ARGV for ENQUEUE_SCRIPT or ENQUEUE_FAIR_SCRIPT: the score, the job TTL, each job's arguments
    flattened in `jobs` (id and JSON; for the fair script also its fairness key and cost), and
    the trace context to write beside each queued job, when there is one."""
    args: list[Any] = [score, job_ttl_ms, *jobs]
    if trace is not None:
        args.append(trace)
    return args


ENQUEUE_FAIR_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: score (epoch ms); ARGV[2]: job TTL in ms;
-- ARGV[3..]: job id, job JSON, fairness key, cost (commands in the job), job id, ...; then, only
-- from a producer passing on a trace, one more: the trace context (JSON) written beside each
-- queued job, with its expiry.
-- Returns one integer per job: 1 = queued, 0 = refused as a duplicate.
-- A job with an empty fairness key goes straight into the queue, as with the plain script.
local last, trace = #ARGV, false
if (last - 2) % 4 == 1 then trace, last = ARGV[last], last - 1 end
local queued, clock = {{}}, nil
for i = 3, last, 4 do
  local id, key = ARGV[i], ARGV[i + 2]
  if redis.call('EXISTS', '{JOB_KEY_PREFIX}' .. id, '{RESULT_KEY_PREFIX}' .. id) == 0 then
    redis.call('SET', '{JOB_KEY_PREFIX}' .. id, ARGV[i + 1], 'PX', ARGV[2])
    if trace then redis.call('SET', '{TRACE_KEY_PREFIX}' .. id, trace, 'PX', ARGV[2]) end
    if key == '' then
      redis.call('ZADD', KEYS[1], ARGV[1], id)
    else
      redis.call('RPUSH', KEYS[1] .. '{FAIR_LANE_INFIX}' .. key, ARGV[1] .. ' ' .. ARGV[i + 3] .. ' ' .. id)
      clock = clock or redis.call('GET', KEYS[1] .. '{FAIR_CLOCK_SUFFIX}') or '0'
      redis.call('ZADD', KEYS[1] .. '{FAIR_TURNS_SUFFIX}', 'NX', clock, key)
    end
    queued[#queued + 1] = 1
  else
    queued[#queued + 1] = 0
  end
end
if #queued > 0 then
  redis.call('LPUSH', KEYS[1] .. '{WAKE_KEY_SUFFIX}', 1)
  redis.call('LTRIM', KEYS[1] .. '{WAKE_KEY_SUFFIX}', 0, 15)
end
return queued
"""

MAX_FAIRNESS_KEY_CHARS: Final = 128
_FAIRNESS_KEY = re.compile(rf"[!-~]{{1,{MAX_FAIRNESS_KEY_CHARS}}}")


def default_fairness_key(user_id: int) -> str:
    """The fairness key of a command when its producer names none: its user."""
    return f"user:{user_id}"


FAIR_TURNS_ENV: Final = "TASKLINE_FAIR_TURNS"


def fair_turns_from_env() -> bool:
    """Whether producers send with fairness keys when their code does not say: TASKLINE_FAIR_TURNS
    set to 1 or true (off otherwise, until every worker knows the lanes)."""
    value = os.environ.get(FAIR_TURNS_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{FAIR_TURNS_ENV} must be 1 or 0 (true or false), got {value!r}: fix the variable or unset it")


def check_fairness_key(key: str) -> str:
    """A fairness key as given, or ValueError: 1 to 128 printable ASCII characters, no spaces."""
    if not isinstance(key, str) or not _FAIRNESS_KEY.fullmatch(key):
        raise ValueError(
            f"a fairness key is 1 to {MAX_FAIRNESS_KEY_CHARS} printable ASCII characters without spaces "
            f"(for example 'user:42' or 'tenant:acme'), got {key!r}"
        )
    return key


def epoch_ms() -> int:
    return int(time.time() * 1000)


def wire_argument(command: Command) -> dict[str, Any]:
    """A command as its job's JSON argument; exclude_unset keeps "absent" and "null" apart for
    update_task's optional fields."""
    return command.model_dump(mode="json", exclude_unset=True)


def job_options(outcome_ttl: int | None = None) -> dict[str, Any]:
    """The envelope's `k` for a job: empty (contract version 1, which every worker applies)
    unless the job asks for outcomes, which needs contract version 2."""
    if outcome_ttl is None:
        return {}
    if isinstance(outcome_ttl, bool) or not isinstance(outcome_ttl, int) or not 0 < outcome_ttl <= OUTCOME_TTL_MAX_S:
        raise ValueError(
            f"outcome_ttl must be a whole number of seconds from 1 to {OUTCOME_TTL_MAX_S}, got {outcome_ttl!r}"
        )
    return {"contract": OUTCOME_VERSION, "outcome_ttl": outcome_ttl}


def job_of_command(
    command: Command, enqueued_ms: int, options: dict[str, Any] | None = None, key: SigningKey | None = None
) -> bytes:
    """The arq job JSON of one command as its own job (signed with `key`, when given)."""
    return envelope(command.function, wire_argument(command), enqueued_ms, options, key)


def envelope(
    function: str,
    argument: Any,
    enqueued_ms: int,
    options: dict[str, Any] | None = None,
    key: SigningKey | None = None,
) -> bytes:
    """The arq job JSON for one job function, its single positional argument and its options
    (`job_options`; none: a contract-1 job), signed with `key` when given (contract 3)."""
    if key is None:
        return dumps({"f": function, "a": [argument], "k": options or {}, "t": None, "et": enqueued_ms})
    k = signature_options(key, dict(options or {}))
    return seal(dumps({"f": function, "a": [argument], "k": k, "t": None, "et": enqueued_ms}), key)
