"""The command contract, rule by rule, as the worker sees it: JSON text validated by the models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError
from taskline_producer.contract import CompleteTask, CreateTask, UpdateTask, command_from_json, is_in_future

CREATED_AT = "2026-11-25T09:30:00Z"


def fields(**overrides: Any) -> dict[str, Any]:
    """The fields every command has, valid, with `overrides` applied (None-valued keys kept)."""
    data: dict[str, Any] = {
        "command_id": str(uuid4()),
        "issued_at": CREATED_AT,
        "task_id": str(uuid4()),
        "user_id": 7,
    }
    data.update(overrides)
    return data


def create(**overrides: Any) -> CreateTask:
    data = fields(title="Write tests")
    data.update(overrides)
    command = command_from_json("create_task", json.dumps(data))
    assert isinstance(command, CreateTask)
    return command


def update(**overrides: Any) -> UpdateTask:
    command = command_from_json("update_task", json.dumps(fields(**overrides)))
    assert isinstance(command, UpdateTask)
    return command


def rejects(function: str, data: dict[str, Any] | str, field: str | None = None) -> str:
    """Assert the command is refused and return the error text (checked to name `field`)."""
    raw = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(ValidationError) as caught:
        command_from_json(function, raw)
    text = str(caught.value)
    if field is not None:
        assert field in [str(e["loc"][0]) for e in caught.value.errors() if e["loc"]], text
    return text


# -- user_id ------------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", [1, 2**31 - 1])
def test_user_id_accepts_the_ends_of_its_range(user_id: int) -> None:
    """user_id may be any JSON integer from 1 to 2^31 - 1 inclusive."""
    assert create(user_id=user_id).user_id == user_id


@pytest.mark.parametrize("user_id", [0, -1, 2**31])
def test_user_id_outside_its_range_is_rejected(user_id: int) -> None:
    """user_id 0, negative, or 2^31 (beyond PostgreSQL's integer) is refused."""
    rejects("create_task", fields(title="t", user_id=user_id), "user_id")


def test_user_id_as_a_string_is_rejected() -> None:
    """user_id "7" (a JSON string of digits) is refused: no coercion."""
    rejects("create_task", fields(title="t", user_id="7"), "user_id")


def test_user_id_as_a_float_is_rejected() -> None:
    """user_id 1.0 (a JSON number with a fraction part) is refused even though it is integral."""
    rejects("create_task", fields(title="t", user_id=1.0), "user_id")


def test_user_id_as_a_boolean_is_rejected() -> None:
    """user_id true is refused, although Python treats True as 1."""
    rejects("create_task", fields(title="t", user_id=True), "user_id")


# -- title -----------------------------------------------------------------------------


def test_title_of_200_astral_plane_characters_is_accepted() -> None:
    """The title limit counts code points: 200 emoji (800 UTF-8 bytes, 400 UTF-16 units) fit."""
    assert create(title="😀" * 200).title == "😀" * 200


def test_title_of_201_characters_is_rejected() -> None:
    """A title of 201 code points is refused."""
    rejects("create_task", fields(title="😀" * 201), "title")


def test_title_empty_is_rejected() -> None:
    """An empty title is refused."""
    rejects("create_task", fields(title=""), "title")


@pytest.mark.parametrize("title", [" ", "\t\n", "\u00a0\u2003"])
def test_title_of_only_whitespace_is_rejected(title: str) -> None:
    """A title made only of whitespace (ASCII or Unicode spaces) is refused."""
    assert "whitespace" in rejects("create_task", fields(title=title), "title")


def test_title_is_stored_exactly_as_sent() -> None:
    """Leading and trailing spaces of a title are kept, not stripped."""
    assert create(title="  padded title \t").title == "  padded title \t"


def test_title_with_a_nul_character_is_rejected() -> None:
    """A NUL character (which PostgreSQL text cannot store) in the title is refused."""
    assert "NUL" in rejects("create_task", fields(title="a\u0000b"), "title")


def test_title_with_a_json_escaped_unpaired_surrogate_is_rejected() -> None:
    """JSON text with an unpaired surrogate escape ("\\ud800") in the title is refused."""
    raw = json.dumps(fields(title="a\ud800b"))
    assert "\\ud800" in raw
    rejects("create_task", raw)


def test_title_with_an_unpaired_surrogate_built_in_python_is_rejected() -> None:
    """A command built in Python with an unpaired surrogate in the title is refused."""
    with pytest.raises(ValidationError) as caught:
        CreateTask.model_validate({**fields(title="a\udfffb"), "command_id": uuid4(), "task_id": uuid4()})
    assert [e["loc"] for e in caught.value.errors()] == [("title",)]


def test_title_with_an_escaped_surrogate_pair_is_accepted() -> None:
    """A surrogate pair escaped in JSON ("\\ud83d\\ude00") is one valid character and is accepted."""
    raw = json.dumps(fields(title="ok 😀"))
    assert "\\ud83d\\ude00" in raw
    assert command_from_json("create_task", raw).title == "ok 😀"  # type: ignore[union-attr]


def test_title_that_is_not_a_string_is_rejected() -> None:
    """A title given as a number is refused: no coercion to text."""
    rejects("create_task", fields(title=42), "title")


def test_create_task_without_a_title_is_rejected() -> None:
    """create_task requires a title."""
    rejects("create_task", fields(), "title")


# -- description ---------------------------------------------------------------------------


def test_description_of_1000_characters_is_accepted() -> None:
    """A description may be 1,000 code points long."""
    assert create(description="é" * 1000).description == "é" * 1000


def test_description_of_1001_characters_is_rejected() -> None:
    """A description of 1,001 code points is refused."""
    rejects("create_task", fields(title="t", description="x" * 1001), "description")


def test_description_empty_is_kept_distinct_from_null() -> None:
    """An empty description stays "" and a null one stays None: they are not conflated."""
    assert create(description="").description == ""
    assert create(description=None).description is None


def test_description_absent_from_create_task_means_null() -> None:
    """create_task without a description creates the task with description None."""
    assert create().description is None


def test_description_of_only_whitespace_is_accepted_as_sent() -> None:
    """Unlike a title, a description may be only whitespace; it is kept exactly."""
    assert create(description="  \n ").description == "  \n "


def test_description_with_a_nul_character_is_rejected() -> None:
    """A NUL character in the description is refused."""
    rejects("create_task", fields(title="t", description="\u0000"), "description")


def test_description_with_a_json_escaped_unpaired_surrogate_is_rejected() -> None:
    """JSON text with an unpaired low surrogate escape ("\\udc00") in the description is refused."""
    rejects("create_task", json.dumps(fields(title="t", description="\udc00")))


# -- issued_at ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("2026-11-25T09:30:00Z", timedelta(0)),
        ("2026-11-25T09:30:00z", timedelta(0)),
        ("2026-11-25t09:30:00Z", timedelta(0)),
        ("2026-11-25T10:30:00+01:00", timedelta(hours=1)),
        ("2026-11-25T04:00:00-05:30", timedelta(hours=-5, minutes=-30)),
        ("2026-11-25T09:30:00-00:00", timedelta(0)),
    ],
)
def test_issued_at_with_an_explicit_offset_is_accepted(text: str, offset: timedelta) -> None:
    """RFC 3339 date-times with Z (either case), T (either case) or ±hh:mm keep their offset and instant."""
    issued_at = create(issued_at=text).issued_at
    assert issued_at.utcoffset() == offset
    assert issued_at == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25T09:30:00",  # naive: no offset
        "2026-11-25",  # date only
        "2026-11-25 09:30:00Z",  # space separator: RFC 3339 allows it, our regex does not
        "2026-11-25T09:30Z",  # no seconds
        "2026-11-25T09:30:00+0100",  # offset without a colon
        "2026-11-25T09:30:00+01",  # offset without minutes
        "20261125T093000Z",  # ISO 8601 basic format
        "2026-11-25T09:30:00.Z",  # a dot without digits
        "2026-11-25T09:30:00.1234567Z",  # 7 fractional digits: more than we can keep
        " 2026-11-25T09:30:00Z",  # surrounding whitespace
        "2026-13-01T09:30:00Z",  # the right shape but no such month
        "2026-11-25T24:00:00Z",  # the right shape but no such hour
        "",
    ],
)
def test_issued_at_that_is_not_rfc3339_with_an_offset_is_rejected(text: str) -> None:
    """issued_at must be an RFC 3339 'T'-separated date-time with an explicit offset, ≤ 6 fraction digits."""
    rejects("create_task", fields(title="t", issued_at=text), "issued_at")


