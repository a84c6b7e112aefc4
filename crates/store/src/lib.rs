//! Storage for caldicott: the [`Store`] trait in domain terms, implemented for SQLite (the
//! embedded default for one practice) and PostgreSQL (many practices on one service).
//!
//! Rules every implementation keeps:
//! - every method on practice data takes the practice first, and every query is scoped by it;
//! - every change to a patient record appends its audit event in the same transaction;
//! - audit events are only ever appended: no method updates or deletes one;
//! - no database type crosses this interface.

pub mod chat;
pub mod client;
pub mod documents;
pub mod fhir;
pub mod governance;
pub mod inbound;
mod migrate;
mod rows;
pub mod sar;
mod sql;
mod sqlite_fast;
pub mod test_support;

use async_trait::async_trait;
use caldicott_core::access::{OnlineAccessSettings, OnlineAccount, ProxyLink};
use caldicott_core::appointments::{Appointment, Clinic, Slot};
use caldicott_core::audit::{AuditRecord, ChainHead, StoredEvent};
use caldicott_core::entry::{Entry, OnlineVisibility, Section};
use caldicott_core::ids::*;
use caldicott_core::messages::OutboundMessage;
use caldicott_core::online::{AppLink, LinkageKey, PatientApp, PatientLogin, PatientSession};
use caldicott_core::patient::Patient;
use caldicott_core::practice::{OdsCode, OnlineServicesSettings, Practice};
use caldicott_core::staff::{ApiToken, SignInState, StaffMember, StaffSession};
use caldicott_core::tasks::{Task, TaskStatus};
use chrono::{DateTime, NaiveDate, Utc};
use std::sync::Arc;

pub use sql::{PostgresStore, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the database refused the operation: {0}")]
    Database(String),
    #[error("unsafe database configuration: {0}")]
    UnsafeConfiguration(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where a page of entries starts: after the entry with this sort key (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryCursor {
    pub event_date: NaiveDate,
    pub entered_at: DateTime<Utc>,
    pub id: EntryId,
}

impl EntryCursor {
    pub fn of(e: &Entry) -> Self {
        Self { event_date: e.event_date, entered_at: e.entered_at, id: e.id }
    }
}

/// A page of a patient's entries, newest first (by event date, then entered time, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryQuery {
    pub section: Option<Section>,
    pub after: Option<EntryCursor>,
    pub limit: u32,
}

/// What the store knows that bears on a patient's own online access.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessFacts {
    pub settings: OnlineAccessSettings,
    /// (concept id, entered) of every 104 and 106 entry in the record.
    pub enhanced_review_codes: Vec<(String, DateTime<Utc>)>,
    /// The identity levels of the patient's own online accounts.
    pub account_identities: Vec<caldicott_core::access::IdentityLevel>,
    /// When a record was last transferred in for the patient (R7).
    pub transferred_in: Option<DateTime<Utc>>,
}

/// One patient's record as imported in bulk (the demo, or a transfer-in).
#[derive(Debug, Clone)]
pub struct PatientImport {
    pub patient: Patient,
    pub access: OnlineAccessSettings,
    pub accounts: Vec<OnlineAccount>,
    pub entries: Vec<Entry>,
    /// Proxy links that act for this patient; each proxy must be in the same batch or already
    /// stored.
    pub proxies: Vec<ProxyLink>,
}

/// A record transferred in from another practice: one file, imported once for one patient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordImport {
    pub id: uuid::Uuid,
    pub patient: PatientId,
    /// SHA-256 of the file, hex: the same file is imported once per patient.
    pub sha256: String,
    pub from_ods: String,
    pub entries: i64,
    /// Entries the sending practice had hidden from the patient (kept hidden, R7).
    pub hidden_by_sender: i64,
    /// Entries that came without redaction information, hidden until reviewed (D4).
    pub pending_review: i64,
    pub imported_at: DateTime<Utc>,
    pub imported_by: String,
}

