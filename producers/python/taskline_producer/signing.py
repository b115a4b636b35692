"""Signed jobs (contract version 3): what a job's signature covers, and signing.

A producer holds a key id and a secret. A signed job's options carry
`"sig": {"kid": <key id>, "mac": <64 lower-case hex digits>}` (and `"contract"` at least 3), and
the MAC is an HMAC-SHA256, keyed with the secret's UTF-8 bytes, over **the job's exact bytes as
enqueued, with the 64 digits of the mac written as zeros**. So:

1. write the job's JSON with `"sig":{"kid":"<key id>","mac":"000…000"}` (64 zeros) in `k`,
   exactly in that form (no spaces, `kid` then `mac`); the rest of the JSON may be written any
   way (member order, spacing, escaping are the producer's);
2. compute the HMAC-SHA256 of those bytes;
3. replace the 64 zeros with its hex digest, and enqueue the result.

The worker finds the one `"sig":{"kid":"` in the bytes, zeroes the 64 digits after `"mac":"`,
and compares. No canonical form to agree on: the MAC covers exactly what the worker parses, so
two JSON parsers can never read different things out of a verified job. Everything is covered,
`t` and `et` included: whatever writes a job again (the worker re-enqueueing a bulk item on its
own, the outbox relay) signs it again (`sign_job`); a replayed dead letter is re-enqueued byte
for byte, so it still verifies. docs/signing.md spells this out for other languages, with a
worked example a test checks against this module, the TypeScript client and the worker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Final

from taskline_producer.contract import SIGNATURE_VERSION

__all__ = [
    "KEY_ID_ENV",
    "KEY_ID_PATTERN",
    "MAC_PLACEHOLDER",
    "MIN_SECRET_CHARS",
    "SECRET_ENV",
    "SIGNATURE_MARKER",
    "Mac",
    "SigningKey",
    "job_mac",
    "seal",
    "sign_job",
    "signature_options",
]

KEY_ID_ENV: Final = "TASKLINE_SIGNING_KEY_ID"
"""The environment variable `SigningKey.from_env` reads the key id from."""
SECRET_ENV: Final = "TASKLINE_SIGNING_SECRET"
"""The environment variable `SigningKey.from_env` reads the secret from."""
MIN_SECRET_CHARS: Final = 32
"""A secret is at least this many characters (e.g. 64 hex digits from `openssl rand -hex 32`)."""
KEY_ID_MAX_CHARS: Final = 64
KEY_ID_PATTERN: Final = r"[A-Za-z0-9._:@-]{1,64}"
"""A key id: letters, digits and . _ : @ - (nothing JSON would escape), at most 64."""
MAC_PLACEHOLDER: Final = "0" * 64
"""What the mac is written as while the MAC is computed."""
SIGNATURE_MARKER: Final = b'"sig":{"kid":"'
"""How a signed job's signature begins in its bytes (exactly once per job)."""

_KEY_ID: Final = re.compile(KEY_ID_PATTERN)


def job_mac(secret: bytes, zeroed: bytes) -> str:
    """The HMAC-SHA256 of a job's bytes whose mac is written as zeros, as 64 lower-case hex digits."""
    return hmac.digest(secret, zeroed, "sha256").hex()


class Mac:
    """HMAC-SHA256 under one secret, its padded key hashed once (RFC 2104): the worker computes
    one per job, and the key's two blocks are most of the work for a job of a few hundred bytes."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        block = hashlib.sha256().block_size
        key = hashlib.sha256(secret).digest() if len(secret) > block else secret
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def hexdigest(self, message: bytes) -> str:
        """`job_mac(secret, message)`, computed from the hashed key blocks."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A producer's key: its id (named in every job it signs) and its secret (never shown)."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id):
            raise ValueError(
                f"a signing key id is 1 to {KEY_ID_MAX_CHARS} letters, digits or . _ : @ -, got {self.key_id!r}"
            )
        if len(self.secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"the secret of signing key {self.key_id!r} is {len(self.secret)} bytes; use at least"
                f" {MIN_SECRET_CHARS} random characters (openssl rand -hex 32)"
            )

    @classmethod
    def of(cls, key_id: str, secret: str | bytes) -> SigningKey:
        """A key from its id and its secret (text is used as its UTF-8 bytes)."""
        return cls(key_id, secret.encode() if isinstance(secret, str) else secret)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SigningKey | None:
        """The key in TASKLINE_SIGNING_KEY_ID and TASKLINE_SIGNING_SECRET; None when neither is
        set; ValueError when only one is."""
        env = os.environ if environ is None else environ
        key_id, secret = env.get(KEY_ID_ENV), env.get(SECRET_ENV)
        if key_id is None and secret is None:
            return None
        if key_id is None or secret is None:
            missing = KEY_ID_ENV if key_id is None else SECRET_ENV
            raise ValueError(f"{missing} is not set: set both {KEY_ID_ENV} and {SECRET_ENV}, or neither")
        return cls.of(key_id, secret)


def signature_options(key: SigningKey, options: dict[str, Any]) -> dict[str, Any]:
    """The job options `options` ready to be sealed: `contract` raised to 3, and `sig` last with
    the mac written as zeros (`seal` fills it in once the job is written)."""
    signed: dict[str, Any] = {name: value for name, value in options.items() if name != "sig"}
    signed["contract"] = max(int(signed.get("contract", 1)), SIGNATURE_VERSION)
    signed["sig"] = {"kid": key.key_id, "mac": MAC_PLACEHOLDER}
    return signed


def seal(job: bytes, key: SigningKey) -> bytes:
    """A job written with `signature_options`, its zeros replaced by its MAC."""
    placeholder = SIGNATURE_MARKER + key.key_id.encode() + b'","mac":"' + MAC_PLACEHOLDER.encode() + b'"}'
    at = job.find(placeholder)
    if at < 0 or job.count(SIGNATURE_MARKER) != 1:
        raise ValueError('the job must hold "sig":{"kid":<key id>,"mac":<64 zeros>} exactly once (signature_options)')
    start = at + len(placeholder) - 66
    return job[:start] + job_mac(key.secret, job).encode() + job[start + 64 :]


def sign_job(job: bytes | str, key: SigningKey) -> bytes:
    """A job's JSON envelope, signed with `key` (any signature it had is replaced).

    For what publishes ready-made envelopes (the outbox relay, a replay under another key): the
    envelope is read, its `k` gains the signature, and it is written again in taskline's JSON
    encoding (`t` and `et` as they were) and sealed."""
    value = json.loads(job)
    if not isinstance(value, dict) or not isinstance(value.get("k", {}), dict):
        raise ValueError('a job is a JSON object {"f", "a", "k", "t", "et"} whose "k" is an object')
    value["k"] = signature_options(key, value.get("k", {}))
    return seal(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(), key)
