"""`rediss://` with a self-signed certificate (as Heroku's Redis presents): `?ssl_cert_reqs=none`
reaches both arq (through worker/config/redis_connection.py) and redis-py, and a worker applies commands over it.

Starts a TLS-only redis-server of its own with a throwaway certificate; skipped where redis-server
or openssl is missing or redis-server was built without TLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync
from arq.connections import RedisSettings, create_pool
from taskline_producer import TaskProducer

from tests.conftest import run_burst
from worker.config.redis_connection import arq_redis_settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tls_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (shutil.which("redis-server") and shutil.which("openssl")):
        pytest.skip("redis-server and openssl are needed for a TLS Redis")
    directory: Path = tmp_path_factory.mktemp("tls-redis")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=self-signed.test",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(directory / "cert.pem"),
         "--tls-key-file", str(directory / "key.pem"), "--tls-auth-clients", "no", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none"
    deadline = time.monotonic() + 10
    while True:
        if server.poll() is not None:
            output = server.stdout.read().decode(errors="replace") if server.stdout else ""
            pytest.skip(f"redis-server cannot serve TLS here: {output[-300:]}")
        try:
            if redis_sync.Redis.from_url(url, socket_connect_timeout=1).ping():
                break
        except redis_sync.RedisError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.skip("the TLS redis-server did not come up")
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(10)


async def test_stock_arq_cannot_connect_but_the_workers_settings_can(tls_redis_url):
    """arq's from_dsn drops ?ssl_cert_reqs=none and fails on the self-signed certificate."""
    stock = RedisSettings.from_dsn(tls_redis_url)
    stock.conn_retries = 0
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        await create_pool(stock)

    ours = arq_redis_settings(tls_redis_url)
    ours.conn_retries = 0
    pool = await create_pool(ours)
    try:
        assert await pool.ping()
    finally:
        await pool.aclose()

    strict = tls_redis_url.replace("?ssl_cert_reqs=none", "")
    with pytest.raises(redis_sync.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis_sync.Redis.from_url(strict, socket_connect_timeout=2).ping()


async def test_a_worker_applies_commands_over_rediss(settings, db, users, tls_redis_url):
    """Producer (redis-py) → TLS Redis → worker (arq) → PostgreSQL, with the Heroku-style URL."""
    settings = settings.model_copy(update={"redis_url": tls_redis_url})
    async with TaskProducer.connect(tls_redis_url, queue=settings.queue) as producer:
        receipt = await producer.create_task(user_id=1, title="over TLS")
    assert receipt.queued
    await asyncio.wait_for(run_burst(settings), timeout=60)
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", receipt.task_id) == "over TLS"
