//! The answer to `$gpc.getstructuredrecord`: a `GPConnect-StructuredRecord-Bundle-1` of
//! CareConnect-GPC resources, and the structured endpoint's capability statement.
//!
//! The Bundle holds the Patient, the practice's Organization, a Practitioner for each member of
//! the practice who wrote what is released, and for each clinical area asked for a List (titled
//! and coded as the specification names it) of that area's resources. A list says with a warning
//! code and note when the practice withheld something that would have been in it, and is empty
//! with an empty reason when nothing is there. Resources not to be shown to the patient carry the
//! `NOPAT` security label (never the List or the Bundle).
//!
//! How caldicott's record maps:
//! - Allergies: `AllergyIntolerance` (active; caldicott records no end to an allergy, so the
//!   "Ended allergies" list, when asked for, is empty).
//! - Medication: each acute medicine and repeat template is a `MedicationStatement`, its
//!   authorisation a `MedicationRequest` (intent `plan`) and a `Medication`; each issue a
//!   `MedicationRequest` (intent `order`) based on its plan. An issue whose template is not
//!   released stands on its own statement and plan.
//! - Consultations: an `Encounter`, with a consultation List holding one topic List holding the
//!   consultation's text as an `Observation` (a comment note).
//! - Problems: `Condition` (ProblemHeader). caldicott records no significance: every problem is
//!   sent as `major` (so no consumer plays one down), and a significance filter is answered with
//!   every problem and a warning that the filter is not supported.
//! - Immunisations: `Immunization`. Uncategorised data: coded entries as `Observation`.
//!   Investigations: each filed result as a `DiagnosticReport` with its `Observation`.
//!   Diary entries: `ProcedureRequest`. Referrals: caldicott records none; the list is empty.

use super::request::{Include, Period};
use super::{SpineCode, OPERATION_OUTCOME_PROFILE, SPINE_ERROR_SYSTEM};
use crate::{NHS_NUMBER_SYSTEM, ODS_SYSTEM, SNOMED_SYSTEM};
use caldicott_core::entry::{Entry, EntryBody, EntryKind, MedicationCourse, Origin};
use caldicott_core::gpconnect::{Release, Warning};
use caldicott_core::patient::{Patient, Sex};
use caldicott_core::practice::Practice;
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const STU3: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
pub const BUNDLE_PROFILE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1";
/// HL7 v3 ActCode as STU3 names it (GP Connect's `NOPAT`).
pub const STU3_ACT_CODE_SYSTEM: &str = "http://hl7.org/fhir/v3/ActCode";
const WARNING_EXTENSION: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-CareConnect-GPC-ListWarningCode-1";
const CLINICAL_SETTING: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-CareConnect-GPC-ClinicalSetting-1";
const EMPTY_REASON_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/CareConnect-ListEmptyReasonCode-1";
/// Identifiers of released resources: the entry's UUID as a URN, unique everywhere and for ever.
const URN_SYSTEM: &str = "urn:ietf:rfc:3986";

fn profile(name: &str) -> Value {
    json!({ "profile": [format!("{STU3}{name}")] })
}

fn meta(name: &str, nopat: bool) -> Value {
    let mut m = profile(name);
    if nopat {
        m["security"] = json!([{
            "system": STU3_ACT_CODE_SYSTEM,
            "code": "NOPAT",
            "display": "no disclosure to patient, family or caregivers without attending provider's authorization",
        }]);
    }
    m
}

fn identifier(id: &str) -> Value {
    json!([{ "system": URN_SYSTEM, "value": format!("urn:uuid:{id}") }])
}

fn snomed(code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": SNOMED_SYSTEM, "code": code, "display": display }] })
}

/// The entry's code, or its words when it has none.
fn code_of(e: &Entry, text: &str) -> Value {
    match &e.code {
        Some(c) => {
            json!({ "coding": [{ "system": SNOMED_SYSTEM, "code": c.concept.as_str(), "display": c.term }], "text": text })
        }
        None if text.trim().is_empty() => snomed("37331000000100", "Comment note"),
        None => json!({ "text": text }),
    }
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A clinical area: its List's code and title, and the kinds of entry it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Area {
    Allergies,
    EndedAllergies,
    Medication,
    Consultations,
    Problems,
    Immunisations,
    Uncategorised,
    Investigations,
    Referrals,
    Diary,
}

