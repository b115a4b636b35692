"""A Redis Sentinel group of a test's own: one master, one replica, three sentinels.

Debian's `redis-server` and `redis-sentinel` on loopback ports picked free, each server in its
own directory, each sentinel with its own writable copy of its configuration (a sentinel
rewrites its file). `down-after-milliseconds` and `failover-timeout` are low, so a killed master
is replaced within a few seconds. `start()` returns when the replica is in sync and every sentinel
knows the replica and the two other sentinels (until then a failover could not happen);
`stop()` kills whatever is still running.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_sync

MASTER_NAME = "taskline"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def binaries() -> tuple[str, str] | None:
    """(redis-server, redis-sentinel), or None when either is not installed."""
    server, sentinel = shutil.which("redis-server"), shutil.which("redis-sentinel")
    return (server, sentinel) if server and sentinel else None


def _until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except redis_sync.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Sentinel group did not get ready: {what} after {timeout:.0f} s")
        time.sleep(0.05)


@dataclass
class SentinelGroup:
    directory: Path
    server: str
    sentinel: str
    master_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The REDIS_URL every component is given: the three sentinels and the master's name."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.directory / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def _server(self, name: str, port: int, *extra: str) -> None:
        workdir = self.directory / name
        workdir.mkdir()
        argv = [self.server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._spawn(name, [*argv, "--dir", str(workdir), *extra])

    def start(self, timeout: float = 30.0) -> None:
        self._server("master", self.master_port)
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        for index, port in enumerate(self.sentinel_ports):
            config = self.directory / f"sentinel-{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self._spawn(f"sentinel-{index}", [self.sentinel, str(config)])
        replica = redis_sync.Redis(port=self.replica_port)
        _until("the replica in sync", lambda: replica.info("replication").get("master_link_status") == "up", timeout)
        replica.close()
        for port in self.sentinel_ports:
            client = redis_sync.Redis(port=port, decode_responses=True)

            def knows_the_group(client: redis_sync.Redis = client) -> bool:
                state = client.sentinel_master(MASTER_NAME)
                return int(state["num-other-sentinels"]) == 2 and int(state["num-slaves"]) == 1

            _until(f"sentinel on port {port} knowing the replica and the other sentinels", knows_the_group, timeout)
            client.close()

    def kill_master(self) -> None:
        """SIGKILL the master: what it acknowledged but had not yet sent to the replica is gone."""
        process = self.processes["master"]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def master_address(self) -> tuple[str, int] | None:
        """The master as the sentinels now report it (None while they disagree or know none)."""
        seen = set()
        for port in self.sentinel_ports:
            client = redis_sync.Redis(port=port, decode_responses=True)
            try:
                host, master_port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                seen.add((host, int(master_port)))
            except (redis_sync.RedisError, TypeError):
                return None
            finally:
                client.close()
        return seen.pop() if len(seen) == 1 else None

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.directory.glob("*.log"))
