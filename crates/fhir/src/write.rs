//! Writing FHIR R4 (UK Core) resources from caldicott's record: the inverse of the transfer-in
//! reader in [`crate::read`], so that what is written can be read back without loss.
//!
//! Every resource carries the SNOMED CT coding where the entry has one, the patient as a
//! reference, and dates as FHIR dates. Nothing here decides who may see what: callers pass only
//! what the reader is entitled to.

use crate::{ACT_CODE_SYSTEM, NHS_NUMBER_SYSTEM, ODS_SYSTEM, SNOMED_SYSTEM};
pub use caldicott_core::entry::FileInfo;
use caldicott_core::entry::*;
use caldicott_core::ids::{EntryId, StaffId};
use caldicott_core::patient::Patient;
use caldicott_core::practice::Practice;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// The topic of a diary entry written as a Communication, before its due date.
pub const DIARY_DUE: &str = "Diary entry, due ";

pub const UK_CORE: &str = "https://fhir.hl7.org.uk/StructureDefinition/";

/// UK Core's extension on Immunization for the vaccination procedure (a SNOMED CT procedure such
/// as "Seasonal influenza vaccination"), which is not the vaccine product of `vaccineCode`.
pub const VACCINATION_PROCEDURE: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-VaccinationProcedure";

/// UCUM, the code system of units of measure.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// Units as records write them (compared ignoring case) and their UCUM codes. A unit not here
/// (tablets, capsules, puffs) is given as text only.
const UCUM_UNITS: &[(&[&str], &str)] = &[
    (&["mmol/l"], "mmol/L"),
    (&["mmol/mol"], "mmol/mol"),
    (&["umol/l", "µmol/l", "micromol/l"], "umol/L"),
    (&["nmol/l"], "nmol/L"),
    (&["pmol/l"], "pmol/L"),
    (&["mg/l"], "mg/L"),
    (&["g/l"], "g/L"),
    (&["g/dl"], "g/dL"),
    (&["ug/l", "µg/l", "microgram/l"], "ug/L"),
    (&["ng/ml"], "ng/mL"),
    (&["u/l", "iu/l"], "U/L"),
    (&["mu/l", "miu/l"], "mU/L"),
    (&["x10^9/l", "10^9/l", "x10*9/l", "10*9/l", "x 10^9/l"], "10*9/L"),
    (&["x10^12/l", "10^12/l", "x10*12/l", "10*12/l", "x 10^12/l"], "10*12/L"),
    (&["fl"], "fL"),
    (&["pg"], "pg"),
    (&["ml/min/1.73m2", "ml/min/1.73m^2", "ml/min/1.73 m2"], "mL/min/{1.73_m2}"),
    (&["mmhg", "mm hg", "mm[hg]"], "mm[Hg]"),
    (&["kg"], "kg"),
    (&["g"], "g"),
    (&["mg"], "mg"),
    (&["microgram", "micrograms", "mcg", "ug", "µg"], "ug"),
    (&["cm"], "cm"),
    (&["m"], "m"),
    (&["kg/m2", "kg/m^2"], "kg/m2"),
    (&["%"], "%"),
    (&["ml"], "mL"),
    (&["l", "litre", "litres"], "L"),
    (&["bpm", "beats/min", "/min", "breaths/min"], "/min"),
    (&["degc", "°c", "cel"], "Cel"),
    (&["h", "hours"], "h"),
    (&["d", "days"], "d"),
];

/// The UCUM code of a unit as a record writes it, if it is a UCUM unit.
pub fn ucum_code(unit: &str) -> Option<&'static str> {
    let u = unit.trim().to_lowercase();
    UCUM_UNITS.iter().find(|(spellings, _)| spellings.contains(&u.as_str())).map(|(_, code)| *code)
}

/// A Quantity: the value, the unit as written, and its UCUM code where it is a UCUM unit.
fn quantity_of(value: serde_json::Number, comparator: Option<&str>, unit: &str) -> Value {
    let mut q = json!({ "value": value });
    if let Some(c) = comparator {
        q["comparator"] = Value::String(c.into());
    }
    let unit = unit.trim();
    if !unit.is_empty() {
        q["unit"] = Value::String(unit.into());
        if let Some(code) = ucum_code(unit) {
            q["system"] = Value::String(UCUM.into());
            q["code"] = Value::String(code.into());
        }
    }
    q
}