impl Area {
    fn list(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Allergies => {
                ("886921000000105", "Allergies and adverse reactions", "Allergies and adverse reactions")
            }
            Self::EndedAllergies => ("1103671000000101", "Ended allergies", "Ended allergies"),
            Self::Medication => {
                ("933361000000108", "Medications and medical devices", "Medications and medical devices")
            }
            Self::Consultations => ("1149501000000101", "List of consultations", "List of consultations"),
            Self::Problems => ("717711000000103", "Problems", "Problems"),
            Self::Immunisations => ("1102181000000102", "Immunisations", "Immunisations"),
            Self::Uncategorised => ("826501000000100", "Miscellaneous record", "Uncategorised data"),
            Self::Investigations => ("887191000000108", "Investigations and results", "Investigations and results"),
            Self::Referrals => ("792931000000107", "Outbound referral", "Outbound referral"),
            Self::Diary => ("714311000000108", "Patient recall administration", "Patient recall administration"),
        }
    }
}

/// What the writer needs: who, what was asked, and every entry with its release decision.
pub struct StructuredRecord<'a> {
    pub practice: &'a Practice,
    pub patient: &'a Patient,
    pub include: &'a Include,
    /// Every entry of the record with what `caldicott_core::gpconnect::release` decided.
    pub entries: Vec<(&'a Entry, Release)>,
    pub today: NaiveDate,
    /// The SDS user ids the practice recorded, by staff id: an author's Practitioner carries it.
    pub sds_user_ids: &'a std::collections::HashMap<String, String>,
}

/// One area's List as it is being filled.
#[derive(Default)]
struct ListBuild {
    items: Vec<String>,
    warnings: BTreeSet<Warning>,
}

struct Writer<'a> {
    rec: &'a StructuredRecord<'a>,
    resources: Vec<Value>,
    lists: BTreeMap<Area, ListBuild>,
    practitioners: BTreeMap<String, String>,
}

impl<'a> Writer<'a> {
    fn list(&mut self, area: Area) -> &mut ListBuild {
        self.lists.entry(area).or_default()
    }

    /// A reference to the entry's author: a Practitioner of the practice, or their name.
    fn author(&mut self, e: &Entry) -> Value {
        match e.author.staff {
            Some(s) => {
                let id = s.to_string();
                self.practitioners.entry(id.clone()).or_insert_with(|| e.author.name.clone());
                json!({ "reference": format!("Practitioner/{id}") })
            }
            None => json!({ "display": e.author.name }),
        }
    }

    fn patient_ref(&self) -> Value {
        json!({ "reference": format!("Patient/{}", self.rec.patient.id) })
    }

    fn push(&mut self, area: Area, resource: Value) {
        let t = resource["resourceType"].as_str().unwrap_or_default().to_owned();
        let id = resource["id"].as_str().unwrap_or_default().to_owned();
        self.list(area).items.push(format!("{t}/{id}"));
        self.resources.push(resource);
    }

    /// The entries of `kinds` passing `keep`, each released or counted as withheld.
    fn select(&mut self, area: Area, kinds: &[EntryKind], keep: impl Fn(&Entry) -> bool) -> Vec<(&'a Entry, bool)> {
        let mut out = Vec::new();
        self.list(area);
        for (e, r) in &self.rec.entries {
            if !kinds.contains(&e.kind()) || !keep(e) {
                continue;
            }
            match r {
                Release::Include { nopat } => out.push((*e, *nopat)),
                Release::Withhold(w) => {
                    self.list(area).warnings.insert(*w);
                }
                Release::Skip => {}
            }
        }
        out
    }

    fn allergies(&mut self, include_resolved: bool) {
        for (e, nopat) in self.select(Area::Allergies, &[EntryKind::Allergy], |_| true) {
            let EntryBody::Allergy { substance, reaction } = &e.body else { continue };
            let recorder = self.author(e);
            let r = json!({
                "resourceType": "AllergyIntolerance",
                "id": e.id.to_string(),
                "meta": meta("CareConnect-GPC-AllergyIntolerance-1", nopat),
                "identifier": identifier(&e.id.to_string()),
                "clinicalStatus": "active",
                "verificationStatus": "unconfirmed",
                "category": [if looks_like_a_drug(e) { "medication" } else { "environment" }],
                "code": code_of(e, substance),
                "patient": self.patient_ref(),
                "assertedDate": date(e.event_date),
                "recorder": recorder,
                "reaction": if reaction.trim().is_empty() { Value::Null } else {
                    json!([{ "manifestation": [{ "text": reaction }], "description": reaction }])
                },
            });
            self.push(Area::Allergies, r);
        }
        if include_resolved {
            self.list(Area::EndedAllergies);
        }
    }

