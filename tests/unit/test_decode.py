"""The job decoder: every possible byte string becomes either a command call or a dead letter."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from taskline_producer.contract import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    CompleteTask,
    CreateTask,
    UpdateTask,
    command_from_json,
)

import worker.pipeline.decode as envelope_module
from tests.contract_cases import CASES, ContractCase
from worker.pipeline.decode import REJECT_JOB, BulkDelivery, Decoder, Delivery, Rejected

MAX_PAYLOAD = 4096
MAX_BULK_PAYLOAD = 256 * 1024
decode = Decoder(max_payload_bytes=MAX_PAYLOAD, max_bulk_payload_bytes=MAX_BULK_PAYLOAD)


def command(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "command_id": str(uuid4()),
        "issued_at": "2026-11-25T09:30:00.250000Z",
        "task_id": str(uuid4()),
        "user_id": 3,
    }
    data.update(overrides)
    return data


def job(function: Any, /, *args: Any, **members: Any) -> bytes:
    """An arq job as compact JSON (as the producer writes it), with members overridden or removed."""
    body: dict[str, Any] = {"f": function, "a": list(args), "k": {}, "t": None, "et": 1_764_063_000_000}
    for name, value in members.items():
        if value is _DROP:
            del body[name]
        else:
            body[name] = value
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


_DROP = object()


def padded(raw: bytes, size: int) -> bytes:
    """`raw` with trailing JSON whitespace up to `size` bytes: still the same valid job."""
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def rejected(raw: bytes) -> Rejected:
    """Decode `raw`, assert it was routed to the reject function, and return its Rejected."""
    result = decode(raw)
    assert result["f"] == REJECT_JOB, result
    assert result["k"] == {}
    (argument,) = result["a"]
    assert isinstance(argument, Rejected)
    assert argument.raw == raw
    return argument


# -- jobs that follow the contract ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "data", "model"),
    [
        ("create_task", command(title="Write tests", description=None), CreateTask),
        ("update_task", command(description="only this"), UpdateTask),
        ("complete_task", command(), CompleteTask),
    ],
)
def test_a_valid_job_becomes_a_call_of_its_function_with_a_delivery(function: str, data: dict, model: type) -> None:
    """A valid job decodes to {"f": its function, "a": (Delivery,)} carrying the validated command and raw bytes."""
    raw = job(function, data, t=3, et=42)
    result = decode(raw)
    assert result["f"] == function
    assert (result["k"], result["t"], result["et"]) == ({}, 3, 42)
    (delivery,) = result["a"]
    assert isinstance(result["a"], tuple)
    assert isinstance(delivery, Delivery)
    assert delivery.raw == raw
    assert delivery.command == model.model_validate_json(json.dumps(data))


def test_a_valid_job_keeps_the_absent_fields_of_update_task_unset() -> None:
    """Decoding keeps update_task's absent-versus-null distinction."""
    (delivery,) = decode(job("update_task", command(description=None)))["a"]
    assert delivery.command.sets_description
    assert not delivery.command.sets_title


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_contract_case_is_run_or_refused_naming_its_member(case: ContractCase) -> None:
    """Every case of the shared contract cases (tests/contract_cases.json, which both producers'
    tests and their recording producers' tests also run) decodes to a call of its function when the
    case is valid, and to a dead letter whose reason names the case's member when it is not; the
    same case inside an apply_commands job has the same verdict for its item."""
    decode_at_default_limits = Decoder(max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES, max_bulk_payload_bytes=1 << 20)
    raw = case.job()
    result = decode_at_default_limits(raw)
    if case.valid:
        assert result["f"] == case.function
        assert result["a"][0].command == command_from_json(case.function, json.dumps(case.command))
    else:
        assert result["f"] == REJECT_JOB
        reason = result["a"][0].reason
        assert case.field is None or case.field in reason, reason
    item = {"function": case.function, "command": case.command}
    bulk = json.dumps({"f": "apply_commands", "a": [[item]], "k": {}, "t": None, "et": 1}, ensure_ascii=True).encode()
    delivery = decode_at_default_limits(bulk)["a"][0]
    if case.valid:
        assert [command.command_id for _, command in delivery.commands] == [UUID(case.command["command_id"])]
    elif case.field is None:  # not JSON text the parser takes: the whole job is refused
        assert isinstance(delivery, Rejected)
    else:
        assert delivery.commands == []
        assert [case.field in item.reason for _, item in delivery.rejected] == [True]


