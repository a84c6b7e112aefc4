//! Practices and their online-services settings.

use crate::*;
use async_trait::async_trait;

/// Practices and their online-services settings.
#[async_trait]
pub trait PracticeStore: Send + Sync {
    // --- Practices ---------------------------------------------------------------------------------
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
}
