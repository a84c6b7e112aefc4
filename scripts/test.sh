#!/usr/bin/env bash
# Runs every test: core, store contract (SQLite and PostgreSQL), use cases, HTTP, command line
# the browser tests, the Citus suite (scripts/citus-tests.sh), the clinical safety gate (every hazard's tests ran and passed; the safety
# case report written to $CARGO_TARGET_DIR/test-results/safety), and a bounded fuzz of the
# parsers (with nightly). Installs Debian's Chromium
# (browser tests), python3-aiosmtpd (the SMTP server the email tests send to) and poppler-utils
# (pdftotext and pdfinfo read the PDFs the tests make) if they are missing, and the Python test
# packages (scripts/requirements-test.txt) into a virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
NEED=()
[ -x /usr/bin/chromium ] || NEED+=(chromium)
/usr/bin/python3 -c "import aiosmtpd" 2>/dev/null || NEED+=(python3-aiosmtpd)
command -v pdftotext >/dev/null || NEED+=(poppler-utils)
if [ ${#NEED[@]} -gt 0 ]; then
  echo "Installing ${NEED[*]} for the browser and SMTP tests …"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${NEED[@]}" >/dev/null
fi
# Python packages the tests drive (the FHIR R4 validator), in a virtual environment of their own.
VENV="${CALDICOTT_TEST_VENV:-$HOME/.cache/caldicott/venv}"
if ! "$VENV/bin/python" -c "import fhirclient" 2>/dev/null || ! cmp -s scripts/requirements-test.txt "$VENV/requirements-test.txt"; then
  echo "Installing the Python test packages into $VENV …"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-test.txt
  cp scripts/requirements-test.txt "$VENV/requirements-test.txt"
fi
export CALDICOTT_TEST_PYTHON="$VENV/bin/python"
# The run's output is kept: the safety gate reads which tests ran and how each ended.
RESULTS="${CARGO_TARGET_DIR:-target}/test-results"
mkdir -p "$RESULTS"
set +e
cargo test --workspace "$@" 2>&1 | tee "$RESULTS/cargo-test.log"
STATUS=${PIPESTATUS[0]}
set -e
if [ $# -eq 0 ]; then
  # The clinical safety case (docs/safety/plan.md): the report from the hazard log and this run,
  # then the gate, which fails naming each hazard whose control's test is missing, did not run,
  # was ignored or failed.
  cargo run -q -p caldicott -- safety report --results "$RESULTS/cargo-test.log" --out "$RESULTS/safety"
  cargo run -q -p caldicott -- safety check --results "$RESULTS/cargo-test.log" || STATUS=1
fi
[ "$STATUS" -eq 0 ] || exit "$STATUS"
# Dates are UK dates and no test may depend on the hour it runs: the use-case and HTTP suites
# again with the test clock just after and before UK midnight and on both BST change days.
scripts/clock-tests.sh "$@"
# The store contract and the shard moves on a real Citus cluster (built and started with
# ../shared/citus/citus.sh when it is there; otherwise this says that it did not run and why).
if [ $# -eq 0 ]; then
  scripts/citus-tests.sh
fi
# T36: a bounded libFuzzer run of the parsers when a nightly toolchain is installed.
scripts/fuzz.sh 20
