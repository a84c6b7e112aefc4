//! Writing FHIR R4 (UK Core) resources from caldicott's record: the inverse of the transfer-in
//! reader in [`crate::fhir`], so that what is written can be read back without loss.
//!
//! Every resource carries the SNOMED CT coding where the entry has one, the patient as a
//! reference, and dates as FHIR dates. Nothing here decides who may see what: callers pass only
//! what the reader is entitled to.

use crate::fhir::{ACT_CODE_SYSTEM, NHS_NUMBER_SYSTEM, ODS_SYSTEM, SNOMED_SYSTEM};
use caldicott_core::entry::*;
use caldicott_core::patient::Patient;
use caldicott_core::practice::Practice;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

pub const UK_CORE: &str = "https://fhir.hl7.org.uk/StructureDefinition/";

/// A FHIR instant.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn profile(name: &str) -> Value {
    json!({ "profile": [format!("{UK_CORE}UKCore-{name}")] })
}

/// A CodeableConcept: the SNOMED CT coding where there is one, and the words.
fn concept(code: Option<&caldicott_core::snomed::Coding>, words: &str) -> Value {
    let mut c = Map::new();
    if let Some(code) = code {
        c.insert(
            "coding".into(),
            json!([{ "system": SNOMED_SYSTEM, "code": code.concept.as_str(), "display": code.term }]),
        );
    }
    let text = if words.trim().is_empty() { code.map(|c| c.term.clone()).unwrap_or_default() } else { words.into() };
    if !text.is_empty() {
        c.insert("text".into(), Value::String(text));
    }
    Value::Object(c)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// XHTML narrative from lines of text.
pub fn narrative(lines: &[&str]) -> Value {
    let body: String = lines.iter().map(|l| format!("<p>{}</p>", escape(l))).collect();
    json!({ "status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{body}</div>") })
}

/// A quantity written as "28 tablets": its number and unit, if it starts with a number.
fn quantity(q: &str) -> Option<Value> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let n: f64 = q[..split].parse().ok()?;
    let unit = q[split..].trim();
    let value = serde_json::Number::from_f64(n)?;
    let mut v = json!({ "value": value });
    if !unit.is_empty() {
        v["unit"] = Value::String(unit.into());
    }
    Some(v)
}

pub fn patient_resource(p: &Patient, practice: &Practice) -> Value {
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": profile("Patient"),
        "identifier": [{ "system": NHS_NUMBER_SYSTEM, "value": p.nhs_number.as_str() }],
        "name": [{ "use": "official", "family": p.name.family, "given": [p.name.given.clone()] }],
        "gender": p.sex.as_str(),
        "birthDate": p.date_of_birth.to_string(),
        "generalPractitioner": [{
            "reference": format!("Organization/{}", practice.id),
            "identifier": { "system": ODS_SYSTEM, "value": practice.ods_code.as_str() },
            "display": practice.name,
        }],
    });
    let address = &p.contact.address;
    if !address.lines.is_empty() || !address.postcode.is_empty() {
        r["address"] = json!([{ "use": "home", "line": address.lines, "postalCode": address.postcode }]);
    }
    let mut telecom = Vec::new();
    if let Some(m) = &p.contact.mobile {
        telecom.push(json!({ "system": "phone", "use": "mobile", "value": m }));
    }
    if let Some(e) = &p.contact.email {
        telecom.push(json!({ "system": "email", "value": e }));
    }
    if !telecom.is_empty() {
        r["telecom"] = Value::Array(telecom);
    }
    if let Some(d) = p.date_of_death {
        r["deceasedDateTime"] = Value::String(d.to_string());
    }
    r
}

pub fn organization_resource(practice: &Practice) -> Value {
    json!({
        "resourceType": "Organization",
        "id": practice.id.to_string(),
        "meta": profile("Organization"),
        "identifier": [{ "system": ODS_SYSTEM, "value": practice.ods_code.as_str() }],
        "name": practice.name,
        "telecom": [{ "system": "phone", "value": practice.telephone }],
        "address": [{ "line": practice.address.lines, "postalCode": practice.address.postcode }],
    })
}

