//! Storage for subject access requests (R31–R34).

use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{PatientId, PracticeId, StaffId};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// A subject access request as the register holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SarRequest {
    pub id: Uuid,
    pub patient: PatientId,
    pub requester: String,
    /// "the patient", or who the requester is to them ("solicitor", "mother").
    pub relationship: String,
    pub received: NaiveDate,
    /// What the practice is waiting for before the clock starts: "identity" or "clarification".
    pub waiting_for: Option<String>,
    pub identity_verified: Option<NaiveDate>,
    pub clarified: Option<NaiveDate>,
    /// Marked manifestly unfounded or excessive: a fee may be charged (R34).
    pub manifestly_unfounded: bool,
    pub fee_received: Option<NaiveDate>,
    pub notes: String,
    /// open, extended, released, refused, withdrawn.
    pub status: String,
    pub extension_reason: Option<String>,
    pub extension_notified_on: Option<NaiveDate>,
    pub closed_on: Option<NaiveDate>,
    pub close_note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// The period the request covers, where the requester limited it (T37: nothing outside it).
    pub period_from: Option<NaiveDate>,
    pub period_to: Option<NaiveDate>,
    /// For a requester who is not the patient: the authority they hold (consent, power of
    /// attorney, court order), as recorded by the practice. No export without it.
    pub authority: Option<String>,
}

/// A reviewer's decision on one item of an export (R33).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SarDecision {
    /// Which item: "entry/…", "message/…", "staff_message/…", "task/…", "appointment/…",
    /// "proxy/…", "audit/…".
    pub item_key: String,
    /// "release" or "withhold".
    pub decision: String,
    /// For a withheld item: "third_party", "serious_harm" or "other_exemption".
    pub ground: Option<String>,
    pub reason: String,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

/// One release of an export: what was sent, never the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SarRelease {
    pub id: Uuid,
    pub sar: Uuid,
    pub released_at: DateTime<Utc>,
    pub released_by: String,
    /// "pdf" or "fhir".
    pub format: String,
    pub sha256: String,
    pub bytes: i64,
    pub items_released: i64,
    pub items_withheld: i64,
}

/// A subject access export being made or waiting to be collected (without its files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    pub id: Uuid,
    pub sar: Uuid,
    /// The member of staff who released it: the only one who sees it or collects its files.
    pub staff: StaffId,
    pub started_at: DateTime<Utc>,
    /// Beaten by the server making the files; it stops if that server stops.
    pub heartbeat_at: DateTime<Utc>,
    pub stage: String,
    pub done: i64,
    pub total: i64,
    pub finished: bool,
    /// Why it failed, in words for the member of staff.
    pub failure: Option<String>,
    pub file_stem: Option<String>,
    pub released: i64,
    pub withheld: i64,
    pub pdf: Option<ExportFileFacts>,
    pub bundle: Option<ExportFileFacts>,
}

impl ExportJob {
    /// An export begun at `now` by `staff`, its files still to come.
    pub fn begun(id: Uuid, sar: Uuid, staff: StaffId, now: DateTime<Utc>) -> Self {
        Self {
            id,
            sar,
            staff,
            started_at: now,
            heartbeat_at: now,
            stage: "Starting".into(),
            done: 0,
            total: 0,
            finished: false,
            failure: None,
            file_stem: None,
            released: 0,
            withheld: 0,
            pdf: None,
            bundle: None,
        }
    }
}

/// What is known of one file of an export without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFileFacts {
    pub sha256: String,
    pub bytes: i64,
    pub taken: bool,
}

/// The files of a finished export.
pub struct ExportFiles<'a> {
    pub file_stem: &'a str,
    pub released: i64,
    pub withheld: i64,
    pub pdf: &'a [u8],
    pub pdf_sha256: &'a str,
    pub bundle: &'a [u8],
    pub bundle_sha256: &'a str,
}

/// Which file of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFile {
    Pdf,
    Bundle,
}

#[async_trait]
pub trait SarStore: Send + Sync + 'static {
    // --- Export jobs: in the database so that every server behind a load balancer sees them ----
    /// Records an export that has begun (files to come).
    async fn create_export_job(&self, practice: PracticeId, job: &ExportJob) -> StoreResult<()>;
    /// Records progress, and beats the heartbeat.
    async fn export_progress(
        &self,
        practice: PracticeId,
        id: Uuid,
        stage: &str,
        done: i64,
        total: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Records how an export ended: its files, or why it failed.
    async fn finish_export_job(
        &self,
        practice: PracticeId,
        id: Uuid,
        outcome: Result<ExportFiles<'_>, &str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn export_job(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<ExportJob>>;
    /// Hands over one file of a finished export, once: the first caller gets the bytes (and the
    /// file is dropped from the database) with its audit event written in the same transaction;
    /// every later or concurrent caller, on any server, gets `None`.
    async fn take_export_file(
        &self,
        practice: PracticeId,
        id: Uuid,
        staff: StaffId,
        which: ExportFile,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// Drops the practice's export jobs begun before `before`, files and all.
    async fn drop_export_jobs_before(&self, practice: PracticeId, before: DateTime<Utc>) -> StoreResult<u64>;

    async fn create_sar(&self, practice: PracticeId, sar: &SarRequest, audit: &AuditRecord) -> StoreResult<()>;
    /// Saves a request's new state, with its audit event.
    async fn update_sar(&self, practice: PracticeId, sar: &SarRequest, audit: &AuditRecord) -> StoreResult<()>;
    async fn sar(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<SarRequest>>;
    /// Every request, newest first, each with its patient (one query).
    async fn sars(&self, practice: PracticeId) -> StoreResult<Vec<(SarRequest, crate::PatientListing)>>;
    async fn sars_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<SarRequest>>;
    /// Saves the scope and authority fields of a request, with its audit event.
    async fn set_sar_scope(&self, practice: PracticeId, sar: &SarRequest, audit: &AuditRecord) -> StoreResult<()>;
    async fn sar_decisions(&self, practice: PracticeId, sar: Uuid) -> StoreResult<Vec<SarDecision>>;
    /// Records decisions (a later decision on an item replaces the earlier one), with their audit
    /// events, in one transaction.
    async fn record_sar_decisions(
        &self,
        practice: PracticeId,
        sar: Uuid,
        decisions: &[SarDecision],
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// Records a release (one row per file) with its audit events, in one transaction.
    async fn record_sar_release(
        &self,
        practice: PracticeId,
        releases: &[SarRelease],
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    async fn sar_releases(&self, practice: PracticeId, sar: Uuid) -> StoreResult<Vec<SarRelease>>;
}
