"""A PgBouncer of a test's (or a benchmark's) own, on a free loopback port, in transaction pooling,
in front of the PostgreSQL the admin URL names: what docs/operations.md recommends for fleets.

Debian's `pgbouncer` package (1.18 on Debian 12) is enough; the systemd service it installs is
not used. PgBouncer refuses to run as root, so as root it runs as the `postgres` user (else
`nobody`) from a directory that user can read. `url_for(url)` turns a database URL into the same
URL through this PgBouncer; `stats()` reads its admin console (`SHOW STATS`, through psql: the
console speaks only the simple query protocol), which is how a test proves the traffic really
went through it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support.redis_server import free_port

__all__ = ["PgBouncer", "pgbouncer_binary"]


def pgbouncer_binary() -> str | None:
    """Debian puts it in /usr/sbin, which is not on every PATH."""
    return shutil.which("pgbouncer") or next(
        (str(p) for p in (Path("/usr/sbin/pgbouncer"), Path("/sbin/pgbouncer")) if p.exists()), None
    )


def _unprivileged_user() -> str | None:
    """As root, the user PgBouncer runs as (it refuses root); else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists to run PgBouncer as")


class PgBouncer:
    """PgBouncer on 127.0.0.1:`port` in transaction pooling, passing every database name through
    to `server_host:server_port` (trust authentication, as the test PostgreSQL uses)."""

    def __init__(self, server_host: str, server_port: int, *, user: str = "postgres", pool_size: int = 20) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed: apt-get install -y pgbouncer (scripts/services.sh --tests)")
        self.binary = binary
        # A directory of its own under the system's temporary directory: pytest's are private to
        # the user running the tests, and PgBouncer may run as another one (see _unprivileged_user)
        self.workdir = workdir = Path(tempfile.mkdtemp(prefix="taskline-pgbouncer-"))
        self.port = free_port()
        self.user = user
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.chmod(0o777)  # PgBouncer runs as another user when we are root: its log and pid go here
        (workdir / "users.txt").write_text(f'"{user}" ""\n')
        (workdir / "pgbouncer.ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={server_host} port={server_port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {workdir / 'users.txt'}",
                    f"admin_users = {user}",
                    "pool_mode = transaction",
                    "max_client_conn = 1000",
                    f"default_pool_size = {pool_size}",
                    "server_login_retry = 1",
                    f"logfile = {workdir / 'pgbouncer.log'}",
                    "",
                ]
            )
        )
        for name in ("users.txt", "pgbouncer.ini"):
            (workdir / name).chmod(0o644)

    @property
    def version(self) -> str:
        """`pgbouncer --version`'s first line, e.g. 'PgBouncer 1.18.0'."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=True).stdout
        return out.splitlines()[0].strip()

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by this PgBouncer's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self, timeout: float = 15.0) -> None:
        log = (self.workdir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, str(self.workdir / "pgbouncer.ini")],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=_unprivileged_user(),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                output = (self.workdir / "stdout.log").read_text(errors="replace")
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {(output + self.log())[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def console(self, command: str) -> list[dict[str, str]]:
        """One admin console command (`SHOW STATS`, `SHOW POOLS`), its rows as dicts of text."""
        psql = shutil.which("psql")
        if psql is None:
            raise RuntimeError("psql is not installed (postgresql-client)")
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "pgbouncer"]
        done = subprocess.run(
            [psql, *where, "-A", "-F", "\t", "-c", command],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        lines = [line for line in done.stdout.splitlines() if line and not line.startswith("(")]
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]

    def transactions(self, database: str) -> int:
        """Transactions PgBouncer has passed to `database` since it started (`SHOW STATS`)."""
        return sum(int(row["total_xact_count"]) for row in self.console("SHOW STATS") if row["database"] == database)
