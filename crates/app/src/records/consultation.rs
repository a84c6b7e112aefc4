//! Recording a consultation: free text and coded entries written together, final or draft, with
//! one online-visibility decision for all of them. Drafts are never shown online (R8); hiding
//! needs a reason and a note (R11).

use crate::entry_check::{highlights_of, EntryCheck};
use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::{
    Author, ConsultationStatus, Entry, EntryBody, HiddenReason, OnlineVisibility, Origin, Redaction,
};
use caldicott_core::ids::*;
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::snomed::{picklist_term, Coding, ConceptId};

pub const MAX_TEXT: usize = 20_000;

/// The consultation form as typed.
#[derive(Debug, Clone, Default)]
pub struct NewConsultation {
    pub text: String,
    pub draft: bool,
    /// (concept id, term) pairs; a picklist concept needs no term.
    pub codes: Vec<(String, String)>,
    pub visible_online: bool,
    pub hidden_reason: Option<HiddenReason>,
    pub note: String,
    /// The clinician has been shown the entry-time check for this text (`check_consultation`).
    pub checked: bool,
}

impl App {
    /// The patient, and whether the "visible online" box starts ticked (practice policy).
    pub async fn consultation_form(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<(Patient, bool)> {
        permit(who, Permission::RecordConsultations)?;
        let patient = self.patient_here(who, nhs).await?;
        let practice = self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        Ok((patient, practice.online.visible_online_by_default))
    }

    /// The new consultation form, which names the patient: audited as a look.
    pub async fn view_consultation_form(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<(Patient, bool)> {
        let (patient, visible) = self.consultation_form(who, nhs).await?;
        self.audit_look(
            who,
            Some(patient.id),
            Action::RecordFormView,
            format!("patient/{}", patient.id),
            "form=consultation",
        )
        .await?;
        Ok((patient, visible))
    }

    /// The entry-time check (the redaction assistant) for a consultation about to be saved
    /// visible online: `Ok(None)` when there is nothing to say (or it is a draft, or hidden).
    pub async fn check_consultation(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        c: &NewConsultation,
    ) -> AppResult<Result<Option<EntryCheck>, Vec<FieldProblem>>> {
        let (patient, entries) = match self.consultation_entries(who, nhs, c).await? {
            Ok(x) => x,
            Err(problems) => return Ok(Err(problems)),
        };
        if c.draft || !c.visible_online {
            return Ok(Ok(None));
        }
        let practice = self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        Ok(Ok(self.entry_check(practice, patient, &entries).await?))
    }

    /// Records the consultation, or says what is wrong with the form (nothing is written then).
    /// The entry-time check's findings, whether it was shown and what was chosen, are audited
    /// with it.
    pub async fn add_consultation(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        c: &NewConsultation,
    ) -> AppResult<Result<usize, Vec<FieldProblem>>> {
        let (patient, entries) = match self.consultation_entries(who, nhs, c).await? {
            Ok(x) => x,
            Err(problems) => return Ok(Err(problems)),
        };
        let now = entries.first().map_or_else(|| self.now(), |e| e.entered_at);
        let found = if c.draft { Vec::new() } else { highlights_of(&entries, self.today()) };
        let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
        let audit = AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            now,
            who.actor(),
            Some(patient.id),
            Action::EntryCreate,
            format!("entry/{}", ids.join(" entry/")),
            Outcome::Success,
            format!(
                "consultation status={} codes={} online={}{}",
                if c.draft { "draft" } else { "final" },
                entries
                    .iter()
                    .filter(|e| e.code.is_some())
                    .map(|e| e.code.as_ref().map_or("", |c| c.concept.as_str()))
                    .collect::<Vec<_>>()
                    .join(","),
                if c.visible_online {
                    "visible".to_owned()
                } else {
                    format!("hidden:{}", c.hidden_reason.map_or("", |r| r.as_str()))
                },
                EntryCheck::audit_text(&found, c.checked, c.visible_online),
            ),
        );
        self.store.add_entries(who.practice, &entries, &audit).await?;
        Ok(Ok(entries.len()))
    }

    /// The entries a consultation form makes, or what is wrong with it.
    async fn consultation_entries(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        c: &NewConsultation,
    ) -> AppResult<Result<(Patient, Vec<Entry>), Vec<FieldProblem>>> {
        let (patient, _) = self.consultation_form(who, nhs).await?;
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let mut problems = Vec::new();
        let text = c.text.trim();
        let mut codes = Vec::new();
        for (i, (concept, term)) in c.codes.iter().enumerate() {
            let (concept, term) = (concept.trim(), term.trim());
            if concept.is_empty() && term.is_empty() {
                continue;
            }
            let field = ["code_0", "code_1", "code_2"].get(i).copied().unwrap_or("code_0");
            match ConceptId::parse(concept) {
                Err(e) => problems.push(FieldProblem { field, message: e.to_string() }),
                Ok(id) => {
                    let term = if term.is_empty() {
                        picklist_term(id.as_str()).unwrap_or("").to_owned()
                    } else {
                        term.to_owned()
                    };
                    if term.is_empty() {
                        problems.push(FieldProblem { field, message: format!("Enter the term for concept {id}") });
                    } else {
                        codes.push(Coding { concept: id, term });
                    }
                }
            }
        }
        if text.is_empty() && codes.is_empty() && problems.is_empty() {
            problems.push(FieldProblem { field: "text", message: "Enter what happened, or add a code".into() });
        }
        if text.chars().count() > MAX_TEXT {
            problems.push(FieldProblem {
                field: "text",
                message: format!("The text is longer than {MAX_TEXT} characters"),
            });
        }
        let visibility = if c.visible_online {
            OnlineVisibility::Visible
        } else {
            match c.hidden_reason {
                None => {
                    problems.push(FieldProblem { field: "reason", message: "Choose why it is hidden online".into() });
                    OnlineVisibility::Visible
                }
                Some(reason) => match Redaction::new(reason, &c.note, &who.name, now) {
                    Ok(r) => OnlineVisibility::Hidden(r),
                    Err(e) => {
                        problems.push(FieldProblem { field: "note", message: e.to_string() });
                        OnlineVisibility::Visible
                    }
                },
            }
        };
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let author = Author { staff: Some(who.staff), name: who.name.clone() };
        let base = Entry {
            id: EntryId::from_uuid(new_id()),
            patient: patient.id,
            event_date: caldicott_core::uk::uk_date(now),
            entered_at: now,
            author,
            origin: Origin::Native,
            code: None,
            body: EntryBody::Coded { value: None },
            visibility,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        };
        let status = if c.draft { ConsultationStatus::Draft } else { ConsultationStatus::Final };
        let mut entries = Vec::new();
        if !text.is_empty() {
            entries.push(Entry { body: EntryBody::Consultation { text: text.to_owned(), status }, ..base.clone() });
        }
        for code in codes {
            entries.push(Entry { id: EntryId::from_uuid(new_id()), code: Some(code), ..base.clone() });
        }
        Ok(Ok((patient, entries)))
    }
}
