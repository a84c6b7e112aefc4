#!/usr/bin/env bash
# Runs every test: core, store contract (SQLite and PostgreSQL), use cases, HTTP, command line
# and the browser tests. Installs Debian's Chromium for the browser tests if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /usr/bin/chromium ]; then
  echo "Installing Debian's Chromium for the browser tests …"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec cargo test --workspace "$@"
