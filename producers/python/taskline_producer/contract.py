"""The command contract: the one place producers and workers agree on.

Everything a command is allowed to be lives here, as Pydantic models, together with the job
names, the default queue name, the size limit and the JSON codec. This module depends only on
pydantic and the standard library, so any service can import it without pulling in database
code. The README's "Contract" section documents the same rules for other languages, and
`docs/commands.schema.json` is generated from these models (a test keeps the two in sync).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Final, Union
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from taskline_producer import keys

__all__ = [
    "BULK_JOB",
    "COMMAND_JOBS",
    "CONTRACT_VERSION",
    "DEFAULT_MAX_BULK_COMMANDS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_QUEUE",
    "OUTCOME_TTL_MAX_S",
    "OUTCOME_VERSION",
    "SIGNATURE_VERSION",
    "TRACEPARENT_MAX_CHARS",
    "TRACESTATE_MAX_CHARS",
    "TRACE_CONTEXT_VERSION",
    "Command",
    "CompleteTask",
    "CreateTask",
    "UpdateTask",
    "command_from_json",
    "command_json_schema",
    "dumps",
    "is_in_future",
]

DEFAULT_QUEUE: Final = keys.DEFAULT_QUEUE
"""The arq queue (a Redis sorted set) commands are enqueued on; `TASKLINE_QUEUE` overrides it."""

DEFAULT_MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Jobs larger than this are dead-lettered unread (`TASKLINE_MAX_PAYLOAD_BYTES` overrides it)."""

DEFAULT_MAX_BULK_COMMANDS: Final = 1000
"""The most commands one `apply_commands` job may carry."""

CONTRACT_VERSION: Final = 4
"""The newest contract version this package understands. 1 is the contract of the previous
release (the envelope's `k` is empty); 2 adds `k.outcome_ttl`; 3 adds `k.sig`, the job's signature
(taskline_producer/signing.py); 4 adds `k.traceparent` and `k.tracestate`, which workers still
accept but producers no longer write: the trace context now travels beside the job, in its trace
key (keys.trace_key, taskline_producer/tracing.py), so that workers that do not know tracing run
traced jobs. A job carries the lowest version that has what it uses (`k.contract`, absent for 1);
docs/contract.md, "Compatibility and contract versions"."""

OUTCOME_VERSION: Final = 2
"""The first contract version that carries `k.outcome_ttl`."""

SIGNATURE_VERSION: Final = 3
"""The first contract version that carries `k.sig`."""

TRACE_CONTEXT_VERSION: Final = 4
"""The contract version whose jobs may carry `k.traceparent` (and `k.tracestate`): accepted, no
longer written (the trace key beside the job carries the trace context)."""

TRACEPARENT_MAX_CHARS: Final = 256
"""The longest traceparent a job's trace key (or a version-4 `k`) may carry (a version-00
traceparent is 55 characters)."""

TRACESTATE_MAX_CHARS: Final = 512
"""The longest tracestate a job's trace key (or a version-4 `k`) may carry (W3C's own limit)."""

OUTCOME_TTL_MAX_S: Final = 7 * 86_400
"""The longest an outcome may be kept in Redis (`k.outcome_ttl`, seconds): one week."""

USER_ID_MAX: Final = 2**31 - 1
TITLE_MAX: Final = 200
DESCRIPTION_MAX: Final = 1000

_UUID_TEXT = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_RFC3339 = re.compile(r"\A\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[Zz]|[+-]\d{2}:\d{2})\Z")
_FORBIDDEN_CHARS = re.compile("[\x00\ud800-\udfff]")


def _uuid_text(value: Any) -> Any:
    if isinstance(value, str) and not _UUID_TEXT.match(value):
        raise ValueError("must be a UUID in its canonical 8-4-4-4-12 hexadecimal form")
    return value


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, datetime) and not (isinstance(value, str) and _RFC3339.match(value)):
        raise ValueError(
            "must be an RFC 3339 date-time with an explicit offset and at most microsecond "
            "precision, e.g. 2026-11-25T09:30:00.123456Z or 2026-11-25T10:30:00+01:00"
        )
    return value


def _clean_text(value: str) -> str:
    if _FORBIDDEN_CHARS.search(value):
        raise ValueError("must not contain NUL characters or unpaired surrogates")
    return value


def _not_blank(value: str) -> str:
    if value.isspace():
        raise ValueError("must contain at least one character that is not whitespace")
    return value