    fn medication(&mut self, include_issues: bool, from: Option<NaiveDate>) {
        let all = self.select(Area::Medication, &[EntryKind::Medication, EntryKind::MedicationIssue], |_| true);
        let plans: BTreeSet<String> = all
            .iter()
            .filter(|(e, _)| matches!(e.body, EntryBody::Medication { .. }))
            .map(|(e, _)| e.id.to_string())
            .collect();
        // Issues of each released template, newest last, for repeat counts and last issue dates.
        let mut issues_of: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
        for (e, _) in &all {
            if let EntryBody::MedicationIssue { template: Some(t), .. } = &e.body {
                issues_of.entry(t.to_string()).or_default().push(e.event_date);
            }
        }
        for (e, nopat) in &all {
            let (e, nopat) = (*e, *nopat);
            match &e.body {
                EntryBody::Medication { drug, dosage, quantity, course } => {
                    let repeat = *course == MedicationCourse::RepeatTemplate;
                    if !repeat && from.is_some_and(|f| e.event_date < f) {
                        continue;
                    }
                    let issued = issues_of.get(&e.id.to_string()).cloned().unwrap_or_default();
                    self.statement(e, nopat, drug, dosage, quantity, repeat, &issued);
                }
                EntryBody::MedicationIssue { drug, dosage, quantity, template } => {
                    if !include_issues || from.is_some_and(|f| e.event_date < f) {
                        continue;
                    }
                    let plan = match template.map(|t| t.to_string()).filter(|t| plans.contains(t)) {
                        Some(t) => format!("{t}-plan"),
                        None => {
                            // Its template is not released: the issue stands on its own plan.
                            self.statement(e, nopat, drug, dosage, quantity, false, &[e.event_date]);
                            format!("{}-plan", e.id)
                        }
                    };
                    let r = self.request(e, nopat, "order", &plan, dosage, quantity, false, &[]);
                    self.resources.push(r);
                }
                _ => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn statement(
        &mut self,
        e: &Entry,
        nopat: bool,
        drug: &str,
        dosage: &str,
        quantity: &str,
        repeat: bool,
        issued: &[NaiveDate],
    ) {
        let id = e.id.to_string();
        let agency = match &e.origin {
            Origin::Native | Origin::PatientEntered => ("prescribed-at-gp-practice", "Prescribed at GP practice"),
            Origin::TransferredIn { .. } => ("prescribed-by-previous-practice", "Prescribed by previous practice"),
            Origin::Inbound { .. } => ("prescribed-by-another-organisation", "Prescribed by another organisation"),
        };
        let mut effective = json!({ "start": date(e.event_date) });
        if !repeat {
            effective["end"] = json!(date(e.event_date));
        }
        let last_issue = issued.iter().max().copied();
        let mut extension = vec![json!({
            "url": format!("{STU3}Extension-CareConnect-GPC-PrescribingAgency-1"),
            "valueCodeableConcept": { "coding": [{
                "system": "https://fhir.nhs.uk/STU3/CodeSystem/CareConnect-PrescribingAgency-1",
                "code": agency.0, "display": agency.1,
            }] },
        })];
        if let Some(d) = last_issue {
            extension.push(json!({
                "url": format!("{STU3}Extension-CareConnect-GPC-MedicationStatementLastIssueDate-1"),
                "valueDateTime": date(d),
            }));
        }
        let statement = json!({
            "resourceType": "MedicationStatement",
            "id": id,
            "meta": meta("CareConnect-GPC-MedicationStatement-1", nopat),
            "extension": extension,
            "identifier": identifier(&id),
            "basedOn": [{ "reference": format!("MedicationRequest/{id}-plan") }],
            "status": if repeat { "active" } else { "completed" },
            "medicationReference": { "reference": format!("Medication/{id}-medication") },
            "effectivePeriod": effective,
            "dateAsserted": date(e.event_date),
            "subject": self.patient_ref(),
            "taken": "unk",
            "dosage": [{ "text": if dosage.trim().is_empty() { "No information available" } else { dosage } }],
        });
        self.push(Area::Medication, statement);
        let plan = self.request(e, nopat, "plan", "", dosage, quantity, repeat, issued);
        self.resources.push(plan);
        self.resources.push(json!({
            "resourceType": "Medication",
            "id": format!("{id}-medication"),
            "meta": meta("CareConnect-GPC-Medication-1", nopat),
            "code": code_of(e, drug),
        }));
    }

    /// A MedicationRequest: the plan (authorisation) of a statement, or an order (issue) based
    /// on a plan.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        e: &Entry,
        nopat: bool,
        intent: &str,
        based_on: &str,
        dosage: &str,
        quantity: &str,
        repeat: bool,
        issued: &[NaiveDate],
    ) -> Value {
        let id = e.id.to_string();
        let (own_id, medication) = match intent {
            "plan" => (format!("{id}-plan"), format!("Medication/{id}-medication")),
            _ => (id.clone(), format!("Medication/{}", based_on.trim_end_matches("-plan").to_owned() + "-medication")),
        };
        let kind = if repeat || (intent == "order" && based_on != format!("{id}-plan")) {
            ("repeat", "Repeat")
        } else {
            ("acute", "Acute")
        };
        let mut extension = vec![json!({
            "url": format!("{STU3}Extension-CareConnect-GPC-PrescriptionType-1"),
            "valueCodeableConcept": { "coding": [{
                "system": "https://fhir.nhs.uk/STU3/CodeSystem/CareConnect-PrescriptionType-1",
                "code": kind.0, "display": kind.1,
            }] },
        })];
        if intent == "plan" && repeat {
            extension.push(json!({
                "url": format!("{STU3}Extension-CareConnect-GPC-MedicationRepeatInformation-1"),
                "extension": [{ "url": "numberOfRepeatPrescriptionsIssued", "valueUnsignedInt": issued.len() }],
            }));
        }
        let recorder = self.author(e);
        let start = date(e.event_date);
        let mut r = json!({
            "resourceType": "MedicationRequest",
            "id": own_id,
            "meta": meta("CareConnect-GPC-MedicationRequest-1", nopat),
            "extension": extension,
            "identifier": identifier(&own_id),
            "status": if repeat { "active" } else { "completed" },
            "intent": intent,
            "medicationReference": { "reference": medication },
            "subject": self.patient_ref(),
            "authoredOn": start,
            "recorder": recorder,
            "dosageInstruction": [{ "text": if dosage.trim().is_empty() { "No information available" } else { dosage } }],
            "dispenseRequest": {
                "validityPeriod": if repeat { json!({ "start": start }) } else { json!({ "start": start, "end": start }) },
                "quantity": quantity_of(quantity),
            },
        });
        if intent == "order" {
            r["basedOn"] = json!([{ "reference": format!("MedicationRequest/{based_on}") }]);
        }
        if kind.0 == "repeat" {
            let group = based_on.trim_end_matches("-plan");
            let group = if intent == "plan" { id.as_str() } else { group };
            r["groupIdentifier"] = json!({ "value": group });
        }
        r
    }

    fn consultations(&mut self, period: Option<Period>, most_recent: Option<usize>) {
        let mut all = self.select(Area::Consultations, &[EntryKind::Consultation], |e| {
            period.is_none_or(|p| p.contains(e.event_date))
        });
        all.sort_by(|a, b| b.0.event_date.cmp(&a.0.event_date).then(b.0.entered_at.cmp(&a.0.entered_at)));
        if let Some(n) = most_recent {
            all.truncate(n);
        }
        for (e, nopat) in all {
            let EntryBody::Consultation { text, .. } = &e.body else { continue };
            let id = e.id.to_string();
            let who = self.author(e);
            let encounter = json!({
                "resourceType": "Encounter",
                "id": id,
                "meta": meta("CareConnect-GPC-Encounter-1", nopat),
                "identifier": identifier(&id),
                "status": "finished",
                "type": [{ "text": "Consultation" }],
                "subject": self.patient_ref(),
                "participant": [{
                    "type": [{ "coding": [{ "system": "http://hl7.org/fhir/v3/ParticipationType", "code": "PPRF", "display": "primary performer" }] }],
                    "individual": who,
                }],
                "period": { "start": date(e.event_date) },
                "serviceProvider": { "reference": format!("Organization/{}", self.rec.practice.id) },
            });
            self.push(Area::Consultations, encounter);
            let note = json!({
                "resourceType": "Observation",
                "id": format!("{id}-note"),
                "meta": meta("CareConnect-GPC-Observation-1", nopat),
                "identifier": identifier(&format!("{id}-note")),
                "status": "final",
                "code": snomed("37331000000100", "Comment note"),
                "subject": self.patient_ref(),
                "context": { "reference": format!("Encounter/{id}") },
                "effectiveDateTime": date(e.event_date),
                "issued": crate::write::instant(e.entered_at),
                "performer": [who_or_practice(&self.author(e), self.rec.practice)],
                "comment": text,
            });
            let topic = structure_list(
                &format!("{id}-topic"),
                "25851000000105",
                "Topic (EHR) (record artifact)",
                &self.patient_ref(),
                &id,
                &[format!("Observation/{id}-note")],
            );
            let consultation = structure_list(
                &format!("{id}-consultation"),
                "325851000000107",
                "Consultation encounter type (record artifact)",
                &self.patient_ref(),
                &id,
                &[format!("List/{id}-topic")],
            );
            self.resources.extend([consultation, topic, note]);
        }
    }

    fn problems(&mut self, filters: &[super::request::Problems]) {
        let wanted = |e: &Entry| {
            let EntryBody::Problem { active, .. } = &e.body else { return false };
            filters.iter().any(|f| f.active.is_none_or(|a| a == *active))
        };
        for (e, nopat) in self.select(Area::Problems, &[EntryKind::Problem], wanted) {
            let EntryBody::Problem { title, active } = &e.body else { continue };
            let asserter = self.author(e);
            let r = json!({
                "resourceType": "Condition",
                "id": e.id.to_string(),
                "meta": meta("CareConnect-GPC-ProblemHeader-Condition-1", nopat),
                "extension": [{
                    "url": "https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-ProblemSignificance-1",
                    "valueCode": "major",
                }],
                "identifier": identifier(&e.id.to_string()),
                "clinicalStatus": if *active { "active" } else { "inactive" },
                "category": [{ "coding": [{ "system": "http://hl7.org/fhir/condition-category", "code": "problem-list-item", "display": "Problem List Item" }] }],
                "code": code_of(e, title),
                "subject": self.patient_ref(),
                "onsetDateTime": date(e.event_date),
                "assertedDate": date(e.event_date),
                "asserter": asserter,
            });
            self.push(Area::Problems, r);
        }
    }

    fn immunisations(&mut self) {
        for (e, nopat) in self.select(Area::Immunisations, &[EntryKind::Immunisation], |_| true) {
            let EntryBody::Immunisation { vaccine } = &e.body else { continue };
            let who = self.author(e);
            let r = json!({
                "resourceType": "Immunization",
                "id": e.id.to_string(),
                "meta": meta("CareConnect-GPC-Immunization-1", nopat),
                "identifier": identifier(&e.id.to_string()),
                "status": "completed",
                "notGiven": false,
                "vaccineCode": code_of(e, vaccine),
                "patient": self.patient_ref(),
                "date": date(e.event_date),
                "primarySource": matches!(e.origin, Origin::Native),
                "practitioner": [{
                    "role": { "coding": [{ "system": "http://hl7.org/fhir/v2/0443", "code": "EP", "display": "Entering Provider" }] },
                    "actor": who,
                }],
            });
            self.push(Area::Immunisations, r);
        }
    }

    fn uncategorised(&mut self, period: Period) {
        for (e, nopat) in self.select(Area::Uncategorised, &[EntryKind::Coded], |e| period.contains(e.event_date)) {
            let EntryBody::Coded { value } = &e.body else { continue };
            let who = self.author(e);
            let term = e.code.as_ref().map(|c| c.term.clone()).unwrap_or_default();
            let mut r = json!({
                "resourceType": "Observation",
                "id": e.id.to_string(),
                "meta": meta("CareConnect-GPC-Observation-1", nopat),
                "identifier": identifier(&e.id.to_string()),
                "status": "final",
                "code": code_of(e, &term),
                "subject": self.patient_ref(),
                "effectiveDateTime": date(e.event_date),
                "issued": crate::write::instant(e.entered_at),
                "performer": [who_or_practice(&who, self.rec.practice)],
            });
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                r["valueString"] = json!(v);
            }
            self.push(Area::Uncategorised, r);
        }
    }

    fn investigations(&mut self, period: Period) {
        for (e, nopat) in self.select(Area::Investigations, &[EntryKind::TestResult], |e| period.contains(e.event_date))
        {
            let EntryBody::TestResult { test, value, unit, range, abnormal, .. } = &e.body else { continue };
            let id = e.id.to_string();
            let who = self.author(e);
            let mut result = json!({
                "resourceType": "Observation",
                "id": format!("{id}-result"),
                "meta": meta("CareConnect-GPC-Observation-1", nopat),
                "identifier": identifier(&format!("{id}-result")),
                "status": "final",
                "code": code_of(e, test),
                "subject": self.patient_ref(),
                "effectiveDateTime": date(e.event_date),
                "issued": crate::write::instant(e.entered_at),
                "performer": [who_or_practice(&who, self.rec.practice)],
            });
            match value.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => {
                    result["valueQuantity"] = json!({ "value": n });
                    if !unit.trim().is_empty() {
                        result["valueQuantity"]["unit"] = json!(unit.trim());
                        if let Some(code) = crate::write::ucum_code(unit) {
                            result["valueQuantity"]["system"] = json!(crate::write::UCUM);
                            result["valueQuantity"]["code"] = json!(code);
                        }
                    }
                }
                None => result["valueString"] = json!(format!("{value} {unit}").trim()),
            }
            if !range.trim().is_empty() {
                result["referenceRange"] = json!([{ "text": range }]);
            }
            if *abnormal {
                result["interpretation"] = json!({ "coding": [{ "system": "http://hl7.org/fhir/v2/0078", "code": "A", "display": "Abnormal" }], "text": "Abnormal" });
            }
            let report = json!({
                "resourceType": "DiagnosticReport",
                "id": id,
                "meta": meta("CareConnect-GPC-DiagnosticReport-1", nopat),
                "identifier": identifier(&id),
                "status": "final",
                "code": snomed("721981007", "Diagnostic studies report"),
                "subject": self.patient_ref(),
                "issued": crate::write::instant(e.entered_at),
                "result": [{ "reference": format!("Observation/{id}-result") }],
            });
            self.push(Area::Investigations, report);
            self.resources.push(result);
        }
    }

