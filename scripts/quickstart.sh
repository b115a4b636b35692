#!/usr/bin/env bash
# See taskline work, from nothing: install, make sure PostgreSQL and Redis run, create and
# migrate the database, start a worker, send the demo commands, show what the worker did,
# and stop the worker again.
#
#   scripts/quickstart.sh
#
# DATABASE_URL and REDIS_URL are used when set; otherwise the local defaults below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN_DIR="$ROOT/.run"
WORKER_LOG="$RUN_DIR/worker.log"
START_WAIT_S="${TASKLINE_QUICKSTART_WAIT:-60}"
STOP_WAIT_S=30
WORKER_PID=""

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'quickstart: ERROR: %s\n' "$*" >&2; exit 1; }

bash scripts/install.sh

export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/taskline}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export PATH="$ROOT/.venv/bin:$PATH"
bash scripts/services.sh

# The Procfile's command for a process type, or the fallback.
procfile() {  # TYPE FALLBACK
    local line
    line="$(sed -n "s/^$1:[[:space:]]*//p" Procfile 2>/dev/null | head -n 1)"
    printf '%s\n' "${line:-$2}"
}

stop_worker() {
    [ -n "$WORKER_PID" ] || return 0
    if kill -0 "$WORKER_PID" 2>/dev/null; then
        kill -TERM "$WORKER_PID" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_WAIT_S))
        while kill -0 "$WORKER_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if kill -0 "$WORKER_PID" 2>/dev/null; then
            echo "quickstart: the worker did not stop within ${STOP_WAIT_S}s of SIGTERM; killing it" >&2
            kill -KILL "$WORKER_PID" 2>/dev/null || true
        fi
    fi
    local status=0
    wait "$WORKER_PID" 2>/dev/null || status=$?
    WORKER_PID=""
    return "$status"
}
trap 'stop_worker || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "database: $(printf '%s' "$DATABASE_URL" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#')"
python - <<'EOF'
import asyncio, os, re

import asyncpg

url = re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", os.environ["DATABASE_URL"])
base, _, rest = url.rpartition("/")
name = rest.split("?", 1)[0]


async def main() -> None:
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(f"{base}/postgres", timeout=10)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
        print(f"created database {name}")
    else:
        await conn.close()
        print(f"database {name} is there")


asyncio.run(main())
EOF

release="$(procfile release 'taskline migrate')"
say "release step (Procfile): $release"
bash -c "$release"

mkdir -p "$RUN_DIR"
worker="$(procfile worker 'taskline worker')"
say "starting a worker (Procfile: $worker), log in ${WORKER_LOG#"$ROOT"/}"
: >"$WORKER_LOG"
TASKLINE_LOG_FORMAT=console bash -c "exec $worker" >>"$WORKER_LOG" 2>&1 </dev/null &
WORKER_PID=$!
deadline=$((SECONDS + START_WAIT_S))
until grep -q "worker started" "$WORKER_LOG"; do
    if ! kill -0 "$WORKER_PID" 2>/dev/null; then
        tail -n 30 "$WORKER_LOG" >&2
        die "the worker exited before it started; its log is above"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 30 "$WORKER_LOG" >&2
        die "the worker did not log 'worker started' within ${START_WAIT_S}s; its log is above"
    fi
    sleep 0.2
done
echo "worker running (pid $WORKER_PID)"

say "taskline demo"
taskline demo

say "the worker's last log lines"
tail -n 15 "$WORKER_LOG"

say "stopping the worker (SIGTERM)"
logged="$(wc -l <"$WORKER_LOG")"
status=0
stop_worker || status=$?
tail -n "+$((logged + 1))" "$WORKER_LOG"
[ "$status" -eq 0 ] || die "the worker exited with status $status on SIGTERM; see $WORKER_LOG"
echo "worker stopped (exit status 0)"

cat <<EOF

Done. To run a worker yourself:

  export DATABASE_URL=$(printf '%s' "$DATABASE_URL" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#')
  export REDIS_URL=$REDIS_URL
  .venv/bin/taskline worker          # stop it with Ctrl-C (SIGINT) or SIGTERM
  .venv/bin/taskline demo            # in another terminal: send the demo commands again
  .venv/bin/taskline --help          # send, dead-letters list/show/replay/discard, schema, migrate
EOF
