//! [`TaskStore`] on both databases: the practice's work queue.

use super::*;
use async_trait::async_trait;

#[async_trait]
impl TaskStore for SqlStore {
    async fn create_task(&self, practice: PracticeId, t: &Task, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_task(&mut tx, practice, t).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn create_repeat_order(&self, practice: PracticeId, t: &Task, audit: &AuditRecord) -> StoreResult<()> {
        use caldicott_core::tasks::{ItemDecision, TaskBody, TaskKind};
        let templates = |t: &Task| match &t.body {
            TaskBody::Repeat { items, .. } => items
                .iter()
                .filter(|i| matches!(i.decision, ItemDecision::Pending))
                .map(|i| i.template)
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let asked = templates(t);
        let mut tx = self.begin().await?;
        let lock = format!("SELECT id FROM patient WHERE practice_id = $1 AND id = $2{}", tx.row_lock());
        query(&lock)
            .bind(practice.as_uuid())
            .bind(t.patient.as_uuid())
            .fetch_optional(&mut tx)
            .await?
            .ok_or(StoreError::NotFound("patient"))?;
        let open = query("SELECT * FROM task WHERE practice_id = $1 AND patient_id = $2 AND kind = $3 AND status = $4")
            .bind(practice.as_uuid())
            .bind(t.patient.as_uuid())
            .bind(TaskKind::RepeatRequest.as_str())
            .bind(TaskStatus::Open.as_str())
            .fetch_all(&mut tx)
            .await?;
        for row in &open {
            if templates(&rows::task(row)?).iter().any(|w| asked.contains(w)) {
                return Err(StoreError::refused(
                    "that medicine is already ordered and waiting for the practice's decision",
                ));
            }
        }
        Self::insert_task(&mut tx, practice, t).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn task(&self, practice: PracticeId, id: TaskId) -> StoreResult<Option<Task>> {
        self.row_by("SELECT * FROM task WHERE practice_id = $1 AND id = $2", practice, id.as_uuid(), rows::task).await
    }

    async fn tasks(
        &self,
        practice: PracticeId,
        status: TaskStatus,
        limit: u32,
    ) -> StoreResult<Vec<(Task, PatientListing)>> {
        query(
            "SELECT t.*, p.id AS p_id, p.nhs_number, p.title, p.given_name, p.family_name, p.date_of_birth, p.sex, \
             p.address_lines, p.postcode, p.date_of_death \
             FROM task t JOIN patient p ON p.practice_id = t.practice_id AND p.id = t.patient_id \
             WHERE t.practice_id = $1 AND t.status = $2 ORDER BY t.created_at, t.id LIMIT $3",
        )
        .bind(practice.as_uuid())
        .bind(status.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?
        .iter()
        .map(|r| Ok((rows::task(r)?, rows::listing(r)?)))
        .collect()
    }

    async fn count_open_tasks(
        &self,
        practice: PracticeId,
        kind: TaskKind,
        created_before: DateTime<Utc>,
    ) -> StoreResult<i64> {
        query("SELECT COUNT(*) AS n FROM task WHERE practice_id = $1 AND status = 'open' AND kind = $2 AND created_at < $3")
            .bind(practice.as_uuid())
            .bind(kind.as_str())
            .bind(created_before)
            .fetch_one(self.read())
            .await?
            .int("n")
    }

    async fn tasks_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<Task>> {
        self.rows_by(
            "SELECT * FROM task WHERE practice_id = $1 AND patient_id = $2 ORDER BY created_at DESC",
            practice,
            patient.as_uuid(),
            rows::task,
        )
        .await
    }

    async fn update_task(
        &self,
        practice: PracticeId,
        (read, t): (&caldicott_core::tasks::TaskBody, &Task),
        entries: &[Entry],
        message: Option<&OutboundMessage>,
        follow_up: Option<&Task>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let lock = format!("SELECT status, body FROM task WHERE practice_id = $1 AND id = $2{}", tx.row_lock());
        let held = query(&lock)
            .bind(practice.as_uuid())
            .bind(t.id.as_uuid())
            .fetch_optional(&mut tx)
            .await?
            .ok_or(StoreError::NotFound("task"))?;
        if held.text("status")? != "open" {
            return Err(StoreError::refused("this task has already been completed"));
        }
        // Compared as read back, not as text: a body written by an earlier version reads the same.
        if rows::from_json::<caldicott_core::tasks::TaskBody>("task body", &held.text("body")?)? != *read {
            return Err(StoreError::refused("this task was changed at the same moment: open it again"));
        }
        let q = query(
            "UPDATE task SET status = $1, body = $2, outcome = $3, closed_at = $4, closed_by = $5 \
             WHERE practice_id = $6 AND id = $7 AND status = 'open'",
        )
        .bind(t.status.as_str())
        .bind(json(&t.body)?)
        .bind(&t.outcome)
        .bind(t.closed_at)
        .bind(&t.closed_by)
        .bind(practice.as_uuid())
        .bind(t.id.as_uuid());
        Self::change_one_in(&mut tx, q, StoreError::refused("this task has already been completed")).await?;
        for e in entries {
            if e.patient != t.patient {
                return Err(StoreError::refused("an entry of a task belongs to another patient"));
            }
            Self::insert_entry(&mut tx, practice, e).await?;
        }
        if let Some(m) = message {
            if m.patient != t.patient {
                return Err(StoreError::refused("a task's message is for another patient"));
            }
            Self::insert_message(&mut tx, practice, m).await?;
        }
        if let Some(next) = follow_up {
            Self::insert_task(&mut tx, practice, next).await?;
        }
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn letter_posted(
        &self,
        practice: PracticeId,
        t: &Task,
        message: MessageId,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let q = query(
            "UPDATE task SET status = $1, outcome = $2, closed_at = $3, closed_by = $4 WHERE practice_id = $5 AND id = $6 AND status = 'open'",
        )
        .bind(t.status.as_str())
        .bind(&t.outcome)
        .bind(t.closed_at)
        .bind(&t.closed_by)
        .bind(practice.as_uuid())
        .bind(t.id.as_uuid());
        Self::change_one_in(&mut tx, q, StoreError::refused("this letter has already been posted")).await?;
        query(
            "UPDATE outbox SET status = 'sent', sent_at = $1, provider_id = 'posted by the practice' \
             WHERE practice_id = $2 AND id = $3 AND status = 'printing'",
        )
        .bind(t.closed_at)
        .bind(practice.as_uuid())
        .bind(message.as_uuid())
        .execute(&mut tx)
        .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn nominated_pharmacy(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Option<(String, String)>> {
        self.row_by(
            "SELECT ods_code, name FROM nominated_pharmacy WHERE practice_id = $1 AND patient_id = $2",
            practice,
            patient.as_uuid(),
            |r| Ok((r.text("ods_code")?, r.text("name")?)),
        )
        .await
    }

    async fn set_nominated_pharmacy(
        &self,
        practice: PracticeId,
        patient: PatientId,
        pharmacy: Option<(&str, &str)>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        query("DELETE FROM nominated_pharmacy WHERE practice_id = $1 AND patient_id = $2")
            .bind(practice.as_uuid())
            .bind(patient.as_uuid())
            .execute(&mut tx)
            .await?;
        if let Some((ods, name)) = pharmacy {
            query("INSERT INTO nominated_pharmacy (practice_id, patient_id, ods_code, name) VALUES ($1, $2, $3, $4)")
                .bind(practice.as_uuid())
                .bind(patient.as_uuid())
                .bind(ods)
                .bind(name)
                .execute(&mut tx)
                .await?;
        }
        Self::commit_audited(tx, practice, &[audit]).await
    }
}
