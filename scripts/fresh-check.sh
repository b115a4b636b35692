#!/usr/bin/env bash
# Prove that the README's two commands work on a fresh, minimal Debian 12, with nothing skipped.
#
#   scripts/fresh-check.sh            # quickstart.sh, then the whole test.sh (15 to 20 minutes)
#   scripts/fresh-check.sh --light    # install steps + the tests that need system packages only
#   scripts/fresh-check.sh --keep     # keep the chroot afterwards (its path is printed)
#
# Needs root on a Debian (or Ubuntu) machine. It:
# 1. builds a minimal Debian 12 with debootstrap (installed from Debian's packages when missing):
#    `--variant=minbase` with only python3, python3-venv, git and ca-certificates, plus the
#    bookworm-updates and bookworm-security lines that Debian's installer and images have;
# 2. clones this checkout's HEAD into it (commits only: uncommitted changes are not taken);
# 3. runs scripts/quickstart.sh and then scripts/test.sh there, as root, as a user would, and
#    prints one line with the test counts (the last line). --light runs, instead,
#    `scripts/test.sh` on the test files that use a system tool (shutil.which, Chromium, node).
# It exits 0 only when both commands did. A test skipped for a missing tool fails test.sh there
# (it runs as root, so it can install every tool: see scripts/test.sh).
#
# Isolation: the fresh machine runs in namespaces of its own (unshare): a network namespace with
# only its own loopback, so it cannot find this machine's PostgreSQL or Redis on 127.0.0.1 and
# must install and start its own; a PID namespace, so that every process it leaves (servers,
# workers, browsers) is killed when it ends; a mount namespace, so that its /proc, /sys, /dev,
# /dev/pts and /dev/shm mounts vanish with it. It reaches the package registries (Debian, PyPI,
# npm) only through scripts/fresh_check_proxy.py: a CONNECT proxy on a Unix socket here, and a
# forwarder from the namespace's 127.0.0.1:3128 to that socket. http_proxy and https_proxy point
# there; no_proxy keeps 127.0.0.1 and localhost direct.
#
# Certificates: where downloads pass through a proxy with a certificate authority of its own,
# this machine has it in /usr/local/share/ca-certificates; those files are copied into the
# chroot (then update-ca-certificates), and PIP_CERT, NODE_EXTRA_CA_CERTS, SSL_CERT_FILE (uv)
# and REQUESTS_CA_BUNDLE (pip-audit) name the resulting bundle, since pip, npm, uv and requests
# do not read the system's store by themselves. /etc/pip.conf is copied when there is one.
#
# Clean-up, also on Ctrl-C or an error: the namespaces' processes die with them, the proxy is
# stopped, any mount left under the chroot is unmounted, and the chroot is removed unless --keep.
# FRESH_CHECK_DIR picks the parent directory (default /var/tmp); the chroot needs about 3 GB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE=bookworm
PROXY_PORT=3128
KEEP=0
MODE=full
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        --light) MODE=light ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--light] [--keep]" >&2; exit 2 ;;
    esac
done

say() { printf 'fresh-check: %s\n' "$*"; }
die() { printf 'fresh-check: ERROR: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
elapsed() {  # SECONDS -> "4 min 3 s"
    if [ "$1" -ge 60 ]; then printf '%d min %d s' $(($1 / 60)) $(($1 % 60)); else printf '%d s' "$1"; fi
}

[ "$(id -u)" -eq 0 ] || die "run this as root (debootstrap, chroot and namespaces need it)"
have apt-get || die "this needs a Debian or Ubuntu machine (apt-get, to install debootstrap)"
have python3 || die "python3 is needed (for the proxy)"
{ have unshare && have chroot; } || die "unshare and chroot (util-linux, coreutils) are needed"
missing=()
have debootstrap || missing+=(debootstrap)
have ip || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} from Debian's packages"
    apt-get update -q >/dev/null 2>&1 || say "apt-get update failed; trying with the package lists as they are"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi

COMMIT="$(git -C "$ROOT" rev-parse HEAD)" || die "$ROOT is not a git checkout"
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
    say "note: uncommitted changes in $ROOT are not part of the check (it clones commit ${COMMIT:0:12})"
fi

WORK="$(mktemp -d "${FRESH_CHECK_DIR:-/var/tmp}/taskline-fresh.XXXXXX")"
CHROOT="$WORK/root"
PROXY_PID=""
NS_PID=""

