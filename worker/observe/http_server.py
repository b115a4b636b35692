"""A tiny HTTP server on the worker's own event loop: /metrics, /healthz, /readyz.

Why not prometheus_client's `start_http_server`: it serves the registry from a thread and knows
nothing about health. This server runs in the same asyncio loop as the jobs, so a stuck loop
stops answering (and its liveness pulse stops), which is exactly what a liveness probe should
see; it needs no new dependency, and a scrape costs one `generate_latest` call (a few hundred
microseconds) in the loop. It speaks just enough HTTP/1.1 for probes and Prometheus: GET and
HEAD, one request per connection.

What a slow or hostile client can cost is bounded: 5 s to send the request head, 10 s for the
answer to be built and taken (a client that stops reading is cut off), and at most
`MAX_CONNECTIONS` connections at once and `MAX_PER_PEER` from one address; a connection beyond
either is closed at once, unread. With a token (TASKLINE_METRICS_TOKEN) every path but the
probes' needs it.
It listens on `TASKLINE_METRICS_HOST`, 127.0.0.1 by default: set 0.0.0.0 (or the pod's IP)
where Prometheus or the kubelet must reach it from outside (Kubernetes probes and scrapes
connect to the pod's IP, not to its loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.observe.health import Health
from worker.observe.metrics import Metrics

__all__ = [
    "DEFAULT_HOST",
    "MAX_CONNECTIONS",
    "MAX_PER_PEER",
    "PROBE_PATHS",
    "Response",
    "health_routes",
    "json_response",
    "process_ops",
    "serve",
]

_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_HEAD_LIMIT = 16 * 1024
_REQUEST_DEADLINE_S = 5.0
_RESPONSE_DEADLINE_S = 10.0
MAX_CONNECTIONS: Final = 32
"""Connections served at once; probes and scrapes need a handful."""
MAX_PER_PEER: Final = 8
"""Connections served at once to one peer address: one client holding idle sockets open cannot
fill `MAX_CONNECTIONS` and starve the kubelet's probes or Prometheus (other addresses)."""
DEFAULT_HOST: Final = "127.0.0.1"
PROBE_PATHS: Final = frozenset({"/healthz", "/livez", "/readyz"})
"""The only paths served without the token when one is set (probes carry no credentials)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


Handler = Callable[[str], Awaitable[Response]]


def json_response(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data).encode() + b"\n")


def health_routes(health: Health, metrics: Metrics) -> Handler:
    """The worker's routes: /metrics (its own registry), /healthz (liveness), /readyz (readiness)."""

    async def handle(path: str) -> Response:
        if path == "/metrics":
            return Response(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
        if path in ("/healthz", "/livez"):
            alive, detail = health.liveness()
            return json_response(200 if alive else 503, detail)
        if path == "/readyz":
            ready, detail = health.readiness()
            return json_response(200 if ready else 503, detail)
        return json_response(404, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    return handle


async def serve(
    handler: Handler,
    port: int,
    host: str | None = DEFAULT_HOST,
    token: str | None = None,
    *,
    max_connections: int = MAX_CONNECTIONS,
    max_per_peer: int = MAX_PER_PEER,
    request_deadline_s: float = _REQUEST_DEADLINE_S,
    response_deadline_s: float = _RESPONSE_DEADLINE_S,
) -> asyncio.Server:
    """Start serving `handler` on host:port (None: every interface). With `token`, every path but
    the probes' (`PROBE_PATHS`) needs `Authorization: Bearer <token>`, checked before the handler
    runs."""
    open_connections = 0
    per_peer: Counter[str] = Counter()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_connections
        peer = _peer_host(writer)
        if open_connections >= max_connections or per_peer[peer] >= max_per_peer:
            writer.transport.abort()  # over a cap: closed at once, nothing read or written
            return
        open_connections += 1
        per_peer[peer] += 1
        try:
            async with asyncio.timeout(request_deadline_s):
                head = await reader.readuntil(b"\r\n\r\n")
            async with asyncio.timeout(response_deadline_s):
                await _answer(handler, token, head, writer)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.transport.abort()  # a client that sends nonsense, stalls or goes away gets nothing more
        finally:
            open_connections -= 1
            per_peer[peer] -= 1
            if per_peer[peer] <= 0:
                del per_peer[peer]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(on_connection, host=host, port=port, limit=_HEAD_LIMIT, reuse_address=True)


async def _answer(handler: Handler, token: str | None, head: bytes, writer: asyncio.StreamWriter) -> None:
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    path = target.split("?", 1)[0].split("#", 1)[0] or "/"  # as sent: "//metrics" is not "/metrics"
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if method not in ("GET", "HEAD"):
        response = json_response(405, {"error": "only GET and HEAD"})
    elif token and path not in PROBE_PATHS and not _authorised(headers.get("authorization", ""), token):
        response = json_response(401, {"error": "send Authorization: Bearer <TASKLINE_METRICS_TOKEN>"})
    else:
        response = await handler(path)
    status_line = f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}\r\n"
    head_out = (
        f"{status_line}Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\nConnection: close\r\n"
        + ("WWW-Authenticate: Bearer\r\n" if response.status == 401 else "")
        + "\r\n"
    )
    writer.write(head_out.encode("latin-1") + (response.body if method == "GET" else b""))
    await writer.drain()


def _peer_host(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def _authorised(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


@contextlib.asynccontextmanager
async def process_ops(
    health: Health, metrics: Metrics, port: int | None, log: Any, host: str = DEFAULT_HOST
) -> AsyncIterator[None]:
    """What a long-running process (a worker, the scheduler) keeps for its whole life, across
    Redis reconnects: the liveness pulse, and /metrics, /healthz and /readyz on host:`port`
    (if a port is set; `host` is TASKLINE_METRICS_HOST)."""
    from worker.config.settings import SettingsError

    server = None
    if port:
        try:
            server = await serve(health_routes(health, metrics), port, host=host)
        except OSError as exc:
            raise SettingsError(
                f"TASKLINE_METRICS_HOST {host} / TASKLINE_METRICS_PORT {port}: cannot listen: {exc}"
            ) from None
        log.info(
            "serving /metrics, /healthz and /readyz",
            host=host,
            port=port,
            worker_id=health.worker_id,
            reachable="from this machine only (TASKLINE_METRICS_HOST)" if _loopback(host) else "from the network",
        )
    pulse = asyncio.create_task(health.run_pulse(), name="taskline-pulse")
    try:
        yield
    finally:
        pulse.cancel()
        if server is not None:
            server.close()
            await server.wait_closed()
