//! Transfer-in: a patient's record from their previous practice, read from a FHIR R4 Bundle,
//! becomes transferred-in entries here.
//!
//! - Entries keep the date the sending practice entered them (D3), so automatic access, which
//!   starts at registration here, never exposes them (R4, R7); historic access needs a new grant.
//! - A resource labelled `NOPAT` arrives hidden, as the sending practice left it (R7).
//! - A resource with no security labels at all arrives hidden "pending review" (D4): nothing is
//!   known about it, so a clinician decides.
//! - The patient in the file must be the patient here: same NHS number and date of birth. A
//!   patient not yet registered is registered from the file, as transferred in.
//! - The whole file goes in, with its audit events, in one transaction, or nothing does; the
//!   same file is imported once per patient.

use crate::permit;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::{AccessLevel, ProxyStatus, RecordFrom};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::permissions::Permission;
use caldicott_core::practice::PostalAddress;
use caldicott_fhir::read::{read_transfer_bundle, RedactionLabel};
use caldicott_store::{RecordImport, StoreError};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What a transfer-in did, in words staff need.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransferOutcome {
    pub nhs_number: String,
    pub patient_name: String,
    /// The patient was registered here by this transfer.
    pub registered: bool,
    pub from_ods: String,
    pub entries: usize,
    pub hidden_by_sender: usize,
    pub pending_review: usize,
    /// Resources not imported, by type.
    pub not_imported: BTreeMap<String, usize>,
    /// The entries that wait for a clinician's review (D4), oldest first.
    pub pending: Vec<PendingEntry>,
    /// Access given before the transfer that does not reach the transferred entries until it is
    /// given again after review (R7), in words for staff.
    pub held_back: Vec<String>,
}

/// An imported entry hidden pending review.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingEntry {
    pub id: EntryId,
    pub kind: EntryKind,
    pub event_date: chrono::NaiveDate,
    pub headline: String,
}

/// Largest file accepted (a long GP record as FHIR JSON is a few megabytes).
pub const MAX_BUNDLE_BYTES: usize = 32 * 1024 * 1024;

impl App {
    /// Imports a record from another practice, or lists what is wrong with the file (nothing
    /// is written then).
    pub async fn transfer_in(
        &self,
        who: &StaffPrincipal,
        bundle: &[u8],
    ) -> AppResult<Result<TransferOutcome, Vec<String>>> {
        permit(who, Permission::TransferRecordsIn)?;
        if bundle.len() > MAX_BUNDLE_BYTES {
            return Ok(Err(vec![format!("The file is larger than {} MB", MAX_BUNDLE_BYTES / 1024 / 1024)]));
        }
        if bundle.iter().all(u8::is_ascii_whitespace) {
            return Ok(Err(vec!["Choose a FHIR Bundle file (JSON) to import".into()]));
        }
        let read = match read_transfer_bundle(bundle) {
            Ok(r) => r,
            Err(problems) => return Ok(Err(problems)),
        };
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("your practice".into()))?;
        if read.from_ods == practice.ods_code.as_str() {
            return Ok(Err(vec![format!(
                "The file comes from this practice ({}); transfer-in takes records from other practices",
                read.from_ods
            )]));
        }
        let today = self.today();
        let now = self.now();
        let bp = &read.patient;
        let existing = self.store.patient_by_nhs_number(who.practice, &bp.nhs_number).await?;
        let (patient, new_patient) = match existing {
            Some(p) if p.date_of_birth != bp.birth_date => {
                return Ok(Err(vec![format!(
                    "The file's date of birth ({}) does not match {} {}'s, registered here with NHS number {} ({}). \
                     Nothing was imported: check that the file is for this patient",
                    bp.birth_date.format("%-d %B %Y"),
                    p.name.given,
                    p.name.family,
                    p.nhs_number,
                    p.date_of_birth.format("%-d %B %Y"),
                )]))
            }
            Some(p) if p.registration_on(today).is_none() => {
                return Ok(Err(vec![format!(
                    "{} {} (NHS number {}) is not registered at this practice now, so their record cannot be \
                     transferred in",
                    p.name.given, p.name.family, p.nhs_number
                )]))
            }
            Some(p) => (p, false),
            None => (
                Patient {
                    id: PatientId::from_uuid(new_id()),
                    practice: who.practice,
                    nhs_number: bp.nhs_number.clone(),
                    name: PersonName { title: None, given: bp.given.clone(), family: bp.family.clone() },
                    date_of_birth: bp.birth_date,
                    sex: bp.sex,
                    contact: ContactDetails {
                        email: bp.email.clone(),
                        mobile: bp.mobile.clone(),
                        address: PostalAddress { lines: bp.address_lines.clone(), postcode: bp.postcode.clone() },
                    },
                    preferred_contact: PreferredContactMethod::Unknown,
                    registrations: vec![Registration {
                        kind: RegistrationKind::TransferredIn,
                        started: today,
                        ended: None,
                        previous_practice: Some(read.from_ods.clone()),
                    }],
                    date_of_death: None,
                },
                true,
            ),
        };

