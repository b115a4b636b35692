"""One redaction (taskline_producer.redaction) for every URL taskline prints, logs or serves:
each form a credential takes in a URL, in the URL itself and in text that quotes it, and each path
a URL can take out of the process (settings' repr, validation errors, log lines, error texts)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import ValidationError
from taskline_producer.cli_errors import error_text
from taskline_producer.redaction import redact_text, redact_url

from worker.config.settings import Settings, SettingsError, load_settings
from worker.logs import configure_logging, get_logger
from worker.text import describe_error, first_line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # user:password@
        ("postgresql://app:s3cret@db:5432/tasks", "postgresql://app:***@db:5432/tasks"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://default:s3cret@cache:6380", "rediss://default:***@cache:6380"),
        # ?password= and other credential query parameters, in any position and case
        ("postgresql://app@db/tasks?password=s3cret", "postgresql://app@db/tasks?password=***"),
        ("postgresql://db/t?sslmode=require&Password=s3cret&x=1", "postgresql://db/t?sslmode=require&Password=***&x=1"),
        ("postgresql://db/t?sslpassword=s3cret", "postgresql://db/t?sslpassword=***"),
        ("redis://cache:6379/0?token=s3cret", "redis://cache:6379/0?token=***"),
        ("redis://cache/0?access_token=s3cret&api-key=s3cret", "redis://cache/0?access_token=***&api-key=***"),
        # both at once
        ("postgres://u:s3cret@db/x?password=s3cret", "postgres://u:***@db/x?password=***"),
        # nothing secret: unchanged
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("postgresql://app@db/tasks?sslmode=require", "postgresql://app@db/tasks?sslmode=require"),
        ("redis://cache/0?password=", "redis://cache/0?password="),
    ],
)
def test_every_form_of_a_credential_in_a_url_is_hidden(url: str, shown: str) -> None:
    """redact_url hides the password part and each credential query parameter, and leaves the
    rest of the URL as it was."""
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_a_url_urllib_cannot_split_still_has_its_password_hidden() -> None:
    """A host urllib refuses (an unclosed IPv6 bracket; several Sentinel hosts on Python 3.11.2)
    is shown with the password hidden; a URL whose rest cannot be read is replaced whole."""
    assert redact_url("redis://u:s3cret@[::1/0") == "redis://u:***@[::1/0"
    assert (
        redact_url("redis+sentinel://:s3cret@h1:26379,[::1]:26380/m/0")
        == "redis+sentinel://:***@h1:26379,[::1]:26380/m/0"
    )
    assert redact_url("redis://u:s3cret@host/0?password=[").startswith("redis://u:***@host")


def test_urls_quoted_in_text_are_redacted_and_other_text_is_left_alone() -> None:
    """redact_text redacts every URL inside a message, whatever quotes it."""
    text = "cannot connect to 'postgresql://u:s3cret@db/x' nor <redis://c/0?password=s3cret>, giving up"
    assert redact_text(text) == "cannot connect to 'postgresql://u:***@db/x' nor <redis://c/0?password=***>, giving up"
    assert redact_text("no url here: password=abc") == "no url here: password=abc"


def test_the_settings_hold_the_urls_as_secrets() -> None:
    """repr, str and model_dump of the settings never show DATABASE_URL's or REDIS_URL's password;
    `database_url` and `redis_url` still hand the full URL to what connects."""
    settings = Settings(DATABASE_URL="postgres://u:s3cret@db/x?password=s3cret", REDIS_URL="redis://:s3cret@c/0")  # type: ignore[call-arg]
    for shown in (repr(settings), str(settings), json.dumps(settings.model_dump(mode="json"))):
        assert "s3cret" not in shown
    assert settings.database_url == "postgresql+asyncpg://u:s3cret@db/x?password=s3cret"
    assert settings.redis_url == "redis://:s3cret@c/0"


def test_a_bad_url_setting_is_named_without_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A REDIS_URL or DATABASE_URL that fails validation is named in the error, its password not."""
    monkeypatch.setenv("DATABASE_URL", "mysql://u:s3cret@db/x?password=s3cret")
    monkeypatch.setenv("REDIS_URL", "http://u:s3cret@cache/0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "DATABASE_URL" in str(caught.value)
    assert "REDIS_URL" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValidationError) as raw:
        Settings()
    assert "s3cret" not in str(raw.value)


