//! [`DocumentStore`] for both databases.

use super::{placeholders, SqlStore};
use crate::db::query;
use crate::documents::*;
use crate::rows::Cols;
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::entry::{Entry, EntryKind};
use caldicott_core::ids::{EntryId, PracticeId};

pub(super) fn info_row(r: &impl Cols) -> StoreResult<FileInfo> {
    let sha1: Vec<u8> = r.bytes("sha1")?;
    Ok(FileInfo {
        content_type: r.text("content_type")?,
        filename: r.text("filename")?,
        size: u64::try_from(r.int("size")?).map_err(|_| StoreError::Corrupt("file size".into()))?,
        sha1: sha1.try_into().map_err(|_| StoreError::Corrupt("file hash".into()))?,
    })
}

#[async_trait]
impl DocumentStore for SqlStore {
    async fn add_document(
        &self,
        practice: PracticeId,
        entry: &Entry,
        file: &StoredFile,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        if entry.kind() != EntryKind::Document {
            return Err(StoreError::refused("only a document entry has a file"));
        }
        let mut tx = self.begin().await?;
        Self::insert_entry(&mut tx, practice, entry).await?;
        Self::insert_file(&mut tx, practice, entry.id, file).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn document_file(&self, practice: PracticeId, entry: EntryId) -> StoreResult<Option<StoredFile>> {
        self.row_by(
            "SELECT * FROM document_file WHERE practice_id = $1 AND entry_id = $2",
            practice,
            entry.as_uuid(),
            |r| Ok(StoredFile { info: info_row(r)?, content: r.bytes("content")? }),
        )
        .await
    }

    async fn document_files(&self, practice: PracticeId, entries: &[EntryId]) -> StoreResult<Vec<(EntryId, FileInfo)>> {
        let mut out = Vec::new();
        for chunk in entries.chunks(500) {
            let sql = format!(
                "SELECT entry_id, content_type, filename, size, sha1 FROM document_file \
                 WHERE practice_id = $1 AND entry_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = query(&sql).bind(practice.as_uuid());
            for e in chunk {
                q = q.bind(e.as_uuid());
            }
            for r in q.fetch_all(self.read()).await? {
                out.push((EntryId::from_uuid(r.uuid("entry_id")?), info_row(&r)?));
            }
        }
        Ok(out)
    }
}
