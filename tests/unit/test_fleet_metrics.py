"""The fleet's Prometheus page and heartbeat summaries, from heartbeat documents (no services)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from worker.observe.heartbeat import metrics_snapshot
from worker.observe.metrics import Metrics
from worker.tools.fleet import summary
from worker.tools.fleet_metrics import render_fleet_metrics


def _document(worker_id: str, processed: float) -> dict[str, object]:
    metrics = Metrics()
    metrics.commands.labels("create_task", "applied").inc(processed)
    metrics.duration.labels("create_task").observe(0.01)
    metrics.queue_depth.labels("q", "ready").set(99)  # fleet gauges are not part of a worker's snapshot
    return {
        "worker_id": worker_id,
        "host": "h",
        "db_ok": True,
        "stopping": False,
        "metrics": metrics_snapshot(metrics.registry),
    }


def test_the_fleet_page_keeps_one_series_per_worker_and_adds_the_fleet_gauges() -> None:
    """Each worker's series labelled with its id; queue depth, dead letters and live workers read fresh."""
    page = render_fleet_metrics("q", [_document("a:1:x", 5), _document("b:2:y", 7)], (4, 2), 3).decode()
    families = {family.name: family for family in text_string_to_metric_families(page)}
    processed = {
        sample.labels["worker"]: sample.value
        for sample in families["taskline_commands_processed"].samples
        if sample.name == "taskline_commands_processed_total"
    }
    assert processed == {"a:1:x": 5.0, "b:2:y": 7.0}
    assert families["taskline_command_duration_seconds"].type == "histogram"
    depth = {s.labels["state"]: s.value for s in families["taskline_queue_depth"].samples}
    assert depth == {"ready": 4.0, "deferred": 2.0}  # the fresh reading, not a worker's stale 99
    assert families["taskline_dead_letters_waiting"].samples[0].value == 3.0
    assert families["taskline_workers_live"].samples[0].value == 2.0


