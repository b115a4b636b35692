#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer, for the tests and the quickstart.
#
#   scripts/services.sh
#
# By default it wants PostgreSQL at 127.0.0.1:5432 (user postgres, no password) and Redis at
# 127.0.0.1:6379. When they answer it does nothing else. When they don't, it starts them
# (PostgreSQL through pg_ctlcluster, creating a cluster if there is none; Redis as a daemon),
# installing them from Debian's packages first if they are missing. It never needs systemd.
#
# With --tests it first installs, from Debian's packages, every system package the test suite
# needs and does not find: chromium and fonts-liberation (the browser test), libatomic1 (the
# playwright package's driver), redis-server and PostgreSQL's server binaries (the crash tests,
# which start servers of their own), openssl (the TLS test), redis-sentinel, pgbouncer and strace
# (the benchmark's --diagnose, run by its smoke test). It
# needs root (or sudo without a password) and apt-get for that; a failed apt-get is an error.
# Without them it lists what is missing, and scripts/test.sh reports the tests that were
# skipped for it. (Node.js comes from PyPI: scripts/install.sh --tests.)
#
# DATABASE_URL and REDIS_URL override the targets (with --tests: TASKLINE_TEST_ADMIN_DATABASE_URL
# and TASKLINE_TEST_REDIS_URL, which the tests use). One that points anywhere but the local
# default port (5432 / 6379) is only checked: nothing is installed or started for it.
# Output goes to .run/services.log when something has to be installed or started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.run"
LOG="$RUN_DIR/services.log"
case "${1:-}" in
    --tests) PG_VAR=TASKLINE_TEST_ADMIN_DATABASE_URL REDIS_VAR=TASKLINE_TEST_REDIS_URL ;;
    "") PG_VAR=DATABASE_URL REDIS_VAR=REDIS_URL ;;
    *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
esac
PG_URL="${!PG_VAR:-postgresql://postgres@127.0.0.1:5432/postgres}"
REDIS_TARGET="${!REDIS_VAR:-redis://127.0.0.1:6379}"
WAIT_S="${TASKLINE_SERVICES_WAIT:-60}"
APT_UPDATED=0

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
log_tail() {  # FILE [LINES]
    if [ -f "$1" ]; then echo "--- last lines of $1:" >&2; tail -n "${2:-15}" "$1" >&2; fi
    return 0
}

PY="$(command -v python3.11 || command -v python3 || true)"
[ -n "$PY" ] || die "python3 is needed (apt-get install python3.11)"
mkdir -p "$RUN_DIR"

# Run a command as root: directly, or through sudo (non-interactive unless there is a terminal).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif have sudo; then
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        die "need root for: $* (run this script as root, or install sudo)"
    fi
}

# url_parts URL DEFAULT_PORT → U_SCHEME U_HOST U_PORT U_USER U_HASPASS
url_parts() {
    local out
    out="$("$PY" - "$1" "$2" <<'EOF'
import sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
try:
    port = u.port or int(sys.argv[2])
except ValueError:
    port = 0
print(u.scheme, u.hostname or "-", port, unquote(u.username or "") or "-", "yes" if u.password else "no")
EOF
)" || die "cannot parse the URL ${1%%@*}@…"
    read -r U_SCHEME U_HOST U_PORT U_USER U_HASPASS <<<"$out"
    [ "$U_HOST" = "-" ] && U_HOST=""
    [ "$U_USER" = "-" ] && U_USER=""
    return 0
}

is_local_host() { case "$1" in "" | 127.0.0.1 | localhost | ::1) return 0 ;; *) return 1 ;; esac; }

# A URL without its password, for messages.
redact() { "$PY" -c 'import sys, re; print(re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", sys.argv[1]))' "$1"; }

tcp_open() {  # HOST PORT
    "$PY" - "$1" "$2" <<'EOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1] or "127.0.0.1", int(sys.argv[2])), timeout=3).close()
except OSError:
    sys.exit(1)
EOF
}

# ---------------------------------------------------------------- PostgreSQL

PG_LIBPQ_URL="$(printf '%s' "$PG_URL" | sed -E 's#^postgres(ql)?(\+asyncpg)?://#postgresql://#')"
PG_LOCAL_URL="postgresql://postgres@127.0.0.1:5432/postgres"

