#!/usr/bin/env bash
# Tries GP Connect against a demo practice, as a consumer's system would reach it through the
# Spine: starts `caldicott demo` (200 patients, a scratch database) with the Spine listener
# behind mutual TLS, using the test authority and client certificate in crates/cli/tests/tls
# (made for tests only), then asks for Hannah Rivers's structured record (9990996008, or the NHS
# number given), finds her through Access Document and lists her documents, books her a slot the
# practice offers to other care settings through Appointment Management, reads it back and
# cancels it, and shows two refusals. Needs curl and python3. CALDICOTT_BIN uses a binary already built.
#   scripts/gpconnect-try.sh [NHS number]
set -euo pipefail
cd "$(dirname "$0")/.."
NHS="${1:-9990996008}"
ODS=Y90210
ASID=918999198738
TLS=crates/cli/tests/tls
BIN="${CALDICOTT_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build -q -p caldicott
  BIN="${CARGO_TARGET_DIR:-target}/debug/caldicott"
fi
WORK="$(mktemp -d /tmp/caldicott-gpc.XXXXXX)"
PORT=$((20000 + RANDOM % 10000))
SPINE=$((PORT + 1))
"$BIN" demo --patients 200 --database "$WORK/demo.db" --listen "127.0.0.1:$PORT" \
  --spine-listen "127.0.0.1:$SPINE" --spine-tls-cert "$TLS/cert1.pem" --spine-tls-key "$TLS/key1.pem" \
  --spine-client-ca "$TLS/spine-ca.pem" >"$WORK/demo.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 120); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/health/ready" && break
  sleep 1
done

# An unsigned JWT of the specification's audit claims, issued now.
jwt() {
  python3 - "$1" "$2" <<'PY'
import base64, json, sys, time
root, scope = sys.argv[1], sys.argv[2]
now = int(time.time())
b = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).decode().rstrip("=")
claims = {"iss": "https://consumer.example/", "sub": "10019", "aud": "https://spine.example" + root,
  "exp": now + 300, "iat": now, "reason_for_request": "directcare", "requested_scope": scope,
  "requesting_device": {"resourceType": "Device", "model": "gpconnect-try", "version": "1"},
  "requesting_organization": {"resourceType": "Organization", "name": "Riverside General Hospital",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RXX01"}]},
  "requesting_practitioner": {"resourceType": "Practitioner", "id": "10019",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "111222333444"}],
    "name": [{"family": "Jones", "given": ["Claire"], "prefix": ["Dr"]}]}}
print(b({"alg": "none", "typ": "JWT"}) + "." + b(claims) + ".")
PY
}
spine() { # METHOD PATH INTERACTION SCOPE [BODY]
  local root="/gpconnect/$ODS/STU3/1/${2%%/*}"
  curl -s --cacert "$TLS/ca1.pem" --cert "$TLS/spine-client.pem" --key "$TLS/spine-client-key.pem" \
    -X "$1" "https://localhost:$SPINE/gpconnect/$ODS/STU3/1/$2" \
    -H "Ssp-TraceID: $(python3 -c 'import uuid; print(uuid.uuid4())')" -H "Ssp-From: 200000000115" \
    -H "Ssp-To: $ASID" -H "Ssp-InteractionID: $3" -H "Authorization: Bearer $(jwt "$root" "$4")" \
    -H "Accept: application/fhir+json" -H "Content-Type: application/fhir+json" ${5:+--data "$5"} \
    -w '\nHTTP %{http_code}\n'
}
summary() {
  python3 -c '
import json, sys, collections
text = sys.stdin.read(); body, status = text.rsplit("\nHTTP ", 1)
r = json.loads(body); print("HTTP", status.strip(), r["resourceType"])
for e in r.get("entry", []):
    x = e["resource"]
    if x["resourceType"] == "List":
        warn = [w["valueCode"] for w in x.get("extension", []) if "WarningCode" in w["url"]]
        print("  List", repr(x["title"]) + ":", len(x.get("entry", [])), "items", warn or "")
kinds = collections.Counter(e["resource"]["resourceType"] for e in r.get("entry", []))
labelled = sum(1 for e in r.get("entry", []) if any(s.get("code") == "NOPAT" for s in e["resource"].get("meta", {}).get("security", [])))
print("  resources:", dict(kinds), "| labelled NOPAT:", labelled)
if r["resourceType"] == "Appointment": print("  ", r["status"], r["start"], "-", r["description"], "| version", r["meta"]["versionId"])
for i in r.get("issue", []): print("  ", i["details"]["coding"][0]["code"], "-", i.get("diagnostics"))'
}

PARAMS='{"resourceType":"Parameters","parameter":[
 {"name":"patientNHSNumber","valueIdentifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"'"$NHS"'"}},
 {"name":"includeAllergies","part":[{"name":"includeResolvedAllergies","valueBoolean":true}]},
 {"name":"includeMedication"},{"name":"includeConsultations","part":[{"name":"includeNumberOfMostRecent","valuePositiveInt":5}]},
 {"name":"includeProblems"},{"name":"includeImmunisations"},{"name":"includeUncategorisedData"},
 {"name":"includeInvestigations"},{"name":"includeReferrals"},{"name":"includeDiaryEntries"}]}'
