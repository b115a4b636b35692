"""How long the purge keeps things, and when it runs: pure functions, no I/O.

The redelivery horizon
----------------------
A `processed_command` row is what turns a redelivered command into a no-op, so it must outlive
every delivery of its command that can still come. Once a command took effect (at time P), a
copy of it can still reach a worker while any job carrying its `command_id` lives in Redis:

* a queued job's key lives for the job TTL from its enqueue (arq's default, which the producers
  use: one day, `taskline_producer.wire.DEFAULT_JOB_TTL_MS`): a duplicate or a bulk job holding the
  same command may sit in the queue that long (workers down, a backlog);
* a "not yet" command is re-enqueued for up to `TASKLINE_NOT_YET_WINDOW` seconds from its first
  try, each time with a fresh job key;
* a transient failure is retried up to `TASKLINE_TRANSIENT_TRIES` times, each try waiting at most
  `TASKLINE_RETRY_MAX_DELAY` and running at most the arq timeout (`TASKLINE_JOB_TIMEOUT` + 5 s);
* a try whose worker crashed runs again when its claim expires: arq timeout + 10 s.

So::

    horizon = job TTL + not-yet window + transient tries × (retry max delay + arq timeout)
              + arq timeout + 10 s
    arq timeout = TASKLINE_JOB_TIMEOUT + 5 s

With the defaults: 86 400 + 120 + 8 × (15 + 15) + 15 + 10 = 86 785 s (24.1 h).
`TASKLINE_PROCESSED_RETENTION` defaults to 2 days and a value below the horizon is refused at
startup. A producer that publishes with a longer job TTL than arq's default, or re-sends a
command itself later than that, needs a longer processed retention.
"""

from __future__ import annotations

from typing import Final

from taskline_producer.wire import DEFAULT_JOB_TTL_MS

__all__ = [
    "ARQ_TIMEOUT_MARGIN_S",
    "CLAIM_MARGIN_S",
    "JOB_TTL_S",
    "redelivery_horizon",
    "schedule_for",
]

JOB_TTL_S: Final = DEFAULT_JOB_TTL_MS / 1000
ARQ_TIMEOUT_MARGIN_S: Final = 5.0
"""arq's own job timeout is ours (`TASKLINE_JOB_TIMEOUT`) plus this: taskline's timeout always
fires first. The worker's job functions are built with it (worker/arq_seam/wiring.py)."""
CLAIM_MARGIN_S: Final = 10.0
"""arq's in-progress key lives for the longest function timeout + this."""


def redelivery_horizon(
    *,
    job_timeout: float = 10.0,
    not_yet_window: float = 120.0,
    transient_tries: int = 8,
    retry_max_delay: float = 15.0,
    job_ttl: float = JOB_TTL_S,
) -> float:
    """Seconds after a command took effect during which a copy of it can still be delivered."""
    arq_timeout = job_timeout + ARQ_TIMEOUT_MARGIN_S
    return job_ttl + not_yet_window + transient_tries * (retry_max_delay + arq_timeout) + arq_timeout + CLAIM_MARGIN_S


def schedule_for(every_minutes: int) -> dict[str, set[int]]:
    """arq `cron()` keyword arguments for a run every `every_minutes` minutes, at fixed times of day.

    The period must divide the hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) or the day in whole
    hours (60, 120, 180, 240, 360, 480, 720, 1440), so that every tick is equally far apart."""
    if 0 < every_minutes < 60 and 60 % every_minutes == 0:
        return {"minute": set(range(0, 60, every_minutes))}
    if every_minutes >= 60 and every_minutes % 60 == 0 and 1440 % every_minutes == 0:
        return {"hour": set(range(0, 24, every_minutes // 60)), "minute": {0}}
    raise ValueError(
        f"{every_minutes} minutes does not divide the hour or the day; use one of "
        "1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440"
    )
