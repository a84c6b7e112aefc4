#!/usr/bin/env bash
# Runs every test: core, store contract (SQLite and PostgreSQL), use cases, HTTP, command line
# the browser tests, and a bounded fuzz of the parsers (with nightly). Installs Debian's Chromium (browser tests) and python3-aiosmtpd (the
# SMTP server the email tests send to) if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
NEED=()
[ -x /usr/bin/chromium ] || NEED+=(chromium)
/usr/bin/python3 -c "import aiosmtpd" 2>/dev/null || NEED+=(python3-aiosmtpd)
if [ ${#NEED[@]} -gt 0 ]; then
  echo "Installing ${NEED[*]} for the browser and SMTP tests …"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${NEED[@]}" >/dev/null
fi
cargo test --workspace "$@"
# T36: a bounded libFuzzer run of the parsers when a nightly toolchain is installed.
scripts/fuzz.sh 20
