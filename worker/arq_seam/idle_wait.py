"""How long a worker that found nothing to claim waits before it looks at the queue again.

The wait is a fraction of the time since the worker last claimed a job: 5 ms just after work,
a tenth of the quiet time after that, up to the poll delay. A producer that pushes the wake-up
token ends any wait at once; this schedule is what a producer without the token (arq's own
`enqueue_job`, the plain Redis recipe) gets. Its job waits at most about a tenth of the quiet
gap before it: a stream in bursts every second is picked up within about 0.1 s whatever the
size of each burst, while a worker that has not claimed anything for fifteen poll delays (or
has never claimed anything) waits the whole poll delay, which bounds an idle worker's cost.

The schedule depends on time, not on how many polls found nothing: a count-based doubling
reached the poll delay after a dozen empty polls, which a busy worker makes within a fraction
of a second between two bursts of a steady stream, so each burst waited up to the poll delay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

__all__ = ["FIRST_IDLE_WAIT_S", "IDLE_WAIT_FRACTION", "IdleWait", "idle_wait_s"]

FIRST_IDLE_WAIT_S: Final = 0.005
"""The wait right after a claim (a producer without the token may be sending a stream)."""
IDLE_WAIT_FRACTION: Final = 0.1
"""The wait as a fraction of the time since the last claim."""


def idle_wait_s(quiet_s: float | None, poll_delay_s: float) -> float:
    """The wait of a worker whose last claim was `quiet_s` seconds ago (None: it never claimed)."""
    if quiet_s is None:
        return poll_delay_s
    return min(poll_delay_s, max(FIRST_IDLE_WAIT_S, quiet_s * IDLE_WAIT_FRACTION))


class IdleWait:
    """One worker's schedule: told when it claims work, asked how long to wait when it found none."""

    def __init__(self, poll_delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.poll_delay_s = poll_delay_s
        self.clock = clock
        self.last_claim: float | None = None

    def claimed(self) -> None:
        self.last_claim = self.clock()

    def next_wait_s(self) -> float:
        quiet = None if self.last_claim is None else self.clock() - self.last_claim
        return idle_wait_s(quiet, self.poll_delay_s)
