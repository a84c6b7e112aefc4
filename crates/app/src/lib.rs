//! Use cases shared by the web server and the command line. Each follows one shape: parse and
//! validate the input, load the facts from the store, let `caldicott-core` decide, persist the
//! outcome with its audit event, and return a result in domain terms.

/// The record and who may see it: the staff view, the one reader for outside viewers, GP Connect Access Record: Structured for clinicians elsewhere, hiding and showing entries, online access, proxies, consultations, filing, documents, registration, transfer-in, search and the audit trail.
mod records {
    pub mod access_panel;
    pub mod care_plans;
    #[cfg(test)]
    mod choke_point;
    pub mod consultation;
    pub mod documents;
    pub mod entry_check;
    pub mod filing;
    pub mod gp_connect;
    pub(crate) mod outside;
    pub mod proxies;
    pub mod record;
    pub mod redaction;
    pub mod registration;
    pub mod results;
    pub mod search;
    pub mod trail;
    pub mod transfer;
}
pub use records::access_panel;
pub use records::care_plans;
pub use records::consultation;
pub use records::documents;
pub use records::entry_check;
pub use records::filing;
pub use records::gp_connect;
pub(crate) use records::outside;
pub use records::proxies;
pub use records::record;
pub use records::redaction;
pub use records::registration;
pub use records::results;
pub use records::search;
pub use records::trail;
pub use records::transfer;

/// What patients and proxies do online: their record, services and repeat requests.
mod patients_online {
    pub mod my_care_plans;
    pub mod my_results;
    pub mod patient_services;
    pub mod requests;
}
pub use patients_online::my_care_plans;
pub use patients_online::my_results;
pub use patients_online::patient_services;
pub use patients_online::requests;

/// Clinics, slots and appointments.
mod scheduling {
    pub mod appointments;
    pub mod capacity;
    pub mod gp_connect;
}
pub use scheduling::appointments;
pub use scheduling::capacity;
/// GP Connect Appointment Management (other care settings booking at the practice).
pub use scheduling::gp_connect as gp_connect_appointments;

/// Patient apps and the FHIR API, staff instant messages, and messages to patients (the outbox and its couriers).
mod apps_and_messages {
    pub mod apps;
    pub mod chat;
    pub mod fhir_api;
    pub mod outbox;
}
pub use apps_and_messages::apps;
pub use apps_and_messages::chat;
pub use apps_and_messages::fhir_api;
pub use apps_and_messages::outbox;

/// Governance (exclusion reviews and reports, bulk codes, the ICB view) and the audit log.
mod oversight {
    pub mod audit_log;
    pub mod governance;
}
pub use oversight::audit_log;
pub use oversight::governance;

/// Record updates written by pharmacies (GP Connect Update Record).
mod inbound {
    pub mod update_record;
}
pub use inbound::update_record;

/// Subject access requests, their exports and the PDF writer.
mod subject_access {
    pub mod sar;
    pub mod sar_export;
}
pub use subject_access::sar;
pub use subject_access::sar_export;

/// Staff and patient accounts: sign-in, sessions, passwords, machine credentials, sealed secrets, NHS login, staff administration, practice set-up and settings.
mod accounts {
    pub mod auth;
    pub mod credentials;
    pub mod nhs_login;
    pub mod passwords;
    pub mod secrets;
    pub mod session;
    pub mod settings;
    pub mod setup;
    pub mod staff_admin;
}
pub use accounts::auth;
pub use accounts::credentials;
pub use accounts::nhs_login;
pub use accounts::passwords;
pub use accounts::secrets;
pub use accounts::session;
pub use accounts::settings;
pub use accounts::setup;
pub use accounts::staff_admin;

/// Bulk loading for the demo generator (`caldicott-demo`), and the test suites' fixtures.
mod seed {
    pub mod bulk;
    /// Test fixtures: only in builds with the `testing` feature (the test suites'), never in the
    /// binary.
    #[cfg(any(test, feature = "testing"))]
    pub mod fixtures;
}
pub use seed::bulk;
#[cfg(any(test, feature = "testing"))]
pub use seed::fixtures;

use caldicott_core::audit::{Actor, ActorKind};
use caldicott_core::ids::*;
use caldicott_core::staff::Role;
use caldicott_store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub use audit_log::AuditWriter;
pub use caldicott_store::{client, PatientListing, RecordImport};