/// A resource or Bundle as FHIR allows it to be sent: FHIR has no empty elements, so an array,
/// object or string with nothing in it (or a `null`) is left out, and so is an object left with
/// nothing once its empty elements are gone. Every answer of the FHIR API passes through here.
pub fn compact(mut v: Value) -> Value {
    fn keep(v: &mut Value) -> bool {
        match v {
            Value::Array(a) => {
                a.retain_mut(keep);
                !a.is_empty()
            }
            Value::Object(o) => {
                o.retain(|_, x| keep(x));
                !o.is_empty()
            }
            Value::String(s) => !s.is_empty(),
            Value::Null => false,
            Value::Bool(_) | Value::Number(_) => true,
        }
    }
    keep(&mut v);
    v
}

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

/// A number exactly as written ("28", "5.5"), or `None` when the JSON number would not read
/// back as the same text ("05", "1e3", "28.0"), so that what is written is read back unchanged.
fn exact_number(s: &str) -> Option<serde_json::Number> {
    let s = s.trim();
    let n = match s.parse::<i64>() {
        Ok(i) => serde_json::Number::from(i),
        Err(_) => serde_json::Number::from_f64(s.parse::<f64>().ok()?)?,
    };
    (n.to_string() == s).then_some(n)
}

/// A quantity written as "28 tablets": its number and unit, if it starts with a number.
fn quantity(q: &str) -> Option<Value> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let unit = q[split..].trim();
    let value = exact_number(&q[..split])?;
    if !unit.is_empty() && !q[split..].starts_with(' ') {
        return None;
    }
    Some(quantity_of(value, None, unit))
}

/// A document's file as a FHIR Binary, its access governed by the DocumentReference of the
/// same id.
pub fn binary_resource(entry: EntryId, content_type: &str, bytes: &[u8]) -> Value {
    json!({
        "resourceType": "Binary",
        "id": entry.to_string(),
        "contentType": content_type,
        "securityContext": { "reference": format!("DocumentReference/{entry}") },
        "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes),
    })
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

/// A member of staff's name as the record shows it ("Dr Jane Smith") as a HumanName (R4 and STU3
/// alike): the title words as `prefix`, the last word as `family`, the others as `given`; an
/// element with nothing in it is left out.
pub fn staff_name(display: &str) -> Value {
    let mut parts: Vec<&str> = display.split_whitespace().collect();
    let prefix: Vec<&str> = parts
        .iter()
        .take_while(|p| matches!(**p, "Dr" | "Mr" | "Mrs" | "Ms" | "Miss" | "Mx" | "Prof"))
        .copied()
        .collect();
    parts.drain(..prefix.len());
    let mut name = json!({ "text": display });
    if let Some(family) = parts.pop() {
        name["family"] = json!(family);
    }
    if !parts.is_empty() {
        name["given"] = json!(parts);
    }
    if !prefix.is_empty() {
        name["prefix"] = json!(prefix);
    }
    name
}

/// A clinician of the practice, by the name the record shows, with their SDS user id when the
/// practice has recorded it.
pub fn practitioner_resource(s: &caldicott_core::staff::StaffMember) -> Value {
    let mut p = json!({
        "resourceType": "Practitioner",
        "id": s.id.to_string(),
        "meta": profile("Practitioner"),
        "active": s.active,
        "name": [staff_name(&s.display_name)],
    });
    if let Some(sds) = &s.sds_user_id {
        p["identifier"] = json!([{ "system": crate::gpconnect::request::SDS_USER_SYSTEM, "value": sds }]);
    }
    p
}

/// An appointment with its slot: booked, cancelled, or fulfilled once its time has passed.
pub fn appointment_resource(
    a: &caldicott_core::appointments::Appointment,
    s: &caldicott_core::appointments::Slot,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let status = match (a.cancelled_at, s.starts_at < now) {
        (Some(_), _) => "cancelled",
        (None, true) => "fulfilled",
        (None, false) => "booked",
    };
    json!({
        "resourceType": "Appointment",
        "id": a.id.to_string(),
        "meta": { "profile": [format!("{}UKCore-Appointment", UK_CORE)] },
        "status": status,
        "serviceType": [{ "text": s.slot_type.display() }],
        "start": instant(s.starts_at),
        "end": instant(s.starts_at + chrono::Duration::minutes(i64::from(s.minutes))),
        "slot": [{ "reference": format!("Slot/{}", s.id) }],
        "created": instant(a.booked_at),
        "participant": [
            { "actor": { "reference": format!("Patient/{}", a.patient) }, "status": "accepted" },
            { "actor": { "display": s.clinician_name }, "status": "accepted" },
        ],
    })
}

/// What a resource may point at, for the reader it is written for.
#[derive(Debug, Clone)]
pub struct Context {
    /// The day the resources are written on (a UK date): a one-off supply issued before it is
    /// completed.
    pub today: NaiveDate,
    /// The practice's clinicians (its Practitioner resources): an author among them is written as
    /// a reference to them, so that `_include` can bring them; anyone else by name only.
    pub practitioners: HashSet<StaffId>,
    /// Which other entries a resource may refer to (an issue to its repeat).
    pub entries: EntryRefs,
    /// The stored files of documents, by entry.
    pub files: HashMap<EntryId, FileInfo>,
}

/// Which entries a resource may refer to.
#[derive(Debug, Clone, Default)]
pub enum EntryRefs {
    /// Any (practice-facing readers, who may see every entry).
    #[default]
    All,
    /// Only these, checked as shown to the reader: a reference to anything else is left out, so a
    /// hidden repeat behind an issue the patient sees (R12) leaves no trace.
    Only(HashSet<EntryId>),
}

impl EntryRefs {
    /// Whether a resource may refer to entry `id`.
    pub fn allows(&self, id: EntryId) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.contains(&id),
        }
    }
}

