//! GP Connect Access Document (STU3): finding a patient, searching their documents and
//! retrieving one, as the specification shapes the requests and answers.
//!
//! What a document search may return is the caller's decision
//! (`caldicott_core::gpconnect::document_release`); this module reads the search and writes the
//! `GPConnect-Searchset-Bundle-1` and the `Binary`.

use super::{GpcError, SpineCode};
use crate::{NHS_NUMBER_SYSTEM, ODS_SYSTEM, SNOMED_SYSTEM};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use caldicott_core::entry::{Entry, EntryBody, FileInfo, Origin};
use caldicott_core::patient::Patient;
use caldicott_core::practice::Practice;
use caldicott_core::NhsNumber;
use chrono::NaiveDate;
use serde_json::{json, Value};

pub const METADATA_INTERACTION: &str = "urn:nhs:names:services:gpconnect:documents:fhir:rest:read:metadata-1";
pub const PATIENT_SEARCH_INTERACTION: &str = "urn:nhs:names:services:gpconnect:documents:fhir:rest:search:patient-1";
pub const DOCUMENT_SEARCH_INTERACTION: &str =
    "urn:nhs:names:services:gpconnect:documents:fhir:rest:search:documentreference-1";
pub const BINARY_INTERACTION: &str = "urn:nhs:names:services:gpconnect:documents:fhir:rest:read:binary-1";
pub const SEARCHSET_PROFILE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-Searchset-Bundle-1";
const STU3: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";

/// The `_include`s (and the `_revinclude`) a consumer must send with a document search.
pub const REQUIRED_INCLUDES: [&str; 4] = [
    "DocumentReference:subject:Patient",
    "DocumentReference:custodian:Organization",
    "DocumentReference:author:Organization",
    "DocumentReference:author:Practitioner",
];
pub const REQUIRED_REVINCLUDE: &str = "PractitionerRole:practitioner";

fn invalid(diagnostics: impl Into<String>) -> GpcError {
    GpcError::new(SpineCode::InvalidParameter, diagnostics)
}

/// `GET [base]/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|…`: the NHS number asked for.
pub fn read_patient_search(query: &[(String, String)]) -> Result<NhsNumber, GpcError> {
    let (system, value) = super::one_identifier(query, NHS_NUMBER_SYSTEM, "NHS number")?;
    if system != NHS_NUMBER_SYSTEM {
        return Err(invalid(format!("identifier's system must be {NHS_NUMBER_SYSTEM}")));
    }
    NhsNumber::parse(value).map_err(|e| GpcError::new(SpineCode::InvalidNhsNumber, e.to_string()))
}

/// A document search, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentSearch {
    pub created_from: Option<NaiveDate>,
    pub created_to: Option<NaiveDate>,
    /// ODS codes: the organisation where the document was written (`author`), and the practice
    /// setting (`facility`).
    pub author: Option<String>,
    pub facility: Option<String>,
    /// A SNOMED CT concept the document's type must be.
    pub type_code: Option<String>,
    /// Words its title must contain (any case).
    pub description: Option<String>,
}

fn ods_token(name: &str, v: &str) -> Result<String, GpcError> {
    match v.split_once('|') {
        Some((system, code)) if system == ODS_SYSTEM && !code.trim().is_empty() => Ok(code.trim().to_uppercase()),
        _ => Err(invalid(format!("{name} must be an ODS code: {ODS_SYSTEM}|<code>"))),
    }
}