    fn diary(&mut self, until: Option<NaiveDate>) {
        for (e, nopat) in self.select(Area::Diary, &[EntryKind::Diary], |e| match &e.body {
            EntryBody::Diary { due, .. } => until.is_none_or(|u| *due <= u),
            _ => false,
        }) {
            let EntryBody::Diary { text, due } = &e.body else { continue };
            let who = self.author(e);
            let r = json!({
                "resourceType": "ProcedureRequest",
                "id": e.id.to_string(),
                "meta": meta("CareConnect-GPC-ProcedureRequest-1", nopat),
                "identifier": identifier(&e.id.to_string()),
                "status": "active",
                "intent": "plan",
                "code": code_of(e, text),
                "subject": self.patient_ref(),
                "occurrenceDateTime": date(*due),
                "authoredOn": crate::write::instant(e.entered_at),
                "requester": { "agent": who_or_practice(&who, self.rec.practice) },
                "note": [{ "text": text }],
            });
            self.push(Area::Diary, r);
        }
    }
}

/// A reference to the author where they are a Practitioner, else to the practice (elements
/// that must reference a resource).
fn who_or_practice(author: &Value, practice: &Practice) -> Value {
    if author.get("reference").is_some() {
        author.clone()
    } else {
        json!({ "reference": format!("Organization/{}", practice.id), "display": author["display"] })
    }
}

