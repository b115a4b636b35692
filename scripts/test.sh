#!/usr/bin/env bash
# Everything CI checks: install (with a Node.js for the TypeScript producer), install the system
# packages the tests need and make sure PostgreSQL and Redis run, then ruff, the lock files against
# pyproject.toml (scripts/lock.sh --check), pip-audit of the locked set (scripts/audit_lock.py),
# mypy, pytest, and the TypeScript producer's own tests (npm test). Ends with one line of counts
# for pytest and npm test.
#
#   scripts/test.sh                      # the whole suite
#   scripts/test.sh -q -x tests/unit     # arguments go to pytest
#   TASKLINE_TEST_PROCESSES=0 scripts/test.sh   # pytest in one process (default: 3, pytest-xdist)
#
# The tests find the services through TASKLINE_TEST_ADMIN_DATABASE_URL (default
# postgresql://postgres@127.0.0.1:5432/postgres) and TASKLINE_TEST_REDIS_URL (default
# redis://127.0.0.1:6379). All checks run; the script fails if any of them failed.
#
# A test skipped because a tool is missing (Chromium, redis-server, PostgreSQL's server binaries,
# openssl, node, ...) did not run. Where this script could have installed that tool (as root or
# with sudo, with apt-get; and always in CI) such a skip fails the run: the set-up is broken.
# Elsewhere (no root) those skips are allowed, and listed before the counts. TASKLINE_TEST_STRICT=1
# or 0 decides it either way.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/install.sh --tests
bash scripts/services.sh --tests
export PATH="$ROOT/.venv/bin:$PATH"  # the venv's tools, and the Node.js install.sh may have put there

if [ -n "${TASKLINE_TEST_STRICT:-}" ]; then
    strict="$TASKLINE_TEST_STRICT"
elif [ -n "${CI:-}" ] && [ "${CI:-}" != false ]; then
    strict=1
elif command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; }; then
    strict=1
else
    strict=0
fi

RUN_DIR="$ROOT/.run"
JUNIT="$RUN_DIR/pytest-junit.xml"
NPM_LOG="$RUN_DIR/npm-test.log"
mkdir -p "$RUN_DIR"
rm -f "$JUNIT" "$NPM_LOG"

failed=()
step() {  # NAME COMMAND...
    local name="$1"
    shift
    printf '\n==> %s\n' "$name"
    "$@" || failed+=("$name")
}
npm_test() { npm --prefix producers/typescript test 2>&1 | tee "$NPM_LOG"; }

step "ruff check ." .venv/bin/ruff check .
# The lock files against pyproject.toml, and the locked set against PyPI's advisories (both ask PyPI).
step "lock files match pyproject.toml (scripts/lock.sh --check)" bash scripts/lock.sh --check
step "pip-audit of the locked set (scripts/audit_lock.py)" .venv/bin/python scripts/audit_lock.py
step "mypy" .venv/bin/mypy
# Several test processes (pytest-xdist): most tests wait on PostgreSQL, Redis, workers or a browser,
# so three processes finish a 2-core machine's run in about half the time of one. A file stays in
# one process (--dist loadgroup, tests/conftest.py). TASKLINE_TEST_PROCESSES=0 runs in this process.
processes="${TASKLINE_TEST_PROCESSES:-3}"
xdist=(-n "$processes")
[ "$processes" = 0 ] || xdist+=(--dist loadgroup)
step "pytest $*" .venv/bin/pytest "${xdist[@]}" --junitxml="$JUNIT" "$@"
if command -v npm >/dev/null 2>&1 && [ -d producers/typescript/node_modules ]; then
    step "npm test (producers/typescript)" npm_test
fi

printf '\n==> summary\n'
summary_status=0
.venv/bin/python scripts/test_summary.py --junit "$JUNIT" --npm-log "$NPM_LOG" --strict "$strict" || summary_status=$?
if [ "$summary_status" -ne 0 ]; then
    failed+=("set-up: tests skipped for a missing tool")
fi

if [ "${#failed[@]}" -gt 0 ]; then
    message="${failed[0]}"
    for name in "${failed[@]:1}"; do message+="; $name"; done
    printf 'test.sh: FAILED: %s\n' "$message" >&2
fi
# The last line: the counts of pytest and npm test together.
cat "$RUN_DIR/test-summary.txt"
[ "${#failed[@]}" -eq 0 ]
