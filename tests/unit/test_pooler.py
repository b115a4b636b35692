"""TASKLINE_DATABASE_POOLER: what `auto` decides from DATABASE_URL, what the engines are given
behind PgBouncer, and when a worker warns that a pooler may be in between."""

from __future__ import annotations

from typing import Any

import pytest

from worker.config.pooler import pooler_hint, pooler_mode, url_port
from worker.config.settings import Settings, SettingsError, load_settings
from worker.store.engine import for_pooler

DIRECT = "postgresql+asyncpg://app:secret@db.internal:5432/tasks"


@pytest.mark.parametrize(
    ("url", "mode"),
    [
        (DIRECT, "none"),
        ("postgresql+asyncpg://app@db.internal/tasks", "none"),
        ("postgresql+asyncpg://app@db.internal:6432/tasks", "pgbouncer"),
        ("postgresql+asyncpg://app@pgbouncer.prod.svc:5432/tasks", "pgbouncer"),
        ("postgresql+asyncpg://app@tasks-PgBouncer:5432/tasks", "pgbouncer"),
        ("postgresql+asyncpg://app@/tasks?host=/run/postgresql", "none"),
    ],
)
def test_auto_takes_port_6432_or_a_pgbouncer_host_for_pgbouncer(url: str, mode: str) -> None:
    """`auto` is PgBouncer on its default port 6432 or on a host named for it; anything else is
    PostgreSQL itself."""
    assert pooler_mode(url, "auto") == mode


@pytest.mark.parametrize("setting", ["none", "pgbouncer"])
def test_an_explicit_setting_wins_over_the_url(setting: Any) -> None:
    """`none` and `pgbouncer` are taken as said, whatever the URL looks like."""
    assert pooler_mode("postgresql+asyncpg://app@h:6432/db", setting) == setting
    assert pooler_mode(DIRECT, setting) == setting


def test_the_dialled_port_defaults_to_postgresqls() -> None:
    """A URL without a port dials 5432; a socket path or several hosts say nothing."""
    assert url_port("postgresql+asyncpg://app@h/db") == 5432
    assert url_port("postgresql+asyncpg://app@h:6543/db") == 6543
    assert url_port("postgresql+asyncpg://app@/db?host=/run/postgresql") is None
    assert url_port("postgresql+asyncpg://app@h1:5432,h2:5432/db") is None


def test_behind_pgbouncer_every_statement_is_unnamed_and_nothing_is_cached() -> None:
    """The pgbouncer mode turns off both statement caches and names every statement '' (asyncpg's
    unnamed statement); the direct mode leaves the driver's defaults alone."""
    connect_args: dict[str, Any] = {"command_timeout": 5}
    url = for_pooler(DIRECT, "pgbouncer", connect_args)
    assert url.query["prepared_statement_cache_size"] == "0"
    assert url.password == "secret"  # the password still reaches the driver
    assert connect_args["statement_cache_size"] == 0
    assert connect_args["prepared_statement_name_func"]() == ""
    assert connect_args["command_timeout"] == 5

    direct_args: dict[str, Any] = {}
    direct = for_pooler(DIRECT, "none", direct_args)
    assert "prepared_statement_cache_size" not in direct.query
    assert direct_args == {}


def test_a_worker_dialling_one_port_and_reaching_another_is_told_what_to_set() -> None:
    """Under `auto`, a URL taken for PostgreSQL that reaches PostgreSQL on another port gets a hint
    naming TASKLINE_DATABASE_POOLER; same port, an explicit setting, or a pooler already chosen: none."""
    hint = pooler_hint("postgresql+asyncpg://app@h:7000/db", "auto", 5432)
    assert hint is not None
    assert "TASKLINE_DATABASE_POOLER=pgbouncer" in hint
    assert "7000" in hint
    assert pooler_hint(DIRECT, "auto", 5432) is None
    assert pooler_hint("postgresql+asyncpg://app@h:7000/db", "none", 5432) is None
    assert pooler_hint("postgresql+asyncpg://app@h:6432/db", "auto", 5432) is None
    assert pooler_hint(DIRECT, "auto", None) is None


def test_the_setting_comes_from_the_environment_and_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKLINE_DATABASE_POOLER is read and validated with the other settings."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@h:6432/db")
    assert load_settings().database_pooler_mode == "pgbouncer"
    monkeypatch.setenv("TASKLINE_DATABASE_POOLER", "none")
    assert load_settings().database_pooler_mode == "none"
    monkeypatch.setenv("TASKLINE_DATABASE_POOLER", "odyssey")
    with pytest.raises(SettingsError, match="TASKLINE_DATABASE_POOLER"):
        load_settings()


def test_the_outbox_database_is_judged_by_its_own_url() -> None:
    """The relay's outbox may live elsewhere: its URL decides its own mode."""
    settings = Settings(DATABASE_URL=DIRECT, outbox_database_url="postgresql://svc@pgbouncer:5432/app")  # type: ignore[call-arg]
    assert settings.database_pooler_mode == "none"
    assert settings.outbox_pooler_mode == "pgbouncer"