/// A List of the consultation structure (the consultation, a topic).
fn structure_list(id: &str, code: &str, display: &str, patient: &Value, encounter: &str, items: &[String]) -> Value {
    json!({
        "resourceType": "List",
        "id": id,
        "meta": profile("CareConnect-GPC-List-1"),
        "status": "current",
        "mode": "snapshot",
        "title": display,
        "code": snomed(code, display),
        "subject": patient,
        "encounter": { "reference": format!("Encounter/{encounter}") },
        "entry": items.iter().map(|i| json!({ "item": { "reference": i } })).collect::<Vec<_>>(),
    })
}

/// A quantity as written ("28 tablets"): its number where it starts with one, and the words as
/// the quantity text, so nothing written is lost.
fn quantity_of(written: &str) -> Value {
    let written = written.trim();
    let number: String = written.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let rest = written[number.len()..].trim();
    let text_ext = |t: &str| json!([{ "url": format!("{STU3}Extension-CareConnect-GPC-MedicationQuantityText-1"), "valueString": t }]);
    match number.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        Some(n) if !number.is_empty() => {
            let mut q = json!({ "value": n });
            if !rest.is_empty() {
                q["extension"] = text_ext(rest);
            }
            q
        }
        _ if written.is_empty() => Value::Null,
        _ => json!({ "extension": text_ext(written) }),
    }
}