/// Reads `GET [base]/Patient/[id]/DocumentReference?…`'s query.
pub fn read_document_search(query: &[(String, String)]) -> Result<DocumentSearch, GpcError> {
    let includes: Vec<&str> = query.iter().filter(|(k, _)| k == "_include").map(|(_, v)| v.as_str()).collect();
    for needed in REQUIRED_INCLUDES {
        if !includes.contains(&needed) {
            return Err(invalid(format!("the search must include _include={needed}")));
        }
    }
    if !query.iter().any(|(k, v)| k == "_revinclude:recurse" && v == REQUIRED_REVINCLUDE) {
        return Err(invalid(format!("the search must include _revinclude:recurse={REQUIRED_REVINCLUDE}")));
    }
    let mut s = DocumentSearch::default();
    for (k, v) in query {
        match k.as_str() {
            "created" => {
                let (prefix, date) = v.split_at(v.len().min(2));
                let day = date.get(..10).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
                let Some(day) = day.filter(|_| date.len() == 10 || date.as_bytes().get(10) == Some(&b'T')) else {
                    return Err(invalid(format!("created must be ge or le and a date, not {v}")));
                };
                match prefix {
                    "ge" if s.created_from.is_none() => s.created_from = Some(day),
                    "le" if s.created_to.is_none() => s.created_to = Some(day),
                    _ => return Err(invalid(format!("created must be one ge and at most one le, not {v}"))),
                }
            }
            "author" => s.author = Some(ods_token("author", v)?),
            "facility" => s.facility = Some(ods_token("facility", v)?),
            "type" => match v.split_once('|') {
                Some((SNOMED_SYSTEM, code)) if !code.is_empty() => s.type_code = Some(code.to_owned()),
                _ => return Err(invalid(format!("type must be a SNOMED CT code: {SNOMED_SYSTEM}|<code>"))),
            },
            "description" => s.description = Some(v.trim().to_lowercase()).filter(|d| !d.is_empty()),
            _ => {}
        }
    }
    if let (Some(from), Some(to)) = (s.created_from, s.created_to) {
        if from > to {
            return Err(invalid("created's ge date is after its le date"));
        }
    }
    Ok(s)
}

/// The organisation a document was written at: the practice, or where it came from.
fn author_ods<'a>(e: &'a Entry, practice: &'a Practice) -> &'a str {
    match &e.origin {
        Origin::Native | Origin::PatientEntered => practice.ods_code.as_str(),
        Origin::TransferredIn { from_ods } => from_ods,
        Origin::Inbound { sender_ods } => sender_ods,
    }
}

impl DocumentSearch {
    pub fn matches(&self, e: &Entry, practice: &Practice) -> bool {
        let EntryBody::Document { title, .. } = &e.body else { return false };
        let created = e.event_date;
        self.created_from.is_none_or(|f| f <= created)
            && self.created_to.is_none_or(|t| created <= t)
            && self.author.as_deref().is_none_or(|a| a == author_ods(e, practice))
            && self.facility.as_deref().is_none_or(|f| f == practice.ods_code.as_str())
            && self.type_code.as_deref().is_none_or(|t| e.code.as_ref().is_some_and(|c| c.concept.as_str() == t))
            && self.description.as_deref().is_none_or(|d| title.to_lowercase().contains(d))
    }
}

/// A searchset of the resources of `matched` type (counted in `total`) and those included.
fn searchset(trace_id: &str, matched: &str, entries: Vec<(String, Value)>) -> Value {
    let total = entries.iter().filter(|(_, r)| r["resourceType"] == matched).count();
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|(full, r)| {
            let mode = if r["resourceType"] == matched { "match" } else { "include" };
            json!({ "fullUrl": full, "resource": r, "search": { "mode": mode } })
        })
        .collect();
    crate::write::compact(json!({
        "resourceType": "Bundle",
        "id": trace_id,
        "meta": { "profile": [SEARCHSET_PROFILE] },
        "type": "searchset",
        "total": total,
        "entry": entries,
    }))
}

fn patient_entry(base: &str, p: &Patient, practice: &Practice, today: NaiveDate) -> (String, Value) {
    let mut r = super::structured::patient_resource(p, practice, today);
    r["meta"]["versionId"] = json!("1");
    (format!("{base}/Patient/{}", p.id), r)
}

fn organization_entry(base: &str, practice: &Practice) -> (String, Value) {
    (format!("{base}/Organization/{}", practice.id), super::structured::organization_resource(practice))
}