        let from = &read.from_ods;
        let by = format!("Transfer from {from}");
        // R7: what access given before the transfer will not reach the transferred entries.
        let mut held_back = Vec::new();
        if !new_patient {
            let settings = self.store.access_facts(who.practice, patient.id).await?.settings;
            if let Some(own) = &settings.own_level {
                held_back.push(format!("the patient's own level ({}), set on {}", own.level.display(), own.set_on));
            }
            for g in &settings.grants {
                held_back.push(match g.from {
                    RecordFrom::Beginning => format!("{} over the whole record (historic access)", g.level.display()),
                    RecordFrom::Date(d) => format!("{} from {d}", g.level.display()),
                });
            }
            for link in self.store.proxy_links_for_patient(who.practice, patient.id).await? {
                if link.status == ProxyStatus::Active && link.scope.record != AccessLevel::None {
                    held_back.push(format!(
                        "proxy access for the patient's {} ({}), granted on {}",
                        link.relationship.to_lowercase(),
                        link.scope.record.display(),
                        link.granted_on
                    ));
                }
            }
        }
        let ids: Vec<EntryId> = read.entries.iter().map(|_| EntryId::from_uuid(new_id())).collect();
        let mut entries = Vec::with_capacity(read.entries.len());
        let mut files = Vec::new();
        let mut file_problems = Vec::new();
        let (mut hidden_by_sender, mut pending_review) = (0, 0);
        for (i, e) in read.entries.iter().enumerate() {
            let visibility = match e.label {
                RedactionLabel::Shareable => OnlineVisibility::Visible,
                RedactionLabel::NotForPatient => {
                    hidden_by_sender += 1;
                    OnlineVisibility::Hidden(Redaction::new(
                        HiddenReason::Other,
                        &format!("Hidden from the patient at the previous practice ({from}); the flag came with the record"),
                        &by,
                        now,
                    ).map_err(|e| AppError::Internal(e.to_string()))?)
                }
                RedactionLabel::Missing => {
                    pending_review += 1;
                    OnlineVisibility::Hidden(Redaction::new(
                        HiddenReason::PendingReview,
                        &format!("Arrived from {from} without redaction information: review it before it is shown online"),
                        &by,
                        now,
                    ).map_err(|e| AppError::Internal(e.to_string()))?)
                }
            };
            let mut body = e.body.clone();
            if let (EntryBody::MedicationIssue { template, .. }, Some(t)) = (&mut body, e.issued_from) {
                let is_template = matches!(
                    read.entries[t].body,
                    EntryBody::Medication { course: MedicationCourse::RepeatTemplate, .. }
                );
                *template = is_template.then_some(ids[t]);
            }
            if let Some(bytes) = &e.file {
                let title = match &body {
                    EntryBody::Document { title, .. } => title.clone(),
                    _ => String::new(),
                };
                match crate::documents::stored_file(&title, bytes.clone()) {
                    Ok(f) => files.push((ids[i], f)),
                    Err(why) => file_problems.push(format!("{}: {why}", e.source)),
                }
            }
            entries.push(Entry {
                id: ids[i],
                patient: patient.id,
                event_date: e.event_date,
                entered_at: e.entered_at,
                author: Author {
                    staff: None,
                    name: if e.author.is_empty() { format!("{from} (previous practice)") } else { e.author.clone() },
                },
                origin: Origin::TransferredIn { from_ods: from.clone() },
                code: e.code.clone(),
                body,
                visibility,
                nopat: false,
                safeguarding: false,
                confidential: false,
                superseded: None,
            });
        }
        if !file_problems.is_empty() {
            return Ok(Err(file_problems));
        }
        let sha256 = hex::encode(Sha256::digest(bundle));
        let import = RecordImport {
            id: new_id(),
            patient: patient.id,
            sha256: sha256.clone(),
            from_ods: from.clone(),
            entries: entries.len() as i64,
            hidden_by_sender,
            pending_review,
            imported_at: now,
            imported_by: who.name.clone(),
        };
        let mut audit = Vec::new();
        if new_patient {
            audit.push(self.audit_record(
                who,
                Some(patient.id),
                Action::PatientCreate,
                format!("patient/{}", patient.id),
                Outcome::Success,
                format!("registered from {today}, transferred in from {from}"),
            ));
        }
        audit.push(self.audit_record(
            who,
            Some(patient.id),
            Action::RecordTransferIn,
            format!("record_import/{}", import.id),
            Outcome::Success,
            format!(
                "{} entries from {from} (file sha256 {sha256}): {hidden_by_sender} hidden by the sending practice, \
                 {pending_review} hidden pending review; access given before it held back from them: {}",
                entries.len(),
                held_back.len()
            ),
        ));
        match self
            .store
            .transfer_in(who.practice, new_patient.then_some(&patient), &import, &entries, &files, &audit)
            .await
        {
            Ok(()) => Ok(Ok(TransferOutcome {
                nhs_number: patient.nhs_number.as_str().to_owned(),
                patient_name: format!("{} {}", patient.name.given, patient.name.family),
                registered: new_patient,
                from_ods: from.clone(),
                entries: entries.len(),
                hidden_by_sender: hidden_by_sender as usize,
                pending_review: pending_review as usize,
                not_imported: read.not_imported,
                pending: {
                    let mut p: Vec<PendingEntry> = entries
                        .iter()
                        .filter(|e| {
                            matches!(&e.visibility, OnlineVisibility::Hidden(r) if r.reason() == HiddenReason::PendingReview)
                        })
                        .map(|e| PendingEntry {
                            id: e.id,
                            kind: e.kind(),
                            event_date: e.event_date,
                            headline: e.body.headline(),
                        })
                        .collect();
                    p.sort_by_key(|e| e.event_date);
                    p
                },
                held_back,
            })),
            Err(StoreError::Conflict(c)) => Ok(Err(vec![format!("Nothing was imported: {c}")])),
            Err(e) => Err(e.into()),
        }
    }

    /// The records transferred in for a patient, newest first.
    pub async fn record_imports(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<Vec<RecordImport>> {
        permit(who, Permission::TransferRecordsIn)?;
        let patient = self.patient_here(who, nhs).await?;
        let imports = self.store.record_imports(who.practice, patient.id).await?;
        self.audit_look(
            who,
            Some(patient.id),
            Action::TransferListView,
            format!("patient/{}", patient.id),
            format!("imports={}", imports.len()),
        )
        .await?;
        Ok(imports)
    }
}