mounts_under() {  # mount points at or below $CHROOT, deepest first
    awk -v root="$CHROOT" '$5 == root || index($5, root "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
cleanup() {
    local status=$? proc pid mount
    trap - EXIT INT TERM
    if [ -n "$NS_PID" ] && kill -0 "$NS_PID" 2>/dev/null; then
        # unshare ignores SIGTERM while it waits; killed, it takes the namespace down with it
        # (--kill-child), and every process in the PID namespace dies with the namespace's first.
        kill -KILL "$NS_PID" 2>/dev/null || true
        wait "$NS_PID" 2>/dev/null || true
    fi
    if [ -n "$PROXY_PID" ]; then
        kill -TERM "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    # Nothing should be left (the PID namespace ends its processes), but never leave a process
    # that runs inside the chroot.
    for proc in /proc/[0-9]*; do
        pid="${proc#/proc/}"
        if [ "$(readlink "$proc/root" 2>/dev/null)" = "$CHROOT" ]; then
            say "killing process $pid left in the chroot"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for mount in $(mounts_under); do
        umount -l "$mount" 2>/dev/null || say "could not unmount $mount"
    done
    if [ -n "$(mounts_under)" ]; then
        say "mounts are left under $CHROOT; not removing it"
    elif [ "$KEEP" = 1 ]; then
        say "kept the chroot: $CHROOT (logs in $WORK; remove it with: rm -rf --one-file-system $WORK)"
    else
        rm -rf --one-file-system "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. the minimal Debian

START=$SECONDS
say "building a minimal Debian 12 ($SUITE, minbase) in $CHROOT (log: $WORK/debootstrap.log)"
# Debian's default mirror (debootstrap's own default), unless FRESH_CHECK_MIRROR names one.
# shellcheck disable=SC2086
if ! debootstrap --variant=minbase --include=python3,python3-venv,git,ca-certificates \
    "$SUITE" "$CHROOT" ${FRESH_CHECK_MIRROR:-} >"$WORK/debootstrap.log" 2>&1; then
    tail -n 20 "$WORK/debootstrap.log" >&2
    die "debootstrap failed; the end of its log is above"
fi
BUILT=$((SECONDS - START))
say "debootstrap done in $(elapsed "$BUILT")"

# The same archive for updates and security, as an installed Debian has them.
mirror="$(awk '$1 == "deb" { print $2; exit }' "$CHROOT/etc/apt/sources.list")"
[ -n "$mirror" ] || die "debootstrap wrote no apt source"
cat >"$CHROOT/etc/apt/sources.list" <<EOF
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb ${mirror%/debian}/debian-security $SUITE-security main
EOF
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$CHROOT/etc/hosts"
# No name server inside: apt, pip and npm ask the proxy, which resolves names here.
printf '# scripts/fresh-check.sh: no name server; the registries are reached through the proxy\n' >"$CHROOT/etc/resolv.conf"

extra_cas=0
for ca in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$ca" ] || continue
    cp "$ca" "$CHROOT/usr/local/share/ca-certificates/"
    extra_cas=$((extra_cas + 1))
done
if [ "$extra_cas" -gt 0 ]; then
    chroot "$CHROOT" update-ca-certificates >>"$WORK/debootstrap.log" 2>&1 || die "update-ca-certificates failed in the chroot"
    say "copied $extra_cas certificate authorities of this machine into the chroot"
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$CHROOT/etc/pip.conf"

git clone --quiet --no-hardlinks "$ROOT" "$CHROOT/root/taskline"
git -C "$CHROOT/root/taskline" checkout --quiet --detach "$COMMIT"
say "cloned commit ${COMMIT:0:12} into /root/taskline"

# ---------------------------------------------------------------- 2. the proxy

rm -f "$WORK/proxy.sock"
python3 "$ROOT/scripts/fresh_check_proxy.py" serve "$WORK/proxy.sock" "$WORK/proxy.log" &
PROXY_PID=$!
for _ in $(seq 50); do [ -S "$WORK/proxy.sock" ] && break; sleep 0.1; done
[ -S "$WORK/proxy.sock" ] || die "the proxy did not start"

# ---------------------------------------------------------------- 3. the README's commands

proxy_url="http://127.0.0.1:$PROXY_PORT"
chroot_env=(
    HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    "http_proxy=$proxy_url" "https_proxy=$proxy_url" "HTTP_PROXY=$proxy_url" "HTTPS_PROXY=$proxy_url"
    "no_proxy=127.0.0.1,localhost,::1" "NO_PROXY=127.0.0.1,localhost,::1"
)
if [ "$extra_cas" -gt 0 ]; then
    chroot_env+=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
    # uv (scripts/lock.sh) and requests (pip-audit) do not read PIP_CERT either
    chroot_env+=(SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt)
fi
if [ "$MODE" = full ]; then
    # shellcheck disable=SC2016  # expanded in the chroot
    commands='scripts/quickstart.sh </dev/null; echo "quickstart $? $SECONDS" >/root/fresh-result
SECONDS=0
scripts/test.sh </dev/null; echo "test $? $SECONDS" >>/root/fresh-result'
else
    # The test files that use a tool from outside the venv: a server binary, openssl, Chromium, node.
    files="$(cd "$ROOT" && git grep -lE 'shutil\.which\(|/usr/bin/chromium|node_producer|initdb' "$COMMIT" -- 'tests/*/test_*.py' \
        | sed "s/^$COMMIT://" | tr '\n' ' ')"
    [ -n "$files" ] || die "found no test file that uses a system tool"
    say "light: scripts/test.sh $files"
    commands="echo 'quickstart 0 0' >/root/fresh-result
SECONDS=0
scripts/test.sh $files </dev/null; echo \"test \$? \$SECONDS\" >>/root/fresh-result"
fi

# Runs as PID 1 of the new namespaces, with this machine's tools; only the commands are chrooted.
# shellcheck disable=SC2016
inner='
set -euo pipefail
C="$1" SOCK="$2" PORT="$3" PROXY="$4" COMMANDS="$5"
shift 5
ip link set lo up
mount -t proc proc "$C/proc"
mount -t sysfs -o ro sysfs "$C/sys"
mount --bind /dev "$C/dev"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$C/dev/pts"
mount --bind "$C/dev/pts/ptmx" "$C/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$C/dev/shm"
python3 "$PROXY" forward "$PORT" "$SOCK" &
for _ in $(seq 50); do
    python3 -c "import socket, sys; socket.create_connection((\"127.0.0.1\", $PORT), 1).close()" 2>/dev/null && break
    sleep 0.1
done
chroot "$C" /usr/bin/env -i "$@" /bin/bash -c "cd /root/taskline && $COMMANDS"
'
say "running the README's commands in the chroot ($MODE; output: $WORK/run.log)"
START=$SECONDS
unshare --net --pid --mount --fork --kill-child --propagation private -- \
    bash -c "$inner" fresh-ns "$CHROOT" "$WORK/proxy.sock" "$PROXY_PORT" "$ROOT/scripts/fresh_check_proxy.py" "$commands" \
    "${chroot_env[@]}" >"$WORK/run.log" 2>&1 </dev/null &
NS_PID=$!
ns_status=0
wait "$NS_PID" || ns_status=$?
NS_PID=""
RAN=$((SECONDS - START))

# ---------------------------------------------------------------- 4. the result

read -r _ qs_status qs_s <<<"$(grep '^quickstart ' "$CHROOT/root/fresh-result" 2>/dev/null || echo "quickstart ? 0")"
read -r _ test_status test_s <<<"$(grep '^test ' "$CHROOT/root/fresh-result" 2>/dev/null || echo "test ? 0")"
summary="$(grep -E '^test\.sh: [0-9]+ passed' "$CHROOT/root/taskline/.run/test-summary.txt" 2>/dev/null | tail -n 1 || true)"
if [ "$qs_status" != 0 ] || [ "$test_status" != 0 ]; then
    echo "--- the last lines of $WORK/run.log:" >&2
    tail -n 40 "$WORK/run.log" >&2
fi
# What test.sh said about skips and npm test.
sed -n '/^==> summary$/,$p' "$WORK/run.log" | sed '1d; /^test\.sh: [0-9]/d' | sed 's/^/  /'
[ "$MODE" = full ] && quick="quickstart.sh exit $qs_status ($(elapsed "${qs_s:-0}")); " || quick=""
say "Debian 12 minbase chroot, commit ${COMMIT:0:12}, $MODE: debootstrap $(elapsed "$BUILT"); ${quick}test.sh exit $test_status ($(elapsed "${test_s:-0}")); all $(elapsed "$RAN") in the namespace"
counts="${summary#test.sh: }"
echo "fresh-check: ${counts:-no test counts (test.sh did not get to its summary)}"
[ "$ns_status" = 0 ] && [ "$qs_status" = 0 ] && [ "$test_status" = 0 ]
