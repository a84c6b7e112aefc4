//! The subject access request register: logging a request, the statutory due date (R31),
//! waiting for identity or clarification (the clock stops), extensions (R32), the fee rule
//! (R34), and closing a request (released, refused, withdrawn). Every change is audited.

use crate::governance::parse_date_parts;
use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::permissions::Permission;
use caldicott_core::sar::{check_extension, due_date, SarDates};
use chrono::NaiveDate;
use uuid::Uuid;

pub use caldicott_store::sar::SarRequest;

/// When a request is due, if its clock is running (R31).
pub fn due_of(s: &SarRequest) -> Option<NaiveDate> {
    if s.waiting_for.is_some() {
        return None;
    }
    let dates = SarDates {
        received: Some(s.received),
        identity_verified: s.identity_verified,
        clarified: s.clarified,
        fee_received: if s.manifestly_unfounded { s.fee_received } else { None },
    };
    dates.clock_starts().map(|start| due_date(start, s.status == "extended"))
}

/// The due date before any extension.
pub fn original_due_of(s: &SarRequest) -> Option<NaiveDate> {
    let unextended = SarRequest { status: "open".into(), ..s.clone() };
    due_of(&unextended)
}

/// Whether a request is still being worked on.
pub fn is_open(s: &SarRequest) -> bool {
    matches!(s.status.as_str(), "open" | "extended")
}

/// A request in the register, with its patient and where it stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SarRow {
    pub sar: SarRequest,
    pub patient_name: String,
    pub nhs_number: String,
    pub due: Option<NaiveDate>,
    /// Days until due (negative: overdue), for open requests with a running clock.
    pub days_left: Option<i64>,
}

/// A new request as typed.
#[derive(Debug, Clone, Default)]
pub struct NewSar {
    pub nhs_number: String,
    pub requester: String,
    pub relationship: String,
    pub day: String,
    pub month: String,
    pub year: String,
    /// "", "identity" or "clarification".
    pub waiting_for: String,
    pub notes: String,
}

/// A change to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SarChange {
    IdentityVerified(NaiveDate),
    Clarified(NaiveDate),
    WaitFor(String),
    Extend { reason: String, notified_on: Option<NaiveDate> },
    Unfounded { fee_received: Option<NaiveDate>, note: String },
    Close { status: String, note: String },
}

