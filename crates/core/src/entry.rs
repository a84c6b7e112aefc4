//! Record entries: every kind the rules need, each with its online visibility (R8–R12).

use crate::access::AccessLevel;
use crate::ids::{EntryId, PatientId, StaffId};
use crate::snomed::Coding;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Who wrote an entry. `staff` is empty for entries that came from elsewhere (GP2GP, a pharmacy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub staff: Option<StaffId>,
    pub name: String,
}

/// Where an entry came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "origin", rename_all = "snake_case")]
pub enum Origin {
    /// Written at this practice.
    Native,
    /// Came with the record from a previous practice (GP2GP); keeps its original entered date (D3).
    TransferredIn { from_ods: String },
    /// Written by another organisation (a pharmacy's Update Record message).
    Inbound { sender_ods: String },
    /// Written online by the patient, or by a proxy for them (their own goals, notes and home
    /// readings in a care plan): marked as theirs wherever it is shown, never a clinician's.
    PatientEntered,
}

/// Why an entry is hidden from online viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenReason {
    ThirdParty,
    PotentiallyHarmful,
    Safeguarding,
    /// Imported without redaction information; waits for a clinician (D4).
    PendingReview,
    Other,
}

impl HiddenReason {
    pub const ALL: [HiddenReason; 5] =
        [Self::ThirdParty, Self::PotentiallyHarmful, Self::Safeguarding, Self::PendingReview, Self::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ThirdParty => "third_party",
            Self::PotentiallyHarmful => "potentially_harmful",
            Self::Safeguarding => "safeguarding",
            Self::PendingReview => "pending_review",
            Self::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::ThirdParty => "Third-party information",
            Self::PotentiallyHarmful => "Potentially harmful to the patient",
            Self::Safeguarding => "Safeguarding",
            Self::PendingReview => "Pending review (imported without redaction information)",
            Self::Other => "Other",
        }
    }
}

/// A decision to hide an entry from online viewers. It always carries a reason note (R11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    reason: HiddenReason,
    note: String,
    by: String,
    at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactionError {
    #[error("a note explaining why is required when hiding or showing an entry online")]
    NoteRequired,
    #[error("the note is too long ({0} characters; at most 2000)")]
    NoteTooLong(usize),
}

/// Checks the note that R11 requires for every change of online visibility.
pub fn visibility_note(note: &str) -> Result<String, RedactionError> {
    let n = note.trim();
    if n.is_empty() {
        return Err(RedactionError::NoteRequired);
    }
    let len = n.chars().count();
    if len > 2000 {
        return Err(RedactionError::NoteTooLong(len));
    }
    Ok(n.to_owned())
}