/// Everything a use case can fail with. The web layer maps these to HTTP statuses in one place.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input is malformed; the message says what to fix.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The database or the audit log cannot be written: fail closed.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else; the cause is logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::NotFound(format!("{what} not found")),
            StoreError::Conflict(c) => AppError::Conflict(c.to_string()),
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// Where "now" comes from: the system clock, or a fixed time in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// A signed-in member of staff, as established by a token or (later) a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffPrincipal {
    pub practice: PracticeId,
    pub staff: StaffId,
    pub name: String,
    pub role: Role,
}

/// Refuses (403) a member of staff whose role lacks `permission`, with the table's words
/// (`caldicott_core::permissions`, rendered into docs/permissions.md).
pub fn permit(who: &StaffPrincipal, permission: caldicott_core::permissions::Permission) -> AppResult<()> {
    permission.check(who.role).map_err(|why| AppError::Forbidden(why.to_owned()))
}

impl StaffPrincipal {
    /// Refuses (403, with `why`) anyone who may not open patient records
    /// (`Permission::OpenRecords`): administrators run the service and ICB analysts see counts.
    pub fn require_team(&self, why: &str) -> AppResult<()> {
        if caldicott_core::permissions::Permission::OpenRecords.allows(self.role) {
            Ok(())
        } else {
            Err(AppError::Forbidden(why.to_owned()))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor { kind: ActorKind::Staff, id: self.staff.to_string(), role: self.role.as_str().to_owned() }
    }
}

/// The application: the store, the audit writer and the clock, shared by every request.
#[derive(Clone)]
pub struct App {
    /// The store: reached through use cases only, from outside this crate (the web layer never
    /// touches it; tests reach it with `store_for_tests`, behind the `testing` feature).
    pub(crate) store: Arc<dyn Store>,
    pub audit: AuditWriter,
    clock: Clock,
    nhs_login: Option<Arc<dyn nhs_login::IdentityProvider>>,
    notify_callback_token: Option<Arc<str>>,
    letters_by_notify: bool,
    /// Tries at each account's credentials, across every address (ASVS 2.2.1): a try beyond
    /// the account's rate is refused unchecked, answered like a wrong one.
    public_url: Arc<str>,
    /// Opens and seals the secrets kept in the database (authenticator secrets).
    secrets: Arc<secrets::Keyring>,
}

/// Where caldicott is reached before `App::with_public_url` says otherwise (tests, the CLI).
pub const DEFAULT_PUBLIC_URL: &str = "http://localhost";

impl App {
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        let audit = AuditWriter::start(store.clone());
        Self {
            store,
            audit,
            nhs_login: None,
            notify_callback_token: None,
            letters_by_notify: false,
            public_url: Arc::from(DEFAULT_PUBLIC_URL),
            clock,
            secrets: Arc::new(secrets::Keyring::ephemeral().unwrap_or_else(|e| panic!("{e}"))),
        }
    }

    /// The key (file) that seals the secrets kept in the database; without it a key of this
    /// process alone is used, which suits tests only.
    pub fn with_secrets(mut self, keyring: secrets::Keyring) -> Self {
        self.secrets = Arc::new(keyring);
        self
    }

    /// Seals a secret for the database.
    pub(crate) fn seal(&self, plain: &str) -> AppResult<String> {
        self.secrets.seal(plain)
    }

    /// The keyring, for values the server signs.
    pub(crate) fn secrets(&self) -> &secrets::Keyring {
        &self.secrets
    }

    /// Opens a secret from the database.
    pub(crate) fn open_secret(&self, stored: &str) -> AppResult<String> {
        self.secrets.open(stored)
    }

    /// The one public URL the service is reached at (`https://gp.example.nhs.uk`, no path): the
    /// only source of the FHIR token endpoint's expected audience, the SMART configuration, FHIR
    /// Bundle links and any link written into a letter or email. A request's `Host` and
    /// `X-Forwarded-*` headers are never used for these.
    pub fn with_public_url(mut self, url: &str) -> AppResult<Self> {
        self.public_url = Arc::from(parse_public_url(url)?);
        Ok(self)
    }

    /// The configured public URL, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Letters go out through GOV.UK Notify; without it, the practice prints and posts them.
    pub fn with_letters_by_notify(mut self) -> Self {
        self.letters_by_notify = true;
        self
    }

    /// The same application on another clock (the demo's "days ahead", and tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// GOV.UK Notify sends delivery reports with this bearer token.
    pub fn with_notify_callback_token(mut self, token: &str) -> Self {
        self.notify_callback_token = Some(Arc::from(token));
        self
    }

    /// Whether `bearer` is the token GOV.UK Notify's delivery reports carry (checked before a
    /// report's body is read).
    pub fn notify_callback_accepts(&self, bearer: &str) -> bool {
        self.notify_callback_token.as_ref().is_some_and(|t| constant_time_eq(t, bearer))
    }

