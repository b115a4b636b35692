"""Every metric taskline exports, named once: its name and its help text (docs/operations.md lists
them with their labels).

The process's own registry (worker/observe/metrics.py) is built from these; the heartbeat's
metrics snapshot (worker/observe/heartbeat.py), the fleet's Prometheus page
(worker/tools/fleet_metrics.py) and the history samples (worker/tools/history.py) find the same
names in the heartbeats. No
import beyond the standard library: `taskline health`, an exec probe, loads this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "CLAIMING_PAUSED",
    "CLAIMS_WAITING",
    "COMMANDS_DEAD_LETTERED",
    "COMMANDS_PROCESSED",
    "COMMANDS_RETRIED",
    "COMMAND_DURATION",
    "COMMAND_LATENCY",
    "DEAD_LETTERS_WAITING",
    "FAIR_KEYS",
    "FAIR_KEY_WAITING",
    "FLEET_GAUGES",
    "JOBS_IN_PROGRESS",
    "OUTBOX_CONFIRMED",
    "OUTBOX_GAUGES",
    "OUTBOX_INVALID",
    "OUTBOX_OLDEST",
    "OUTBOX_PREFIX",
    "OUTBOX_PUBLISHED",
    "OUTBOX_REPUBLISHED",
    "OUTBOX_ROWS",
    "PURGE_DURATION",
    "PURGE_ROWS",
    "QUEUE_DEPTH",
    "WORKERS_LIVE",
    "MetricName",
]


@dataclass(frozen=True, slots=True)
class MetricName:
    """A metric family's name (without `_total`) and its help text."""

    name: str
    help: str

    @property
    def total(self) -> str:
        """The name of a counter's sample."""
        return f"{self.name}_total"

    @property
    def bucket(self) -> str:
        """The name of a histogram's bucket samples."""
        return f"{self.name}_bucket"


COMMANDS_PROCESSED: Final = MetricName("taskline_commands_processed", "Commands that took effect or were duplicates.")
COMMANDS_RETRIED: Final = MetricName(
    "taskline_commands_retried", "Command attempts that will be retried, by failure kind."
)
COMMANDS_DEAD_LETTERED: Final = MetricName(
    "taskline_commands_dead_lettered", "Jobs or commands written to the dead_letter table."
)
COMMAND_DURATION: Final = MetricName("taskline_command_duration_seconds", "Time from job start to commit.")
COMMAND_LATENCY: Final = MetricName("taskline_command_latency_seconds", "End-to-end latency: from issued_at to commit.")
JOBS_IN_PROGRESS: Final = MetricName("taskline_jobs_in_progress", "Jobs running in this worker.")
QUEUE_DEPTH: Final = MetricName("taskline_queue_depth", "Jobs in the queue: ready to run now, or deferred (retries).")
DEAD_LETTERS_WAITING: Final = MetricName("taskline_dead_letters_waiting", "Rows in the dead_letter table.")
CLAIMS_WAITING: Final = MetricName(
    "taskline_claims_waiting_to_expire",
    "Jobs claimed by a worker that stopped beating: nobody runs them until their claims expire.",
)
CLAIMING_PAUSED: Final = MetricName(
    "taskline_claiming_paused",
    "1 while claiming is paused for the queue (workers stay up and claim nothing), else 0.",
)
FAIR_KEYS: Final = MetricName(
    "taskline_fair_keys",
    "Fairness keys with jobs in their lanes, by state: waiting (their turn) or held (by their rate limit).",
)
FAIR_KEY_WAITING: Final = MetricName(
    "taskline_fair_key_jobs_waiting",
    "Jobs waiting in one fairness key's lane, for the keys held by a rate limit and the ten largest lanes.",
)
PURGE_ROWS: Final = MetricName("taskline_purge_rows_deleted", "Rows the purge deleted, by table.")
PURGE_DURATION: Final = MetricName("taskline_purge_duration_seconds", "Duration of one purge run.")
WORKERS_LIVE: Final = MetricName("taskline_workers_live", "Workers whose heartbeat is fresh.")
"""Only on the fleet's page (worker/tools/fleet_metrics.py)."""

# the outbox relay (worker/relay/)
OUTBOX_PREFIX: Final = "taskline_outbox_"
"""Every relay metric's name starts so (`taskline metrics` takes them from the relays' heartbeats)."""
OUTBOX_ROWS: Final = MetricName(
    "taskline_outbox_rows", "Outbox rows by state: unpublished (the backlog to publish), unconfirmed, invalid."
)
OUTBOX_OLDEST: Final = MetricName(
    "taskline_outbox_oldest_seconds", "Age of the oldest outbox command not yet published, or not yet confirmed."
)
OUTBOX_PUBLISHED: Final = MetricName("taskline_outbox_published", "Outbox commands this relay published.")
OUTBOX_REPUBLISHED: Final = MetricName(
    "taskline_outbox_republished", "Outbox commands published again because Redis had lost them."
)
OUTBOX_CONFIRMED: Final = MetricName("taskline_outbox_confirmed", "Outbox commands confirmed, by final outcome.")
OUTBOX_INVALID: Final = MetricName(
    "taskline_outbox_invalid", "Outbox rows refused by the contract (kept with the reason, never published)."
)
OUTBOX_GAUGES: Final = frozenset({OUTBOX_ROWS.name, OUTBOX_OLDEST.name})
"""Gauges that describe the outbox table, which every relay reads the same: the relay's heartbeat
carries them as its `outbox` figures instead."""

FLEET_GAUGES: Final = (
    frozenset(
        {
            QUEUE_DEPTH.name,
            DEAD_LETTERS_WAITING.name,
            CLAIMS_WAITING.name,
            CLAIMING_PAUSED.name,
            FAIR_KEYS.name,
            FAIR_KEY_WAITING.name,
        }
    )
    | OUTBOX_GAUGES
)
"""Gauges that describe the queue and the table, not one worker: not part of a worker's snapshot,
read afresh by the fleet's page."""
