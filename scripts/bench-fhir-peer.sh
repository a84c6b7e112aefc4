#!/usr/bin/env bash
# FHIR API benchmark against a peer server (loopback only, every run bounded in time).
#
# Measures caldicott with the same data and the same wrk runs as the peer FHIR server's script
# (hfs.sh, in the shared peer folder), so that the two can be compared side by side:
#   1. `hfs.sh gen` writes the data set: N_PATIENTS patients, each a FHIR transaction Bundle of a
#      Patient and OBS_PER_PATIENT Observations (seeded, so every run has the same values and dates).
#   2. scripts/peer-to-transfer.py makes each Bundle a record transferred in from another practice:
#      a valid NHS number (the generator's are not), SNOMED CT codes for its LOINC codes, and the
#      sending practice's ODS code. Values, units and dates stay as they were.
#   3. A fresh database gets the demo practice's staff, practice and FHIR integration only
#      (`demo --build-only --patients 0`), the server starts on 127.0.0.1, and every record is
#      loaded through POST /api/v1/transfer-in with a clinician's API token, two uploads in
#      flight as hfs.sh loads its server. The load time and any refused file are printed.
#   4. With the demo integration's token (system/*.read, SMART Backend Services), one patient's
#      four endpoints are checked with curl (status 200, entries on the first page, and the
#      Observations' codes, values, units and days against the file loaded), then wrk drives each in
#      turn, a random loaded patient per request (the same Lua random sequence as hfs.sh):
#        GET /fhir/r4/Patient/{id}
#        GET /fhir/r4/Observation?patient={id}
#        GET /fhir/r4/Observation?patient={id}&_count=100
#        GET /fhir/r4/Patient/{id}/$everything
#      printing wrk's latency, percentiles and requests a second, the server's memory (VmRSS and
#      VmHWM, the peak; on PostgreSQL the database's own memory is apart) after each run, and the
#      audit events written during it: caldicott audits every read, the peer does not.
# The mapping from the generator's patients (p00000 …) to NHS numbers and caldicott's Patient ids
# is kept in the temporary folder while the script runs (mapping.tsv).
#
#   scripts/bench-fhir-peer.sh
#   BENCH_BIN=target/debug/caldicott N_PATIENTS=20 OBS_PER_PATIENT=10 DUR=3s CONC=4 scripts/bench-fhir-peer.sh
#
# Settings, by environment, as hfs.sh takes them: N_PATIENTS (1000), OBS_PER_PATIENT (50),
# CONC (wrk connections, 32), THREADS (wrk threads, 2), DUR (each run, 20s; keep it to 30s or
# less), PORT (18093). BENCH_BIN runs a binary already built instead of building the release one
# (`cargo build --release -q -p caldicott`). BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432 runs
# against a fresh PostgreSQL database on that server instead of SQLite (created, VACUUM ANALYZEd
# after the load, and dropped by the script). PEER_SH is the peer script (default: hfs.sh in
# ../shared/peer beside this repository); only its `gen` step runs, with no server of its own.
# NHS_BASE (999500000) is where the NHS numbers' first nine digits start.
# Needs: wrk (apt-get install wrk), curl, python3, bc, and psql for BENCH_POSTGRES.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PEER_SH="${PEER_SH:-$(cd .. && pwd)/shared/peer/hfs.sh}"
N_PATIENTS="${N_PATIENTS:-1000}"
OBS_PER_PATIENT="${OBS_PER_PATIENT:-50}"
CONC="${CONC:-32}"
THREADS="${THREADS:-2}"
DUR="${DUR:-20s}"
PORT="${PORT:-18093}"
NHS_BASE="${NHS_BASE:-999500000}"
BASE="http://127.0.0.1:$PORT"
FHIR="$BASE/fhir/r4"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
for tool in curl python3 bc; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
[ -z "${BENCH_POSTGRES:-}" ] || command -v psql >/dev/null || { echo "psql is needed for BENCH_POSTGRES" >&2; exit 1; }
[ -f "$PEER_SH" ] || { echo "the peer script is not at $PEER_SH (set PEER_SH)" >&2; exit 1; }
if curl -s -o /dev/null "$BASE/" 2>/dev/null; then
  echo "something already answers on $BASE: choose another PORT" >&2; exit 1
