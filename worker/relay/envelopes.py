"""Outbox rows → arq jobs: each row's command becomes its own job (job id = command id), checked
against the contract before it is published.

A row is accepted when its command passes the contract's own model for its function
(`COMMAND_MODELS[function].model_validate_json` on the row's JSON text, parsed once) and its job
fits `TASKLINE_MAX_PAYLOAD_BYTES`: everything else in the job (the envelope, its options) is the
relay's own and checked once, when the relay starts, so that is exactly what the worker's decoder
(`worker.pipeline.decode.Decoder`) accepts, at about half its cost. A row that fails is then run
through that decoder, the function a worker runs on each job it takes, so it carries the very
reason a worker would have given (the contract's words: "commands[0].title: ...").
tests/unit/test_relay_envelopes.py holds the two verdicts equal over a set of broken rows. The
job asks for outcomes (`k.outcome_ttl`, contract version 2): the relay confirms each command by
its outcome.

With a relay key (TASKLINE_RELAY_KEY_ID / TASKLINE_RELAY_KEY_SECRET, docs/outbox.md "Signed
commands") every job is signed at publish time, with the relay's key: the job is written with
`k.sig` holding the mac as zeros (contract version 3), checked by the decoder like any other, and
sealed (`taskline_producer.signing.seal`: one HMAC over the bytes published). A re-publication is
a new job (a new `et`) and is signed again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from pydantic import ValidationError
from taskline_producer.contract import COMMAND_JOBS, COMMAND_MODELS, dumps
from taskline_producer.signing import SigningKey, seal, signature_options
from taskline_producer.wire import job_options

from worker.pipeline.decode import REJECT_JOB, Decoder, Delivery
from worker.pipeline.job_options import job_options_of

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
        refused = job_options_of(json.loads(self.options))
        if isinstance(refused, str):  # the options are the relay's own: refused, no row could go
            raise ValueError(f"the relay's job options break the contract: {refused}")

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

    def prepare(self, rows: Iterable[tuple[int, str, str]], enqueued_ms: int, into: Prepared | None = None) -> Prepared:
        """Each (row id, function, command JSON) either as a job to publish or refused with the
        reason a worker would give (added to `into` when given)."""
        prepared = Prepared() if into is None else into
        limit = self.decoder.max_payload_bytes
        for row_id, function, command_json in rows:
            if function not in _FUNCTIONS:
                prepared.refused.append((row_id, _REFUSED_FUNCTION))
                continue
            raw = self.job(function, command_json, enqueued_ms)
            if len(raw) <= limit:
                try:
                    command = COMMAND_MODELS[function].model_validate_json(command_json)
                except ValidationError:
                    pass  # the decoder below says why, in the worker's words
                else:
                    prepared.jobs.append((row_id, str(command.command_id), seal(raw, self.key) if self.key else raw))
                    continue
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
