"""The `redis+sentinel://` URL form (taskline_producer/connection.py): what it says, what it refuses,
and how every component builds its client from it (worker/config/redis_connection.py)."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis
from taskline_producer import TaskProducer
from taskline_producer.connection import connect_redis, parse_sentinel_url, redact_url

from worker.config.redis_connection import arq_redis_settings, make_tool_redis
from worker.config.settings import SettingsError, load_settings

URL = "redis+sentinel://:m%40ster@s1.example.com:26380,s2.example.com,[::1]:26381/taskline/3?sentinel_password=s%2Fcret"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TASKLINE_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)


def test_the_url_names_the_sentinels_the_master_the_database_and_both_passwords() -> None:
    """Hosts are sentinels (26379 by default, IPv6 in brackets); the path is master name then db;
    the user's password is the master's, sentinel_password the sentinels', both %-decoded."""
    target = parse_sentinel_url(URL)
    assert target.sentinels == (("s1.example.com", 26380), ("s2.example.com", 26379), ("::1", 26381))
    assert (target.master, target.db, target.password, target.sentinel_password) == ("taskline", 3, "m@ster", "s/cret")
    assert target.tls is False
    assert "m@ster" not in repr(target)
    assert "s/cret" not in repr(target)


def test_the_database_defaults_to_zero_and_tls_options_need_rediss_sentinel() -> None:
    """`/<master>` alone is database 0; ssl_* options are accepted only with rediss+sentinel://."""
    assert parse_sentinel_url("redis+sentinel://h/mymaster").db == 0
    tls = parse_sentinel_url("rediss+sentinel://h/m/1?ssl_cert_reqs=none")
    assert (tls.tls, tls.tls_options, tls.master_kwargs()["ssl"], tls.sentinel_kwargs()["ssl"]) == (
        True,
        {"ssl_cert_reqs": "none"},
        True,
        True,
    )
    with pytest.raises(ValueError, match="only applies to TLS"):
        parse_sentinel_url("redis+sentinel://h/m?ssl_cert_reqs=none")


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+sentinel://h1,h2", "no master name"),
        ("redis+sentinel:///m/0", "no sentinel address"),
        ("redis+sentinel://h:port/m", "not a number"),
        ("redis+sentinel://h/m/x", "is not a number"),
        ("redis+sentinel://h/m/0/extra", "too many path segments"),
        ("redis+sentinel://h/m?sentinel_pasword=x", "unknown option"),
        ("redis+sentinel://h:70000/m", "out of range"),
    ],
)
def test_a_broken_url_is_refused_saying_what_is_wrong(url: str, complaint: str) -> None:
    """Each mistake is named, with the form to write."""
    with pytest.raises(ValueError, match=complaint):
        parse_sentinel_url(url)


def test_a_broken_sentinel_url_stops_startup_naming_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_URL is validated at startup, Sentinel form included."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/x")
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://h1,h2")
    with pytest.raises(SettingsError, match=r"^REDIS_URL .*no master name"):
        load_settings()
    monkeypatch.setenv("REDIS_URL", URL)
    assert load_settings().redis_url == URL


def test_arq_settings_for_a_sentinel_url_use_arqs_sentinel_mode() -> None:
    """arq's RedisSettings(host=[(h, p), ...], sentinel=True, sentinel_master=...) with the master's
    database and password."""
    settings = arq_redis_settings(URL)
    assert settings.sentinel is True
    assert settings.sentinel_master == "taskline"
    assert settings.host == [("s1.example.com", 26380), ("s2.example.com", 26379), ("::1", 26381)]
    assert (settings.database, settings.password) == (3, "m@ster")


async def test_clients_built_from_a_sentinel_url_talk_to_the_master_with_the_right_credentials() -> None:
    """The producer's and the tools' clients go to the master (never a replica) with the master's
    password, and authenticate to the sentinels with sentinel_password and the tools' timeouts."""
    for client in (TaskProducer.connect(URL).redis, make_tool_redis(URL, 2.5), connect_redis(URL)):
        pool = client.connection_pool
        assert pool.is_master is True  # type: ignore[attr-defined]
        assert pool.service_name == "taskline"  # type: ignore[attr-defined]
        assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (3, "m@ster")
        sentinels = pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
        assert [s.connection_pool.connection_kwargs["password"] for s in sentinels] == ["s/cret"] * 3
        await client.aclose()
    tool = make_tool_redis(URL, 2.5)
    for sentinel in tool.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
        assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 2.5
    await tool.aclose()


def test_a_plain_url_still_builds_a_plain_client() -> None:
    """redis:// goes through redis-py's from_url, as before."""
    client = connect_redis("redis://:pw@127.0.0.1:6390/2")
    assert isinstance(client, Redis)
    assert client.connection_pool.connection_kwargs["db"] == 2
    assert not hasattr(client.connection_pool, "sentinel_manager")


def test_logs_never_show_either_password() -> None:
    """redact_url hides the master's password and sentinel_password in the query."""
    shown = redact_url(URL)
    assert "m%40ster" not in shown
    assert "s%2Fcret" not in shown
    assert shown.startswith("redis+sentinel://:***@s1.example.com:26380,")
    assert shown.endswith("/taskline/3?sentinel_password=***")
