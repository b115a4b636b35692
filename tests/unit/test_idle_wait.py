"""The shape of an idle worker's wait (worker/arq_seam/idle_wait.py): short just after a claim,
growing with the quiet time and never with the number of empty polls, the whole poll delay for a
worker that has been idle long enough to be cheap."""

from __future__ import annotations

from worker.arq_seam.idle_wait import FIRST_IDLE_WAIT_S, IdleWait, idle_wait_s

POLL_DELAY_S = 1.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def polls_over(schedule: IdleWait, clock: FakeClock, seconds: float) -> int:
    """How many times a worker that finds nothing polls in `seconds` (each poll, then its wait)."""
    end, polls = clock.now + seconds, 0
    while clock.now < end:
        polls += 1
        clock.now += schedule.next_wait_s()
    return polls


def test_a_worker_that_never_claimed_waits_the_whole_poll_delay() -> None:
    """An idle worker from start-up costs two commands per poll delay, as before."""
    assert IdleWait(POLL_DELAY_S, FakeClock()).next_wait_s() == POLL_DELAY_S


def test_just_after_a_claim_the_wait_is_the_shortest() -> None:
    """A producer without the wake-up token may be sending a stream: look again at once, almost."""
    clock = FakeClock()
    schedule = IdleWait(POLL_DELAY_S, clock)
    schedule.claimed()
    assert schedule.next_wait_s() == FIRST_IDLE_WAIT_S


def test_the_wait_grows_with_quiet_time_to_the_poll_delay_and_never_past_it() -> None:
    """Monotone in the quiet time; about a tenth of it; the poll delay once quiet for long."""
    waits = [idle_wait_s(quiet / 10, POLL_DELAY_S) for quiet in range(0, 400)]
    assert waits == sorted(waits)
    assert all(FIRST_IDLE_WAIT_S <= wait <= POLL_DELAY_S for wait in waits)
    for quiet in (0.5, 1.0, 2.0, 5.0):
        assert idle_wait_s(quiet, POLL_DELAY_S) <= max(FIRST_IDLE_WAIT_S, quiet / 10)
    assert idle_wait_s(15 * POLL_DELAY_S, POLL_DELAY_S) == POLL_DELAY_S


def test_empty_polls_alone_do_not_lengthen_the_wait() -> None:
    """Time-based, not count-based: many empty polls in a short quiet gap (a busy worker between
    two bursts) keep the wait short; a burst every second never waits more than a tenth of it."""
    clock = FakeClock()
    schedule = IdleWait(POLL_DELAY_S, clock)
    schedule.claimed()
    for _ in range(50):
        assert schedule.next_wait_s() == FIRST_IDLE_WAIT_S
    for _ in range(20):  # bursts every second: a claim, then a quiet second
        schedule.claimed()
        start = clock.now
        while clock.now < start + 1.0:
            wait = schedule.next_wait_s()
            assert wait <= 0.1 + 1e-9
            clock.now += wait


def test_a_claim_starts_the_schedule_over() -> None:
    """After a long idle (the poll delay), one claim brings the wait back to the shortest."""
    clock = FakeClock()
    schedule = IdleWait(POLL_DELAY_S, clock)
    schedule.claimed()
    clock.now += 60
    assert schedule.next_wait_s() == POLL_DELAY_S
    schedule.claimed()
    assert schedule.next_wait_s() == FIRST_IDLE_WAIT_S


def test_the_quiet_after_work_costs_a_bounded_number_of_polls() -> None:
    """After its last job a worker polls about 60 times while its wait grows to the poll delay
    (15 poll delays), then once per poll delay: an idle worker stays under two commands a second."""
    clock = FakeClock()
    schedule = IdleWait(POLL_DELAY_S, clock)
    schedule.claimed()
    settling = polls_over(schedule, clock, 15 * POLL_DELAY_S)
    assert 40 <= settling <= 80
    idle = polls_over(schedule, clock, 30.0)
    assert idle <= 30.0 / POLL_DELAY_S + 1
