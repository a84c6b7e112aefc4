#!/usr/bin/env bash
# Load benchmark for the online-view endpoint (loopback only, bounded in time).
#
# Builds a release binary, builds a demo practice with one 2,000-entry record in a fresh SQLite
# database, starts the server on 127.0.0.1, and drives the first page (50 entries) of that
# patient's online view with wrk at 16 connections. Every request writes a durable audit event.
#
#   scripts/bench-load.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-20}"
CONNECTIONS="${2:-16}"
PORT="${BENCH_PORT:-18089}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

cargo build --release -q -p caldicott
BIN=target/release/caldicott
WORK="$(mktemp -d)"
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export CALDICOTT_DATABASE="$WORK/bench.db" CALDICOTT_LOG=warn

OUT="$($BIN demo --build-only --patients 200 --seed 1 --long-record 2000)"
NHS="$(sed -n 's/^Long record: NHS number //p' <<<"$OUT")"
TOKEN="$($BIN token create --practice Y90210 --staff dr.okafor --label bench --days 1 2>/dev/null)"
$BIN serve --listen "127.0.0.1:$PORT" &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

URL="http://127.0.0.1:$PORT/api/v1/patients/$NHS/online-view?limit=50"
ENTRIES="$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL" | grep -o '"entered_at"' | wc -l)"
echo "patient $NHS: first page has $ENTRIES entries"
BEFORE="$(sqlite3 "$CALDICOTT_DATABASE" 'select count from audit_head' 2>/dev/null || echo '?')"
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_TO_RUN}s" --latency -H "Authorization: Bearer $TOKEN" "$URL"
AFTER="$(sqlite3 "$CALDICOTT_DATABASE" 'select count from audit_head' 2>/dev/null || echo '?')"
echo "audit events written during the run: $((AFTER - BEFORE))"
$BIN audit verify | tail -1
