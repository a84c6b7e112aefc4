#!/usr/bin/env bash
# Subject access export benchmark (issue: "exporting a 10,000-entry record takes under 10 seconds
# and under 200 MB of memory"). Builds the demo with one patient whose record holds N entries
# (default 10,000; about 20 years), logs a request, releases every flagged item, then times the
# export (collecting, the PDF and the FHIR Bundle) with /usr/bin/time.
#
#   scripts/bench-sar-export.sh [entries]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
cargo build --release -q -p caldicott
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/caldicott"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export CALDICOTT_LOG=warn CALDICOTT_DATABASE="$WORK/sar.db"
WHO=(--practice Y90210 --as m.clarke)

NHS="$($BIN demo --build-only --patients 50 --seed 1 --long-record "$N" | sed -n 's/^Long record: NHS number \([0-9]*\).*/\1/p' | tr -d ' ' | head -1)"
[ -n "$NHS" ] || { echo "the demo did not print the long record's NHS number"; exit 1; }
SAR="$($BIN sar log "${WHO[@]}" --nhs-number "$NHS" --requester "The patient" --received "$(date -u +%F)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sar"]["id"])')"
KEYS="$($BIN sar review "${WHO[@]}" --sar "$SAR" --flagged | python3 -c 'import json,sys; print(" ".join("--key " + i["key"] for i in json.load(sys.stdin)["items"]))')"
ITEMS="$($BIN sar review "${WHO[@]}" --sar "$SAR" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')"
echo "record of $N entries: $ITEMS items in the export, $(wc -w <<<"$KEYS" | awk '{print $1/2}') flagged"
# shellcheck disable=SC2086
[ -z "$KEYS" ] || $BIN sar decide "${WHO[@]}" --sar "$SAR" $KEYS
for i in 1 2 3; do
  /usr/bin/time -f "run $i: %e s elapsed, %M kB peak resident" \
    $BIN sar export "${WHO[@]}" --sar "$SAR" --out "$WORK/out$i" 2>&1 >/dev/null | grep -E 'released|elapsed'
done
ls -l "$WORK/out1"
