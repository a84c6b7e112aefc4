//! Entries of the record and their online visibility.

use crate::*;
use async_trait::async_trait;

/// Entries of the record and their online visibility.
#[async_trait]
pub trait RecordStore: Send + Sync {
    // --- Record entries ----------------------------------------------------------------------------
    async fn add_entries(&self, practice: PracticeId, entries: &[Entry], audit: &AuditRecord) -> StoreResult<()>;
    /// Stores entries and the task that asks the practice to review them, in one transaction
    /// with its audit event: both, or neither.
    async fn add_entries_with_task(
        &self,
        practice: PracticeId,
        entries: &[Entry],
        task: &caldicott_core::tasks::Task,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
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
}