impl Redaction {
    pub fn new(reason: HiddenReason, note: &str, by: &str, at: DateTime<Utc>) -> Result<Self, RedactionError> {
        Ok(Self { reason, note: visibility_note(note)?, by: by.to_owned(), at })
    }
    pub fn reason(&self) -> HiddenReason {
        self.reason
    }
    pub fn note(&self) -> &str {
        &self.note
    }
    pub fn by(&self) -> &str {
        &self.by
    }
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// Online visibility of one whole entry (R9: whole entries only, never parts of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "online", rename_all = "snake_case")]
pub enum OnlineVisibility {
    Visible,
    Hidden(Redaction),
}

impl OnlineVisibility {
    pub fn is_hidden(&self) -> bool {
        matches!(self, Self::Hidden(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationStatus {
    Draft,
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MedicationCourse {
    Acute,
    RepeatTemplate,
}

/// Results and documents wait in a filing queue until a clinician files them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filing {
    Unfiled,
    Filed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentReview {
    Unreviewed,
    Reviewed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminChannel {
    Note,
    Email,
}

/// What an entry is, with the details that kind carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryBody {
    /// A coded entry (observation, diagnosis, procedure, 104/106 …); the code is on the entry.
    Coded {
        value: Option<String>,
    },
    Consultation {
        text: String,
        status: ConsultationStatus,
    },
    Medication {
        drug: String,
        dosage: String,
        quantity: String,
        course: MedicationCourse,
    },
    /// One issue of a medication; `template` is the repeat template it was issued from.
    MedicationIssue {
        drug: String,
        dosage: String,
        quantity: String,
        template: Option<EntryId>,
    },
    TestResult {
        test: String,
        value: String,
        unit: String,
        range: String,
        abnormal: bool,
        filing: Filing,
    },
    Document {
        title: String,
        summary: String,
        filing: Filing,
        review: DocumentReview,
    },
    Allergy {
        substance: String,
        reaction: String,
    },
    Immunisation {
        vaccine: String,
    },
    Problem {
        title: String,
        active: bool,
    },
    /// An administrative message or email about the patient.
    AdminMessage {
        subject: String,
        text: String,
        channel: AdminChannel,
    },
    OnlineConsultation {
        text: String,
    },
    /// A text message the system sent to the patient.
    SystemSms {
        text: String,
    },
    /// A diary entry (a reminder for the practice).
    Diary {
        text: String,
        due: NaiveDate,
    },
    /// A care plan for a condition (the condition is also the entry's code, where it has one);
    /// its goals, actions, preferences and decisions are [`EntryBody::CarePlanPart`] entries, so
    /// that each can be hidden online on its own (R9: whole entries).
    CarePlan {
        condition: String,
        review: Option<NaiveDate>,
    },
    /// One part of a care plan.
    CarePlanPart {
        plan: EntryId,
        part: PlanPart,
        text: String,
    },
}

/// What a part of a care plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanPart {
    /// Something to aim for ("HbA1c below 53", "walk 30 minutes a day").
    Goal,
    /// Who does what ("Practice nurse: diabetes review every 6 months").
    Action,
    /// A preference: where to be cared for, how to be contacted, what matters.
    Preference,
    /// An advance decision or a treatment escalation decision.
    Decision,
    /// Whom to contact, and when.
    Contact,
    /// A note (patients add these).
    Note,
}

impl PlanPart {
    pub const ALL: [PlanPart; 6] =
        [Self::Goal, Self::Action, Self::Preference, Self::Decision, Self::Contact, Self::Note];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Goal => "goal",
            Self::Action => "action",
            Self::Preference => "preference",
            Self::Decision => "decision",
            Self::Contact => "contact",
            Self::Note => "note",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// The heading a care plan shows its parts of this kind under.
    pub fn heading(self) -> &'static str {
        match self {
            Self::Goal => "Goals",
            Self::Action => "Actions: who does what",
            Self::Preference => "Preferences",
            Self::Decision => "Advance and treatment escalation decisions",
            Self::Contact => "Who to contact",
            Self::Note => "Notes",
        }
    }
}

/// The kind of an entry without its details; stored in its own column so that queries can use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Coded,
    Consultation,
    Medication,
    MedicationIssue,
    TestResult,
    Document,
    Allergy,
    Immunisation,
    Problem,
    AdminMessage,
    OnlineConsultation,
    SystemSms,
    Diary,
    CarePlan,
    CarePlanPart,
}

/// The sections of the record, in the order a record shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Consultations,
    Problems,
    Medications,
    Results,
    Documents,
    Allergies,
    Immunisations,
    Codes,
    Communications,
    CarePlans,
}

impl Section {
    pub const ALL: [Section; 10] = [
        Self::Consultations,
        Self::Problems,
        Self::Medications,
        Self::Results,
        Self::Documents,
        Self::Allergies,
        Self::Immunisations,
        Self::Codes,
        Self::Communications,
        Self::CarePlans,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consultations => "consultations",
            Self::Problems => "problems",
            Self::Medications => "medications",
            Self::Results => "results",
            Self::Documents => "documents",
            Self::Allergies => "allergies",
            Self::Immunisations => "immunisations",
            Self::Codes => "codes",
            Self::Communications => "communications",
            Self::CarePlans => "care_plans",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn kinds(self) -> &'static [EntryKind] {
        use EntryKind::*;
        match self {
            Self::Consultations => &[Consultation],
            Self::Problems => &[Problem],
            Self::Medications => &[Medication, MedicationIssue],
            Self::Results => &[TestResult],
            Self::Documents => &[Document],
            Self::Allergies => &[Allergy],
            Self::Immunisations => &[Immunisation],
            Self::Codes => &[Coded],
            Self::Communications => &[AdminMessage, OnlineConsultation, SystemSms, Diary],
            Self::CarePlans => &[CarePlan, CarePlanPart],
        }
    }
}

impl EntryKind {
    pub const ALL: [EntryKind; 15] = [
        Self::Coded,
        Self::Consultation,
        Self::Medication,
        Self::MedicationIssue,
        Self::TestResult,
        Self::Document,
        Self::Allergy,
        Self::Immunisation,
        Self::Problem,
        Self::AdminMessage,
        Self::OnlineConsultation,
        Self::SystemSms,
        Self::Diary,
        Self::CarePlan,
        Self::CarePlanPart,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coded => "coded",
            Self::Consultation => "consultation",
            Self::Medication => "medication",
            Self::MedicationIssue => "medication_issue",
            Self::TestResult => "test_result",
            Self::Document => "document",
            Self::Allergy => "allergy",
            Self::Immunisation => "immunisation",
            Self::Problem => "problem",
            Self::AdminMessage => "admin_message",
            Self::OnlineConsultation => "online_consultation",
            Self::SystemSms => "system_sms",
            Self::Diary => "diary",
            Self::CarePlan => "care_plan",
            Self::CarePlanPart => "care_plan_part",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind in words, for lists.
    pub fn display(self) -> &'static str {
        match self {
            Self::Coded => "Coded entry",
            Self::Consultation => "Consultation",
            Self::Medication => "Medication",
            Self::MedicationIssue => "Medication issued",
            Self::TestResult => "Test result",
            Self::Document => "Document",
            Self::Allergy => "Allergy",
            Self::Immunisation => "Immunisation",
            Self::Problem => "Problem",
            Self::AdminMessage => "Administrative message",
            Self::OnlineConsultation => "Online consultation",
            Self::SystemSms => "Text message sent",
            Self::Diary => "Diary entry",
            Self::CarePlan => "Care plan",
            Self::CarePlanPart => "Care plan part",
        }
    }