# The text checks run first; pydantic then parses the already-vetted text (strict=False only
# lets a str through to the UUID/datetime parser, which strict mode would refuse after a
# before-validator).
CommandId = Annotated[UUID, BeforeValidator(_uuid_text), Strict(False)]
TaskId = Annotated[UUID, BeforeValidator(_uuid_text), Strict(False)]
IssuedAt = Annotated[
    datetime,
    BeforeValidator(_rfc3339_text),
    Strict(False),
    AfterValidator(lambda v: _require_offset(v)),
    Field(json_schema_extra={"format": "date-time"}),
]
UserId = Annotated[int, Field(ge=1, le=USER_ID_MAX, strict=True)]
Title = Annotated[
    str, Field(min_length=1, max_length=TITLE_MAX), AfterValidator(_clean_text), AfterValidator(_not_blank)
]
Description = Annotated[str, Field(min_length=0, max_length=DESCRIPTION_MAX), AfterValidator(_clean_text)]


def _require_offset(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry an explicit UTC offset (Z or ±hh:mm)")
    return value


class _CommandBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    command_id: CommandId = Field(description="Unique per command; what deduplicates it.")
    issued_at: IssuedAt = Field(description="When the producer issued the command (RFC 3339).")
    task_id: TaskId = Field(description="The task's id, chosen by the producer of its create_task.")
    user_id: UserId = Field(description="The owner of the task, an id in the user table.")


class CreateTask(_CommandBase):
    """Create a task. `description` absent means null."""

    model_config = ConfigDict(title="create_task")
    function: ClassVar[str] = "create_task"

    title: Title
    description: Description | None = None


class UpdateTask(_CommandBase):
    """Change a task's title and/or description; an absent field is left as it is."""

    model_config = ConfigDict(
        title="update_task",
        json_schema_extra={"anyOf": [{"required": ["title"]}, {"required": ["description"]}]},
    )
    function: ClassVar[str] = "update_task"

    title: Annotated[
        Title | None,
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": TITLE_MAX, "title": "Title"}),
    ] = None
    description: Description | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> UpdateTask:
        given = self.model_fields_set & {"title", "description"}
        if not given:
            raise ValueError("update_task needs at least one of title or description")
        if "title" in given and self.title is None:
            raise ValueError("title cannot be null; leave it out to keep the current title")
        return self

    @property
    def sets_title(self) -> bool:
        return "title" in self.model_fields_set

    @property
    def sets_description(self) -> bool:
        return "description" in self.model_fields_set


class CompleteTask(_CommandBase):
    """Mark a task completed; `completed_at` becomes the earliest completion's `issued_at`."""

    model_config = ConfigDict(title="complete_task")
    function: ClassVar[str] = "complete_task"


Command = Union[CreateTask, UpdateTask, CompleteTask]

COMMAND_MODELS: Final[dict[str, type[CreateTask] | type[UpdateTask] | type[CompleteTask]]] = {
    "create_task": CreateTask,
    "update_task": UpdateTask,
    "complete_task": CompleteTask,
}
COMMAND_JOBS: Final = frozenset(COMMAND_MODELS)
"""The job functions that carry one command each."""

BULK_JOB: Final = "apply_commands"
"""The job function that carries a list of commands, each tagged with its `command` name."""


def command_from_json(function: str, raw: bytes | str) -> Command:
    """Validate one command's JSON text against the model named by `function`."""
    return COMMAND_MODELS[function].model_validate_json(raw)


def is_in_future(command: Command, now: datetime, tolerance: timedelta) -> bool:
    """True when `issued_at` lies more than `tolerance` ahead of `now` (clock skew guard)."""
    return command.issued_at - now > tolerance


def _json_default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return repr(value)


def dumps(value: Any) -> bytes:
    """The JSON (UTF-8) encoding both sides use; never pickle."""
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False).encode()


def command_json_schema() -> dict[str, Any]:
    """JSON Schema of the job arguments: the three commands and a bulk item, by job name."""
    defs: dict[str, Any] = {}
    any_of = []
    for name, model in COMMAND_MODELS.items():
        schema = TypeAdapter(model).json_schema(mode="validation", ref_template="#/$defs/{model}")
        schema.pop("$defs", None)
        defs[name] = schema
        any_of.append({"$ref": f"#/$defs/{name}"})
    bulk_items = []
    for name in COMMAND_MODELS:
        bulk_items.append(
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["function", "command"],
                "properties": {"function": {"const": name}, "command": {"$ref": f"#/$defs/{name}"}},
            }
        )
    defs[BULK_JOB] = {
        "title": BULK_JOB,
        "description": "The single argument of an apply_commands job: a list of "
        '{"function": <job name>, "command": <that command>} objects.',
        "type": "array",
        "minItems": 1,
        "maxItems": DEFAULT_MAX_BULK_COMMANDS,
        "items": {"oneOf": bulk_items},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://taskline.dev/schemas/commands.schema.json",
        "title": "taskline commands",
        "description": "The single positional argument of each taskline job, by job function name.",
        "anyOf": any_of,
        "$defs": defs,
    }
