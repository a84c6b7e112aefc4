//! GP Connect Update Record (R24–R30): reading a pharmacy's consultation summary, an ITK3
//! message Bundle (FHIR STU3) carrying a document Bundle of Iteration 1 profiles, into the
//! [`UpdateRecord`] the practice reviews and files. A message is taken whole or refused whole
//! (R25); every problem is named. What the message becomes (its types, the accepted services,
//! the entries filing writes) is `caldicott_core::update_record`'s.

use crate::{NHS_NUMBER_SYSTEM, SNOMED_SYSTEM as SNOMED};
use caldicott_core::nhs_number::NhsNumber;
use caldicott_core::snomed::{Coding, ConceptId};
use caldicott_core::update_record::*;
use chrono::NaiveDate;
use serde_json::Value;

/// Resource types of the document Bundle in Iteration 1.
const DOCUMENT_TYPES: &[&str] = &[
    "Composition",
    "Patient",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Encounter",
    "MedicationDispense",
    "Observation",
    "ClinicalImpression",
    "Condition",
];
/// Iteration 2 resource types: refused with a message that says so.
const ITERATION_2_TYPES: &[&str] = &["AllergyIntolerance", "Appointment", "Procedure", "ReferralRequest"];
const ODS_SYSTEMS: &[&str] = &["https://fhir.nhs.uk/Id/ods-organization-code", "https://fhir.nhs.uk/Id/ods-site-code"];
/// The systems that name dm+d medicines.
const DMD: &[&str] = &["https://dmd.nhs.uk", "http://dmd.nhs.uk"];

/// Reads an Update Record message, or says everything wrong with it.
pub fn parse(bytes: &[u8]) -> Result<UpdateRecord, Vec<String>> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(vec![format!("the message is larger than {} MB", MAX_MESSAGE_BYTES / 1024 / 1024)]);
    }
    let root: Value = serde_json::from_slice(bytes).map_err(|e| vec![format!("the message is not JSON: {e}")])?;
    if depth(&root) > MAX_DEPTH {
        return Err(vec![format!("the message nests deeper than {MAX_DEPTH} levels")]);
    }
    Reader::default().read(&root)
}

/// The nesting depth of a JSON value, without recursion.
fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn codings(v: Option<&Value>) -> Vec<(&str, &str, &str)> {
    v.and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c.get("system").and_then(Value::as_str).unwrap_or(""),
                        c.get("code").and_then(Value::as_str).unwrap_or(""),
                        c.get("display").and_then(Value::as_str).unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The SNOMED CT coding of a CodeableConcept, if it has a valid one.
fn snomed(v: Option<&Value>) -> Option<Coding> {
    let text = v.and_then(|c| c.get("text")).and_then(Value::as_str).unwrap_or("");
    codings(v).into_iter().find(|(sys, _, _)| *sys == SNOMED).and_then(|(_, code, display)| {
        Some(Coding {
            concept: ConceptId::parse(code).ok()?,
            term: if display.is_empty() { text.to_owned() } else { display.to_owned() },
        })
    })
}

/// The target of a Composition's `relatesTo` of code `replaces`.
fn replaces_of(composition: &Value) -> Option<String> {
    composition.get("relatesTo")?.as_array()?.iter().find_map(|r| {
        (r.get("code")?.as_str()? == "replaces")
            .then(|| s(r, &["targetIdentifier", "value"]).map(|v| v.trim().to_owned()))
            .flatten()
            .filter(|v| !v.is_empty())
    })
}

/// The value of a resource's `identifier` (one Identifier, or the first of a list).
fn identifier_value(r: &Value) -> Option<String> {
    let id = r.get("identifier")?;
    let id = id.as_array().map_or(Some(id), |a| a.first())?;
    id.get("value")?.as_str().map(|v| v.trim().chars().take(200).collect::<String>()).filter(|v| !v.is_empty())
}

/// What a message that could not be read whole still says about itself, read leniently: the
/// payload it replaces, the sender it names and the patient's NHS number. Used only to decide
/// that a replacement which cannot be processed voids the payload it names (R28), after the
/// sender and patient are checked against that payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub replaces: Option<String>,
    pub sender_ods: Option<String>,
    pub nhs_number: Option<String>,
}

