#!/usr/bin/env bash
# Record page benchmark (loopback only, bounded): how long the server takes to render the first
# page (50 entries) of a 2,000-entry record for a signed-in clinician, with its audit write.
#
#   scripts/bench-record-page.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-10}"
PORT="${BENCH_PORT:-18091}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p caldicott
BIN="${CARGO_TARGET_DIR:-target}/release/caldicott"
WORK="$(mktemp -d)"
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export CALDICOTT_DATABASE="$WORK/bench.db" CALDICOTT_LOG=warn
OUT="$($BIN demo --build-only --patients 200 --seed 1 --long-record 2000)"
NHS="$(sed -n 's/^Long record: NHS number //p' <<<"$OUT")"
PASSWORD="$(awk '$1=="dr.okafor"{print $2}' <<<"$OUT")"
$BIN serve --listen "127.0.0.1:$PORT" &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

# Sign in as a browser would: the form, the password, the authenticator code.
B="http://127.0.0.1:$PORT"
JAR="$WORK/cookies"
csrf() { grep -o 'name="_csrf" value="[^"]*"' "$1" | head -1 | sed 's/.*value="//;s/"$//'; }
curl -s -c "$JAR" -b "$JAR" "$B/sign-in" -o "$WORK/p1.html"
curl -s -c "$JAR" -b "$JAR" -o /dev/null --data-urlencode "_csrf=$(csrf "$WORK/p1.html")" \
  --data-urlencode "username=dr.okafor" --data-urlencode "password=$PASSWORD" "$B/sign-in"
curl -s -c "$JAR" -b "$JAR" "$B/sign-in/code" -o "$WORK/p2.html"
SECRET="$(grep -o 'id="totp-secret">[A-Z2-7]*' "$WORK/p2.html" | sed 's/.*>//')"
CODE="$(python3 -c 'import base64,hmac,hashlib,struct,sys,time
k=base64.b32decode(sys.argv[1]+"="*(-len(sys.argv[1])%8));h=hmac.new(k,struct.pack(">Q",int(time.time())//30),hashlib.sha1).digest();o=h[-1]&15
print("%06d"%((struct.unpack(">I",h[o:o+4])[0]&0x7fffffff)%1000000))' "$SECRET")"
curl -s -c "$JAR" -b "$JAR" -o /dev/null --data-urlencode "_csrf=$(csrf "$WORK/p2.html")" --data-urlencode "code=$CODE" "$B/sign-in/code"
SESSION="$(awk '$6=="__Host-caldicott"{print $7}' "$JAR")"
[ -n "$SESSION" ] || { echo "sign-in failed" >&2; exit 1; }

URL="$B/patients/$NHS"
echo "record page: $(curl -s -b "__Host-caldicott=$SESSION" "$URL" | grep -c 'nhsuk-table__row') entries rendered"
echo "== one request at a time (server time per page, plus loopback)"
wrk -t1 -c1 -d"${SECONDS_TO_RUN}s" --latency -H "Cookie: __Host-caldicott=$SESSION" "$URL" | grep -E 'Latency|50%|99%|Requests/sec'
echo "== 16 connections"
wrk -t2 -c16 -d"${SECONDS_TO_RUN}s" --latency -H "Cookie: __Host-caldicott=$SESSION" "$URL" | grep -E 'Latency|50%|99%|Requests/sec'
