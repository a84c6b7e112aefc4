#!/usr/bin/env bash
# Governance benchmarks (issue: "Speed it must reach"):
#   1. bulk 104 on 10,000 patients, one audit event each, on SQLite (target: under 5 s);
#   2. the ICB exclusion report over a generated service on PostgreSQL (target: under 2 s for
#      200 practices and 2 million patients) and one practice's report (target: under 100 ms).
#
#   3. the same bulk 104 on one practice of that service, on PostgreSQL (or Citus).
#
#   scripts/bench-governance.sh [practices] [patients-per-practice] [bulk-patients]
#
# PostgreSQL comes from CALDICOTT_BENCH_PG (default: the local test server, database "bench"
# created if missing; a Citus coordinator's database runs it on Citus). Generating 200 x 10,000
# patients takes a while; it is kept between runs. BENCH_BIN runs a binary already built (the
# Citus suite runs this at a small size with the test build) instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
PRACTICES="${1:-200}"
PER="${2:-10000}"
BULK="${3:-11000}"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  cargo build --release -q -p caldicott
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/caldicott"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export CALDICOTT_LOG=warn

# The dry run says how many patients a bulk 104 would code; the apply must be given that count.
bulk_104() {
  $BIN bulk-code --practice "$1" --as manager --code 104 --min-age 0 >/dev/null 2>"$WORK/dry" || true
  COUNT="$(sed -n 's/.*--confirm \([0-9]*\).*/\1/p' "$WORK/dry")"
  [ -n "$COUNT" ] || { cat "$WORK/dry" >&2; exit 1; }
  echo "dry run: $COUNT patients"
  $BIN bulk-code --practice "$1" --as manager --code 104 --min-age 0 --confirm "$COUNT" 2>&1 >/dev/null | grep '^Done'
  $BIN audit verify --practice "$1" | tail -1
}

echo "== Bulk 104 on $BULK patients (SQLite)"
export CALDICOTT_DATABASE="$WORK/bulk.db"
# 11,000 patients, about 1,000 of them already with an active 104: the cohort is about 10,000.
$BIN demo --build-only --patients 50 --seed 1 --practices 1 --practice-patients "$BULK" >/dev/null 2>&1
bulk_104 Y00001
unset CALDICOTT_DATABASE

echo "== ICB report: $PRACTICES practices x $PER patients (PostgreSQL or Citus)"
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
echo "== Bulk 104 on one practice of the service ($PER patients, $PG)"
bulk_104 Y00010
