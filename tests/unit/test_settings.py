"""Settings from the environment: platform URL names, normalisation, and errors naming the variable."""

from __future__ import annotations

import os

import pytest

from worker.config.settings import Settings, SettingsError, load_settings, redact_url

DB = "user:pw@db.example.com:5432/tasks"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DATABASE_URL, REDIS_URL or TASKLINE_* variable leaks in from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("TASKLINE_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
def test_postgres_url_schemes_normalise_to_asyncpg(monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    """DATABASE_URL with postgres://, postgresql:// or postgresql+asyncpg:// becomes postgresql+asyncpg://."""
    monkeypatch.setenv("DATABASE_URL", f"{scheme}://{DB}")
    assert load_settings().database_url == f"postgresql+asyncpg://{DB}"


def test_database_url_is_also_read_from_taskline_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKLINE_DATABASE_URL is accepted as an alternative name, and normalised the same way."""
    monkeypatch.setenv("TASKLINE_DATABASE_URL", f"postgres://{DB}")
    assert load_settings().database_url == f"postgresql+asyncpg://{DB}"


def test_settings_built_in_code_normalise_too() -> None:
    """Settings(DATABASE_URL=...) built in code (as the tests do) normalises the URL as well."""
    assert Settings(DATABASE_URL=f"postgres://{DB}").database_url == f"postgresql+asyncpg://{DB}"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://{DB}",
        "sqlite:///tasks.db",
        f"postgresql+psycopg://{DB}",
        f"http://{DB}",
        "db.example.com:5432/tasks",
        "",
    ],
)
def test_other_database_urls_are_rejected_naming_database_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """A DATABASE_URL that is not PostgreSQL (or not a URL) fails startup with a message naming DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith("DATABASE_URL ")


def test_a_rejected_database_url_does_not_echo_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The error about a bad DATABASE_URL never contains the password it carried."""
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2@db.example.com/tasks")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_missing_database_url_names_the_variable() -> None:
    """Without DATABASE_URL, load_settings raises SettingsError saying DATABASE_URL is not set."""
    with pytest.raises(SettingsError, match=r"^DATABASE_URL is not set"):
        load_settings()


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several bad variables are reported together, each by its environment name."""
    monkeypatch.setenv("REDIS_URL", "http://cache.example.com")
    monkeypatch.setenv("TASKLINE_MAX_JOBS", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "DATABASE_URL is not set" in message
    assert "REDIS_URL " in message
    assert "TASKLINE_MAX_JOBS " in message


def test_rediss_url_with_password_and_database_number_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_URL may be a TLS rediss:// URL with a password and a database number, kept as given."""
    url = "rediss://:s3cret@redis.example.com:6380/5"
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{DB}")
    monkeypatch.setenv("REDIS_URL", url)
    assert load_settings().redis_url == url


def test_redis_url_defaults_to_local_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without REDIS_URL the worker uses the local Redis, database 0."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{DB}")
    assert load_settings().redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("url", ["http://redis.example.com", "redis.example.com:6379", "memcached://x"])
def test_other_redis_urls_are_rejected_naming_redis_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """A REDIS_URL that is not redis://, rediss:// or unix:// fails startup naming REDIS_URL."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{DB}")
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(SettingsError, match=r"^REDIS_URL "):
        load_settings()


def test_taskline_prefixed_variables_set_the_other_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKLINE_<NAME> sets the setting <name>."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{DB}")
    monkeypatch.setenv("TASKLINE_QUEUE", "tasks:eu")
    monkeypatch.setenv("TASKLINE_NOT_YET_WINDOW", "300")
    settings = load_settings()
    assert (settings.queue, settings.not_yet_window) == ("tasks:eu", 300.0)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql+asyncpg://app:s3cret@db:5432/tasks", "postgresql+asyncpg://app:***@db:5432/tasks"),
        ("rediss://:s3cret@redis.example.com:6380/5", "rediss://:***@redis.example.com:6380/5"),
        ("postgres://app:p@ss:w0rd@db/tasks", "postgres://app:***@db/tasks"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("postgresql://app@db/tasks", "postgresql://app@db/tasks"),
    ],
)
def test_redact_url_hides_the_password(url: str, redacted: str) -> None:
    """redact_url replaces the password (if any) with *** and leaves the rest of the URL as it was."""
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db.example.com:5432/d1", "postgresql+asyncpg://u:p@db.example.com:5432/d1"),
        ("postgres://u:p@db/d1?sslmode=require", "postgresql+asyncpg://u:p@db/d1?ssl=require"),
        ("postgresql://u:p@db/d1?x=1&sslmode=verify-full", "postgresql+asyncpg://u:p@db/d1?x=1&ssl=verify-full"),
    ],
)
def test_platform_database_urls_are_normalised_for_asyncpg(url: str, expected: str) -> None:
    """Heroku's postgres:// and libpq's ?sslmode= (asyncpg.connect() has no sslmode argument)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    normalised = Settings(DATABASE_URL=url).database_url  # type: ignore[call-arg]
    assert normalised == expected
    _, kwargs = create_async_engine(normalised).dialect.create_connect_args(create_async_engine(normalised).url)
    assert "sslmode" not in kwargs


def test_heartbeat_interval_and_metrics_port_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKLINE_HEARTBEAT_INTERVAL and TASKLINE_METRICS_PORT are read; an interval of 0 is refused, naming it."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/x")
    monkeypatch.setenv("TASKLINE_HEARTBEAT_INTERVAL", "2.5")
    monkeypatch.setenv("TASKLINE_METRICS_PORT", "9100")
    settings = load_settings()
    assert (settings.heartbeat_interval, settings.metrics_port) == (2.5, 9100)
    monkeypatch.setenv("TASKLINE_HEARTBEAT_INTERVAL", "0")
    with pytest.raises(SettingsError, match="TASKLINE_HEARTBEAT_INTERVAL"):
        load_settings()


def test_settings_model_has_the_operations_fields() -> None:
    """A heartbeat every 5 s and no /metrics server unless a port is set."""
    settings = Settings(DATABASE_URL="postgres://u:p@db/x")  # type: ignore[call-arg]
    assert (settings.heartbeat_interval, settings.metrics_port) == (5.0, 0)
