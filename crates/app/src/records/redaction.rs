//! Hiding an entry from online viewers, and showing it again (R9, R11, R12). Whole entries only;
//! every change needs a note and is audited, entry by entry, in the change's transaction.

use crate::permit;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::{
    visibility_note, Entry, EntryBody, HiddenReason, MedicationCourse, OnlineVisibility, Redaction, Section,
};
use caldicott_core::ids::*;
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_store::EntryQuery;

/// What to do to an entry's online visibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisibilityChange {
    Hide { reason: HiddenReason, note: String },
    Show { note: String },
}

/// An entry opened for a visibility change, with what a change would also touch.
#[derive(Debug, Clone)]
pub struct EntryToChange {
    pub patient: Patient,
    pub entry: Entry,
    /// For a repeat template: the issues made from it, which hiding the template does not hide
    /// (R12) unless asked to.
    pub issues: Vec<Entry>,
}

/// Whether two visibilities say the same thing (who and when aside).
fn same(a: &OnlineVisibility, b: &OnlineVisibility) -> bool {
    match (a, b) {
        (OnlineVisibility::Visible, OnlineVisibility::Visible) => true,
        (OnlineVisibility::Hidden(x), OnlineVisibility::Hidden(y)) => x.reason() == y.reason() && x.note() == y.note(),
        _ => false,
    }
}

fn describe(v: &OnlineVisibility) -> String {
    match v {
        OnlineVisibility::Visible => "visible".into(),
        OnlineVisibility::Hidden(r) => format!("hidden:{}", r.reason().as_str()),
    }
}

impl App {
    /// Loads an entry of a patient of the caller's practice for a clinician to change.
    pub async fn entry_to_change(&self, who: &StaffPrincipal, nhs: &str, entry: EntryId) -> AppResult<EntryToChange> {
        permit(who, Permission::HideEntries)?;
        let nhs = crate::record::parse_nhs_number(nhs)?;
        let not_found = || AppError::NotFound("no such entry in this patient's record".into());
        let patient = self.store.patient_by_nhs_number(who.practice, &nhs).await?.ok_or_else(not_found)?;
        let entry =
            self.store.entry(who.practice, entry).await?.filter(|e| e.patient == patient.id).ok_or_else(not_found)?;
        let mut issues = Vec::new();
        // What goes with the entry: a repeat template's issues, a care plan's parts.
        let section = match &entry.body {
            EntryBody::Medication { course: MedicationCourse::RepeatTemplate, .. } => Some(Section::Medications),
            EntryBody::CarePlan { .. } => Some(Section::CarePlans),
            _ => None,
        };
        if let Some(section) = section {
            let mut after = None;
            loop {
                let page = self
                    .store
                    .entries(who.practice, patient.id, EntryQuery { section: Some(section), after, limit: 500 })
                    .await?;
                after = page.last().map(caldicott_store::EntryCursor::of);
                let done = page.len() < 500;
                issues.extend(page.into_iter().filter(|e| match &e.body {
                    EntryBody::MedicationIssue { template: Some(t), .. } => *t == entry.id,
                    EntryBody::CarePlanPart { plan, .. } => *plan == entry.id,
                    _ => false,
                }));
                if done {
                    break;
                }
            }
        }
        Ok(EntryToChange { patient, entry, issues })
    }

    /// The entry on the page that hides, shows or splits it (`page` names which): the entry is
    /// shown, so the look is audited.
    pub async fn view_entry_to_change(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        entry: EntryId,
        page: &str,
    ) -> AppResult<EntryToChange> {
        let target = self.entry_to_change(who, nhs, entry).await?;
        self.audit_look(
            who,
            Some(target.patient.id),
            Action::EntryView,
            format!("entry/{}", target.entry.id),
            format!("page={page} issues={}", target.issues.len()),
        )
        .await?;
        Ok(target)
    }

    /// Hides or shows an entry (and, if asked, a repeat template's issues), returning how many
    /// entries changed.
    pub async fn change_visibility(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        entry: EntryId,
        change: &VisibilityChange,
        with_issues: bool,
    ) -> AppResult<usize> {
        let target = self.entry_to_change(who, nhs, entry).await?;
        // A part of a care plan is never shown online while its plan is hidden.
        if let (EntryBody::CarePlanPart { plan, .. }, VisibilityChange::Show { .. }) = (&target.entry.body, change) {
            let plan = self.store.entry(who.practice, *plan).await?;
            if plan.is_none_or(|p| p.visibility.is_hidden()) {
                return Err(AppError::Conflict(
                    "This care plan is hidden online: show the plan first, then the parts that should be shown".into(),
                ));
            }
        }
        // A care plan hidden online takes every part with it: no part is shown without its plan.
        let with_issues = with_issues
            || (matches!(target.entry.body, EntryBody::CarePlan { .. })
                && matches!(change, VisibilityChange::Hide { .. }));
        let now = self.now();
        let (visibility, note) = match change {
            VisibilityChange::Hide { reason, note } => {
                let r =
                    Redaction::new(*reason, note, &who.name, now).map_err(|e| AppError::BadRequest(e.to_string()))?;
                let note = r.note().to_owned();
                (OnlineVisibility::Hidden(r), note)
            }
            VisibilityChange::Show { note } => {
                (OnlineVisibility::Visible, visibility_note(note).map_err(|e| AppError::BadRequest(e.to_string()))?)
            }
        };
        let mut entries = vec![&target.entry];
        if with_issues {
            entries.extend(target.issues.iter());
        }
        let changes: Vec<(EntryId, OnlineVisibility, AuditRecord)> = entries
            .into_iter()
            .filter(|e| !same(&e.visibility, &visibility))
            .map(|e| {
                let audit = AuditRecord::new(
                    AuditEventId::from_uuid(new_id()),
                    now,
                    who.actor(),
                    Some(target.patient.id),
                    Action::EntryVisibilityChange,
                    format!("entry/{}", e.id),
                    Outcome::Success,
                    format!("from={} to={} note={note:?}", describe(&e.visibility), describe(&visibility)),
                );
                (e.id, visibility.clone(), audit)
            })
            .collect();
        if changes.is_empty() {
            return Ok(0);
        }
        self.store.set_entries_visibility(who.practice, &changes).await?;
        Ok(changes.len())
    }
}