fi

if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$(realpath "$BENCH_BIN")"
else
  cargo build --release -q -p caldicott
  BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/caldicott"
fi
[ -x "$BIN" ] || { echo "no caldicott binary at $BIN" >&2; exit 1; }

WORK="$(mktemp -d)"
PGDB=""
cleanup() {
  kill "${SERVER:-0}" 2>/dev/null || true
  wait "${SERVER:-0}" 2>/dev/null || true
  [ -n "$PGDB" ] && psql "$BENCH_POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
# The binary finds its secret key (and, on PostgreSQL, writes the demo integration's key) in the
# working folder: keep both in the temporary one.
cd "$WORK"
export CALDICOTT_LOG=warn
if [ -n "${BENCH_POSTGRES:-}" ]; then
  PGDB="caldicott_fhir_peer_$$"
  psql "$BENCH_POSTGRES/postgres" -qc "CREATE DATABASE $PGDB" >/dev/null
  export CALDICOTT_DATABASE="$BENCH_POSTGRES/$PGDB"
else
  export CALDICOTT_DATABASE="$WORK/bench.db"
fi
elapsed() { echo "$(date +%s.%N) - $1" | bc; }
rss() {  # the server's resident memory now, and its peak since it started
  awk '/VmRSS/{r=$2} /VmHWM/{h=$2} END{printf "%.1f MiB (peak %.1f MiB)\n", r/1024, h/1024}' "/proc/$SERVER/status"
}
audit_count() {  # audit events in the database, all practices
  "$BIN" audit checkpoint | sed -n 's/.*"count":\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}'
}

echo "== data: $N_PATIENTS patients x $OBS_PER_PATIENT Observations ($PEER_SH gen)"
# The peer script's own defaults for everything but the size, so its files are the ones it makes.
env -u PORT -u BASE WORK="$WORK/peer" N_PATIENTS="$N_PATIENTS" OBS_PER_PATIENT="$OBS_PER_PATIENT" \
  bash "$PEER_SH" gen
python3 "$ROOT/scripts/peer-to-transfer.py" convert "$WORK/peer/bundles" "$WORK/transfer" "$WORK/mapping.tsv" \
  --nhs-base "$NHS_BASE"

OUT="$("$BIN" demo --build-only --patients 0 --seed 1)"
CLIENT_ID="$(sed -n 's/.*(system\/\*\.read): client id \(int_[0-9a-zA-Z]*\), private key in \(.*\)$/\1/p' <<<"$OUT")"
KEY="$(sed -n 's/.*(system\/\*\.read): client id int_[0-9a-zA-Z]*, private key in \(.*\)$/\1/p' <<<"$OUT")"
[ -n "$CLIENT_ID" ] && [ -f "$KEY" ] || { echo "the demo did not register its FHIR integration:" >&2; echo "$OUT" >&2; exit 1; }
# A clinician may transfer records in (docs/permissions.md).
TOKEN="$("$BIN" token create --practice Y90210 --staff dr.okafor --label bench-fhir-peer --days 1 2>/dev/null)"
"$BIN" serve --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.1; done
curl -sf "$BASE/health" >/dev/null || { echo "the server did not come up:" >&2; cat "$WORK/server.log" >&2; exit 1; }
echo "caldicott up on $BASE, pid $SERVER, database ${BENCH_POSTGRES:+PostgreSQL }${CALDICOTT_DATABASE##*/}"

echo "== load: POST /api/v1/transfer-in, 2 in flight"
mkdir -p "$WORK/loaded"
export TOKEN BASE WORK
T0="$(date +%s.%N)"
find "$WORK/transfer" -name '*.json' | sort | xargs -P 2 -I{} sh -c '
  out="$WORK/loaded/$(basename {})"
  code=$(curl -s -o "$out" -w "%{http_code}" -X POST -H "Authorization: Bearer $TOKEN" \
    -H "Content-Type: application/fhir+json" --data-binary @{} "$BASE/api/v1/transfer-in")
  [ "$code" = 201 ] || echo "FAIL $code $(basename {}): $(head -c 400 "$out")"' | tee "$WORK/load-failures.txt"
LOAD_TIME="$(printf %.2f "$(elapsed "$T0")")"
FAILED="$(grep -c '^FAIL' "$WORK/load-failures.txt" || true)"
echo "loaded $((N_PATIENTS - FAILED)) of $N_PATIENTS transfer-in bundles ($(((N_PATIENTS - FAILED) * (OBS_PER_PATIENT + 1))) resources) in $LOAD_TIME s, $FAILED refused"
python3 - "$WORK/loaded" <<'PY'
import json, os, sys
d = sys.argv[1]
registered = entries = pending = 0
left_out = {}
for name in os.listdir(d):
    try:
        r = json.load(open(os.path.join(d, name)))
    except ValueError:
        continue
    if "entries" not in r:
        continue
    registered += r.get("registered", False)
    entries += r["entries"]
    pending += r.get("pending_review", 0)
    for k, v in r.get("not_imported", {}).items():
        left_out[k] = left_out.get(k, 0) + v
print(f"imported: {registered} patients registered, {entries} entries ({pending} hidden pending review); "
      f"not imported: {left_out or 'none'}")
PY
echo "RSS after load: $(rss)"
if [ -n "$PGDB" ]; then
  # As autovacuum would after a bulk load: statistics, and the visibility map for index-only scans.
  psql "$CALDICOTT_DATABASE" -qc "VACUUM ANALYZE" >/dev/null
  echo "database size: $(psql "$CALDICOTT_DATABASE" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")"