impl Context {
    /// Written on `today`, pointing at nothing beyond the entry itself but any entry.
    pub fn on(today: NaiveDate) -> Self {
        Self { today, practitioners: HashSet::new(), entries: EntryRefs::All, files: HashMap::new() }
    }

    /// Where a medication is (MedicationRequest and MedicationStatement `status`): a repeat
    /// template is `active` while current; an acute course or an issue is one supply, issued on
    /// its date, so `active` on that day and `completed` once it has passed.
    fn medication_status(&self, issued: NaiveDate, course: Option<MedicationCourse>) -> &'static str {
        match course {
            Some(MedicationCourse::RepeatTemplate) => "active",
            _ if issued < self.today => "completed",
            _ => "active",
        }
    }

    fn author(&self, a: &Author) -> Value {
        match a.staff.filter(|s| self.practitioners.contains(s)) {
            Some(s) => json!({ "reference": format!("Practitioner/{s}"), "display": a.name }),
            None => json!({ "display": a.name }),
        }
    }
}

/// The resource types an entry is written as: one, or for a medication course its request
/// (the authorisation) and its statement (what the patient takes).
pub fn resource_types(kind: EntryKind) -> &'static [&'static str] {
    match kind {
        EntryKind::Medication => &["MedicationRequest", "MedicationStatement"],
        EntryKind::Consultation => &["Encounter"],
        EntryKind::Problem => &["Condition"],
        EntryKind::Coded | EntryKind::TestResult => &["Observation"],
        EntryKind::MedicationIssue => &["MedicationRequest"],
        EntryKind::Allergy => &["AllergyIntolerance"],
        EntryKind::Immunisation => &["Immunization"],
        EntryKind::Document => &["DocumentReference"],
        EntryKind::AdminMessage | EntryKind::OnlineConsultation | EntryKind::SystemSms | EntryKind::Diary => {
            &["Communication"]
        }
        EntryKind::CarePlan => &["CarePlan"],
        // A goal is a Goal; an action, preference, decision, contact or note a CarePlan that is
        // part of its plan.
        EntryKind::CarePlanPart => &["Goal", "CarePlan"],
    }
}

/// The resource type an entry becomes first (its only one, but for medication courses).
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
        EntryKind::CarePlan => "CarePlan",
        EntryKind::CarePlanPart => "Goal",
    }
}

/// The security label a resource carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// No label: what goes to the patient or their app.
    None,
    /// Confidentiality "normal": practice-facing, shown to the patient online.
    Shareable,
    /// `NOPAT`: practice-facing, hidden from the patient online.
    NotForPatient,
}

/// Every resource an entry is written as (see [`resource_types`]), each with the label.
pub fn entry_resources(e: &Entry, label: Label, cx: &Context) -> Vec<Value> {
    let mut out = vec![entry_resource(e, label, cx)];
    if let EntryBody::Medication { drug, dosage, course, .. } = &e.body {
        out.push(labelled(medication_statement(e, drug, dosage, *course, cx), label));
    }
    out
}

