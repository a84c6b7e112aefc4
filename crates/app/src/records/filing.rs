//! The filing queue: results and documents wait, hidden from online viewers (R8), until a
//! clinician files them as visible or hidden ("ask before release").

use crate::permit;
use crate::redaction::VisibilityChange;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::{Entry, OnlineVisibility, Redaction};
use caldicott_core::ids::*;
use caldicott_core::permissions::Permission;
use caldicott_store::PatientListing;

pub const QUEUE_LIMIT: u32 = 200;

impl App {
    /// Everything waiting to be filed in the caller's practice, oldest first.
    pub async fn filing_queue(&self, who: &StaffPrincipal) -> AppResult<Vec<(Entry, PatientListing)>> {
        permit(who, Permission::FileResultsAndDocuments)?;
        let queue = self.store.filing_queue(who.practice, QUEUE_LIMIT).await?;
        self.audit_look(who, None, Action::FilingQueueView, "filing-queue", format!("items={}", queue.len())).await?;
        Ok(queue)
    }

    /// One waiting item, for the filing page.
    pub async fn item_to_file(&self, who: &StaffPrincipal, entry: EntryId) -> AppResult<(Entry, PatientListing)> {
        permit(who, Permission::FileResultsAndDocuments)?;
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

    /// One item on its filing page: the result or document and its patient are shown, so the
    /// look is audited.
    pub async fn view_item_to_file(&self, who: &StaffPrincipal, entry: EntryId) -> AppResult<(Entry, PatientListing)> {
        let (item, patient) = self.item_to_file(who, entry).await?;
        self.audit_look(who, Some(patient.id), Action::FilingItemView, format!("entry/{}", item.id), "").await?;
        Ok((item, patient))
    }

    /// The entry-time check (the redaction assistant) for an item about to be filed visible
    /// online: `None` when there is nothing to say.
    pub async fn check_filing(
        &self,
        who: &StaffPrincipal,
        entry: EntryId,
    ) -> AppResult<Option<crate::entry_check::EntryCheck>> {
        let (item, _) = self.item_to_file(who, entry).await?;
        let practice = self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let patient = self
            .store
            .patient(who.practice, item.patient)
            .await?
            .ok_or_else(|| AppError::NotFound("patient".into()))?;
        let filed = Entry { body: item.filed(), visibility: OnlineVisibility::Visible, ..item };
        self.entry_check(practice, patient, std::slice::from_ref(&filed)).await
    }

    /// Files an item as visible online, or hidden with a reason and note. `release_checked`:
    /// the clinician was shown the entry-time check (`check_filing`); what it found, whether it
    /// was shown and what was chosen are audited with the filing.
    pub async fn file(
        &self,
        who: &StaffPrincipal,
        entry: EntryId,
        release: &VisibilityChange,
        release_checked: bool,
    ) -> AppResult<()> {
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
        let visible = matches!(visibility, OnlineVisibility::Visible);
        let filed = Entry { body: item.filed(), visibility, ..item };
        let found = crate::entry_check::highlights_of(std::slice::from_ref(&filed), self.today());
        let detail =
            format!("{detail}{}", crate::entry_check::EntryCheck::audit_text(&found, release_checked, visible));
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
