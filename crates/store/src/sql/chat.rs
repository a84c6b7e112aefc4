//! [`ChatStore`] for both databases.

use super::SqlStore;
use crate::chat::*;
use crate::db::query;
use crate::rows::Cols;
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{PatientId, PracticeId, StaffId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

fn message_row(r: &impl Cols) -> StoreResult<StaffMessage> {
    Ok(StaffMessage {
        id: r.uuid("id")?,
        sender: StaffId::from_uuid(r.uuid("sender_id")?),
        sender_name: r.text("sender_name")?,
        to_staff: r.opt_uuid("to_staff_id")?.map(StaffId::from_uuid),
        to_team: r.opt_text("to_team")?,
        body: r.text("body")?,
        patient: r.opt_uuid("patient_id")?.map(PatientId::from_uuid),
        sent_at: r.time("sent_at")?,
        deleted_at: r.opt_time("deleted_at")?,
        deleted_by: r.opt_text("deleted_by")?,
    })
}

#[async_trait]
impl ChatStore for SqlStore {
    async fn send_staff_message(&self, practice: PracticeId, m: &StaffMessage, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "INSERT INTO staff_message (practice_id, id, sender_id, sender_name, to_staff_id, to_team, body, patient_id, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(practice.as_uuid())
        .bind(m.id)
        .bind(m.sender.as_uuid())
        .bind(&m.sender_name)
        .bind(m.to_staff.map(|s| s.as_uuid()))
        .bind(&m.to_team)
        .bind(&m.body)
        .bind(m.patient.map(|p| p.as_uuid()))
        .bind(m.sent_at);
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn staff_message(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<StaffMessage>> {
        self.row_by("SELECT * FROM staff_message WHERE practice_id = $1 AND id = $2", practice, id, message_row).await
    }

    async fn staff_inbox(
        &self,
        practice: PracticeId,
        staff: StaffId,
        team: &str,
        limit: i64,
    ) -> StoreResult<Vec<(StaffMessage, bool)>> {
        let rows = query(
            "SELECT m.*, r.read_at AS read_at FROM staff_message m \
             LEFT JOIN staff_message_read r ON r.practice_id = m.practice_id AND r.message_id = m.id AND r.staff_id = $1 \
             WHERE m.practice_id = $2 AND m.deleted_at IS NULL \
             AND (m.sender_id = $1 OR m.to_staff_id = $1 OR m.to_team = $3 OR m.to_team = 'everyone') \
             ORDER BY m.sent_at DESC, m.id DESC LIMIT $4",
        )
        .bind(staff.as_uuid())
        .bind(practice.as_uuid())
        .bind(team.to_owned())
        .bind(limit)
        .fetch_all(self.read())
        .await?;
        rows.iter().map(|r| Ok((message_row(r)?, r.opt_time("read_at")?.is_some()))).collect()
    }

    async fn unread_staff_messages(&self, practice: PracticeId, staff: StaffId, team: &str) -> StoreResult<i64> {
        let r = query(
            "SELECT COUNT(*) AS n FROM staff_message m \
             WHERE m.practice_id = $1 AND m.deleted_at IS NULL AND m.sender_id <> $2 \
             AND (m.to_staff_id = $2 OR m.to_team = $3 OR m.to_team = 'everyone') \
             AND NOT EXISTS (SELECT 1 FROM staff_message_read r WHERE r.practice_id = m.practice_id \
             AND r.message_id = m.id AND r.staff_id = $2)",
        )
        .bind(practice.as_uuid())
        .bind(staff.as_uuid())
        .bind(team.to_owned())
        .fetch_one(self.read())
        .await?;
        r.int("n")
    }

    async fn mark_staff_message_read(
        &self,
        practice: PracticeId,
        id: Uuid,
        staff: StaffId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        // The first reading is kept; reading again (or twice at once) changes nothing.
        let q = query(
            "INSERT INTO staff_message_read (practice_id, message_id, staff_id, read_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (practice_id, message_id, staff_id) DO NOTHING",
        )
        .bind(practice.as_uuid())
        .bind(id)
        .bind(staff.as_uuid())
        .bind(at);
        self.execute_alone(q).await.map(drop)
    }

    async fn delete_staff_message(
        &self,
        practice: PracticeId,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE staff_message SET deleted_at = $1, deleted_by = $2 WHERE practice_id = $3 AND id = $4 AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(by.to_owned())
        .bind(practice.as_uuid())
        .bind(id);
        let missing = StoreError::refused("the message has already been deleted");
        self.change_one_audited_or(practice, q, missing, &[audit]).await
    }

    async fn staff_messages_naming(&self, practice: PracticeId, phrases: &[String]) -> StoreResult<Vec<StaffMessage>> {
        let phrases: Vec<String> = phrases
            .iter()
            .map(|p| p.trim().to_lowercase().replace(['\\', '%', '_'], ""))
            .filter(|p| p.chars().count() >= 5)
            .collect();
        if phrases.is_empty() {
            return Ok(Vec::new());
        }
        let tests: Vec<String> = (0..phrases.len()).map(|i| format!("LOWER(body) LIKE ${}", i + 2)).collect();
        let sql = format!(
            "SELECT * FROM staff_message WHERE practice_id = $1 AND ({}) ORDER BY sent_at, id",
            tests.join(" OR ")
        );
        let mut q = query(&sql).bind(practice.as_uuid());
        for p in &phrases {
            q = q.bind(format!("%{p}%"));
        }
        let rows = q.fetch_all(self.read()).await?;
        rows.iter().map(message_row).collect()
    }

    async fn staff_messages_about(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<StaffMessage>> {
        self.rows_by(
            "SELECT * FROM staff_message WHERE practice_id = $1 AND patient_id = $2 ORDER BY sent_at, id",
            practice,
            patient.as_uuid(),
            message_row,
        )
        .await
    }
}
