//! [`SarStore`] for both databases.

use super::{db, PostgresStore, SqliteStore};
use crate::rows::Cols;
use crate::sar::*;
use crate::{StoreError, StoreResult};
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
    })
}

macro_rules! sar_store {
    ($Store:ident) => {
        #[async_trait]
        impl SarStore for $Store {
            async fn create_sar(&self, practice: PracticeId, s: &SarRequest, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO sar_request (practice_id, id, patient_id, requester, relationship, received, waiting_for, \
                     identity_verified, clarified, manifestly_unfounded, fee_received, notes, status, extension_reason, \
                     extension_notified_on, closed_on, close_note, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
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
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn update_sar(&self, practice: PracticeId, s: &SarRequest, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
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
                .bind(s.id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("subject access request"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn sar(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<SarRequest>> {
                self.row_by("SELECT * FROM sar_request WHERE practice_id = $1 AND id = $2", practice, id, sar_row).await
            }

            async fn sars(&self, practice: PracticeId) -> StoreResult<Vec<(SarRequest, crate::PatientListing)>> {
                let rows = sqlx::query(
                    "SELECT s.*, p.id AS p_id, p.nhs_number, p.title, p.given_name, p.family_name, p.date_of_birth, p.sex, \
                     p.address_lines, p.postcode, p.date_of_death \
                     FROM sar_request s JOIN patient p ON p.practice_id = s.practice_id AND p.id = s.patient_id \
                     WHERE s.practice_id = $1 ORDER BY s.received DESC, s.id DESC",
                )
                .bind(practice.as_uuid())
                .fetch_all(self.read())
                .await
                .map_err(db)?;
                rows.iter().map(|r| Ok((sar_row(r)?, crate::rows::listing(r)?))).collect()
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
    };
}

sar_store!(SqliteStore);
sar_store!(PostgresStore);
