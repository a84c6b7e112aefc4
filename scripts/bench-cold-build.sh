#!/usr/bin/env bash
# Cold-cache build and test times of one revision: a fresh clone and an empty cargo target
# directory, so nothing is reused but the downloaded crates (~/.cargo/registry). Prints, in
# seconds of wall time (and CPU time): the release build of the binary, the build of every test,
# and the whole test run (`cargo test --workspace`, SQLite and PostgreSQL, browser tests
# included) once built (skipped with BENCH_RUN_TESTS=0; the release build is skipped with
# BENCH_RELEASE=0). Wall time needs a machine with nothing
# else compiling; CPU time (user + system) holds up better when it is shared.
#   scripts/bench-cold-build.sh [REV]   (default HEAD)
set -euo pipefail
cd "$(dirname "$0")/.."
REV="${1:-HEAD}"
WORK="$(mktemp -d /tmp/caldicott-cold.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
git clone -q . "$WORK/src"
git -C "$WORK/src" checkout -q "$REV"
export CARGO_TARGET_DIR="$WORK/target" CARGO_TERM_COLOR=never
VENV="${CALDICOTT_TEST_VENV:-$HOME/.cache/caldicott/venv}"
export CALDICOTT_TEST_PYTHON="$VENV/bin/python"
cd "$WORK/src"
git log --oneline -1
timed() {
  local label="$1"; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$WORK/cpu" "$@" >"$WORK/log" 2>&1 || { tail -30 "$WORK/log"; exit 1; }
  end=$(date +%s.%N)
  read -r user sys <"$WORK/cpu"
  printf '%-40s wall %7.1f s   cpu %7.1f s\n' "$label" "$(echo "$end - $start" | bc)" "$(echo "$user + $sys" | bc)"
}
if [ "${BENCH_RELEASE:-1}" != 0 ]; then
  timed "release build (cargo build --release)" cargo build --release -p caldicott
fi
timed "test build (cargo test --no-run)" cargo test --workspace --no-run
if [ "${BENCH_RUN_TESTS:-1}" != 0 ]; then
  timed "test run (cargo test, built)" cargo test --workspace
  grep -E '^test result' "$WORK/log" | awk '{p+=$4; f+=$6} END {print "tests: " p " passed, " f " failed"}'
fi
