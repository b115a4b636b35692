"""The way out of scripts/fresh-check.sh's network namespace, and nothing else.

The fresh machine runs in a network namespace of its own, so that it cannot see this machine's
PostgreSQL and Redis on 127.0.0.1: its loopback is its own and it has no other interface. The
package registries are reached through an HTTP proxy made of two halves, joined by a Unix
socket (a path on the file system, which both namespaces see):

    python3 fresh_check_proxy.py serve SOCKET [LOG]   # here: CONNECT host:443 and plain http://
    python3 fresh_check_proxy.py forward PORT SOCKET   # in the namespace: 127.0.0.1:PORT -> SOCKET

apt, pip and npm in the fresh machine use http_proxy/https_proxy=http://127.0.0.1:PORT. Only
ports 80 and 443 are forwarded; TLS goes end to end (the fresh machine checks the certificates).
Where this machine itself reaches the internet through a proxy (https_proxy or http_proxy set
for `serve`), requests go on through that proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import TextIO
from urllib.parse import urlsplit

ALLOWED_PORTS = {80, 443}


def _upstream_proxy() -> tuple[str, int] | None:
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        if value := os.environ.get(name):
            url = urlsplit(value if "://" in value else f"http://{value}")
            if url.hostname:
                return url.hostname, url.port or 80
    return None


UPSTREAM_PROXY = _upstream_proxy()
HEAD_LIMIT = 64 * 1024
log_file: TextIO | None = None


def log(line: str) -> None:
    if log_file is not None:
        log_file.write(line + "\n")
        log_file.flush()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def join(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    try:
        await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
    finally:
        for writer in (a[1], b[1]):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def answer(writer: asyncio.StreamWriter, status: str) -> None:
    writer.write(f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode())
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
    writer.close()


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    request_line, _, rest = head.partition(b"\r\n")
    try:
        method, target, version = request_line.decode("latin-1").split(" ")
    except ValueError:
        await answer(writer, "400 Bad Request")
        return
    if method == "CONNECT":
        host, _, port_text = target.rpartition(":")
        forward = b""
    else:
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            await answer(writer, "400 Bad Request")
            return
        host, port_text = url.hostname, str(url.port or 80)
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        # One request per connection: the client sees "Connection: close" and opens another.
        headers = [
            line
            for line in rest.split(b"\r\n")
            if line and not line.lower().startswith((b"connection:", b"proxy-connection:", b"keep-alive:"))
        ]
        forward = b"\r\n".join(
            [f"{method} {path} {version}".encode("latin-1"), *headers, b"Connection: close", b"", b""]
        )
    host = host.strip("[]")
    if not port_text.isdigit() or int(port_text) not in ALLOWED_PORTS or not host:
        log(f"refused {method} {target}")
        await answer(writer, "403 Forbidden")
        return
    via = UPSTREAM_PROXY
    try:
        connect_to = via or (host, int(port_text))
        upstream = await asyncio.wait_for(asyncio.open_connection(*connect_to), timeout=30)
    except (OSError, TimeoutError) as exc:
        log(f"failed {method} {host}:{port_text}: {exc}")
        await answer(writer, "502 Bad Gateway")
        return
    log(f"{method} {host}:{port_text}" + (f" via {via[0]}:{via[1]}" if via else ""))
    if via:
        upstream[1].write(head)  # the upstream proxy answers the client itself
    elif method == "CONNECT":
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        upstream[1].write(forward)
    await join((reader, writer), upstream)


async def forward_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, socket_path: str) -> None:
    try:
        upstream = await asyncio.open_unix_connection(socket_path)
    except OSError:
        writer.close()
        return
    await join((reader, writer), upstream)


async def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "serve":
        server = await asyncio.start_unix_server(serve_client, path=argv[1], limit=HEAD_LIMIT)
        os.chmod(argv[1], 0o600)
    elif len(argv) == 3 and argv[0] == "forward":
        socket_path = argv[2]
        server = await asyncio.start_server(
            lambda r, w: forward_client(r, w, socket_path), host="127.0.0.1", port=int(argv[1])
        )
    else:
        sys.exit(__doc__)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) > 3:
        log_file = open(sys.argv[3], "a", encoding="utf-8")  # noqa: SIM115 (open for the process's life)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
