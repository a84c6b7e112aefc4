//! GP Connect Update Record (R24–R30): reading a pharmacy's consultation summary, an ITK3
//! message Bundle (FHIR STU3) carrying a document Bundle of Iteration 1 profiles, into what the
//! practice reviews and files. A message is taken whole or refused whole (R25); every problem
//! is named.

use crate::entry::{ConsultationStatus, EntryBody};
use crate::nhs_number::NhsNumber;
use crate::snomed::{Coding, ConceptId};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The largest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// The deepest nesting of JSON accepted.
pub const MAX_DEPTH: usize = 32;
/// The most resources a message may carry.
pub const MAX_RESOURCES: usize = 500;

/// The ITK3 response codes caldicott uses (D13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItkCode {
    /// 20013: accepted.
    Success,
    /// 20007: a message with this identifier was received before.
    Duplicate,
    /// 20009: payload validation failure (unsupported profile, bad structure, wrong service).
    PayloadInvalid,
    /// 20010: the practice does not accept Update Record messages (R30).
    Refused,
}

impl ItkCode {
    pub fn code(self) -> u32 {
        match self {
            Self::Success => 20013,
            Self::Duplicate => 20007,
            Self::PayloadInvalid => 20009,
            Self::Refused => 20010,
        }
    }
    pub fn from_code(c: i64) -> Option<Self> {
        [Self::Success, Self::Duplicate, Self::PayloadInvalid, Self::Refused]
            .into_iter()
            .find(|k| i64::from(k.code()) == c)
    }
}

const SERVICES_CSV: &str = include_str!("../data/update-record-services.csv");

/// The accepted `Composition.type` service codes (D11), as (code, term, service). Kept as data.
pub fn accepted_services() -> Vec<(&'static str, &'static str, &'static str)> {
    SERVICES_CSV
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut c = l.splitn(3, ',');
            Some((c.next()?, c.next()?, c.next()?))
        })
        .collect()
}

/// The Iteration 1 profiles (R25), by name; the base URL may be fhir.nhs.uk or fhir.hl7.org.uk.
pub const ITERATION_1_PROFILES: &[&str] = &[
    "ITK-Message-Bundle-1",
    "ITK-MessageHeader-2",
    "CareConnect-ITK-Header-Organization-1",
    "ITK-Response-OperationOutcome-1",
    "ITK-Document-Bundle-1",
    "CareConnect-Composition-1",
    "CareConnect-GPC-Patient-1",
    "CareConnect-GPC-Organization-1",
    "CareConnect-GPC-Practitioner-1",
    "CareConnect-GPC-PractitionerRole-1",
    "CareConnect-GPC-Encounter-1",
    "CareConnect-GPC-MedicationDispense-1",
    "CareConnect-GPC-Observation-1",
    "CareConnect-GPC-ClinicalImpression-1",
    "CareConnect-GPC-Condition-1",
];

/// `MessageHeader.event` of Update Record (D12).
pub const UPDATE_RECORD_EVENT: &str = "ITK014M";

/// What one filed entry will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A diagnosis or problem (Condition).
    Condition,
    /// A measurement or finding (Observation), such as a blood pressure.
    Observation,
    /// A medicine supplied (MedicationDispense).
    Medication,
    /// The pharmacist's clinical impression (ClinicalImpression).
    Impression,
}

impl ItemKind {
    pub fn display(self) -> &'static str {
        match self {
            Self::Condition => "Condition",
            Self::Observation => "Observation",
            Self::Medication => "Medicine supplied",
            Self::Impression => "Clinical impression",
        }
    }
}

/// A medicine supplied, in the sender's own words, element by element: what is filed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    /// The medicine (`medicationCodeableConcept.text`, or its coding's display).
    pub medicine: String,
    /// The dosage instruction (`dosageInstruction.text`).
    pub dosage: String,
    /// The quantity supplied (`quantity.value` and `quantity.unit`), such as "15 capsule".
    pub quantity: String,
}

/// One item of the consultation, as the reviewer sees it and may amend it (R26).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundItem {
    pub kind: ItemKind,
    pub code: Option<Coding>,
    /// The words of the item: the value of an observation; for a medicine, a description of the
    /// supply (what is filed is `supply`).
    pub text: String,
    /// A medicine supplied, element by element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supply: Option<Supply>,
}

