//! Care plans as staff keep them (issue 26): a clinician records a plan for a condition with its
//! goals, actions (who does what), preferences, advance and treatment escalation decisions and
//! whom to contact, and a review date. The plan and each part are record entries, so each is
//! shown or hidden online on its own, by the same engine and the same hide and show pages as any
//! entry; what the patient added is marked as theirs.

use crate::record::OnlineStatus;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::*;
use caldicott_core::ids::AuditEventId;
use caldicott_core::ids::EntryId;
use caldicott_core::patient::Patient;
use caldicott_core::snomed::{Coding, ConceptId};
use chrono::NaiveDate;

/// The longest part of a plan, in characters.
pub const MAX_PART: usize = 1000;

/// A care plan as a clinician writes it: one part a line in each box.
#[derive(Debug, Clone, Default)]
pub struct NewCarePlan {
    pub condition: String,
    /// Optional SNOMED CT concept of the condition.
    pub code: String,
    /// `YYYY-MM-DD`, or empty.
    pub review: String,
    pub goals: String,
    /// "Who: what", a line each.
    pub actions: String,
    pub preferences: String,
    pub decisions: String,
    pub contacts: String,
}

/// A plan and its parts, each with whether the patient sees it online.
#[derive(Debug, Clone)]
pub struct StaffPlan {
    pub plan: Entry,
    pub online: OnlineStatus,
    pub parts: Vec<(Entry, OnlineStatus)>,
}

/// A record's care plans, for staff.
#[derive(Debug, Clone)]
pub struct StaffCarePlans {
    pub patient: Patient,
    pub enhanced_review_active: bool,
    /// Newest first.
    pub plans: Vec<StaffPlan>,
}

