//! Storage for caldicott: the [`Store`] trait in domain terms, implemented for SQLite (the
//! embedded default for one practice) and PostgreSQL (many practices on one service).
//!
//! Rules every implementation keeps:
//! - every method on practice data takes the practice first, and every query is scoped by it;
//! - every change to a patient record appends its audit event in the same transaction;
//! - audit events are only ever appended: no method updates or deletes one;
//! - no database type crosses this interface.

pub mod backup;
pub mod chat;
pub mod client;
mod db;
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

pub use backup::probe;
pub use sql::SqlStore;
mod appointments;
mod audit;
mod credentials;
mod outbox;
mod patient_services;
mod patients;
mod practices;
mod records;
mod staff;
mod tasks;
pub use appointments::{AppointmentStore, BookingChange, PracticeCapacity};
pub use audit::AuditStore;
pub use credentials::CredentialStore;
pub use outbox::OutboxStore;
pub use patient_services::PatientServiceStore;
pub use patients::PatientStore;
pub use practices::PracticeStore;
pub use records::RecordStore;
pub use staff::StaffStore;
pub use tasks::TaskStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(Conflict),
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

impl StoreError {
    /// A write the store refused by a rule of its own, in its own words.
    pub fn refused(why: impl Into<String>) -> Self {
        StoreError::Conflict(Conflict::Refused(why.into()))
    }
}

/// Why a write collided with what is already stored. A key the database keeps unique is named
/// by what it means (see `Conflict::of_unique_key`), so callers match a variant, never the
/// database's message, and a person is never shown the database's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("a patient with that NHS number is already registered at this practice")]
    NhsNumberRegistered,
    #[error("that username is taken: choose another")]
    UsernameTaken,
    #[error("another member of staff at this practice has that SDS user ID")]
    SdsUserIdTaken,
    #[error("that ODS code is already registered")]
    OdsCodeTaken,
    #[error("that client id is already registered")]
    ClientIdTaken,
    #[error("that name is already used")]
    NameTaken,
    #[error("that appointment has just been booked by someone else")]
    SlotTaken,
    /// The clinic's limit of slots booked through GP Connect is reached.
    #[error("the practice takes no more bookings from other care settings in this clinic")]
    OthersLimitReached,
    #[error("this file has already been imported for this patient")]
    FileImported,
    /// A message, assertion or request with this identity has been received before.
    #[error("this has been received before")]
    AlreadyReceived,
    /// Another unique key, usually the record's own id: it is stored already.
    #[error("this is already recorded")]
    AlreadyExists,
    #[error("this refers to something that does not exist")]
    MissingReference,
    /// A rule the store checks itself, in its own words.
    #[error("{0}")]
    Refused(String),
}

impl Conflict {
    /// The conflict a unique key of `table` over `columns` stands for.
    pub(crate) fn of_unique_key(table: &str, columns: &[&str]) -> Self {
        match (table, columns.last().copied().unwrap_or_default()) {
            // Citus reports a worker's error without the table: the key's last column says it.
            ("", column) => Self::of_unique_column(column),
            ("patient", "nhs_number") => Conflict::NhsNumberRegistered,
            ("staff" | "patient_login", "username") => Conflict::UsernameTaken,
            ("staff", "sds_user_id") => Conflict::SdsUserIdTaken,
            ("practice" | "update_record_sender", "ods_code") => Conflict::OdsCodeTaken,
            ("update_record_sender" | "fhir_integration" | "patient_app", "client_id") => Conflict::ClientIdTaken,
            ("message_preset", "name") => Conflict::NameTaken,
            ("appointment", "slot_id") => Conflict::SlotTaken,
            ("record_import", "sha256") => Conflict::FileImported,
            ("inbound_message", "message_id")
            | ("fhir_assertion", "jti")
            | ("app_link_nonces_used", "nonce_hash")
            | ("outbox", "idempotency_key")
            | ("linkage_key", "account_ref") => Conflict::AlreadyReceived,
            _ => Conflict::AlreadyExists,
        }
    }

    /// The conflict a unique key ending in `column` stands for, whatever its table: each of
    /// these columns ends a unique key of one table only.
    fn of_unique_column(column: &str) -> Self {
        match column {
            "nhs_number" => Conflict::NhsNumberRegistered,
            "username" => Conflict::UsernameTaken,
            "sds_user_id" => Conflict::SdsUserIdTaken,
            "ods_code" => Conflict::OdsCodeTaken,
            "client_id" => Conflict::ClientIdTaken,
            "name" => Conflict::NameTaken,
            "slot_id" => Conflict::SlotTaken,
            "sha256" => Conflict::FileImported,
            "message_id" | "jti" | "nonce_hash" | "idempotency_key" | "account_ref" => Conflict::AlreadyReceived,
            _ => Conflict::AlreadyExists,
        }
    }

    /// A table's own name from the name of one of its shards on Citus (`practice_102008`):
    /// Citus reports a worker's error with the shard's name.
    pub(crate) fn unsharded(table: &str) -> &str {
        match table.rsplit_once('_') {
            Some((base, shard)) if !shard.is_empty() && shard.chars().all(|c| c.is_ascii_digit()) => base,
            _ => table,
        }
    }

