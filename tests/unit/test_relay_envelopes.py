"""The relay's jobs: each outbox row becomes the job a direct send would make (asking for outcomes),
checked by the worker's own decoder, so a refused row carries the worker's reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

from taskline_producer.contract import CreateTask, dumps
from taskline_producer.signing import SigningKey
from taskline_producer.wire import job_of_command, job_options, wire_argument

from worker.config.signing_keys import parse_signing_keys
from worker.pipeline.decode import REJECT_JOB, Decoder
from worker.pipeline.signatures import Verifier
from worker.relay.envelopes import Envelopes


def _envelopes() -> Envelopes:
    return Envelopes(Decoder(64 * 1024, 1024 * 1024), outcome_ttl=600)


def _create() -> CreateTask:
    return CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=3, title="t")


def test_a_row_becomes_the_job_a_direct_send_with_outcomes_makes() -> None:
    """Same JSON as TaskProducer.send(command, outcome_ttl=600), job id = command id."""
    command = _create()
    prepared = _envelopes().prepare([(1, "create_task", dumps(wire_argument(command)).decode())], 1234)
    assert prepared.refused == []
    ((row_id, job_id, raw),) = prepared.jobs
    assert (row_id, job_id) == (1, str(command.command_id))
    assert json.loads(raw) == json.loads(job_of_command(command, 1234, job_options(600)))


def test_invalid_rows_are_refused_with_the_decoders_reason() -> None:
    """A command breaking the contract, JSON that names another function's fields and a function
    that is not a command are refused, each with its reason; the valid row still goes."""
    good = _create()
    bad = wire_argument(good) | {"user_id": 0}
    prepared = _envelopes().prepare(
        [
            (1, "create_task", json.dumps(bad)),
            (2, "complete_task", json.dumps(wire_argument(good))),
            (3, "apply_commands", "[]"),
            (4, "create_task", json.dumps(wire_argument(good))),
        ],
        1,
    )
    reasons = dict(prepared.refused)
    assert "user_id" in reasons[1]
    assert "title" in reasons[2]
    assert "function must be one of" in reasons[3]
    assert [row_id for row_id, _, _ in prepared.jobs] == [4]


def test_with_a_relay_key_every_job_is_signed_so_that_a_worker_requiring_signatures_accepts_it() -> None:
    """A relay key seals each accepted job (contract 3, k.sig with the relay's key id); a worker's
    decoder that requires signatures and knows the key takes it as signed by the relay."""
    secret = "r" * 40
    key = SigningKey.of("relay-1", secret)
    envelopes = Envelopes(Decoder(64 * 1024, 1024 * 1024), outcome_ttl=600, key=key)
    command = _create()
    prepared = envelopes.prepare([(1, "create_task", json.dumps(wire_argument(command)))], 1)
    ((_, job_id, raw),) = prepared.jobs
    assert job_id == str(command.command_id)
    options = json.loads(raw)["k"]
    assert options["contract"] == 3
    assert options["outcome_ttl"] == 600
    assert options["sig"]["kid"] == "relay-1"
    assert options["sig"]["mac"] != "0" * 64
    worker = Decoder(
        64 * 1024, 1024 * 1024, Verifier(parse_signing_keys({"relay-1": {"secret": secret}}), required=True)
    )
    decoded = worker(raw)
    assert decoded["f"] == "create_task"
    assert decoded["a"][0].signed_by == "relay-1"
    other = Decoder(
        64 * 1024, 1024 * 1024, Verifier(parse_signing_keys({"relay-1": {"secret": "x" * 40}}), required=True)
    )
    assert other(raw)["f"] == REJECT_JOB  # another secret: refused, so the seal really covers the job