# -- refused before parsing ------------------------------------------------------------------


def test_an_oversized_job_is_rejected_before_parsing_with_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command job above max_payload_bytes is dead-lettered unread, with a reason naming its size."""
    parsed: list[bytes] = []
    real = envelope_module.JOB_SCHEMA

    class Spy:
        def validate_json(self, raw: bytes) -> Any:
            parsed.append(raw)
            return real.validate_json(raw)

    monkeypatch.setattr(envelope_module, "JOB_SCHEMA", Spy())
    raw = padded(job("create_task", command(title="t", description="x" * 900)), MAX_PAYLOAD + 1)
    reason = rejected(raw)
    assert len(raw) > MAX_PAYLOAD
    assert str(len(raw)) in reason.reason
    assert str(MAX_PAYLOAD) in reason.reason
    assert reason.function is None
    assert parsed == []
    # The spy does see jobs of an acceptable size: the assertion above can fail.
    decode(job("complete_task", command()))
    assert len(parsed) == 1


def test_a_job_of_exactly_max_payload_bytes_is_parsed() -> None:
    """The limit is inclusive: a job of exactly max_payload_bytes is decoded, one byte more is not."""
    raw = job("create_task", command(title="t"))
    assert decode(padded(raw, MAX_PAYLOAD))["f"] == "create_task"
    assert decode(padded(raw, MAX_PAYLOAD + 1))["f"] == REJECT_JOB


class _TouchOnUnpickle:
    """A pickle payload that, if ever unpickled, creates a marker file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_a_pickle_is_rejected_as_a_pickle_and_never_unpickled(tmp_path: Path) -> None:
    """An arq-default pickle job (code-running __reduce__ inside) is dead-lettered; nothing in it runs."""
    marker = tmp_path / "unpickled"
    raw = pickle.dumps({"f": "create_task", "a": (_TouchOnUnpickle(marker),), "k": {}, "t": None, "et": 0})

    result = rejected(raw)

    assert "pickle" in result.reason
    assert result.function is None
    assert not marker.exists()
    # The payload is live: unpickling it (which the decoder must never do) would create the marker.
    pickle.loads(pickle.dumps(_TouchOnUnpickle(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_of_any_protocol_is_rejected_and_never_unpickled(tmp_path: Path, protocol: int) -> None:
    """Pickles of every protocol, including the text protocols 0 and 1, are dead-lettered without running."""
    marker = tmp_path / "unpickled"
    raw = pickle.dumps({"f": "create_task", "a": [_TouchOnUnpickle(marker)]}, protocol=protocol)
    assert rejected(raw).function is None
    assert not marker.exists()


def test_a_plain_pickled_dict_is_rejected_with_a_reason_about_pickle() -> None:
    """pickle.dumps of a well-formed job dict is still refused, saying it is a pickle."""
    raw = pickle.dumps({"f": "complete_task", "a": [command()], "k": {}, "t": None, "et": 0})
    assert "never unpickles" in rejected(raw).reason


# -- not JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b'{"f":"create_task","a":[{"title":"\xff\xfe"}],"k":{},"t":null,"et":0}',  # invalid UTF-8
        job("complete_task", command())[:-1],  # truncated
        b"[]",
        b"null",
        b'"create_task"',
    ],
    ids=["empty", "text", "invalid-utf8", "truncated", "array", "null", "string"],
)
def test_a_payload_that_is_not_a_json_object_is_rejected_without_a_function(raw: bytes) -> None:
    """Empty bytes, non-JSON, invalid UTF-8 or a JSON non-object are dead-lettered with function None."""
    assert rejected(raw).function is None


def test_a_job_with_a_byte_order_mark_is_rejected() -> None:
    """A UTF-8 byte order mark before the JSON is not accepted (RFC 8259 forbids sending one)."""
    assert rejected(b"\xef\xbb\xbf" + job("complete_task", command())).reason.startswith("Invalid JSON")


# -- malformed envelopes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [(), (command(), command())],
    ids=["no-argument", "two-arguments"],
)
def test_a_job_without_exactly_one_positional_argument_is_rejected(args: tuple) -> None:
    """A command job must have exactly one positional argument, the command; a: [] and a: [x, y] are refused."""
    result = rejected(job("complete_task", *args))
    assert result.function == "complete_task"
    assert result.reason.startswith("a")


