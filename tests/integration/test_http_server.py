"""The observability HTTP server (worker/observe/http_server.py) bounds what clients can cost, and
the fleet page is read at most once a second."""

from __future__ import annotations

import asyncio

import pytest

from tests.http_client import http_get
from worker.config.settings import Settings
from worker.observe.health import Health
from worker.observe.http_server import DEFAULT_HOST, Response, process_ops, serve
from worker.observe.metrics import Metrics
from worker.tools.fleet_metrics import CachedPage

pytestmark = pytest.mark.integration


async def _ok(path: str) -> Response:
    return Response(200, b"ok\n", "text/plain")


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            return await reader.read() == b""
    except (TimeoutError, ConnectionError):
        return False


async def test_connections_beyond_the_cap_are_closed_at_once_and_served_again_after():
    """With `max_connections` idle clients holding their connections, another one is closed at
    once, unanswered; when they go, requests are served again."""
    server = await serve(_ok, 0, host="127.0.0.1", max_connections=3, request_deadline_s=30)
    port = server.sockets[0].getsockname()[1]
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        await asyncio.sleep(0)  # let the server take them
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _eof_within(extra_reader, 2.0)
        extra_writer.close()
        for reader, _ in held:  # the held ones are still open
            assert not await _eof_within(reader, 0.05)
    finally:
        for _, writer in held:
            writer.close()
    async with asyncio.timeout(5):
        while True:  # the server notices the closed ones at once; no sleep needed beyond that
            try:
                status, body = await http_get(port, "/metrics")
                break
            except ConnectionError:
                await asyncio.sleep(0.01)
    assert (status, body) == (200, b"ok\n")
    server.close()
    await server.wait_closed()


async def test_a_client_that_does_not_read_its_answer_is_cut_off_after_the_write_deadline():
    """An answer the client does not take is abandoned after `response_deadline_s`: the
    connection does not stay open holding the body."""
    body = b"x" * (32 * 1024 * 1024)

    async def big(path: str) -> Response:
        return Response(200, body, "text/plain")

    server = await serve(big, 0, host="127.0.0.1", response_deadline_s=0.5)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(1.5)  # the client reads nothing for three deadlines
    received = 0
    try:
        async with asyncio.timeout(10):
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
    except ConnectionError:
        pass
    writer.close()
    server.close()
    await server.wait_closed()
    assert received < len(body), received


async def test_the_ops_server_listens_on_the_host_it_is_given():
    """process_ops binds TASKLINE_METRICS_HOST: here 127.0.0.2 and not 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        port = int(sock.getsockname()[1])
    log = type("Log", (), {"info": lambda *a, **k: None})()
    async with process_ops(Health(interval=5.0), Metrics(), port, log, host="127.0.0.2"):
        _reader, writer = await asyncio.open_connection("127.0.0.2", port)
        writer.close()
        with pytest.raises(ConnectionError):
            await asyncio.open_connection("127.0.0.1", port)


def test_the_metrics_host_defaults_to_loopback():
    """TASKLINE_METRICS_HOST defaults to 127.0.0.1 (Kubernetes needs 0.0.0.0: README, deploy-kubernetes.md)."""
    settings = Settings(DATABASE_URL="postgresql://u@h/d")  # type: ignore[call-arg]
    assert settings.metrics_host == DEFAULT_HOST == "127.0.0.1"
    assert Settings(DATABASE_URL="postgresql://u@h/d", metrics_host="0.0.0.0").metrics_host == "0.0.0.0"  # type: ignore[call-arg]


async def test_the_fleet_page_is_read_at_most_once_per_ttl_and_once_for_concurrent_scrapes():
    """Scrapes within the time to live share one read, concurrent ones too; a failed read is not kept."""
    now = [100.0]
    reads: list[float] = []
    fail = [False]

    async def read() -> bytes:
        reads.append(now[0])
        await asyncio.sleep(0.01)
        if fail[0]:
            raise ConnectionError("down")
        return f"page {len(reads)}".encode()

    cached = CachedPage(read, ttl_s=1.0, clock=lambda: now[0])
    assert await asyncio.gather(*(cached.get() for _ in range(5))) == [b"page 1"] * 5
    now[0] += 0.9
    assert await cached.get() == b"page 1"
    now[0] += 0.2
    assert await cached.get() == b"page 2"
    assert len(reads) == 2
    now[0] += 1.5
    fail[0] = True
    with pytest.raises(ConnectionError):
        await cached.get()
    fail[0] = False
    assert await cached.get() == b"page 4"
