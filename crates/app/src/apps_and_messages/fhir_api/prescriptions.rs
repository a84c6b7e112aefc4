//! Task: an app orders a repeat prescription for its patient and follows the order, as the
//! NHS App's Patient Facing Services Prescriptions API shapes it (FHIR R4, UK Core Task: intent
//! `order`, code "Renewal of prescription", focus the repeat's MedicationRequest). The order
//! becomes the same task for a clinician as one made on the patient's own pages, checked against
//! the same repeats offered (the visibility engine's `offer_repeat` for the link's holder), and
//! each medicine's decision comes back as the Task's status.

use super::{not_found, AppCaller, FhirCaller};
use crate::record::Loaded;
use crate::requests::Orderable;
use crate::{App, AppError, AppResult};
use caldicott_core::access::IdentityLevel;
use caldicott_core::ids::*;
use caldicott_core::tasks::{ItemDecision, Task, TaskBody, TaskKind, TaskStatus};
use caldicott_core::visibility::AccessPolicy;
use caldicott_fhir::write as fhir;
use serde_json::{json, Value};
use uuid::Uuid;

/// SNOMED CT "Renewal of prescription", the code of an order.
pub const RENEWAL_OF_PRESCRIPTION: &str = "103742009";

/// One FHIR Task per medicine of a repeat request: id `<task>-<n>`.
fn task_resources(t: &Task) -> Vec<Value> {
    let TaskBody::Repeat { items, note, .. } = &t.body else { return Vec::new() };
    items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            let (status, reason, modified) = match (&item.decision, t.status) {
                (ItemDecision::Approved { at, .. }, _) => ("completed", None, *at),
                (ItemDecision::Rejected { reason, at, .. }, _) => ("rejected", Some(reason.clone()), *at),
                (ItemDecision::Pending, TaskStatus::Open) => ("requested", None, t.created_at),
                (ItemDecision::Pending, TaskStatus::Done) => {
                    ("cancelled", t.outcome.clone(), t.closed_at.unwrap_or(t.created_at))
                }
            };
            let mut r = json!({
                "resourceType": "Task",
                "id": format!("{}-{n}", t.id),
                "meta": { "profile": [format!("{}UKCore-Task", fhir::UK_CORE)] },
                "identifier": [{ "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", t.id) }],
                "groupIdentifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", t.id) },
                "status": status,
                "intent": "order",
                "code": { "coding": [{ "system": caldicott_fhir::SNOMED_SYSTEM, "code": RENEWAL_OF_PRESCRIPTION, "display": "Renewal of prescription" }] },
                "focus": { "reference": format!("MedicationRequest/{}", item.template), "display": format!("{} — {}", item.drug, item.dosage) },
                "for": { "reference": format!("Patient/{}", t.patient) },
                "authoredOn": fhir::instant(t.created_at),
                "lastModified": fhir::instant(modified),
                "requester": { "display": t.requested_by },
                "note": if note.is_empty() { Value::Null } else { json!([{ "text": note }]) },
            });
            if let Some(reason) = reason.filter(|r| !r.trim().is_empty()) {
                r["statusReason"] = json!({ "text": reason });
            }
            fhir::compact(r)
        })
        .collect()
}

impl App {
    /// For ordering and following orders: an app's patient must be registered and alive, the
    /// link made at P9 (ordering reads the record's repeats, R22), and a proxy must have the
    /// prescriptions permission.
    pub(super) async fn prescriptions_patient(&self, a: &AppCaller) -> AppResult<(Loaded, AccessPolicy)> {
        let (l, policy) = self.app_view(a).await?;
        let today = self.today();
        if l.patient.registration_on(today).is_none() || l.patient.is_deceased_on(today) {
            return Err(AppError::Forbidden("this person is not registered at the practice".into()));
        }
        if self.link_identity(a.practice, &a.link).await? != Some(IdentityLevel::P9) {
            return Err(AppError::Forbidden("ordering repeat prescriptions needs a verified identity (P9)".into()));
        }
        if a.proxy.as_ref().is_some_and(|p| !p.scope.prescriptions) {
            return Err(AppError::Forbidden(
                "ordering prescriptions is not part of this proxy's access; contact the practice".into(),
            ));
        }
        Ok((l, policy))
    }

