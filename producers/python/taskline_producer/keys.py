"""Every Redis key taskline reads or writes, in one place.

Producers, workers, the scheduler and the operations tools all build key names here, and the Lua
scripts (`taskline_producer.wire`, `worker.arq_seam.claim`) are assembled from these constants,
so no key literal appears anywhere else.

arq's keys (`arq:job:`, `arq:in-progress:`, `arq:retry:`, `arq:result:`) are fixed by arq, whose
wire format is taskline's: a test (`tests/unit/test_arq_surface.py`) fails if arq ever changes them.
Everything taskline adds lives under `taskline:` or under the queue's own name.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_QUEUE",
    "FAIR_BUCKETS_SUFFIX",
    "FAIR_CLOCK_SUFFIX",
    "FAIR_HELD_SUFFIX",
    "FAIR_LANE_INFIX",
    "FAIR_LIMITS_SUFFIX",
    "FAIR_TURNS_SUFFIX",
    "HEARTBEAT_KEY_PREFIX",
    "HISTORY_KEY_PREFIX",
    "IN_PROGRESS_KEY_PREFIX",
    "JOB_KEY_PREFIX",
    "OUTCOME_DONE_SUFFIX",
    "OUTCOME_KEY_PREFIX",
    "PAUSED_KEY_SUFFIX",
    "RELAYS_INDEX_PREFIX",
    "RELAY_KEY_PREFIX",
    "RESULT_KEY_PREFIX",
    "RETRY_KEY_PREFIX",
    "RETRY_KEY_TTL_S",
    "TRACE_KEY_PREFIX",
    "TRANSIENT_KEY_PREFIX",
    "WAKE_KEY_SUFFIX",
    "WORKERS_INDEX_PREFIX",
    "fair_buckets_key",
    "fair_clock_key",
    "fair_held_key",
    "fair_lane_key",
    "fair_limits_key",
    "fair_turns_key",
    "heartbeat_key",
    "history_baseline_key",
    "history_key",
    "history_slot_key",
    "in_progress_key",
    "job_key",
    "outcome_done_key",
    "outcome_key",
    "paused_key",
    "relay_key",
    "relays_index_key",
    "result_key",
    "retry_key",
    "scheduler_queue",
    "scheduler_tick_key",
    "trace_key",
    "transient_key",
    "wake_key",
    "workers_index_key",
]

# --- arq's keys (arq.constants): the queue's wire format -------------------------------------

DEFAULT_QUEUE: Final = "taskline:queue"
"""The queue: a sorted set of job ids scored by the epoch ms at which each may run."""

JOB_KEY_PREFIX: Final = "arq:job:"
"""`arq:job:<job id>`: the job's JSON envelope, with the job TTL."""
IN_PROGRESS_KEY_PREFIX: Final = "arq:in-progress:"
"""`arq:in-progress:<job id>`: a worker's claim on the job; it expires if the worker dies."""
RETRY_KEY_PREFIX: Final = "arq:retry:"
"""`arq:retry:<job id>`: how many times the job has been started (arq's try counter)."""
RESULT_KEY_PREFIX: Final = "arq:result:"
"""`arq:result:<job id>`: arq's result; taskline keeps none (keep_result=0), but a job id whose
result key exists is still refused as a duplicate at enqueue, as arq does."""
RETRY_KEY_TTL_S: Final = 88_400
"""How long a try counter lives after its last increment (arq's value)."""

# --- taskline's own keys ------------------------------------------------------------------------

