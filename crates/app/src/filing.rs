//! The filing queue: results and documents wait, hidden from online viewers (R8), until a
//! clinician files them as visible or hidden ("ask before release").

use crate::redaction::VisibilityChange;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::{Entry, OnlineVisibility, Redaction};
use caldicott_core::ids::*;
use caldicott_core::staff::Role;
use caldicott_store::PatientListing;

pub const QUEUE_LIMIT: u32 = 200;

fn require_clinician(who: &StaffPrincipal) -> AppResult<()> {
    if who.role == Role::Clinician {
        Ok(())
    } else {
        Err(AppError::Forbidden("only clinicians file results and documents".into()))
    }
}

impl App {
    /// Everything waiting to be filed in the caller's practice, oldest first.
    pub async fn filing_queue(&self, who: &StaffPrincipal) -> AppResult<Vec<(Entry, PatientListing)>> {
        require_clinician(who)?;
        let queue = self.store.filing_queue(who.practice, QUEUE_LIMIT).await?;
        let audit = self.audit_record(
            who,
            None,
            Action::FilingQueueView,
            "filing-queue",
            Outcome::Success,
            format!("items={}", queue.len()),
        );
        self.audit.record(who.practice, audit).await?;
        Ok(queue)
    }

    /// One waiting item, for the filing page.
    pub async fn item_to_file(&self, who: &StaffPrincipal, entry: EntryId) -> AppResult<(Entry, PatientListing)> {
        require_clinician(who)?;
        let gone =
            || AppError::NotFound("nothing waiting to be filed with that id: it may have been filed already".into());
        let item = self.store.entry(who.practice, entry).await?.filter(Entry::awaits_filing).ok_or_else(gone)?;
        let p = self.store.patient(who.practice, item.patient).await?.ok_or_else(gone)?;
        let listing = PatientListing {
            id: p.id,
            nhs_number: p.nhs_number,
            name: p.name,
            date_of_birth: p.date_of_birth,
            sex: p.sex,
            address: p.contact.address,
            date_of_death: p.date_of_death,
        };
        Ok((item, listing))
    }

    /// Files an item as visible online, or hidden with a reason and note.
    pub async fn file(&self, who: &StaffPrincipal, entry: EntryId, release: &VisibilityChange) -> AppResult<()> {
        let (item, patient) = self.item_to_file(who, entry).await?;
        let now = self.now();
        let (visibility, detail) = match release {
            VisibilityChange::Show { .. } => (OnlineVisibility::Visible, "filed visible".to_owned()),
            VisibilityChange::Hide { reason, note } => {
                let r =
                    Redaction::new(*reason, note, &who.name, now).map_err(|e| AppError::BadRequest(e.to_string()))?;
                let detail = format!("filed hidden:{} note={:?}", reason.as_str(), r.note());
                (OnlineVisibility::Hidden(r), detail)
            }
        };
        let filed = Entry { body: item.filed(), visibility, ..item };
        let audit = AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            now,
            who.actor(),
            Some(patient.id),
            Action::EntryFile,
            format!("entry/{}", filed.id),
            Outcome::Success,
            detail,
        );
        self.store.file_entry(who.practice, &filed, &audit).await?;
        Ok(())
    }
}