/// Reads [`Claims`] from a message's bytes; nothing when it is too large, not JSON or too deep.
pub fn claims(bytes: &[u8]) -> Claims {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Claims::default();
    }
    let Ok(root) = serde_json::from_slice::<Value>(bytes) else { return Claims::default() };
    if depth(&root) > MAX_DEPTH {
        return Claims::default();
    }
    let resources = |b: &Value| -> Vec<Value> {
        b.get("entry")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|e| e.get("resource")).take(MAX_RESOURCES).cloned().collect())
            .unwrap_or_default()
    };
    let entries = resources(&root);
    let of = |list: &[Value], ty: &str| list.iter().find(|r| s(r, &["resourceType"]) == Some(ty)).cloned();
    let sender_ods = of(&entries, "MessageHeader").and_then(|h| {
        let sender_ref = s(&h, &["sender", "reference"]).unwrap_or("").to_owned();
        entries
            .iter()
            .find(|r| {
                s(r, &["resourceType"]) == Some("Organization")
                    && s(r, &["id"]).is_some_and(|id| !id.is_empty() && sender_ref.ends_with(id))
            })
            .and_then(ods_of)
    });
    let doc = entries
        .iter()
        .find(|r| s(r, &["resourceType"]) == Some("Bundle") && s(r, &["type"]) == Some("document"))
        .map(resources)
        .unwrap_or_default();
    Claims {
        replaces: of(&doc, "Composition").as_ref().and_then(replaces_of),
        sender_ods,
        nhs_number: of(&doc, "Patient").and_then(|p| {
            p.get("identifier")?
                .as_array()?
                .iter()
                .find(|i| s(i, &["system"]) == Some(NHS_NUMBER_SYSTEM))
                .and_then(|i| s(i, &["value"]).map(str::to_owned))
        }),
    }
}

/// A medicine's code: dm+d concepts are SNOMED CT concept ids, whichever of the two systems
/// names them.
fn medicine_code(v: Option<&Value>) -> Option<Coding> {
    snomed(v).or_else(|| {
        let text = v.and_then(|c| c.get("text")).and_then(Value::as_str).unwrap_or("");
        codings(v).into_iter().find(|(sys, _, _)| DMD.contains(sys)).and_then(|(_, code, display)| {
            Some(Coding {
                concept: ConceptId::parse(code).ok()?,
                term: if display.is_empty() { text.to_owned() } else { display.to_owned() },
            })
        })
    })
}

fn concept_text(v: Option<&Value>) -> String {
    let text = v.and_then(|c| c.get("text")).and_then(Value::as_str).unwrap_or("");
    if !text.is_empty() {
        return text.to_owned();
    }
    codings(v).first().map(|(_, _, d)| (*d).to_owned()).unwrap_or_default()
}

