#!/usr/bin/env bash
# Runs the date-sensitive suites (use cases and HTTP) with the test clock moved to the hours
# where UK dates and UTC dates part: just after and just before UK midnight, just after midnight
# on a British Summer Time day, and on both change days. See fixtures::now (CALDICOTT_TEST_NOW).
set -euo pipefail
cd "$(dirname "$0")/.."
for at in \
  2027-01-14T00:03:00Z \
  2027-01-14T23:57:30Z \
  2027-06-15T23:03:00Z \
  2027-03-28T00:03:00Z \
  2027-10-30T23:03:00Z; do
  echo "== the test clock at $at"
  CALDICOTT_TEST_NOW="$at" cargo test -p caldicott-app -p caldicott-web --no-fail-fast "$@"
done
