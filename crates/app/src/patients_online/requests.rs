//! Requests to the practice: repeat prescriptions (patients, and proxies with the prescriptions
//! permission), and messages from the patient themself about medication or the record (never
//! from a proxy, R19). Each becomes a task; a clinician decides, and the patient sees the outcome.

use crate::appointments::{ActingFor, ServiceKind};
use crate::outside::Unaudited;
use crate::patient_services::PatientPrincipal;
use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::tasks::*;
use caldicott_core::visibility::Shown;
use caldicott_store::PatientListing;

/// A repeat template the patient may order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orderable {
    pub template: EntryId,
    pub drug: String,
    pub dosage: String,
    pub quantity: String,
}

impl Orderable {
    /// A repeat template the engine offers this viewer; anything else is not orderable.
    pub(crate) fn of(e: Shown<Entry>) -> Option<Self> {
        let id = e.id;
        match e.into_inner().body {
            EntryBody::Medication { drug, dosage, quantity, course: MedicationCourse::RepeatTemplate } => {
                Some(Orderable { template: id, drug, dosage, quantity })
            }
            _ => None,
        }
    }
}

/// What the repeat prescriptions page shows.
#[derive(Debug, Clone)]
pub struct RepeatPage {
    pub patient: Patient,
    pub orderable: Vec<Orderable>,
    pub pharmacy: Option<(String, String)>,
    pub requests: Vec<Task>,
}

const MAX_NOTE: usize = 500;
const MAX_MESSAGE: usize = 2000;

impl App {
    /// Current repeat templates that may be ordered online, decided by the visibility engine for
    /// this viewer (the patient, or the proxy acting for them; `AccessPolicy::repeat_offer`): a
    /// hidden template is never offered, nor anything to a viewer without record access, so the
    /// list cannot reveal a hidden entry; every template is read, however long the record.
    async fn orderable(&self, me: &PatientPrincipal, who: &ActingFor) -> AppResult<Unaudited<Vec<Orderable>>> {
        let missing = || AppError::NotFound("record".into());
        let view = self.outside_view_of(who.patient.clone(), who.link.clone(), Some(me.identity), missing).await?;
        Ok(view.repeats(self).await?.map(|all| all.into_iter().filter_map(Orderable::of).collect()))
    }

    /// A patient's nominated pharmacy (ODS code and name), for the staff record page.
    pub async fn nominated_pharmacy_for(
        &self,
        who: &StaffPrincipal,
        patient: PatientId,
    ) -> AppResult<Option<(String, String)>> {
        who.require_team("administrators do not open patient records")?;
        Ok(self.store.nominated_pharmacy(who.practice, patient).await?)
    }

    /// The repeat prescriptions page for the caller or someone they act for.
    pub async fn repeat_page(&self, me: &PatientPrincipal, link: Option<ProxyLinkId>) -> AppResult<RepeatPage> {
        let who = self.acting_for(me, link, ServiceKind::Prescriptions).await?;
        let missing = || AppError::NotFound("record".into());
        let view = self.outside_view_of(who.patient.clone(), who.link.clone(), Some(me.identity), missing).await?;
        // The medicines listed are part of the record: the look is audited like any other.
        let orderable = view
            .repeats(self)
            .await?
            .map(|all| all.into_iter().filter_map(Orderable::of).collect::<Vec<_>>())
            .audited(self, me.practice, |orderable| {
                self.patient_audit(
                    me.actor(who.link.as_ref()),
                    Some(who.patient.id),
                    Action::RecordViewOnline,
                    format!("patient/{}", who.patient.id),
                    Outcome::Success,
                    format!("repeat prescriptions page, medicines={}", orderable.len()),
                )
            })
            .await?;
        let pharmacy = self.store.nominated_pharmacy(me.practice, who.patient.id).await?;
        // The orders, each naming only the medicines the viewer is shown: one hidden after it was
        // ordered leaves the list with its name (R11, R12); an order left with none is not listed.
        let orders: Vec<Task> = self
            .store
            .tasks_for_patient(me.practice, who.patient.id)
            .await?
            .into_iter()
            .filter(|t| t.kind == TaskKind::RepeatRequest)
            .collect();
        // The medicines the viewer is shown, read once (part of the page's look, audited above).
        let shown: std::collections::HashSet<EntryId> = if orders.is_empty() {
            Default::default()
        } else {
            view.all(self, Some(Section::Medications)).await?.checked_only().iter().map(|e| e.id).collect()
        };
        let mut requests = Vec::new();
        for mut t in orders {
            if let TaskBody::Repeat { items, .. } = &mut t.body {
                items.retain(|i| shown.contains(&i.template));
                if items.is_empty() {
                    continue;
                }
            }
            requests.push(t);
        }
        Ok(RepeatPage { patient: who.patient, orderable, pharmacy, requests })
    }

