//! What GP Connect Access Record: Structured may release to a clinician in another care setting.
//!
//! Access Record: Structured is for direct care: a clinician elsewhere (a hospital, urgent care,
//! a community pharmacy, 111) reads the practice's record through the Spine. It is not a
//! patient-facing view, so the online-visibility engine does not decide it; these rules do:
//!
//! - An entry hidden from the patient online (any reason, R8–R11), carrying `NOPAT` itself (R29),
//!   of a kind never shown online (diary entries), or coding 104/106 (R2), is released **with the
//!   `NOPAT` security label**, so that the consumer does not show it to the patient, family or
//!   carers without the practice's say-so.
//! - An entry that must not leave the practice at all is **withheld**, and the list it would have
//!   been in says so with the `confidential-items` warning: entries the practice marked
//!   private/confidential, and safeguarding-relevant entries (seen only by staff with safeguarding
//!   rights even at the practice, R8).
//! - A result or document still in the practice's workflow (unfiled, unreviewed) and a draft
//!   consultation are **withheld** with the `data-awaiting-filing` warning: nobody at the practice
//!   has yet reviewed them for sharing.
//! - A superseded entry (R28) is not current and is never released; nor are the practice's own
//!   administrative messages, texts sent and online consultation requests, which are not part of
//!   the clinical areas GP Connect carries.
//!
//! The patient is refused as not found (all alike, so the answer reveals nothing) when there is
//! no such patient at this practice, when their registration here is not current, or when they
//! have died.

use crate::entry::{ConsultationStatus, Entry, EntryBody, EntryKind};
use crate::patient::Patient;
use crate::snomed::{ENHANCED_REVIEW_INDICATED, ENHANCED_REVIEW_NOT_INDICATED};
use crate::visibility::entry_online_level;
use chrono::NaiveDate;

/// What Access Record: Structured does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Released; `nopat` when it must not be disclosed to the patient or their proxies.
    Include { nopat: bool },
    /// Not released, and the list it belongs to carries this warning.
    Withhold(Warning),
    /// Not part of what GP Connect carries (superseded, administrative): not released, no warning.
    Skip,
}

/// The warnings a GP Connect list carries about what it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Warning {
    /// Items left out because of confidentiality or the patient's preferences.
    ConfidentialItems,
    /// Items in the practice's workflow not yet reviewed for sharing.
    DataAwaitingFiling,
}

impl Warning {
    /// The code in `CareConnect-ListWarningCode-1`.
    pub fn code(self) -> &'static str {
        match self {
            Self::ConfidentialItems => "confidential-items",
            Self::DataAwaitingFiling => "data-awaiting-filing",
        }
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::ConfidentialItems => "Confidential Items",
            Self::DataAwaitingFiling => "Data Awaiting Filing",
        }
    }
    /// The note the specification asks for beside the code (`List.note`).
    pub fn note(self) -> &'static str {
        match self {
            Self::ConfidentialItems => "Items excluded due to confidentiality and/or patient preferences.",
            Self::DataAwaitingFiling => {
                "Patient data may be incomplete as there is data supplied by a third party awaiting review before becoming available."
            }
        }
    }
}

/// The entry's fate in an Access Record: Structured answer.
pub fn release(entry: &Entry) -> Release {
    if entry.superseded.is_some() {
        return Release::Skip;
    }
    if matches!(entry.kind(), EntryKind::AdminMessage | EntryKind::SystemSms | EntryKind::OnlineConsultation) {
        return Release::Skip;
    }
    if entry.confidential || entry.safeguarding {
        return Release::Withhold(Warning::ConfidentialItems);
    }
    if entry.awaits_filing() || matches!(entry.body, EntryBody::Consultation { status: ConsultationStatus::Draft, .. })
    {
        return Release::Withhold(Warning::DataAwaitingFiling);
    }
    Release::Include { nopat: not_for_the_patient(entry) }
}

/// Whether an entry released to a clinician must carry `NOPAT`: anything the patient would never
/// see online for what it is (hidden with a reason, NOPAT itself, a diary entry, R8), and the
/// 104/106 codes, which say the patient may be at risk of coercion (R2).
fn not_for_the_patient(entry: &Entry) -> bool {
    if entry_online_level(entry).is_err() {
        return true;
    }
    entry.code.as_ref().is_some_and(|c| {
        let code = c.concept.as_str();
        code == ENHANCED_REVIEW_INDICATED || code == ENHANCED_REVIEW_NOT_INDICATED
    })
}

/// Whether Access Document lists and hands over a document entry: a document with the practice's
/// confidentiality applied (private, safeguarding) is excluded, as the specification restricts the
/// search to documents with no internal confidentiality policy; a superseded one is not the latest
/// version. Unfiled and unreviewed documents are offered (the specification says so), labelled
/// `NOPAT` with everything else the patient would not see online.
pub fn document_release(entry: &Entry) -> Release {
    if entry.kind() != EntryKind::Document || entry.superseded.is_some() || entry.confidential || entry.safeguarding {
        return Release::Skip;
    }
    Release::Include { nopat: not_for_the_patient(entry) }
}

/// A patient's dissent from sharing their record with other care settings through GP Connect,
/// as the practice recorded it. While it stands, Access Record: Structured and Access Document
/// refuse every request for the patient with `NO_PATIENT_CONSENT` (the specifications' error
/// tables: "the patient has dissented to sharing their clinical record"); booking through
/// Appointment Management shares no record and is not affected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharingDissent {
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// Who recorded it (the member of staff's name and role, as the audit log names them).
    pub recorded_by: String,
    /// What the patient said, or how the practice learnt of it.
    pub reason: String,
}

