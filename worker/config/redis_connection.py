"""`REDIS_URL` → every Redis connection of the worker, the scheduler, the tools and the web page:
arq's RedisSettings (`arq_redis_settings`), the arq pool the supervisor runs the loop on
(`connect_arq_pool`), and the redis-py client of every operations tool (`make_tool_redis`).

`REDIS_URL` may name one Redis (`redis://`, `rediss://`) or a Redis Sentinel group
(`redis+sentinel://[:password@]host1:26379,host2:26379/<master name>/<db>`; the form and how a
failover is followed are in taskline_producer/connection.py, which the producers share). For a
Sentinel group, arq's RedisSettings (`host=[(h, p), …], sentinel=True, sentinel_master=…`) cannot
carry the sentinels' own password (arq passes its settings to the master's connections only), so
the pool is built here by `connect_arq_pool` from the producers' `connect_redis`, which can.

arq 0.28's `from_dsn` reads only the scheme, host, port, user, password and database: it ignores
the query string and does not %-decode the user and password. redis-py's `Redis.from_url`
(used by the producers, `taskline health`, `taskline metrics` and replay) honours
`?ssl_cert_reqs=none` and decodes both. So that the worker connects exactly like the rest, this
applies the TLS options of the query (`ssl_cert_reqs`, `ssl_ca_certs`, `ssl_check_hostname`)
and the decoded credentials on top of `from_dsn`. Heroku Data for Redis presents a self-signed
certificate: its `rediss://` URL needs `?ssl_cert_reqs=none`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from taskline_producer.connection import connect_redis, is_sentinel_url, parse_sentinel_url

if TYPE_CHECKING:
    from arq.connections import ArqRedis
    from redis.asyncio import Redis

__all__ = [
    "CERT_REQS",
    "TOOL_REDIS_TIMEOUT_S",
    "arq_redis_settings",
    "connect_arq_pool",
    "make_redis",
    "make_tool_redis",
]

TOOL_REDIS_TIMEOUT_S: Final = 5.0

CERT_REQS = ("none", "optional", "required")
_TRUE = ("1", "true", "yes", "on", "y")
_FALSE = ("0", "false", "no", "off", "n", "")


def arq_redis_settings(url: str) -> Any:
    """arq RedisSettings for `url`; ValueError when a TLS option in the query is not understood."""
    from arq.connections import RedisSettings  # not for the tools: `taskline health` starts fast

    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        return RedisSettings(
            host=list(target.sentinels),
            sentinel=True,
            sentinel_master=target.master,
            database=target.db,
            username=target.username,
            password=target.password,
            ssl=target.tls,
            **target.tls_options,
        )
    settings = RedisSettings.from_dsn(url)
    parts = urlsplit(url)
    if parts.username:
        settings.username = unquote(parts.username)
    if parts.password:
        settings.password = unquote(parts.password)
    query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    tls_options = sorted(name for name in query if name.startswith("ssl_"))
    if tls_options and parts.scheme != "rediss":
        # redis-py would fail on the first connection (an unexpected keyword argument): say it now
        raise ValueError(f"{', '.join(tls_options)} in the URL only applies to TLS: use rediss://")
    if "ssl_cert_reqs" in query:
        value = query["ssl_cert_reqs"]
        if value not in CERT_REQS:
            raise ValueError(f"ssl_cert_reqs={value!r} in the URL: use one of {', '.join(CERT_REQS)} (lower case)")
        settings.ssl_cert_reqs = value
    if "ssl_ca_certs" in query:
        settings.ssl_ca_certs = query["ssl_ca_certs"] or None
    if "ssl_check_hostname" in query:
        flag = query["ssl_check_hostname"].lower()
        if flag not in _TRUE + _FALSE:
            raise ValueError(f"ssl_check_hostname={flag!r} in the URL: use true or false")
        settings.ssl_check_hostname = flag in _TRUE
    return settings


async def connect_arq_pool(
    url: str, settings: Any, *, job_serializer: Any, job_deserializer: Any, queue_name: str
) -> ArqRedis:
    """arq's pool for `url`, connected (one PING), without arq's own retries (the supervisor
    retries for as long as it takes). `settings` is `arq_redis_settings(url)`: arq's `create_pool`
    builds a plain Redis pool from it; a Sentinel group's pool is built from `connect_redis`."""
    from dataclasses import replace

    from arq.connections import ArqRedis, create_pool

    if not is_sentinel_url(url):
        return await create_pool(
            replace(settings, conn_retries=0),
            job_serializer=job_serializer,
            job_deserializer=job_deserializer,
            default_queue_name=queue_name,
        )
    pool = connect_redis(url, redis_class=ArqRedis, socket_connect_timeout=settings.conn_timeout)
    pool.job_serializer = job_serializer
    pool.job_deserializer = job_deserializer
    pool.default_queue_name = queue_name
    try:
        await pool.ping()
    except BaseException:
        await pool.aclose()
        raise
    return pool


def make_redis(redis_url: str, **options: Any) -> Redis:
    """A redis-py client for `redis_url` (one Redis or a Sentinel group's master); `options` are
    redis-py connection options. For the worker's own side connections; the tools use
    `make_tool_redis`."""
    client: Redis = connect_redis(redis_url, **options)
    return client


def make_tool_redis(redis_url: str, timeout_s: float = TOOL_REDIS_TIMEOUT_S) -> Redis:
    """A redis-py client for an operations tool (health, metrics, status, trace, replay, the demo,
    the web page): connecting and every command give up after `timeout_s`, so a tool says Redis
    cannot be used instead of hanging."""
    client: Redis = connect_redis(redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    return client
