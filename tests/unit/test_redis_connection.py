"""REDIS_URL's TLS options and %-escaped password reach arq (worker/config/redis_connection.py) and
redis-py alike, and options that cannot work are refused at startup naming REDIS_URL."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis

from worker.config.redis_connection import arq_redis_settings
from worker.config.settings import SettingsError, load_settings

HEROKU_REDIS = "rediss://:p%40ss%2Fword@ec2-1-2-3-4.compute-1.amazonaws.com:25690/0?ssl_cert_reqs=none"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TASKLINE_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)


def test_arq_keeps_the_tls_options_and_decodes_the_password_of_a_heroku_redis_url() -> None:
    """arq's from_dsn drops ?ssl_cert_reqs=none and leaves %-escapes; the worker's settings do not."""
    from arq.connections import RedisSettings

    stock = RedisSettings.from_dsn(HEROKU_REDIS)
    assert (stock.ssl, stock.ssl_cert_reqs, stock.password) == (True, "required", "p%40ss%2Fword")  # arq alone

    ours = arq_redis_settings(HEROKU_REDIS)
    assert (ours.ssl, ours.ssl_cert_reqs, ours.password, ours.database) == (True, "none", "p@ss/word", 0)
    assert ours.host == "ec2-1-2-3-4.compute-1.amazonaws.com"
    assert ours.port == 25690


def test_redis_py_reads_the_same_url_the_same_way() -> None:
    """The producers, the CLI and replay use redis-py's from_url: TLS without verification, decoded password."""
    client = Redis.from_url(HEROKU_REDIS)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["password"]) == ("none", "p@ss/word")
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_tls_query_options_are_validated_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt ssl_cert_reqs fails startup naming REDIS_URL (redis-py only accepts lower case)."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/x")
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@redis.example.com:6380/0?ssl_cert_reqs=CERT_NONE")
    with pytest.raises(SettingsError, match=r"^REDIS_URL .*ssl_cert_reqs"):
        load_settings()
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@redis.example.com:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false")
    settings = load_settings()
    assert arq_redis_settings(settings.redis_url).ssl_check_hostname is False
    assert settings.database_url == "postgresql+asyncpg://u:p@db/x"
    # Without TLS, redis-py would fail at the first connection: refused at startup instead.
    monkeypatch.setenv("REDIS_URL", "redis://:pw@redis.example.com:6379/0?ssl_cert_reqs=none")
    with pytest.raises(SettingsError, match=r"^REDIS_URL .*rediss://"):
        load_settings()