@pytest.mark.parametrize("value", [1764063000, 1764063000.5, None, True])
def test_issued_at_that_is_not_a_string_is_rejected(value: Any) -> None:
    """issued_at as a Unix timestamp number (or null, or a boolean) is refused: only RFC 3339 text."""
    rejects("create_task", fields(title="t", issued_at=value), "issued_at")


def test_issued_at_keeps_microseconds() -> None:
    """Six fractional digits are kept to the microsecond."""
    issued_at = create(issued_at="2026-11-25T09:30:00.123456+02:00").issued_at
    assert issued_at == datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert issued_at.microsecond == 123456


def test_issued_at_with_fewer_fraction_digits_is_scaled() -> None:
    """One fractional digit means tenths of a second."""
    assert create(issued_at="2026-11-25T09:30:00.5Z").issued_at.microsecond == 500_000


def test_naive_datetime_built_in_python_is_rejected() -> None:
    """A producer building a command in Python with a naive datetime is refused."""
    data = {**fields(title="t"), "issued_at": datetime(2026, 11, 25, 9, 30)}
    with pytest.raises(ValidationError, match="offset"):
        CreateTask.model_validate(data)


def test_aware_datetime_built_in_python_is_accepted() -> None:
    """A producer may pass an aware datetime object instead of text."""
    when = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert CreateTask.model_validate({**fields(title="t"), "issued_at": when}).issued_at == when