/// The answer to a patient search: the patient when registered here (with the practice it
/// references), else an empty searchset.
pub fn patient_search_bundle(
    base: &str,
    trace_id: &str,
    found: Option<(&Patient, &Practice)>,
    today: NaiveDate,
) -> Value {
    let entries = found
        .map(|(p, practice)| vec![patient_entry(base, p, practice, today), organization_entry(base, practice)])
        .unwrap_or_default();
    searchset(trace_id, "Patient", entries)
}

/// The answer to a document search: the patient, the practice, the authors and the documents.
pub fn documents_bundle(
    base: &str,
    trace_id: &str,
    practice: &Practice,
    patient: &Patient,
    documents: &[(&Entry, Option<FileInfo>, bool)],
    today: NaiveDate,
    sds_user_ids: &std::collections::HashMap<String, String>,
) -> Value {
    let mut entries = vec![patient_entry(base, patient, practice, today), organization_entry(base, practice)];
    let mut authors = std::collections::BTreeMap::new();
    for (e, _, _) in documents {
        if let Some(s) = e.author.staff {
            authors.entry(s.to_string()).or_insert_with(|| e.author.name.clone());
        }
    }
    for (id, name) in &authors {
        let author = super::structured::practitioner(id, name, sds_user_ids.get(id).map(String::as_str));
        entries.push((format!("{base}/Practitioner/{id}"), author));
    }
    for (e, file, nopat) in documents {
        let EntryBody::Document { title, summary, .. } = &e.body else { continue };
        let id = e.id.to_string();
        let mut meta = json!({ "profile": [format!("{STU3}CareConnect-GPC-DocumentReference-1")] });
        if *nopat {
            meta["security"] = json!([{
                "system": super::structured::STU3_ACT_CODE_SYSTEM,
                "code": "NOPAT",
                "display": "no disclosure to patient, family or caregivers without attending provider's authorization",
            }]);
        }
        let (content_type, size) = match file {
            Some(f) => (f.content_type.clone(), f.size),
            None => ("text/plain; charset=utf-8".to_owned(), summary.len() as u64),
        };
        let author = match e.author.staff {
            Some(s) => json!({ "reference": format!("Practitioner/{s}") }),
            None => json!({ "display": e.author.name }),
        };
        let doc_type = match &e.code {
            Some(c) => {
                json!({ "coding": [{ "system": SNOMED_SYSTEM, "code": c.concept.as_str(), "display": c.term }], "text": title })
            }
            None => json!({ "text": title }),
        };
        entries.push((
            format!("{base}/DocumentReference/{id}"),
            json!({
                "resourceType": "DocumentReference",
                "id": id,
                "meta": meta,
                "identifier": [{ "system": "https://fhir.nhs.uk/Id/cross-care-setting-identifier", "value": id }],
                "status": "current",
                "type": doc_type,
                "subject": { "reference": format!("Patient/{}", patient.id) },
                "created": e.event_date.format("%Y-%m-%d").to_string(),
                "indexed": crate::write::instant(e.entered_at),
                "author": [author],
                "custodian": { "reference": format!("Organization/{}", practice.id) },
                "description": title,
                "content": [{ "attachment": {
                    "contentType": content_type,
                    "url": format!("{base}/Binary/{id}"),
                    "size": size,
                    "title": title,
                } }],
                "context": { "practiceSetting": { "coding": [{ "system": SNOMED_SYSTEM, "code": "1060971000000108", "display": "General practice service" }] } },
            }),
        ));
    }
    searchset(trace_id, "DocumentReference", entries)
}

/// A document's content as the specification's `Binary`.
pub fn binary(id: &str, content_type: &str, bytes: &[u8]) -> Value {
    json!({
        "resourceType": "Binary",
        "id": id,
        "meta": { "versionId": "1" },
        "contentType": content_type,
        "content": STANDARD.encode(bytes),
    })
}