WAKE_KEY_SUFFIX: Final = ":wake"
"""`<queue>:wake`: a short list the enqueue script pushes a token onto; idle workers block on it,
so a new job starts at once instead of at the next poll."""
TRANSIENT_KEY_PREFIX: Final = "taskline:transient:"
"""`taskline:transient:<job id>`: the job's transient failures so far, across workers."""
TRACE_KEY_PREFIX: Final = "taskline:trace:"
"""`taskline:trace:<job id>`: the W3C trace context (JSON: `traceparent`, `tracestate`) of the
producer's span that sent the job, beside the job rather than inside its bytes, so that every
worker runs a traced job. Written by the enqueue script with the job and its expiry, only by a
producer with a sampled trace to pass on; read by a worker that traces, deleted with the job."""
HEARTBEAT_KEY_PREFIX: Final = "taskline:worker:"
"""`taskline:worker:<queue>:<worker id>`: a live worker's heartbeat document."""
WORKERS_INDEX_PREFIX: Final = "taskline:workers:"
"""`taskline:workers:<queue>`: sorted set of worker ids by last heartbeat."""
HISTORY_KEY_PREFIX: Final = "taskline:history:"
"""`taskline:history:<queue>`: sorted set of the fleet's samples (JSON) by time, behind the plots
of `taskline status` and `taskline web`; `…:baseline` holds the counters the last sample saw, and
`…:slot:<epoch s>` claims one sample period for one writer (worker/tools/history.py)."""
OUTCOME_KEY_PREFIX: Final = "taskline:outcome:"
"""`taskline:outcome:<command id>`: the command's latest outcome (JSON), written by the worker with
the `outcome_ttl` its job asked for; only for jobs that asked."""
OUTCOME_DONE_SUFFIX: Final = ":done"
"""`taskline:outcome:<command id>:done`: a list the worker pushes one token onto when the command
reaches a final state; waiting producers block on it (BLMOVE onto itself, so any number can)."""
PAUSED_KEY_SUFFIX: Final = ":paused"
"""`<queue>:paused`: present while claiming is paused for the whole queue (its value a small JSON
`{"by": ..., "at": ...}`); the claim script claims nothing while it exists, and workers stay up."""
FAIR_LANE_INFIX: Final = ":fair:lane:"
"""`<queue>:fair:lane:<fairness key>`: a list of the jobs of one fairness key (a user, a tenant)
waiting for their turn, oldest first, each entry `<score> <cost> <job id>`; the job's own key
(`arq:job:<id>`) is written at enqueue as for any job. The claim script moves a job from its lane
into the queue, claimed, when its key's turn comes (worker/arq_seam/fair_turns.py)."""
FAIR_TURNS_SUFFIX: Final = ":fair:turns"
"""`<queue>:fair:turns`: sorted set of the fairness keys with jobs in their lane, scored by their
next turn (a virtual time: each job taken adds its cost divided by the key's weight)."""
FAIR_CLOCK_SUFFIX: Final = ":fair:clock"
"""`<queue>:fair:clock`: the turn last served; a key that starts sending joins at this turn."""
FAIR_HELD_SUFFIX: Final = ":fair:held"
"""`<queue>:fair:held`: sorted set of the fairness keys held back by their rate limit, scored by
the epoch ms at which they may go again; their jobs stay in their lanes (deferred, not dropped)."""
FAIR_LIMITS_SUFFIX: Final = ":fair:limits"
"""`<queue>:fair:limits`: hash of fairness key (or `*`, every key without its own) → its limit,
`<commands per second> <burst> <weight>` (0 commands/s: no rate limit); written by `taskline
fairness`, read by every claim, so a change applies at the next claim, with no restart."""
FAIR_BUCKETS_SUFFIX: Final = ":fair:buckets"
"""`<queue>:fair:buckets`: hash of fairness key → `<tokens> <epoch ms>`, its rate limit's token
bucket as the claim script last left it."""
RELAY_KEY_PREFIX: Final = "taskline:relay:"
"""`taskline:relay:<queue>:<relay id>`: a live outbox relay's heartbeat document, with the
outbox's figures (worker/relay/)."""
RELAYS_INDEX_PREFIX: Final = "taskline:relays:"
"""`taskline:relays:<queue>`: sorted set of relay ids by last heartbeat."""
SCHEDULER_QUEUE_SUFFIX: Final = ":scheduler"
"""`<queue>:scheduler`: the scheduler's own arq queue (its cron job)."""
SCHEDULER_TICK_INFIX: Final = ":ran:"
"""`<queue>:scheduler:ran:<job id>`: a purge tick that already ran."""


def job_key(job_id: str) -> str:
    return JOB_KEY_PREFIX + job_id


def in_progress_key(job_id: str) -> str:
    return IN_PROGRESS_KEY_PREFIX + job_id


def retry_key(job_id: str) -> str:
    return RETRY_KEY_PREFIX + job_id


def result_key(job_id: str) -> str:
    return RESULT_KEY_PREFIX + job_id


def transient_key(job_id: str) -> str:
    return TRANSIENT_KEY_PREFIX + job_id


def trace_key(job_id: str) -> str:
    return TRACE_KEY_PREFIX + job_id


def outcome_key(command_id: str) -> str:
    return OUTCOME_KEY_PREFIX + command_id


def outcome_done_key(command_id: str) -> str:
    return OUTCOME_KEY_PREFIX + command_id + OUTCOME_DONE_SUFFIX


def wake_key(queue: str) -> str:
    return queue + WAKE_KEY_SUFFIX


def paused_key(queue: str) -> str:
    return queue + PAUSED_KEY_SUFFIX


def fair_lane_key(queue: str, fairness_key: str) -> str:
    return queue + FAIR_LANE_INFIX + fairness_key


def fair_turns_key(queue: str) -> str:
    return queue + FAIR_TURNS_SUFFIX


def fair_clock_key(queue: str) -> str:
    return queue + FAIR_CLOCK_SUFFIX


def fair_held_key(queue: str) -> str:
    return queue + FAIR_HELD_SUFFIX


def fair_limits_key(queue: str) -> str:
    return queue + FAIR_LIMITS_SUFFIX


def fair_buckets_key(queue: str) -> str:
    return queue + FAIR_BUCKETS_SUFFIX


def heartbeat_key(queue: str, worker_id: str) -> str:
    return f"{HEARTBEAT_KEY_PREFIX}{queue}:{worker_id}"


def workers_index_key(queue: str) -> str:
    return WORKERS_INDEX_PREFIX + queue


def history_key(queue: str) -> str:
    return HISTORY_KEY_PREFIX + queue


def history_baseline_key(queue: str) -> str:
    return HISTORY_KEY_PREFIX + queue + ":baseline"


def history_slot_key(queue: str, slot: int) -> str:
    return f"{HISTORY_KEY_PREFIX}{queue}:slot:{slot}"


def scheduler_queue(queue: str) -> str:
    return queue + SCHEDULER_QUEUE_SUFFIX


def scheduler_tick_key(scheduler_queue_name: str, job_id: str) -> str:
    return scheduler_queue_name + SCHEDULER_TICK_INFIX + job_id


def relay_key(queue: str, relay_id: str) -> str:
    return f"{RELAY_KEY_PREFIX}{queue}:{relay_id}"


def relays_index_key(queue: str) -> str:
    return RELAYS_INDEX_PREFIX + queue
