"""Text and JSON from what Redis and exceptions hand us: the bottom floor, no I/O.

* `reply_text`: a Redis reply (bytes from a client without `decode_responses`) as `str`;
* `json_object`: a Redis value holding a JSON object, as a dict, or None;
* `payload_text`: a stored payload (bytes, perhaps not UTF-8) as `str`, never raising;
* `first_line`: the first line of an error's message, cut to a length a log line or a dead
  letter's reason can hold;
* `describe_error`: `Type: first line` with passwords and URLs' credentials hidden, for
  heartbeats, probes, `status --json` and the page.

The whole message folded onto one line (what a command line prints when a service fails it) is
`taskline_producer.cli_errors.error_text`, shared with the producer's CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from taskline_producer.redaction import redact_text

__all__ = ["describe_error", "first_line", "json_object", "payload_text", "reply_text"]


def reply_text(value: bytes | str | int | float) -> str:
    """A Redis reply as text: bytes decoded as UTF-8, anything else through `str`."""
    return value.decode() if isinstance(value, bytes) else str(value)


def json_object(raw: Any) -> dict[str, Any] | None:
    """A Redis value holding a JSON object, decoded; None when absent or anything else."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter goes
        return None
    return value if isinstance(value, dict) else None


def payload_text(payload: bytes | None, limit: int | None = None) -> str | None:
    """A stored payload (its first `limit` bytes) as text; bytes that are not UTF-8 are replaced."""
    return None if payload is None else payload[:limit].decode("utf-8", "replace")


def first_line(error: object, limit: int = 300) -> str:
    """The first line of `str(error)`, URLs redacted, stripped and cut to `limit` characters; ""
    when it is empty."""
    message = redact_text(str(error).strip())
    return message.splitlines()[0][:limit] if message else ""


def describe_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """`Type: first line of the message`, without any of `secrets` (passwords) in it."""
    message = first_line(exc, 200)
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
