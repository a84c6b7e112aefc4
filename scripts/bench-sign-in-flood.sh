#!/usr/bin/env bash
# Does a flood of sign-ins slow record reads? (argon2 runs on the blocking pool behind a
# semaphore of half the cores, never on the async workers.)
#
# Builds a release binary and a demo practice with one 2,000-entry record (SQLite), starts the
# server on 127.0.0.1, and measures GET /health and the first page of that patient's online view
# with wrk (4 connections each, one after the other), first alone and then while 16 connections
# post wrong passwords to /sign-in without pause. The per-address limit is lifted for the run
# (CALDICOTT_THROTTLE_PEOPLE), since every request comes from 127.0.0.1 and would otherwise be
# answered 429 without hashing: every flood request costs one argon2 check.
#
#   scripts/bench-sign-in-flood.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-10}"
PORT="${BENCH_PORT:-18091}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p caldicott
BIN="${CARGO_TARGET_DIR:-target}/release/caldicott"
WORK="$(mktemp -d)"
cleanup() {
  kill "${SERVER:-0}" "${FLOOD:-0}" 2>/dev/null || true
  wait "${SERVER:-0}" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export CALDICOTT_LOG=error CALDICOTT_DATABASE="$WORK/bench.db" CALDICOTT_THROTTLE_PEOPLE="1000000/0.000001"
OUT="$($BIN demo --build-only --patients 200 --seed 1 --long-record 2000)"
NHS="$(sed -n 's/^Long record: NHS number //p' <<<"$OUT")"
TOKEN="$($BIN token create --practice Y90210 --staff dr.okafor --label bench --days 1 2>/dev/null)"
$BIN serve --listen "127.0.0.1:$PORT" &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
RECORD="http://127.0.0.1:$PORT/api/v1/patients/$NHS/online-view?limit=50"

# The sign-in form's cookie and token, reused by every flood request.
PAGE="$(curl -s -c "$WORK/jar" "http://127.0.0.1:$PORT/sign-in")"
CSRF="$(grep -o 'name="_csrf" value="[^"]*"' <<<"$PAGE" | head -1 | sed 's/.*value="//; s/"$//')"
COOKIE="$(awk '{ sub(/^#HttpOnly_/, "") } !/^#/ && NF >= 7 { printf "%s=%s; ", $6, $7 }' "$WORK/jar")"
cat > "$WORK/flood.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "$COOKIE"
wrk.body = "_csrf=$CSRF&username=dr.okafor&password=not-the-password"
LUA

measure() {
  local label="$1"
  echo "== $label: /health"
  wrk -t1 -c4 -d"${SECONDS_TO_RUN}s" --latency "http://127.0.0.1:$PORT/health" | grep -E "Requests/sec|^ +(50|99)%"
  echo "== $label: online view (50 of 2,000 entries, audited)"
  wrk -t1 -c4 -d"${SECONDS_TO_RUN}s" --latency -H "Authorization: Bearer $TOKEN" "$RECORD" | grep -E "Requests/sec|^ +(50|99)%"
}

measure "alone"
wrk -t1 -c16 -d"$((SECONDS_TO_RUN * 2 + 5))s" -s "$WORK/flood.lua" "http://127.0.0.1:$PORT/sign-in" > "$WORK/flood.txt" &
FLOOD=$!
sleep 2
measure "during a sign-in flood (16 connections)"
wait "$FLOOD" || true
echo "== the flood itself"
grep -E "Requests/sec|Non-2xx|Latency" "$WORK/flood.txt" || true