/// One record entry as a FHIR resource, with the label practice-facing readers need (a
/// transfer-in reads it back as the entry's online visibility).
pub fn entry_resource(e: &Entry, label: Label, cx: &Context) -> Value {
    let kind = resource_type(e.kind());
    let subject = json!({ "reference": format!("Patient/{}", e.patient) });
    let author = cx.author(&e.author);
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
            // A number (or "<5", ">90": a comparator and a number) is a Quantity with its unit;
            // anything else ("Negative", "See report") is the words as recorded, without a unit.
            let v = value.trim();
            let (comparator, number) = ["<=", ">=", "<", ">"]
                .iter()
                .find_map(|c| v.strip_prefix(c).map(|n| (Some(*c), n.trim_start())))
                .unwrap_or((None, v));
            match exact_number(number) {
                Some(n) => o["valueQuantity"] = quantity_of(n, comparator, unit),
                None if v.parse::<f64>().is_ok() => {
                    // A number that JSON would not give back as written ("05"): kept as text.
                    o["valueString"] = Value::String(format!("{v} {unit}").trim().to_owned());
                }
                None if !v.is_empty() => o["valueString"] = Value::String(v.to_owned()),
                None => {}
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
            medication(e, drug, dosage, q, Some(*course), None, subject, author, &entered, cx)
        }
        EntryBody::MedicationIssue { drug, dosage, quantity: q, template } => {
            // The repeat it came from, only where the reader may see that repeat too.
            let template = template.map(|t| (t, cx.entries.allows(t)));
            medication(e, drug, dosage, q, None, template, subject, author, &entered, cx)
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
        EntryBody::Immunisation { vaccine } => {
            // `vaccineCode` is the vaccine product given; the entry's code is the vaccination
            // procedure, which UK Core carries in its own extension.
            let vaccine_code = if vaccine.trim().is_empty() {
                json!({ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "unknown",
                    "display": "Unknown",
                }]})
            } else {
                json!({ "text": vaccine })
            };
            let mut i = json!({
                "resourceType": "Immunization",
                "meta": profile("Immunization"),
                "status": "completed",
                "vaccineCode": vaccine_code,
                "patient": subject,
                "occurrenceDateTime": date,
                "recorded": entered,
                "performer": [{ "actor": author }],
            });
            if let Some(c) = code {
                i["extension"] =
                    json!([{ "url": VACCINATION_PROCEDURE, "valueCodeableConcept": concept(Some(c), "") }]);
            }
            i
        }
        EntryBody::Document { title, summary, filing, review } => {
            // The content is the stored file, or (for a document held as its summary only) that
            // summary as text: either way `Binary/{id}`.
            let mut attachment = json!({ "url": format!("Binary/{}", e.id), "title": summary, "creation": entered });
            match cx.files.get(&e.id) {
                Some(f) => {
                    attachment["contentType"] = Value::String(f.content_type.clone());
                    attachment["size"] = json!(f.size);
                    attachment["hash"] =
                        Value::String(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, f.sha1));
                }
                None => {
                    attachment["contentType"] = Value::String("text/plain; charset=utf-8".into());
                    attachment["size"] = json!(summary.len());
                }
            }
            json!({
                "resourceType": "DocumentReference",
                "meta": profile("DocumentReference"),
                "status": "current",
                "docStatus": if *filing == Filing::Filed && *review == DocumentReview::Reviewed { "final" } else { "preliminary" },
                "type": concept(code, title),
                "subject": subject,
                "date": entered,
                "context": { "period": { "start": date } },
                "author": [author],
                "description": title,
                "content": [{ "attachment": attachment }],
            })
        }
        EntryBody::AdminMessage { subject: about, text, channel } => {
            let mut c = communication(e, Some(about), text, subject, author);
            c["medium"] = json!([{ "text": if *channel == AdminChannel::Email { "email" } else { "note" } }]);
            c
        }
        EntryBody::OnlineConsultation { text } | EntryBody::SystemSms { text } => {
            communication(e, None, text, subject, author)
        }
        EntryBody::Diary { text, due } => communication(e, Some(&format!("{DIARY_DUE}{due}")), text, subject, author),
        EntryBody::CarePlan { condition, review } => {
            let mut period = json!({ "start": date });
            if let Some(r) = review {
                period["end"] = json!(r.to_string());
            }
            json!({
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "category": [concept(None, "Care plan")],
                "title": format!("Care plan: {condition}"),
                "description": condition,
                "subject": subject,
                "period": period,
                "created": entered,
                "author": author,
            })
        }
        EntryBody::CarePlanPart { plan, part, text } => {
            // What the patient (or a proxy for them) wrote is theirs, never a clinician's.
            let by = if e.origin == Origin::PatientEntered { subject.clone() } else { author };
            if *part == PlanPart::Goal {
                json!({
                    "resourceType": "Goal",
                    "lifecycleStatus": "active",
                    "description": { "text": text },
                    "subject": subject,
                    "startDate": date,
                    "expressedBy": by,
                })
            } else {
                let mut r = json!({
                    "resourceType": "CarePlan",
                    "status": "active",
                    "intent": "plan",
                    "title": part.heading(),
                    "description": text,
                    "subject": subject,
                    "period": { "start": date },
                    "created": entered,
                    "author": by,
                });
                // Its plan, only where the reader may see that plan too.
                if cx.entries.allows(*plan) {
                    r["partOf"] = json!([{ "reference": format!("CarePlan/{plan}") }]);
                }
                r
            }
        }
    };
    r["id"] = Value::String(e.id.to_string());
    debug_assert!(resource_types(e.kind()).contains(&r["resourceType"].as_str().unwrap_or("")), "{kind}");
    if e.superseded.is_some() {
        not_current(&mut r);
    }
    labelled(r, label)
}