    /// Reads and searches of Task: the patient's repeat orders, one Task per medicine.
    pub(super) async fn tasks_read(
        &self,
        caller: &FhirCaller,
        id: Option<&str>,
        patient: Option<&str>,
    ) -> AppResult<(Loaded, Vec<Value>)> {
        let (l, policy) = match caller {
            FhirCaller::App(a) => {
                if let Some(p) = patient {
                    if p.trim_start_matches("Patient/") != a.patient().to_string() {
                        return Err(not_found("Patient", p));
                    }
                }
                let (l, policy) = self.prescriptions_patient(a).await?;
                (l, Some(policy))
            }
            FhirCaller::Staff(_) | FhirCaller::System(_) => (self.view_for(caller, patient).await?.0, None),
        };
        let mut found: Vec<Value> = self
            .store
            .tasks_for_patient(l.practice.id, l.patient.id)
            .await?
            .iter()
            .filter(|t| t.kind == TaskKind::RepeatRequest)
            .flat_map(task_resources)
            .collect();
        if let Some(id) = id {
            found.retain(|r| r["id"] == id);
        }
        // An app sees an order of a medicine only while its viewer is shown the medicine: one
        // hidden after it was ordered leaves every list, its name with it (R11, R12).
        if let Some(policy) = policy {
            let medicine = |r: &Value| {
                r["focus"]["reference"]
                    .as_str()
                    .and_then(|f| f.strip_prefix("MedicationRequest/"))
                    .and_then(|f| Uuid::try_parse(f).ok())
                    .map(EntryId::from_uuid)
            };
            let refs: Vec<EntryId> = found.iter().filter_map(medicine).collect();
            let mut shown = std::collections::HashMap::new();
            self.refs_shown(&l, &policy, &refs, &[], &mut shown).await?;
            found.retain(|r| medicine(r).is_some_and(|m| shown.get(&m).copied().unwrap_or(false)));
        }
        let audit = self.fhir_audit(caller, l.patient.id, "fhir/Task".into(), format!("orders={}", found.len()));
        self.audit.record(l.practice.id, audit).await?;
        Ok((l, found))
    }

    /// A practice-facing read of one Task by id: its task names the patient.
    pub(super) async fn task_by_id(&self, caller: &FhirCaller, id: &str) -> AppResult<Value> {
        if let FhirCaller::App(_) = caller {
            return self
                .tasks_read(caller, Some(id), None)
                .await?
                .1
                .into_iter()
                .next()
                .ok_or_else(|| not_found("Task", id));
        }
        let task = id
            .rsplit_once('-')
            .and_then(|(t, _)| Uuid::try_parse(t).ok())
            .map(TaskId::from_uuid)
            .ok_or_else(|| not_found("Task", id))?;
        let t = self.store.task(caller.practice(), task).await?.ok_or_else(|| not_found("Task", id))?;
        self.tasks_read(caller, Some(id), Some(&t.patient.to_string()))
            .await?
            .1
            .into_iter()
            .next()
            .ok_or_else(|| not_found("Task", id))
    }

