//! Storage for subject access requests (R31–R34).

use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{PatientId, PracticeId};
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

#[async_trait]
pub trait SarStore: Send + Sync + 'static {
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
