//! The CapabilityStatement: exactly what is implemented, made from the same tables the handlers
//! use (the types served, the `_include` parameters).

use super::{CLINICAL_TYPES, DEFAULT_COUNT, DIRECTORY_TYPES, INCLUDES, MAX_COUNT};
use caldicott_fhir::write as fhir;
use serde_json::{json, Value};

fn includes_of(t: &str) -> Vec<String> {
    let mut v: Vec<String> = INCLUDES.iter().filter(|i| i.0 == t).map(|i| format!("{}:{}", i.0, i.1)).collect();
    if !v.is_empty() {
        v.push(format!("{t}:*"));
    }
    v
}

pub fn capability_statement(base: &str, software_version: &str) -> Value {
    let search = |paged: bool| {
        let mut params = vec![
            json!({ "name": "patient", "type": "reference", "documentation": "The patient (optional for a patient-bound token: its own patient; required for practice-facing callers)" }),
            json!({ "name": "_count", "type": "number", "documentation": format!("Page size, 1 to {MAX_COUNT} (default {DEFAULT_COUNT}); an entry's resources stay on one page") }),
        ];
        if paged {
            params.push(json!({ "name": "_cursor", "type": "string", "documentation": "The opaque cursor of the next page, from a Bundle's next link" }));
        }
        params
    };
    let mut patient_params = search(false);
    patient_params.push(json!({ "name": "identifier", "type": "token", "documentation": "The NHS number: https://fhir.nhs.uk/Id/nhs-number|<number>" }));
    patient_params.push(json!({ "name": "_id", "type": "token", "documentation": "The Patient's id" }));
    let mut resources = vec![json!({
        "type": "Patient",
        "profile": format!("{}UKCore-Patient", fhir::UK_CORE),
        "interaction": [{ "code": "read" }, { "code": "search-type" }],
        "searchInclude": includes_of("Patient"),
        "searchParam": patient_params,
        "operation": [{ "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" }],
    })];
    for t in DIRECTORY_TYPES {
        resources.push(json!({
            "type": t,
            "profile": format!("{}UKCore-{t}", fhir::UK_CORE),
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "documentation": if t == "Organization" { "The practice" } else { "The practice's clinicians" },
        }));
    }
    resources.push(json!({
        "type": "Slot",
        "profile": format!("{}UKCore-Slot", fhir::UK_CORE),
        "interaction": [{ "code": "read" }, { "code": "search-type" }],
        "documentation": "Free slots the patient may book online, for the next four weeks",
    }));
    resources.push(json!({
        "type": "Appointment",
        "profile": format!("{}UKCore-Appointment", fhir::UK_CORE),
        "interaction": [{ "code": "read" }, { "code": "search-type" }, { "code": "create" }, { "code": "update" }],
        "searchInclude": includes_of("Appointment"),
        "searchParam": search(false),
        "documentation": "The patient's appointments; an app with patient/Appointment.write books a free slot (create) and cancels (update to status cancelled) up to the practice's cut-off",
    }));
    resources.push(json!({
        "type": "Task",
        "profile": format!("{}UKCore-Task", fhir::UK_CORE),
        "interaction": [{ "code": "read" }, { "code": "search-type" }, { "code": "create" }, { "code": "update" }],
        "searchParam": search(false),
        "documentation": "Repeat prescription orders, one Task per medicine (status requested, completed, rejected with its reason, or cancelled): an app with patient/Task.write orders one of the patient's current repeats (create: intent order, code SNOMED CT 103742009, focus the repeat's MedicationRequest), which becomes a task for a clinician like an order made on the patient's pages, and cancels the whole order while no medicine of it is decided (update to status cancelled)",
    }));
    for t in CLINICAL_TYPES {
        let mut r = json!({
            "type": t,
            "profile": format!("{}UKCore-{t}", fhir::UK_CORE),
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "searchInclude": includes_of(t),
            "searchParam": search(true),
        });
        if t == "Observation" {
            if let Some(params) = r["searchParam"].as_array_mut() {
                params.push(json!({ "name": "code", "type": "token", "documentation": "[system]|[code] (SNOMED CT: http://snomed.info/sct), several joined by commas for any of them" }));
                params.push(json!({ "name": "date", "type": "date", "documentation": "The day of the observation: a prefix (eq, ne, gt, lt, ge, le) and YYYY, YYYY-MM or YYYY-MM-DD; repeat it for a range (date=ge2024-01&date=lt2025)" }));
                params.push(json!({ "name": "_sort", "type": "string", "documentation": "date (oldest first) or -date (newest first, the default with code or date)" }));
            }
            r["documentation"] = json!("Results and coded observations. With code, date or _sort the matches come in date order (_sort=date oldest first, -date newest first, the default), so that an app can draw a result over time");
        }
        if t == "CarePlan" || t == "Goal" {
            // Base R4 resources: written without a UK Core profile.
            if let Some(o) = r.as_object_mut() {
                o.remove("profile");
            }
            r["documentation"] = json!(if t == "CarePlan" {
                "Care plans: the plan for a condition (title, review date as period.end), and each action, preference, advance decision, contact or note as a CarePlan that is partOf it; what the patient added has the patient as author"
            } else {
                "Goals of a care plan; expressedBy is the patient for goals the patient added"
            });
        }
        if t == "Communication" {
            r["documentation"] = json!("Messages, online consultations, text messages and diary entries: practice-facing only. They are never shown online, so a patient's app receives none (its searches find nothing and an id answers as unknown)");
        }
        resources.push(r);
    }
    resources.push(json!({
        "type": "Binary",
        "interaction": [{ "code": "read" }],
        "documentation": "A document's content, by the url in its DocumentReference; served as the file itself, or as a Binary resource when application/fhir+json is asked for",
    }));
    fhir::compact(json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-07",
        "kind": "instance",
        "software": { "name": "caldicott", "version": software_version },
        "implementation": { "description": "caldicott FHIR R4 API", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Linked apps read the online view of their patient (the link's holder, or someone the holder acts for as a proxy) with patient-bound tokens; hidden entries are absent and their ids answer as unknown ones. Practice integrations (system/ scopes, SMART Backend Services) and staff API tokens read the practice's whole record, hidden entries labelled NOPAT.",
            "security": {
                "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }] }],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{ "url": "token", "valueUri": format!("{base}/token") }],
                }],
            },
            "resource": resources,
        }],
    }))
}