/// Whether an allergy is to a medicine: coded with a dm+d or drug-allergy concept is not known
/// here, so the words decide conservatively (medicines are the commonest allergies recorded).
fn looks_like_a_drug(e: &Entry) -> bool {
    let EntryBody::Allergy { substance, .. } = &e.body else { return false };
    let s = substance.to_lowercase();
    !["pollen", "dust", "latex", "nut", "egg", "milk", "shellfish", "wasp", "bee", "cat", "dog", "grass", "mould"]
        .iter()
        .any(|w| s.contains(w))
}

pub(crate) fn patient_resource(p: &Patient, practice: &Practice, today: NaiveDate) -> Value {
    let mut name = json!({ "use": "official", "family": p.name.family, "given": [p.name.given] });
    if let Some(t) = &p.name.title {
        name["prefix"] = json!([t]);
    }
    let gender = match p.sex {
        Sex::Female => "female",
        Sex::Male => "male",
        Sex::Other => "other",
        Sex::Unknown => "unknown",
    };
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": profile("CareConnect-GPC-Patient-1"),
        "identifier": [{
            "extension": [{
                "url": format!("{STU3}Extension-CareConnect-GPC-NHSNumberVerificationStatus-1"),
                "valueCodeableConcept": { "coding": [{
                    "system": "https://fhir.nhs.uk/STU3/CodeSystem/CareConnect-NHSNumberVerificationStatus-1",
                    "code": "01", "display": "Number present and verified",
                }] },
            }],
            "system": NHS_NUMBER_SYSTEM,
            "value": p.nhs_number.as_str(),
        }],
        "active": true,
        "name": [name],
        "gender": gender,
        "birthDate": date(p.date_of_birth),
        "generalPractitioner": [{ "reference": format!("Organization/{}", practice.id) }],
        "managingOrganization": { "reference": format!("Organization/{}", practice.id) },
    });
    if let Some(reg) = p.registration_on(today) {
        r["extension"] = json!([{
            "url": format!("{STU3}Extension-CareConnect-GPC-RegistrationDetails-1"),
            "extension": [{ "url": "registrationPeriod", "valuePeriod": { "start": date(reg.started) } }],
        }]);
    }
    let address = &p.contact.address;
    if !address.lines.is_empty() || !address.postcode.is_empty() {
        r["address"] = json!([{ "use": "home", "line": address.lines, "postalCode": address.postcode }]);
    }
    r
}

