//! Proxy access managed by staff (R14–R20, DAPB3051): every request is recorded with its
//! applicant, relationship, basis, decision maker, outcome (refusals too) and end date; links are
//! changed, suspended, ended and reactivated; links unused for five years are flagged (R18).

use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::*;
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::ids::*;
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::visibility::{proxy_link_lapse, proxy_link_next_lapse};
use chrono::{DateTime, Duration, NaiveDate, Utc};

/// A link unused for this long is flagged for removal (R18).
pub const UNUSED_FLAG_YEARS: i64 = 5;

/// The proxy request form as typed.
#[derive(Debug, Clone, Default)]
pub struct ProxyRequest {
    pub applicant_nhs: String,
    pub relationship: String,
    pub basis: String,
    pub appointments: bool,
    pub prescriptions: bool,
    pub record_level: String,
    /// "grant" (from today) or "beginning" (the whole record: a retrospective grant).
    pub record_from: String,
    pub end_day: String,
    pub end_month: String,
    pub end_year: String,
    /// "grant" or "refuse".
    pub outcome: String,
    pub refusal_reason: String,
}

/// A change to an existing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChange {
    Suspend {
        reason: String,
    },
    End {
        reason: String,
    },
    /// After a review (at the review age, or when a suspension is over): active again from today.
    Reactivate,
    Scope {
        appointments: bool,
        prescriptions: bool,
        record: AccessLevel,
    },
}

/// One link as the staff screen shows it.
#[derive(Debug, Clone)]
pub struct ProxyRow {
    pub link: ProxyLink,
    pub proxy: Patient,
    pub last_used: Option<DateTime<Utc>>,
    /// Not used for five years (or never, five years after the grant): flag for removal.
    pub unused: bool,
    /// Why it does not work now, if it does not.
    pub lapse: Option<String>,
    /// A lapse coming within the notice period.
    pub next: Option<String>,
}

fn status_words(s: &ProxyStatus) -> String {
    match s {
        ProxyStatus::Active => "active".into(),
        ProxyStatus::Suspended { since, reason } => format!("suspended since {since}: {reason}"),
        ProxyStatus::Revoked { on, reason } => format!("ended on {on}: {reason}"),
        ProxyStatus::Refused { on, reason } => format!("refused on {on}: {reason}"),
    }
}

impl App {
    /// Every proxy link of a patient, refused requests included, for the staff screen.
    pub async fn proxy_overview(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<(Patient, Vec<ProxyRow>)> {
        permit(who, Permission::ReadProxyAccess)?;
        let patient = self.patient_here(who, nhs).await?;
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("your practice".into()))?;
        let today = self.today();
        let used = self.store.proxy_last_used(who.practice, patient.id).await?;
        let mut rows = Vec::new();
        for link in self.store.proxy_links_for_patient(who.practice, patient.id).await? {
            let Some(proxy) = self.store.patient(who.practice, link.proxy).await? else { continue };
            let last_used = used.iter().find(|(id, _)| *id == link.id).map(|(_, t)| *t);
            let since = last_used.map_or(link.granted_on, caldicott_core::uk::uk_date);
            let live = matches!(link.status, ProxyStatus::Active | ProxyStatus::Suspended { .. });
            let lapse = match &link.status {
                ProxyStatus::Active => proxy_link_lapse(&link, &patient, &practice.online, today).map(|w| w.explain()),
                other => Some(status_words(other)),
            };
            let next = proxy_link_next_lapse(
                &link,
                &patient,
                &practice.online,
                today,
                crate::patient_services::PROXY_NOTICE_DAYS,
            )
            .map(|w| w.explain());
            rows.push(ProxyRow {
                unused: live && today - since >= Duration::days(365 * UNUSED_FLAG_YEARS),
                link,
                proxy,
                last_used,
                lapse,
                next,
            });
        }
        self.audit_look(
            who,
            Some(patient.id),
            Action::ProxyView,
            format!("patient/{}", patient.id),
            format!("links={}", rows.len()),
        )
        .await?;
        Ok((patient, rows))
    }

