"""Signed jobs (contract version 3): what a signature covers, verification, key rotation and scope,
as the producer writes them and the decoder reads them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from taskline_producer import SigningKey, sign_job
from taskline_producer.contract import CreateTask
from taskline_producer.signing import MAC_PLACEHOLDER, job_mac
from taskline_producer.wire import envelope, job_of_command

from worker.config.settings import SettingsError, load_settings
from worker.config.signing_keys import KeyConfig, parse_signing_keys
from worker.pipeline.decode import REJECT_JOB, BulkDelivery, Decoder, Delivery, Rejected
from worker.pipeline.signatures import Verifier

SECRET_A = "a" * 40
SECRET_B = "b" * 40
KEY_A = SigningKey.of("producer-a", SECRET_A)
KEY_B = SigningKey.of("producer-b", SECRET_B)


def keys(**extra: dict[str, Any]) -> dict[str, KeyConfig]:
    config: dict[str, Any] = {"producer-a": {"secret": SECRET_A}, "producer-b": {"secret": SECRET_B}}
    for key_id, fields in extra.items():
        config[key_id.replace("_", "-")] = {**config.get(key_id.replace("_", "-"), {}), **fields}
    return parse_signing_keys(config)


def decoder(config: dict[str, KeyConfig] | None = None, *, required: bool = False) -> Decoder:
    return Decoder(4096, 256 * 1024, Verifier(keys() if config is None else config, required=required))


def create(user_id: int = 7) -> CreateTask:
    return CreateTask(command_id=uuid4(), issued_at="2026-12-07T10:00:00Z", task_id=uuid4(), user_id=user_id, title="t")


def decoded(decode: Decoder, raw: bytes) -> Any:
    result = decode(raw)
    (argument,) = result["a"]
    return argument


def refusal(decode: Decoder, raw: bytes) -> Rejected:
    result = decode(raw)
    assert result["f"] == REJECT_JOB, result
    (rejected,) = result["a"]
    assert isinstance(rejected, Rejected)
    return rejected


def test_a_signed_job_carries_contract_3_and_the_key_id_and_verifies() -> None:
    """The producer's envelope: k.contract 3, k.sig {kid, mac}; the worker verifies it and names the key."""
    command = create()
    raw = job_of_command(command, 1, {"contract": 2, "outcome_ttl": 60}, KEY_A)
    k = json.loads(raw)["k"]
    assert k["contract"] == 3
    assert k["outcome_ttl"] == 60
    assert k["sig"]["kid"] == "producer-a"
    assert len(k["sig"]["mac"]) == 64
    delivery = decoded(decoder(), raw)
    assert isinstance(delivery, Delivery)
    assert delivery.signed_by == "producer-a"
    assert delivery.options.outcome_ttl == 60


def test_the_mac_covers_the_jobs_exact_bytes_with_the_mac_as_zeros() -> None:
    """HMAC-SHA256 of the enqueued bytes, the 64 digits of the mac written as zeros."""
    raw = job_of_command(create(), 1, None, KEY_A)
    mac = json.loads(raw)["k"]["sig"]["mac"]
    assert job_mac(SECRET_A.encode(), raw.replace(mac.encode(), MAC_PLACEHOLDER.encode())) == mac


def test_et_and_t_are_covered_and_a_replay_of_the_same_bytes_verifies() -> None:
    """Everything is covered: a changed et or t is a bad signature; the same bytes again (a
    replayed dead letter) verify."""
    raw = job_of_command(create(), 1, None, KEY_A)
    assert decoded(decoder(required=True), raw).signed_by == "producer-a"
    assert refusal(decoder(), raw.replace(b'"et":1', b'"et":2')).reason.startswith("bad signature")
    assert refusal(decoder(), raw.replace(b'"t":null', b'"t":2')).reason.startswith("bad signature")


def test_the_same_json_written_differently_is_a_bad_signature() -> None:
    """The bytes are what is signed: the same job re-serialised (other spacing) does not verify."""
    raw = job_of_command(create(), 1, None, KEY_A)
    respaced = json.dumps(json.loads(raw)).encode()  # ", " and ": " separators
    assert refusal(decoder(), respaced).reason.startswith("bad signature")


def test_a_changed_member_makes_a_bad_signature_naming_the_key() -> None:
    """A user_id changed after signing is refused as a bad signature, and the dead letter names the key."""
    raw = job_of_command(create(user_id=7), 1, None, KEY_A)
    rejected = refusal(decoder(), raw.replace(b'"user_id":7', b'"user_id":8'))
    assert rejected.reason.startswith("bad signature: the mac does not match key 'producer-a'")
    assert rejected.signed_by == "producer-a"
    assert rejected.function == "create_task"