/// An author of the record: the name it shows, and their SDS user id when the practice has it.
pub(crate) fn practitioner(id: &str, name: &str, sds_user_id: Option<&str>) -> Value {
    let mut p = json!({
        "resourceType": "Practitioner",
        "id": id,
        "meta": profile("CareConnect-GPC-Practitioner-1"),
        "name": [crate::write::staff_name(name)],
    });
    if let Some(sds) = sds_user_id {
        p["identifier"] = json!([{ "system": super::request::SDS_USER_SYSTEM, "value": sds }]);
    }
    p
}

pub(crate) fn organization_resource(practice: &Practice) -> Value {
    json!({
        "resourceType": "Organization",
        "id": practice.id.to_string(),
        "meta": profile("CareConnect-GPC-Organization-1"),
        "identifier": [{ "system": ODS_SYSTEM, "value": practice.ods_code.as_str() }],
        "name": practice.name,
        "telecom": if practice.telephone.trim().is_empty() { Value::Null } else {
            json!([{ "system": "phone", "value": practice.telephone, "use": "work" }])
        },
        "address": [{ "use": "work", "line": practice.address.lines, "postalCode": practice.address.postcode }],
    })
}

/// The `GPConnect-StructuredRecord-Bundle-1` for `rec`.
pub fn structured_bundle(rec: &StructuredRecord<'_>) -> Value {
    let mut w = Writer { rec, resources: Vec::new(), lists: BTreeMap::new(), practitioners: BTreeMap::new() };
    let inc = rec.include;
    if let Some(a) = inc.allergies {
        w.allergies(a.include_resolved);
    }
    if let Some(m) = inc.medication {
        w.medication(m.include_issues, m.from);
    }
    if let Some(c) = inc.consultations {
        w.consultations(c.period, c.most_recent);
    }
    if !inc.problems.is_empty() {
        w.problems(&inc.problems);
    }
    if inc.immunisations.is_some() {
        w.immunisations();
    }
    if let Some(p) = inc.uncategorised {
        w.uncategorised(p);
    }
    if let Some(p) = inc.investigations {
        w.investigations(p);
    }
    if inc.referrals.is_some() {
        w.list(Area::Referrals);
    }
    if let Some(until) = inc.diary {
        w.diary(until);
    }

    let patient = json!({ "reference": format!("Patient/{}", rec.patient.id) });
    let mut entries = vec![patient_resource(rec.patient, rec.practice, rec.today), organization_resource(rec.practice)];
    for (id, name) in &w.practitioners {
        entries.push(practitioner(id, name, rec.sds_user_ids.get(id).map(String::as_str)));
    }
    for (area, list) in &w.lists {
        entries.push(area_list(*area, list, &patient));
    }
    entries.append(&mut w.resources);
    let mut warnings: Vec<(String, String)> = inc.not_supported.clone();
    if inc.problems.iter().any(|p| p.significance.is_some()) {
        warnings.push((
            "includeProblems.filterSignificance".into(),
            "includeProblems.filterSignificance is not supported: every problem is returned".into(),
        ));
    }
    if !warnings.is_empty() {
        entries.push(json!({
            "resourceType": "OperationOutcome",
            "meta": { "profile": [OPERATION_OUTCOME_PROFILE] },
            "issue": warnings.iter().map(|(param, text)| json!({
                "severity": "warning",
                "code": "not-supported",
                "details": {
                    "coding": [{ "system": SPINE_ERROR_SYSTEM, "code": SpineCode::NotImplemented.code(), "display": SpineCode::NotImplemented.display() }],
                    "text": text,
                },
                "diagnostics": param,
            })).collect::<Vec<_>>(),
        }));
    }
    crate::write::compact(json!({
        "resourceType": "Bundle",
        "meta": { "profile": [BUNDLE_PROFILE] },
        "type": "collection",
        "entry": entries.into_iter().map(|r| json!({ "resource": r })).collect::<Vec<_>>(),
    }))
}

