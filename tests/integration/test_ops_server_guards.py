"""The ops HTTP server's guards (worker/observe/http_server.py): with a token, only the probes are
open, whatever the path looks like; one peer holding idle sockets cannot starve another's probes."""

from __future__ import annotations

import asyncio

import pytest

from tests.http_client import http_get
from worker.observe.http_server import Response, serve

pytestmark = pytest.mark.integration


async def _page(path: str) -> Response:
    return Response(200, b"the whole fleet\n", "text/plain")


@pytest.mark.parametrize("path", ["/", "//metrics", "/?x", "/metrics", "/metrics?x=1", "/nowhere", "/metrics#f"])
async def test_with_a_token_every_path_but_the_probes_needs_it(path):
    """`GET /`, `GET //metrics`, `GET /?x` (and any other path) answer 401 without the bearer
    token; the handler is never reached."""
    server = await serve(_page, 0, host="127.0.0.1", token="s3cret")
    port = server.sockets[0].getsockname()[1]
    try:
        status, body = await http_get(port, path)
        assert status == 401
        assert b"fleet" not in body
        status, body = await http_get(port, path, headers="Authorization: Bearer s3cret\r\n")
        assert (status, body) == (200, b"the whole fleet\n")
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
async def test_with_a_token_the_probes_need_none(path):
    """Probes carry no credentials: the health paths are served without the token."""
    server = await serve(_page, 0, host="127.0.0.1", token="s3cret")
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await http_get(port, path))[0] == 200
    finally:
        server.close()
        await server.wait_closed()


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            return await reader.read() == b""
    except (TimeoutError, ConnectionError):
        return False


async def test_idle_sockets_from_one_peer_do_not_starve_another_peers_probe():
    """32 idle connections from 127.0.0.1 (the whole default cap) leave /healthz answering a
    client on 127.0.0.2: the idle peer is held to its own share, and its extra sockets are
    closed at once."""
    server = await serve(_page, 0, host="127.0.0.1", request_deadline_s=30)
    port = server.sockets[0].getsockname()[1]
    held = []
    try:
        for _ in range(32):
            held.append(await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.1", 0)))
        await asyncio.sleep(0)
        closed = [await _eof_within(reader, 2.0) for reader, _ in held[-4:]]
        assert all(closed), "sockets beyond the per-peer cap are closed at once"
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        for _, writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