impl App {
    /// Logs a request received by the practice.
    pub async fn log_sar(
        &self,
        who: &StaffPrincipal,
        input: &NewSar,
    ) -> AppResult<Result<SarRequest, Vec<FieldProblem>>> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        let mut problems = Vec::new();
        let today = self.today();
        let patient = match crate::record::parse_nhs_number(&input.nhs_number) {
            Ok(n) => self.store.patient_by_nhs_number(who.practice, &n).await?,
            Err(_) => None,
        };
        if patient.is_none() {
            problems.push(FieldProblem {
                field: "nhs_number",
                message: "Enter the NHS number of a patient of this practice".into(),
            });
        }
        let requester = input.requester.trim();
        if requester.is_empty() || requester.chars().count() > 200 {
            problems.push(FieldProblem { field: "requester", message: "Enter who made the request".into() });
        }
        let received = match parse_date_parts(&input.day, &input.month, &input.year) {
            Ok(Some(d)) if d > today => {
                problems.push(FieldProblem {
                    field: "received",
                    message: "The date received cannot be in the future".into(),
                });
                None
            }
            Ok(Some(d)) => Some(d),
            Ok(None) => {
                problems.push(FieldProblem {
                    field: "received",
                    message: "Enter the date the request was received".into(),
                });
                None
            }
            Err(e) => {
                problems.push(FieldProblem { field: "received", message: format!("The date received {e}") });
                None
            }
        };
        let waiting_for = match input.waiting_for.trim() {
            "" | "none" => None,
            w @ ("identity" | "clarification") => Some(w.to_owned()),
            _ => {
                problems.push(FieldProblem {
                    field: "waiting_for",
                    message: "Choose what, if anything, the practice is waiting for".into(),
                });
                None
            }
        };
        let (Some(patient), Some(received), true) = (patient, received, problems.is_empty()) else {
            return Ok(Err(problems));
        };
        let relationship = match input.relationship.trim() {
            "" => "the patient".to_owned(),
            r => r.chars().take(100).collect(),
        };
        let sar = SarRequest {
            id: new_id(),
            patient: patient.id,
            requester: requester.to_owned(),
            relationship,
            received,
            waiting_for,
            identity_verified: None,
            clarified: None,
            manifestly_unfounded: false,
            fee_received: None,
            notes: input.notes.trim().chars().take(2000).collect(),
            status: "open".into(),
            extension_reason: None,
            extension_notified_on: None,
            closed_on: None,
            close_note: None,
            created_at: caldicott_core::audit::truncate_to_micros(self.now()),
            created_by: who.name.clone(),
            period_from: None,
            period_to: None,
            authority: None,
        };
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::SarLog,
            format!("sar/{}", sar.id),
            Outcome::Success,
            format!("received={received} due={}", due_of(&sar).map_or("clock stopped".into(), |d| d.to_string())),
        );
        self.store.create_sar(who.practice, &sar, &audit).await?;
        Ok(Ok(sar))
    }

    /// The register: open requests by due date (overdue first), then closed ones.
    pub async fn sar_register(&self, who: &StaffPrincipal) -> AppResult<Vec<SarRow>> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        let today = self.today();
        let mut rows: Vec<SarRow> = self
            .store
            .sars(who.practice)
            .await?
            .into_iter()
            .map(|(sar, p)| Self::row(sar, p.name.banner(), p.nhs_number.as_str().to_owned(), today))
            .collect();
        rows.sort_by_key(|r| (!is_open(&r.sar), r.due.is_none(), r.due, std::cmp::Reverse(r.sar.received)));
        self.audit_look(who, None, Action::SarRegisterView, "sar-register", format!("requests={}", rows.len())).await?;
        Ok(rows)
    }

    fn row(sar: SarRequest, patient_name: String, nhs_number: String, today: NaiveDate) -> SarRow {
        let due = due_of(&sar);
        SarRow {
            days_left: due.filter(|_| is_open(&sar)).map(|d| (d - today).num_days()),
            due,
            patient_name,
            nhs_number,
            sar,
        }
    }

    /// How many open requests are past their due date, for the search page.
    pub async fn overdue_sars(&self, who: &StaffPrincipal) -> AppResult<usize> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        let today = self.today();
        Ok(self
            .store
            .sars(who.practice)
            .await?
            .iter()
            .filter(|(s, _)| is_open(s) && due_of(s).is_some_and(|d| d < today))
            .count())
    }

    pub async fn sar_view(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<SarRow> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        let sar =
            self.store.sar(who.practice, id).await?.ok_or_else(|| AppError::NotFound("no such request".into()))?;
        let patient = self.store.patient(who.practice, sar.patient).await?;
        let (name, nhs) = patient.map(|p| (p.name.banner(), p.nhs_number.as_str().to_owned())).unwrap_or_default();
        self.audit_look(who, Some(sar.patient), Action::SarView, format!("sar/{id}"), "").await?;
        Ok(Self::row(sar, name, nhs, self.today()))
    }

    /// Changes a request, audited with what changed.
    pub async fn change_sar(
        &self,
        who: &StaffPrincipal,
        id: Uuid,
        change: &SarChange,
    ) -> AppResult<Result<SarRequest, Vec<FieldProblem>>> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        let mut sar =
            self.store.sar(who.practice, id).await?.ok_or_else(|| AppError::NotFound("no such request".into()))?;
        if !is_open(&sar) {
            return Err(AppError::Conflict("this request is closed".into()));
        }
        let today = self.today();
        let problem = |field: &'static str, message: String| Ok(Err(vec![FieldProblem { field, message }]));
        let detail = match change {
            SarChange::IdentityVerified(d) | SarChange::Clarified(d) if *d > today || *d < sar.received => {
                return problem("date", "The date must be between the day the request came and today".into());
            }
            SarChange::IdentityVerified(d) => {
                sar.identity_verified = Some(*d);
                if sar.waiting_for.as_deref() == Some("identity") {
                    sar.waiting_for = None;
                }
                format!("identity_verified={d}")
            }
            SarChange::Clarified(d) => {
                sar.clarified = Some(*d);
                if sar.waiting_for.as_deref() == Some("clarification") {
                    sar.waiting_for = None;
                }
                format!("clarified={d}")
            }
            SarChange::WaitFor(what) => {
                if !matches!(what.as_str(), "identity" | "clarification") {
                    return problem("waiting_for", "Choose identity or clarification".into());
                }
                sar.waiting_for = Some(what.clone());
                format!("waiting_for={what}")
            }
            SarChange::Extend { reason, notified_on } => {
                permit(who, Permission::DecideSubjectAccessRequests)?;
                let Some(original) = original_due_of(&sar) else {
                    return problem("reason", "The clock has not started: there is no due date to extend".into());
                };
                if let Err(e) = check_extension(original, today, reason, *notified_on, sar.status == "extended") {
                    return problem("reason", format!("{}{}", e.to_string()[..1].to_uppercase(), &e.to_string()[1..]));
                }
                sar.status = "extended".into();
                sar.extension_reason = Some(reason.trim().to_owned());
                sar.extension_notified_on = *notified_on;
                format!(
                    "extended original_due={original} new_due={}",
                    due_of(&sar).map_or(String::new(), |d| d.to_string())
                )
            }
            SarChange::Unfounded { fee_received, note } => {
                permit(who, Permission::DecideSubjectAccessRequests)?;
                if note.trim().is_empty() {
                    return problem("note", "Say why the request is manifestly unfounded or excessive".into());
                }
                sar.manifestly_unfounded = true;
                sar.fee_received = *fee_received;
                sar.notes =
                    format!("{}\nManifestly unfounded or excessive: {}", sar.notes, note.trim()).trim().to_owned();
                format!("manifestly_unfounded fee_received={}", fee_received.map_or("none".into(), |d| d.to_string()))
            }
            SarChange::Close { status, note } => {
                permit(who, Permission::DecideSubjectAccessRequests)?;
                if !matches!(status.as_str(), "released" | "refused" | "withdrawn") {
                    return problem("status", "Choose released, refused or withdrawn".into());
                }
                if status == "refused" && note.trim().is_empty() {
                    return problem("note", "Give the reason for refusing; the requester must be told it".into());
                }
                sar.status = status.clone();
                sar.closed_on = Some(today);
                sar.close_note = Some(note.trim().to_owned()).filter(|n| !n.is_empty());
                format!("closed status={status}")
            }
        };
        let audit =
            self.audit_record(who, Some(sar.patient), Action::SarUpdate, format!("sar/{id}"), Outcome::Success, detail);
        self.store.update_sar(who.practice, &sar, &audit).await?;
        Ok(Ok(sar))
    }
}
