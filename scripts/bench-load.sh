#!/usr/bin/env bash
# Load benchmark for the online-view endpoint (loopback only, bounded in time).
#
# Builds a release binary, builds a demo practice with one 2,000-entry record in a fresh SQLite
# database, starts the server on 127.0.0.1, and drives the first page (50 entries) of that
# patient's online view with wrk at 16 connections. Every request writes a durable audit event.
#
#   scripts/bench-load.sh [seconds] [connections]
#
# With BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432 it runs against a fresh PostgreSQL
# database on that server instead (created and dropped by the script). With BENCH_DATABASE set to
# an empty database's URL (a Citus coordinator's database, say, made with citus.sh createdb) it
# builds into that one and leaves it. BENCH_PRACTICES=200 (and BENCH_PRACTICE_PATIENTS, default
# 10,000) also builds that many lean practices beside the demo practice: the 200-practice service
# of the governance benchmark, with the record read in one practice of many.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-20}"
CONNECTIONS="${2:-16}"
PORT="${BENCH_PORT:-18089}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

cargo build --release -q -p caldicott
BIN="${CARGO_TARGET_DIR:-target}/release/caldicott"
WORK="$(mktemp -d)"
PGDB=""
cleanup() {
  kill "${SERVER:-0}" 2>/dev/null || true
  wait "${SERVER:-0}" 2>/dev/null || true
  [ -n "$PGDB" ] && psql "$BENCH_POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
export CALDICOTT_LOG=warn
if [ -n "${BENCH_DATABASE:-}" ]; then
  export CALDICOTT_DATABASE="$BENCH_DATABASE"
elif [ -n "${BENCH_POSTGRES:-}" ]; then
  PGDB="caldicott_bench_$$"
  psql "$BENCH_POSTGRES/postgres" -qc "CREATE DATABASE $PGDB" >/dev/null
  export CALDICOTT_DATABASE="$BENCH_POSTGRES/$PGDB"
else
  export CALDICOTT_DATABASE="$WORK/bench.db"
fi

OUT="$($BIN demo --build-only --patients 200 --seed 1 --long-record 2000 \
  --practices "${BENCH_PRACTICES:-0}" --practice-patients "${BENCH_PRACTICE_PATIENTS:-10000}")"
if [ -n "${BENCH_DATABASE:-}" ] || [ -n "${BENCH_POSTGRES:-}" ]; then
  # As autovacuum would after a bulk load: statistics, and the visibility map for index-only scans.
  psql "$CALDICOTT_DATABASE" -qc "VACUUM ANALYZE" >/dev/null
fi
NHS="$(sed -n 's/^Long record: NHS number //p' <<<"$OUT")"
TOKEN="$($BIN token create --practice Y90210 --staff dr.okafor --label bench --days 1 2>/dev/null)"
$BIN serve --listen "127.0.0.1:$PORT" &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

URL="http://127.0.0.1:$PORT/api/v1/patients/$NHS/online-view?limit=50"
ENTRIES="$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL" | grep -o '"entered_at"' | wc -l)"
echo "patient $NHS: first page has $ENTRIES entries"
BEFORE="$($BIN audit checkpoint --practice Y90210 | sed -n 's/.*"count":\([0-9]*\).*/\1/p')"
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_TO_RUN}s" --latency -H "Authorization: Bearer $TOKEN" "$URL"
AFTER="$($BIN audit checkpoint --practice Y90210 | sed -n 's/.*"count":\([0-9]*\).*/\1/p')"
echo "audit events written during the run: $((AFTER - BEFORE))"
START=$(date +%s.%N)
$BIN audit verify --practice Y90210 | tail -1
echo "audit verify: $AFTER events in $(echo "$(date +%s.%N) - $START" | bc) s"
