#!/usr/bin/env bash
# Bounded fuzzing of the parsers (T36) with libFuzzer, when a nightly toolchain is present:
#   scripts/fuzz.sh [seconds per target]     (default 30)
# Builds fuzz/ with the same instrumentation cargo-fuzz uses, seeds the Update Record target with
# docs/examples/update-record/, and fails on any crash. Without nightly it says so and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain here; the bounded stable fuzz in caldicott-core's tests still runs"
  exit 0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation off build scripts and proc macros.
HOST="$(rustc +nightly -vV | sed -n 's/^host: //p')"
cargo +nightly build --release -q --manifest-path fuzz/Cargo.toml --target "$HOST"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for target in update_record nhs_number; do
  mkdir -p "$WORK/$target"
  seeds=()
  [ "$target" = update_record ] && seeds=(docs/examples/update-record)
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  status=0
  "$CARGO_TARGET_DIR/$HOST/release/$target" -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -rss_limit_mb=512 \
    -timeout=1 -print_final_stats=1 -artifact_prefix="$WORK/" "$WORK/$target" "${seeds[@]}" >"$WORK/$target.log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|Done [0-9]+ runs)" "$WORK/$target.log" || true
  if [ "$status" -ne 0 ] || ls "$WORK"/crash-* "$WORK"/timeout-* "$WORK"/oom-* >/dev/null 2>&1; then
    tail -40 "$WORK/$target.log" >&2
    echo "fuzz: $target failed (status $status)" >&2
    exit 1
  fi
done
