#!/usr/bin/env bash
# The Debian package, built and tried as an operator would: builds it with cargo-deb (release
# build; cargo-deb is installed with `cargo install` if missing), installs it, checks the systemd
# unit with systemd-analyze (and prints its exposure score), starts the demo practice from the
# installed program as the service's own user, then the packaged service command with the
# packaged configuration (config check first, as the unit's ExecStartPre does), checks each
# answers /health/ready, and removes the package again. Needs root (CI runs as root) or sudo.
# The package is left in $CARGO_TARGET_DIR/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --no-default-features
echo "== building the package"
cargo deb -p caldicott --output "$CARGO_TARGET_DIR/debian/"
DEB=$(ls -t "$CARGO_TARGET_DIR"/debian/caldicott_*.deb | head -1)
dpkg-deb --info "$DEB" | sed -n '1,/Description/p'
dpkg-deb --contents "$DEB"

echo "== installing $DEB"
$SUDO dpkg --purge caldicott >/dev/null 2>&1 || true
$SUDO rm -rf /var/lib/caldicott /var/backups/caldicott /etc/caldicott
$SUDO dpkg -i "$DEB"
stop_service_user() { $SUDO pkill -TERM -u caldicott -x caldicott 2>/dev/null || true; wait 2>/dev/null || true; }
# A trial install: the package, its user and what the trial wrote go again at the end.
trap 'stop_service_user; $SUDO dpkg --purge caldicott >/dev/null 2>&1 || true; $SUDO rm -rf /var/lib/caldicott /var/backups/caldicott /etc/caldicott' EXIT
UNIT=$(ls /lib/systemd/system/caldicott.service /usr/lib/systemd/system/caldicott.service 2>/dev/null | head -1)
test -n "$UNIT" || { echo "the unit was not installed"; exit 1; }
test "$(stat -c %U:%a /var/lib/caldicott)" = "caldicott:750"
test "$(stat -c %G:%a /etc/caldicott/caldicott.toml)" = "caldicott:640"
getent passwd caldicott >/dev/null
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$UNIT"
  systemd-analyze security --offline=yes "$UNIT" | tail -1 || true
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { # port
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health/ready")" = 200 ] && return 0
    sleep 0.2
  done
  echo "nothing answered ready on port $1"; return 1
}
as_service() { $SUDO runuser -u caldicott -- "$@"; }

echo "== the demo practice, from the installed program, as the service's user"
PORT=$(free_port)
cd /var/lib/caldicott
as_service /usr/bin/caldicott demo --patients 200 --database /var/lib/caldicott/demo.db \
  --listen "127.0.0.1:$PORT" > /tmp/caldicott-package-demo.log 2>&1 &
ready "$PORT"
curl -sfL "http://127.0.0.1:$PORT/" | grep -q "<title>Sign in"
grep -q "Riverside Medical Practice (Y90210) — .* patients, just built" /tmp/caldicott-package-demo.log
stop_service_user

echo "== the packaged service: its configuration checked, then served"
PORT=$(free_port); MPORT=$(free_port)
as_service env CALDICOTT_LISTEN="127.0.0.1:$PORT" CALDICOTT_METRICS_LISTEN="127.0.0.1:$MPORT" \
  /usr/bin/caldicott config check --config /etc/caldicott/caldicott.toml
as_service env CALDICOTT_LISTEN="127.0.0.1:$PORT" CALDICOTT_METRICS_LISTEN="127.0.0.1:$MPORT" \
  /usr/bin/caldicott serve --config /etc/caldicott/caldicott.toml > /tmp/caldicott-package-serve.log 2>&1 &
ready "$PORT"
curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -q caldicott_database_up
test "$(stat -c %U /var/lib/caldicott/caldicott.db)" = caldicott
stop_service_user
echo "The package installs, its unit verifies, and caldicott starts from it."