/// Why a patient's record is not released (each answered as "patient not found").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotRegistered,
    Deceased,
}

/// Whether this practice may answer for `patient` on `today` (a UK date).
pub fn patient_refusal(patient: &Patient, today: NaiveDate) -> Option<Refusal> {
    if patient.is_deceased_on(today) {
        return Some(Refusal::Deceased);
    }
    if patient.registration_on(today).is_none() {
        return Some(Refusal::NotRegistered);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::*;
    use crate::ids::*;
    use chrono::{TimeZone, Utc};

    fn entry(body: EntryBody) -> Entry {
        Entry {
            id: EntryId::from_uuid(uuid::Uuid::from_u128(1)),
            patient: PatientId::from_uuid(uuid::Uuid::from_u128(2)),
            event_date: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
            entered_at: Utc.with_ymd_and_hms(2026, 1, 2, 10, 0, 0).unwrap(),
            author: Author { staff: None, name: "Dr A".into() },
            origin: Origin::Native,
            code: None,
            body,
            visibility: OnlineVisibility::Visible,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        }
    }
    fn allergy() -> Entry {
        entry(EntryBody::Allergy { substance: "Penicillin".into(), reaction: "Rash".into() })
    }

    #[test]
    fn an_entry_hidden_online_is_released_to_clinicians_with_nopat() {
        // R8, R11: hidden from the patient online, still part of the record for direct care.
        let mut e = allergy();
        assert_eq!(release(&e), Release::Include { nopat: false });
        let at = Utc.with_ymd_and_hms(2026, 1, 3, 9, 0, 0).unwrap();
        e.visibility = OnlineVisibility::Hidden(
            Redaction::new(HiddenReason::ThirdParty, "mentions her sister", "Dr A", at).unwrap(),
        );
        assert_eq!(release(&e), Release::Include { nopat: true });
        // R29: NOPAT that came with the entry.
        let mut e = allergy();
        e.nopat = true;
        assert_eq!(release(&e), Release::Include { nopat: true });
        // R8: a diary entry is never shown online, so a clinician elsewhere must not show it either.
        let d = entry(EntryBody::Diary { text: "Review BP".into(), due: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap() });
        assert_eq!(release(&d), Release::Include { nopat: true });
        // R2: the coercion-risk code is for clinicians, never for the patient.
        let mut c = entry(EntryBody::Coded { value: None });
        c.code = Some(crate::snomed::Coding {
            concept: crate::snomed::ConceptId::parse(ENHANCED_REVIEW_INDICATED).unwrap(),
            term: "Enhanced review indicated".into(),
        });
        assert_eq!(release(&c), Release::Include { nopat: true });
    }

    #[test]
    fn private_and_safeguarding_entries_do_not_leave_the_practice() {
        // R8 (safeguarding), R10 (private is not hidden online, but it is not shared outside).
        let mut e = allergy();
        e.confidential = true;
        assert_eq!(release(&e), Release::Withhold(Warning::ConfidentialItems));
        let mut e = allergy();
        e.safeguarding = true;
        assert_eq!(release(&e), Release::Withhold(Warning::ConfidentialItems));
    }

    #[test]
    fn workflow_items_and_drafts_wait() {
        let r = entry(EntryBody::TestResult {
            test: "HbA1c".into(),
            value: "48".into(),
            unit: "mmol/mol".into(),
            range: "20-41".into(),
            abnormal: true,
            filing: Filing::Unfiled,
        });
        assert_eq!(release(&r), Release::Withhold(Warning::DataAwaitingFiling));
        let d = entry(EntryBody::Consultation { text: "…".into(), status: ConsultationStatus::Draft });
        assert_eq!(release(&d), Release::Withhold(Warning::DataAwaitingFiling));
        let d = entry(EntryBody::Consultation { text: "…".into(), status: ConsultationStatus::Final });
        assert_eq!(release(&d), Release::Include { nopat: false });
    }

    #[test]
    fn documents_with_the_practices_confidentiality_are_not_offered() {
        let doc = |filing, review| {
            entry(EntryBody::Document { title: "Discharge letter".into(), summary: "".into(), filing, review })
        };
        assert_eq!(document_release(&doc(Filing::Filed, DocumentReview::Reviewed)), Release::Include { nopat: false });
        // Unfiled and unreviewed documents are offered, but not for the patient yet.
        assert_eq!(
            document_release(&doc(Filing::Unfiled, DocumentReview::Unreviewed)),
            Release::Include { nopat: true }
        );
        let mut private = doc(Filing::Filed, DocumentReview::Reviewed);
        private.confidential = true;
        assert_eq!(document_release(&private), Release::Skip);
        let mut safeguarding = doc(Filing::Filed, DocumentReview::Reviewed);
        safeguarding.safeguarding = true;
        assert_eq!(document_release(&safeguarding), Release::Skip);
        assert_eq!(document_release(&allergy()), Release::Skip, "only documents");
    }

    #[test]
    fn superseded_and_administrative_entries_are_never_released() {
        // R28
        let mut e = allergy();
        e.superseded = Some(Superseded { at: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(), note: "x".into() });
        assert_eq!(release(&e), Release::Skip);
        let m = entry(EntryBody::AdminMessage { subject: "s".into(), text: "t".into(), channel: AdminChannel::Email });
        assert_eq!(release(&m), Release::Skip);
        let s = entry(EntryBody::SystemSms { text: "t".into() });
        assert_eq!(release(&s), Release::Skip);
    }
}