def test_a_bad_signature_is_refused_even_when_signatures_are_not_required() -> None:
    """Off means unsigned jobs run, not that a known key's bad MAC is ignored."""
    raw = job_of_command(create(), 1, None, KEY_A)
    mac = json.loads(raw)["k"]["sig"]["mac"]
    other = job_mac(SECRET_B.encode(), raw.replace(mac.encode(), MAC_PLACEHOLDER.encode()))
    assert refusal(decoder(required=False), raw.replace(mac.encode(), other.encode())).reason.startswith(
        "bad signature: the mac does not match"
    )


def test_a_malformed_signature_is_a_bad_signature() -> None:
    """sig must be written exactly as {"kid": <id>, "mac": <64 lower-case hex digits>}."""
    for sig in ({"kid": "producer-a"}, {"kid": "producer-a", "mac": "XYZ"}, "text", {"mac": "0" * 64, "kid": "x"}):
        raw = envelope("create_task", create().model_dump(mode="json"), 1, {"contract": 3, "sig": sig})  # type: ignore[dict-item]
        assert refusal(decoder(), raw).reason.startswith("bad signature"), sig


def test_unsigned_jobs_run_when_not_required_and_are_refused_when_required() -> None:
    """TASKLINE_REQUIRE_SIGNATURES off: an unsigned job is applied; on: a dead letter saying unsigned."""
    raw = job_of_command(create(), 1)
    assert isinstance(decoded(decoder(), raw), Delivery)
    assert decoded(decoder(), raw).signed_by is None
    rejected = refusal(decoder(required=True), raw)
    assert rejected.reason.startswith("unsigned: this worker requires signed jobs")
    assert rejected.signed_by is None


def test_an_unknown_key_is_refused_when_required_and_treated_as_unsigned_otherwise() -> None:
    """A key id the worker does not know: 'unknown key' naming it under require, else no signer."""
    stranger = SigningKey.of("stranger", "s" * 40)
    raw = job_of_command(create(), 1, None, stranger)
    rejected = refusal(decoder(required=True), raw)
    assert rejected.reason.startswith("unknown key: signed with key id 'stranger'")
    assert rejected.signed_by == "stranger"
    delivery = decoded(decoder(required=False), raw)
    assert isinstance(delivery, Delivery)
    assert delivery.signed_by is None


def test_two_active_keys_both_verify_and_a_retired_key_is_refused() -> None:
    """Rotation: old and new key verify side by side; once the old one is retired its jobs are refused."""
    decode = decoder(required=True)
    assert decoded(decode, job_of_command(create(), 1, None, KEY_A)).signed_by == "producer-a"
    assert decoded(decode, job_of_command(create(), 1, None, KEY_B)).signed_by == "producer-b"
    retired = decoder(keys(producer_a={"retired": True}), required=False)
    rejected = refusal(retired, job_of_command(create(), 1, None, KEY_A))
    assert rejected.reason.startswith("retired key: signed with key 'producer-a', which is retired")
    assert decoded(retired, job_of_command(create(), 1, None, KEY_B)).signed_by == "producer-b"


def test_a_command_outside_its_keys_user_range_is_refused_naming_the_key() -> None:
    """A key limited to users 1..10 cannot act for user 11: 'out of scope', with the key id."""
    decode = decoder(keys(producer_a={"user_ids": {"min": 1, "max": 10}}))
    assert isinstance(decoded(decode, job_of_command(create(user_id=10), 1, None, KEY_A)), Delivery)
    rejected = refusal(decode, job_of_command(create(user_id=11), 1, None, KEY_A))
    assert rejected.reason.startswith("out of scope: key 'producer-a' may not send create_task for user 11")
    assert "user ids 1..10" in rejected.reason
    assert rejected.signed_by == "producer-a"


def test_a_command_outside_its_keys_functions_or_user_list_is_refused() -> None:
    """Scope by function, and by a list of user ids."""
    decode = decoder(keys(producer_a={"functions": ["complete_task"], "user_ids": [7, 9]}))
    assert refusal(decode, job_of_command(create(user_id=7), 1, None, KEY_A)).reason.startswith("out of scope")
    done = create(user_id=9)
    from taskline_producer.contract import CompleteTask

    complete = CompleteTask(command_id=uuid4(), issued_at=done.issued_at, task_id=done.task_id, user_id=9)
    assert isinstance(decoded(decode, job_of_command(complete, 1, None, KEY_A)), Delivery)


def test_a_bulk_job_is_signed_once_and_its_items_are_scoped_one_by_one() -> None:
    """apply_commands: one signature over the whole list; an item outside the key's users is
    rejected on its own (named by key), the others are delivered, all signed by the key."""
    decode = decoder(keys(producer_a={"user_ids": {"min": 1, "max": 10}}))
    inside, outside = create(user_id=3), create(user_id=99)
    items = [{"function": c.function, "command": c.model_dump(mode="json")} for c in (inside, outside)]
    bulk = decoded(decode, envelope("apply_commands", items, 1, None, KEY_A))
    assert isinstance(bulk, BulkDelivery)
    assert bulk.signed_by == "producer-a"
    assert [command.command_id for _, command in bulk.commands] == [inside.command_id]
    ((index, rejected),) = bulk.rejected
    assert index == 1
    assert rejected.reason.startswith("out of scope: key 'producer-a'")
    assert rejected.signed_by == "producer-a"
    assert rejected.command_id == str(outside.command_id)
    # The rejected item is kept as its own job, signed by the same key, so a replay verifies.
    alone = refusal(decode, rejected.raw)
    assert alone.reason.startswith("out of scope")
    assert alone.signed_by == "producer-a"


