//! Reading a FHIR R4 (UK Core) Bundle that carries a patient's record from another practice.
//!
//! The reader is strict about what it needs (a Patient with a valid NHS number and date of birth,
//! the sending practice's ODS code, a date on every clinical resource) and lists every problem it
//! finds, so that a bad file is refused as a whole with all its faults named. It never decides
//! visibility itself: it reports the redaction label each resource carried, and the transfer use
//! case turns labels into online visibility (R7, D4).

pub use crate::{ACT_CODE_SYSTEM, NHS_NUMBER_SYSTEM, ODS_SYSTEM, SNOMED_SYSTEM};
use caldicott_core::entry::*;
use caldicott_core::patient::Sex;
use caldicott_core::snomed::{Coding, ConceptId};
use caldicott_core::NhsNumber;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// What the sending system said about showing a resource to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedactionLabel {
    /// `meta.security` holds `NOPAT`: hidden at the sending practice.
    NotForPatient,
    /// `meta.security` holds labels, none of them `NOPAT`: the sender labelled it and allowed it.
    Shareable,
    /// No security labels at all: nothing is known, so it waits for review (D4).
    Missing,
}

/// The demographics the Bundle's Patient resource carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlePatient {
    pub nhs_number: NhsNumber,
    pub given: String,
    pub family: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub address_lines: Vec<String>,
    pub postcode: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
}

/// One clinical resource turned into the parts of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedEntry {
    /// Where it was in the file ("MedicationRequest/abc"), for messages and the audit.
    pub source: String,
    pub event_date: NaiveDate,
    /// When the sending practice entered it: kept, never replaced by the import date (D3).
    pub entered_at: DateTime<Utc>,
    pub author: String,
    pub code: Option<Coding>,
    pub body: EntryBody,
    pub label: RedactionLabel,
    /// For a medication issue: the index (in `entries`) of the repeat template it came from.
    pub issued_from: Option<usize>,
    /// For a document: its file, when the Bundle carries it (`attachment.data`, or a Binary in
    /// the Bundle that `attachment.url` names).
    pub file: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferBundle {
    pub patient: BundlePatient,
    pub from_ods: String,
    pub entries: Vec<ImportedEntry>,
    /// Resources that carry no record entry of their own (Organization, Practitioner …) or that
    /// caldicott does not import, counted by type so that staff see what was left out.
    pub not_imported: BTreeMap<String, usize>,
}

/// Resource types that only support the others (they are read for names and references).
const SUPPORTING: [&str; 8] =
    ["Patient", "Organization", "Practitioner", "PractitionerRole", "Medication", "Location", "List", "Binary"];

/// Reads a Bundle, or returns every problem found in it.
pub fn read_transfer_bundle(bytes: &[u8]) -> Result<TransferBundle, Vec<String>> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| vec![format!("The file is not valid JSON: {e}")])?;
    if root.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(vec!["The file is not a FHIR Bundle (resourceType must be \"Bundle\")".into()]);
    }
    let resources: Vec<(String, &Value)> = root
        .get("entry")
        .and_then(Value::as_array)
        .map(|es| {
            es.iter()
                .filter_map(|e| {
                    let r = e.get("resource")?;
                    let key = e.get("fullUrl").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| {
                        format!("{}/{}", text(r, "resourceType").unwrap_or("?"), text(r, "id").unwrap_or("?"))
                    });
                    Some((key, r))
                })
                .collect()
        })
        .unwrap_or_default();
    if resources.is_empty() {
        return Err(vec!["The Bundle has no entries".into()]);
    }
    let mut r = Reader { problems: Vec::new(), by_ref: HashMap::new() };
    for (key, res) in &resources {
        r.by_ref.insert(key.clone(), res);
        if let (Some(t), Some(id)) = (text(res, "resourceType"), text(res, "id")) {
            r.by_ref.insert(format!("{t}/{id}"), res);
        }
    }

    let patients: Vec<&Value> =
        resources.iter().map(|(_, v)| *v).filter(|v| text(v, "resourceType") == Some("Patient")).collect();
    let patient = match patients.as_slice() {
        [p] => r.patient(p),
        [] => {
            r.problems.push("The Bundle has no Patient resource".into());
            None
        }
        _ => {
            r.problems.push("The Bundle holds more than one Patient; a transfer carries one patient's record".into());
            None
        }
    };
    let from_ods = r.sending_practice(patients.first().copied());

    let mut entries = Vec::new();
    let mut based_on: Vec<Option<String>> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut not_imported = BTreeMap::new();
    for (key, res) in &resources {
        let kind = text(res, "resourceType").unwrap_or("(no resourceType)");
        if SUPPORTING.contains(&kind) {
            continue;
        }
        match r.entry(kind, key, res) {
            Some(Some((e, parent))) => {
                index_of.insert(key.clone(), entries.len());
                if let Some(id) = text(res, "id") {
                    index_of.insert(format!("{kind}/{id}"), entries.len());
                }
                entries.push(e);
                based_on.push(parent);
            }
            Some(None) => {}
            None => *not_imported.entry(kind.to_owned()).or_insert(0) += 1,
        }
    }
    for (e, parent) in entries.iter_mut().zip(based_on) {
        e.issued_from = parent.and_then(|p| index_of.get(&p).copied());
    }
    if entries.is_empty() && r.problems.is_empty() {
        r.problems.push("The Bundle holds no clinical entries to import".into());
    }
    match (patient, from_ods, r.problems.is_empty()) {
        (Some(patient), Some(from_ods), true) => Ok(TransferBundle { patient, from_ods, entries, not_imported }),
        _ => Err(r.problems),
    }
}