fn profile_names(r: &Value) -> Vec<String> {
    r.get("meta")
        .and_then(|m| m.get("profile"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|p| p.rsplit('/').next().unwrap_or(p).split('|').next().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn ods_of(org: &Value) -> Option<String> {
    org.get("identifier")?.as_array()?.iter().find_map(|i| {
        let sys = i.get("system")?.as_str()?;
        ODS_SYSTEMS.contains(&sys).then(|| i.get("value")?.as_str().map(str::to_owned)).flatten()
    })
}

fn human_name(r: &Value) -> String {
    let Some(n) = r.get("name").and_then(Value::as_array).and_then(|a| a.first()) else { return String::new() };
    if let Some(t) = n.get("text").and_then(Value::as_str) {
        return t.to_owned();
    }
    let given: Vec<&str> = n
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let family = n.get("family").and_then(Value::as_str).unwrap_or("");
    let prefix: Vec<&str> = n
        .get("prefix")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    [prefix.join(" "), given.join(" "), family.to_owned()]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn date_of(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
}

#[derive(Default)]
struct Reader {
    problems: Vec<String>,
}

impl Reader {
    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    /// Checks every resource's type and profiles (R25).
    fn check_profiles(&mut self, r: &Value, allowed_types: &[&str], place: &str) {
        let ty = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
        if ITERATION_2_TYPES.contains(&ty) {
            self.problem(format!("{place} carries a {ty}, an Iteration 2 resource that is not accepted"));
        } else if !allowed_types.contains(&ty) {
            self.problem(format!(
                "{place} carries a resource of type {ty:?}, which Update Record Iteration 1 does not use"
            ));
        }
        for p in profile_names(r) {
            if !ITERATION_1_PROFILES.contains(&p.as_str()) {
                self.problem(format!("{place} has the profile {p}, which is not an Iteration 1 profile"));
            }
        }
    }

    fn read(mut self, root: &Value) -> Result<UpdateRecord, Vec<String>> {
        if s(root, &["resourceType"]) != Some("Bundle") || s(root, &["type"]) != Some("message") {
            return Err(vec!["the message must be a FHIR Bundle of type \"message\"".into()]);
        }
        self.check_profiles(root, &["Bundle"], "the message Bundle");
        let message_id = s(root, &["id"]).unwrap_or("").trim().to_owned();
        if message_id.is_empty() || message_id.len() > 100 {
            self.problem("the message Bundle needs an id (its ITK3 tracking id) of at most 100 characters");
        }
        let entries: Vec<&Value> = root
            .get("entry")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|e| e.get("resource")).collect())
            .unwrap_or_default();
        if entries.len() > MAX_RESOURCES {
            return Err(vec![format!("the message carries more than {MAX_RESOURCES} resources")]);
        }
        let typed = |list: &[&Value], ty: &str| -> usize {
            list.iter().filter(|r| s(r, &["resourceType"]) == Some(ty)).count()
        };
        for r in &entries {
            self.check_profiles(
                r,
                &["MessageHeader", "Organization", "Bundle", "OperationOutcome"],
                "the message Bundle",
            );
        }
        // The header (R24, D12).
        let headers: Vec<&Value> =
            entries.iter().copied().filter(|r| s(r, &["resourceType"]) == Some("MessageHeader")).collect();
        if headers.len() != 1 {
            self.problem(format!("the message needs exactly one MessageHeader, not {}", headers.len()));
        }
        let mut sender_ods = String::new();
        let mut sender_name = String::new();
        if let Some(h) = headers.first() {
            if s(h, &["event", "code"]) != Some(UPDATE_RECORD_EVENT) {
                self.problem(format!("MessageHeader.event must be {UPDATE_RECORD_EVENT} (ITK Update Record)"));
            }
            let sender_ref = s(h, &["sender", "reference"]).unwrap_or("");
            let sender = entries.iter().copied().find(|r| {
                s(r, &["resourceType"]) == Some("Organization")
                    && s(r, &["id"]).is_some_and(|id| !id.is_empty() && sender_ref.ends_with(id))
            });
            match sender.and_then(|o| ods_of(o).map(|ods| (ods, o))) {
                Some((ods, o)) => {
                    sender_ods = ods;
                    sender_name = s(o, &["name"]).unwrap_or("").to_owned();
                }
                None => {
                    self.problem("MessageHeader.sender must refer to an Organization in the message with an ODS code")
                }
            }
        }
        // The document.
        let documents: Vec<&Value> =
            entries.iter().copied().filter(|r| s(r, &["resourceType"]) == Some("Bundle")).collect();
        if documents.len() != 1 || s(documents[0], &["type"]) != Some("document") {
            self.problem("the message needs exactly one document Bundle");
            return Err(self.problems);
        }
        let doc: Vec<&Value> = documents[0]
            .get("entry")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|e| e.get("resource")).collect())
            .unwrap_or_default();
        if doc.len() > MAX_RESOURCES {
            return Err(vec![format!("the document carries more than {MAX_RESOURCES} resources")]);
        }
        for r in &doc {
            self.check_profiles(r, DOCUMENT_TYPES, "the document");
        }
        for (ty, min, max) in [
            ("Composition", 1, 1),
            ("Patient", 1, 1),
            ("Organization", 1, usize::MAX),
            ("Practitioner", 1, usize::MAX),
            ("Encounter", 1, 1),
            ("ClinicalImpression", 1, usize::MAX),
        ] {
            let n = typed(&doc, ty);
            if n < min || n > max {
                self.problem(if max == 1 {
                    format!("the document needs exactly one {ty}, not {n}")
                } else {
                    format!("the document needs at least one {ty}")
                });
            }
        }
        let first = |ty: &str| doc.iter().copied().find(|r| s(r, &["resourceType"]) == Some(ty));
        // The service (R25, D11).
        let mut service_code = String::new();
        let mut service = String::new();
        if let Some(c) = first("Composition") {
            let services = accepted_services();
            let codes = codings(c.get("type"));
            match codes.iter().find_map(|(sys, code, _)| {
                (*sys == SNOMED).then(|| services.iter().find(|(sc, _, _)| sc == code)).flatten()
            }) {
                Some((code, term, _)) => {
                    service_code = (*code).to_owned();
                    service = (*term).to_owned();
                }
                None => self.problem(format!(
                    "Composition.type {} is not one of the accepted services",
                    codes.first().map_or("(none)".to_owned(), |(_, code, _)| format!("{code:?}"))
                )),
            }
        }
        let replaces = first("Composition").and_then(replaces_of);
        let composition_identifier = first("Composition").and_then(identifier_value);
        let document_identifier = identifier_value(documents[0]);
        if first("Composition")
            .and_then(|c| c.get("relatesTo"))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|r| s(r, &["code"]) == Some("replaces")))
            && replaces.is_none()
        {
            self.problem("Composition.relatesTo \"replaces\" needs the targetIdentifier of the message it replaces");
        }
        // The patient.
        let mut nhs = None;
        let mut birth = None;
        let (mut family, mut given) = (String::new(), String::new());
        if let Some(p) = first("Patient") {
            let number = p.get("identifier").and_then(Value::as_array).and_then(|a| {
                a.iter().find(|i| s(i, &["system"]) == Some(NHS_NUMBER_SYSTEM)).and_then(|i| s(i, &["value"]))
            });
            match number.map(NhsNumber::parse) {
                Some(Ok(n)) => nhs = Some(n),
                Some(Err(e)) => self.problem(format!("the patient's NHS number: {e}")),
                None => self.problem("the Patient needs an NHS number"),
            }
            match s(p, &["birthDate"]).and_then(date_of) {
                Some(d) => birth = Some(d),
                None => self.problem("the Patient needs a birthDate (YYYY-MM-DD)"),
            }
            if let Some(n) = p.get("name").and_then(Value::as_array).and_then(|a| a.first()) {
                family = n.get("family").and_then(Value::as_str).unwrap_or("").to_owned();
                given = n
                    .get("given")
                    .and_then(Value::as_array)
                    .map(|g| g.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
            }
        }
        // The encounter: when, and whether it may be disclosed (R29).
        let mut date = None;
        let mut nopat = false;
        if let Some(e) = first("Encounter") {
            date = s(e, &["period", "start"]).and_then(date_of);
            if date.is_none() {
                self.problem("the Encounter needs period.start, the date of the consultation");
            }
            nopat = e
                .get("meta")
                .and_then(|m| m.get("security"))
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|c| s(c, &["code"]) == Some("NOPAT")));
        }
        let pharmacist = first("Practitioner").map(human_name).unwrap_or_default();
        let pharmacist_role = first("PractitionerRole")
            .and_then(|r| {
                r.get("code").and_then(Value::as_array).and_then(|a| a.first()).map(|c| concept_text(Some(c)))
            })
            .unwrap_or_default();
        // The items.
        let mut items = Vec::new();
        let mut presenting = String::new();
        for r in &doc {
            match s(r, &["resourceType"]).unwrap_or("") {
                "ClinicalImpression" => {
                    let description = s(r, &["description"]).unwrap_or("").trim().to_owned();
                    let summary = s(r, &["summary"]).unwrap_or("").trim().to_owned();
                    if presenting.is_empty() {
                        presenting = description.clone();
                    }
                    let text =
                        [description, summary].into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>().join(". ");
                    let code = snomed(r.get("code"));
                    if text.is_empty() && code.is_none() {
                        self.problem("a ClinicalImpression has neither a code nor any text");
                    }
                    items.push(InboundItem { kind: ItemKind::Impression, code, text, supply: None });
                }
                "Condition" => {
                    let code = snomed(r.get("code"));
                    let text = concept_text(r.get("code"));
                    if code.is_none() && text.is_empty() {
                        self.problem("a Condition has no SNOMED CT code or text");
                    }
                    items.push(
                        InboundItem { kind: ItemKind::Condition, code, text: String::new(), supply: None }
                            .with_text_if_uncoded(text),
                    );
                }
                "Observation" => {
                    let code = snomed(r.get("code"));
                    let value = observation_value(r);
                    if code.is_none() && concept_text(r.get("code")).is_empty() {
                        self.problem("an Observation has no SNOMED CT code or text");
                    }
                    let text = if code.is_some() { value } else { format!("{}: {value}", concept_text(r.get("code"))) };
                    items.push(InboundItem { kind: ItemKind::Observation, code, text, supply: None });
                }
                "MedicationDispense" => {
                    let medicine = r.get("medicationCodeableConcept");
                    let name = concept_text(medicine);
                    if name.is_empty() {
                        self.problem("a MedicationDispense does not name the medicine");
                    }
                    let quantity = r
                        .get("quantity")
                        .map(|q| {
                            let v = q.get("value").map(|v| v.to_string()).unwrap_or_default();
                            let u = q.get("unit").and_then(Value::as_str).unwrap_or("");
                            format!("{v} {u}").trim().to_owned()
                        })
                        .unwrap_or_default();
                    // Every dosage instruction's text, in order (usually one).
                    let dose = r
                        .get("dosageInstruction")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|d| d.get("text").and_then(Value::as_str))
                                .map(str::trim)
                                .filter(|t| !t.is_empty())
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_default();
                    let text = [
                        name.clone(),
                        dose.clone(),
                        if quantity.is_empty() { String::new() } else { format!("quantity {quantity}") },
                    ]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ");
                    items.push(InboundItem {
                        kind: ItemKind::Medication,
                        code: medicine_code(medicine),
                        text,
                        supply: Some(Supply { medicine: name, dosage: dose, quantity }),
                    });
                }
                _ => {}
            }
        }
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        match (nhs, birth, date) {
            (Some(nhs_number), Some(birth_date), Some(consultation_date)) => Ok(UpdateRecord {
                message_id,
                sender_ods,
                sender_name,
                service_code,
                service,
                nhs_number,
                birth_date,
                family_name: family,
                given_name: given,
                consultation_date,
                pharmacist,
                pharmacist_role,
                nopat,
                replaces,
                composition_identifier,
                document_identifier,
                presenting_complaint: presenting,
                items,
            }),
            _ => Err(vec!["the message is incomplete".into()]),
        }
    }
}

