"""Scenario 8: what signed commands cost (docs/signing.md, "What it costs").

Two measurements side by side:

* the single-command drain of scenario 3 with one worker (K=1), unsigned and signed (producer
  signs, worker requires signatures and verifies), twice each, in the order off, on, on, off;
* the CPU time signing and verifying add per command, measured in this process on the same kind
  of jobs: the producer's `job_of_command` with and without a key, and the worker's decoder with
  and without a verifier that requires signatures. Its sum is set against the time one command
  takes at the unsigned drain rate, which is the figure the 5 % budget is about: a drain rate on
  a shared machine moves by more than 5 % from run to run by itself.
"""

from __future__ import annotations

import json
import time
from typing import Any

from taskline_producer.contract import DEFAULT_MAX_PAYLOAD_BYTES, CreateTask
from taskline_producer.signing import SigningKey
from taskline_producer.wire import job_of_command

from bench.scenarios.drain import drain
from bench.scenarios.workload import make_commands
from bench.suite import Suite
from worker.config.signing_keys import parse_signing_keys
from worker.pipeline.decode import Decoder, Delivery
from worker.pipeline.signatures import Verifier

KEY_ID = "bench"
SECRET = "0123456789abcdef" * 4
KEY = SigningKey.of(KEY_ID, SECRET)
WORKER_ENV = {
    "TASKLINE_SIGNING_KEYS": json.dumps({KEY_ID: {"secret": SECRET}}),
    "TASKLINE_REQUIRE_SIGNATURES": "true",
}


def _best_of(rounds: int, run: Any) -> float:
    """The shortest of `rounds` timings of `run()` (seconds): the least disturbed by other load."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def signing_cost(commands: list[CreateTask], rounds: int = 5) -> dict[str, float]:
    """Microseconds of CPU per command: signing (producer) and verifying (worker), each as the
    difference between the signed and the unsigned path."""
    n = len(commands)
    plain = [job_of_command(c, 1) for c in commands]
    signed = [job_of_command(c, 1, None, KEY) for c in commands]
    unsigned_decoder = Decoder(DEFAULT_MAX_PAYLOAD_BYTES, 1 << 20)
    verifier = Verifier(parse_signing_keys({KEY_ID: {"secret": SECRET}}), required=True)
    verifying_decoder = Decoder(DEFAULT_MAX_PAYLOAD_BYTES, 1 << 20, verifier)
    checked = verifying_decoder(signed[0])["a"][0]
    if not isinstance(checked, Delivery) or checked.signed_by != KEY_ID:
        raise RuntimeError(f"the signed job does not verify: {checked!r}")
    enqueue_plain = _best_of(rounds, lambda: [job_of_command(c, 1) for c in commands])
    enqueue_signed = _best_of(rounds, lambda: [job_of_command(c, 1, None, KEY) for c in commands])
    decode_plain = _best_of(rounds, lambda: [unsigned_decoder(raw) for raw in plain])
    decode_signed = _best_of(rounds, lambda: [verifying_decoder(raw) for raw in signed])
    return {
        "commands": n,
        "producer_us_unsigned": 1e6 * enqueue_plain / n,
        "producer_us_signed": 1e6 * enqueue_signed / n,
        "sign_us": 1e6 * (enqueue_signed - enqueue_plain) / n,
        "worker_decode_us_unsigned": 1e6 * decode_plain / n,
        "worker_decode_us_verified": 1e6 * decode_signed / n,
        "verify_us": 1e6 * (decode_signed - decode_plain) / n,
    }


async def signing(suite: Suite) -> None:
    """Unsigned and signed drains, twice each (off, on, on, off); then the per-command CPU cost."""
    env, n = suite.env, suite.sizes.commands
    for round_, order in ((1, (("off", None), ("on", KEY))), (2, (("on", KEY), ("off", None)))):
        for label, key in order:  # off-on, then on-off: a drift of the machine's load cancels out
            starter = suite.workers(1, extra_env=WORKER_ENV if key else None)
            await suite.attempt(
                f"8 taskline K=1 signing {label} #{round_}",
                drain(env, f"sig{label}{round_}", n, False, starter, "worker", signing_key=key),
            )
    cost = signing_cost(make_commands(min(n, 5000)))
    rates = [suite.scenarios.get(f"8 taskline K=1 signing off #{r}", {}).get("commands_per_s") for r in (1, 2)]
    known = [rate for rate in rates if rate]
    if known:
        per_command_us = 1e6 / max(known)  # the fastest unsigned drain: the strictest comparison
        cost["unsigned_drain_us_per_command"] = per_command_us
        cost["sign_and_verify_pct_of_drain"] = 100 * (cost["sign_us"] + cost["verify_us"]) / per_command_us
    suite.scenarios["8 signing cost"] = cost
