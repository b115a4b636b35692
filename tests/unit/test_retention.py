"""Purge settings: durations, the schedule, and the redelivery horizon the processed retention must cover."""

from __future__ import annotations

import os

import pytest

from worker.arq_seam.scheduler import PURGE_JOB, PURGE_TIMEOUT_MARGIN_S, scheduler_queue, scheduler_settings
from worker.arq_seam.wiring import worker_settings
from worker.config.durations import parse_duration
from worker.config.retention import ARQ_TIMEOUT_MARGIN_S, redelivery_horizon, schedule_for
from worker.config.settings import Settings, SettingsError, load_settings

DB = "postgresql://user@db.example.com/tasks"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TASKLINE_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", DB)


def test_defaults() -> None:
    """30 days for completed tasks and dead letters, 2 days of processed commands, 5000 rows a batch, 50 s, hourly."""
    settings = load_settings()
    assert settings.purge_retention == 30 * 86400
    assert settings.dead_letter_retention == 30 * 86400
    assert settings.processed_retention == 2 * 86400
    assert (settings.purge_batch, settings.purge_time_budget, settings.purge_every_minutes) == (5000, 50, 60)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("15m", 900), ("90s", 90), ("0s", 0), ("1w", 604800), ("3600", 3600)],
)
def test_retentions_take_seconds_or_ages(monkeypatch: pytest.MonkeyPatch, text: str, seconds: float) -> None:
    """TASKLINE_PURGE_RETENTION=30d and =2592000 mean the same."""
    monkeypatch.setenv("TASKLINE_PURGE_RETENTION", text)
    assert load_settings().purge_retention == seconds
    assert parse_duration(text) == seconds


def test_a_bad_duration_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLINE_DEAD_LETTER_RETENTION", "a month")
    with pytest.raises(SettingsError, match="TASKLINE_DEAD_LETTER_RETENTION"):
        load_settings()


def test_the_horizon_formula() -> None:
    """job TTL + not-yet window + tries × (max delay + arq timeout) + arq timeout + 10 s; 86 785 s by default."""
    assert redelivery_horizon() == 86400 + 120 + 8 * (15 + 15) + 15 + 10
    assert redelivery_horizon(job_timeout=20, not_yet_window=600, transient_tries=2, retry_max_delay=5) == (
        86400 + 600 + 2 * (5 + 25) + 25 + 10
    )


def test_processed_retention_below_the_horizon_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 day is shorter than the job TTL alone: startup fails naming TASKLINE_PROCESSED_RETENTION."""
    monkeypatch.setenv("TASKLINE_PROCESSED_RETENTION", "1d")
    with pytest.raises(SettingsError, match=r"TASKLINE_PROCESSED_RETENTION .*redelivery horizon"):
        load_settings()


def test_the_horizon_follows_the_other_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Just above the horizon passes; a longer not-yet window moves the horizon past it."""
    monkeypatch.setenv("TASKLINE_PROCESSED_RETENTION", str(redelivery_horizon() + 1))
    load_settings()
    monkeypatch.setenv("TASKLINE_NOT_YET_WINDOW", "3600")
    with pytest.raises(SettingsError, match="TASKLINE_PROCESSED_RETENTION"):
        load_settings()


@pytest.mark.parametrize(
    ("every", "schedule"),
    [
        (15, {"minute": {0, 15, 30, 45}}),
        (1, {"minute": set(range(60))}),
        (60, {"hour": set(range(24)), "minute": {0}}),
        (360, {"hour": {0, 6, 12, 18}, "minute": {0}}),
        (1440, {"hour": {0}, "minute": {0}}),
    ],
)
def test_schedule(every: int, schedule: dict[str, set[int]]) -> None:
    assert schedule_for(every) == schedule


@pytest.mark.parametrize("every", [7, 45, 90, 100, 1000])
def test_a_period_that_does_not_divide_the_hour_or_day_is_refused(monkeypatch: pytest.MonkeyPatch, every: int) -> None:
    monkeypatch.setenv("TASKLINE_PURGE_EVERY_MINUTES", str(every))
    with pytest.raises(SettingsError, match="TASKLINE_PURGE_EVERY_MINUTES"):
        load_settings()


def test_the_period_must_be_longer_than_the_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run may not outlast the period: every minute with a 50 s budget is fine, with 60 s it is refused."""
    monkeypatch.setenv("TASKLINE_PURGE_EVERY_MINUTES", "1")
    assert load_settings().purge_every_minutes == 1
    monkeypatch.setenv("TASKLINE_PURGE_TIME_BUDGET", "60")
    with pytest.raises(SettingsError, match=r"TASKLINE_PURGE_EVERY_MINUTES .*TASKLINE_PURGE_TIME_BUDGET"):
        load_settings()


def test_the_scheduler_runs_on_its_own_queue_and_leaves_the_command_workers_alone() -> None:
    """The purge is a unique cron job on `<queue>:scheduler`, timeout budget + margin; command workers
    have no purge function and keep their short timeout (so crash recovery stays job timeout + 15 s)."""
    settings = Settings(DATABASE_URL=DB, queue="q", purge_time_budget=40)
    scheduler = scheduler_settings(settings)
    assert scheduler["queue_name"] == scheduler_queue(settings) == "q:scheduler"
    assert scheduler["functions"] == []
    (job,) = scheduler["cron_jobs"]
    assert (job.name, job.unique, job.run_at_startup, job.max_tries) == (PURGE_JOB, True, False, 1)
    assert job.timeout_s == 40 + PURGE_TIMEOUT_MARGIN_S == scheduler["job_timeout"]
    assert (job.minute, job.hour, job.second) == ({0}, set(range(24)), 0)

    workers = worker_settings(settings)
    assert workers["queue_name"] == "q"
    assert "cron_jobs" not in workers
    assert PURGE_JOB not in {f.name for f in workers["functions"]}
    assert max(f.timeout_s for f in workers["functions"]) == settings.job_timeout + ARQ_TIMEOUT_MARGIN_S