/// The resource type an entry becomes.
pub fn resource_type(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Consultation => "Encounter",
        EntryKind::Problem => "Condition",
        EntryKind::Coded | EntryKind::TestResult => "Observation",
        EntryKind::Medication | EntryKind::MedicationIssue => "MedicationRequest",
        EntryKind::Allergy => "AllergyIntolerance",
        EntryKind::Immunisation => "Immunization",
        EntryKind::Document => "DocumentReference",
        EntryKind::AdminMessage | EntryKind::OnlineConsultation | EntryKind::SystemSms | EntryKind::Diary => {
            "Communication"
        }
    }
}

/// One record entry as a FHIR resource. `nopat` labels it "not for the patient" (for
/// practice-facing readers; never set in what goes to a patient).
pub fn entry_resource(e: &Entry, label_nopat: bool) -> Value {
    let kind = resource_type(e.kind());
    let subject = json!({ "reference": format!("Patient/{}", e.patient) });
    let author = json!({ "display": e.author.name });
    let entered = instant(e.entered_at);
    let date = e.event_date.to_string();
    let code = e.code.as_ref();
    let mut r = match &e.body {
        EntryBody::Consultation { text, status } => json!({
            "resourceType": "Encounter",
            "meta": profile("Encounter"),
            "status": if *status == ConsultationStatus::Final { "finished" } else { "in-progress" },
            "class": { "system": ACT_CODE_SYSTEM, "code": "AMB", "display": "ambulatory" },
            "type": [concept(code, "Consultation")],
            "subject": subject,
            "period": { "start": entered },
            "participant": [{ "individual": author }],
            "text": narrative(&text.lines().collect::<Vec<_>>()),
        }),
        EntryBody::Problem { title, active } => json!({
            "resourceType": "Condition",
            "meta": profile("Condition"),
            "clinicalStatus": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": if *active { "active" } else { "resolved" },
            }]},
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": "problem-list-item",
                "display": "Problem List Item",
            }]}],
            "code": concept(code, title),
            "subject": subject,
            "onsetDateTime": date,
            "recordedDate": entered,
            "recorder": author,
        }),
        EntryBody::Coded { value } => {
            let words = code.map(|c| c.term.clone()).or_else(|| value.clone()).unwrap_or_default();
            let mut o = json!({
                "resourceType": "Observation",
                "meta": profile("Observation"),
                "status": "final",
                "code": concept(code, &words),
                "subject": subject,
                "effectiveDateTime": date,
                "issued": entered,
                "performer": [author],
            });
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty() && Some(*v) != code.map(|c| &c.term)) {
                o["valueString"] = Value::String(v.clone());
            }
            o
        }
        EntryBody::TestResult { test, value, unit, range, abnormal, filing } => {
            let mut o = json!({
                "resourceType": "Observation",
                "meta": profile("Observation"),
                "status": if *filing == Filing::Filed { "final" } else { "preliminary" },
                "category": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                    "display": "Laboratory",
                }]}],
                "code": concept(code, test),
                "subject": subject,
                "effectiveDateTime": date,
                "issued": entered,
                "performer": [author],
            });
            match value.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => {
                    let mut q = json!({ "value": n });
                    if !unit.is_empty() {
                        q["unit"] = Value::String(unit.clone());
                    }
                    o["valueQuantity"] = q;
                }
                None => {
                    let text = format!("{value} {unit}").trim().to_owned();
                    if !text.is_empty() {
                        o["valueString"] = Value::String(text);
                    }
                }
            }
            if !range.is_empty() {
                o["referenceRange"] = json!([{ "text": range }]);
            }
            if *abnormal {
                o["interpretation"] = json!([{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                    "code": "A",
                    "display": "Abnormal",
                }]}]);
            }
            o
        }
        EntryBody::Medication { drug, dosage, quantity: q, course } => {
            medication(e, drug, dosage, q, Some(*course), None, subject, author, &entered)
        }
        EntryBody::MedicationIssue { drug, dosage, quantity: q, template } => {
            medication(e, drug, dosage, q, None, *template, subject, author, &entered)
        }
        EntryBody::Allergy { substance, reaction } => {
            let mut a = json!({
                "resourceType": "AllergyIntolerance",
                "meta": profile("AllergyIntolerance"),
                "clinicalStatus": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }]},
                "code": concept(code, substance),
                "patient": subject,
                "onsetDateTime": date,
                "recordedDate": entered,
                "recorder": author,
            });
            if !reaction.trim().is_empty() {
                a["reaction"] = json!([{ "manifestation": [{ "text": reaction }] }]);
            }
            a
        }
        EntryBody::Immunisation { vaccine } => json!({
            "resourceType": "Immunization",
            "meta": profile("Immunization"),
            "status": "completed",
            "vaccineCode": concept(code, vaccine),
            "patient": subject,
            "occurrenceDateTime": date,
            "recorded": entered,
            "performer": [{ "actor": author }],
        }),
        EntryBody::Document { title, summary, filing, review } => json!({
            "resourceType": "DocumentReference",
            "meta": profile("DocumentReference"),
            "status": "current",
            "docStatus": if *filing == Filing::Filed && *review == DocumentReview::Reviewed { "final" } else { "preliminary" },
            "type": concept(code, title),
            "subject": subject,
            "date": entered,
            "author": [author],
            "description": title,
            "content": [{ "attachment": { "contentType": "text/plain", "title": summary } }],
        }),
        EntryBody::AdminMessage { subject: about, text, .. } => communication(e, Some(about), text, subject),
        EntryBody::OnlineConsultation { text } | EntryBody::SystemSms { text } => communication(e, None, text, subject),
        EntryBody::Diary { text, due } => communication(e, Some(&format!("Diary entry, due {due}")), text, subject),
    };
    r["id"] = Value::String(e.id.to_string());
    debug_assert_eq!(r["resourceType"], kind);
    if label_nopat {
        // Every resource type carries the label, with or without a profile.
        r["meta"]["security"] = json!([{
            "system": ACT_CODE_SYSTEM,
            "code": "NOPAT",
            "display": "no disclosure to patient, family or caregivers without attending provider's authorization",
        }]);
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn medication(
    e: &Entry,
    drug: &str,
    dosage: &str,
    q: &str,
    course: Option<MedicationCourse>,
    template: Option<caldicott_core::ids::EntryId>,
    subject: Value,
    author: Value,
    entered: &str,
) -> Value {
    let mut m = json!({
        "resourceType": "MedicationRequest",
        "meta": profile("MedicationRequest"),
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": concept(e.code.as_ref(), drug),
        "subject": subject,
        "authoredOn": entered,
        "requester": author,
    });
    if !dosage.is_empty() {
        m["dosageInstruction"] = json!([{ "text": dosage }]);
    }
    if let Some(q) = quantity(q) {
        m["dispenseRequest"] = json!({ "quantity": q });
    } else if !q.trim().is_empty() {
        m["note"] = json!([{ "text": format!("Quantity: {q}") }]);
    }
    match course {
        Some(c) => {
            let code = if c == MedicationCourse::RepeatTemplate { "continuous" } else { "acute" };
            m["courseOfTherapyType"] = json!({ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
                "code": code,
            }]});
        }
        None => {
            m["basedOn"] = json!([{
                "reference": template.map(|t| format!("MedicationRequest/{t}")).unwrap_or_default(),
                "display": "the repeat this was issued from",
            }]);
            if template.is_none() {
                m["basedOn"] = json!([{ "display": "a repeat no longer in the record" }]);
            }
        }
    }
    m
}

fn communication(e: &Entry, topic: Option<&str>, text: &str, subject: Value) -> Value {
    let mut c = json!({
        "resourceType": "Communication",
        "status": "completed",
        "category": [{ "text": e.kind().display() }],
        "subject": subject,
        "sent": instant(e.entered_at),
        "sender": { "display": e.author.name },
        "payload": [{ "contentString": text }],
    });
    if let Some(t) = topic {
        c["topic"] = json!({ "text": t });
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_split_number_and_unit() {
        assert_eq!(quantity("28 tablets"), Some(json!({ "value": 28.0, "unit": "tablets" })));
        assert_eq!(quantity("2.5"), Some(json!({ "value": 2.5 })));
        assert_eq!(quantity("one box"), None);
    }

    #[test]
    fn narrative_is_escaped() {
        let n = narrative(&["a < b & c"]);
        assert_eq!(n["div"], "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &lt; b &amp; c</p></div>");
    }
}