    pub fn section(self) -> Section {
        Section::ALL.into_iter().find(|s| s.kinds().contains(&self)).unwrap_or(Section::Codes)
    }

    /// The lowest online access level that includes this kind of entry (§3 of the domain
    /// specification), or `None` for kinds that are never shown online (R8).
    pub fn required_level(self) -> Option<AccessLevel> {
        match self {
            Self::Medication | Self::MedicationIssue | Self::Allergy => Some(AccessLevel::Summary),
            Self::Coded | Self::TestResult | Self::Immunisation | Self::Problem => Some(AccessLevel::Detailed),
            // Care plans are part of the detailed record, with the problems they are for.
            Self::CarePlan | Self::CarePlanPart => Some(AccessLevel::Detailed),
            Self::Document => Some(AccessLevel::Documents),
            Self::Consultation => Some(AccessLevel::Full),
            Self::AdminMessage | Self::OnlineConsultation | Self::SystemSms | Self::Diary => None,
        }
    }
}

impl EntryBody {
    pub fn kind(&self) -> EntryKind {
        match self {
            Self::Coded { .. } => EntryKind::Coded,
            Self::Consultation { .. } => EntryKind::Consultation,
            Self::Medication { .. } => EntryKind::Medication,
            Self::MedicationIssue { .. } => EntryKind::MedicationIssue,
            Self::TestResult { .. } => EntryKind::TestResult,
            Self::Document { .. } => EntryKind::Document,
            Self::Allergy { .. } => EntryKind::Allergy,
            Self::Immunisation { .. } => EntryKind::Immunisation,
            Self::Problem { .. } => EntryKind::Problem,
            Self::AdminMessage { .. } => EntryKind::AdminMessage,
            Self::OnlineConsultation { .. } => EntryKind::OnlineConsultation,
            Self::SystemSms { .. } => EntryKind::SystemSms,
            Self::Diary { .. } => EntryKind::Diary,
            Self::CarePlan { .. } => EntryKind::CarePlan,
            Self::CarePlanPart { .. } => EntryKind::CarePlanPart,
        }
    }

