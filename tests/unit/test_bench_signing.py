"""Scenario 8 (bench/scenarios/signing.py): its drains alternate their order round by round, its
figures are the medians over the rounds where both drains ran, and its direct CPU measurement
finds a signed job that verifies."""

from __future__ import annotations

import pytest

from bench.scenarios.signing import cost_shares, drain_comparison, drain_key, round_order, signing_cost
from bench.scenarios.workload import make_commands


def drain(rate: float, cpu_ms: float) -> dict[str, float]:
    return {"commands_per_s": rate, "client_cpu_ms_per_command": cpu_ms}


def test_the_rounds_alternate_which_drain_goes_first() -> None:
    """off-on, on-off, off-on: a drift of the machine's load favours neither side."""
    assert [round_order(r) for r in (1, 2, 3)] == [("off", "on"), ("on", "off"), ("off", "on")]


def test_the_figures_are_medians_over_the_rounds_where_both_drains_ran() -> None:
    """The median of the per-round signed/unsigned ratios (not the ratio of medians); a round
    with a failed drain is left out; the shares are of the medians of the unsigned drains."""
    scenarios = {
        drain_key("off", 1): drain(1000, 0.200),
        drain_key("on", 1): drain(900, 0.210),
        drain_key("off", 2): drain(500, 0.300),
        drain_key("on", 2): drain(550, 0.290),
        drain_key("off", 3): drain(800, 0.250),
        drain_key("on", 3): drain(780, 0.260),
        drain_key("off", 4): {"error": "RuntimeError: stalled"},
        drain_key("on", 4): drain(10, 9.0),
    }
    drains = drain_comparison(scenarios, 4)
    assert drains["rounds_measured"] == 3
    assert drains["rate_ratios"] == pytest.approx([0.9, 1.1, 0.975])
    assert drains["median_rate_ratio"] == pytest.approx(0.975)
    assert drains["median_unsigned_per_s"] == 800
    assert drains["median_unsigned_worker_cpu_us"] == pytest.approx(250)
    shares = cost_shares({"sign_us": 5.0, "verify_us": 7.5}, drains)
    assert shares["sign_and_verify_pct_of_worker_cpu"] == pytest.approx(5.0)
    assert shares["verify_pct_of_worker_cpu"] == pytest.approx(3.0)
    assert shares["sign_and_verify_pct_of_drain"] == pytest.approx(100 * 12.5 / 1250)
    assert cost_shares({"sign_us": 1.0, "verify_us": 1.0}, drain_comparison({}, 3)) == {}


def test_the_direct_cpu_measurement_runs_on_jobs_that_verify() -> None:
    """signing_cost signs and verifies real jobs and reports a per-command figure for each path."""
    cost = signing_cost(make_commands(50), rounds=2)
    assert cost["commands"] == 50
    assert cost["producer_us_signed"] > 0
    assert cost["worker_decode_us_verified"] > 0