def test_a_job_with_keyword_arguments_is_rejected() -> None:
    """A job whose k (keyword arguments) is not empty is refused."""
    assert rejected(job("complete_task", command(), k={"user_id": 1})).reason.startswith("k:")


@pytest.mark.parametrize("t", [0, -1, "1", 1.5, True, []])
def test_a_job_with_a_malformed_try_count_is_rejected(t: Any) -> None:
    """t (arq's try count) must be null or a positive JSON integer; 0, "1", 1.5 or true are refused."""
    assert rejected(job("complete_task", command(), t=t)).reason.startswith("t:")


@pytest.mark.parametrize("t", [None, 1, 7])
def test_a_job_with_a_valid_try_count_is_accepted(t: int | None) -> None:
    """t may be null or a positive integer, and is passed on to arq unchanged."""
    assert decode(job("complete_task", command(), t=t))["t"] == t


@pytest.mark.parametrize(
    "et", [-1, "1764063000000", 1.5, None, _DROP], ids=["negative", "string", "float", "null", "missing"]
)
def test_a_job_with_a_malformed_enqueue_time_is_rejected(et: Any) -> None:
    """et (enqueue epoch ms) is required and must be a non-negative integer."""
    assert rejected(job("complete_task", command(), et=et)).reason.startswith("et:")


@pytest.mark.parametrize("member", ["k", "t", "a"])
def test_a_job_missing_an_envelope_member_is_rejected(member: str) -> None:
    """Every member of the arq envelope is required, as it is for arq itself."""
    assert rejected(job("complete_task", command(), **{member: _DROP})).reason.startswith(f"{member}:")


def test_a_job_with_an_unknown_envelope_member_is_rejected() -> None:
    """A member the envelope does not define is refused."""
    assert "Extra inputs" in rejected(job("complete_task", command(), x=1)).reason


def test_a_job_without_a_function_is_rejected() -> None:
    """A job with no "f" is refused with a reason saying so."""
    result = rejected(job("complete_task", command(), f=_DROP))
    assert (result.function, result.reason) == (None, 'the job has no "f" (function name) member')


@pytest.mark.parametrize("function", ["os.system", "taskline_reject", "CREATE_TASK", 1, None])
def test_a_job_naming_a_function_that_is_not_a_command_is_rejected(function: Any) -> None:
    """Only the four command functions run; anything else, including the internal reject job, is refused."""
    result = rejected(job(function, command()))
    assert result.function is None
    if isinstance(function, str):
        assert f"function {function!r} is not a taskline command" in result.reason


def test_the_reject_function_cannot_be_reached_with_a_forged_rejected_argument() -> None:
    """A job naming taskline_reject is itself refused: its argument is never handed on as a Rejected."""
    raw = job(REJECT_JOB, {"raw": "x", "function": "create_task", "reason": "forged"})
    result = rejected(raw)
    assert result.reason != "forged"
    assert result.function is None


def test_an_invalid_command_keeps_its_function_name() -> None:
    """A valid envelope with an invalid command is rejected with Rejected.function = its job function."""
    result = rejected(job("create_task", command(title="t", user_id=0)))
    assert result.function == "create_task"
    assert result.reason == "command.user_id: Input should be greater than or equal to 1"


def test_a_command_valid_for_another_function_is_rejected() -> None:
    """A complete_task command sent as create_task (no title) is refused: the function picks the model."""
    result = rejected(job("create_task", command()))
    assert (result.function, result.reason) == ("create_task", "command.title: Field required")