else
  du -ch "$WORK"/bench.db* | tail -1 | awk '{print "database size: " $1}'
fi

# caldicott's own Patient ids (the FHIR API addresses patients by them, not by NHS number).
python3 "$ROOT/scripts/peer-to-transfer.py" resolve "$WORK/mapping.tsv" "$BASE" "$TOKEN"
LOADED="$(awk -F'\t' '$5 != ""' "$WORK/mapping.tsv" | wc -l)"
# wrk Lua: each request picks a random loaded patient, in hfs.sh's order (same seed and calls).
{
  echo 'math.randomseed(7)'
  echo 'local ids = {'
  awk -F'\t' '$5 != "" {printf "  \"%s\",\n", $5}' "$WORK/mapping.tsv"
  echo '}'
  cat <<'LUA'
local n = #ids
local tmpl = os.getenv("TMPL")
local headers = {["Accept"] = "application/fhir+json", ["Authorization"] = "Bearer " .. os.getenv("FHIR_TOKEN")}
request = function()
  local id = ids[math.random(0, n - 1) + 1]
  return wrk.format("GET", (string.gsub(tmpl, "{id}", id)), headers)
end
LUA
} >"$WORK/rand.lua"

fhir_token() {  # a practice integration's access token (lasts five minutes): a fresh one per run
  local assertion
  assertion="$("$BIN" fhir assertion --client-id "$CLIENT_ID" --key "$KEY" --token-url "$FHIR/token")"
  curl -sf -d grant_type=client_credentials -d 'scope=system/*.read' \
    -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
    -d "client_assertion=$assertion" "$FHIR/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

echo "== sanity (integration token, system/*.read)"
FHIR_TOKEN="$(fhir_token)"
export FHIR_TOKEN
# The second patient loaded (p00001, the one hfs.sh checks, when all were), or the only one.
ROW="$(awk -F'\t' '$5 != ""' "$WORK/mapping.tsv" | sed -n '2p;1p' | tail -1)"
IFS=$'\t' read -r PEER_ID NHS _ OBS ID <<<"$ROW"
echo "patient $PEER_ID: NHS number $NHS, Patient/$ID, $OBS Observations"
# Each answer: status, size, entries on the first page by type; and checked against the file
# loaded (the peer's, with SNOMED CT codes): the Patient's birth date, and every Observation's
# code, value, unit and day.
check() {  # <what> <answer file>; prints a line, and fails when it does not match
  python3 - "$1" "$2" "$WORK/transfer/$PEER_ID.json" "$OBS" <<'PY'
import collections, json, sys
what, answer, peer, obs = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), int(sys.argv[4])
peer = [e["resource"] for e in peer["entry"]]
if what == "read":
    born = next(r["birthDate"] for r in peer if r["resourceType"] == "Patient")
    print(f"  {answer['name'][0]['given'][0]} {answer['name'][0]['family']}, born {answer['birthDate']}")
    sys.exit(f"  the file's patient was born {born}" if answer["birthDate"] != born else 0)
# Searches page at 50 unless _count says; $everything's first page is the Patient, up to 50
# entries, and the practice's Organization that the Patient names.
page = min(obs, 100 if what == "search100" else 50)
want = page + 2 if what == "everything" else page
entries = [e["resource"] for e in answer.get("entry", [])]
kinds = collections.Counter(r["resourceType"] for r in entries)
more = any(l["relation"] == "next" for l in answer.get("link", []))
print(f"  {len(entries)} entries on the page {dict(kinds)}, {'a next page' if more else 'no next page'}")
key = lambda r: (r["code"]["coding"][0]["code"], r["valueQuantity"]["value"], r["valueQuantity"]["unit"],
                 r["effectiveDateTime"][:10])
got = collections.Counter(key(r) for r in entries if r["resourceType"] == "Observation")
gen = collections.Counter(key(r) for r in peer if r["resourceType"] == "Observation")
problems = []
if len(entries) != want or kinds["Observation"] != page or more != (obs > page):
    problems.append(f"expected {want} entries ({page} Observations) and {'a' if obs > page else 'no'} next page")
if got - gen:
    problems.append(f"Observations not in the file: {sorted(got - gen)[:3]}")
if page == obs and got != gen:
    problems.append(f"Observations of the file missing: {sorted(gen - got)[:3]}")
sys.exit("  " + "; ".join(problems) if problems else 0)
PY
}
BAD=0
for spec in "read|Patient/{id}" \
            "search|Observation?patient={id}" \
            "search100|Observation?patient={id}&_count=100" \
            "everything|Patient/{id}/\$everything"; do
  name="${spec%%|*}" path="${spec#*|}"
  path="${path//\{id\}/$ID}"
  code="$(curl -s -o "$WORK/sanity.json" -w '%{http_code} %{size_download}B' \
    -H 'Accept: application/fhir+json' -H "Authorization: Bearer $FHIR_TOKEN" "$FHIR/$path")"
  echo "$path $code"
  if [ "${code%% *}" != 200 ]; then BAD=1; head -c 400 "$WORK/sanity.json"; echo; continue; fi
  check "$name" "$WORK/sanity.json" || BAD=1
