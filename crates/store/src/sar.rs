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
}