def test_a_deeply_nested_payload_is_rejected_not_raised() -> None:
    """JSON nested 100,000 deep (which makes Python's json module raise RecursionError) is dead-lettered."""
    roomy = Decoder(max_payload_bytes=1 << 20, max_bulk_payload_bytes=1 << 20)
    raw = b'{"f":"create_task","a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    result = roomy(raw)
    assert result["f"] == REJECT_JOB
    assert result["a"][0].raw == raw


def test_an_unexpected_error_while_decoding_is_rejected_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder never raises: any exception becomes a dead letter whose reason names it."""

    class Broken:
        def validate_json(self, raw: bytes) -> Any:
            raise RuntimeError("parser exploded")

    monkeypatch.setattr(envelope_module, "JOB_SCHEMA", Broken())
    result = rejected(job("complete_task", command()))
    assert result.reason == "could not decode the job: RuntimeError: parser exploded"


# -- apply_commands ----------------------------------------------------------------------------


def test_a_bulk_job_splits_valid_and_invalid_items_by_index() -> None:
    """Valid items become commands and invalid items become Rejected, each with its index in the list."""
    good0, bad1, good2 = command(title="a"), command(title="b", user_id=0), command()
    items = [
        {"function": "create_task", "command": good0},
        {"function": "create_task", "command": bad1},
        {"function": "complete_task", "command": good2},
        {"function": "os.system", "command": command()},
        "not an object",
        {"function": "update_task", "command": command(), "extra": 1},
    ]
    raw = job("apply_commands", items)

    result = decode(raw)

    assert result["f"] == "apply_commands"
    (bulk,) = result["a"]
    assert isinstance(bulk, BulkDelivery)
    assert bulk.raw == raw
    assert [(i, type(c).__name__, str(c.command_id)) for i, c in bulk.commands] == [
        (0, "CreateTask", good0["command_id"]),
        (2, "CompleteTask", good2["command_id"]),
    ]
    assert [i for i, _ in bulk.rejected] == [1, 3, 4, 5]
    by_index = dict(bulk.rejected)
    assert (by_index[1].function, by_index[1].command_id) == ("create_task", bad1["command_id"])
    assert by_index[1].reason == "commands[1].user_id: Input should be greater than or equal to 1"
    assert by_index[3].function is None
    assert by_index[4].function is None
    assert by_index[4].command_id is None
    assert by_index[5].function == "update_task"


def test_an_invalid_bulk_item_is_kept_as_the_single_job_it_would_have_been() -> None:
    """A rejected bulk item's raw bytes are a one-command job of its function, so it can be replayed."""
    bad = command(title="   ")
    (bulk,) = decode(job("apply_commands", [{"function": "create_task", "command": bad}]))["a"]
    ((index, item),) = bulk.rejected
    replayable = json.loads(item.raw)
    assert (index, replayable["f"], replayable["a"], replayable["k"]) == (0, "create_task", [bad], {})
    assert rejected(item.raw).function == "create_task"


def test_a_bulk_item_whose_command_id_is_not_a_uuid_is_filed_under_no_command_id() -> None:
    """A blank or arbitrary command_id is no id to file a dead letter under (two items would collide):
    the item's command_id is None, so its dead letter takes the job id and index."""
    items = [{"function": "create_task", "command": command(command_id=value, user_id=0)} for value in (" ", "x")]
    (bulk,) = decode(job("apply_commands", items))["a"]
    assert [item.command_id for _, item in bulk.rejected] == [None, None]


@pytest.mark.parametrize("items", [[], {}, "x"], ids=["empty-list", "object", "string"])
def test_a_bulk_job_whose_argument_is_not_a_non_empty_list_is_rejected(items: Any) -> None:
    """apply_commands needs a list of 1 to 1,000 items."""
    assert rejected(job("apply_commands", items)).function == "apply_commands"


def test_a_bulk_job_of_1001_items_is_rejected() -> None:
    """apply_commands carries at most 1,000 commands."""
    item = {"function": "complete_task", "command": command()}
    assert rejected(job("apply_commands", [item] * 1001)).function == "apply_commands"
    assert isinstance(decode(job("apply_commands", [item] * 1000))["a"][0], BulkDelivery)


