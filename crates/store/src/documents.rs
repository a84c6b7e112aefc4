//! Storage for the files of document entries (scanned letters, PDFs): kept with their entry, in
//! the same transaction, and read back whole only when someone opens one.

use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::entry::Entry;
use caldicott_core::ids::{EntryId, PracticeId};

pub use caldicott_core::entry::FileInfo;

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub info: FileInfo,
    pub content: Vec<u8>,
}

#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// Adds a document entry with its file and the audit event, in one transaction.
    async fn add_document(
        &self,
        practice: PracticeId,
        entry: &Entry,
        file: &StoredFile,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn document_file(&self, practice: PracticeId, entry: EntryId) -> StoreResult<Option<StoredFile>>;
    /// What is known of the files of these entries (those that have one), without their content.
    async fn document_files(&self, practice: PracticeId, entries: &[EntryId]) -> StoreResult<Vec<(EntryId, FileInfo)>>;
}