    /// A one-line summary for lists.
    pub fn headline(&self) -> String {
        match self {
            Self::Coded { value } => value.clone().unwrap_or_default(),
            Self::Consultation { text, .. } | Self::OnlineConsultation { text } | Self::SystemSms { text } => {
                text.chars().take(120).collect::<String>()
            }
            Self::Medication { drug, dosage, .. } | Self::MedicationIssue { drug, dosage, .. } => {
                format!("{drug} — {dosage}")
            }
            Self::TestResult { test, value, unit, .. } => format!("{test}: {value} {unit}"),
            Self::Document { title, .. } => title.clone(),
            Self::Allergy { substance, reaction } => format!("{substance} ({reaction})"),
            Self::Immunisation { vaccine } => vaccine.clone(),
            Self::Problem { title, .. } => title.clone(),
            Self::AdminMessage { subject, .. } => subject.clone(),
            Self::Diary { text, .. } => text.clone(),
            Self::CarePlan { condition, .. } => format!("Care plan: {condition}"),
            Self::CarePlanPart { part, text, .. } => format!("{}: {text}", part.heading()),
        }
    }
}

/// One item in a patient's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: EntryId,
    pub patient: PatientId,
    /// When it happened (clinically).
    pub event_date: NaiveDate,
    /// When it was written into a GP record; prospective access is decided on this (D2, D3).
    pub entered_at: DateTime<Utc>,
    pub author: Author,
    pub origin: Origin,
    pub code: Option<Coding>,
    pub body: EntryBody,
    pub visibility: OnlineVisibility,
    /// GP Connect's `NOPAT` security label: never to be shown to the patient or their proxies.
    pub nopat: bool,
    /// Safeguarding-relevant: hidden online and seen only by staff with safeguarding rights (R8).
    pub safeguarding: bool,
    /// "Private" to the practice. This is not the online-visibility flag (R10).
    pub confidential: bool,
    /// Retired because a later version replaced what it recorded (an Update Record replacement,
    /// R28): kept for audit, no longer current, never shown online.
    pub superseded: Option<Superseded>,
}

/// When and by what an entry was superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superseded {
    pub at: DateTime<Utc>,
    /// For staff: what replaced it, such as "a later GP Connect Update Record message …".
    pub note: String,
}

impl Entry {
    pub fn kind(&self) -> EntryKind {
        self.body.kind()
    }

    /// A result not yet filed, or a document not yet filed or reviewed: it waits in the filing
    /// queue, and is never shown online until a clinician deals with it (R8).
    pub fn awaits_filing(&self) -> bool {
        matches!(
            self.body,
            EntryBody::TestResult { filing: Filing::Unfiled, .. }
                | EntryBody::Document { filing: Filing::Unfiled, .. }
                | EntryBody::Document { review: DocumentReview::Unreviewed, .. }
        )
    }

    /// The same entry filed (and, for a document, reviewed).
    pub fn filed(&self) -> EntryBody {
        match &self.body {
            EntryBody::TestResult { test, value, unit, range, abnormal, .. } => EntryBody::TestResult {
                test: test.clone(),
                value: value.clone(),
                unit: unit.clone(),
                range: range.clone(),
                abnormal: *abnormal,
                filing: Filing::Filed,
            },
            EntryBody::Document { title, summary, .. } => EntryBody::Document {
                title: title.clone(),
                summary: summary.clone(),
                filing: Filing::Filed,
                review: DocumentReview::Reviewed,
            },
            other => other.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("only consultations can be split")]
    NotAConsultation,
    #[error("a split needs at least two non-empty parts")]
    TooFewParts,
    #[error("the parts must together hold the whole of the original text")]
    TextChanged,
}

/// Splits a consultation into several consultations so that each part can be shown or hidden as a
/// whole (R9: redaction works on whole entries; the way to hide part of one is to split it).
/// Every part keeps the original's dates, author, origin, flags and visibility.
pub fn split_consultation(entry: &Entry, parts: &[&str], new_ids: &[EntryId]) -> Result<Vec<Entry>, SplitError> {
    let EntryBody::Consultation { text, status } = &entry.body else {
        return Err(SplitError::NotAConsultation);
    };
    let parts: Vec<&str> = parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect();
    if parts.len() < 2 || new_ids.len() < parts.len() {
        return Err(SplitError::TooFewParts);
    }
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    if squash(text) != parts.iter().map(|p| squash(p)).collect::<String>() {
        return Err(SplitError::TextChanged);
    }
    Ok(parts
        .iter()
        .zip(new_ids)
        .map(|(part, id)| Entry {
            id: *id,
            body: EntryBody::Consultation { text: (*part).to_owned(), status: *status },
            ..entry.clone()
        })
        .collect())
}

/// What is known of a stored file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub content_type: String,
    pub filename: String,
    pub size: u64,
    /// SHA-1 of the content, as FHIR's `Attachment.hash` asks.
    pub sha1: [u8; 20],
}
