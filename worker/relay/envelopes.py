"""Outbox rows → arq jobs: each row's command becomes its own job (job id = command id), checked by
the worker's own decoder before it is published.

The relay runs every row through `worker.pipeline.decode.Decoder`, the function a worker runs on
each job it takes, so a row the relay refuses carries the very reason a worker would have given
(the contract's words: "commands[0].title: ..."), and a row it publishes is one no worker refuses
for its shape. The job asks for outcomes (`k.outcome_ttl`, contract version 2): the relay confirms
each command by its outcome.

With a relay key (TASKLINE_RELAY_KEY_ID / TASKLINE_RELAY_KEY_SECRET, docs/outbox.md "Signed
commands") every job is signed at publish time, with the relay's key: the job is written with
`k.sig` holding the mac as zeros (contract version 3), checked by the decoder like any other, and
sealed (`taskline_producer.signing.seal`: one HMAC over the bytes published). A re-publication is
a new job (a new `et`) and is signed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from taskline_producer.contract import COMMAND_JOBS, dumps
from taskline_producer.signing import SigningKey, seal, signature_options
from taskline_producer.wire import job_options

from worker.pipeline.decode import REJECT_JOB, Decoder, Delivery

__all__ = ["Envelopes", "Prepared"]

_FUNCTIONS: Final = {name: name.encode() for name in COMMAND_JOBS}
_REFUSED_FUNCTION: Final = "function must be one of {}: an outbox row carries one command (docs/outbox.md)".format(
    ", ".join(sorted(COMMAND_JOBS))
)


@dataclass(slots=True)
class Prepared:
    """A batch of rows made ready: jobs to publish (row id, job id, job JSON) and rows refused."""

    jobs: list[tuple[int, str, bytes]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


class Envelopes:
    """Builds and checks the jobs of outbox rows (see the module docstring)."""

    def __init__(self, decoder: Decoder, outcome_ttl: int, key: SigningKey | None = None) -> None:
        self.decoder = decoder
        self.key = key
        """The relay's signing key: each job the decoder accepted is sealed with it (None: unsigned)."""
        options = job_options(outcome_ttl)
        self.options = dumps(signature_options(key, dict(options)) if key is not None else options)

    def job(self, function: str, command_json: str, enqueued_ms: int) -> bytes:
        """The arq job JSON of one row (the command's JSON spliced in as it is stored)."""
        return b"".join(
            (
                b'{"f":"',
                _FUNCTIONS[function],
                b'","a":[',
                command_json.encode(),
                b'],"k":',
                self.options,
                b',"t":null,"et":',
                str(enqueued_ms).encode(),
                b"}",
            )
        )

    def prepare(self, rows: Iterable[tuple[int, str, str]], enqueued_ms: int) -> Prepared:
        """Each (row id, function, command JSON) either as a job to publish or refused with the
        reason a worker would give."""
        prepared = Prepared()
        for row_id, function, command_json in rows:
            if function not in _FUNCTIONS:
                prepared.refused.append((row_id, _REFUSED_FUNCTION))
                continue
            raw = self.job(function, command_json, enqueued_ms)
            decoded = self.decoder(raw)
            argument = decoded["a"][0]
            if decoded["f"] == REJECT_JOB or not isinstance(argument, Delivery):
                prepared.refused.append((row_id, _reason_of(argument)))
                continue
            prepared.jobs.append((row_id, str(argument.command.command_id), seal(raw, self.key) if self.key else raw))
        return prepared


def _reason_of(argument: object) -> str:
    reason = getattr(argument, "reason", None)
    return str(reason) if reason else "refused by the contract"