# -- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["command_id", "task_id"])
@pytest.mark.parametrize(
    "text",
    [
        "0f0e4b1c5d6a4e2f9a8b7c6d5e4f3a2b",  # no hyphens
        "{0f0e4b1c-5d6a-4e2f-9a8b-7c6d5e4f3a2b}",  # braces
        "urn:uuid:0f0e4b1c-5d6a-4e2f-9a8b-7c6d5e4f3a2b",  # URN
        "0f0e4b1c5d6a-4e2f-9a8b-7c6d-5e4f3a2b",  # hyphens in the wrong places
        "0f0e4b1c-5d6a-4e2f-9a8b-7c6d5e4f3a2",  # one digit short
        "0f0e4b1c-5d6a-4e2f-9a8b-7c6d5e4f3a2g",  # not hexadecimal
        " 0f0e4b1c-5d6a-4e2f-9a8b-7c6d5e4f3a2b",
        "",
    ],
)
def test_ids_must_be_canonical_hyphenated_uuids(field: str, text: str) -> None:
    """command_id and task_id must be 8-4-4-4-12 hexadecimal UUID text, nothing else uuid.UUID would parse."""
    rejects("create_task", fields(title="t", **{field: text}), field)


@pytest.mark.parametrize("field", ["command_id", "task_id"])
def test_ids_given_as_numbers_are_rejected(field: str) -> None:
    """A UUID given as a JSON integer is refused."""
    rejects("complete_task", fields(**{field: 12345}), field)


def test_uppercase_uuid_is_accepted_and_equal_to_lowercase() -> None:
    """Hexadecimal digits may be either case; the id is the same UUID."""
    text = "0F0E4B1C-5D6A-4E2F-9A8B-7C6D5E4F3A2B"
    assert create(command_id=text).command_id == UUID(text.lower())


# -- unknown fields, per command -------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "data"),
    [
        ("create_task", fields(title="t", priority=1)),
        ("update_task", fields(title="t", completed=True)),
        ("complete_task", fields(function="complete_task")),
    ],
)
def test_unknown_fields_are_rejected(function: str, data: dict[str, Any]) -> None:
    """A field the contract does not define is refused, on every command."""
    assert "Extra inputs are not permitted" in rejects(function, data)


