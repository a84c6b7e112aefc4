//! A patient's audit trail for staff: who viewed or changed their record, and when.

use crate::{App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::Action;
use caldicott_core::patient::Patient;
use caldicott_core::staff::Role;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

pub const TRAIL_LIMIT: i64 = 500;

/// Which events to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailFilter {
    All,
    /// Reads: record views, online previews, audit views.
    Views,
    /// Everything else: changes to the record and its settings.
    Changes,
}

/// One line of the trail, with the actor's name where they are staff of this practice.
#[derive(Debug, Clone)]
pub struct TrailLine {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub who: String,
    pub role: String,
    pub action: String,
    pub what: String,
    pub outcome: String,
    pub detail: String,
}

/// A patient's trail, with what the page banner needs.
#[derive(Debug, Clone)]
pub struct PatientTrail {
    pub patient: Patient,
    pub enhanced_review_active: bool,
    pub lines: Vec<TrailLine>,
}

/// A plain description of an audit action.
pub fn describe_action(action: &str) -> String {
    match action {
        "record.view_staff" => "Opened the record".into(),
        "record.preview_online" => "Viewed it as an online viewer sees it".into(),
        "record.view_audit" => "Viewed this audit trail".into(),
        "entry.create" => "Added an entry".into(),
        "entry.visibility_change" => "Changed an entry's online visibility".into(),
        "entry.supersede" => "Marked an entry superseded by a later version".into(),
        "access.settings_change" => "Changed online access settings".into(),
        "access.gp_connect_dissent" => "Recorded or took away dissent from sharing through GP Connect".into(),
        "proxy.link_create" => "Added a proxy".into(),
        "account.create" => "Online account created".into(),
        "patient.create" => "Registered the patient".into(),
        "demo.build" => "Record imported (demo)".into(),
        "record.transfer_in" => "Transferred in a record from another practice".into(),
        "record.view_online" => "Viewed the record online (the patient or a proxy)".into(),
        "record.view_communications" => "Viewed the messages sent to the patient".into(),
        "record.view_activity" => "The patient viewed who has looked at their record".into(),
        "task.view" => "Opened a task about the patient".into(),
        "task.create" => "A request or alert reached the task list".into(),
        "task.update" => "Recorded the outcome of a task".into(),
        "proxy.view" => "Viewed proxy access".into(),
        "proxy.link_update" => "Changed proxy access".into(),
        "appointment.book" => "Booked an appointment".into(),
        "appointment.cancel" => "Cancelled an appointment".into(),
        "appointment.amend" => "Changed the reason given for an appointment".into(),
        "appointment.gp_connect_read" => "Looked at appointments through GP Connect".into(),
        "record.gp_connect_structured" => "Read the record through GP Connect".into(),
        "record.gp_connect_documents" => "Looked at documents through GP Connect".into(),
        "message.queue" => "Queued a message to the patient".into(),
        "app.link" => "An app linked to the record".into(),
        "app.unlink" => "App access ended".into(),
        "account.linkage_issue" => "Issued a sign-up letter".into(),
        "patient.sign_in" => "The patient signed in".into(),
        "patient.sign_in_failed" => "A patient sign-in failed".into(),
        "patient.deregister" => "Deregistered the patient".into(),
        "entry.split" => "Split a consultation".into(),
        "entry.file" => "Filed a result or document".into(),
        "patient.update" => "Changed the patient's details".into(),
        "patient.sign_out" => "The patient signed out".into(),
        "patient.nominate_pharmacy" => "Changed the nominated pharmacy".into(),
        "patient.password_change" => "The patient changed their password".into(),
        "patient.password_reset" => "The patient set a new password with a password letter".into(),
        "patient.view_contact_quality" => "Viewed contact details needing attention".into(),
        "account.password_letter_issue" => "Issued a password letter".into(),
        "record.view_enhanced_review" => "Opened the enhanced review of online access".into(),
        "record.view_entry" => "Opened an entry".into(),
        "record.view_form" => "Opened a form about the record".into(),
        "record.view_transfers" => "Viewed records transferred in".into(),
        "review.decide" => "Decided an enhanced review of online access".into(),
        "entry.bulk_code" => "Coded as part of a practice-wide change".into(),
        "filing.view_item" => "Opened a result or document to file".into(),
        "task.reopen" => "Reopened a task about the patient".into(),
        "message.retry" => "Sent a failed message again".into(),
        "appointment.view_book" => "Viewed the appointment book".into(),
        "appointment.attendance" => "Recorded whether the patient came to an appointment".into(),
        "appointment.slot_online_change" => "Changed whether a slot is offered online".into(),
        "inbound.receive" => "A pharmacy sent a record update".into(),
        "inbound.view" => "Opened a pharmacy record update".into(),
        "inbound.amend" => "Changed a pharmacy record update before filing".into(),
        "inbound.file" => "Filed a pharmacy record update".into(),
        "inbound.reject" => "Rejected a pharmacy record update".into(),
        "inbound.match" => "Matched a pharmacy record update to the patient".into(),
        "sar.log" => "Logged a subject access request".into(),
        "sar.update" => "Updated a subject access request".into(),
        "sar.view" => "Opened a subject access request".into(),
        "sar.review_view" => "Reviewed a subject access export".into(),
        "sar.decide" => "Decided what a subject access export withholds".into(),
        "sar.export" => "Released a subject access export".into(),
        "staff_message.send" => "Sent a message to a colleague about the patient".into(),
        "staff_message.view" => "Read a message from a colleague about the patient".into(),
        "staff_message.delete" => "Deleted a message to a colleague about the patient".into(),
        "fhir.token_issue" => "An app or service was given access to the record".into(),
        other => other.replace(['.', '_'], " "),
    }
}