def _bulk_above_max_payload() -> tuple[list[dict[str, Any]], bytes]:
    items = [{"function": "complete_task", "command": command()} for _ in range(40)]
    raw = job("apply_commands", items)
    assert MAX_PAYLOAD < len(raw) <= MAX_BULK_PAYLOAD
    return items, raw


def test_a_large_bulk_job_starting_with_its_function_is_accepted() -> None:
    """A compact apply_commands job above max_payload_bytes but within max_bulk_payload_bytes is decoded."""
    items, raw = _bulk_above_max_payload()
    assert raw.startswith(b'{"f":"apply_commands"')
    result = decode(raw)
    assert result["f"] == "apply_commands"
    assert len(result["a"][0].commands) == len(items)


def test_a_large_bulk_job_not_starting_with_its_function_is_rejected_unread() -> None:
    """Above max_payload_bytes, the bulk allowance needs the exact prefix {"f":"apply_commands"."""
    items, _ = _bulk_above_max_payload()
    spaced = json.dumps({"f": "apply_commands", "a": [items], "k": {}, "t": None, "et": 0}).encode()
    reordered = json.dumps({"a": [items], "f": "apply_commands", "k": {}, "t": None, "et": 0}).encode()
    for raw in (spaced, reordered):
        assert MAX_PAYLOAD < len(raw) <= MAX_BULK_PAYLOAD
        assert "bytes" in rejected(raw).reason


def test_a_command_job_between_the_two_limits_is_rejected() -> None:
    """A create_task job above max_payload_bytes gets no bulk allowance."""
    raw = padded(job("create_task", command(title="t")), MAX_PAYLOAD + 1)
    assert MAX_PAYLOAD < len(raw) <= MAX_BULK_PAYLOAD
    assert str(len(raw)) in rejected(raw).reason


def test_a_command_job_disguised_with_the_bulk_prefix_is_rejected() -> None:
    """A job that starts {"f":"apply_commands" but parses as create_task (duplicate "f") gets no bulk allowance."""
    body = json.dumps({"a": [command(title="t")], "k": {}, "t": None, "et": 0}, separators=(",", ":"))
    raw = b'{"f":"apply_commands","f":"create_task",' + body[1:].encode() + b" " * MAX_PAYLOAD
    assert MAX_PAYLOAD < len(raw) <= MAX_BULK_PAYLOAD
    rejected(raw)


def test_a_bulk_job_above_max_bulk_payload_bytes_is_rejected_unread() -> None:
    """An apply_commands job above max_bulk_payload_bytes is refused with a reason naming its size."""
    small = Decoder(max_payload_bytes=1024, max_bulk_payload_bytes=2048)
    raw = job("apply_commands", [{"function": "complete_task", "command": command()} for _ in range(20)])
    assert len(raw) > 2048
    result = small(raw)
    assert result["f"] == REJECT_JOB
    assert str(len(raw)) in result["a"][0].reason


# -- what arq may log -------------------------------------------------------------------------------


def test_repr_of_a_delivery_never_shows_the_payload() -> None:
    """arq logs job arguments with repr(): a Delivery shows its function and command id, never the text."""
    data = command(title="secret title", description="secret description")
    (delivery,) = decode(job("create_task", data))["a"]
    text = repr(delivery)
    assert text == f"<create_task {data['command_id']}>"
    assert "secret" not in text


def test_repr_of_rejections_and_bulk_deliveries_never_shows_the_payload() -> None:
    """Rejected and BulkDelivery reprs show sizes and counts only."""
    secret = command(title="secret title")
    reject = rejected(job("create_task", {**secret, "user_id": 0}))
    (bulk,) = decode(job("apply_commands", [{"function": "create_task", "command": secret}]))["a"]
    for value in (reject, bulk, *(item for _, item in bulk.rejected)):
        assert "secret" not in repr(value)
    assert repr(bulk) == "<apply_commands 1 commands>"