@pytest.mark.parametrize("missing", ["command_id", "issued_at", "task_id", "user_id"])
def test_complete_task_requires_every_common_field(missing: str) -> None:
    """command_id, issued_at, task_id and user_id are each required."""
    data = fields()
    del data[missing]
    rejects("complete_task", data, missing)


def test_complete_task_needs_only_the_common_fields() -> None:
    """complete_task carries nothing but the four common fields."""
    command = command_from_json("complete_task", json.dumps(fields()))
    assert isinstance(command, CompleteTask)


def test_command_that_is_not_a_json_object_is_rejected() -> None:
    """A JSON array in place of the command object is refused."""
    rejects("complete_task", json.dumps([fields()]))


# -- update_task ----------------------------------------------------------------------------


def test_update_task_without_title_or_description_is_rejected() -> None:
    """update_task must change something: at least one of title or description."""
    assert "at least one of title or description" in rejects("update_task", fields())


def test_update_task_with_title_null_is_rejected() -> None:
    """A task always has a title, so update_task cannot set it to null."""
    assert "title cannot be null" in rejects("update_task", fields(title=None))


def test_update_task_with_only_a_title_leaves_description_unset() -> None:
    """An update with only a title changes the title and marks description as not to be touched."""
    command = update(title="New")
    assert (command.sets_title, command.sets_description) == (True, False)
    assert command.model_dump(mode="json", exclude_unset=True).keys() == {*fields(), "title"}


def test_update_task_description_null_is_distinct_from_absent() -> None:
    """description: null means "clear it" and is kept in the fields set; an absent one is not."""
    cleared = update(description=None)
    assert cleared.description is None
    assert cleared.sets_description
    assert not cleared.sets_title
    assert "description" in cleared.model_fields_set
    assert cleared.model_dump(exclude_unset=True)["description"] is None

    untouched = update(title="t")
    assert untouched.description is None
    assert "description" not in untouched.model_fields_set
    assert "description" not in untouched.model_dump(exclude_unset=True)


def test_update_task_applies_the_same_title_rules() -> None:
    """update_task's title is held to create_task's rules (here: whitespace only)."""
    rejects("update_task", fields(title="   "), "title")


def test_update_task_title_may_be_200_characters() -> None:
    """The 200 code point limit applies to update_task as well."""
    assert update(title="x" * 200).title == "x" * 200
    rejects("update_task", fields(title="x" * 201), "title")


# -- is_in_future ----------------------------------------------------------------------------


NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
TOLERANCE = timedelta(hours=1)


def test_command_within_the_tolerance_is_not_in_the_future() -> None:
    """A command issued exactly `tolerance` ahead of now is still accepted as present."""
    command = create(issued_at=(NOW + TOLERANCE).isoformat())
    assert not is_in_future(command, NOW, TOLERANCE)


def test_command_beyond_the_tolerance_is_in_the_future() -> None:
    """A command issued a microsecond more than `tolerance` ahead of now is in the future."""
    command = create(issued_at=(NOW + TOLERANCE + timedelta(microseconds=1)).isoformat())
    assert is_in_future(command, NOW, TOLERANCE)


def test_command_from_the_past_is_not_in_the_future() -> None:
    """A command issued a day ago is not in the future."""
    assert not is_in_future(create(issued_at=(NOW - timedelta(days=1)).isoformat()), NOW, TOLERANCE)


def test_is_in_future_compares_instants_across_offsets() -> None:
    """Offsets are compared as instants: 11:30+01:00 is 10:30Z, within an hour of 09:30Z."""
    command = create(issued_at="2026-11-25T11:30:00+01:00")
    assert not is_in_future(command, NOW, TOLERANCE)
    assert is_in_future(command, NOW, timedelta(minutes=59))


def test_zero_tolerance_accepts_only_the_present_and_past() -> None:
    """With no tolerance, any instant after now is in the future."""
    assert not is_in_future(create(issued_at=NOW.isoformat()), NOW, timedelta(0))
    assert is_in_future(create(issued_at="2026-11-25T09:30:00.000001Z"), NOW, timedelta(0))
