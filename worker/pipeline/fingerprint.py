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
    """SHA-256 of the command's function and validated fields but `issued_at`, in the model's
    field order: equal for every delivery of one command, whatever client serialised it.

    `issued_at` is left out: a producer that rebuilds a command to send it again (the command
    line does, stamping it anew) sends the same command, and it stays a no-op (the first
    delivery's stamp holds). An update_task keeps "absent" and "null" apart (they mean different
    things); the other commands' unset optional fields are their defaults, as if sent."""
    fields = command.model_dump_json(exclude={"issued_at"}, exclude_unset=isinstance(command, UpdateTask))
    return hashlib.sha256(f"{command.function}\n{fields}".encode()).digest()
