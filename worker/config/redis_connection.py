"""`REDIS_URL` → arq's RedisSettings, keeping what `RedisSettings.from_dsn` drops; and the
redis-py client every operations tool uses (`make_tool_redis`).

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

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["CERT_REQS", "TOOL_REDIS_TIMEOUT_S", "arq_redis_settings", "make_tool_redis"]

TOOL_REDIS_TIMEOUT_S: Final = 5.0

CERT_REQS = ("none", "optional", "required")
_TRUE = ("1", "true", "yes", "on", "y")
_FALSE = ("0", "false", "no", "off", "n", "")


def arq_redis_settings(url: str) -> Any:
    """arq RedisSettings for `url`; ValueError when a TLS option in the query is not understood."""
    from arq.connections import RedisSettings  # not for the tools: `taskline health` starts fast

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


def make_tool_redis(redis_url: str, timeout_s: float = TOOL_REDIS_TIMEOUT_S) -> Redis:
    """A redis-py client for an operations tool (health, metrics, status, trace, replay, the demo,
    the web page): connecting and every command give up after `timeout_s`, so a tool says Redis
    cannot be used instead of hanging."""
    from redis.asyncio import Redis

    client: Redis = Redis.from_url(redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    return client