/// An observation's value in words: a quantity, a string, or its components ("142/91 mmHg").
fn observation_value(r: &Value) -> String {
    let quantity = |q: &Value| {
        let v = q.get("value").map(|v| v.to_string()).unwrap_or_default();
        let u = q.get("unit").and_then(Value::as_str).unwrap_or("");
        format!("{v} {u}").trim().to_owned()
    };
    if let Some(q) = r.get("valueQuantity") {
        return quantity(q);
    }
    if let Some(v) = r.get("valueString").and_then(Value::as_str) {
        return v.to_owned();
    }
    if let Some(c) = r.get("valueCodeableConcept") {
        return concept_text(Some(c));
    }
    let parts: Vec<(String, String)> = r
        .get("component")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    let q = c.get("valueQuantity")?;
                    Some((
                        q.get("value").map(|v| v.to_string()).unwrap_or_default(),
                        q.get("unit").and_then(Value::as_str).unwrap_or("").to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if parts.len() == 2 && parts[0].1 == parts[1].1 {
        return format!("{}/{} {}", parts[0].0, parts[1].0, parts[0].1).trim().to_owned();
    }
    parts.into_iter().map(|(v, u)| format!("{v} {u}").trim().to_owned()).collect::<Vec<_>>().join(", ")
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PHARMACY_FIRST: &str = include_str!("../../../docs/examples/update-record/pharmacy-first.json");
    const BLOOD_PRESSURE: &str = include_str!("../../../docs/examples/update-record/blood-pressure-check.json");
    const CONTRACEPTION: &str = include_str!("../../../docs/examples/update-record/contraception.json");
    const NOPAT: &str = include_str!("../../../docs/examples/update-record/pharmacy-first-nopat.json");
    const REPLACEMENT: &str = include_str!("../../../docs/examples/update-record/pharmacy-first-replacement.json");

    fn invalid(name: &str) -> Vec<String> {
        let path = format!("{}/../../docs/examples/update-record/{name}", env!("CARGO_MANIFEST_DIR"));
        parse(&std::fs::read(path).unwrap_or_default()).unwrap_err()
    }

    #[test]
    fn the_three_services_are_read() {
        let pf = parse(PHARMACY_FIRST.as_bytes()).unwrap();
        assert_eq!(pf.message_id, "c1a4e5f0-0001-4d1b-9c11-000000000001");
        assert_eq!((pf.sender_ods.as_str(), pf.sender_name.as_str()), ("FA123", "Quayside Pharmacy"));
        assert_eq!(pf.service_code, "2129921000000100");
        assert_eq!(pf.nhs_number.as_str(), "9990996008");
        assert_eq!(pf.birth_date, NaiveDate::from_ymd_opt(1987, 3, 14).unwrap());
        assert_eq!(pf.consultation_date, NaiveDate::from_ymd_opt(2026, 11, 20).unwrap());
        assert_eq!(pf.pharmacist, "Ms Anita Shah");
        assert!(!pf.nopat && pf.replaces.is_none());
        assert_eq!(pf.presenting_complaint, "Sore throat for 4 days, no cough, fever 38.1");
        let kinds: Vec<ItemKind> = pf.items.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, vec![ItemKind::Impression, ItemKind::Condition, ItemKind::Medication]);
        assert_eq!(pf.items[1].code.as_ref().unwrap().concept.as_str(), "43878008");
        assert!(
            pf.items[2].text.contains("Phenoxymethylpenicillin") && pf.items[2].text.contains("quantity 40 tablet")
        );
        // R26: a medicine is kept element by element, as sent.
        assert_eq!(
            pf.items[2].supply,
            Some(Supply {
                medicine: "Phenoxymethylpenicillin 250mg tablets".into(),
                dosage: "Two tablets four times a day for 5 days".into(),
                quantity: "40 tablet".into(),
            })
        );
        assert_eq!(pf.pharmacist_role, "Community pharmacist");
        let bp = parse(BLOOD_PRESSURE.as_bytes()).unwrap();
        assert_eq!(bp.service_code, "1659111000000107");
        assert_eq!(bp.items.iter().filter(|i| i.kind == ItemKind::Observation).count(), 2);
        assert_eq!(bp.items[1].describe(), "Blood pressure (75367002): 152/94 mmHg");
        assert_eq!(parse(CONTRACEPTION.as_bytes()).unwrap().service_code, "1659121000000101");
    }

    #[test]
    fn nopat_and_replacements_are_seen() {
        // R28, R29
        assert!(parse(NOPAT.as_bytes()).unwrap().nopat);
        assert_eq!(
            parse(REPLACEMENT.as_bytes()).unwrap().replaces.as_deref(),
            Some("c1a4e5f0-0001-4d1b-9c11-000000000001")
        );
        let before = parse(PHARMACY_FIRST.as_bytes()).unwrap().items;
        let after = parse(REPLACEMENT.as_bytes()).unwrap().items;
        let changes = item_changes(&before, &after);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].starts_with("Removed: Medicine supplied") && changes[0].contains("5 days"));
        assert!(changes[1].starts_with("Added: Medicine supplied") && changes[1].contains("10 days"));
    }

    #[test]
    fn each_rejection_rule_names_its_reason() {
        // R25: the whole message is refused, with a specific reason.
        let has =
            |errs: Vec<String>, what: &str| assert!(errs.iter().any(|e| e.contains(what)), "{what:?} not in {errs:?}");
        has(invalid("invalid-iteration-2-allergy.json"), "AllergyIntolerance, an Iteration 2 resource");
        has(invalid("invalid-profile.json"), "CareConnect-GPC-Encounter-2, which is not an Iteration 1 profile");
        has(invalid("invalid-service-code.json"), "\"185317003\" is not one of the accepted services");
        has(invalid("invalid-no-patient.json"), "exactly one Patient");
        has(invalid("invalid-nhs-number.json"), "NHS number");
        has(invalid("invalid-event.json"), "ITK014M");
        has(invalid("invalid-not-a-message.json"), "type \"message\"");
    }

    #[test]
    fn hostile_input_is_refused_safely() {
        assert!(parse(b"").unwrap_err()[0].contains("not JSON"));
        assert!(parse(b"{\"resourceType\": ").unwrap_err()[0].contains("not JSON"));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(deep.as_bytes()).unwrap_err()[0].contains("deeper"));
        let very_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(very_deep.as_bytes()).is_err(), "no stack overflow");
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(parse(&huge).unwrap_err()[0].contains("larger than"));
        let many = format!(
            "{{\"resourceType\":\"Bundle\",\"type\":\"message\",\"id\":\"x\",\"entry\":[{}]}}",
            vec!["{\"resource\":{\"resourceType\":\"Organization\"}}"; MAX_RESOURCES + 1].join(",")
        );
        assert!(parse(many.as_bytes()).unwrap_err()[0].contains("more than"));
    }

    #[test]
    fn the_service_list_is_data() {
        // D11: five codes, kept as data.
        let codes: Vec<&str> = accepted_services().iter().map(|(c, _, _)| *c).collect();
        assert_eq!(codes.len(), 5);
        assert!(codes.iter().all(|c| ConceptId::parse(c).is_ok()));
        assert_eq!(ItkCode::from_code(20009), Some(ItkCode::PayloadInvalid));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// T36 (bounded, on stable): arbitrary bytes, and each sample with bytes changed, never
        /// make the parser panic.
        #[test]
        fn the_parser_never_panics(noise in proptest::collection::vec(any::<u8>(), 0..2048), at in any::<usize>(), sample in 0usize..5) {
            let _ = parse(&noise);
            let mut bytes = [PHARMACY_FIRST, BLOOD_PRESSURE, CONTRACEPTION, NOPAT, REPLACEMENT][sample].as_bytes().to_vec();
            let i = at % bytes.len();
            for (k, b) in noise.iter().take(16).enumerate() {
                if let Some(x) = bytes.get_mut(i + k) {
                    *x = *b;
                }
            }
            let _ = parse(&bytes);
            bytes.truncate(i);
            let _ = parse(&bytes);
        }
    }
}