fn area_list(area: Area, list: &ListBuild, patient: &Value) -> Value {
    let (code, display, title) = area.list();
    let mut extension = vec![json!({
        "url": CLINICAL_SETTING,
        "valueCodeableConcept": snomed("1060971000000108", "General practice service"),
    })];
    let mut notes: Vec<Value> = Vec::new();
    for w in &list.warnings {
        extension.push(json!({ "url": WARNING_EXTENSION, "valueCode": w.code() }));
        notes.push(json!({ "text": w.note() }));
    }
    let mut l = json!({
        "resourceType": "List",
        "meta": profile("CareConnect-GPC-List-1"),
        "extension": extension,
        "status": "current",
        "mode": "snapshot",
        "title": title,
        "code": snomed(code, display),
        "subject": patient,
        "orderedBy": { "coding": [{ "system": "http://hl7.org/fhir/list-order", "code": "event-date", "display": "Sorted by Event Date" }] },
        "entry": list.items.iter().map(|i| json!({ "item": { "reference": i } })).collect::<Vec<_>>(),
    });
    if list.items.is_empty() {
        l["emptyReason"] = json!({ "coding": [{ "system": EMPTY_REASON_SYSTEM, "code": "no-content-recorded", "display": "No Content Recorded" }] });
        if notes.is_empty() {
            notes.push(json!({ "text": "Information not available" }));
        }
    }
    l["note"] = Value::Array(notes);
    l
}

/// The capability statement of the structured endpoint (`GET [base]/metadata`).
pub fn capability_statement(software_version: &str, publisher: &str) -> Value {
    let profiles = [
        "CareConnect-GPC-Patient-1",
        "CareConnect-GPC-Organization-1",
        "CareConnect-GPC-Practitioner-1",
        "CareConnect-GPC-AllergyIntolerance-1",
        "CareConnect-GPC-Medication-1",
        "CareConnect-GPC-MedicationStatement-1",
        "CareConnect-GPC-MedicationRequest-1",
        "CareConnect-GPC-List-1",
        "CareConnect-GPC-Encounter-1",
        "CareConnect-GPC-ProblemHeader-Condition-1",
        "CareConnect-GPC-Immunization-1",
        "CareConnect-GPC-Observation-1",
        "CareConnect-GPC-DiagnosticReport-1",
        "CareConnect-GPC-ProcedureRequest-1",
        "GPConnect-StructuredRecord-Bundle-1",
        "GPConnect-OperationOutcome-1",
    ];
    let rest = json!({
        "mode": "server",
        "operation": [{
            "name": "gpc.getstructuredrecord",
            "definition": { "reference": "https://fhir.nhs.uk/STU3/OperationDefinition/GPConnect-GetStructuredRecord-Operation-1" },
        }],
    });
    super::capability_statement_of(
        "1.6.0",
        "GP Connect Access Record Structured API",
        software_version,
        publisher,
        &profiles,
        rest,
    )
}

#[cfg(test)]
mod tests;
