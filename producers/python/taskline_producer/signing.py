"""Signed jobs (contract version 3): the canonical form a job's signature covers, and signing.

A producer holds a key id and a secret. It signs a job by computing an HMAC-SHA256, keyed with
the secret's UTF-8 bytes, over the job's *signing input*, and puts the result in the job's
options: `k.sig = {"kid": <key id>, "mac": <64 lower-case hex digits>}`, with `k.contract` at
least 3. The signing input is the canonical JSON text, UTF-8 encoded, of

    {"a": <the job's a>, "f": <the job's f>, "k": <the job's k without "sig">}

Canonical JSON: object members sorted by name (code point order), no whitespace at all,
strings escaped as JSON requires and nothing more (`"` and `\\` backslash-escaped; the control
characters U+0000..U+001F as `\\b \\f \\n \\r \\t` or `\\u00xx` with lower-case hex; every other
character, non-ASCII included, as itself), integers in plain decimal, and `true`, `false`,
`null`. Numbers that are not integers have no canonical form: such a job cannot be signed
(nothing in the contract is one). docs/contract.md, "Signed jobs", spells the same out for other
languages, and a test checks its worked example against this module.

`t` (the try a job starts at) and `et` (its enqueue time) are **not** covered: a replayed dead
letter, a relay re-publishing, and the worker's own re-enqueue write the same command with a new
`et`, and neither member changes what a command does.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass, field
from typing import Any, Final

from taskline_producer.contract import SIGNATURE_VERSION

__all__ = [
    "KEY_ID_ENV",
    "MIN_SECRET_CHARS",
    "SECRET_ENV",
    "SigningKey",
    "canonical_json",
    "job_mac",
    "sign_job",
    "sign_options",
    "signing_input",
]

KEY_ID_ENV: Final = "TASKLINE_SIGNING_KEY_ID"
"""The environment variable `SigningKey.from_env` reads the key id from."""
SECRET_ENV: Final = "TASKLINE_SIGNING_SECRET"
"""The environment variable `SigningKey.from_env` reads the secret from."""
MIN_SECRET_CHARS: Final = 32
"""A secret is at least this many characters (e.g. 64 hex digits from `openssl rand -hex 32`)."""
KEY_ID_MAX_CHARS: Final = 64


class NotCanonical(ValueError):
    """The value has no canonical JSON form (a float, or something JSON cannot hold)."""


def _check_canonical(value: Any) -> None:
    if isinstance(value, dict):
        for name, member in value.items():
            if not isinstance(name, str):
                raise NotCanonical(f"object member names must be strings, not {name!r}")
            _check_canonical(member)
    elif isinstance(value, list):
        for member in value:
            _check_canonical(member)
    elif isinstance(value, float):
        raise NotCanonical(f"{value!r} is not an integer: numbers in a signed job must be integers")
    elif value is not None and not isinstance(value, (str, int)):  # bool is an int
        raise NotCanonical(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """`value`'s canonical JSON text, UTF-8 encoded (see the module docstring)."""
    _check_canonical(value)
    return _canonical_text(value)


def _canonical_text(value: Any) -> bytes:
    """canonical_json without the walk that refuses floats, for values known to hold none: a
    validated command's JSON form, or JSON parsed by `loads_for_signature`."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:  # an unpaired surrogate
        raise NotCanonical("text holds an unpaired surrogate, which UTF-8 cannot encode") from exc


def _refuse_number(text: str) -> Any:
    raise NotCanonical(f"{text} is not an integer: numbers in a signed job must be integers")


def loads_for_signature(raw: bytes | str) -> Any:
    """Parse a job's JSON for its signature: a number that is not an integer (or NaN,
    Infinity) raises NotCanonical, so what comes back has a canonical form."""
    return json.loads(raw, parse_float=_refuse_number, parse_constant=_refuse_number)


def signing_input(function: Any, arguments: Any, options: dict[str, Any], *, checked: bool = True) -> bytes:
    """What a job's MAC covers: its function, its arguments and its options without `sig`.
    `checked=False`: the values are known to hold no float (see `_canonical_text`)."""
    unsigned = {name: value for name, value in options.items() if name != "sig"}
    value = {"a": arguments, "f": function, "k": unsigned}
    return canonical_json(value) if checked else _canonical_text(value)


def job_mac(secret: bytes, function: Any, arguments: Any, options: dict[str, Any], *, checked: bool = True) -> str:
    """The HMAC-SHA256 of the job's signing input, as 64 lower-case hex digits."""
    return hmac.digest(secret, signing_input(function, arguments, options, checked=checked), "sha256").hex()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A producer's key: its id (named in every job it signs) and its secret (never shown)."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.key_id or len(self.key_id) > KEY_ID_MAX_CHARS or not self.key_id.isprintable():
            raise ValueError(f"a signing key id is 1 to {KEY_ID_MAX_CHARS} printable characters, got {self.key_id!r}")
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


def sign_options(
    key: SigningKey, function: Any, arguments: Any, options: dict[str, Any], *, checked: bool = True
) -> dict[str, Any]:
    """The job options `options` with the job's signature added (and `contract` raised to 3).
    `checked=False`: the arguments are a validated command's JSON form (no float to refuse)."""
    signed: dict[str, Any] = {name: value for name, value in options.items() if name != "sig"}
    signed["contract"] = max(int(signed.get("contract", 1)), SIGNATURE_VERSION)
    signed["sig"] = {"kid": key.key_id, "mac": job_mac(key.secret, function, arguments, signed, checked=checked)}
    return signed


def sign_job(job: bytes | str, key: SigningKey) -> bytes:
    """A job's JSON envelope, signed with `key` (any signature it had is replaced).

    For what publishes ready-made envelopes (the outbox relay, a replay under another key): the
    envelope's `f`, `a` and `k` are read back, `k` gains the signature, and the job is written
    again in taskline's JSON encoding; `t` and `et` are kept as they are."""
    value = loads_for_signature(job)
    if not isinstance(value, dict) or not isinstance(value.get("k", {}), dict):
        raise ValueError('a job is a JSON object {"f", "a", "k", "t", "et"} whose "k" is an object')
    value["k"] = sign_options(key, value.get("f"), value.get("a"), value.get("k", {}), checked=False)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