done
[ "$BAD" = 0 ] || { echo "the sanity checks failed: not benchmarking" >&2; exit 1; }
echo "RSS before bench: $(rss)"

TOTAL_AUDIT=0
for spec in "read|/Patient/{id}" \
            "search|/Observation?patient={id}" \
            "search100|/Observation?patient={id}&_count=100" \
            "everything|/Patient/{id}/\$everything"; do
  name=${spec%%|*} path=${spec#*|}
  FHIR_TOKEN="$(fhir_token)"
  BEFORE="$(audit_count)"
  echo "== $name  GET /fhir/r4$path  (-t$THREADS -c$CONC -d$DUR, $LOADED patients)"
  TMPL="$FHIR$path" wrk -t"$THREADS" -c"$CONC" -d"$DUR" --timeout 10s --latency -s "$WORK/rand.lua" "$BASE" |
    grep -E "Latency|50%|90%|99%|Requests/sec|Transfer/sec|requests in|Non-2xx|Socket errors"
  AFTER="$(audit_count)"
  TOTAL_AUDIT=$((TOTAL_AUDIT + AFTER - BEFORE))
  echo "RSS after $name: $(rss)"
  echo "audit events written during $name: $((AFTER - BEFORE))"
done
echo "audit events written during the four runs: $TOTAL_AUDIT"