pg_reachable() {  # URL (libpq form); host and port from url_parts
    if have pg_isready; then
        pg_isready -q -t 3 -d "$1"
    else
        tcp_open "$U_HOST" "$U_PORT"
    fi
}

# Can user postgres connect over TCP without a password? Prints the error when not.
pg_trust_ok() {
    if have psql; then
        PGCONNECT_TIMEOUT=5 psql -w -X -Atq -d "$PG_LOCAL_URL" -c 'select 1' </dev/null >/dev/null 2>"$RUN_DIR/psql.err" && return 0
        cat "$RUN_DIR/psql.err"
        return 1
    elif [ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c 'import asyncpg' 2>/dev/null; then
        "$ROOT/.venv/bin/python" - "$PG_LOCAL_URL" <<'EOF'
import asyncio, sys
import asyncpg
async def main() -> None:
    conn = await asyncpg.connect(sys.argv[1], timeout=5)
    await conn.close()
try:
    asyncio.run(main())
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
EOF
    else
        echo "(neither psql nor the project's venv is there to check the login; skipped)"
        return 0
    fi
}

pg_installed() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && have pg_ctlcluster && have pg_lsclusters; }

# "VERSION NAME STATUS" of the cluster on port 5432, or nothing.
pg_cluster() { pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 { print $1, $2, $4; exit }'; }

# Let user postgres in over TCP from this machine without a password (pg_hba.conf only).
pg_hba_trust() {  # VERSION NAME
    local hba marker="# taskline scripts/services.sh: user postgres from this machine, no password"
    hba="$(pg_conftool -s "$1" "$2" show hba_file 2>/dev/null || echo "/etc/postgresql/$1/$2/pg_hba.conf")"
    as_root test -f "$hba" || die "no pg_hba.conf for cluster $1/$2 (looked for $hba)"
    as_root grep -qF "$marker" "$hba" && return 0
    say "postgresql: trusting user postgres on 127.0.0.1 and ::1 in $hba (the old file: $hba.taskline-orig)"
    as_root cp -p "$hba" "$hba.taskline-orig"
    # pg_hba.conf is read top down and the first match wins, so the lines go first. Written
    # in place, so that the file keeps its owner and mode.
    # shellcheck disable=SC2016
    printf '%s\nhost    all    postgres    127.0.0.1/32    trust\nhost    all    postgres    ::1/128    trust\n\n' "$marker" \
        | as_root sh -c 'cat - "$1.taskline-orig" > "$1"' sh "$hba"
}

pg_reload() {  # VERSION NAME
    as_root pg_ctlcluster --skip-systemctl-redirect "$1" "$2" reload >>"$LOG" 2>&1 \
        || die "could not reload PostgreSQL $1/$2; see $LOG"
}

pg_wait() {  # seconds
    local deadline=$((SECONDS + $1))
    until pg_reachable "$PG_LIBPQ_URL"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

pg_ensure() {
    url_parts "$PG_URL" 5432
    local where="$U_HOST:$U_PORT" shown
    shown="$(redact "$PG_URL")"
    if ! is_local_host "$U_HOST" || [ "$U_PORT" != 5432 ]; then
        pg_reachable "$PG_LIBPQ_URL" \
            || die "PostgreSQL at $where ($PG_VAR=$shown) does not answer; start it, or unset $PG_VAR to use a local one"
        say "postgresql ok at $where (from $PG_VAR; only checked, not managed here)"
        return 0
    fi

    if ! pg_reachable "$PG_LIBPQ_URL"; then
        say "postgresql: nothing answers at $where; starting it"
        if ! pg_installed; then
            apt_install postgresql
            pg_installed || die "PostgreSQL is still missing after apt-get install postgresql; see $LOG"
        fi
        local cluster version name status
        cluster="$(pg_cluster)"
        if [ -z "$cluster" ]; then
            version="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' | cut -d/ -f5 | sort -V | tail -n 1)"
            say "postgresql: no cluster on port 5432; creating $version/main"
            as_root pg_createcluster --port 5432 "$version" main >>"$LOG" 2>&1 \
                || { log_tail "$LOG"; die "pg_createcluster $version main failed (is there a $version/main cluster on another port? see pg_lsclusters)"; }
            cluster="$(pg_cluster)"
            [ -n "$cluster" ] || die "created a cluster but pg_lsclusters shows none on port 5432"
            read -r version name status <<<"$cluster"
            pg_hba_trust "$version" "$name"  # read when it starts
        fi
        read -r version name status <<<"$cluster"
        if [[ "$status" != online* ]]; then
            as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >>"$LOG" 2>&1 \
                || { log_tail "$LOG"; log_tail "/var/log/postgresql/postgresql-$version-$name.log";
                     die "could not start PostgreSQL $version/$name; see the lines above"; }
        fi
        pg_wait "$WAIT_S" || { log_tail "/var/log/postgresql/postgresql-$version-$name.log";
            die "PostgreSQL $version/$name does not answer at $where after ${WAIT_S}s (listen_addresses? port taken?)"; }
        say "postgresql: started cluster $version/$name"
    fi

    if [ -n "$U_USER" ] && [ "$U_USER" != postgres ] || [ "$U_HASPASS" = yes ]; then
        say "postgresql ok at $where (login as ${U_USER:-?} not checked here)"
        return 0
    fi
    local why
    if ! why="$(pg_trust_ok)"; then
        local cluster version name status
        cluster="$(pg_cluster)"
        if [ -z "$cluster" ] || ! pg_installed; then
            die "PostgreSQL at $where refuses user postgres without a password: $why (allow it in pg_hba.conf, or set $PG_VAR with a password)"
        fi
        read -r version name status <<<"$cluster"
        pg_hba_trust "$version" "$name"
        pg_reload "$version" "$name"
        local tries=0  # a reload is signalled, not waited for
        until why="$(pg_trust_ok)"; do
            tries=$((tries + 1))
            [ "$tries" -lt 20 ] || die "PostgreSQL at $where still refuses user postgres without a password: $why"
            sleep 0.5
        done
    fi
    say "postgresql ok at $where (user postgres, no password)"
}

# ---------------------------------------------------------------- Redis

redis_ping() {  # URL
    if have redis-cli && [[ "$1" == redis://* ]]; then
        [ "$(timeout 5 redis-cli --no-auth-warning -u "$1" ping 2>/dev/null)" = PONG ]
    else
        "$PY" - "$1" <<'EOF'
import socket, ssl, sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
try:
    if u.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(5)
        sock.connect(u.path)
    else:
        sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=5)
        if u.scheme == "rediss":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=u.hostname)
    def call(*args: str) -> bytes:
        sock.sendall(f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args))
        return sock.recv(4096)
    if u.password:
        call("AUTH", *([unquote(u.username)] if u.username else []), unquote(u.password))
    sys.exit(0 if call("PING").startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
EOF
    fi
}

redis_start() {
    if [ "$(id -u)" -eq 0 ]; then
        mkdir -p /var/lib/redis /var/log/redis
        REDIS_LOG=/var/log/redis/ci.log
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile "$REDIS_LOG" >>"$LOG" 2>&1
    else  # Redis needs no privileges: run it as this user, its files in .run/
        REDIS_LOG="$RUN_DIR/redis.log"
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir "$RUN_DIR" --logfile "$REDIS_LOG" >>"$LOG" 2>&1
    fi
}

redis_ensure() {
    url_parts "$REDIS_TARGET" 6379
    local where="$U_HOST:$U_PORT" shown
    shown="$(redact "$REDIS_TARGET")"
    if [ "$U_SCHEME" != redis ] || ! is_local_host "$U_HOST" || [ "$U_PORT" != 6379 ]; then
        redis_ping "$REDIS_TARGET" \
            || die "Redis at ${U_HOST:-$REDIS_TARGET}${U_HOST:+:$U_PORT} ($REDIS_VAR=$shown) does not answer PING; start it, or unset $REDIS_VAR to use a local one"
        say "redis ok at ${U_HOST:-$shown}${U_HOST:+:$U_PORT} (from $REDIS_VAR; only checked, not managed here)"
        return 0
    fi
    if redis_ping "$REDIS_TARGET"; then
        say "redis ok at $where"
        return 0
    fi
    say "redis: nothing answers at $where; starting it"
    if ! have redis-server; then
        apt_install redis-server
        have redis-server || die "redis-server is still missing after apt-get install redis-server; see $LOG"
        # the package may have started its own server
        if redis_ping "$REDIS_TARGET"; then say "redis ok at $where (started by its package)"; return 0; fi
    fi
    redis_start || { log_tail "$LOG"; die "redis-server did not start; see the lines above"; }
    local deadline=$((SECONDS + WAIT_S))
    until redis_ping "$REDIS_TARGET"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_tail "$REDIS_LOG"
            die "Redis does not answer at $where after ${WAIT_S}s (port taken? see the lines above)"
        fi
        sleep 0.2
    done
    say "redis: started redis-server (log: $REDIS_LOG)"
    say "redis ok at $where"
}

# ---------------------------------------------------------------- installing

apt_install() {
    have apt-get || die "$* is not installed and there is no apt-get here: install it yourself, or point $PG_VAR / $REDIS_VAR at running servers"
    say "installing $* from Debian's packages (log: $LOG)"
    if [ "$APT_UPDATED" = 0 ]; then
        as_root apt-get update -q >>"$LOG" 2>&1 || say "apt-get update failed; trying with the package lists as they are"
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null >>"$LOG" 2>&1 \
        || { log_tail "$LOG"; die "apt-get install $* failed; see the lines above"; }
}

# ---------------------------------------------------------------- what the tests need

can_apt() { have apt-get && { [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; }; }
have_lib() { /sbin/ldconfig -p 2>/dev/null | grep -qF "$1 " || compgen -G "/usr/lib/*/$1" >/dev/null || compgen -G "/lib/*/$1" >/dev/null; }
have_pg_server() {
    local bindir
    if have pg_config && bindir="$(pg_config --bindir 2>/dev/null)" && [ -x "$bindir/initdb" ]; then return 0; fi
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_sbin() { have "$1" || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
package_installed() { have dpkg-query && [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

# Debian's packages the suite needs, each with what shows it is there already.
test_packages_missing() {
    local chromium="${TASKLINE_TEST_CHROMIUM:-/usr/bin/chromium}"
    [ -x "$chromium" ] || echo chromium
    [ ! -x "$chromium" ] && ! package_installed fonts-liberation && echo fonts-liberation
    have_lib libatomic.so.1 || echo libatomic1           # the playwright package's driver (a node binary)
    have redis-server || echo redis-server               # crash test, TLS test
    have_sbin redis-sentinel || echo redis-sentinel      # Sentinel tests
    have_pg_server || echo postgresql                    # crash test: initdb and pg_ctl
    have openssl || echo openssl                         # TLS test
    have_sbin pgbouncer || echo pgbouncer                # PgBouncer tests
    have strace || echo strace                           # the benchmark's --diagnose (its smoke test)
    return 0
}

test_tools_ensure() {
    local missing
    missing="$(test_packages_missing | tr '\n' ' ')"
    missing="${missing% }"
    if [ -z "$missing" ]; then
        say "test tools ok (chromium, libatomic1, redis-server, redis-sentinel, PostgreSQL's server, openssl, pgbouncer, strace)"
        return 0
    fi
    if ! can_apt; then
        say "missing for the tests: $missing; no root (or sudo) and apt-get to install them here: the tests that need them will be skipped, and scripts/test.sh lists them"
        printf '%s\n' "$missing" >"$RUN_DIR/test-tools-missing"
        return 0
    fi
    local wanted="$missing"
    # shellcheck disable=SC2086  # one word per package
    apt_install $wanted
    missing="$(test_packages_missing | tr '\n' ' ')"
    [ -z "${missing% }" ] || die "still missing after apt-get install $wanted: ${missing% } (see $LOG)"
    say "installed for the tests: $wanted"
}

rm -f "$RUN_DIR/test-tools-missing"
if [ "${1:-}" = "--tests" ]; then
    test_tools_ensure  # first: it may install PostgreSQL and Redis too, in one apt-get
fi
pg_ensure
redis_ensure