echo "== Access Record: Structured for $NHS"
spine POST 'structured/Patient/$gpc.getstructuredrecord' \
  urn:nhs:names:services:gpconnect:fhir:operation:gpc.getstructuredrecord-1 'patient/*.read' "$PARAMS" | summary
echo "== Access Document: find the patient, then list the documents"
FOUND=$(spine GET "documents/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C$NHS" \
  urn:nhs:names:services:gpconnect:documents:fhir:rest:search:patient-1 'patient/*.read')
echo "$FOUND" | summary
PID=$(echo "$FOUND" | head -n -1 | python3 -c 'import json,sys; e=json.load(sys.stdin).get("entry",[]); print(e[0]["resource"]["id"] if e else "")')
if [ -n "$PID" ]; then
  INC='_include=DocumentReference%3Asubject%3APatient&_include=DocumentReference%3Acustodian%3AOrganization&_include=DocumentReference%3Aauthor%3AOrganization&_include=DocumentReference%3Aauthor%3APractitioner&_revinclude%3Arecurse=PractitionerRole%3Apractitioner'
  spine GET "documents/Patient/$PID/DocumentReference?$INC" \
    urn:nhs:names:services:gpconnect:documents:fhir:rest:search:documentreference-1 'patient/*.read' | summary
fi
echo "== Appointment Management: find the patient, search two weeks of slots, book, read, cancel"
APPT=urn:nhs:names:services:gpconnect:fhir:rest
FOUND=$(spine GET "appointments/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C$NHS" "$APPT:search:patient-1" 'patient/*.read')
PID=$(echo "$FOUND" | head -n -1 | python3 -c 'import json,sys; e=json.load(sys.stdin).get("entry",[]); print(e[0]["resource"]["id"] if e else "")')
FROM=$(date -u -d tomorrow +%F); TO=$(date -u -d '+14 days' +%F)
SLOTS=$(spine GET "appointments/Slot?start=ge$FROM&end=le$TO&status=free&_include=Slot%3Aschedule&_include%3Arecurse=Schedule%3Aactor%3APractitioner&_include%3Arecurse=Schedule%3Aactor%3ALocation" \
  "$APPT:search:slot-1" 'organization/*.read')
echo "$SLOTS" | summary
BODY=$(echo "$SLOTS" | head -n -1 | PID="$PID" python3 -c '
import json, os, sys, datetime
b = json.load(sys.stdin); e = [x["resource"] for x in b.get("entry", [])]
slot = next((r for r in e if r["resourceType"] == "Slot"), None)
loc = next((r for r in e if r["resourceType"] == "Location"), None)
if slot and loc and os.environ["PID"]:
    print(json.dumps({"resourceType": "Appointment",
      "extension": [{"url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-BookingOrganisation-1", "valueReference": {"reference": "#1"}}],
      "contained": [{"resourceType": "Organization", "id": "1", "name": "Riverside General Hospital",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RXX01"}],
        "telecom": [{"system": "phone", "value": "0113 496 0000"}]}],
      "status": "booked", "description": "Follow-up after discharge", "start": slot["start"], "end": slot["end"],
      "slot": [{"reference": "Slot/" + slot["id"]}], "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "participant": [{"actor": {"reference": "Patient/" + os.environ["PID"]}, "status": "accepted"},
                      {"actor": {"reference": "Location/" + loc["id"]}, "status": "accepted"}]}))')
if [ -n "$BODY" ]; then
  BOOKED=$(spine POST appointments/Appointment "$APPT:create:appointment-1" 'patient/*.write' "$BODY")
  echo "$BOOKED" | summary
  CANCEL=$(echo "$BOOKED" | head -n -1 | python3 -c '
import json, sys
a = json.load(sys.stdin); a["status"] = "cancelled"
a["extension"].append({"url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-AppointmentCancellationReason-1", "valueString": "Seen in clinic instead"})
print(json.dumps(a))')
  AID=$(echo "$CANCEL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  spine GET "appointments/Appointment/$AID" "$APPT:read:appointment-1" 'patient/*.read' | summary
  spine PUT "appointments/Appointment/$AID" "$APPT:cancel:appointment-1" 'patient/*.write' "$CANCEL" | summary
fi
echo "== Refused: an NHS number that fails its check digit"
spine POST 'structured/Patient/$gpc.getstructuredrecord' \
  urn:nhs:names:services:gpconnect:fhir:operation:gpc.getstructuredrecord-1 'patient/*.read' \
  '{"resourceType":"Parameters","parameter":[{"name":"patientNHSNumber","valueIdentifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765918"}}]}' | summary
echo "== Refused: a client without the Spine's certificate (no TLS handshake)"
curl -s --cacert "$TLS/ca1.pem" "https://localhost:$SPINE/gpconnect/$ODS/STU3/1/structured/metadata" -o /dev/null \
  && echo "  answered (unexpected)" || echo "  refused at the handshake"