/// An entry a later version replaced (R28), for practice-facing readers (apps never receive
/// one): not current. A problem is inactive and entered in error; anything with a status is
/// entered in error.
fn not_current(r: &mut Value) {
    if r["resourceType"] == "Condition" {
        r["clinicalStatus"] = json!({ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "inactive",
        }]});
        r["verificationStatus"] = json!({ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "entered-in-error",
        }]});
    } else if r.get("status").is_some() {
        r["status"] = Value::String("entered-in-error".into());
    }
}

/// The resource with its security label (every resource type carries one, profile or not).
fn labelled(mut r: Value, label: Label) -> Value {
    match label {
        Label::None => {}
        Label::NotForPatient => {
            r["meta"]["security"] = json!([{
                "system": ACT_CODE_SYSTEM,
                "code": "NOPAT",
                "display": "no disclosure to patient, family or caregivers without attending provider's authorization",
            }]);
        }
        Label::Shareable => {
            r["meta"]["security"] = json!([{
                "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                "code": "N",
                "display": "normal",
            }]);
        }
    }
    r
}

/// A medication course as what the patient takes (UK Core MedicationStatement): the same id as
/// its MedicationRequest, which it is based on, and the same status.
fn medication_statement(e: &Entry, drug: &str, dosage: &str, course: MedicationCourse, cx: &Context) -> Value {
    let mut m = json!({
        "resourceType": "MedicationStatement",
        "id": e.id.to_string(),
        "meta": profile("MedicationStatement"),
        "basedOn": [{ "reference": format!("MedicationRequest/{}", e.id) }],
        "status": cx.medication_status(e.event_date, Some(course)),
        "medicationCodeableConcept": concept(e.code.as_ref(), drug),
        "subject": { "reference": format!("Patient/{}", e.patient) },
        "effectivePeriod": { "start": e.event_date.to_string() },
        "dateAsserted": instant(e.entered_at),
        "informationSource": cx.author(&e.author),
    });
    if !dosage.is_empty() {
        m["dosage"] = json!([{ "text": dosage }]);
    }
    m
}