impl App {
    /// Splits a consultation into parts (R9: redaction works on whole entries, so the way to
    /// hide part of one is to split it). The parts together hold the whole text; each keeps the
    /// original's dates, author and visibility. Returns the new entries' ids.
    pub async fn split_entry(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        entry: EntryId,
        parts: &[String],
    ) -> AppResult<Vec<EntryId>> {
        let target = self.entry_to_change(who, nhs, entry).await?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let ids: Vec<EntryId> = parts.iter().map(|_| EntryId::from_uuid(new_id())).collect();
        let split = caldicott_core::entry::split_consultation(&target.entry, &parts, &ids)
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        let made: Vec<EntryId> = split.iter().map(|e| e.id).collect();
        let audit = self.audit_record(
            who,
            Some(target.patient.id),
            Action::EntrySplit,
            format!("entry/{}", target.entry.id),
            Outcome::Success,
            format!("split into {}", made.iter().map(|id| format!("entry/{id}")).collect::<Vec<_>>().join(" ")),
        );
        self.store.split_entry(who.practice, target.entry.id, &split, &audit).await?;
        Ok(made)
    }
}

/// Which enhanced-review code to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnhancedReviewCode {
    /// 104: enhanced review indicated; automatic access is withheld.
    Indicated,
    /// 106: not indicated; overrides an earlier 104.
    NotIndicated,
}

impl EnhancedReviewCode {
    pub(crate) fn concept(self) -> (&'static str, &'static str) {
        match self {
            Self::Indicated => (
                caldicott_core::snomed::ENHANCED_REVIEW_INDICATED,
                "Enhanced review indicated before granting access to own health record",
            ),
            Self::NotIndicated => (
                caldicott_core::snomed::ENHANCED_REVIEW_NOT_INDICATED,
                "Enhanced review not indicated before granting access to own health record",
            ),
        }
    }
}

fn status_word(s: caldicott_core::snomed::EnhancedReview) -> &'static str {
    match s {
        caldicott_core::snomed::EnhancedReview::NotIndicated => "none",
        caldicott_core::snomed::EnhancedReview::Active { .. } => "active",
        caldicott_core::snomed::EnhancedReview::Overridden { .. } => "overridden",
    }
}

/// What recording a 104 or 106 changed, and what staff should still check (R3).
#[derive(Debug, Clone)]
pub struct EnhancedReviewOutcome {
    pub before: caldicott_core::snomed::EnhancedReview,
    pub after: caldicott_core::snomed::EnhancedReview,
    /// Access granted by hand goes on regardless of 104 (R3): these levels need a decision.
    pub manual_grants_remain: Vec<caldicott_core::access::LevelGrant>,
}

impl App {
    /// Records a 104 or 106 coded entry (R2), audited, and says what it changed (R3, R44).
    pub async fn add_enhanced_review_code(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        code: EnhancedReviewCode,
    ) -> AppResult<EnhancedReviewOutcome> {
        use caldicott_core::snomed::enhanced_review;
        permit(who, Permission::HideEntries)?;
        let patient = self.patient_here(who, nhs).await?;
        let facts = self.store.access_facts(who.practice, patient.id).await?;
        let before = enhanced_review(facts.enhanced_review_codes.iter().map(|(c, t)| (c.as_str(), *t)));
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let (concept, term) = code.concept();
        let entry = crate::governance::code_entry(patient.id, concept, now, who, term)?;
        let mut codes = facts.enhanced_review_codes.clone();
        codes.push((concept.to_owned(), now));
        let after = enhanced_review(codes.iter().map(|(c, t)| (c.as_str(), *t)));
        let audit = AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            now,
            who.actor(),
            Some(patient.id),
            Action::EntryCreate,
            format!("entry/{}", entry.id),
            Outcome::Success,
            format!("code={concept} enhanced_review before={} after={}", status_word(before), status_word(after)),
        );
        self.store.add_entries(who.practice, &[entry], &audit).await?;
        let manual_grants_remain = if after.is_active() { facts.settings.grants } else { Vec::new() };
        Ok(EnhancedReviewOutcome { before, after, manual_grants_remain })
    }
}