/// Text as a plan keeps it: control characters, direction overrides and invisible characters
/// dropped, trimmed; text with no letter or digit in it is nothing.
pub fn written(s: &str) -> String {
    let clean: String = caldicott_fhir::gpconnect::request::clean_text(s)
        .chars()
        .filter(|c| !matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{FFFD}'))
        .collect();
    let clean = clean.trim();
    if clean.chars().any(char::is_alphanumeric) {
        clean.to_owned()
    } else {
        String::new()
    }
}

/// Where a part sits in its plan: by kind in the order a plan shows them, then oldest first.
fn part_order(e: &Entry) -> (usize, chrono::DateTime<chrono::Utc>, EntryId) {
    let rank = match &e.body {
        EntryBody::CarePlanPart { part, .. } => PlanPart::ALL.iter().position(|p| p == part).unwrap_or(0),
        _ => 0,
    };
    (rank, e.entered_at, e.id)
}

/// The parts of a plan, in the order a plan shows them, then oldest first.
pub fn ordered_parts<E: std::ops::Deref<Target = Entry>>(parts: &mut [E]) {
    parts.sort_by_key(|e| part_order(e));
}

/// The plan a part belongs to (`None` for anything else).
pub fn plan_of(e: &Entry) -> Option<EntryId> {
    match &e.body {
        EntryBody::CarePlanPart { plan, .. } => Some(*plan),
        _ => None,
    }
}

impl App {
    /// Records a care plan, or says what is wrong with the form (nothing is written then). The
    /// plan and its parts are written in one transaction with one audit event.
    pub async fn record_care_plan(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        f: &NewCarePlan,
    ) -> AppResult<Result<EntryId, Vec<FieldProblem>>> {
        let (patient, visible_by_default) = self.consultation_form(who, nhs).await?;
        let mut problems = Vec::new();
        let condition = written(&f.condition);
        let condition = condition.as_str();
        if condition.is_empty() || condition.chars().count() > 200 {
            problems.push(FieldProblem { field: "condition", message: "Enter the condition the plan is for".into() });
        }
        let code = match f.code.trim() {
            "" => None,
            c => match ConceptId::parse(c) {
                Ok(concept) => Some(Coding { concept, term: condition.to_owned() }),
                Err(e) => {
                    problems.push(FieldProblem { field: "code", message: e.to_string() });
                    None
                }
            },
        };
        let review = match f.review.trim() {
            "" => None,
            r => match NaiveDate::parse_from_str(r, "%Y-%m-%d") {
                Ok(d) if d >= self.today() => Some(d),
                Ok(_) => {
                    problems.push(FieldProblem {
                        field: "review",
                        message: "The review date must be today or later".into(),
                    });
                    None
                }
                Err(_) => {
                    problems.push(FieldProblem { field: "review", message: "Enter a real review date".into() });
                    None
                }
            },
        };
        let mut parts: Vec<(PlanPart, String)> = Vec::new();
        for (part, field, text) in [
            (PlanPart::Goal, "goals", &f.goals),
            (PlanPart::Action, "actions", &f.actions),
            (PlanPart::Preference, "preferences", &f.preferences),
            (PlanPart::Decision, "decisions", &f.decisions),
            (PlanPart::Contact, "contacts", &f.contacts),
        ] {
            for line in text.lines().map(written).filter(|l| !l.is_empty()) {
                if line.chars().count() > MAX_PART {
                    problems.push(FieldProblem {
                        field,
                        message: format!("Each line must be at most {MAX_PART} characters"),
                    });
                }
                parts.push((part, line.to_owned()));
            }
        }
        if parts.is_empty() {
            problems.push(FieldProblem { field: "goals", message: "Enter at least one goal or action".into() });
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let visibility = if visible_by_default {
            OnlineVisibility::Visible
        } else {
            OnlineVisibility::Hidden(
                Redaction::new(
                    HiddenReason::Other,
                    "Hidden by the practice's default for new entries, until a clinician shows it online",
                    &who.name,
                    now,
                )
                .map_err(|e| crate::AppError::Internal(e.to_string()))?,
            )
        };
        let base = Entry {
            id: EntryId::from_uuid(new_id()),
            patient: patient.id,
            event_date: caldicott_core::uk::uk_date(now),
            entered_at: now,
            author: Author { staff: Some(who.staff), name: who.name.clone() },
            origin: Origin::Native,
            code,
            body: EntryBody::CarePlan { condition: condition.to_owned(), review },
            visibility,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        };
        let plan = base.id;
        let mut entries = vec![base.clone()];
        for (part, text) in parts {
            entries.push(Entry {
                id: EntryId::from_uuid(new_id()),
                code: None,
                body: EntryBody::CarePlanPart { plan, part, text },
                ..base.clone()
            });
        }
        let audit = AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            now,
            who.actor(),
            Some(patient.id),
            Action::EntryCreate,
            format!("entry/{plan}"),
            Outcome::Success,
            format!("care plan parts={}", entries.len() - 1),
        );
        self.store.add_entries(who.practice, &entries, &audit).await?;
        Ok(Ok(plan))
    }

    /// Every care plan in the record of the patient with NHS number `nhs`, each part marked with
    /// whether the patient sees it online. Audited as a look at the record.
    pub async fn staff_care_plans(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<StaffCarePlans> {
        let l = self.load(who, nhs, Action::RecordViewStaff).await?;
        let entries = self.section_entries(&l, Section::CarePlans).await?;
        let what = format!("care plans entries={}", entries.len());
        self.audit_look(who, Some(l.patient.id), Action::RecordViewStaff, format!("patient/{}", l.patient.id), what)
            .await?;
        let policy = self.patients_own_policy(&l).await?;
        let status = |e: &Entry| OnlineStatus::from(policy.decide(e));
        let mut plans: Vec<StaffPlan> = entries
            .iter()
            .filter(|e| e.kind() == EntryKind::CarePlan)
            .map(|p| StaffPlan {
                plan: p.clone(),
                online: status(p),
                parts: entries.iter().filter(|e| plan_of(e) == Some(p.id)).map(|e| (e.clone(), status(e))).collect(),
            })
            .collect();
        for p in &mut plans {
            p.parts.sort_by_key(|(e, _)| part_order(e));
        }
        Ok(StaffCarePlans { enhanced_review_active: l.enhanced_review.is_active(), patient: l.patient, plans })
    }
}
