#!/usr/bin/env python3
"""Validates GP Connect (FHIR STU3) answers: each argument is a file holding one resource.

Two checks, and the file fails if either finds anything:
1. The resource parses as FHIR STU3 with fhir.resources' STU3 models (strict: unknown elements,
   missing required ones, wrong types and bad codes are errors).
2. The GP Connect rules the models cannot know (and, for Appointment Management, that slots are
   free with their schedule, schedules name their Location and one practitioner role, and
   appointments carry description, times, slot, created, participants with statuses and a
   version, and no reason or specialty): every resource names a profile under
   https://fhir.nhs.uk/STU3/StructureDefinition/ (the Bundle GPConnect-StructuredRecord-Bundle-1,
   errors GPConnect-OperationOutcome-1; a Binary none, but its content); a structured Bundle is a collection holding one Patient
   and an Organization; every List has a title, a SNOMED CT code, a subject and an entry or an
   empty reason; no List and no Bundle carries NOPAT; every `Type/id` reference resolves to a
   resource in the Bundle.

Prints what is wrong and exits 1 if anything is; prints the resource counts and exits 0
otherwise.
"""
import collections
import json
import sys

from fhir.resources.STU3 import construct_fhir_element

STU3 = "https://fhir.nhs.uk/STU3/StructureDefinition/"


def references(node, found):
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            found.append(ref)
        for v in node.values():
            references(v, found)
    elif isinstance(node, list):
        for v in node:
            references(v, found)
    return found


def gp_connect_problems(data):
    problems = []
    kind = data.get("resourceType")
    profiles = data.get("meta", {}).get("profile", [])
    if kind == "Binary":
        # Access Document's Binary names no profile; it must carry its content and no security
        # context.
        if not data.get("contentType") or not data.get("content") or "securityContext" in data:
            problems.append("a Binary carries contentType and content, and no securityContext")
        return problems
    if kind == "CapabilityStatement":
        # A capability statement names no profile of its own; it lists the profiles it serves.
        listed = [p.get("reference", "") for p in data.get("profile", [])]
        if not listed or not all(p.startswith(STU3) for p in listed) or data.get("fhirVersion") != "3.0.1":
            problems.append("a capability statement lists GP Connect STU3 profiles and FHIR 3.0.1")
        return problems
    if not profiles or not all(p.startswith(STU3) for p in profiles):
        problems.append(f"{kind}: meta.profile must name a GP Connect STU3 profile, not {profiles}")
    if kind == "OperationOutcome":
        if profiles != [STU3 + "GPConnect-OperationOutcome-1"]:
            problems.append("an error must be a GPConnect-OperationOutcome-1")
        return problems
    if kind != "Bundle":
        return problems + appointment_problems(data)
    if profiles == [STU3 + "GPConnect-StructuredRecord-Bundle-1"] and data.get("type") != "collection":
        problems.append("a structured record Bundle is a collection")
    if "security" in data.get("meta", {}):
        problems.append("the Bundle must not carry a security label")
    resources = [e.get("resource", {}) for e in data.get("entry", [])]
    kinds = collections.Counter(r.get("resourceType") for r in resources)
    if profiles == [STU3 + "GPConnect-StructuredRecord-Bundle-1"]:
        if kinds["Patient"] != 1 or kinds["Organization"] < 1:
            problems.append(f"a structured record holds one Patient and its Organization, not {dict(kinds)}")
    present = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    for r in resources:
        rk = r.get("resourceType")
        rp = r.get("meta", {}).get("profile", [])
        if not rp or not all(p.startswith(STU3) for p in rp):
            problems.append(f"{rk}/{r.get('id')}: no GP Connect STU3 profile")
        if rk == "List":
            if any(s.get("code") == "NOPAT" for s in r.get("meta", {}).get("security", [])):
                problems.append(f"List {r.get('title')}: a List must not carry NOPAT")
            if not r.get("title") or not r.get("subject"):
                problems.append(f"List {r.get('title')}: title and subject are required")
            codings = r.get("code", {}).get("coding", [])
            if not any(c.get("system") == "http://snomed.info/sct" for c in codings):
                problems.append(f"List {r.get('title')}: the code must be SNOMED CT")
            if not r.get("entry") and not r.get("emptyReason"):
                problems.append(f"List {r.get('title')}: an empty list needs an emptyReason")
        for ref in references(r, []):
            if "/" not in ref or ref.startswith(("http", "#")) or ref in present:
                continue
            # A collection holds everything it references; a searchset holds what was included,
            # so a reference to a kind of resource the searchset holds must resolve.
            if data.get("type") == "collection" or kinds[ref.split("/")[0]]:
                problems.append(f"{rk}/{r.get('id')}: the reference {ref} is not in the Bundle")
        problems.extend(appointment_problems(r))
    if data.get("type") == "searchset":
        matches = sum(1 for e in data.get("entry", []) if e.get("search", {}).get("mode") == "match")
        if data.get("total") != matches:
            problems.append(f"a searchset's total ({data.get('total')}) counts its matches ({matches})")
    return problems


def appointment_problems(r):
    """What GP Connect Appointment Management requires of its resources beyond STU3."""
    problems = []
    rk = r.get("resourceType")
    if rk == "Slot":
        if r.get("status") != "free" or not r.get("schedule") or not r.get("start") or not r.get("end"):
            problems.append(f"Slot/{r.get('id')}: a free slot with its schedule, start and end")
        if "comment" in r or "specialty" in r:
            problems.append(f"Slot/{r.get('id')}: no comment and no specialty")
    if rk == "Schedule":
        actors = [a.get("reference", "") for a in r.get("actor", [])]
        if not any(a.startswith("Location/") for a in actors):
            problems.append(f"Schedule/{r.get('id')}: the actors include the Location")
        roles = [x for x in r.get("extension", []) if x.get("url", "").endswith("Extension-GPConnect-PractitionerRole-1")]
        if len(roles) != 1 or "comment" in r:
            problems.append(f"Schedule/{r.get('id')}: one practitioner role and no comment")
    if rk == "Appointment":
        for required in ("description", "start", "end", "slot", "created", "participant"):
            if not r.get(required):
                problems.append(f"Appointment/{r.get('id')}: {required} is required")
        if any(not p.get("status") or not p.get("actor", {}).get("reference") for p in r.get("participant", [])):
            problems.append(f"Appointment/{r.get('id')}: every participant has an actor and a status")
        if "reason" in r or "specialty" in r:
            problems.append(f"Appointment/{r.get('id')}: no reason and no specialty")
        if r.get("status") not in ("booked", "cancelled"):
            problems.append(f"Appointment/{r.get('id')}: booked or cancelled")
        if not r.get("meta", {}).get("versionId"):
            problems.append(f"Appointment/{r.get('id')}: meta.versionId is required")
    return problems


def main(paths):
    bad = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        try:
            construct_fhir_element(data["resourceType"], data)
        except Exception as e:  # noqa: BLE001 - every failure of the model is a finding
            bad += 1
            print(f"{path}: not valid FHIR STU3:\n{e}")
            continue
        problems = gp_connect_problems(data)
        if problems:
            bad += 1
            print(f"{path}: not valid GP Connect:\n  " + "\n  ".join(problems))
            continue
        kinds = collections.Counter(
            e["resource"]["resourceType"] for e in data.get("entry", []) if "resource" in e
        )
        print(f"{path}: valid GP Connect STU3 {data['resourceType']} {dict(sorted(kinds.items()))}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