    /// Applies a delivery report from GOV.UK Notify, if it carries the configured token.
    /// Reports are applied once each (by notification id and status).
    pub async fn notify_delivery_report(&self, bearer: &str, id: &str, status: &str) -> AppResult<bool> {
        match &self.notify_callback_token {
            Some(t) if constant_time_eq(t, bearer) => {}
            _ => return Err(AppError::Unauthenticated("the delivery report's token is not right".into())),
        }
        if id.is_empty() || id.len() > 100 || status.is_empty() {
            return Err(AppError::BadRequest("a delivery report needs an id and a status".into()));
        }
        Ok(self.store.apply_delivery_report(id, status, self.now()).await?)
    }

    /// Patients can also sign in through this OpenID Connect provider (NHS login).
    pub fn with_nhs_login(mut self, provider: impl nhs_login::IdentityProvider) -> Self {
        self.nhs_login = Some(Arc::new(provider));
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The store itself, for tests that arrange data or inspect what a use case wrote. Only in
    /// builds with the `testing` feature (the test suites'), never in the binary.
    #[cfg(any(test, feature = "testing"))]
    pub fn store_for_tests(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// One practice by its ODS code (for the operator's commands).
    pub async fn practice_by_ods(
        &self,
        code: &caldicott_core::practice::OdsCode,
    ) -> AppResult<Option<caldicott_core::practice::Practice>> {
        Ok(self.store.practice_by_ods(code).await?)
    }

    /// A practice's audit chain head: how many events, and the hash of the last (the operator's
    /// checkpoint).
    pub async fn audit_head(&self, practice: PracticeId) -> AppResult<caldicott_core::audit::ChainHead> {
        Ok(self.store.audit_head(practice).await?)
    }

    /// Checks a practice's audit chain from its first event, against any checkpoints kept
    /// elsewhere (`caldicott audit verify`).
    pub async fn verify_audit_chain(
        &self,
        practice: PracticeId,
        checkpoints: &[caldicott_core::audit::ChainHead],
    ) -> AppResult<Result<caldicott_core::audit::ChainHead, caldicott_core::audit::ChainBreak>> {
        audit_log::verify_chain(self.store.as_ref(), practice, checkpoints).await
    }

    /// Makes a new secret key and seals every stored secret again under it
    /// (`caldicott secrets rotate`).
    pub async fn rotate_secrets(&self, key_file: &std::path::Path) -> AppResult<secrets::Rotation> {
        secrets::rotate(self.store.as_ref(), key_file).await
    }

    /// Whether the database answers (the health check).
    pub async fn health(&self) -> AppResult<()> {
        Ok(self.store.health().await?)
    }

    /// Whether this server is ready for requests: the database answers and its schema is the one
    /// this build expects (a load balancer sends nothing to a server that is not).
    pub async fn ready(&self) -> AppResult<()> {
        if self.store.schema_current().await? {
            Ok(())
        } else {
            Err(AppError::Unavailable("the database schema is not the one this build expects".into()))
        }
    }

    /// The service's own gauges for its metrics: each connection pool's use, and the outbox's
    /// messages by channel and status across practices (counts only).
    pub async fn service_gauges(&self) -> AppResult<(Vec<caldicott_store::PoolUse>, Vec<(String, String, i64)>)> {
        Ok((self.store.pool_use(), self.store.outbox_depth().await?))
    }

    /// The practices this service runs, for the sign-in pages (which ask for the practice only
    /// when there is more than one).
    pub async fn practices(&self) -> AppResult<Vec<caldicott_core::practice::Practice>> {
        Ok(self.store.practices().await?)
    }

    /// The practice's staff (names and roles), for the caller's own practice.
    pub async fn practice_staff(&self, who: &StaffPrincipal) -> AppResult<Vec<caldicott_core::staff::StaffMember>> {
        Ok(self.store.staff_members(who.practice).await?)
    }

    /// Today's date in the UK: the rules' dates are UK dates (Europe/London), not UTC dates.
    pub fn today(&self) -> chrono::NaiveDate {
        caldicott_core::uk::uk_date(self.now())
    }
}

/// A public URL: `http` or `https`, a host (and port), nothing after it but an optional `/`.
pub fn parse_public_url(url: &str) -> AppResult<String> {
    let url = url.trim().trim_end_matches('/');
    let bad = || AppError::BadRequest(format!("{url:?} is not a public URL like https://gp.example.nhs.uk"));
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
    let host_ok = !rest.is_empty()
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && !rest.starts_with(':');
    if host_ok {
        Ok(url.to_owned())
    } else {
        Err(bad())
    }
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh time-ordered id (UUIDv7).
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