#[allow(clippy::too_many_arguments)]
fn medication(
    e: &Entry,
    drug: &str,
    dosage: &str,
    q: &str,
    course: Option<MedicationCourse>,
    template: Option<(EntryId, bool)>,
    subject: Value,
    author: Value,
    entered: &str,
    cx: &Context,
) -> Value {
    let mut m = json!({
        "resourceType": "MedicationRequest",
        "meta": profile("MedicationRequest"),
        "status": cx.medication_status(e.event_date, course),
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
        None => match template {
            Some((t, true)) => {
                m["basedOn"] = json!([{
                    "reference": format!("MedicationRequest/{t}"),
                    "display": "the repeat this was issued from",
                }]);
            }
            // The repeat is not the reader's to see: the issue stands on its own.
            Some((_, false)) => {}
            None => m["basedOn"] = json!([{ "display": "a repeat no longer in the record" }]),
        },
    }
    m
}

fn communication(e: &Entry, topic: Option<&str>, text: &str, subject: Value, sender: Value) -> Value {
    let mut c = json!({
        "resourceType": "Communication",
        "meta": profile("Communication"),
        "status": "completed",
        "category": [{ "text": e.kind().display() }],
        "subject": subject,
        "sent": instant(e.entered_at),
        "sender": sender,
        "payload": [{ "contentString": text }],
    });
    if let Some(t) = topic {
        c["topic"] = json!({ "text": t });
    }
    if let Some(code) = &e.code {
        c["reasonCode"] = json!([concept(Some(code), "")]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_split_number_and_unit() {
        assert_eq!(quantity("28 tablets"), Some(json!({ "value": 28, "unit": "tablets" })));
        assert_eq!(
            quantity("100 ml"),
            Some(json!({ "value": 100, "unit": "ml", "system": UCUM, "code": "mL" })),
            "a UCUM unit carries its code"
        );
        assert_eq!(quantity("2.5"), Some(json!({ "value": 2.5 })));
        assert_eq!(quantity("one box"), None);
        // Only numbers that read back as written.
        assert_eq!(quantity("05 tablets"), None);
        assert_eq!(quantity("1e3 ml"), None);
        assert_eq!(quantity("28.0 tablets").map(|q| q["value"].to_string()), Some("28.0".into()));
        assert_eq!(quantity("28tablets"), None);
    }

    #[test]
    fn empty_elements_are_left_out() {
        let v = json!({
            "a": [], "b": {}, "c": "", "d": null, "e": [{ "x": [] }, ""], "f": false, "g": 0,
            "h": [{ "given": [""], "family": "Lee" }],
        });
        assert_eq!(compact(v), json!({ "f": false, "g": 0, "h": [{ "family": "Lee" }] }));
    }

    #[test]
    fn narrative_is_escaped() {
        let n = narrative(&["a < b & c"]);
        assert_eq!(n["div"], "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &lt; b &amp; c</p></div>");
    }
}

#[cfg(test)]
mod round_trip {
    //! What the practice-facing API writes, the transfer-in reader reads back unchanged: every
    //! kind of entry, its code, dates, author and online visibility (as its label).
    use super::*;
    use crate::read::{read_transfer_bundle, RedactionLabel};
    use caldicott_core::ids::{EntryId, PracticeId};
    use caldicott_core::patient::*;
    use caldicott_core::practice::{OdsCode, OnlineServicesSettings, PostalAddress};
    use caldicott_core::snomed::{Coding, ConceptId};
    use chrono::TimeZone;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
    }

    fn person(practice: PracticeId, dob: NaiveDate) -> Patient {
        Patient {
            id: caldicott_core::ids::PatientId::from_uuid(uuid::Uuid::now_v7()),
            practice,
            nhs_number: caldicott_core::NhsNumber::parse("9434765919").expect("a valid NHS number"),
            name: PersonName { title: None, given: "Test".into(), family: "Patient".into() },
            date_of_birth: dob,
            sex: Sex::Unknown,
            contact: ContactDetails::default(),
            preferred_contact: PreferredContactMethod::Unknown,
            registrations: vec![Registration::since(date(2000, 1, 1))],
            date_of_death: None,
        }
    }

    fn entries(p: &Patient) -> Vec<Entry> {
        let at = |d: u32| chrono::Utc.with_ymd_and_hms(2024, 3, d, 10, 30, 0).single().unwrap_or_default();
        let template = EntryId::from_uuid(uuid::Uuid::now_v7());
        let bodies = vec![
            EntryBody::Consultation {
                text: "Cough for a week.\nChest clear.".into(),
                status: ConsultationStatus::Final,
            },
            EntryBody::Problem { title: "Asthma".into(), active: true },
            EntryBody::Problem { title: "Fractured wrist".into(), active: false },
            EntryBody::Coded { value: Some("Ex-smoker".into()) },
            EntryBody::TestResult {
                test: "Haemoglobin".into(),
                value: "132".into(),
                unit: "g/L".into(),
                range: "115-165".into(),
                abnormal: false,
                filing: Filing::Filed,
            },
            EntryBody::TestResult {
                test: "HbA1c".into(),
                value: "52.5".into(),
                unit: "mmol/mol".into(),
                range: "20-41".into(),
                abnormal: true,
                filing: Filing::Filed,
            },
            EntryBody::Medication {
                drug: "Salbutamol inhaler".into(),
                dosage: "Two puffs when needed".into(),
                quantity: "1 inhaler".into(),
                course: MedicationCourse::RepeatTemplate,
            },
            EntryBody::MedicationIssue {
                drug: "Salbutamol inhaler".into(),
                dosage: "Two puffs when needed".into(),
                quantity: "1 inhaler".into(),
                template: Some(template),
            },
            EntryBody::Allergy { substance: "Penicillin".into(), reaction: "Rash".into() },
            EntryBody::Immunisation { vaccine: "Influenza".into() },
            EntryBody::Document {
                title: "Clinic letter".into(),
                summary: "Seen in respiratory clinic".into(),
                filing: Filing::Filed,
                review: DocumentReview::Reviewed,
            },
            EntryBody::AdminMessage {
                subject: "Fit note".into(),
                text: "Sent by email".into(),
                channel: AdminChannel::Email,
            },
            EntryBody::OnlineConsultation { text: "Rash on arm for two days".into() },
            EntryBody::SystemSms { text: "Your appointment is at 10:30".into() },
            EntryBody::Diary { text: "Recall for review".into(), due: date(2025, 1, 5) },
            // A result below what the laboratory reports, with its comparator and UCUM unit.
            EntryBody::TestResult {
                test: "C-reactive protein".into(),
                value: "<5".into(),
                unit: "mg/L".into(),
                range: "0-10".into(),
                abnormal: false,
                filing: Filing::Filed,
            },
        ];
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let entered = at(i as u32 + 1);
                let mut e = Entry {
                    id: if i == 6 { template } else { EntryId::from_uuid(uuid::Uuid::now_v7()) },
                    patient: p.id,
                    event_date: caldicott_core::uk::uk_date(entered),
                    entered_at: entered,
                    author: Author { staff: None, name: "Dr Jane Smith".into() },
                    origin: Origin::Native,
                    code: None,
                    body,
                    visibility: OnlineVisibility::Visible,
                    nopat: false,
                    safeguarding: false,
                    confidential: false,
                    superseded: None,
                };
                if i == 1 {
                    e.code = Some(Coding {
                        concept: ConceptId::parse("195967001").unwrap_or_else(|_| panic!("code")),
                        term: "Asthma".into(),
                    });
                }
                if i == 3 {
                    e.code = Some(Coding {
                        concept: ConceptId::parse("8517006").unwrap_or_else(|_| panic!("code")),
                        term: "Ex-smoker".into(),
                    });
                    e.body = EntryBody::Coded { value: Some("Stopped 2019".into()) };
                }
                if i == 9 {
                    // The vaccination procedure, apart from the vaccine given.
                    e.code = Some(Coding {
                        concept: ConceptId::parse("822851000000102").unwrap_or_else(|_| panic!("code")),
                        term: "Seasonal influenza vaccination".into(),
                    });
                }
                if i == 10 {
                    // A letter dated before it was filed: its own date is kept apart.
                    e.event_date = date(2024, 2, 20);
                }
                if i == 12 {
                    e.visibility = OnlineVisibility::Hidden(
                        Redaction::new(HiddenReason::ThirdParty, "names a relative", "Dr", entered)
                            .unwrap_or_else(|_| panic!("r")),
                    );
                }
                e
            })
            .collect()
    }

    #[test]
    fn a_superseded_entry_is_written_as_not_current() {
        // R28: practice-facing readers receive an entry a later version replaced as not current.
        let p = person(PracticeId::from_uuid(uuid::Uuid::now_v7()), date(1980, 5, 17));
        let at = chrono::Utc.with_ymd_and_hms(2024, 3, 9, 10, 0, 0).single().unwrap_or_default();
        let cx = Context::on(date(2024, 6, 1));
        for mut e in entries(&p)
            .into_iter()
            .filter(|e| matches!(e.body, EntryBody::Problem { active: true, .. } | EntryBody::MedicationIssue { .. }))
        {
            let current = entry_resource(&e, Label::Shareable, &cx);
            e.superseded = Some(caldicott_core::entry::Superseded { at, note: "a later message".into() });
            let retired = entry_resource(&e, Label::Shareable, &cx);
            match current["resourceType"].as_str() {
                Some("Condition") => {
                    assert_eq!(current["clinicalStatus"]["coding"][0]["code"], "active");
                    assert_eq!(retired["clinicalStatus"]["coding"][0]["code"], "inactive");
                    assert_eq!(retired["verificationStatus"]["coding"][0]["code"], "entered-in-error");
                }
                _ => {
                    assert_ne!(current["status"], "entered-in-error");
                    assert_eq!(retired["status"], "entered-in-error");
                }
            }
        }
    }

    #[test]
    fn what_is_written_is_read_back_unchanged() {
        let practice = Practice {
            id: PracticeId::from_uuid(uuid::Uuid::now_v7()),
            ods_code: OdsCode::parse("A81001").unwrap_or_else(|_| panic!("ods")),
            name: "Test Surgery".into(),
            telephone: "01632 960000".into(),
            address: PostalAddress { lines: vec!["1 Test Street".into()], postcode: "TE1 1ST".into() },
            online: OnlineServicesSettings::default(),
        };
        let p = person(practice.id, date(1980, 5, 17));
        let originals = entries(&p);
        // The letter's stored file travels as a Binary beside its DocumentReference.
        let letter = &originals[10];
        let pdf = b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n".to_vec();
        let info = FileInfo {
            content_type: "application/pdf".into(),
            filename: "clinic-letter.pdf".into(),
            size: pdf.len() as u64,
            sha1: [7; 20],
        };
        let cx = Context { files: HashMap::from([(letter.id, info)]), ..Context::on(date(2024, 6, 1)) };
        let binary = binary_resource(letter.id, "application/pdf", &pdf);
        let mut bundle_entries = vec![
            json!({ "fullUrl": format!("Binary/{}", letter.id), "resource": binary }),
            json!({ "fullUrl": format!("Patient/{}", p.id), "resource": patient_resource(&p, &practice) }),
            json!({ "fullUrl": format!("Organization/{}", practice.id), "resource": organization_resource(&practice) }),
        ];
        for e in &originals {
            let label = if matches!(e.visibility, OnlineVisibility::Hidden(_)) {
                Label::NotForPatient
            } else {
                Label::Shareable
            };
            // Every resource an entry is written as: a course's MedicationStatement too, which
            // the reader knows summarises the MedicationRequest beside it.
            for r in entry_resources(e, label, &cx) {
                bundle_entries.push(json!({
                    "fullUrl": format!("{}/{}", r["resourceType"].as_str().unwrap_or(""), e.id),
                    "resource": r,
                }));
            }
        }
        let bundle = json!({ "resourceType": "Bundle", "type": "collection", "entry": bundle_entries });
        let read = read_transfer_bundle(bundle.to_string().as_bytes()).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(read.patient.nhs_number, p.nhs_number);
        assert_eq!((read.patient.given.as_str(), read.patient.family.as_str()), ("Test", "Patient"));
        assert_eq!(read.from_ods, "A81001");
        assert!(read.not_imported.is_empty(), "{:?}", read.not_imported);
        assert_eq!(read.entries.len(), originals.len());
        for (orig, got) in originals.iter().zip(&read.entries) {
            let mut body = got.body.clone();
            // The issue's link to its repeat comes back as an index into the import.
            if let (EntryBody::MedicationIssue { template, .. }, Some(i)) = (&mut body, got.issued_from) {
                *template = Some(originals[i].id);
            }
            assert_eq!(body, orig.body, "{}", got.source);
            assert_eq!(got.code, orig.code, "{}", got.source);
            assert_eq!(got.entered_at, orig.entered_at, "{}", got.source);
            assert_eq!(got.event_date, orig.event_date, "{}", got.source);
            assert_eq!(got.author, orig.author.name, "{}", got.source);
            let hidden = matches!(orig.visibility, OnlineVisibility::Hidden(_));
            let expected = if hidden { RedactionLabel::NotForPatient } else { RedactionLabel::Shareable };
            assert_eq!(got.label, expected, "{}", got.source);
            let file = if orig.id == letter.id { Some(&pdf) } else { None };
            assert_eq!(got.file.as_ref(), file, "{}", got.source);
        }
    }
}