impl InboundItem {
    /// One line: "Blood pressure (75367002): 142/91 mmHg".
    pub fn describe(&self) -> String {
        match &self.code {
            Some(c) if self.text.is_empty() => format!("{} ({})", c.term, c.concept.as_str()),
            Some(c) => format!("{} ({}): {}", c.term, c.concept.as_str(), self.text),
            None => self.text.clone(),
        }
    }
}

/// A consultation summary, read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// The message's identifier (the ITK3 tracking id, `Bundle.id`): a message is taken once.
    pub message_id: String,
    pub sender_ods: String,
    pub sender_name: String,
    /// The service (`Composition.type`).
    pub service_code: String,
    pub service: String,
    pub nhs_number: NhsNumber,
    pub birth_date: NaiveDate,
    pub family_name: String,
    pub given_name: String,
    pub consultation_date: NaiveDate,
    pub pharmacist: String,
    /// The pharmacist's role (`PractitionerRole.code`), such as "Community pharmacist".
    #[serde(default)]
    pub pharmacist_role: String,
    /// The Encounter carries NOPAT: nothing filed from it is shown online (R29).
    pub nopat: bool,
    /// The identifier of the payload this one replaces (R28): the earlier message's id, its
    /// Composition's identifier or its document Bundle's identifier.
    pub replaces: Option<String>,
    /// `Composition.identifier`: a later replacement may name this payload by it (R28).
    #[serde(default)]
    pub composition_identifier: Option<String>,
    /// The document Bundle's `identifier`: a later replacement may name this payload by it.
    #[serde(default)]
    pub document_identifier: Option<String>,
    pub presenting_complaint: String,
    pub items: Vec<InboundItem>,
}

impl InboundItem {
    /// The item with these words as its text when it carries no code (a coded item keeps the
    /// code's term).
    pub fn with_text_if_uncoded(mut self, text: String) -> Self {
        if self.code.is_none() {
            self.text = text;
        }
        self
    }
}

/// What filing a message writes, in order: one consultation entry for the visit, then one entry
/// per item as it stands (R26). The review page shows exactly this; filing writes exactly this.
pub fn planned_entries(record: &UpdateRecord, items: &[InboundItem]) -> Vec<(Option<Coding>, EntryBody)> {
    let pharmacy = if record.sender_name.trim().is_empty() { &record.sender_ods } else { &record.sender_name };
    let pharmacist = if record.pharmacist.trim().is_empty() { "the pharmacist" } else { &record.pharmacist };
    let mut out = vec![(
        ConceptId::parse(&record.service_code).ok().map(|concept| Coding { concept, term: record.service.clone() }),
        EntryBody::Consultation {
            text: format!(
                "{} consultation at {pharmacy} with {pharmacist}.{}",
                record.service,
                if record.presenting_complaint.is_empty() {
                    String::new()
                } else {
                    format!(" Presenting complaint: {}.", record.presenting_complaint)
                }
            ),
            status: ConsultationStatus::Final,
        },
    )];
    for item in items {
        let body = match item.kind {
            ItemKind::Medication => match &item.supply {
                Some(s) => EntryBody::MedicationIssue {
                    drug: s.medicine.clone(),
                    dosage: s.dosage.clone(),
                    quantity: s.quantity.clone(),
                    template: None,
                },
                // Read before medicines were kept element by element: the words whole.
                None => EntryBody::MedicationIssue {
                    drug: item.text.clone(),
                    dosage: String::new(),
                    quantity: String::new(),
                    template: None,
                },
            },
            ItemKind::Condition => match &item.code {
                Some(c) => EntryBody::Problem { title: c.term.clone(), active: true },
                None => EntryBody::Coded { value: Some(item.text.clone()) },
            },
            ItemKind::Observation => EntryBody::Coded { value: Some(item.text.clone()).filter(|t| !t.is_empty()) },
            ItemKind::Impression => EntryBody::Consultation {
                text: format!("Pharmacist's clinical impression: {}", item.text),
                status: ConsultationStatus::Final,
            },
        };
        out.push((item.code.clone(), body));
    }
    out
}

/// The difference between the items filed from a message and those of its replacement (R28).
pub fn item_changes(before: &[InboundItem], after: &[InboundItem]) -> Vec<String> {
    let mut out = Vec::new();
    for b in before {
        if !after.contains(b) {
            out.push(format!("Removed: {} {}", b.kind.display(), b.describe()));
        }
    }
    for a in after {
        if !before.contains(a) {
            out.push(format!("Added: {} {}", a.kind.display(), a.describe()));
        }
    }
    out
}