    /// `POST [base]/Task`: an app orders one repeat for its patient (`patient/Task.write`).
    pub(super) async fn order_repeat(&self, a: &AppCaller, body: &Value) -> AppResult<Value> {
        if !a.scopes.allows_write("Task") {
            return Err(AppError::Forbidden("the token's scopes do not include patient/Task.write".into()));
        }
        if body["resourceType"] != "Task" {
            return Err(AppError::BadRequest("send a Task resource".into()));
        }
        if body.get("intent").is_some_and(|i| i != "order") || body.get("status").is_some_and(|s| s != "requested") {
            return Err(AppError::BadRequest(
                "an order is a Task with intent \"order\" and status \"requested\"".into(),
            ));
        }
        if let Some(code) = body["code"]["coding"].as_array() {
            if !code.iter().any(|c| c["code"] == RENEWAL_OF_PRESCRIPTION) {
                return Err(AppError::BadRequest(format!(
                    "the Task's code must be SNOMED CT {RENEWAL_OF_PRESCRIPTION} (Renewal of prescription)"
                )));
            }
        }
        if let Some(p) = body["for"]["reference"].as_str() {
            if p.strip_prefix("Patient/") != Some(&a.patient().to_string()) {
                return Err(AppError::Forbidden("an app orders only for its own patient".into()));
            }
        }
        let template = body["focus"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("MedicationRequest/"))
            .and_then(|s| Uuid::try_parse(s).ok())
            .map(EntryId::from_uuid)
            .ok_or_else(|| {
                AppError::BadRequest(
                    "name the repeat to order: focus.reference = \"MedicationRequest/<id>\" (a repeat the patient may order)"
                        .into(),
                )
            })?;
        let note = body["note"][0]["text"].as_str().unwrap_or("").trim().to_owned();
        let (l, _) = self.prescriptions_patient(a).await?;
        let identity = self.link_identity(a.practice, &a.link).await?;
        let missing = || not_found("Patient", &a.patient().to_string());
        // The order is checked against the repeats offered to this viewer; none is shown, and
        // the order itself is audited with the task.
        let view = self.outside_view_of(l.patient.clone(), a.proxy.clone(), identity, missing).await?;
        let offered: Vec<Orderable> =
            view.repeats(self).await?.checked_only().into_iter().filter_map(Orderable::of).collect();
        let Some(chosen) = offered.iter().find(|o| o.template == template) else {
            // A hidden, stopped or unknown template answers alike.
            return Err(AppError::BadRequest(
                "that medicine cannot be ordered online: it is not one of the patient's current repeats".into(),
            ));
        };
        if note.chars().count() > 500 {
            return Err(AppError::BadRequest("the note can be at most 500 characters".into()));
        }
        let task = self.create_repeat_task(a.practice, l.patient.id, requester(a), &[chosen], &note, a.actor()).await?;
        task_resources(&task).into_iter().next().ok_or_else(|| AppError::Unavailable("the order was not made".into()))
    }

    /// `PUT [base]/Task/<id>` with status `cancelled`: the app's patient (or the proxy with the
    /// prescriptions permission) cancels the order the Task belongs to, every medicine of it,
    /// while the practice has decided none of it (409 once it has).
    pub(super) async fn cancel_order_through_app(&self, a: &AppCaller, id: &str, body: &Value) -> AppResult<Value> {
        if !a.scopes.allows_write("Task") {
            return Err(AppError::Forbidden("the token's scopes do not include patient/Task.write".into()));
        }
        if body["resourceType"] != "Task" || body["status"] != "cancelled" {
            return Err(AppError::BadRequest(
                "the only change offered is cancelling the order: send the Task with status \"cancelled\"".into(),
            ));
        }
        let task = id
            .rsplit_once('-')
            .and_then(|(t, _)| Uuid::try_parse(t).ok())
            .map(TaskId::from_uuid)
            .ok_or_else(|| not_found("Task", id))?;
        // The Task named must be one of the patient's orders as the app reads them (`<order>-<n>`,
        // of a medicine its viewer is shown).
        let caller = FhirCaller::App(Box::new(a.clone()));
        let (l, visible) = self.tasks_read(&caller, Some(id), None).await?;
        if visible.is_empty() {
            return Err(not_found("Task", id));
        }
        let done = self.cancel_order_of(a.practice, l.patient.id, task, &requester(a), a.actor()).await.map_err(
            |e| match e {
                AppError::NotFound(_) => not_found("Task", id),
                other => other,
            },
        )?;
        task_resources(&done).into_iter().find(|r| r["id"] == id).ok_or_else(|| not_found("Task", id))
    }
}

/// Who orders or cancels through an app, in the words the practice and the patient read.
fn requester(a: &AppCaller) -> String {
    match &a.proxy {
        None => format!("the patient, online through {}", a.app.name),
        Some(p) => {
            format!("someone acting for the patient ({}), online through {}", p.relationship.to_lowercase(), a.app.name)
        }
    }
}
