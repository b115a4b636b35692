"""The purge's pace (worker/purge/pace.py): given the others' commit rate and the batches' times, how long
it waits after each batch and how large the next batch is. Pure arithmetic: no database."""

from __future__ import annotations

import pytest

from worker.purge.pace import CommitRate, Pace, PaceRules

RULES = PaceRules(batch=1000, pause_ratio=0.0, busy_pause_ratio=4.0, quiet_commits_per_s=5, busy_commits_per_s=50)


def pauses(rules: PaceRules, rates: list[float | None], took: float = 0.1) -> list[float]:
    """The pauses after full batches of `took` seconds each, at the given commit rates of the others."""
    pace = Pace(rules)
    return [pace.after_batch(took, rules.batch, rate) for rate in rates]


def test_with_nobody_else_committing_the_purge_does_not_wait() -> None:
    """Others commit less than the quiet mark: no pause at all, the purge runs at the database's speed."""
    assert pauses(RULES, [0.0, 1.0, 4.9]) == [0.0, 0.0, 0.0]


def test_busy_workers_make_the_purge_wait_four_times_each_batch() -> None:
    """Others commit at the busy mark or above: each batch is followed by busy_pause_ratio × its time."""
    assert pauses(RULES, [50.0, 120.0, 10_000.0]) == pytest.approx([0.4, 0.4, 0.4])


def test_between_quiet_and_busy_the_wait_rises_in_a_straight_line() -> None:
    """Halfway between the marks (27.5 commits/s), half the busy pause."""
    assert pauses(RULES, [27.5]) == pytest.approx([0.2])
    assert RULES.pause_ratio_at(16.25) == pytest.approx(1.0)


def test_when_the_workers_get_busy_the_purge_backs_off_and_when_they_stop_it_resumes() -> None:
    """The decision follows the rate batch by batch: quiet, busy, quiet again."""
    assert pauses(RULES, [0.0, 200.0, 200.0, 0.0]) == pytest.approx([0.0, 0.4, 0.4, 0.0])


def test_before_the_rate_is_known_start_busy_decides() -> None:
    """No commit rate measured yet: the scheduled purge (start_busy) waits as if busy; `taskline purge` does not."""
    assert pauses(RULES, [None]) == [0.0]
    busy_first = PaceRules(batch=1000, busy_pause_ratio=4.0, start_busy=True)
    assert pauses(busy_first, [None, 0.0]) == pytest.approx([0.4, 0.0])


def test_one_slow_batch_is_noise() -> None:
    """A single batch twice as slow moves the smoothed pace by less than 1.5×: no extra pause."""
    pace = Pace(PaceRules(batch=3, pause_ratio=1.0))
    assert [pace.after_batch(took, 3, 0.0) for took in (0.1, 0.1, 0.2, 0.1)] == pytest.approx([0.1, 0.1, 0.2, 0.1])


def test_a_purge_slowed_down_backs_off_beyond_what_the_commit_rate_says() -> None:
    """Batches four times slower than the run's best with a quiet commit count (contention the count cannot
    see): the pauses grow while it lasts."""
    pace = Pace(PaceRules(batch=3))
    slept = [pace.after_batch(took, 3, 0.0) for took in (0.1, 0.1, 0.4, 0.4, 0.4)]
    assert slept[:2] == [0.0, 0.0]
    assert 0 < slept[2] < slept[3] < slept[4]


def test_a_batch_over_the_target_halves_the_next_one_and_fast_ones_grow_it_back() -> None:
    """Transactions stay short on a loaded server: over the target (0.1 s here), the next batch is half as
    large; under half of that, twice as large again, never above the plan's size."""
    pace = Pace(PaceRules(batch=1000, batch_target_s=0.1))
    assert pace.after_batch(0.15, 1000, 0.0) == 0.0  # over the target, but not slow: no pause for it
    assert pace.batch == 500
    pace.after_batch(0.12, 500, 0.0)
    assert pace.batch == 250
    pace.after_batch(0.05, 250, 0.0)
    assert pace.batch == 250
    pace.after_batch(0.02, 250, 0.0)
    pace.after_batch(0.02, 500, 0.0)
    pace.after_batch(0.02, 1000, 0.0)
    assert pace.batch == 1000


def test_a_batch_over_the_slow_mark_pauses_at_least_as_long_as_it_took() -> None:
    pace = Pace(PaceRules(batch=1000, slow_batch_s=1.0))
    assert pace.after_batch(1.5, 1000, 0.0) >= 1.5
    assert pace.batch == 500


def test_the_commit_rate_leaves_out_the_purges_own_commits() -> None:
    """Readings of the database's commit count a second apart; the purge's own commits do not count."""
    rate = CommitRate()
    assert rate.add(0.0, database_commits=1000, own_commits=0) is None
    assert rate.add(0.5, database_commits=1030, own_commits=10) is None  # a window under a second: no rate
    assert rate.add(1.0, database_commits=1020, own_commits=20) == pytest.approx(0.0)
    assert rate.add(2.0, database_commits=1140, own_commits=40) == pytest.approx(100.0)


def test_the_commit_rate_follows_the_newest_window() -> None:
    """Old readings are forgotten: a burst three seconds ago no longer counts."""
    rate = CommitRate()
    rate.add(0.0, 0, 0)
    rate.add(1.0, 500, 0)
    for second in range(2, 8):
        last = rate.add(float(second), 500, 0)
    assert last == pytest.approx(0.0)
    assert len(rate.readings) <= 5