struct Reader<'a> {
    problems: Vec<String>,
    by_ref: HashMap<String, &'a Value>,
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn first<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get(key).and_then(Value::as_array).and_then(|a| a.first())
}

fn array<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The words of a CodeableConcept: its text, else the first coding's display.
fn concept_text(v: Option<&Value>) -> Option<String> {
    let v = v?;
    text(v, "text").or_else(|| array(v, "coding").find_map(|c| text(c, "display"))).map(str::to_owned)
}

/// The SNOMED CT coding of a CodeableConcept, if it has one with a valid concept id.
fn snomed(v: Option<&Value>) -> Option<Coding> {
    let v = v?;
    array(v, "coding").find_map(|c| {
        (text(c, "system") == Some(SNOMED_SYSTEM)).then_some(())?;
        let concept = ConceptId::parse(text(c, "code")?).ok()?;
        let term = text(c, "display").or_else(|| text(v, "text")).unwrap_or_default().to_owned();
        Some(Coding { concept, term })
    })
}

fn has_code(v: Option<&Value>, code: &str) -> bool {
    v.is_some_and(|v| array(v, "coding").any(|c| text(c, "code") == Some(code)))
}

/// A FHIR date or dateTime ("2019", "2019-05", "2019-05-03", "2019-05-03T10:00:00+01:00").
fn fhir_date(s: &str) -> Option<(NaiveDate, DateTime<Utc>)> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        let t = t.with_timezone(&Utc);
        return Some((t.date_naive(), t));
    }
    let d = match s.len() {
        4 => NaiveDate::from_ymd_opt(s.parse().ok()?, 1, 1)?,
        7 => NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok()?,
        10 => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?,
        _ => return None,
    };
    Some((d, d.and_time(NaiveTime::MIN).and_utc()))
}

