#!/usr/bin/env bash
# The lock files: every third-party package taskline installs, pinned, with the hashes pip checks.
#
#   scripts/lock.sh            # write requirements.lock and requirements-dev.lock from pyproject.toml
#   scripts/lock.sh --upgrade  # the same, taking the newest versions pyproject.toml allows
#   scripts/lock.sh --check    # fail when a lock file no longer matches pyproject.toml (CI)
#
# requirements.lock is what a deployment installs (the runtime dependencies), requirements-dev.lock
# what scripts/install.sh installs (the same plus the dev tools). Both come from `uv pip compile`
# (uv 0.13, a dev dependency): --universal makes one file for every platform and Python 3.11+,
# and the existing pins are kept unless pyproject.toml asks for other versions, so --check is a
# plain comparison. The two taskline distributions themselves (this project and the producer
# client in producers/python, a path dependency) are left out of the files: pip cannot hash a
# source tree, and scripts/install.sh installs them from the checkout with --no-deps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV="${UV:-$ROOT/.venv/bin/uv}"
# uv trusts its own certificate roots, not pip's: where pip is told of a proxy's authority
# (PIP_CERT), tell uv too (it resolves the producer's build requirements from the index).
if [ -z "${SSL_CERT_FILE:-}" ] && [ -n "${PIP_CERT:-}" ]; then export SSL_CERT_FILE="$PIP_CERT"; fi
[ -x "$UV" ] || UV="$(command -v uv)" || { echo "lock.sh: no uv; run scripts/install.sh first" >&2; exit 2; }

mode="${1:-write}"
case "$mode" in
    write | --upgrade | --check) ;;
    *) echo "usage: $0 [--upgrade | --check]" >&2; exit 2 ;;
esac

compile() {  # OUTPUT [EXTRA...]: resolve pyproject.toml into OUTPUT (its pins kept as preferences)
    local output="$1"
    shift
    local upgrade=()
    [ "$mode" = --upgrade ] && upgrade=(--upgrade)
    "$UV" pip compile pyproject.toml "$@" "${upgrade[@]}" --universal --python-version 3.11 \
        --generate-hashes --no-emit-package taskline-producer --quiet \
        --custom-compile-command "scripts/lock.sh" -o "$output"
}

status=0
for lock in requirements.lock requirements-dev.lock; do
    extras=(--extra otel)  # tracing's packages: locked with the rest, imported only when OTEL_* turns it on
    [ "$lock" = requirements-dev.lock ] && extras+=(--extra dev)
    if [ "$mode" = --check ]; then
        scratch="$(mktemp)"
        [ -f "$lock" ] && cp "$lock" "$scratch"
        compile "$scratch" "${extras[@]}"
        if [ ! -f "$lock" ] || ! diff -u "$lock" "$scratch" >"$scratch.diff"; then
            echo "lock.sh: $lock does not match pyproject.toml; run scripts/lock.sh and commit it" >&2
            [ -f "$scratch.diff" ] && head -n 40 "$scratch.diff" >&2
            status=1
        else
            echo "lock.sh: $lock matches pyproject.toml"
        fi
        rm -f "$scratch" "$scratch.diff"
    else
        compile "$lock" "${extras[@]}"
        echo "lock.sh: wrote $lock ($(grep -c '==' "$lock") packages)"
    fi
done
exit "$status"