def test_error_texts_hide_urls_in_exception_messages() -> None:
    """The texts that reach status --json, the page, probes, heartbeats and dead-letter reasons
    (error_text, describe_error, first_line) redact a URL an exception quotes."""
    exc = ConnectionError("could not reach redis://:s3cret@cache:6379/0?token=s3cret")
    for text in (error_text(exc), describe_error(exc), first_line(exc)):
        assert "s3cret" not in text
        assert "redis://:***@cache:6379/0?token=***" in text


def test_log_lines_redact_every_url_in_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever logs a URL (taskline's loggers or a library's through stdlib logging), in the message,
    a value or a traceback, the line shows it redacted."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("json", "INFO")
    try:
        get_logger("taskline.test").info("started", database="postgresql://u@db/x?password=s3cret")
        logging.getLogger("somelibrary").warning("lost postgresql://u:s3cret@db/x")
        try:
            raise RuntimeError("boom at redis://:s3cret@c/0")
        except RuntimeError:
            get_logger("taskline.test").exception("failed")
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue()
    assert lines.count("\n") >= 3
    assert "s3cret" not in lines
    assert "password=***" in lines


def test_a_copy_of_the_settings_takes_new_urls_as_secrets() -> None:
    """`model_copy(update={"database_url": ..., "redis_url": ...})` (how tests point a copy
    elsewhere) replaces the URLs behind the secrets, the database URL normalised."""
    settings = Settings(DATABASE_URL="postgres://u@db/x")  # type: ignore[call-arg]
    moved = settings.model_copy(update={"database_url": "postgres://u:s3cret@other/y", "redis_url": "redis://c:1/2"})
    assert moved.database_url == "postgresql+asyncpg://u:s3cret@other/y"
    assert moved.redis_url == "redis://c:1/2"
    assert "s3cret" not in repr(moved)
    assert settings.database_url == "postgresql+asyncpg://u@db/x"


@pytest.mark.parametrize(
    "url",
    ["postgres://relay:s3cret@producer-db/app", "postgresql://relay@producer-db/app?password=s3cret&sslmode=require"],
)
def test_the_outbox_database_url_is_held_as_a_secret(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKLINE_OUTBOX_DATABASE_URL (with a password in either form) never shows in the settings'
    repr, str or dump, nor in a copy; `outbox_url` still hands the full URL to the relay."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/x")
    monkeypatch.setenv("TASKLINE_OUTBOX_DATABASE_URL", url)
    settings = load_settings()
    for shown in (repr(settings), str(settings), json.dumps(settings.model_dump(mode="json"))):
        assert "s3cret" not in shown
    assert "s3cret" in settings.outbox_url
    assert settings.outbox_url.startswith("postgresql+asyncpg://")
    assert settings.outbox_setting == "TASKLINE_OUTBOX_DATABASE_URL"
    moved = settings.model_copy(update={"outbox_database_url": url.replace("s3cret", "s3cret2")})
    assert "s3cret2" in moved.outbox_url
    assert "s3cret" not in repr(moved)


def test_a_bad_outbox_database_url_is_named_without_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TASKLINE_OUTBOX_DATABASE_URL that is not PostgreSQL is named in the error, its password not."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/x")
    monkeypatch.setenv("TASKLINE_OUTBOX_DATABASE_URL", "mysql://u:s3cret@db/x?password=s3cret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "TASKLINE_OUTBOX_DATABASE_URL" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_relays_outage_warning_names_the_outbox_setting_without_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay's WARNING when the outbox's database cannot be used names
    TASKLINE_OUTBOX_DATABASE_URL and shows the URL redacted."""
    from worker.observe.outages import OutageLog

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("json", "INFO")
    try:
        OutageLog(
            get_logger("taskline.relay"),
            service="the outbox's PostgreSQL",
            setting="TASKLINE_OUTBOX_DATABASE_URL",
            url="postgresql+asyncpg://relay@producer-db/app?password=s3cret",
            advice="check it",
        ).down(ConnectionRefusedError("refused"))
    finally:
        logging.getLogger().handlers.clear()
    line = stream.getvalue()
    assert "TASKLINE_OUTBOX_DATABASE_URL" in line
    assert "password=***" in line
    assert "s3cret" not in line
