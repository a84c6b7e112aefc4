#!/usr/bin/env python3
"""Writes the Update Record sample messages in docs/examples/update-record/: one valid message for
each service, a replacement, one with NOPAT, and one invalid message for each rejection rule.
They are made for the demo patient Hannah Rivers (NHS number 9990996008, born 1987-03-14)."""
import copy, json, os

OUT = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "update-record")
NHS, DOB = "9990996008", "1987-03-14"
SCT = "http://snomed.info/sct"
P = "https://fhir.nhs.uk/STU3/StructureDefinition/"
PUK = "https://fhir.hl7.org.uk/STU3/StructureDefinition/"


def coded(code, display, text=None):
    c = {"coding": [{"system": SCT, "code": code, "display": display}]}
    if text:
        c["text"] = text
    return c


def message(mid, service, items, date="2026-11-20", nopat=False, replaces=None):
    encounter = {"resourceType": "Encounter", "id": "enc-1", "meta": {"profile": [P + "CareConnect-GPC-Encounter-1"]},
                 "status": "finished", "period": {"start": date + "T10:30:00+00:00"}, "subject": {"reference": "Patient/pat-1"}}
    if nopat:
        encounter["meta"]["security"] = [{"system": "http://hl7.org/fhir/v3/ActCode", "code": "NOPAT", "display": "no disclosure to patient, family or caregivers without attending provider's authorization"}]
    composition = {"resourceType": "Composition", "id": "comp-1", "meta": {"profile": [PUK + "CareConnect-Composition-1"]},
                   "status": "final", "type": coded(*service), "subject": {"reference": "Patient/pat-1"},
                   "encounter": {"reference": "Encounter/enc-1"}, "date": date + "T11:00:00+00:00",
                   "author": [{"reference": "Practitioner/prac-1"}], "title": "Pharmacy consultation summary"}
    if replaces:
        composition["relatesTo"] = [{"code": "replaces", "targetIdentifier": {"value": replaces}}]
    doc = [composition,
           {"resourceType": "Patient", "id": "pat-1", "meta": {"profile": [P + "CareConnect-GPC-Patient-1"]},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
            "name": [{"family": "Rivers", "given": ["Hannah"]}], "birthDate": DOB},
           {"resourceType": "Organization", "id": "pharm-1", "meta": {"profile": [P + "CareConnect-GPC-Organization-1"]},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "FA123"}], "name": "Quayside Pharmacy"},
           {"resourceType": "Practitioner", "id": "prac-1", "meta": {"profile": [P + "CareConnect-GPC-Practitioner-1"]},
            "name": [{"family": "Shah", "given": ["Anita"], "prefix": ["Ms"]}]},
           {"resourceType": "PractitionerRole", "id": "role-1", "meta": {"profile": [P + "CareConnect-GPC-PractitionerRole-1"]},
            "practitioner": {"reference": "Practitioner/prac-1"}, "organization": {"reference": "Organization/pharm-1"},
            "code": [{"text": "Community pharmacist"}]},
           encounter] + items
    return {"resourceType": "Bundle", "id": mid, "meta": {"profile": [P + "ITK-Message-Bundle-1"]}, "type": "message",
            "entry": [
                {"fullUrl": "urn:uuid:hdr-1", "resource": {
                    "resourceType": "MessageHeader", "id": "hdr-1", "meta": {"profile": [P + "ITK-MessageHeader-2"]},
                    "extension": [{"url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2",
                                   "extension": [{"url": "Key", "valueCoding": {"code": "RecipientType"}}, {"url": "Value", "valueCoding": {"code": "FA"}}]}],
                    "event": {"system": "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2", "code": "ITK014M", "display": "ITK Update Record"},
                    "sender": {"reference": "Organization/sender-1"}, "timestamp": date + "T11:05:00+00:00",
                    "source": {"endpoint": "FA123-mesh"}, "focus": {"reference": "Bundle/doc-1"}}},
                {"fullUrl": "urn:uuid:sender-1", "resource": {
                    "resourceType": "Organization", "id": "sender-1", "meta": {"profile": [PUK + "CareConnect-ITK-Header-Organization-1"]},
                    "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "FA123"}], "name": "Quayside Pharmacy"}},
                {"fullUrl": "urn:uuid:doc-1", "resource": {
                    "resourceType": "Bundle", "id": "doc-1", "meta": {"profile": [P + "ITK-Document-Bundle-1"]}, "type": "document",
                    "entry": [{"resource": r} for r in doc]}}]}


def impression(desc, summary, code=None):
    r = {"resourceType": "ClinicalImpression", "id": "imp-1", "meta": {"profile": [P + "CareConnect-GPC-ClinicalImpression-1"]},
         "status": "completed", "subject": {"reference": "Patient/pat-1"}, "description": desc, "summary": summary}
    if code:
        r["code"] = coded(*code)
    return r


def condition(i, code, display):
    return {"resourceType": "Condition", "id": f"cond-{i}", "meta": {"profile": [P + "CareConnect-GPC-Condition-1"]},
            "clinicalStatus": "active", "code": coded(code, display), "subject": {"reference": "Patient/pat-1"}}


def dispense(i, name, dose, qty, unit, code=None):
    med = {"text": name}
    if code:
        med = coded(code, name, name)
    return {"resourceType": "MedicationDispense", "id": f"med-{i}", "meta": {"profile": [P + "CareConnect-GPC-MedicationDispense-1"]},
            "status": "completed", "medicationCodeableConcept": med, "subject": {"reference": "Patient/pat-1"},
            "quantity": {"value": qty, "unit": unit}, "dosageInstruction": [{"text": dose}]}


def bp(i, sys_, dia):
    return {"resourceType": "Observation", "id": f"obs-{i}", "meta": {"profile": [P + "CareConnect-GPC-Observation-1"]},
            "status": "final", "code": coded("75367002", "Blood pressure"), "subject": {"reference": "Patient/pat-1"},
            "component": [{"code": coded("72313002", "Systolic arterial pressure"), "valueQuantity": {"value": sys_, "unit": "mmHg"}},
                          {"code": coded("1091811000000102", "Diastolic arterial pressure"), "valueQuantity": {"value": dia, "unit": "mmHg"}}]}


PF = ("2129921000000100", "Community Pharmacy Pharmacy First Service")
BP = ("1659111000000107", "Community Pharmacy Blood Pressure Check Service")
CO = ("1659121000000101", "Community Pharmacy Contraception Service")

examples = {
    "pharmacy-first.json": message("c1a4e5f0-0001-4d1b-9c11-000000000001", PF, [
        impression("Sore throat for 4 days, no cough, fever 38.1", "FeverPAIN score 4. Offered antibiotic.", ("162397003", "Pain in throat")),
        condition(1, "43878008", "Streptococcal sore throat"),
        dispense(1, "Phenoxymethylpenicillin 250mg tablets", "Two tablets four times a day for 5 days", 40, "tablet")]),
    "blood-pressure-check.json": message("c1a4e5f0-0002-4d1b-9c11-000000000002", BP, [
        impression("Blood pressure check at the pharmacy", "Clinic reading raised; ambulatory monitoring offered."),
        bp(1, 152, 94),
        bp(2, 148, 92)]),
    "contraception.json": message("c1a4e5f0-0003-4d1b-9c11-000000000003", CO, [
        impression("Ongoing supply of oral contraception", "BP and BMI checked; no contraindications."),
        bp(1, 118, 76),
        dispense(1, "Desogestrel 75microgram tablets", "One tablet daily", 84, "tablet")]),
    "pharmacy-first-nopat.json": message("c1a4e5f0-0004-4d1b-9c11-000000000004", PF, [
        impression("Request for emergency hormonal contraception", "Supplied; advised follow-up."),
        dispense(1, "Levonorgestrel 1.5mg tablet", "One tablet now", 1, "tablet")], nopat=True),
    "pharmacy-first-replacement.json": message("c1a4e5f0-0005-4d1b-9c11-000000000005", PF, [
        impression("Sore throat for 4 days, no cough, fever 38.1", "FeverPAIN score 4. Offered antibiotic.", ("162397003", "Pain in throat")),
        condition(1, "43878008", "Streptococcal sore throat"),
        dispense(1, "Phenoxymethylpenicillin 250mg tablets", "Two tablets four times a day for 10 days", 80, "tablet")],
        replaces="c1a4e5f0-0001-4d1b-9c11-000000000001"),
}

# One invalid message for each rejection rule (R25 and the structural checks).
base = examples["pharmacy-first.json"]
def variant(mid, change):
    m = copy.deepcopy(base)
    m["id"] = mid
    change(m)
    return m
doc = lambda m: m["entry"][2]["resource"]["entry"]
examples["invalid-iteration-2-allergy.json"] = variant("bad-0001", lambda m: doc(m).append({"resource": {
    "resourceType": "AllergyIntolerance", "id": "alg-1", "meta": {"profile": [P + "CareConnect-GPC-AllergyIntolerance-1"]},
    "patient": {"reference": "Patient/pat-1"}, "code": coded("91936005", "Allergy to penicillin")}}))
examples["invalid-profile.json"] = variant("bad-0002", lambda m: doc(m)[5]["resource"]["meta"].update(
    {"profile": [P + "CareConnect-GPC-Encounter-2"]}))
examples["invalid-service-code.json"] = variant("bad-0003", lambda m: doc(m)[0]["resource"].update(
    {"type": coded("185317003", "Telephone encounter")}))
examples["invalid-no-patient.json"] = variant("bad-0004", lambda m: doc(m).pop(1))
examples["invalid-nhs-number.json"] = variant("bad-0005", lambda m: doc(m)[1]["resource"]["identifier"][0].update({"value": "9990996009"}))
examples["invalid-event.json"] = variant("bad-0006", lambda m: m["entry"][0]["resource"]["event"].update({"code": "ITK007C"}))
examples["invalid-not-a-message.json"] = {"resourceType": "Bundle", "id": "bad-0007", "type": "collection", "entry": []}

os.makedirs(OUT, exist_ok=True)
for name, m in examples.items():
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")
print(f"wrote {len(examples)} examples to {os.path.normpath(OUT)}")
