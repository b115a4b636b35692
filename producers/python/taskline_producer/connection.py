"""A Redis URL → a redis-py client: plain Redis, or the master of a Redis Sentinel group.

Every taskline component connects through here (the producers directly; the worker, scheduler,
tools and web page through worker/config/redis_connection.py), so one URL form works everywhere:

    redis://[[user]:password@]host[:6379][/db]              one Redis (redis-py's own form)
    rediss://…                                               the same over TLS
    redis+sentinel://[[user]:password@]host1[:26379][,host2[:26379]…]/master-name[/db][?options]
    rediss+sentinel://…                                      the master and the sentinels over TLS

In a Sentinel URL the hosts are the sentinels (port 26379 unless given), the first path segment
is the master's name as the sentinels know it (`sentinel monitor <name> …`), the second the
database number. The user and password are the master's (its `requirepass`/ACL user). The
sentinels' own credentials, when they have `requirepass`, go in the query:
`sentinel_password=…` (and `sentinel_username=…`), %-encoded like the rest. A `rediss+sentinel`
URL accepts the TLS options of a `rediss` one (`ssl_cert_reqs`, `ssl_ca_certs`,
`ssl_check_hostname`).

The client asks the sentinels for the master's address whenever it opens a connection, and
every connection goes to the master (never a replica: taskline's scripts write). After a
failover, a command on a connection to the old master fails with a `ConnectionError` (the old
master is gone, or, demoted to a replica, answers READONLY, which redis-py turns into a
`ConnectionError` and a disconnect); the next command asks the sentinels again and reaches the
new master. While no master is known (the seconds a failover takes), commands raise
`redis.exceptions.ConnectionError` (`MasterNotFoundError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from taskline_producer.redaction import redact_url, split_authority

__all__ = [
    "DEFAULT_SENTINEL_PORT",
    "SENTINEL_SCHEMES",
    "SentinelURL",
    "connect_redis",
    "is_sentinel_url",
    "parse_sentinel_url",
    "redact_url",
]

DEFAULT_SENTINEL_PORT: Final = 26379
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
_TLS_OPTIONS: Final = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname")
_OPTIONS: Final = ("sentinel_username", "sentinel_password", *_TLS_OPTIONS)
_CERT_REQS: Final = ("none", "optional", "required")
_TRUE: Final = ("1", "true", "yes", "on", "y")
_FALSE: Final = ("0", "false", "no", "off", "n", "")
_FORM: Final = "redis+sentinel://[:password@]host1:26379,host2:26379/<master name>/<db>"

R = TypeVar("R", bound=Redis)


@dataclass(frozen=True)
class SentinelURL:
    """What a `redis+sentinel://` URL says (see the module docstring)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_options: dict[str, Any] = field(default_factory=dict)

    def master_kwargs(self) -> dict[str, Any]:
        """redis-py connection options for the master's connections."""
        kwargs: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password}
        if self.tls:
            kwargs.update(ssl=True, **self.tls_options)
        return kwargs

    def sentinel_kwargs(self) -> dict[str, Any]:
        """redis-py connection options for the connections to the sentinels."""
        kwargs: dict[str, Any] = {"username": self.sentinel_username, "password": self.sentinel_password}
        if self.tls:
            kwargs.update(ssl=True, **self.tls_options)
        return kwargs


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def _address(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [::1]:26379
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"an empty sentinel address in {text!r}: write {_FORM}")
    try:
        port = int(port_text) if port_text else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise ValueError(f"sentinel address {text!r}: the port is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"sentinel address {text!r}: the port is out of range")
    return host, port


def _tls_options(query: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if "ssl_cert_reqs" in query:
        value = query["ssl_cert_reqs"]
        if value not in _CERT_REQS:
            raise ValueError(f"ssl_cert_reqs={value!r} in the URL: use one of {', '.join(_CERT_REQS)} (lower case)")
        options["ssl_cert_reqs"] = value
    if "ssl_ca_certs" in query:
        options["ssl_ca_certs"] = query["ssl_ca_certs"] or None
    if "ssl_check_hostname" in query:
        flag = query["ssl_check_hostname"].lower()
        if flag not in _TRUE + _FALSE:
            raise ValueError(f"ssl_check_hostname={flag!r} in the URL: use true or false")
        options["ssl_check_hostname"] = flag in _TRUE
    return options


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read a `redis+sentinel://` or `rediss+sentinel://` URL; ValueError saying what is wrong."""
    split = split_authority(url)
    if split is None or split[0] not in SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL (scheme {url.partition('://')[0]!r}): write {_FORM}")
    scheme, authority, rest = split
    parts = urlsplit(f"x://sentinels{rest}")  # the path and query (urllib refuses several hosts)
    userinfo, at, hosts = authority.rpartition("@")
    if not hosts:
        raise ValueError(f"no sentinel address in the URL: write {_FORM}")
    sentinels = tuple(_address(item.strip()) for item in hosts.split(","))
    username = password = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if colon else None
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments:
        raise ValueError(f"no master name in the URL (the path after the sentinels): write {_FORM}")
    if len(segments) > 2:
        raise ValueError(f"too many path segments in the URL {parts.path!r}: write {_FORM}")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"database {segments[1]!r} in the URL is not a number: write {_FORM}")
        db = int(segments[1])
    query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} in the URL: use {', '.join(_OPTIONS)}")
    tls = scheme == "rediss+sentinel"
    tls_given = sorted(name for name in query if name in _TLS_OPTIONS)
    if tls_given and not tls:
        raise ValueError(f"{', '.join(tls_given)} in the URL only applies to TLS: use rediss+sentinel://")
    return SentinelURL(
        sentinels=sentinels,
        master=segments[0],
        db=db,
        username=username,
        password=password,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        tls=tls,
        tls_options=_tls_options(query),
    )


class _SentinelMasterPool(SentinelConnectionPool):
    """redis-py's pool of connections to a Sentinel group's master which, when its client closes
    it, also closes the connections to the sentinels (redis-py leaves those open)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # a full close; a master change disconnects only idle connections
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


def connect_redis(url: str, *, redis_class: type[R] = Redis, **options: Any) -> R:  # type: ignore[assignment]
    """A client of `redis_class` for `url`: redis-py's `from_url` for redis://, rediss:// and
    unix://; the master of the Sentinel group for redis+sentinel:// and rediss+sentinel://.
    `options` are redis-py connection options (socket_timeout, socket_connect_timeout,
    client_name, …); the socket timeouts apply to the sentinels too. Nothing connects until the
    first command. Closing the client closes its pool (and the connections to the sentinels)."""
    if not is_sentinel_url(url):
        plain: R = redis_class.from_url(url, **options)
        return plain
    target = parse_sentinel_url(url)
    sentinel_kwargs = target.sentinel_kwargs()
    sentinel_kwargs.update({name: value for name, value in options.items() if name.startswith("socket_")})
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=sentinel_kwargs, **target.master_kwargs(), **options
    )
    client: R = manager.master_for(target.master, redis_class=redis_class, connection_pool_class=_SentinelMasterPool)
    return client