def test_a_schedulers_series_are_on_the_fleet_page_but_it_is_not_a_live_worker() -> None:
    """The scheduler's purge metrics are on the page; `taskline_workers_live` does not count it."""
    metrics = Metrics()
    metrics.purge_rows.labels("task").inc(40)
    scheduler = {"worker_id": "s:3:z", "role": "scheduler", "metrics": metrics_snapshot(metrics.registry)}
    page = render_fleet_metrics("q", [_document("a:1:x", 5)], None, None, schedulers=[scheduler]).decode()
    families = {family.name: family for family in text_string_to_metric_families(page)}
    purged = [s for s in families["taskline_purge_rows_deleted"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in purged] == [({"table": "task", "worker": "s:3:z"}, 40.0)]
    assert families["taskline_workers_live"].samples[0].value == 1.0


def _relay(relay_id: str, published: int, age_s: float, unpublished: int) -> dict[str, object]:
    metrics = Metrics()
    metrics.outbox_step(published=published, republished=2, invalid=1)
    metrics.outbox_confirmed_as("applied", published - 1)
    metrics.commands.labels("create_task", "applied").inc(0)  # not the relay's: left off the page
    return {
        "relay_id": relay_id,
        "role": "relay",
        "age_s": age_s,
        "outbox": {
            "backlog": unpublished + 4,
            "unpublished": unpublished,
            "unconfirmed": 4,
            "invalid": 1,
            "oldest_unpublished_s": 1.5,
            "oldest_unconfirmed_s": 6.25,
        },
        "metrics": metrics_snapshot(metrics.registry),
    }


def test_the_relays_counters_and_the_outbox_figures_are_on_the_fleet_page() -> None:
    """Each relay's outbox counters (published, re-published, confirmed, invalid) labelled with its
    id; the backlog and the oldest ages once, from the freshest relay's reading; relays are not
    counted as live workers."""
    relays = [_relay("r:1:a", 10, age_s=3.0, unpublished=99), _relay("r:2:b", 20, age_s=0.5, unpublished=7)]
    page = render_fleet_metrics("q", [_document("a:1:x", 5)], None, None, relays=relays).decode()
    families = {family.name: family for family in text_string_to_metric_families(page)}

    def totals(name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples if s.name.endswith("_total")}

    assert totals("taskline_outbox_published") == {(("worker", "r:1:a"),): 10.0, (("worker", "r:2:b"),): 20.0}
    assert totals("taskline_outbox_republished") == {(("worker", "r:1:a"),): 2.0, (("worker", "r:2:b"),): 2.0}
    assert totals("taskline_outbox_invalid") == {(("worker", "r:1:a"),): 1.0, (("worker", "r:2:b"),): 1.0}
    assert totals("taskline_outbox_confirmed")[(("outcome", "applied"), ("worker", "r:2:b"))] == 19.0
    rows = {s.labels["state"]: s.value for s in families["taskline_outbox_rows"].samples}
    assert rows == {"unpublished": 7.0, "unconfirmed": 4.0, "invalid": 1.0}  # the fresher relay's reading
    oldest = {s.labels["state"]: s.value for s in families["taskline_outbox_oldest_seconds"].samples}
    assert oldest == {"unpublished": 1.5, "unconfirmed": 6.25}
    processed = [s for s in families["taskline_commands_processed"].samples if s.name.endswith("_total")]
    assert {s.labels["worker"] for s in processed} == {"a:1:x"}
    assert families["taskline_workers_live"].samples[0].value == 1.0


def test_without_a_relay_the_page_has_no_outbox_figures() -> None:
    """No relay, no outbox gauges (nothing read the table)."""
    page = render_fleet_metrics("q", [_document("a:1:x", 5)], None, None).decode()
    assert "taskline_outbox_rows" not in page


def test_a_summary_drops_the_snapshot_and_says_whether_the_worker_is_ready() -> None:
    """`ready` is a reachable database and not stopping."""
    document = _document("a:1:x", 1)
    assert summary(document) == {"worker_id": "a:1:x", "host": "h", "db_ok": True, "stopping": False, "ready": True}
    assert summary({**document, "stopping": True})["ready"] is False
    assert summary({**document, "db_ok": False})["ready"] is False


def test_the_fleet_page_shows_the_keys_fair_turns_hold_back_and_by_how_much() -> None:
    """Keys waiting and held, and the jobs in each held lane and each of the largest lanes; the
    status lines say the same for people."""
    from worker.cli.fairness import describe_fairness
    from worker.tools.fair_limits import FairLimit, FairnessView, HeldKey

    view = FairnessView(
        keys_waiting=2,
        held=[HeldKey("tenant:noisy", 40, until_ms=10_500)],
        largest=[HeldKey("user:1", 900), HeldKey("user:2", 3)],
        jobs_waiting=943,
        held_count=1,
        limits={"tenant:noisy": FairLimit(rate=10, burst=20)},
    )
    page = render_fleet_metrics("q", [], (5, 1), None, fairness=view).decode()
    families = {family.name: family for family in text_string_to_metric_families(page)}
    keys = {s.labels["state"]: s.value for s in families["taskline_fair_keys"].samples}
    assert keys == {"waiting": 2.0, "held": 1.0}
    lanes = {(s.labels["key"], s.labels["state"]): s.value for s in families["taskline_fair_key_jobs_waiting"].samples}
    assert lanes == {("tenant:noisy", "held"): 40.0, ("user:1", "waiting"): 900.0, ("user:2", "waiting"): 3.0}

    depth = {s.labels["state"]: s.value for s in families["taskline_queue_depth"].samples}
    assert depth == {"ready": 5.0, "deferred": 1.0, "in_fair_lanes": 943.0}

    lines = describe_fairness(view.as_dict(), now_ms=10_000)
    assert lines[0] == "fair turns: 2 key(s) waiting their turn, 1 held by a rate limit"
    assert "  held: tenant:noisy: 40 job(s) waiting, next in 0.5s" in lines
    assert "  waiting: user:1: 900 job(s)" in lines
    assert "  limit: tenant:noisy: 10 commands/s (burst 20), weight 1" in lines
