#!/usr/bin/env bash
# Everything CI checks: install, make sure PostgreSQL and Redis run, then ruff, mypy, pytest, and
# the TypeScript producer's own tests (npm test) when Node.js is installed.
#
#   scripts/test.sh                      # the whole suite
#   scripts/test.sh -q -x tests/unit     # arguments go to pytest
#
# The tests find the services through TASKLINE_TEST_ADMIN_DATABASE_URL (default
# postgresql://postgres@127.0.0.1:5432/postgres) and TASKLINE_TEST_REDIS_URL (default
# redis://127.0.0.1:6379). All three checks run; the script fails if any of them failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/install.sh
bash scripts/services.sh --tests

failed=()
step() {  # NAME COMMAND...
    local name="$1"
    shift
    printf '\n==> %s\n' "$name"
    "$@" || failed+=("$name")
}
step "ruff check ." .venv/bin/ruff check .
# The lock files against pyproject.toml, and the locked set against PyPI's advisories (both ask PyPI).
step "lock files match pyproject.toml (scripts/lock.sh --check)" bash scripts/lock.sh --check
step "pip-audit of the locked set (scripts/audit_lock.py)" .venv/bin/python scripts/audit_lock.py
step "mypy" .venv/bin/mypy
step "pytest $*" .venv/bin/pytest "$@"
if command -v npm >/dev/null 2>&1; then
    step "npm test (producers/typescript)" npm --prefix producers/typescript test
fi

if [ "${#failed[@]}" -gt 0 ]; then
    message="${failed[0]}"
    for name in "${failed[@]:1}"; do message+="; $name"; done
    printf '\ntest.sh: FAILED: %s\n' "$message" >&2
    exit 1
fi
