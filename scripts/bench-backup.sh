#!/usr/bin/env bash
# Backup and restore times (BENCHMARKS.md, "Backup and restore"): the 2,000-patient demo
# practice on SQLite, and a service of PRACTICES lean practices (default 200) of
# PRACTICE_PATIENTS patients each (default 10,000) beside the demo practice on the local
# PostgreSQL server. Release build; each backup and restore is
# the whole command, verification included, timed three times (SQLite) or once (PostgreSQL).
# Needs psql, pg_dump and pg_restore, and PostgreSQL at $PG (default the test server).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# CALDICOTT_BIN: a release binary already built from this commit (skips the build).
BIN="${CALDICOTT_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release -q -p caldicott
  BIN="$CARGO_TARGET_DIR/release/caldicott"
fi
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"; psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS caldicott_bench_src WITH (FORCE)" -c "DROP DATABASE IF EXISTS caldicott_bench_dst WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
export CALDICOTT_LOG="warn,sqlx=error"
secs() { local s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }

if [ "${ONLY:-}" != postgres ]; then
echo "== SQLite: the 2,000-patient demo practice"
"$BIN" demo --build-only --seed 1 --as-of 2026-11-22 --database "$DIR/demo.db" >/dev/null
echo "database: $(du -h "$DIR/demo.db" | cut -f1)"
for i in 1 2 3; do
  rm -f "$DIR/demo.backup"
  echo "backup $i: $(secs "$BIN" backup --database "$DIR/demo.db" --out "$DIR/demo.backup") s"
done
echo "backup file: $(du -h "$DIR/demo.backup" | cut -f1)"
for i in 1 2 3; do
  rm -f "$DIR/restored.db"*
  echo "restore $i: $(secs "$BIN" restore --database "$DIR/restored.db" "$DIR/demo.backup") s"
done

fi

echo "== PostgreSQL: a service of ${PRACTICES:-200} lean practices of ${PRACTICE_PATIENTS:-10000} patients"
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS caldicott_bench_src WITH (FORCE)" -c "CREATE DATABASE caldicott_bench_src" \
  -c "DROP DATABASE IF EXISTS caldicott_bench_dst WITH (FORCE)" -c "CREATE DATABASE caldicott_bench_dst"
echo "build: $(secs "$BIN" demo --build-only --seed 1 --as-of 2026-11-22 --practices "${PRACTICES:-200}" --practice-patients "${PRACTICE_PATIENTS:-10000}" \
  --database "$PG/caldicott_bench_src") s"
echo "database: $(psql -tA "$PG/postgres" -c "SELECT pg_size_pretty(pg_database_size('caldicott_bench_src'))")"
echo "backup: $(secs "$BIN" backup --database "$PG/caldicott_bench_src" --out "$DIR/service.backup") s"
echo "backup file: $(du -h "$DIR/service.backup" | cut -f1)"
echo "restore: $(secs "$BIN" restore --database "$PG/caldicott_bench_dst" "$DIR/service.backup") s"
