#!/usr/bin/env bash
# docs/signing.md, "Signing without a taskline client", done with nothing but a shell, openssl
# and redis-cli: write the job with the mac as 64 zeros, HMAC-SHA256 it with the secret, put the
# MAC in place of the zeros, and enqueue those bytes with the plain Redis commands of
# docs/contract.md (WATCH, EXISTS, MULTI, SET ... PX, ZADD, EXEC).
#
# Environment: REDIS_URL, QUEUE, KEY_ID, SECRET, FUNCTION, COMMAND_ID (the job id) and COMMAND
# (the command's JSON object, as the service writes it). Prints the signed job on stdout.
set -euo pipefail

zeros=0000000000000000000000000000000000000000000000000000000000000000
now_ms=$(( $(date +%s%N) / 1000000 ))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The job as it will be enqueued, with "contract":3 and the sig member written exactly so.
printf '{"f":"%s","a":[%s],"k":{"contract":3,"sig":{"kid":"%s","mac":"%s"}},"t":null,"et":%s}' \
    "$FUNCTION" "$COMMAND" "$KEY_ID" "$zeros" "$now_ms" > "$work/zeroed.json"

# 2. HMAC-SHA256 of those bytes, keyed with the secret, as 64 lower-case hex digits.
mac=$(openssl dgst -sha256 -hmac "$SECRET" < "$work/zeroed.json" | sed 's/^.*= //')

# 3. The 64 zeros replaced by the MAC; these exact bytes are enqueued.
sed "s/\"mac\":\"$zeros\"/\"mac\":\"$mac\"/" "$work/zeroed.json" > "$work/job.json"

# A duplicate (the id is queued or running) is left alone. redis-cli cannot branch between the
# commands it sends on one connection, so that check also runs once on its own, first.
if [ "$(redis-cli -u "$REDIS_URL" EXISTS "arq:job:$COMMAND_ID" "arq:result:$COMMAND_ID")" != 0 ]; then
    echo "duplicate: arq:job:$COMMAND_ID exists" >&2
    exit 3
fi
# redis-cli reads commands from stdin and unquotes "..." arguments: escape \ and " in the job.
quoted=$(sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' "$work/job.json")
{
    printf 'WATCH arq:job:%s\n' "$COMMAND_ID"
    printf 'EXISTS arq:job:%s arq:result:%s\n' "$COMMAND_ID" "$COMMAND_ID"
    printf 'MULTI\n'
    printf 'SET arq:job:%s "%s" PX 86400000\n' "$COMMAND_ID" "$quoted"
    printf 'ZADD %s %s %s\n' "$QUEUE" "$now_ms" "$COMMAND_ID"
    printf 'EXEC\n'
} | redis-cli -u "$REDIS_URL" > "$work/replies.txt"
# Replies: OK (WATCH), 0 (EXISTS), OK (MULTI), QUEUED, QUEUED, then OK and 1 for the EXEC that ran.
if [ "$(sed -n 2p "$work/replies.txt")" != 0 ] || [ "$(sed -n 6p "$work/replies.txt")" != OK ]; then
    echo "not enqueued (a duplicate, or a failed EXEC): $(tr '\n' ' ' < "$work/replies.txt")" >&2
    exit 1
fi
cat "$work/job.json"
