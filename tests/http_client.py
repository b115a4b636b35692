"""A minimal HTTP/1.1 client for the tests of taskline's /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio


async def http_get(port: int, path: str, method: str = "GET", headers: str = "") -> tuple[int, bytes]:
    """Send one request to 127.0.0.1:`port`; return the status code and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