    /// The table and columns of a unique key as SQLite names them in its message
    /// (`UNIQUE constraint failed: patient.practice_id, patient.nhs_number`).
    pub(crate) fn sqlite_key(message: &str) -> Option<(&str, Vec<&str>)> {
        let list = message.strip_prefix("UNIQUE constraint failed: ")?;
        let mut table = None;
        let mut columns = Vec::new();
        for qualified in list.split(", ") {
            let (t, c) = qualified.split_once('.')?;
            table = Some(t);
            columns.push(c);
        }
        Some((table?, columns))
    }

    /// The columns of a unique key as PostgreSQL names them in its detail
    /// (`Key (practice_id, nhs_number)=(…) already exists.`).
    pub(crate) fn postgres_columns(detail: &str) -> Option<Vec<&str>> {
        let list = detail.strip_prefix("Key (")?.split_once(")=")?.0;
        Some(list.split(", ").collect())
    }
}

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
    PracticeStore
    + StaffStore
    + CredentialStore
    + PatientStore
    + RecordStore
    + PatientServiceStore
    + AppointmentStore
    + TaskStore
    + OutboxStore
    + AuditStore
    + governance::GovernanceStore
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

    /// Whether the database's schema is the one this build expects: every migration it knows
    /// is applied, and none it does not know (a newer build's).
    async fn schema_current(&self) -> StoreResult<bool>;

    /// Connections in each pool (`read`, `write`): open, and idle among them.
    fn pool_use(&self) -> Vec<PoolUse>;

    /// Messages in the outbox of every practice by channel and status (counts only, for the
    /// service's metrics).
    async fn outbox_depth(&self) -> StoreResult<Vec<(String, String, i64)>>;
}

/// How busy one connection pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    pub pool: &'static str,
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// Opens the database named by `url`: a `postgres://` URL, or an SQLite file path (or
/// `sqlite:` URL). Creates the SQLite file and its folder if needed, checks that the database is
/// configured for durability, and brings the schema up to date.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if is_postgres(url) {
        Ok(Arc::new(SqlStore::connect_postgres(url, None).await?))
    } else {
        Ok(Arc::new(SqlStore::open_sqlite(&sqlite_path(url)).await?))
    }
}

/// Whether a database URL names PostgreSQL (else it is an SQLite file).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The SQLite file a path or `sqlite:` URL names (without any `?…` options).
pub fn sqlite_path(url: &str) -> std::path::PathBuf {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    std::path::PathBuf::from(path.split('?').next().unwrap_or(path))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_are_read_from_either_databases_words() {
        let (table, columns) =
            Conflict::sqlite_key("UNIQUE constraint failed: patient_login.practice_id, patient_login.username")
                .unwrap();
        assert_eq!((table, columns.as_slice()), ("patient_login", ["practice_id", "username"].as_slice()));
        assert_eq!(Conflict::of_unique_key(table, &columns), Conflict::UsernameTaken);
        let columns =
            Conflict::postgres_columns("Key (practice_id, nhs_number)=(a, 9434765919) already exists.").unwrap();
        assert_eq!(Conflict::of_unique_key("patient", &columns), Conflict::NhsNumberRegistered);
        assert_eq!(Conflict::of_unique_key("appointment", &["practice_id", "slot_id"]), Conflict::SlotTaken);
        assert_eq!(Conflict::of_unique_key("staff", &["practice_id", "id"]), Conflict::AlreadyExists);
        // On Citus the error names the shard: the table is the same.
        assert_eq!(Conflict::unsharded("practice_102008"), "practice");
        assert_eq!(Conflict::unsharded("update_record_sender_102364"), "update_record_sender");
        assert_eq!(Conflict::unsharded("patient_login"), "patient_login");
        // Without the table, the key's columns: the same conflicts.
        for (table, columns) in [
            ("patient", vec!["practice_id", "nhs_number"]),
            ("staff", vec!["practice_id", "username"]),
            ("staff", vec!["practice_id", "sds_user_id"]),
            ("practice", vec!["ods_code"]),
            ("patient_app", vec!["client_id"]),
            ("appointment", vec!["practice_id", "slot_id"]),
            ("outbox", vec!["practice_id", "idempotency_key"]),
            ("staff", vec!["practice_id", "id"]),
        ] {
            assert_eq!(Conflict::of_unique_key("", &columns), Conflict::of_unique_key(table, &columns), "{table}");
        }
        assert_eq!(Conflict::sqlite_key("NOT NULL constraint failed: patient.sex"), None);
        assert_eq!(Conflict::postgres_columns("something else"), None);
    }

    #[test]
    fn a_conflict_is_told_in_plain_words_without_the_databases_message() {
        for c in [
            Conflict::NhsNumberRegistered,
            Conflict::UsernameTaken,
            Conflict::AlreadyExists,
            Conflict::MissingReference,
        ] {
            let text = StoreError::Conflict(c).to_string();
            assert!(!text.contains("constraint") && !text.contains("Key (") && !text.contains('_'), "{text}");
        }
    }
}