def test_sign_job_signs_a_ready_envelope_and_keeps_t_and_et() -> None:
    """sign_job (what the outbox relay calls): the same signature the producer would have written."""
    command = create()
    plain = job_of_command(command, 123)
    signed = json.loads(sign_job(plain, KEY_B))
    assert signed == json.loads(job_of_command(command, 123, None, KEY_B))
    assert (signed["t"], signed["et"]) == (None, 123)
    assert decoded(decoder(required=True), sign_job(plain, KEY_B)).signed_by == "producer-b"


def test_the_key_repr_and_settings_never_show_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Secrets are SecretStr in the settings and hidden in a SigningKey's repr; a bad key file's
    error names the field, never the secret; the setting may be a file path."""
    assert SECRET_A not in repr(KEY_A)
    for name in list(os.environ):
        if name.startswith("TASKLINE_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"producer-a": {"secret": SECRET_A, "user_ids": [1, 2]}}))
    monkeypatch.setenv("TASKLINE_SIGNING_KEYS", str(path))
    monkeypatch.setenv("TASKLINE_REQUIRE_SIGNATURES", "true")
    settings = load_settings()
    assert settings.require_signatures
    assert set(settings.signing_keys) == {"producer-a"}
    assert SECRET_A not in repr(settings)
    assert SECRET_A not in str(settings.signing_keys)
    short = "tooshort-secret"
    monkeypatch.setenv("TASKLINE_SIGNING_KEYS", json.dumps({"k1": {"secret": short}}))
    with pytest.raises(SettingsError, match=r"TASKLINE_SIGNING_KEYS .*k1\.secret: is 15 characters") as caught:
        load_settings()
    assert short not in str(caught.value)


def test_requiring_signatures_without_an_active_key_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKLINE_REQUIRE_SIGNATURES with no active key would refuse every job: a startup error."""
    for name in list(os.environ):
        if name.startswith("TASKLINE_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("TASKLINE_REQUIRE_SIGNATURES", "1")
    monkeypatch.setenv("TASKLINE_SIGNING_KEYS", json.dumps({"old": {"secret": SECRET_A, "retired": True}}))
    with pytest.raises(SettingsError, match=r"TASKLINE_REQUIRE_SIGNATURES .*is on but .* no active key"):
        load_settings()


def test_the_producer_reads_its_key_from_the_environment() -> None:
    """TASKLINE_SIGNING_KEY_ID and TASKLINE_SIGNING_SECRET together, or neither; one alone is an error."""
    env = {"TASKLINE_SIGNING_KEY_ID": "producer-a", "TASKLINE_SIGNING_SECRET": SECRET_A}
    assert SigningKey.from_env(env) == KEY_A
    assert SigningKey.from_env({}) is None
    with pytest.raises(ValueError, match="TASKLINE_SIGNING_SECRET is not set"):
        SigningKey.from_env({"TASKLINE_SIGNING_KEY_ID": "producer-a"})


def test_a_member_added_anywhere_breaks_the_signature() -> None:
    """Whatever is added to a signed job, before or after what it overrides, in the command or the
    envelope, changes the bytes: a bad signature, so no two parsers can read different jobs."""
    raw = job_of_command(create(user_id=2), 1, None, KEY_A).decode()
    for forged in (
        raw.replace('"command_id"', '"user_id":9,"command_id"', 1),
        raw.replace('"title"', '"user_id":9,"title"', 1),
        '{"f":"complete_task",' + raw[1:],
    ):
        assert refusal(decoder(required=True), forged.encode()).reason.startswith("bad signature"), forged
    twice = raw.replace('"k":{', '"k":{"sig":{"kid":"producer-a","mac":"' + "0" * 64 + '"},', 1)
    assert refusal(decoder(), twice.encode()).reason.startswith("bad signature: k.sig must be written exactly once")


@pytest.mark.parametrize("secret", [b"s" * 32, b"t" * 64, b"u" * 65, bytes(range(200))])
def test_the_workers_hmac_from_hashed_key_blocks_is_hmac_sha256(secret: bytes) -> None:
    """Mac (the key's padded blocks hashed once) computes exactly hmac's HMAC-SHA256, for keys
    shorter than, as long as and longer than SHA-256's block."""
    from taskline_producer.signing import Mac

    for message in (b"", b"x", job_of_command(create(), 1)):
        assert Mac(secret).hexdigest(message) == job_mac(secret, message)
