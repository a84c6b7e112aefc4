//! The audit chain: read and verified, only ever appended to.

use crate::*;
use async_trait::async_trait;

/// The audit chain: read and verified, only ever appended to.
#[async_trait]
pub trait AuditStore: Send + Sync {
    // --- Audit -------------------------------------------------------------------------------------
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
