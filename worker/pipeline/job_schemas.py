"""The shapes of a job's JSON, as pydantic validates them: the envelope (`k`, `t`, `et`) and, by
its function, the command or the apply_commands items it carries.

`JOB_SCHEMA` validates a whole job in one pass (a bulk job whose every item is valid);
`LAX_BULK_SCHEMA` reads an apply_commands job whose items are then checked one by one
(`BulkItem`), when some item is invalid.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from taskline_producer.contract import DEFAULT_MAX_BULK_COMMANDS, CompleteTask, CreateTask, UpdateTask

__all__ = ["JOB_SCHEMA", "LAX_BULK_SCHEMA", "MAX_ENQUEUE_TIME_MS", "MAX_START_TRY", "BulkItem", "BulkJob"]

MAX_START_TRY: Final = 10_000
"""`t`, the try a job starts at, is at most this (a dead letter records its tries in an int column)."""
MAX_ENQUEUE_TIME_MS: Final = 253_402_300_799_999
"""`et`, the enqueue time in epoch ms, is at most the last millisecond of year 9999."""


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    k: dict[str, Any]  # the job options: read by job_options_of
    t: Annotated[int, Field(ge=1, le=MAX_START_TRY)] | None
    et: Annotated[int, Field(ge=0, le=MAX_ENQUEUE_TIME_MS)]


class _CreateJob(_Envelope):
    f: Literal["create_task"]
    a: tuple[CreateTask]


class _UpdateJob(_Envelope):
    f: Literal["update_task"]
    a: tuple[UpdateTask]


class _CompleteJob(_Envelope):
    f: Literal["complete_task"]
    a: tuple[CompleteTask]


class _LaxBulkJob(_Envelope):
    """An apply_commands envelope whose items are checked one by one (when one is invalid)."""

    f: Literal["apply_commands"]
    a: tuple[Annotated[list[Any], Field(min_length=1, max_length=DEFAULT_MAX_BULK_COMMANDS)]]


class BulkItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    function: Literal["create_task", "update_task", "complete_task"]
    command: dict[str, Any]


class _CreateItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    function: Literal["create_task"]
    command: CreateTask


class _UpdateItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    function: Literal["update_task"]
    command: UpdateTask


class _CompleteItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    function: Literal["complete_task"]
    command: CompleteTask


_Item = Annotated[_CreateItem | _UpdateItem | _CompleteItem, Field(discriminator="function")]


class BulkJob(_Envelope):
    """An apply_commands envelope whose items are all valid: validated in one pass."""

    f: Literal["apply_commands"]
    a: tuple[Annotated[list[_Item], Field(min_length=1, max_length=DEFAULT_MAX_BULK_COMMANDS)]]


LAX_BULK_SCHEMA: Final = TypeAdapter(_LaxBulkJob)

JOB_SCHEMA: Final = TypeAdapter[Union[_CreateJob, _UpdateJob, _CompleteJob, BulkJob]](
    Annotated[_CreateJob | _UpdateJob | _CompleteJob | BulkJob, Field(discriminator="f")]
)
