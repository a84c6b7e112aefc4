//! [`AuditStore`] on both databases: the audit chain: read and verified, only ever appended to.

use super::*;
use async_trait::async_trait;

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, events: &[(PracticeId, AuditRecord)]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut practices: Vec<PracticeId> = events.iter().map(|(p, _)| *p).collect();
        practices.sort();
        practices.dedup();
        let mut tx = self.begin().await?;
        // Practices in a fixed order, so that concurrent batches never deadlock.
        for practice in practices {
            let records: Vec<&AuditRecord> = events.iter().filter(|(p, _)| *p == practice).map(|(_, r)| r).collect();
            Self::append_in(&mut tx, practice, &records).await?;
        }
        tx.commit().await
    }

    async fn audit_head(&self, practice: PracticeId) -> StoreResult<ChainHead> {
        let r = query("SELECT count, hash FROM audit_head WHERE practice_id = $1")
            .bind(practice.as_uuid())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound("practice audit chain"))?;
        let hash: Vec<u8> = r.bytes("hash")?;
        Ok(ChainHead {
            count: r.int("count")?,
            hash: ChainHash::from_slice(&hash).ok_or_else(|| StoreError::Corrupt("audit head hash".into()))?,
        })
    }

    async fn audit_events(&self, practice: PracticeId, after: i64, limit: i64) -> StoreResult<Vec<StoredEvent>> {
        query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_event WHERE practice_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(practice.as_uuid())
        .bind(after)
        .bind(limit)
        .fetch_all(self.read())
        .await?
        .iter()
        .map(rows::audit_event)
        .collect()
    }

    async fn audit_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
        limit: i64,
    ) -> StoreResult<Vec<StoredEvent>> {
        query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_event WHERE practice_id = $1 AND patient_id = $2 ORDER BY seq DESC LIMIT $3"
        ))
        .bind(practice.as_uuid())
        .bind(patient.to_string())
        .bind(limit)
        .fetch_all(self.read())
        .await?
        .iter()
        .map(rows::audit_event)
        .collect()
    }
}
