"""A command's fingerprint: what tells a redelivery from another command reusing its command_id.

Recorded with each processed command (`processed_command.fingerprint`, by the statements in
worker/pipeline/statements.py). A later delivery under the same command_id with the same
fingerprint is a redelivery, a no-op; with another one it is another command (another function,
or other fields) and becomes a dead letter saying so (worker/pipeline/apply.py), as an
idempotency key reused with another request body is refused by payment APIs.
"""

from __future__ import annotations

import hashlib

from taskline_producer.contract import Command, UpdateTask

__all__ = ["command_fingerprint"]


def command_fingerprint(command: Command) -> bytes:
    """SHA-256 of the command's function and validated fields, in the model's field order: equal
    for every delivery of one command, whatever client serialised it. An update_task keeps
    "absent" and "null" apart (they mean different things); the other commands' unset optional
    fields are their defaults, the same as sent explicitly."""
    fields = command.model_dump_json(exclude_unset=isinstance(command, UpdateTask))
    return hashlib.sha256(f"{command.function}\n{fields}".encode()).digest()
