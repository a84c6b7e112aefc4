//! [`SarStore`] for both databases.

use super::SqlStore;
use crate::db::query;
use crate::rows::Cols;
use crate::sar::*;
use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{PatientId, PracticeId};
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

#[async_trait]
impl SarStore for SqlStore {
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
