//! Care plans for a patient, or a proxy whose scope includes them (issue 26): they read the
//! plans the visibility engine shows them, and add their own goals, notes and home readings
//! (blood pressure, weight). What they add is a new entry marked as theirs (`PatientEntered`),
//! never a change to what the clinician wrote, and becomes a task for the care team to review,
//! written in the same transaction.

use crate::care_plans::{ordered_parts, plan_of, MAX_PART};
use crate::patient_services::{no_record_sentence, PatientPrincipal, RecordHolder};
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::entry::*;
use caldicott_core::ids::{EntryId, ProxyLinkId, TaskId};
use caldicott_core::snomed::{Coding, ConceptId};
use caldicott_core::tasks::{Task, TaskBody, TaskKind, TaskStatus};
use caldicott_core::visibility::Shown;

/// A care plan as its online viewer sees it: the plan and the parts they are shown.
#[derive(Debug, Clone)]
pub struct MyPlan {
    pub plan: Shown<Entry>,
    /// In the order a plan shows them (goals first), oldest first within each.
    pub parts: Vec<Shown<Entry>>,
}

/// The care plans a viewer may read.
#[derive(Debug, Clone)]
pub struct MyCarePlans {
    pub whose: String,
    pub holder: RecordHolder,
    pub link: Option<ProxyLinkId>,
    /// Set when the viewer sees no record at all: a sentence for the viewer.
    pub no_record: Option<String>,
    /// Newest first.
    pub plans: Vec<MyPlan>,
}

/// What a patient adds to a plan: a goal, a note, or a home reading.
#[derive(Debug, Clone, Default)]
pub struct PlanAddition {
    /// `goal`, `note` or `reading`.
    pub kind: String,
    pub text: String,
    /// For a reading: `blood-pressure` or `weight`.
    pub measure: String,
    pub value: String,
}

impl App {
    /// The care plans in the signed-in person's record, or (with `link`) in the record of the
    /// person they act for: only plans and parts the engine shows them; a part whose plan is
    /// not shown is not shown either. Audited as a look at the record.
    pub async fn my_care_plans(&self, me: &PatientPrincipal, link: Option<ProxyLinkId>) -> AppResult<MyCarePlans> {
        let (target, view) = self.my_outside_view(me, link).await?;
        let plans = view
            .all(self, Some(Section::CarePlans))
            .await?
            .map(|entries| {
                let (plans, parts): (Vec<Shown<Entry>>, Vec<Shown<Entry>>) =
                    entries.into_iter().partition(|e| e.kind() == EntryKind::CarePlan);
                let mut parts: Vec<Option<Shown<Entry>>> = parts.into_iter().map(Some).collect();
                plans
                    .into_iter()
                    .map(|plan| {
                        let mut mine: Vec<Shown<Entry>> = parts
                            .iter_mut()
                            .filter(|p| p.as_ref().is_some_and(|p| plan_of(p) == Some(plan.id)))
                            .filter_map(Option::take)
                            .collect();
                        ordered_parts(&mut mine);
                        MyPlan { plan, parts: mine }
                    })
                    .collect::<Vec<MyPlan>>()
            })
            .audited(self, me.practice, |plans| {
                let shown = plans.iter().map(|p| 1 + p.parts.len()).sum();
                self.online_look(me, &view, target, "care plans".into(), shown)
            })
            .await?;
        let whose = match &view.link {
            Some(_) => format!("{} {}", view.l.patient.name.given, view.l.patient.name.family),
            None => "Your".into(),
        };
        Ok(MyCarePlans {
            whose,
            holder: RecordHolder::of(&view.l.patient),
            link: view.link.as_ref().map(|l| l.id),
            no_record: view.policy.denied().map(|w| no_record_sentence(w, view.link.is_some())),
            plans,
        })
    }

    /// Adds the viewer's own goal, note or home reading to a care plan they are shown, or says
    /// what is wrong (nothing is written then). A plan they are not shown is not found, as one
    /// that does not exist.
    pub async fn add_to_my_care_plan(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        plan: EntryId,
        a: &PlanAddition,
    ) -> AppResult<Result<Entry, Vec<FieldProblem>>> {
        let (target, view) = self.my_outside_view(me, link).await?;
        let shown = view
            .entry(self, plan)
            .await?
            .checked_only()
            .filter(|e| e.kind() == EntryKind::CarePlan)
            .ok_or_else(|| AppError::NotFound("There is no such care plan.".into()))?;
        let EntryBody::CarePlan { condition, .. } = &shown.body else {
            return Err(AppError::NotFound("There is no such care plan.".into()));
        };
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let (who_words, requested_by) = match &view.link {
            None => (format!("{} (patient)", me.name), "the patient, online".to_owned()),
            Some(l) => (
                format!("{} ({}, for the patient)", me.name, l.relationship),
                format!("{} ({}), online", me.name, l.relationship),
            ),
        };
        let text = crate::care_plans::written(&a.text);
        let text = text.as_str();
        let too_long = text.chars().count() > MAX_PART;
        let (body, code, said) = match a.kind.as_str() {
            "goal" | "note" if text.is_empty() || too_long => {
                let message = format!("Write your {}, in at most {MAX_PART} characters", a.kind);
                return Ok(Err(vec![FieldProblem { field: "text", message }]));
            }
            "goal" => (
                EntryBody::CarePlanPart { plan, part: PlanPart::Goal, text: text.to_owned() },
                None,
                format!("goal: {text}"),
            ),
            "note" => (
                EntryBody::CarePlanPart { plan, part: PlanPart::Note, text: text.to_owned() },
                None,
                format!("note: {text}"),
            ),
            "reading" => match caldicott_core::trends::home_reading(&a.measure, &a.value) {
                Err(message) => {
                    let field = if a.measure.trim().is_empty() { "measure" } else { "value" };
                    return Ok(Err(vec![FieldProblem { field, message }]));
                }
                Ok((concept, term, value)) => {
                    let concept = ConceptId::parse(concept).map_err(|e| AppError::Internal(e.to_string()))?;
                    let said = format!("home reading: {term} {value}");
                    (EntryBody::Coded { value: Some(value) }, Some(Coding { concept, term: term.to_owned() }), said)
                }
            },
            _ => {
                let message = "Choose a goal, a note or a reading".to_owned();
                return Ok(Err(vec![FieldProblem { field: "kind", message }]));
            }
        };
        let entry = Entry {
            id: EntryId::from_uuid(new_id()),
            patient: target,
            event_date: caldicott_core::uk::uk_date(now),
            entered_at: now,
            author: Author { staff: None, name: who_words },
            origin: Origin::PatientEntered,
            code,
            body,
            visibility: OnlineVisibility::Visible,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        };
        let task = Task {
            id: TaskId::from_uuid(new_id()),
            patient: target,
            kind: TaskKind::CarePlanAddition,
            status: TaskStatus::Open,
            created_at: now,
            requested_by,
            body: TaskBody::Message { text: format!("Added to the care plan for {condition}: {said}") },
            outcome: None,
            closed_at: None,
            closed_by: None,
        };
        let audit = self.patient_audit(
            me.actor(view.link.as_ref()),
            Some(target),
            Action::EntryCreate,
            format!("entry/{} task/{}", entry.id, task.id),
            Outcome::Success,
            format!("care plan addition plan={plan} kind={}", a.kind),
        );
        self.store.add_entries_with_task(me.practice, std::slice::from_ref(&entry), &task, &audit).await?;
        Ok(Ok(entry))
    }
}
