#!/usr/bin/env bash
# Governance benchmarks (issue: "Speed it must reach"):
#   1. bulk 104 on 10,000 patients, one audit event each, on SQLite (target: under 5 s);
#   2. the ICB exclusion report over a generated service on PostgreSQL (target: under 2 s for
#      200 practices and 2 million patients) and one practice's report (target: under 100 ms).
#
#   scripts/bench-governance.sh [practices] [patients-per-practice]
#
# PostgreSQL comes from CALDICOTT_BENCH_PG (default: the local test server, database "bench"
# created if missing). Generating 200 x 10,000 patients takes a while; it is kept between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PRACTICES="${1:-200}"
PER="${2:-10000}"
cargo build --release -q -p caldicott
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/caldicott"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export CALDICOTT_LOG=warn

echo "== Bulk 104 on 10,000 patients (SQLite)"
export CALDICOTT_DATABASE="$WORK/bulk.db"
# 11,000 patients, about 1,000 of them already with an active 104: the cohort is about 10,000.
$BIN demo --build-only --patients 50 --seed 1 --practices 1 --practice-patients 11000 >/dev/null 2>&1
$BIN bulk-code --practice Y00001 --as manager --code 104 --min-age 0 >/dev/null 2>"$WORK/dry" || true
COUNT="$(sed -n 's/.*--confirm \([0-9]*\).*/\1/p' "$WORK/dry")"
echo "dry run: $COUNT patients"
$BIN bulk-code --practice Y00001 --as manager --code 104 --min-age 0 --confirm "$COUNT" 2>&1 >/dev/null | grep '^Done'
unset CALDICOTT_DATABASE

echo "== ICB report: $PRACTICES practices x $PER patients (PostgreSQL)"
PG="${CALDICOTT_BENCH_PG:-postgres://postgres@127.0.0.1:5432/bench}"
psql "postgres://postgres@127.0.0.1:5432/test" -qc "CREATE DATABASE bench" 2>/dev/null || true
export CALDICOTT_DATABASE="$PG"
$BIN demo --build-only --patients 50 --seed 1 --practices "$PRACTICES" --practice-patients "$PER" 2>&1 | grep -E '^Service|patients' | tail -2
# As autovacuum would after a bulk load: statistics, and the visibility map for index-only scans.
psql "$PG" -qc "VACUUM ANALYZE" >/dev/null
for i in 1 2 3; do
  $BIN report icb --practice Y90210 --as icb.analyst --format csv 2>&1 >/dev/null | grep Computed
done
for i in 1 2 3; do
  $BIN report exclusions --practice Y00010 --as manager --format json 2>&1 >/dev/null | grep Computed
done
