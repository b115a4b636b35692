"""The relay's signing key (TASKLINE_RELAY_KEY_ID / TASKLINE_RELAY_KEY_SECRET): both or neither,
held as a secret, and checked at start against what the workers would accept."""

from __future__ import annotations

import json

import pytest

from worker.config.settings import SettingsError, load_settings
from worker.relay.process import relay_key_problem

SECRET = "k" * 40


@pytest.fixture(autouse=True)
def _database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/x")


def test_the_relay_key_is_read_from_its_two_settings_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both set: the relay signs with that key; the secret is not in the settings' repr."""
    monkeypatch.setenv("TASKLINE_RELAY_KEY_ID", "relay-1")
    monkeypatch.setenv("TASKLINE_RELAY_KEY_SECRET", SECRET)
    settings = load_settings()
    key = settings.relay_signing_key
    assert key is not None
    assert (key.key_id, key.secret) == ("relay-1", SECRET.encode())
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("name", "missing"),
    [("TASKLINE_RELAY_KEY_ID", "TASKLINE_RELAY_KEY_SECRET"), ("TASKLINE_RELAY_KEY_SECRET", "TASKLINE_RELAY_KEY_ID")],
)
def test_one_of_the_two_alone_is_refused_naming_the_other(
    monkeypatch: pytest.MonkeyPatch, name: str, missing: str
) -> None:
    monkeypatch.setenv(name, "relay-1" if name.endswith("_ID") else SECRET)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{missing} is not set" in str(caught.value)


def test_a_short_secret_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLINE_RELAY_KEY_ID", "relay-1")
    monkeypatch.setenv("TASKLINE_RELAY_KEY_SECRET", "tooshort-s3cret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "TASKLINE_RELAY_KEY_SECRET" in str(caught.value)
    assert "openssl rand" in str(caught.value)
    assert "tooshort-s3cret" not in str(caught.value)


def _keys(**keys: dict[str, object]) -> str:
    return json.dumps(keys)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, None),
        ({"TASKLINE_SIGNING_KEYS": _keys(p={"secret": SECRET}), "TASKLINE_REQUIRE_SIGNATURES": "true"}, "has no key"),
        ({"TASKLINE_RELAY_KEY_ID": "relay-1", "TASKLINE_RELAY_KEY_SECRET": SECRET}, None),
        (
            {
                "TASKLINE_RELAY_KEY_ID": "relay-1",
                "TASKLINE_RELAY_KEY_SECRET": SECRET,
                "TASKLINE_SIGNING_KEYS": _keys(p={"secret": SECRET}),
            },
            "is not in TASKLINE_SIGNING_KEYS",
        ),
        (
            {
                "TASKLINE_RELAY_KEY_ID": "relay-1",
                "TASKLINE_RELAY_KEY_SECRET": SECRET,
                "TASKLINE_SIGNING_KEYS": _keys(
                    **{"relay-1": {"secret": SECRET, "retired": True}, "p": {"secret": SECRET}}
                ),
            },
            "is retired",
        ),
        (
            {
                "TASKLINE_RELAY_KEY_ID": "relay-1",
                "TASKLINE_RELAY_KEY_SECRET": SECRET,
                "TASKLINE_SIGNING_KEYS": _keys(**{"relay-1": {"secret": "z" * 40}}),
            },
            "is not the secret",
        ),
        (
            {
                "TASKLINE_RELAY_KEY_ID": "relay-1",
                "TASKLINE_RELAY_KEY_SECRET": SECRET,
                "TASKLINE_SIGNING_KEYS": _keys(**{"relay-1": {"secret": SECRET}}),
                "TASKLINE_REQUIRE_SIGNATURES": "true",
            },
            None,
        ),
    ],
)
def test_the_relay_refuses_to_start_with_a_key_the_workers_would_refuse(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str | None
) -> None:
    """With the workers' signing settings in its environment, the relay says at start what would
    make every command it publishes a dead letter (and never quotes a secret)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = relay_key_problem(load_settings())
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
        assert SECRET not in found
        assert "TASKLINE_RELAY_KEY_ID" in found
