#!/usr/bin/env python3
"""Turns the peer FHIR benchmark's data set into records caldicott's transfer-in accepts.

Called by scripts/bench-fhir-peer.sh; standard library only.

  peer-to-transfer.py convert <peer bundles dir> <out dir> <mapping.tsv> [--nhs-base N] [--from-ods ODS]
  peer-to-transfer.py resolve <mapping.tsv> <base url> <bearer token>

`convert` reads each transaction Bundle that `hfs.sh gen` wrote (a Patient and its Observations)
and writes the same record as a transfer from another practice, changing only what caldicott
needs to accept it:
  - the NHS number: the generator's 9000000000+i fails the modulus-11 check, so patient i gets
    the i-th valid number from --nhs-base (first nine digits, those whose check digit would be 10
    skipped). The default base, 999500000, is a test range (999...) the demo practice does not use;
  - the codes: each LOINC coding becomes the SNOMED CT concept for the same measurement (display
    and text kept); values, units (with their UCUM system and code) and dates are untouched;
  - the sending practice: an Organization with an ODS code (--from-ods, default B82001), named as
    the Patient's generalPractitioner.
Resources carry no security labels, as the generator wrote them, so caldicott files them hidden
pending review (D4); a practice integration still reads every one of them.
The mapping (peer id, NHS number, date of birth, Observations) goes to mapping.tsv.

`resolve` finds the caldicott Patient id of every patient in the mapping (by NHS number,
`Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|<n>` on the FHIR API, and date of birth,
so that a file refused for another patient's number is not taken for them) and adds it as a
fifth column (empty for a patient not found, who is named on standard error); it exits non-zero
only when no patient is found.
"""
import json
import os
import sys
import urllib.parse
import urllib.request

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"

# LOINC code in the generator -> (SNOMED CT concept, its term).
SNOMED_FOR_LOINC = {
    "8867-4": ("364075005", "Heart rate"),
    "8480-6": ("271649006", "Systolic blood pressure"),
    "8462-4": ("271650006", "Diastolic blood pressure"),
    "29463-7": ("27113001", "Body weight"),
    "8302-2": ("50373000", "Body height"),
    "39156-5": ("60621009", "Body mass index"),
    "2339-0": ("365812005", "Blood glucose level"),
    "4548-4": ("999791000000106", "Haemoglobin A1c level - International Federation of Clinical Chemistry and Laboratory Medicine standardised"),
    "2093-3": ("1005671000000105", "Serum cholesterol level"),
    "8310-5": ("276885007", "Core body temperature"),
}


def check_digit(first_nine):
    """The NHS number's modulus-11 check digit, or None where it would be 10 (no valid number)."""
    digits = f"{first_nine:09d}"
    total = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def nhs_numbers(base):
    n = base
    while True:
        c = check_digit(n)
        if c is not None:
            yield f"{n:09d}{c}"
        n += 1


def convert(src, out, mapping, nhs_base, from_ods):
    os.makedirs(out, exist_ok=True)
    names = sorted(f for f in os.listdir(src) if f.endswith(".json"))
    if not names:
        sys.exit(f"no bundles in {src}")
    numbers = nhs_numbers(nhs_base)
    org_url = "urn:uuid:5e4d0000-0000-4000-8000-000000000001"
    rows = []
    for name in names:
        with open(os.path.join(src, name)) as f:
            bundle = json.load(f)
        patient = None
        observations = 0
        for e in bundle.get("entry", []):
            r = e.get("resource", {})
            if r.get("resourceType") == "Patient":
                patient = r
                nhs = next(numbers)
                r["identifier"] = [{"system": NHS_SYSTEM, "value": nhs}]
                r["generalPractitioner"] = [{"reference": org_url}]
            elif r.get("resourceType") == "Observation":
                observations += 1
                code = r.get("code", {})
                for c in code.get("coding", []):
                    if c.get("system") == LOINC:
                        if c.get("code") not in SNOMED_FOR_LOINC:
                            sys.exit(f"{name}: no SNOMED CT concept for LOINC {c.get('code')}")
                        concept, term = SNOMED_FOR_LOINC[c["code"]]
                        c.update({"system": SNOMED, "code": concept, "display": term})
        if patient is None:
            sys.exit(f"{name}: no Patient")
        bundle["entry"].insert(1, {
            "fullUrl": org_url,
            "resource": {"resourceType": "Organization", "id": "sender",
                         "identifier": [{"system": ODS_SYSTEM, "value": from_ods}],
                         "name": "Peer benchmark practice"},
        })
        with open(os.path.join(out, name), "w") as f:
            json.dump(bundle, f)
        rows.append((patient["id"], nhs, patient.get("birthDate", ""), observations))
    with open(mapping, "w") as f:
        for row in rows:
            f.write("\t".join(map(str, row)) + "\n")
    print(f"converted {len(rows)} bundles ({sum(r[3] for r in rows)} Observations); "
          f"NHS numbers {rows[0][1]} to {rows[-1][1]}, sent from {from_ods}")


def resolve(mapping, base, token):
    rows = [l.rstrip("\n").split("\t") for l in open(mapping) if l.strip()]
    missing = 0
    for row in rows:
        q = urllib.parse.urlencode({"identifier": f"{NHS_SYSTEM}|{row[1]}"})
        req = urllib.request.Request(f"{base}/fhir/r4/Patient?{q}", headers={
            "Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
        with urllib.request.urlopen(req) as res:
            # The patient loaded from the file: same NHS number and date of birth.
            found = [e["resource"]["id"] for e in json.load(res).get("entry", [])
                     if e.get("resource", {}).get("resourceType") == "Patient"
                     and e["resource"].get("birthDate") == row[2]]
        if len(found) != 1:
            missing += 1
            print(f"{row[0]} (NHS number {row[1]}): {len(found)} patients found", file=sys.stderr)
        row[4:] = [found[0] if len(found) == 1 else ""]
    with open(mapping, "w") as f:
        for row in rows:
            f.write("\t".join(row) + "\n")
    if missing:
        print(f"{missing} of {len(rows)} patients not found", file=sys.stderr)
    if missing == len(rows):
        sys.exit(1)


def main(argv):
    if len(argv) >= 4 and argv[0] == "convert":
        opts = dict(zip(argv[4::2], argv[5::2]))
        convert(argv[1], argv[2], argv[3], int(opts.get("--nhs-base", 999500000)), opts.get("--from-ods", "B82001"))
    elif len(argv) == 4 and argv[0] == "resolve":
        resolve(argv[1], argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
