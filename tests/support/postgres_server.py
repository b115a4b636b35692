"""A PostgreSQL server of a test's own: Debian's `initdb` and `pg_ctl` in a temporary directory,
trust authentication, a free loopback port, fsync off. A test may stop it (every connection cut,
new ones refused) and start it again, which the shared server must never see.

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.redis_server import free_port

__all__ = ["PrivatePostgres", "postgres_bindir"]


def postgres_bindir() -> Path | None:
    """The directory of `initdb` and `pg_ctl`, or None when PostgreSQL's server is not installed."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if found and (Path(found) / "initdb").exists():
            return Path(found)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


class PrivatePostgres:
    """`initdb` once, then `start()` / `stop()` as often as the test likes; `remove()` at the end."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.datadir = Path(tempfile.mkdtemp(prefix="taskline-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")  # KeyError: no user to run the server as
            os.chown(self.datadir, account.pw_uid, account.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._run(str(bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.prefix, *argv], check=True, capture_output=True, timeout=90)

    def _pg_ctl(self, *argv: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60", *argv)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=30"
        self._pg_ctl("-o", options, "-l", str(self.datadir / "server.log"), "start")

    def stop(self) -> None:
        """A fast shutdown: every session is cut, transactions in flight roll back."""
        self._pg_ctl("-m", "fast", "stop")

    def remove(self) -> None:
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.datadir, ignore_errors=True)