    /// Records a proxy request and its outcome: a link that works, or a refusal kept on record.
    pub async fn record_proxy_request(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        r: &ProxyRequest,
    ) -> AppResult<Result<ProxyLink, Vec<FieldProblem>>> {
        permit(who, Permission::DecideProxyAccess)?;
        let patient = self.patient_here(who, nhs).await?;
        let today = self.today();
        let mut problems = Vec::new();
        let applicant = match caldicott_core::NhsNumber::parse(&r.applicant_nhs) {
            Ok(n) => self.store.patient_by_nhs_number(who.practice, &n).await?,
            Err(e) => {
                problems.push(FieldProblem { field: "applicant_nhs", message: e.to_string() });
                None
            }
        };
        let applicant = match applicant {
            Some(a) if a.id == patient.id => {
                problems.push(FieldProblem {
                    field: "applicant_nhs",
                    message: "A patient cannot be their own proxy".into(),
                });
                None
            }
            Some(a) if a.registration_on(today).is_none() => {
                problems.push(FieldProblem {
                    field: "applicant_nhs",
                    message: "The applicant must be registered at this practice (R19)".into(),
                });
                None
            }
            Some(a) => Some(a),
            None if problems.is_empty() => {
                problems.push(FieldProblem {
                    field: "applicant_nhs",
                    message: "No patient with that NHS number is registered here: a proxy must be registered at this practice (R19)".into(),
                });
                None
            }
            None => None,
        };
        let relationship = r.relationship.trim();
        if relationship.is_empty() || relationship.len() > 60 {
            problems.push(FieldProblem {
                field: "relationship",
                message: "Enter the relationship, for example Mother".into(),
            });
        }
        let basis = ProxyBasis::parse(&r.basis);
        match basis {
            None => problems.push(FieldProblem { field: "basis", message: "Choose the basis for proxy access".into() }),
            Some(ProxyBasis::ChildNotCompetent) if patient.age_on(today) >= 16 => problems.push(FieldProblem {
                field: "basis",
                message: "The patient is 16 or over: \"child not competent\" does not apply".into(),
            }),
            _ => {}
        }
        let record = AccessLevel::parse(&r.record_level);
        if record.is_none() {
            problems.push(FieldProblem { field: "record_level", message: "Choose the record access".into() });
        }
        let ends_on = match [&r.end_day, &r.end_month, &r.end_year].map(|s| s.trim()) {
            ["", "", ""] => None,
            [d, m, y] => match (d.parse::<u32>(), m.parse::<u32>(), y.parse::<i32>()) {
                (Ok(d), Ok(m), Ok(y)) => match NaiveDate::from_ymd_opt(y, m, d) {
                    Some(date) if date > today => Some(date),
                    _ => {
                        problems.push(FieldProblem {
                            field: "end_day",
                            message: "The end date must be a real date in the future".into(),
                        });
                        None
                    }
                },
                _ => {
                    problems.push(FieldProblem {
                        field: "end_day",
                        message: "Enter the end date as day, month and year, or leave it empty".into(),
                    });
                    None
                }
            },
        };
        let refused = match r.outcome.as_str() {
            "grant" => false,
            "refuse" => {
                if r.refusal_reason.trim().is_empty() {
                    problems.push(FieldProblem {
                        field: "refusal_reason",
                        message: "Enter why the request is refused".into(),
                    });
                }
                true
            }
            _ => {
                problems.push(FieldProblem {
                    field: "outcome",
                    message: "Choose whether access is granted or refused".into(),
                });
                false
            }
        };
        let (Some(applicant), Some(basis), Some(record), true) = (applicant, basis, record, problems.is_empty()) else {
            return Ok(Err(problems));
        };
        let existing = self.store.proxy_links_for_patient(who.practice, patient.id).await?;
        if !refused
            && existing.iter().any(|l| {
                l.proxy == applicant.id && matches!(l.status, ProxyStatus::Active | ProxyStatus::Suspended { .. })
            })
        {
            return Ok(Err(vec![FieldProblem {
                field: "applicant_nhs",
                message: "This person already has proxy access for the patient: change that link instead".into(),
            }]));
        }
        let link = ProxyLink {
            id: ProxyLinkId::from_uuid(new_id()),
            patient: patient.id,
            proxy: applicant.id,
            relationship: relationship.to_owned(),
            basis,
            scope: ProxyScope {
                appointments: r.appointments,
                prescriptions: r.prescriptions,
                demographics: true,
                record,
                record_from: if r.record_from == "beginning" { RecordFrom::Beginning } else { RecordFrom::Date(today) },
            },
            granted_on: today,
            decided_by: who.name.clone(),
            ends_on,
            status: if refused {
                ProxyStatus::Refused { on: today, reason: r.refusal_reason.trim().to_owned() }
            } else {
                ProxyStatus::Active
            },
        };
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::ProxyLinkCreate,
            format!("proxy/{}", link.id),
            Outcome::Success,
            format!(
                "{} for proxy patient/{} basis={} appointments={} prescriptions={} record={} ends={}",
                if refused { "refused" } else { "granted" },
                applicant.id,
                basis.as_str(),
                r.appointments,
                r.prescriptions,
                record.as_str(),
                ends_on.map_or("none".into(), |d| d.to_string())
            ),
        );
        self.store.create_proxy_link(who.practice, &link, &audit).await?;
        Ok(Ok(link))
    }

    /// Changes, suspends, ends or reactivates a link. Ending keeps the proxy's own account (R20).
    pub async fn change_proxy(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        id: ProxyLinkId,
        change: &ProxyChange,
    ) -> AppResult<ProxyLink> {
        permit(who, Permission::DecideProxyAccess)?;
        let patient = self.patient_here(who, nhs).await?;
        let old = self
            .store
            .proxy_link(who.practice, id)
            .await?
            .filter(|l| l.patient == patient.id)
            .ok_or_else(|| AppError::NotFound(format!("no proxy link {id} for this patient")))?;
        let today = self.today();
        let mut link = old.clone();
        let need = |reason: &str| {
            let r = reason.trim();
            if r.is_empty() {
                Err(AppError::BadRequest("Enter the reason; it is kept with the link".into()))
            } else {
                Ok(r.to_owned())
            }
        };
        match (&old.status, change) {
            (ProxyStatus::Refused { .. } | ProxyStatus::Revoked { .. }, _) => {
                return Err(AppError::Conflict("this link has ended; record a new request instead".into()))
            }
            (ProxyStatus::Active, ProxyChange::Suspend { reason }) => {
                link.status = ProxyStatus::Suspended { since: today, reason: need(reason)? }
            }
            (_, ProxyChange::End { reason }) => link.status = ProxyStatus::Revoked { on: today, reason: need(reason)? },
            (_, ProxyChange::Reactivate) => {
                // A re-grant from today: it passes the review age or a suspension, never 16 for a
                // child-not-competent basis.
                if old.basis == ProxyBasis::ChildNotCompetent && patient.age_on(today) >= 16 {
                    return Err(AppError::Conflict(
                        "the patient is 16 or over: record a new request with their consent instead".into(),
                    ));
                }
                link.status = ProxyStatus::Active;
                link.granted_on = today;
                link.decided_by = who.name.clone();
                // A link that ended on its end date starts again without one.
                if link.ends_on.is_some_and(|d| d < today) {
                    link.ends_on = None;
                }
            }
            (_, ProxyChange::Scope { appointments, prescriptions, record }) => {
                link.scope.appointments = *appointments;
                link.scope.prescriptions = *prescriptions;
                link.scope.record = *record;
            }
            (ProxyStatus::Suspended { .. }, ProxyChange::Suspend { .. }) => {
                return Err(AppError::Conflict("this link is already suspended".into()))
            }
        }
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::ProxyLinkUpdate,
            format!("proxy/{id}"),
            Outcome::Success,
            format!("old: {} new: {}", status_words(&old.status), status_words(&link.status)),
        );
        self.store.update_proxy_link(who.practice, &link, &audit).await?;
        Ok(link)
    }
}
