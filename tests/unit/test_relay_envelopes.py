"""The relay's jobs: each outbox row becomes the job a direct send would make (asking for outcomes),
checked by the worker's own decoder, so a refused row carries the worker's reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
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


def _broken_rows() -> list[tuple[str, str]]:
    """(function, command JSON) pairs: valid ones and ones breaking the contract in many ways."""
    good = wire_argument(_create())
    update = {k: good[k] for k in ("command_id", "issued_at", "task_id", "user_id")}
    variants: list[tuple[str, object]] = [
        ("create_task", good),
        ("create_task", good | {"description": None}),
        ("create_task", good | {"user_id": 0}),
        ("create_task", good | {"user_id": "3"}),
        ("create_task", good | {"user_id": 3.0}),
        ("create_task", good | {"title": ""}),
        ("create_task", good | {"title": "   "}),
        ("create_task", good | {"title": "a\u0000b"}),
        ("create_task", good | {"title": "x" * 10_000}),
        ("create_task", good | {"extra": 1}),
        ("create_task", good | {"command_id": "not-a-uuid"}),
        ("create_task", good | {"command_id": str(good["command_id"]).upper()}),
        ("create_task", good | {"command_id": str(good["command_id"]).replace("-", "")}),
        ("create_task", good | {"issued_at": "2026-11-25T09:30:00"}),
        ("create_task", good | {"issued_at": "2026-11-25T09:30:00+01:00"}),
        ("create_task", good | {"issued_at": 1764063000}),
        ("create_task", {k: v for k, v in good.items() if k != "task_id"}),
        ("update_task", update),
        ("update_task", update | {"title": None}),
        ("update_task", update | {"description": None}),
        ("update_task", update | {"title": "new"}),
        ("complete_task", update),
        ("complete_task", good),
        ("create_task", [good]),
        ("create_task", None),
        ("create_task", "text"),
        ("create_task", 7),
        ("create_task", {}),
        ("create_task", good | {"description": "d" * 70_000}),
    ]
    return [(function, json.dumps(command)) for function, command in variants]


@pytest.mark.parametrize("max_payload_bytes", [64 * 1024, 1024])
def test_what_the_relay_accepts_is_exactly_what_the_workers_decoder_accepts(max_payload_bytes: int) -> None:
    """The relay checks a row with the contract's model (its fast way) and asks the decoder only
    for the reason of a refusal: over valid and broken rows alike, it publishes exactly the rows
    whose job the worker's decoder takes, under the same job id, and refuses the rest with the
    decoder's reason; a valid command whose job is over TASKLINE_MAX_PAYLOAD_BYTES is refused."""
    envelopes = Envelopes(Decoder(max_payload_bytes, 1024 * 1024), outcome_ttl=600)
    rows = _broken_rows()
    rows.append(("create_task", json.dumps(wire_argument(_create()) | {"description": "d" * 900})))
    prepared = envelopes.prepare([(i, f, c) for i, (f, c) in enumerate(rows)], 1234)
    expected_jobs, expected_refused = {}, {}
    for i, (function, command_json) in enumerate(rows):
        decoded = envelopes.decoder(envelopes.job(function, command_json, 1234))
        argument = decoded["a"][0]
        if decoded["f"] == REJECT_JOB:
            expected_refused[i] = argument.reason
        else:
            expected_jobs[i] = str(argument.command.command_id)
    assert {row_id: job_id for row_id, job_id, _ in prepared.jobs} == expected_jobs
    assert dict(prepared.refused) == expected_refused
    assert len(expected_jobs) >= 5  # the corpus has valid rows too
    assert len(expected_refused) >= 15
    assert (len(rows) - 1 in expected_jobs) is (max_payload_bytes > 2048)
