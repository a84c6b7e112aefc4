//! Page chrome: what every signed-in page shows in its header (the staff portal's [`Chrome`], the
//! patient pages' [`MyChrome`]), and the field errors a form page shows beside its fields.

use caldicott_app::patient_services::PatientSignedIn;
use caldicott_app::session::SignedIn;

/// What every signed-in page shows in its header.
pub struct Chrome {
    pub name: String,
    pub role: &'static str,
    pub practice_name: String,
    pub csrf: String,
    /// Automatic access is paused: every page says so, with the reason.
    pub paused: bool,
    pub pause_reason: String,
    /// Staff instant messages not yet read.
    pub unread: i64,
    /// The practice manager sees the settings link.
    pub manager: bool,
    /// Clinicians see the filing link.
    pub clinician: bool,
    /// Administrators see the staff accounts link.
    pub admin: bool,
    /// The practice team (not administrators or ICB analysts) sees the patient links.
    pub team: bool,
    /// Clinicians and practice managers see reviews and reports.
    pub governance: bool,
    /// ICB analysts see the service-wide figures.
    pub analyst: bool,
    /// Where this role starts: the header's service name and every error page link here.
    pub home: &'static str,
    /// How long a session may sit idle before it ends: the page warns before then.
    pub idle_seconds: i64,
}

/// Where each role lands after sign-in: the practice team on patient search, an administrator on
/// the staff accounts they look after, an ICB analyst on the service-wide figures.
pub(crate) fn home_of(role: caldicott_core::staff::Role) -> &'static str {
    use caldicott_core::staff::Role;
    match role {
        Role::Administrator => "/staff",
        Role::IcbAnalyst => "/icb",
        Role::Receptionist | Role::Clinician | Role::PracticeManager => "/",
    }
}

impl From<&SignedIn> for Chrome {
    fn from(s: &SignedIn) -> Self {
        Self {
            name: s.who.name.clone(),
            role: s.who.role.display(),
            practice_name: s.practice_name.clone(),
            csrf: s.csrf_token.clone(),
            paused: s.practice_paused,
            pause_reason: s.practice_pause_reason.clone(),
            unread: s.unread_messages,
            manager: s.who.role == caldicott_core::staff::Role::PracticeManager,
            clinician: s.who.role == caldicott_core::staff::Role::Clinician,
            admin: s.who.role == caldicott_core::staff::Role::Administrator,
            team: s.who.role.works_with_patients(),
            governance: matches!(
                s.who.role,
                caldicott_core::staff::Role::Clinician | caldicott_core::staff::Role::PracticeManager
            ),
            analyst: s.who.role == caldicott_core::staff::Role::IcbAnalyst,
            home: home_of(s.who.role),
            idle_seconds: caldicott_core::staff::SESSION_IDLE.num_seconds(),
        }
    }
}

/// What every signed-in patient page shows in its header.
pub struct MyChrome {
    pub name: String,
    pub practice_name: String,
    pub csrf: String,
    /// The identity was checked in full (P9): the record, repeat prescriptions, who has viewed
    /// the record and linked apps are offered. Without it only what the person can use is (R22).
    pub full_identity: bool,
}

impl From<&PatientSignedIn> for MyChrome {
    fn from(s: &PatientSignedIn) -> Self {
        Self {
            name: s.who.name.clone(),
            practice_name: s.practice_name.clone(),
            csrf: s.csrf_token.clone(),
            full_identity: s.who.identity == caldicott_core::access::IdentityLevel::P9,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// Helpers every form template uses.
pub(crate) trait Errors {
    fn errors(&self) -> &[FieldError];
    fn has_error(&self, field: &str) -> bool {
        self.errors().iter().any(|e| e.field == field)
    }
    fn error_for(&self, field: &str) -> String {
        self.errors().iter().find(|e| e.field == field).map(|e| e.message.clone()).unwrap_or_default()
    }
}

/// A use case's field problems as the form shows them.
pub(crate) fn field_errors(problems: Vec<caldicott_app::settings::FieldProblem>) -> Vec<FieldError> {
    problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }).collect()
}
