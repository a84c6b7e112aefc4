//! [`SarStore`] for both databases.

use super::SqlStore;
use crate::db::query;
use crate::rows::Cols;
use crate::sar::*;
use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{PatientId, PracticeId, StaffId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

fn sar_row(r: &impl Cols) -> StoreResult<SarRequest> {
    Ok(SarRequest {
        id: r.uuid("id")?,
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        requester: r.text("requester")?,
        relationship: r.text("relationship")?,
        received: r.date("received")?,
        waiting_for: r.opt_text("waiting_for")?,
        identity_verified: r.opt_date("identity_verified")?,
        clarified: r.opt_date("clarified")?,
        manifestly_unfounded: r.flag("manifestly_unfounded")?,
        fee_received: r.opt_date("fee_received")?,
        notes: r.text("notes")?,
        status: r.text("status")?,
        extension_reason: r.opt_text("extension_reason")?,
        extension_notified_on: r.opt_date("extension_notified_on")?,
        closed_on: r.opt_date("closed_on")?,
        close_note: r.opt_text("close_note")?,
        created_at: r.time("created_at")?,
        created_by: r.text("created_by")?,
        period_from: r.opt_date("period_from")?,
        period_to: r.opt_date("period_to")?,
        authority: r.opt_text("authority")?,
    })
}

fn decision_row(r: &impl Cols) -> StoreResult<SarDecision> {
    Ok(SarDecision {
        item_key: r.text("item_key")?,
        decision: r.text("decision")?,
        ground: r.opt_text("ground")?,
        reason: r.text("reason")?,
        decided_by: r.text("decided_by")?,
        decided_at: r.time("decided_at")?,
    })
}

fn release_row(r: &impl Cols) -> StoreResult<SarRelease> {
    Ok(SarRelease {
        id: r.uuid("id")?,
        sar: r.uuid("sar_id")?,
        released_at: r.time("released_at")?,
        released_by: r.text("released_by")?,
        format: r.text("format")?,
        sha256: r.text("sha256")?,
        bytes: r.int("bytes")?,
        items_released: r.int("items_released")?,
        items_withheld: r.int("items_withheld")?,
    })
}

fn export_job_row(r: &impl Cols) -> StoreResult<ExportJob> {
    let file = |prefix: &str| -> StoreResult<Option<ExportFileFacts>> {
        Ok(match (r.opt_text(&format!("{prefix}_sha256"))?, r.opt_int(&format!("{prefix}_bytes"))?) {
            (Some(sha256), Some(bytes)) => {
                Some(ExportFileFacts { sha256, bytes, taken: r.flag(&format!("{prefix}_taken"))? })
            }
            _ => None,
        })
    };
    Ok(ExportJob {
        id: r.uuid("id")?,
        sar: r.uuid("sar_id")?,
        staff: StaffId::from_uuid(r.uuid("staff_id")?),
        started_at: r.time("started_at")?,
        heartbeat_at: r.time("heartbeat_at")?,
        stage: r.text("stage")?,
        done: r.int("done")?,
        total: r.int("total")?,
        finished: r.flag("finished")?,
        failure: r.opt_text("failure")?,
        file_stem: r.opt_text("file_stem")?,
        released: r.int("released")?,
        withheld: r.int("withheld")?,
        pdf: file("pdf")?,
        bundle: file("bundle")?,
    })
}

/// The columns of an export job, without the files themselves.
const EXPORT_JOB_COLUMNS: &str = "id, sar_id, staff_id, started_at, heartbeat_at, stage, done, total, finished, \
     failure, file_stem, released, withheld, pdf_sha256, pdf_bytes, pdf_taken, bundle_sha256, bundle_bytes, bundle_taken";

#[async_trait]
impl SarStore for SqlStore {
    async fn create_export_job(&self, practice: PracticeId, j: &ExportJob) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        query(
            "INSERT INTO sar_export_job (practice_id, id, sar_id, staff_id, started_at, heartbeat_at, stage, done, \
             total, finished, released, withheld, pdf_taken, bundle_taken) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(practice.as_uuid())
        .bind(j.id)
        .bind(j.sar)
        .bind(j.staff.as_uuid())
        .bind(j.started_at)
        .bind(j.heartbeat_at)
        .bind(&j.stage)
        .bind(j.done)
        .bind(j.total)
        .bind(j.finished)
        .bind(j.released)
        .bind(j.withheld)
        .bind(false)
        .bind(false)
        .execute(&mut tx)
        .await?;
        tx.commit().await
    }

    async fn export_progress(
        &self,
        practice: PracticeId,
        id: Uuid,
        stage: &str,
        done: i64,
        total: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        query(
            "UPDATE sar_export_job SET stage = $1, done = $2, total = $3, heartbeat_at = $4 \
             WHERE practice_id = $5 AND id = $6 AND NOT finished",
        )
        .bind(stage)
        .bind(done)
        .bind(total)
        .bind(now)
        .bind(practice.as_uuid())
        .bind(id)
        .execute(&mut tx)
        .await?;
        tx.commit().await
    }

    async fn finish_export_job(
        &self,
        practice: PracticeId,
        id: Uuid,
        outcome: Result<ExportFiles<'_>, &str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        match outcome {
            Ok(f) => {
                query(
                    "UPDATE sar_export_job SET finished = $1, heartbeat_at = $2, stage = $3, file_stem = $4, \
                     released = $5, withheld = $6, pdf = $7, pdf_sha256 = $8, pdf_bytes = $9, bundle = $10, \
                     bundle_sha256 = $11, bundle_bytes = $12 WHERE practice_id = $13 AND id = $14",
                )
                .bind(true)
                .bind(now)
                .bind("Ready")
                .bind(f.file_stem)
                .bind(f.released)
                .bind(f.withheld)
                .bind(f.pdf)
                .bind(f.pdf_sha256)
                .bind(i64::try_from(f.pdf.len()).unwrap_or(i64::MAX))
                .bind(f.bundle)
                .bind(f.bundle_sha256)
                .bind(i64::try_from(f.bundle.len()).unwrap_or(i64::MAX))
                .bind(practice.as_uuid())
                .bind(id)
                .execute(&mut tx)
                .await?;
            }
            Err(why) => {
                query(
                    "UPDATE sar_export_job SET finished = $1, heartbeat_at = $2, failure = $3 \
                     WHERE practice_id = $4 AND id = $5",
                )
                .bind(true)
                .bind(now)
                .bind(why)
                .bind(practice.as_uuid())
                .bind(id)
                .execute(&mut tx)
                .await?;
            }
        }
        tx.commit().await
    }

    async fn export_job(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<ExportJob>> {
        query(&format!("SELECT {EXPORT_JOB_COLUMNS} FROM sar_export_job WHERE practice_id = $1 AND id = $2"))
            .bind(practice.as_uuid())
            .bind(id)
            .fetch_optional(self.read())
            .await?
            .map(|r| export_job_row(&r))
            .transpose()
    }

    async fn take_export_file(
        &self,
        practice: PracticeId,
        id: Uuid,
        staff: StaffId,
        which: ExportFile,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Vec<u8>>> {
        let file = match which {
            ExportFile::Pdf => "pdf",
            ExportFile::Bundle => "bundle",
        };
        let mut tx = self.begin().await?;
        // The claim comes first: on PostgreSQL it locks the row, so a second caller waits here
        // and then finds the file taken; SQLite has one writer at a time.
        let claimed = query(&format!(
            "UPDATE sar_export_job SET {file}_taken = $1 WHERE practice_id = $2 AND id = $3 AND staff_id = $4 \
             AND finished AND failure IS NULL AND NOT {file}_taken"
        ))
        .bind(true)
        .bind(practice.as_uuid())
        .bind(id)
        .bind(staff.as_uuid())
        .execute(&mut tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        let row = query(&format!("SELECT {file} FROM sar_export_job WHERE practice_id = $1 AND id = $2"))
            .bind(practice.as_uuid())
            .bind(id)
            .fetch_one(&mut tx)
            .await?;
        let bytes = row.opt_bytes(file)?.unwrap_or_default();
        query(&format!("UPDATE sar_export_job SET {file} = NULL WHERE practice_id = $1 AND id = $2"))
            .bind(practice.as_uuid())
            .bind(id)
            .execute(&mut tx)
            .await?;
        // Both files collected: nothing of the export is kept.
        query("DELETE FROM sar_export_job WHERE practice_id = $1 AND id = $2 AND pdf_taken AND bundle_taken")
            .bind(practice.as_uuid())
            .bind(id)
            .execute(&mut tx)
            .await?;
        Self::commit_audited(tx, practice, &[audit]).await?;
        Ok(Some(bytes))
    }

    async fn drop_export_jobs_before(&self, practice: PracticeId, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = query("DELETE FROM sar_export_job WHERE practice_id = $1 AND started_at < $2")
            .bind(practice.as_uuid())
            .bind(before)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn create_sar(&self, practice: PracticeId, s: &SarRequest, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "INSERT INTO sar_request (practice_id, id, patient_id, requester, relationship, received, waiting_for, \
             identity_verified, clarified, manifestly_unfounded, fee_received, notes, status, extension_reason, \
             extension_notified_on, closed_on, close_note, created_at, created_by, period_from, period_to, authority) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
        )
        .bind(practice.as_uuid())
        .bind(s.id)
        .bind(s.patient.as_uuid())
        .bind(&s.requester)
        .bind(&s.relationship)
        .bind(s.received)
        .bind(&s.waiting_for)
        .bind(s.identity_verified)
        .bind(s.clarified)
        .bind(s.manifestly_unfounded)
        .bind(s.fee_received)
        .bind(&s.notes)
        .bind(&s.status)
        .bind(&s.extension_reason)
        .bind(s.extension_notified_on)
        .bind(s.closed_on)
        .bind(&s.close_note)
        .bind(s.created_at)
        .bind(&s.created_by)
        .bind(s.period_from)
        .bind(s.period_to)
        .bind(&s.authority);
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn update_sar(&self, practice: PracticeId, s: &SarRequest, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "UPDATE sar_request SET waiting_for = $1, identity_verified = $2, clarified = $3, manifestly_unfounded = $4, \
             fee_received = $5, notes = $6, status = $7, extension_reason = $8, extension_notified_on = $9, \
             closed_on = $10, close_note = $11 WHERE practice_id = $12 AND id = $13",
        )
        .bind(&s.waiting_for)
        .bind(s.identity_verified)
        .bind(s.clarified)
        .bind(s.manifestly_unfounded)
        .bind(s.fee_received)
        .bind(&s.notes)
        .bind(&s.status)
        .bind(&s.extension_reason)
        .bind(s.extension_notified_on)
        .bind(s.closed_on)
        .bind(&s.close_note)
        .bind(practice.as_uuid())
        .bind(s.id);
        self.change_one_audited(practice, q, "subject access request", &[audit]).await
    }

    async fn sar(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<SarRequest>> {
        self.row_by("SELECT * FROM sar_request WHERE practice_id = $1 AND id = $2", practice, id, sar_row).await
    }

    async fn sars(&self, practice: PracticeId) -> StoreResult<Vec<(SarRequest, crate::PatientListing)>> {
        let rows = query(
            "SELECT s.*, p.id AS p_id, p.nhs_number, p.title, p.given_name, p.family_name, p.date_of_birth, p.sex, \
             p.address_lines, p.postcode, p.date_of_death \
             FROM sar_request s JOIN patient p ON p.practice_id = s.practice_id AND p.id = s.patient_id \
             WHERE s.practice_id = $1 ORDER BY s.received DESC, s.id DESC",
        )
        .bind(practice.as_uuid())
        .fetch_all(self.read())
        .await?;
        rows.iter().map(|r| Ok((sar_row(r)?, crate::rows::listing(r)?))).collect()
    }

    async fn set_sar_scope(&self, practice: PracticeId, s: &SarRequest, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "UPDATE sar_request SET period_from = $1, period_to = $2, authority = $3 WHERE practice_id = $4 AND id = $5",
        )
        .bind(s.period_from)
        .bind(s.period_to)
        .bind(&s.authority)
        .bind(practice.as_uuid())
        .bind(s.id);
        self.change_one_audited(practice, q, "subject access request", &[audit]).await
    }

    async fn sar_decisions(&self, practice: PracticeId, sar: Uuid) -> StoreResult<Vec<SarDecision>> {
        self.rows_by(
            "SELECT * FROM sar_decision WHERE practice_id = $1 AND sar_id = $2 ORDER BY item_key",
            practice,
            sar,
            decision_row,
        )
        .await
    }

    async fn record_sar_decisions(
        &self,
        practice: PracticeId,
        sar: Uuid,
        decisions: &[SarDecision],
        audit: &[AuditRecord],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for d in decisions {
            query(
                "INSERT INTO sar_decision (practice_id, sar_id, item_key, decision, ground, reason, decided_by, decided_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (practice_id, sar_id, item_key) DO UPDATE SET decision = excluded.decision, \
                 ground = excluded.ground, reason = excluded.reason, decided_by = excluded.decided_by, \
                 decided_at = excluded.decided_at",
            )
            .bind(practice.as_uuid())
            .bind(sar)
            .bind(&d.item_key)
            .bind(&d.decision)
            .bind(&d.ground)
            .bind(&d.reason)
            .bind(&d.decided_by)
            .bind(d.decided_at)
            .execute(&mut tx)
            .await?;
        }
        let audit: Vec<&AuditRecord> = audit.iter().collect();
        Self::commit_audited(tx, practice, &audit).await
    }

    async fn record_sar_release(
        &self,
        practice: PracticeId,
        releases: &[SarRelease],
        audit: &[AuditRecord],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for r in releases {
            query(
                "INSERT INTO sar_release (practice_id, id, sar_id, released_at, released_by, format, sha256, bytes, \
             items_released, items_withheld) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(practice.as_uuid())
            .bind(r.id)
            .bind(r.sar)
            .bind(r.released_at)
            .bind(&r.released_by)
            .bind(&r.format)
            .bind(&r.sha256)
            .bind(r.bytes)
            .bind(r.items_released)
            .bind(r.items_withheld)
            .execute(&mut tx)
            .await?;
        }
        let audit: Vec<&AuditRecord> = audit.iter().collect();
        Self::commit_audited(tx, practice, &audit).await
    }

    async fn sar_releases(&self, practice: PracticeId, sar: Uuid) -> StoreResult<Vec<SarRelease>> {
        self.rows_by(
            "SELECT * FROM sar_release WHERE practice_id = $1 AND sar_id = $2 ORDER BY released_at DESC",
            practice,
            sar,
            release_row,
        )
        .await
    }

    async fn sars_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<SarRequest>> {
        self.rows_by(
            "SELECT * FROM sar_request WHERE practice_id = $1 AND patient_id = $2 ORDER BY received DESC",
            practice,
            patient.as_uuid(),
            sar_row,
        )
        .await
    }
}