    /// Orders repeats: a task for the practice with one item per medicine.
    pub async fn request_repeats(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        templates: &[EntryId],
        note: &str,
    ) -> AppResult<Result<Task, Vec<FieldProblem>>> {
        let who = self.acting_for(me, link, ServiceKind::Prescriptions).await?;
        // The order is checked against the repeats offered; none is shown, and the request made
        // is audited on its own.
        let orderable = self.orderable(me, &who).await?.checked_only();
        let mut problems = Vec::new();
        let chosen: Vec<&Orderable> = orderable.iter().filter(|o| templates.contains(&o.template)).collect();
        if chosen.is_empty() || chosen.len() != templates.len() {
            problems
                .push(FieldProblem { field: "items", message: "Choose at least one medicine from the list".into() });
        }
        let note = note.trim();
        if note.chars().count() > MAX_NOTE {
            problems.push(FieldProblem {
                field: "note",
                message: format!("The note can be at most {MAX_NOTE} characters"),
            });
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let made = self
            .create_repeat_task(
                me.practice,
                who.patient.id,
                who.requester(me),
                &chosen,
                note,
                me.actor(who.link.as_ref()),
            )
            .await;
        match made {
            Ok(task) => Ok(Ok(task)),
            // An order sent twice (a second tap, a page sent again) makes one order.
            Err(AppError::Conflict(_)) => Ok(Err(vec![FieldProblem {
                field: "items",
                message: "A medicine you chose is already ordered and waiting for the practice: see your requests"
                    .into(),
            }])),
            Err(e) => Err(e),
        }
    }

    /// Cancels an order of repeats the caller made, for themselves or for someone they act for
    /// with the prescriptions permission, while the practice has decided none of it. Another
    /// person's order, or one that is not an order, is not there to them.
    pub async fn cancel_repeat_order(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        id: TaskId,
    ) -> AppResult<Task> {
        let who = self.acting_for(me, link, ServiceKind::Prescriptions).await?;
        let by = who.requester(me);
        self.cancel_order_of(me.practice, who.patient.id, id, &by, me.actor(who.link.as_ref())).await
    }

    /// Cancels order `id` of `patient` (pages and apps alike), with its audit event; refused
    /// once the practice has decided any of it, also when the decision lands at the same moment.
    pub(crate) async fn cancel_order_of(
        &self,
        practice: PracticeId,
        patient: PatientId,
        id: TaskId,
        by: &str,
        actor: caldicott_core::audit::Actor,
    ) -> AppResult<Task> {
        let mut task = self
            .store
            .task(practice, id)
            .await?
            .filter(|t| t.patient == patient && t.kind == TaskKind::RepeatRequest)
            .ok_or_else(|| AppError::NotFound("there is no such order".into()))?;
        let read = task.body.clone();
        task.cancel_order(by, self.now()).map_err(|e| AppError::Conflict(e.to_string()))?;
        let audit = self.patient_audit(
            actor,
            Some(patient),
            Action::TaskUpdate,
            format!("task/{id}"),
            Outcome::Success,
            "repeat order cancelled by the requester",
        );
        self.store.update_task(practice, (&read, &task), &[], None, None, &audit).await.map_err(|e| match e {
            caldicott_store::StoreError::Conflict(_) => AppError::Conflict(TaskError::OrderStarted.to_string()),
            other => other.into(),
        })?;
        Ok(task)
    }

    /// The task for a clinician that an order of repeats becomes (from the patient's pages or an
    /// app), with the patient's nominated pharmacy, written with its audit event.
    pub(crate) async fn create_repeat_task(
        &self,
        practice: PracticeId,
        patient: PatientId,
        requested_by: String,
        chosen: &[&Orderable],
        note: &str,
        actor: caldicott_core::audit::Actor,
    ) -> AppResult<Task> {
        let pharmacy =
            self.store.nominated_pharmacy(practice, patient).await?.map(|(ods, name)| format!("{name} ({ods})"));
        let task = Task {
            id: TaskId::from_uuid(new_id()),
            patient,
            kind: TaskKind::RepeatRequest,
            status: TaskStatus::Open,
            created_at: self.now(),
            requested_by,
            body: TaskBody::Repeat {
                items: chosen
                    .iter()
                    .map(|o| RepeatItem {
                        template: o.template,
                        drug: o.drug.clone(),
                        dosage: o.dosage.clone(),
                        quantity: o.quantity.clone(),
                        decision: ItemDecision::Pending,
                    })
                    .collect(),
                note: note.to_owned(),
                pharmacy,
            },
            outcome: None,
            closed_at: None,
            closed_by: None,
        };
        let audit = self.patient_audit(
            actor,
            Some(patient),
            Action::TaskCreate,
            format!("task/{}", task.id),
            Outcome::Success,
            format!("repeat request, {} items", chosen.len()),
        );
        self.store.create_repeat_order(practice, &task, &audit).await?;
        Ok(task)
    }

    /// The patient's own messages to the practice and their outcomes. Proxies cannot send or
    /// read them (R19).
    pub async fn my_requests(&self, me: &PatientPrincipal) -> AppResult<Vec<Task>> {
        Ok(self
            .store
            .tasks_for_patient(me.practice, me.holder)
            .await?
            .into_iter()
            .filter(|t| {
                matches!(t.kind, TaskKind::MedicationQuery | TaskKind::RecordAmendment | TaskKind::RecordDisagreement)
            })
            .collect())
    }

    /// Sends a message to the practice: a question about medication, a request to amend the
    /// record, or a note of disagreement with it.
    pub async fn send_request(
        &self,
        me: &PatientPrincipal,
        kind: &str,
        text: &str,
    ) -> AppResult<Result<Task, Vec<FieldProblem>>> {
        self.acting_for(me, None, ServiceKind::Appointments).await?;
        let mut problems = Vec::new();
        let kind = TaskKind::parse(kind).filter(|k| {
            matches!(k, TaskKind::MedicationQuery | TaskKind::RecordAmendment | TaskKind::RecordDisagreement)
        });
        if kind.is_none() {
            problems.push(FieldProblem { field: "kind", message: "Choose what your message is about".into() });
        }
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_MESSAGE {
            problems.push(FieldProblem {
                field: "text",
                message: format!("Write your message, in at most {MAX_MESSAGE} characters"),
            });
        }
        let (Some(kind), true) = (kind, problems.is_empty()) else { return Ok(Err(problems)) };
        let task = Task {
            id: TaskId::from_uuid(new_id()),
            patient: me.holder,
            kind,
            status: TaskStatus::Open,
            created_at: self.now(),
            requested_by: "the patient, online".into(),
            body: TaskBody::Message { text: text.to_owned() },
            outcome: None,
            closed_at: None,
            closed_by: None,
        };
        let audit = self.patient_audit(
            me.actor(None),
            Some(me.holder),
            Action::TaskCreate,
            format!("task/{}", task.id),
            Outcome::Success,
            kind.as_str(),
        );
        self.store.create_task(me.practice, &task, &audit).await?;
        Ok(Ok(task))
    }

    // ---- Staff -------------------------------------------------------------------------------

    /// The practice's tasks, open (oldest first) or done.
    pub async fn task_list(&self, who: &StaffPrincipal, done: bool) -> AppResult<Vec<(Task, PatientListing)>> {
        permit(who, Permission::SeeTasks)?;
        let status = if done { TaskStatus::Done } else { TaskStatus::Open };
        let tasks = self.store.tasks(who.practice, status, 500).await?;
        self.audit_look(who, None, Action::TaskListView, "tasks", format!("done={done} tasks={}", tasks.len())).await?;
        Ok(tasks)
    }

    /// The audit record of the caller's action on task `id` of `patient`, timed now.
    pub(crate) fn task_audit(
        &self,
        who: &StaffPrincipal,
        patient: PatientId,
        id: TaskId,
        detail: impl Into<String>,
    ) -> AuditRecord {
        self.audit_record(who, Some(patient), Action::TaskUpdate, format!("task/{id}"), Outcome::Success, detail)
    }

    /// One task with its patient. Opening it is audited as a look at the patient's record.
    pub async fn open_task(&self, who: &StaffPrincipal, id: TaskId) -> AppResult<(Task, Patient)> {
        permit(who, Permission::SeeTasks)?;
        let task = self.store.task(who.practice, id).await?.ok_or_else(|| AppError::NotFound("no such task".into()))?;
        let patient = self
            .store
            .patient(who.practice, task.patient)
            .await?
            .ok_or_else(|| AppError::NotFound("the task's patient".into()))?;
        Ok((task, patient))
    }

    /// A member of staff opens a task: its patient's details are shown, so the look is audited.
    pub async fn view_task(&self, who: &StaffPrincipal, id: TaskId) -> AppResult<(Task, Patient)> {
        let (task, patient) = self.open_task(who, id).await?;
        self.audit_look(who, Some(patient.id), Action::TaskView, format!("task/{id}"), task.kind.as_str()).await?;
        Ok((task, patient))
    }

    /// Approves or turns down one medicine of a repeat request. An approval issues it: a
    /// medication issue from the template joins the record, visible online as the template is.
    pub async fn decide_repeat_item(
        &self,
        who: &StaffPrincipal,
        id: TaskId,
        template: EntryId,
        approve: bool,
        reason: &str,
    ) -> AppResult<Task> {
        permit(who, Permission::DecideRequests)?;
        let (mut task, patient) = self.open_task(who, id).await?;
        let read = task.body.clone();
        let now = self.now();
        task.decide_item(template, approve, reason, &who.name, now).map_err(|e| match e {
            TaskError::AlreadyDone | TaskError::AlreadyDecided => AppError::Conflict(e.to_string()),
            other => AppError::BadRequest(other.to_string()),
        })?;
        let mut entries = Vec::new();
        if approve {
            let t = self
                .store
                .entry(who.practice, template)
                .await?
                .filter(|e| e.patient == patient.id)
                .ok_or_else(|| AppError::NotFound("the repeat template".into()))?;
            if let EntryBody::Medication { drug, dosage, quantity, .. } = &t.body {
                entries.push(Entry {
                    id: EntryId::from_uuid(new_id()),
                    patient: patient.id,
                    event_date: caldicott_core::uk::uk_date(now),
                    entered_at: now,
                    author: Author { staff: Some(who.staff), name: who.name.clone() },
                    origin: Origin::Native,
                    code: t.code.clone(),
                    body: EntryBody::MedicationIssue {
                        drug: drug.clone(),
                        dosage: dosage.clone(),
                        quantity: quantity.clone(),
                        template: Some(t.id),
                    },
                    visibility: t.visibility.clone(),
                    nopat: t.nopat,
                    safeguarding: t.safeguarding,
                    confidential: t.confidential,
                    superseded: None,
                });
            }
        }
        let audit = self.task_audit(
            who,
            patient.id,
            id,
            format!("item {template} {}", if approve { "approved and issued" } else { "turned down" }),
        );
        self.store.update_task(who.practice, (&read, &task), &entries, None, None, &audit).await?;
        Ok(task)
    }

    /// Records what the practice did about a message, and closes it.
    pub async fn close_request(&self, who: &StaffPrincipal, id: TaskId, outcome: &str) -> AppResult<Task> {
        permit(who, Permission::DecideRequests)?;
        let (mut task, patient) = self.open_task(who, id).await?;
        if task.kind == TaskKind::RepeatRequest {
            return Err(AppError::BadRequest("decide each item of a repeat request".into()));
        }
        if task.kind == TaskKind::PharmacyUpdate {
            return Err(AppError::Conflict("file or reject a pharmacy message on its review page".into()));
        }
        task.close(outcome, &who.name, self.now()).map_err(|e| match e {
            TaskError::AlreadyDone => AppError::Conflict(e.to_string()),
            other => AppError::BadRequest(other.to_string()),
        })?;
        let audit = self.task_audit(who, patient.id, id, "closed with an outcome");
        self.store.update_task(who.practice, (&task.body, &task), &[], None, None, &audit).await?;
        Ok(task)
    }

    /// Sets or clears the patient's nominated pharmacy (staff only: a proxy never can, R19).
    pub async fn nominate_pharmacy(&self, who: &StaffPrincipal, nhs: &str, ods: &str, name: &str) -> AppResult<()> {
        permit(who, Permission::SeeTasks)?;
        let patient = self.patient_here(who, nhs).await?;
        let (ods, name) = (ods.trim().to_ascii_uppercase(), name.trim());
        let pharmacy = if ods.is_empty() && name.is_empty() {
            None
        } else {
            caldicott_core::practice::OdsCode::parse(&ods)
                .map_err(|_| AppError::BadRequest("Enter the pharmacy's ODS code, for example FA123".into()))?;
            if name.is_empty() || name.len() > 120 {
                return Err(AppError::BadRequest("Enter the pharmacy's name".into()));
            }
            Some((ods.as_str(), name))
        };
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::PharmacyNominate,
            format!("patient/{}", patient.id),
            Outcome::Success,
            pharmacy.map_or("cleared".to_owned(), |(o, _)| format!("nominated {o}")),
        );
        self.store.set_nominated_pharmacy(who.practice, patient.id, pharmacy, &audit).await?;
        Ok(())
    }
}
