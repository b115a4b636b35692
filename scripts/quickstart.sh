#!/usr/bin/env bash
# See taskline work, from nothing: install, make sure PostgreSQL and Redis run, create and
# migrate the database, start a worker, send the demo commands, show what the worker did,
# and stop the worker again.
#
#   scripts/quickstart.sh
#
# It writes only into places of its own (scripts/quickstart_places.py), never into data it did
# not write:
# - PostgreSQL: the database `taskline_quickstart` on the local server, which it creates and
#   marks as its own (a comment on the database). An existing database without that mark is
#   asked about on a terminal, and left alone otherwise.
# - Redis: a database number of its own on the local server: the one an earlier run marked (key
#   `taskline-quickstart:owner`), else the first empty one from 15 down to 1, claimed in one
#   atomic step. Never database 0 by default.
# DATABASE_URL and REDIS_URL choose other places; the same checks apply to them (a Redis
# database that holds keys the quick start did not write is refused).
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

export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/taskline_quickstart}"
export QUICKSTART_REDIS_URL="${REDIS_URL:-}"  # the user's choice, if any
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
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

redacted() { printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'; }

say "database: $(redacted "$DATABASE_URL")"
db_name="$(printf '%s' "$DATABASE_URL" | sed -E 's#^.*/##; s#\?.*$##')"
db_state="$(python scripts/quickstart_places.py database)" || die "could not check database $db_name (the error is above)"
case "$db_state" in
    created) echo "created database $db_name (the quick start's own)" ;;
    ours) echo "database $db_name is the quick start's own (made by an earlier run)" ;;
    foreign*)
        why="${db_state#foreign }"
        if [ -t 0 ] && [ -t 1 ]; then
            printf 'Database %s exists, but %s.\nMigrate it and write the demo into it (users 1-3, two tasks, a dead letter)? [y/N] ' "$db_name" "$why"
            answer=""
            read -r answer || true
            case "$answer" in
                y | Y | yes) ;;
                *) die "left database $db_name alone; set DATABASE_URL to a database that does not exist yet, and the quick start creates it" ;;
            esac
        else
            die "database $db_name exists, but $why: the quick start does not write into it. Drop it, or set DATABASE_URL to a database that does not exist yet (the quick start creates it and marks it as its own), or run this on a terminal to be asked"
        fi
        ;;
    *) die "could not check database $db_name: $db_state" ;;
esac

say "redis: $(redacted "$REDIS_URL")"
redis_choice="$(python scripts/quickstart_places.py redis)" || die "could not choose a Redis database (the error is above)"
case "$redis_choice" in
    refused*)
        die "${redis_choice#refused }: the quick start does not write into it. Point REDIS_URL at an empty database (for example redis://127.0.0.1:6379/15), or unset it and the quick start takes an empty one of its own" ;;
    *)
        export REDIS_URL="$redis_choice"
        echo "Redis database ${REDIS_URL##*/} is the quick start's own (key taskline-quickstart:owner in it)" ;;
esac

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

  export DATABASE_URL=$(redacted "$DATABASE_URL")
  export REDIS_URL=$REDIS_URL
  .venv/bin/taskline worker          # stop it with Ctrl-C (SIGINT) or SIGTERM
  .venv/bin/taskline demo            # in another terminal: send the demo commands again
  .venv/bin/taskline --help          # send, dead-letters list/show/replay/discard, schema, migrate
EOF