/// What happened when the worker tried to deliver a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The provider accepted it; its delivery report is to come.
    Sent { provider_id: String },
    /// Delivered (a channel that knows at once, such as the log).
    Delivered { provider_id: String },
    /// A temporary failure: try again at `next`.
    Retry { error: String, next: DateTime<Utc> },
    /// Given up: the reason is shown to staff.
    Failed { error: String },
}

/// A patient search: every given criterion must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientSearch {
    pub nhs_number: Option<caldicott_core::NhsNumber>,
    pub date_of_birth: Option<NaiveDate>,
    /// Upper case, without spaces.
    pub postcode: Option<String>,
    /// Lower-case words; each must start the family or a given name.
    pub names: Vec<String>,
}

/// A line of a patient list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PatientListing {
    pub id: PatientId,
    pub nhs_number: caldicott_core::NhsNumber,
    pub name: caldicott_core::patient::PersonName,
    pub date_of_birth: NaiveDate,
    pub sex: caldicott_core::patient::Sex,
    pub address: caldicott_core::practice::PostalAddress,
    pub date_of_death: Option<NaiveDate>,
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[async_trait]
pub trait Store:
    governance::GovernanceStore
    + inbound::InboundStore
    + sar::SarStore
    + chat::ChatStore
    + fhir::FhirStore
    + documents::DocumentStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;

    /// Runs a trivial query: the database answers.
    async fn health(&self) -> StoreResult<()>;

    // --- Practices -----------------------------------------------------------------------
    /// Creates a practice, starts its audit chain and records `audit` as its first event.
    async fn create_practice(&self, practice: &Practice, audit: &AuditRecord) -> StoreResult<()>;
    async fn practice(&self, id: PracticeId) -> StoreResult<Option<Practice>>;
    async fn practice_by_ods(&self, ods: &OdsCode) -> StoreResult<Option<Practice>>;
    async fn practices(&self) -> StoreResult<Vec<Practice>>;
    async fn set_online_services(
        &self,
        practice: PracticeId,
        settings: &OnlineServicesSettings,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    // --- Staff and tokens ----------------------------------------------------------------
    async fn create_staff(&self, practice: PracticeId, staff: &StaffMember, audit: &AuditRecord) -> StoreResult<()>;
    async fn staff_member(&self, practice: PracticeId, id: StaffId) -> StoreResult<Option<StaffMember>>;
    async fn staff_by_username(&self, practice: PracticeId, username: &str) -> StoreResult<Option<StaffMember>>;
    async fn staff_members(&self, practice: PracticeId) -> StoreResult<Vec<StaffMember>>;
    async fn create_api_token(&self, practice: PracticeId, token: &ApiToken, audit: &AuditRecord) -> StoreResult<()>;
    async fn api_token(&self, practice: PracticeId, id: TokenId) -> StoreResult<Option<ApiToken>>;
    /// Every API token of the practice with the member of staff it was issued to, newest first.
    async fn api_tokens(&self, practice: PracticeId) -> StoreResult<Vec<(ApiToken, StaffMember)>>;
    /// A token together with the member of staff it was issued to (one round trip per request).
    async fn staff_for_token(&self, practice: PracticeId, id: TokenId) -> StoreResult<Option<(ApiToken, StaffMember)>>;
    async fn revoke_api_token(
        &self,
        practice: PracticeId,
        id: TokenId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    /// Activates or deactivates an account; a deactivated member's sessions and tokens stop
    /// working at once (they are checked on every request).
    async fn set_staff_active(
        &self,
        practice: PracticeId,
        staff: StaffId,
        active: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    // --- Secrets sealed with a key outside the database -------------------------------------
    /// Passes every stored authenticator secret (staff and patients, every practice) through
    /// `reseal` and writes back what it returns (`None`: leave it), all in one transaction; a
    /// secret `reseal` cannot handle fails the whole and changes nothing. The number rewritten.
    async fn reseal_secrets(
        &self,
        reseal: &(dyn for<'s> Fn(&'s str) -> Result<Option<String>, String> + Sync),
    ) -> StoreResult<usize>;

    /// Uses an app-link nonce (by its hash) once: `false` when it was used before. Nonces past
    /// their expiry are forgotten at the same time.
    async fn use_app_link_nonce(
        &self,
        practice: PracticeId,
        app: AppId,
        nonce_hash: &[u8; 32],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    // --- Tries at a credential (ASVS 2.2.1) ------------------------------------------------
    /// Claims one try at `subject`'s credential from `address` at `now`, counting it as a
    /// failure until [`Store::clear_credential_tries`]: in one statement, refused (`None`) while
    /// a wait from earlier failures is due, so parallel tries cannot share one count. `Some`:
    /// the tries since the last success, and whether a sign-in completed from this address; the
    /// wait before the next try is set in the same transaction
    /// ([`caldicott_core::credentials::wait_after`]).
    async fn claim_credential_try(
        &self,
        practice: PracticeId,
        subject: &caldicott_core::credentials::Subject,
        address: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<caldicott_core::credentials::Claim>>;
    /// The sign-in completed: tries from this address count from nothing again, and the
    /// address is known to the account from `now`.
    async fn clear_credential_tries(
        &self,
        practice: PracticeId,
        subject: &caldicott_core::credentials::Subject,
        address: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Accepts an authenticator code's time step once: `false` when that step, or a later
    /// one, was accepted for this login before (RFC 6238 5.2).
    async fn use_totp_step(
        &self,
        practice: PracticeId,
        login: caldicott_core::credentials::TotpLogin,
        step: i64,
    ) -> StoreResult<bool>;

    // --- Staff sign-in and sessions --------------------------------------------------------
    /// Records a member of staff's TOTP secret, failure count and lock, with its audit event.
    async fn set_sign_in_state(
        &self,
        practice: PracticeId,
        staff: StaffId,
        state: &SignInState,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn create_session(
        &self,
        practice: PracticeId,
        session: &StaffSession,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A session and the member of staff it belongs to.
    async fn session(&self, practice: PracticeId, id: SessionId) -> StoreResult<Option<(StaffSession, StaffMember)>>;
    /// Notes that a session was used.
    async fn touch_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> StoreResult<()>;
    /// Ends `old` and starts `new` in one transaction (the session id changes at sign-in).
    async fn replace_session(
        &self,
        practice: PracticeId,
        old: SessionId,
        new: &StaffSession,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn end_session(
        &self,
        practice: PracticeId,
        id: SessionId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    // --- Passwords (ASVS 2.5) ----------------------------------------------------------------
    /// A member of staff's new password (argon2id PHC): every session of theirs but `keep` ends
    /// at `at`, and any one-time reset code of theirs is dropped, in one transaction with `audit`.
    async fn set_staff_password(
        &self,
        practice: PracticeId,
        staff: StaffId,
        password_hash: &str,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// An administrator's one-time code for a member of staff: the member's password becomes
    /// `placeholder_hash` (a hash of a secret nobody holds, so the old password stops working),
    /// every session of theirs ends, and the code replaces any earlier one. Not found for a
    /// member of another practice.
    async fn start_password_reset(
        &self,
        practice: PracticeId,
        reset: &caldicott_core::staff::PasswordReset,
        placeholder_hash: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The member's one-time code, if one was made (used or not).
    async fn password_reset(
        &self,
        practice: PracticeId,
        staff: StaffId,
    ) -> StoreResult<Option<caldicott_core::staff::PasswordReset>>;
    /// Uses the one-time code with `code_hash` once and sets the new password, ending every
    /// session of the member: `false` (and nothing changed) when that code is not the member's
    /// unused one (used meanwhile, replaced, or another).
    async fn finish_password_reset(
        &self,
        practice: PracticeId,
        staff: StaffId,
        code_hash: &[u8; 32],
        password_hash: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;

    // --- Patients ------------------------------------------------------------------------
    async fn create_patient(&self, practice: PracticeId, patient: &Patient, audit: &AuditRecord) -> StoreResult<()>;
    async fn patient(&self, practice: PracticeId, id: PatientId) -> StoreResult<Option<Patient>>;
    async fn patient_by_nhs_number(
        &self,
        practice: PracticeId,
        nhs: &caldicott_core::NhsNumber,
    ) -> StoreResult<Option<Patient>>;
    async fn patient_count(&self, practice: PracticeId) -> StoreResult<i64>;
    /// Ends the patient's current registration on `on` (deregistration, R6).
    async fn end_registration(
        &self,
        practice: PracticeId,
        patient: PatientId,
        on: NaiveDate,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The patients whose records a member of staff opened most recently, newest first (from
    /// the audit log).
    async fn recently_viewed(
        &self,
        practice: PracticeId,
        staff: StaffId,
        limit: u32,
    ) -> StoreResult<Vec<PatientListing>>;
    /// Patients of the practice matching every criterion, by name then date of birth.
    async fn search_patients(
        &self,
        practice: PracticeId,
        q: &PatientSearch,
        limit: u32,
    ) -> StoreResult<Vec<PatientListing>>;
    /// Imports whole records in one transaction, with one audit event per patient.
    async fn import_patients(
        &self,
        practice: PracticeId,
        batch: &[PatientImport],
        audit: &[AuditRecord],
    ) -> StoreResult<()>;

    // --- Online access -------------------------------------------------------------------
    async fn access_facts(&self, practice: PracticeId, patient: PatientId) -> StoreResult<AccessFacts>;
    async fn set_access_settings(
        &self,
        practice: PracticeId,
        patient: PatientId,
        settings: &OnlineAccessSettings,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn create_online_account(
        &self,
        practice: PracticeId,
        account: &OnlineAccount,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn online_accounts(&self, practice: PracticeId, holder: PatientId) -> StoreResult<Vec<OnlineAccount>>;
    async fn create_proxy_link(&self, practice: PracticeId, link: &ProxyLink, audit: &AuditRecord) -> StoreResult<()>;
    async fn proxy_link(&self, practice: PracticeId, id: ProxyLinkId) -> StoreResult<Option<ProxyLink>>;
    /// The proxies who act for `patient`.
    async fn proxy_links_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<ProxyLink>>;

    // --- Record entries ------------------------------------------------------------------
    async fn add_entries(&self, practice: PracticeId, entries: &[Entry], audit: &AuditRecord) -> StoreResult<()>;
    /// Stores a record transferred in from another practice in one transaction: the patient when
    /// they are new here, the entries, the import itself and its audit events. The same file
    /// twice for one patient is a conflict, and leaves nothing behind.
    async fn transfer_in(
        &self,
        practice: PracticeId,
        new_patient: Option<&Patient>,
        import: &RecordImport,
        entries: &[Entry],
        files: &[(EntryId, documents::StoredFile)],
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    // ---- Patient services ----
    /// Issues linkage credentials; any earlier unused ones for the same person stop working.
    async fn issue_linkage_key(&self, practice: PracticeId, key: &LinkageKey, audit: &AuditRecord) -> StoreResult<()>;
    async fn linkage_key(&self, practice: PracticeId, account_ref: &str) -> StoreResult<Option<LinkageKey>>;
    /// Creates a local login and its online account with linkage credentials, marking them used
    /// (a conflict if they were used meanwhile, or the username is taken).
    async fn create_patient_login(
        &self,
        practice: PracticeId,
        account: &OnlineAccount,
        login: &PatientLogin,
        linkage_ref: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn patient_login(
        &self,
        practice: PracticeId,
        username: &str,
    ) -> StoreResult<Option<(PatientLogin, OnlineAccount)>>;
    /// The local login of an account, if it has one.
    async fn patient_login_of(&self, practice: PracticeId, account: AccountId) -> StoreResult<Option<PatientLogin>>;
    /// Sets or clears the authenticator secret of a patient login.
    async fn set_patient_totp(
        &self,
        practice: PracticeId,
        account: AccountId,
        secret: Option<&str>,
        confirmed: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn create_patient_session(
        &self,
        practice: PracticeId,
        s: &PatientSession,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn patient_session(
        &self,
        practice: PracticeId,
        id: SessionId,
    ) -> StoreResult<Option<(PatientSession, OnlineAccount)>>;
    async fn touch_patient_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> StoreResult<()>;
    async fn end_patient_session(
        &self,
        practice: PracticeId,
        id: SessionId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A patient login's new password: every session of the account but `keep` ends at `at`.
    async fn set_patient_password(
        &self,
        practice: PracticeId,
        account: AccountId,
        password_hash: &str,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A new password with a password letter (a linkage key that `resets` this account): the
    /// letter is marked used (a conflict if it was used or replaced meanwhile), the password set
    /// and every session of the account ended, in one transaction.
    async fn reset_patient_password(
        &self,
        practice: PracticeId,
        linkage_ref: &str,
        account: AccountId,
        password_hash: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Saves a changed proxy link (status, scope, dates) of this patient.
    async fn update_proxy_link(&self, practice: PracticeId, link: &ProxyLink, audit: &AuditRecord) -> StoreResult<()>;
    /// When each proxy link of a patient was last used (from the audit log), by link id.
    async fn proxy_last_used(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(ProxyLinkId, DateTime<Utc>)>>;
    /// The online account an OpenID Connect subject signs in to, at this practice.
    async fn oidc_account(
        &self,
        practice: PracticeId,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<OnlineAccount>>;
    /// A new online account reached through an OpenID Connect provider.
    async fn create_oidc_account(
        &self,
        practice: PracticeId,
        account: &OnlineAccount,
        issuer: &str,
        subject: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A new identity level for an account (the provider verified the person further).
    async fn set_account_identity(
        &self,
        practice: PracticeId,
        account: AccountId,
        identity: caldicott_core::access::IdentityLevel,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The proxy links through which a person acts for others.
    async fn proxy_links_for_proxy(&self, practice: PracticeId, proxy: PatientId) -> StoreResult<Vec<ProxyLink>>;

    // ---- Appointments ----
    /// A clinic and its slots, in one transaction.
    async fn create_clinic(
        &self,
        practice: PracticeId,
        clinic: &Clinic,
        slots: &[Slot],
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Every slot starting in `[from, to)`, earliest first, each with its live booking if any.
    async fn slots_between(
        &self,
        practice: PracticeId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(Slot, Option<Appointment>)>>;
    async fn slot(&self, practice: PracticeId, id: SlotId) -> StoreResult<Option<Slot>>;
    /// Books a slot. A conflict if the slot already has a live booking: two people can never
    /// hold one slot (T46), whatever the timing.
    async fn book_slot(&self, practice: PracticeId, appointment: &Appointment, audit: &AuditRecord) -> StoreResult<()>;
    /// Cancels a live booking of this patient.
    async fn cancel_appointment(
        &self,
        practice: PracticeId,
        id: AppointmentId,
        patient: PatientId,
        at: DateTime<Utc>,
        by: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A patient's bookings (live and cancelled) with their slots, latest slot first.
    async fn appointments_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(Appointment, Slot)>>;
    /// One booking (live or cancelled) of this practice, with its slot.
    async fn appointment(&self, practice: PracticeId, id: AppointmentId) -> StoreResult<Option<(Appointment, Slot)>>;
    /// One slot of this practice with its live booking, if any.
    async fn slot_with_booking(
        &self,
        practice: PracticeId,
        id: SlotId,
    ) -> StoreResult<Option<(Slot, Option<Appointment>)>>;

    // ---- Tasks ----
    /// A new task, with its audit event.
    async fn create_task(&self, practice: PracticeId, task: &Task, audit: &AuditRecord) -> StoreResult<()>;
    async fn task(&self, practice: PracticeId, id: TaskId) -> StoreResult<Option<Task>>;
    /// Tasks with a status, oldest first, with their patients.
    async fn tasks(
        &self,
        practice: PracticeId,
        status: TaskStatus,
        limit: u32,
    ) -> StoreResult<Vec<(Task, PatientListing)>>;
    /// How many open tasks of a kind were created before a time (the dashboard's overdue alerts).
    async fn count_open_tasks(
        &self,
        practice: PracticeId,
        kind: caldicott_core::tasks::TaskKind,
        created_before: DateTime<Utc>,
    ) -> StoreResult<i64>;
    async fn tasks_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<Task>>;
    /// Saves a task's new state (only if it was open), any entries its outcome adds and any
    /// message it sends, in one transaction.
    async fn update_task(
        &self,
        practice: PracticeId,
        task: &Task,
        entries: &[Entry],
        message: Option<&OutboundMessage>,
        follow_up: Option<&Task>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The practice posted a printed letter: its task is done and its message sent.
    async fn letter_posted(
        &self,
        practice: PracticeId,
        task: &Task,
        message: MessageId,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The patient's nominated pharmacy: ODS code and name.
    async fn nominated_pharmacy(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Option<(String, String)>>;
    async fn set_nominated_pharmacy(
        &self,
        practice: PracticeId,
        patient: PatientId,
        pharmacy: Option<(&str, &str)>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    // ---- Outbox ----
    /// Writes a message to the outbox with its audit event, in one transaction.
    async fn enqueue_message(
        &self,
        practice: PracticeId,
        message: &OutboundMessage,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Writes a message and the task that goes with it (a letter to print and post), with the
    /// audit event, in one transaction; unless a message with the same idempotency key is
    /// already in the outbox, when nothing is written and it returns `false`. Concurrent calls
    /// with one key write one message.
    async fn enqueue_message_with_task(
        &self,
        practice: PracticeId,
        message: &OutboundMessage,
        task: Option<&Task>,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;
    /// Claims up to `limit` messages that are due (queued, or claimed by a worker whose claim ran
    /// out), across practices, until `lease_until`. A claimed message is not claimed again
    /// before then.
    async fn claim_due_messages(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(PracticeId, OutboundMessage)>>;
    /// Fixes an email's `Message-ID` before its first try: the one already recorded if there is
    /// one, else `candidate`. Returns the one to use, the same on every retry.
    async fn fix_email_message_id(&self, practice: PracticeId, id: MessageId, candidate: &str) -> StoreResult<String>;
    /// Records the outcome of a claimed message (only while it is still claimed).
    async fn finish_message(
        &self,
        practice: PracticeId,
        id: MessageId,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Applies a provider's delivery report once (reports are de-duplicated by provider id and
    /// status). Returns whether it changed anything.
    async fn apply_delivery_report(&self, provider_id: &str, status: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    async fn messages_for_patient(&self, practice: PracticeId, patient: PatientId)
        -> StoreResult<Vec<OutboundMessage>>;
    /// Messages that failed, newest first, with their patients.
    async fn failed_messages(
        &self,
        practice: PracticeId,
        limit: u32,
    ) -> StoreResult<Vec<(OutboundMessage, PatientListing)>>;
    /// Puts a failed message back in the queue, now.
    async fn retry_message(
        &self,
        practice: PracticeId,
        id: MessageId,
        now: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    /// The practice's message presets.
    async fn presets(&self, practice: PracticeId) -> StoreResult<Vec<(PresetId, caldicott_core::messages::Preset)>>;
    /// Saves a preset by name (a new one, or new wording for an existing one).
    async fn save_preset(
        &self,
        practice: PracticeId,
        preset: &caldicott_core::messages::Preset,
        by: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    /// Records a patient's preferred contact method and contact details (R38).
    async fn set_contact(
        &self,
        practice: PracticeId,
        patient: PatientId,
        preferred: caldicott_core::patient::PreferredContactMethod,
        email: Option<&str>,
        mobile: Option<&str>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    // ---- Linked apps (R21, R23) ----
    async fn create_app(&self, practice: PracticeId, app: &PatientApp, audit: &AuditRecord) -> StoreResult<()>;
    async fn apps(&self, practice: PracticeId) -> StoreResult<Vec<PatientApp>>;
    /// Turns a registered app off (its links and tokens are refused from the next request) or
    /// on again, with the audit event. An app not registered here is [`StoreError::NotFound`].
    async fn set_app_active(
        &self,
        practice: PracticeId,
        app: AppId,
        active: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// An app by its client id, with its practice.
    async fn app_by_client_id(&self, client_id: &str) -> StoreResult<Option<(PracticeId, PatientApp)>>;
    /// A new link and its "online services linked" task, in one transaction.
    async fn create_app_link(
        &self,
        practice: PracticeId,
        link: &AppLink,
        task: &Task,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn app_link(&self, practice: PracticeId, id: AppLinkId) -> StoreResult<Option<AppLink>>;
    /// A patient's app links (revoked ones too), newest first, each with its app.
    async fn app_links_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(AppLink, PatientApp)>>;
    /// Revokes a patient's live app links (one, or all); returns how many.
    async fn revoke_app_links(
        &self,
        practice: PracticeId,
        patient: PatientId,
        only: Option<AppLinkId>,
        why: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<u64>;

    /// The records transferred in for a patient, newest first.
    async fn record_imports(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<RecordImport>>;
    async fn entry(&self, practice: PracticeId, id: EntryId) -> StoreResult<Option<Entry>>;
    async fn entries(&self, practice: PracticeId, patient: PatientId, query: EntryQuery) -> StoreResult<Vec<Entry>>;
    async fn entry_count(&self, practice: PracticeId, patient: PatientId) -> StoreResult<i64>;
    /// Replaces one entry by the parts it was split into (R9), with the audit event, in one
    /// transaction. Fails, changing nothing, if the entry is not the patient's.
    async fn split_entry(
        &self,
        practice: PracticeId,
        original: EntryId,
        parts: &[Entry],
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Results and documents waiting to be filed, oldest first, with their patients.
    async fn filing_queue(&self, practice: PracticeId, limit: u32) -> StoreResult<Vec<(Entry, PatientListing)>>;
    /// Files one entry: its filed body and its online visibility, with the audit event, in one
    /// transaction. Fails (and changes nothing) if the entry is no longer waiting.
    async fn file_entry(&self, practice: PracticeId, entry: &Entry, audit: &AuditRecord) -> StoreResult<()>;
    /// Sets the online visibility of entries (R11), all or none, each with its audit event, in one
    /// transaction. Every entry must belong to the practice.
    async fn set_entries_visibility(
        &self,
        practice: PracticeId,
        changes: &[(EntryId, OnlineVisibility, AuditRecord)],
    ) -> StoreResult<()>;

    // --- Audit ---------------------------------------------------------------------------
    /// Appends events to their practices' chains in one transaction (group commit): all are
    /// durable when this returns, or none is.
    async fn append_audit(&self, events: &[(PracticeId, AuditRecord)]) -> StoreResult<()>;
    async fn audit_head(&self, practice: PracticeId) -> StoreResult<ChainHead>;
    /// Events after position `after`, in order, at most `limit`.
    async fn audit_events(&self, practice: PracticeId, after: i64, limit: i64) -> StoreResult<Vec<StoredEvent>>;
    /// A patient's audit trail, newest first.
    async fn audit_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
        limit: i64,
    ) -> StoreResult<Vec<StoredEvent>>;
}

/// Opens the database named by `url`: a `postgres://` URL, or an SQLite file path (or
/// `sqlite:` URL). Creates the SQLite file and its folder if needed, checks that the database is
/// configured for durability, and brings the schema up to date.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url, None).await?))
    } else {
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        Ok(Arc::new(SqliteStore::open(std::path::Path::new(path)).await?))
    }
}

/// Redacts the password from a database URL for logs and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &creds[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