/// The capability statement of the documents endpoint.
pub fn capability_statement(software_version: &str, publisher: &str) -> Value {
    let profiles = [
        "CareConnect-GPC-Patient-1",
        "CareConnect-GPC-Organization-1",
        "CareConnect-GPC-Practitioner-1",
        "GPConnect-OperationOutcome-1",
        "CareConnect-GPC-DocumentReference-1",
        "GPConnect-Searchset-Bundle-1",
    ];
    let rest = json!({
        "mode": "server",
        "resource": [
            { "type": "Patient", "interaction": [{ "code": "search-type" }], "searchParam": [{ "name": "identifier", "type": "token" }] },
            { "type": "Binary", "interaction": [{ "code": "read" }] },
            { "type": "DocumentReference", "interaction": [{ "code": "search-type" }],
              "searchInclude": REQUIRED_INCLUDES,
              "searchParam": [
                { "name": "created", "type": "date" }, { "name": "facility", "type": "token" },
                { "name": "author", "type": "token" }, { "name": "type", "type": "token" },
                { "name": "description", "type": "string" } ] },
        ],
    });
    super::capability_statement_of(
        "1.5.0",
        "GP Connect API - Access Document",
        software_version,
        publisher,
        &profiles,
        rest,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn includes() -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<(&str, &str)> = REQUIRED_INCLUDES.iter().map(|i| ("_include", *i)).collect();
        v.push(("_revinclude:recurse", REQUIRED_REVINCLUDE));
        v
    }

    #[test]
    fn a_patient_is_found_by_nhs_number_only() {
        assert_eq!(
            read_patient_search(&q(&[("identifier", "https://fhir.nhs.uk/Id/nhs-number|9434765919")]))
                .unwrap()
                .as_str(),
            "9434765919"
        );
        for (bad, code) in [
            (vec![], SpineCode::InvalidParameter),
            (vec![("identifier", "9434765919")], SpineCode::InvalidParameter),
            (vec![("identifier", "https://example.org|9434765919")], SpineCode::InvalidParameter),
            (vec![("identifier", "https://fhir.nhs.uk/Id/nhs-number|9434765918")], SpineCode::InvalidNhsNumber),
        ] {
            assert_eq!(read_patient_search(&q(&bad)).unwrap_err().code, code, "{bad:?}");
        }
    }

    #[test]
    fn a_document_search_needs_its_includes_and_reads_its_filters() {
        let mut pairs = includes();
        pairs.extend([
            ("created", "ge2019-06-24"),
            ("created", "le2020-01-01T00:00:00+00:00"),
            ("author", "https://fhir.nhs.uk/Id/ods-organization-code|a81001"),
            ("description", "Discharge"),
        ]);
        let s = read_document_search(&q(&pairs)).unwrap();
        assert_eq!(s.created_from, NaiveDate::from_ymd_opt(2019, 6, 24));
        assert_eq!(s.created_to, NaiveDate::from_ymd_opt(2020, 1, 1));
        assert_eq!(s.author.as_deref(), Some("A81001"));
        assert_eq!(s.description.as_deref(), Some("discharge"));
        // Each mandatory include is needed.
        for leave_out in 0..5 {
            let mut p = includes();
            p.remove(leave_out);
            assert_eq!(read_document_search(&q(&p)).unwrap_err().code, SpineCode::InvalidParameter);
        }
        for bad in [
            ("author", "https://fhir.nhs.uk/Id/sds-user-id|G13579135"),
            ("facility", "A81001"),
            ("created", "2019-06-24"),
            ("created", "ge2019-06"),
            ("type", "824331000000106"),
        ] {
            let mut p = includes();
            p.push(bad);
            assert_eq!(read_document_search(&q(&p)).unwrap_err().code, SpineCode::InvalidParameter, "{bad:?}");
        }
        let mut p = includes();
        p.extend([("created", "ge2020-02-01"), ("created", "le2020-01-01")]);
        assert!(read_document_search(&q(&p)).is_err());
    }
}