/// The narrative of a resource as plain text: tags dropped, entities decoded, blocks on new lines.
pub fn narrative_text(div: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let mut tag = String::new();
    for ch in div.chars() {
        match (in_tag, ch) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap_or("").to_ascii_lowercase();
                if matches!(name.as_str(), "br" | "p" | "div" | "li" | "tr") && !out.ends_with('\n') && !out.is_empty()
                {
                    out.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) => out.push(c),
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

impl Reader<'_> {
    fn patient(&mut self, p: &Value) -> Option<BundlePatient> {
        let nhs = array(p, "identifier")
            .find(|i| text(i, "system") == Some(NHS_NUMBER_SYSTEM))
            .and_then(|i| text(i, "value"));
        let nhs_number = match nhs.map(NhsNumber::parse) {
            Some(Ok(n)) => Some(n),
            Some(Err(e)) => {
                self.problems.push(format!("The Patient's NHS number is not valid: {e}"));
                None
            }
            None => {
                self.problems.push(format!("The Patient has no identifier with system {NHS_NUMBER_SYSTEM}"));
                None
            }
        };
        let name = array(p, "name")
            .find(|n| matches!(text(n, "use"), Some("official" | "usual")))
            .or_else(|| first(p, "name"));
        let given = name
            .map(|n| array(n, "given").filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let family = name.and_then(|n| text(n, "family")).unwrap_or_default().to_owned();
        if given.is_empty() || family.is_empty() {
            self.problems.push("The Patient needs a given and a family name".into());
        }
        let birth_date = text(p, "birthDate").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        if birth_date.is_none() {
            self.problems.push("The Patient needs a full birthDate (YYYY-MM-DD)".into());
        }
        let sex = Sex::parse(text(p, "gender").unwrap_or("unknown")).unwrap_or(Sex::Unknown);
        let address = array(p, "address").find(|a| text(a, "use") != Some("old")).or_else(|| first(p, "address"));
        let mut address_lines: Vec<String> = address
            .map(|a| array(a, "line").filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(city) = address.and_then(|a| text(a, "city")) {
            address_lines.push(city.to_owned());
        }
        let postcode = address.and_then(|a| text(a, "postalCode")).unwrap_or_default().to_ascii_uppercase();
        let telecom = |system: &str, uses: &[&str]| {
            array(p, "telecom")
                .find(|t| {
                    text(t, "system") == Some(system)
                        && (uses.is_empty() || text(t, "use").is_some_and(|u| uses.contains(&u)))
                })
                .and_then(|t| text(t, "value"))
                .map(str::to_owned)
        };
        Some(BundlePatient {
            nhs_number: nhs_number?,
            given,
            family,
            birth_date: birth_date?,
            sex,
            address_lines,
            postcode,
            mobile: telecom("phone", &["mobile"]),
            email: telecom("email", &[]),
        })
    }

    /// The ODS code of the sending practice: the Patient's registered GP organisation, else the
    /// one Organization in the Bundle with an ODS code.
    fn sending_practice(&mut self, patient: Option<&Value>) -> Option<String> {
        let ods_of = |org: &Value| {
            array(org, "identifier")
                .find(|i| text(i, "system") == Some(ODS_SYSTEM))
                .and_then(|i| text(i, "value"))
                .map(str::to_owned)
        };
        let from_gp = patient.into_iter().flat_map(|p| array(p, "generalPractitioner")).find_map(|r| {
            if let Some(ods) = r.get("identifier").filter(|i| text(i, "system") == Some(ODS_SYSTEM)) {
                return text(ods, "value").map(str::to_owned);
            }
            self.by_ref.get(text(r, "reference")?).and_then(|o| ods_of(o))
        });
        let found = from_gp.or_else(|| {
            let orgs: Vec<String> = self
                .by_ref
                .values()
                .filter(|v| text(v, "resourceType") == Some("Organization"))
                .filter_map(|o| ods_of(o))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            (orgs.len() == 1).then(|| orgs[0].clone())
        });
        match found.map(|s| caldicott_core::practice::OdsCode::parse(&s).map(|o| o.as_str().to_owned())) {
            Some(Ok(ods)) => Some(ods),
            Some(Err(e)) => {
                self.problems.push(format!("The sending practice's ODS code is not valid: {e}"));
                None
            }
            None => {
                self.problems.push(format!(
                    "The Bundle does not say which practice it comes from: give the Patient a generalPractitioner \
                     Organization with an identifier of system {ODS_SYSTEM}"
                ));
                None
            }
        }
    }

    /// The name of whoever a reference points at, if the Bundle holds them.
    fn who(&self, reference: Option<&Value>) -> Option<String> {
        let r = reference?;
        if let Some(d) = text(r, "display") {
            return Some(d.to_owned());
        }
        let target = self.by_ref.get(text(r, "reference")?)?;
        match text(target, "resourceType") {
            Some("Practitioner") => {
                let n = first(target, "name")?;
                let given = array(n, "given").filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
                let prefix = array(n, "prefix").filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
                let full = [prefix.as_str(), given.as_str(), text(n, "family").unwrap_or("")]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                Some(full).filter(|s| !s.is_empty())
            }
            _ => text(target, "name").map(str::to_owned),
        }
    }

    /// One clinical resource. `None`: a type caldicott does not import; `Some(None)`: a
    /// problem was recorded, or it only repeats another resource of the file.
    #[allow(clippy::type_complexity)]
    fn entry(&mut self, kind: &str, key: &str, r: &Value) -> Option<Option<(ImportedEntry, Option<String>)>> {
        let label = {
            let labels: Vec<&Value> = r.get("meta").map(|m| array(m, "security").collect()).unwrap_or_default();
            if labels.iter().any(|l| text(l, "code") == Some("NOPAT")) {
                RedactionLabel::NotForPatient
            } else if labels.is_empty() {
                RedactionLabel::Missing
            } else {
                RedactionLabel::Shareable
            }
        };
        let date_of = |fields: &[&str]| {
            fields.iter().find_map(|f| text(r, f).or_else(|| r.get(*f).and_then(|p| text(p, "start"))))
        };
        let (event_fields, entered_fields, author_field): (&[&str], &[&str], &str) = match kind {
            "Encounter" => (&["period"], &["period"], "participant"),
            "Condition" => (&["onsetDateTime", "recordedDate"], &["recordedDate", "onsetDateTime"], "recorder"),
            "Observation" => (
                &["effectiveDateTime", "effectivePeriod", "issued"],
                &["issued", "effectiveDateTime", "effectivePeriod"],
                "performer",
            ),
            "MedicationRequest" => (&["authoredOn"], &["authoredOn"], "requester"),
            "MedicationStatement" => (
                &["effectiveDateTime", "effectivePeriod", "dateAsserted"],
                &["dateAsserted", "effectiveDateTime", "effectivePeriod"],
                "informationSource",
            ),
            "AllergyIntolerance" => {
                (&["onsetDateTime", "recordedDate"], &["recordedDate", "onsetDateTime"], "recorder")
            }
            "Immunization" => (&["occurrenceDateTime", "recorded"], &["recorded", "occurrenceDateTime"], "performer"),
            "DocumentReference" => (&["date"], &["date"], "author"),
            "Communication" => (&["sent"], &["sent"], "sender"),
            _ => return None,
        };
        // A document's own date (a letter's) is its context's period; `date` is when it was filed.
        let document_date = (kind == "DocumentReference")
            .then(|| r.get("context").and_then(|c| c.get("period")).and_then(|p| text(p, "start")))
            .flatten();
        let event = document_date.or_else(|| date_of(event_fields)).and_then(fhir_date);
        let entered = date_of(entered_fields).and_then(fhir_date);
        let (Some((event_date, _)), Some((_, entered_at))) = (event, entered) else {
            self.problems.push(format!("{key}: a {kind} needs a date ({})", event_fields.join(" or ")));
            return Some(None);
        };
        let author_ref = match author_field {
            "participant" => first(r, "participant").and_then(|p| p.get("individual")),
            "performer" => first(r, "performer").map(|p| p.get("actor").unwrap_or(p)),
            "author" => first(r, "author"),
            f => r.get(f),
        };
        let author = self.who(author_ref).unwrap_or_default();
        let code_field = match kind {
            "Immunization" => "vaccineCode",
            "DocumentReference" => "type",
            "MedicationRequest" | "MedicationStatement" => "medicationCodeableConcept",
            _ => "code",
        };
        let concept = if kind == "Communication" { first(r, "reasonCode") } else { r.get(code_field) };
        // An immunisation's code is its vaccination procedure (UK Core's extension), where given.
        let procedure = (kind == "Immunization")
            .then(|| {
                array(r, "extension")
                    .find(|x| text(x, "url") == Some(crate::write::VACCINATION_PROCEDURE))
                    .and_then(|x| snomed(x.get("valueCodeableConcept")))
            })
            .flatten();
        let code = procedure.or_else(|| snomed(concept));
        let words = concept_text(concept);
        let need_words = |me: &mut Self, what: &str| {
            me.problems.push(format!("{key}: a {kind} needs {what}"));
        };
        let mut based_on = None;
        let mut file = None;
        let body = match kind {
            "Encounter" => {
                let status = if text(r, "status") == Some("finished") {
                    ConsultationStatus::Final
                } else {
                    ConsultationStatus::Draft
                };
                let narrative = r.get("text").and_then(|t| text(t, "div")).map(narrative_text).unwrap_or_default();
                let text = if narrative.is_empty() {
                    first(r, "type").and_then(|t| concept_text(Some(t))).unwrap_or_else(|| "Consultation".into())
                } else {
                    narrative
                };
                EntryBody::Consultation { text, status }
            }
            "Condition" => {
                let Some(title) = words else {
                    need_words(self, "a code");
                    return Some(None);
                };
                let problem = array(r, "category").any(|c| has_code(Some(c), "problem-list-item"));
                if problem {
                    EntryBody::Problem { title, active: has_code(r.get("clinicalStatus"), "active") }
                } else {
                    EntryBody::Coded { value: Some(title) }
                }
            }
            "Observation" => {
                let Some(test) = words else {
                    need_words(self, "a code");
                    return Some(None);
                };
                let lab = array(r, "category").any(|c| has_code(Some(c), "laboratory"));
                if let Some(q) = r.get("valueQuantity") {
                    let number = q.get("value").map(|v| v.to_string()).unwrap_or_default();
                    let value = format!("{}{number}", text(q, "comparator").unwrap_or_default());
                    let unit = text(q, "unit").or_else(|| text(q, "code")).unwrap_or_default().to_owned();
                    let range = first(r, "referenceRange")
                        .map(|rr| {
                            text(rr, "text").map(str::to_owned).unwrap_or_else(|| {
                                let v = |k: &str| {
                                    rr.get(k).and_then(|x| x.get("value")).map(|x| x.to_string()).unwrap_or_default()
                                };
                                format!("{}-{}", v("low"), v("high"))
                            })
                        })
                        .unwrap_or_default();
                    let abnormal = array(r, "interpretation")
                        .any(|i| ["H", "L", "A", "HH", "LL", "AA", "HU", "LU"].iter().any(|c| has_code(Some(i), c)));
                    EntryBody::TestResult { test, value, unit, range, abnormal, filing: Filing::Filed }
                } else if lab {
                    let value = text(r, "valueString")
                        .map(str::to_owned)
                        .or_else(|| concept_text(r.get("valueCodeableConcept")))
                        .unwrap_or_default();
                    EntryBody::TestResult {
                        test,
                        value,
                        unit: String::new(),
                        range: String::new(),
                        abnormal: false,
                        filing: Filing::Filed,
                    }
                } else {
                    let value = text(r, "valueString")
                        .map(str::to_owned)
                        .or_else(|| concept_text(r.get("valueCodeableConcept")));
                    EntryBody::Coded { value: value.or(Some(test)) }
                }
            }
            "MedicationRequest" | "MedicationStatement" => {
                let drug = words.or_else(|| {
                    let m = self.by_ref.get(r.get("medicationReference").and_then(|m| text(m, "reference"))?)?;
                    concept_text(m.get("code"))
                });
                let Some(drug) = drug else {
                    need_words(self, "a medication");
                    return Some(None);
                };
                let dosage = first(r, "dosageInstruction")
                    .or_else(|| first(r, "dosage"))
                    .and_then(|d| text(d, "text"))
                    .unwrap_or_default()
                    .to_owned();
                let quantity = r
                    .get("dispenseRequest")
                    .and_then(|d| d.get("quantity"))
                    .map(|q| {
                        let v = q.get("value").map(|v| v.to_string()).unwrap_or_default();
                        format!("{v} {}", text(q, "unit").unwrap_or_default()).trim().to_owned()
                    })
                    .unwrap_or_default();
                based_on = first(r, "basedOn").and_then(|b| text(b, "reference")).map(str::to_owned);
                if kind == "MedicationStatement" {
                    // A statement based on a request in the file says again what the request says
                    // (UK Core writes both for one course): the request is the entry.
                    if based_on.as_deref().is_some_and(|b| self.by_ref.contains_key(b)) {
                        return Some(None);
                    }
                    based_on = None;
                    EntryBody::Medication { drug, dosage, quantity, course: MedicationCourse::Acute }
                } else if based_on.is_some() {
                    EntryBody::MedicationIssue { drug, dosage, quantity, template: None }
                } else {
                    let repeat = has_code(r.get("courseOfTherapyType"), "continuous");
                    EntryBody::Medication {
                        drug,
                        dosage,
                        quantity,
                        course: if repeat { MedicationCourse::RepeatTemplate } else { MedicationCourse::Acute },
                    }
                }
            }
            "AllergyIntolerance" => {
                let Some(substance) = words else {
                    need_words(self, "a code for the substance");
                    return Some(None);
                };
                let reaction = first(r, "reaction")
                    .and_then(|re| {
                        concept_text(first(re, "manifestation")).or_else(|| text(re, "description").map(str::to_owned))
                    })
                    .unwrap_or_default();
                EntryBody::Allergy { substance, reaction }
            }
            "Immunization" => {
                let Some(vaccine) = words else {
                    need_words(self, "a vaccineCode");
                    return Some(None);
                };
                EntryBody::Immunisation { vaccine }
            }
            "DocumentReference" => {
                let title = text(r, "description").map(str::to_owned).or(words).unwrap_or_else(|| "Document".into());
                let summary = first(r, "content")
                    .and_then(|c| c.get("attachment"))
                    .and_then(|a| text(a, "title"))
                    .unwrap_or_default()
                    .to_owned();
                let attachment = first(r, "content").and_then(|c| c.get("attachment"));
                let data = attachment.and_then(|a| text(a, "data")).or_else(|| {
                    let binary = self.by_ref.get(text(attachment?, "url")?)?;
                    (text(binary, "resourceType") == Some("Binary")).then(|| text(binary, "data"))?
                });
                if let Some(d) = data {
                    match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, d) {
                        Ok(bytes) => file = Some(bytes),
                        Err(_) => {
                            self.problems.push(format!("{key}: the document's attachment data is not base64"));
                            return Some(None);
                        }
                    }
                }
                EntryBody::Document { title, summary, filing: Filing::Filed, review: DocumentReview::Reviewed }
            }
            "Communication" => {
                let topic = r.get("topic").and_then(|t| text(t, "text")).unwrap_or_default().to_owned();
                let email = first(r, "medium").and_then(|m| text(m, "text")) == Some("email");
                let category = first(r, "category").and_then(|c| concept_text(Some(c))).unwrap_or_default();
                let text = first(r, "payload").and_then(|p| text(p, "contentString")).unwrap_or_default().to_owned();
                match EntryKind::ALL.into_iter().find(|k| k.display() == category) {
                    Some(EntryKind::OnlineConsultation) => EntryBody::OnlineConsultation { text },
                    Some(EntryKind::SystemSms) => EntryBody::SystemSms { text },
                    Some(EntryKind::Diary) => {
                        let due = topic
                            .strip_prefix(crate::write::DIARY_DUE)
                            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                            .unwrap_or(event_date);
                        EntryBody::Diary { text, due }
                    }
                    _ => EntryBody::AdminMessage {
                        subject: topic,
                        text,
                        channel: if email { AdminChannel::Email } else { AdminChannel::Note },
                    },
                }
            }
            _ => return None,
        };
        // A coded entry's term lives on its code; keep the code only when it is SNOMED CT.
        Some(Some((
            ImportedEntry {
                source: key.to_owned(),
                event_date,
                entered_at,
                author,
                code,
                body,
                label,
                issued_from: None,
                file,
            },
            based_on,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_every_precision() {
        assert_eq!(fhir_date("2019").map(|d| d.0), NaiveDate::from_ymd_opt(2019, 1, 1));
        assert_eq!(fhir_date("2019-05").map(|d| d.0), NaiveDate::from_ymd_opt(2019, 5, 1));
        assert_eq!(fhir_date("2019-05-03").map(|d| d.0), NaiveDate::from_ymd_opt(2019, 5, 3));
        let (d, t) = fhir_date("2019-05-03T23:30:00-01:00").unwrap();
        assert_eq!(d, NaiveDate::from_ymd_opt(2019, 5, 4).unwrap());
        assert_eq!(t.to_rfc3339(), "2019-05-04T00:30:00+00:00");
        assert_eq!(fhir_date("3 May 2019"), None);
        assert_eq!(fhir_date("2019-13-01"), None);
    }

    #[test]
    fn narrative_becomes_plain_text() {
        assert_eq!(
            narrative_text(
                "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Cough &amp; cold</p><p>x &lt; 3<br/>ok</p></div>"
            ),
            "Cough & cold\nx < 3\nok"
        );
        assert_eq!(narrative_text("<div>&amp;lt;</div>"), "&lt;");
    }
}
