"""Verifying signed jobs (contract version 3), before anything else reads them.

The decoder hands every job's bytes to `Verifier.verify` before it parses the command. The
answer is the key that signed it (a `Signer`), None for an unsigned job that may run, or a
`Refusal` whose reason starts with what is wrong: `unsigned`, `bad signature`, `unknown key`,
`retired key`. With `TASKLINE_REQUIRE_SIGNATURES` off (the default) an unsigned job runs, and
so does a job signed with a key this worker does not know (it is treated as unsigned); a bad MAC
under a known key, and any job signed with a retired key, are refused either way.

After the command is validated, `Verifier.scope_refusal` says whether the signing key may send
it (its functions and user ids; for an apply_commands job, item by item): `out of scope`.

The canonical form and the MAC are the producers' (`taskline_producer.signing`): one definition
for both sides.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from taskline_producer.contract import Command
from taskline_producer.signing import NotCanonical, SigningKey, job_mac, loads_for_signature

from worker.config.signing_keys import KeyConfig

__all__ = ["Refusal", "Signer", "Verifier"]

_MAC_HEX_CHARS: Final = 64
_HEX: Final = frozenset("0123456789abcdef")


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
        self._secrets = {key_id: key.secret_bytes() for key_id, key in self.keys.items()}

    @property
    def active(self) -> bool:
        """False when there is nothing to check: no keys, signatures not required."""
        return self.required or bool(self.keys)

    def verify(self, raw: bytes) -> Signer | Refusal | None:
        """The job's signer, None (unsigned, and allowed), or why it is refused."""
        try:
            value = loads_for_signature(raw)
        except NotCanonical as exc:  # a float somewhere: only a signed job is refused for it here
            key_id = _claimed_key(raw)
            if key_id is None or (key_id not in self.keys and not self.required):
                return self._unsigned()
            return Refusal(f"bad signature: the job has no canonical form to verify ({exc})", key_id)
        except (ValueError, RecursionError):
            return None  # not JSON: the decoder dead-letters it with its own reason
        if not isinstance(value, dict):
            return None
        options = value.get("k")
        sig = options.get("sig") if isinstance(options, dict) else None
        if sig is None:
            return self._unsigned()
        key_id = sig.get("kid") if isinstance(sig, dict) else None
        mac = sig.get("mac") if isinstance(sig, dict) else None
        if not isinstance(key_id, str) or not isinstance(mac, str) or set(sig) != {"kid", "mac"}:
            claimed = key_id if isinstance(key_id, str) else None
            return Refusal(
                'bad signature: k.sig must be {"kid": <key id>, "mac": <64 lower-case hex digits>} and nothing else',
                claimed,
            )
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
        if len(mac) != _MAC_HEX_CHARS or not _HEX.issuperset(mac):
            return Refusal(f"bad signature: the mac of key {key_id!r} is not 64 lower-case hex digits", key_id)
        try:
            expected = job_mac(self._secrets[key_id], value.get("f"), value.get("a"), options, checked=False)  # type: ignore[arg-type]
        except NotCanonical as exc:
            return Refusal(f"bad signature: the job has no canonical form to verify ({exc})", key_id)
        if not hmac.compare_digest(expected, mac):
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


def _claimed_key(raw: bytes) -> str | None:
    """The key id a job that cannot be verified names, for its dead letter (None: none found)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    options = value.get("k") if isinstance(value, dict) else None
    sig = options.get("sig") if isinstance(options, dict) else None
    key_id = sig.get("kid") if isinstance(sig, dict) else None
    return key_id if isinstance(key_id, str) else None