impl App {
    /// The patient's audit trail, newest first. Clinicians and practice managers only; viewing
    /// it is itself audited.
    pub async fn patient_trail(&self, who: &StaffPrincipal, nhs: &str, filter: TrailFilter) -> AppResult<PatientTrail> {
        if !matches!(who.role, Role::Clinician | Role::PracticeManager) {
            return Err(AppError::Forbidden("only clinicians and practice managers see a record's audit trail".into()));
        }
        let patient = self.patient_here(who, nhs).await?;
        self.audit_look(
            who,
            Some(patient.id),
            Action::AuditView,
            format!("patient/{}", patient.id),
            format!("filter={filter:?}"),
        )
        .await?;
        let facts = self.store.access_facts(who.practice, patient.id).await?;
        let enhanced_review =
            caldicott_core::snomed::enhanced_review(facts.enhanced_review_codes.iter().map(|(c, t)| (c.as_str(), *t)));
        let names: HashMap<String, String> = self
            .store
            .staff_members(who.practice)
            .await?
            .into_iter()
            .map(|s| (s.id.to_string(), s.display_name))
            .collect();
        let lines = self
            .store
            .audit_for_patient(who.practice, patient.id, TRAIL_LIMIT)
            .await?
            .into_iter()
            .filter(|e| {
                let view = e.action.starts_with("record.");
                match filter {
                    TrailFilter::All => true,
                    TrailFilter::Views => view,
                    TrailFilter::Changes => !view,
                }
            })
            .map(|e| TrailLine {
                seq: e.seq,
                at: e.at,
                who: names.get(&e.actor_id).cloned().unwrap_or_else(|| format!("{} {}", e.actor_kind, e.actor_id)),
                role: e.actor_role.replace('_', " "),
                action: describe_action(&e.action),
                what: e.entity,
                outcome: e.outcome.replace('_', " "),
                detail: e.detail,
            })
            .collect();
        Ok(PatientTrail { patient, enhanced_review_active: enhanced_review.is_active(), lines })
    }
}
