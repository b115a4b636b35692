"""Verifying signed jobs (contract version 3), before anything else reads them.

The decoder hands every job's bytes to `Verifier.verify` before it parses the command. The
answer is the key that signed it (a `Signer`), None for an unsigned job that may run, or a
`Refusal` whose reason starts with what is wrong: `unsigned`, `bad signature`, `unknown key`,
`retired key`. With `TASKLINE_REQUIRE_SIGNATURES` off (the default) an unsigned job runs, and
so does a job signed with a key this worker does not know (it is treated as unsigned); a bad MAC
under a known key, and any job signed with a retired key, are refused either way.

After the command is validated, `Verifier.scope_refusal` says whether the signing key may send
it (its functions and user ids; for an apply_commands job, item by item): `out of scope`.

What the MAC covers (the job's exact bytes, its mac written as zeros) is the producers'
definition (`taskline_producer.signing`): one for both sides. Checking it costs one search of the
bytes and one HMAC: nothing is parsed or written again.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from taskline_producer.contract import Command
from taskline_producer.signing import KEY_ID_PATTERN, MAC_PLACEHOLDER, SIGNATURE_MARKER, Mac, SigningKey

from worker.config.signing_keys import KeyConfig

__all__ = ["Refusal", "Signer", "Verifier"]

_SIGNATURE: Final = re.compile(rb'"sig":\{"kid":"(' + KEY_ID_PATTERN.encode() + rb')","mac":"([0-9a-f]{64})"\}')
_CLAIMED: Final = re.compile(rb'"sig":\{"kid":"(' + KEY_ID_PATTERN.encode() + rb')"')
_ZEROS: Final = MAC_PLACEHOLDER.encode()
_MALFORMED: Final = (
    'bad signature: k.sig must be written exactly once, as "sig":{"kid":"<key id>","mac":"<64 lower-case'
    ' hex digits>"} (docs/signing.md)'
)


@dataclass(frozen=True, slots=True)
class Signer:
    """The key that signed a job, verified."""

    key_id: str
    key: KeyConfig


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a job's signature is refused, and the key id it claims (None: it claims none)."""

    reason: str
    key_id: str | None = None


class Verifier:
    """The signing keys of one worker and whether it requires signatures."""

    def __init__(self, keys: Mapping[str, KeyConfig], *, required: bool) -> None:
        self.keys = dict(keys)
        self.required = required
        self._macs = {key_id: Mac(key.secret_bytes()) for key_id, key in self.keys.items()}

    @property
    def active(self) -> bool:
        """False when there is nothing to check: no keys, signatures not required."""
        return self.required or bool(self.keys)

    def verify(self, raw: bytes) -> Signer | Refusal | None:
        """The job's signer, None (unsigned, and allowed), or why it is refused."""
        at = raw.find(SIGNATURE_MARKER)
        if at < 0:
            if b'"sig"' in raw:  # a quote-delimited "sig" outside any string: a k.sig in another form
                return Refusal(_MALFORMED)
            return self._unsigned()
        found = _SIGNATURE.match(raw, at)
        if found is None or raw.count(SIGNATURE_MARKER) != 1:
            return Refusal(_MALFORMED, _claimed_key(raw, at))
        key_id = found.group(1).decode()
        key = self.keys.get(key_id)
        if key is None:
            if not self.required:
                return None  # off: a key this worker does not know is as good as no signature
            return Refusal(
                f"unknown key: signed with key id {key_id!r}, which this worker does not know"
                " (TASKLINE_SIGNING_KEYS); add the key, then replay this dead letter",
                key_id,
            )
        if key.retired:
            return Refusal(
                f"retired key: signed with key {key_id!r}, which is retired (TASKLINE_SIGNING_KEYS);"
                " the producer must sign with its current key",
                key_id,
            )
        start, end = found.span(2)
        expected = self._macs[key_id].hexdigest(raw[:start] + _ZEROS + raw[end:])
        if not hmac.compare_digest(expected.encode(), found.group(2)):
            return Refusal(
                f"bad signature: the mac does not match key {key_id!r} (the job was changed after it was"
                " signed, or signed with another secret)",
                key_id,
            )
        return Signer(key_id, key)

    def _unsigned(self) -> Refusal | None:
        if self.required:
            return Refusal(
                "unsigned: this worker requires signed jobs (TASKLINE_REQUIRE_SIGNATURES); sign it"
                " with the producer's key (docs/signing.md)"
            )
        return None

    @staticmethod
    def scope_refusal(signer: Signer, command: Command) -> str | None:
        """Why `signer`'s key may not send `command`, if it may not."""
        key = signer.key
        if command.function in key.functions and key.allows_user(command.user_id):
            return None
        return (
            f"out of scope: key {signer.key_id!r} may not send {command.function} for user"
            f" {command.user_id} (it may send {', '.join(sorted(key.functions))} for"
            f" {key.describe_users()}; TASKLINE_SIGNING_KEYS)"
        )

    def signing_key(self, key_id: str | None) -> SigningKey | None:
        """The key to sign a job the worker writes on a signed job's behalf (a bulk item
        re-enqueued or dead-lettered on its own), so that it verifies as its producer's; None
        for an unsigned job, or a key no longer known."""
        key = self.keys.get(key_id) if key_id is not None else None
        if key is None or key.retired:
            return None
        return SigningKey(key_id, key.secret_bytes())  # type: ignore[arg-type]


def _claimed_key(raw: bytes, at: int) -> str | None:
    """The key id a malformed signature names, for its dead letter (None: none readable)."""
    found = _CLAIMED.match(raw, at)
    return found.group(1).decode() if found else None
