//! [`OutboxStore`] on both databases: messages to patients, sent once, with their delivery reports.

use super::*;
use async_trait::async_trait;

#[async_trait]
impl OutboxStore for SqlStore {
    async fn enqueue_message(&self, practice: PracticeId, m: &OutboundMessage, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_message(&mut tx, practice, m).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn enqueue_message_with_task(
        &self,
        practice: PracticeId,
        m: &OutboundMessage,
        task: Option<&Task>,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        if !Self::insert_message_once(&mut tx, practice, m).await? {
            // Sent already with this key (a form submitted twice): nothing is written.
            return Ok(false);
        }
        if let Some(t) = task {
            Self::insert_task(&mut tx, practice, t).await?;
        }
        Self::commit_audited(tx, practice, &[audit]).await?;
        Ok(true)
    }

    async fn claim_due_messages(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(PracticeId, OutboundMessage)>> {
        // The practices with work (one small table; on Citus a reference table), then each
        // practice's own messages (on Citus, its own shard).
        let practices = query("SELECT practice_id FROM outbox_wake WHERE due_at <= $1 ORDER BY due_at LIMIT $2")
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.read())
            .await?;
        let mut claimed = Vec::new();
        for p in practices {
            let room = (limit as usize).saturating_sub(claimed.len());
            if room == 0 {
                // The rest stay due and are found by the next pass.
                break;
            }
            let practice = p.uuid("practice_id")?;
            self.claim_in_practice(practice, now, lease_until, room, &mut claimed).await?;
            self.rearm_outbox(practice).await?;
        }
        Ok(claimed)
    }

    async fn fix_email_message_id(&self, practice: PracticeId, id: MessageId, candidate: &str) -> StoreResult<String> {
        let mut tx = self.begin().await?;
        query("UPDATE outbox SET email_message_id = COALESCE(email_message_id, $1) WHERE practice_id = $2 AND id = $3")
            .bind(candidate)
            .bind(practice.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut tx)
            .await?;
        let fixed: Option<String> = query("SELECT email_message_id FROM outbox WHERE practice_id = $1 AND id = $2")
            .bind(practice.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&mut tx)
            .await?
            .map(|r| r.opt_text("email_message_id"))
            .transpose()?
            .flatten();
        tx.commit().await?;
        fixed.ok_or(StoreError::NotFound("message"))
    }

    async fn finish_message(
        &self,
        practice: PracticeId,
        id: MessageId,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (status, provider, error, next, sent): (
            &str,
            Option<&str>,
            Option<&str>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
        ) = match outcome {
            DeliveryOutcome::Sent { provider_id } => ("sent", Some(provider_id), None, now, Some(now)),
            DeliveryOutcome::Delivered { provider_id } => ("delivered", Some(provider_id), None, now, Some(now)),
            DeliveryOutcome::Retry { error, next } => ("queued", None, Some(error), *next, None),
            DeliveryOutcome::Failed { error } => ("failed", None, Some(error), now, None),
        };
        let mut tx = self.begin().await?;
        let done = query(
            "UPDATE outbox SET status = $1, provider_id = COALESCE($2, provider_id), last_error = $3, next_attempt_at = $4, \
             sent_at = COALESCE($5, sent_at), lease_until = NULL WHERE practice_id = $6 AND id = $7 AND status = 'sending'",
        )
        .bind(status)
        .bind(provider)
        .bind(error)
        .bind(next)
        .bind(sent)
        .bind(practice.as_uuid())
        .bind(id.as_uuid())
        .execute(&mut tx)
        .await?;
        match (outcome, done.rows_affected()) {
            (DeliveryOutcome::Failed { error }, 1) => {
                Self::reopen_alert_of(&mut tx, practice, id.as_uuid(), error, now).await?
            }
            (DeliveryOutcome::Retry { next, .. }, 1) => Self::wake_outbox(&mut tx, practice, *next).await?,
            _ => {}
        }
        tx.commit().await
    }

    async fn apply_delivery_report(&self, provider_id: &str, status: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let fresh = query(
            "INSERT INTO outbox_callback (provider_id, status, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(provider_id)
        .bind(status)
        .bind(now)
        .execute(&mut tx)
        .await?;
        if fresh.rows_affected() == 0 {
            return Ok(false);
        }
        // Temporary and technical failures go back in the queue for another try in an hour
        // (R41); the worker gives up after its usual number of tries.
        let retry = Some(now + chrono::Duration::hours(1));
        let (new_status, error, next) = match status {
            "delivered" => ("delivered", None, None),
            "permanent-failure" => {
                ("failed", Some("the provider could not deliver it: check the address or number"), None)
            }
            "temporary-failure" => (
                "queued",
                Some("the provider could not deliver it for now (phone off or inbox full): trying again"),
                retry,
            ),
            "technical-failure" => ("queued", Some("the provider had a technical failure: trying again"), retry),
            _ => return tx.commit().await.map(|()| false),
        };
        let affected =
            query("SELECT practice_id, id FROM outbox WHERE provider_id = $1 AND status IN ('sent', 'delivered')")
                .bind(provider_id)
                .fetch_all(&mut tx)
                .await?;
        // Each message found is changed by its practice and id: on Citus, on its own shard.
        let mut changed = 0;
        for r in &affected {
            changed += query(
                "UPDATE outbox SET status = $1, last_error = $2, next_attempt_at = COALESCE($3, next_attempt_at) \
                 WHERE practice_id = $4 AND id = $5 AND status IN ('sent', 'delivered')",
            )
            .bind(new_status)
            .bind(error)
            .bind(next)
            .bind(r.uuid("practice_id")?)
            .bind(r.uuid("id")?)
            .execute(&mut tx)
            .await?
            .rows_affected();
        }
        if let (Some(next), "queued") = (next, new_status) {
            for r in &affected {
                Self::wake_outbox(&mut tx, PracticeId::from_uuid(r.uuid("practice_id")?), next).await?;
            }
        }
        if let (Some(error), "failed") = (error, new_status) {
            for r in &affected {
                Self::reopen_alert_of(
                    &mut tx,
                    PracticeId::from_uuid(r.uuid("practice_id")?),
                    r.uuid("id")?,
                    error,
                    now,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(changed > 0)
    }

    async fn messages_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<OutboundMessage>> {
        self.rows_by(
            "SELECT * FROM outbox WHERE practice_id = $1 AND patient_id = $2 ORDER BY created_at DESC",
            practice,
            patient.as_uuid(),
            rows::message,
        )
        .await
    }

    async fn failed_messages(
        &self,
        practice: PracticeId,
        limit: u32,
    ) -> StoreResult<Vec<(OutboundMessage, PatientListing)>> {
        query(
            "SELECT o.*, p.id AS p_id, p.nhs_number, p.title, p.given_name, p.family_name, p.date_of_birth, p.sex, \
             p.address_lines, p.postcode, p.date_of_death \
             FROM outbox o JOIN patient p ON p.practice_id = o.practice_id AND p.id = o.patient_id \
             WHERE o.practice_id = $1 AND o.status = 'failed' ORDER BY o.created_at DESC LIMIT $2",
        )
        .bind(practice.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?
        .iter()
        .map(|r| Ok((rows::message(r)?, rows::listing(r)?)))
        .collect()
    }

    async fn retry_message(
        &self,
        practice: PracticeId,
        id: MessageId,
        now: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE outbox SET status = 'queued', next_attempt_at = $1, attempts = 0, last_error = NULL \
             WHERE practice_id = $2 AND id = $3 AND status = 'failed'",
        )
        .bind(now)
        .bind(practice.as_uuid())
        .bind(id.as_uuid());
        let mut tx = self.begin().await?;
        Self::change_one_in(&mut tx, q, StoreError::refused("this message is not waiting for a retry")).await?;
        Self::wake_outbox(&mut tx, practice, now).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn presets(&self, practice: PracticeId) -> StoreResult<Vec<(PresetId, Preset)>> {
        query("SELECT id, name, body FROM message_preset WHERE practice_id = $1 ORDER BY name")
            .bind(practice.as_uuid())
            .fetch_all(self.read())
            .await?
            .iter()
            .map(|r| Ok((PresetId::from_uuid(r.uuid("id")?), Preset { name: r.text("name")?, body: r.text("body")? })))
            .collect()
    }

    async fn save_preset(
        &self,
        practice: PracticeId,
        p: &Preset,
        by: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let updated = query(
            "UPDATE message_preset SET body = $1, updated_at = $2, updated_by = $3 WHERE practice_id = $4 AND name = $5",
        )
        .bind(&p.body)
        .bind(at)
        .bind(by)
        .bind(practice.as_uuid())
        .bind(&p.name)
        .execute(&mut tx)
        .await?;
        if updated.rows_affected() == 0 {
            query(
                "INSERT INTO message_preset (practice_id, id, name, body, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(practice.as_uuid())
            .bind(uuid::Uuid::now_v7())
            .bind(&p.name)
            .bind(&p.body)
            .bind(at)
            .bind(by)
            .execute(&mut tx)
            .await?;
        }
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn set_contact(
        &self,
        practice: PracticeId,
        patient: PatientId,
        preferred: PreferredContactMethod,
        email: Option<&str>,
        mobile: Option<&str>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE patient SET preferred_contact = $1, email = $2, mobile = $3 WHERE practice_id = $4 AND id = $5",
        )
        .bind(preferred.code().map(i32::from))
        .bind(email)
        .bind(mobile)
        .bind(practice.as_uuid())
        .bind(patient.as_uuid());
        self.change_one_audited(practice, q, "patient", &[audit]).await
    }
}

impl SqlStore {
    /// Claims up to `room` of one practice's due messages, each in a transaction of its own (a
    /// claim another worker won first is passed over).
    async fn claim_in_practice(
        &self,
        practice: uuid::Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        room: usize,
        claimed: &mut Vec<(PracticeId, OutboundMessage)>,
    ) -> StoreResult<()> {
        let candidates = query(
            "SELECT id FROM outbox WHERE practice_id = $1 AND next_attempt_at <= $2 \
             AND (status = 'queued' OR (status = 'sending' AND lease_until < $2)) ORDER BY next_attempt_at LIMIT $3",
        )
        .bind(practice)
        .bind(now)
        .bind(i64::try_from(room).unwrap_or(i64::MAX))
        .fetch_all(self.read())
        .await?;
        for c in candidates {
            let id = c.uuid("id")?;
            // One statement claims it and reads it back; a message another worker claimed first
            // is not changed and comes back as nothing. It runs in a transaction of its own: a
            // worker stopped mid-claim (its task dropped) then leaves a rollback, not a
            // half-finished statement holding the row's lock on a pooled connection (on
            // PostgreSQL an interrupted statement stays an open implicit transaction, and every
            // later write of the message would wait on it).
            let mut tx = self.begin().await?;
            let won = query(
                "UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1, tries = tries + 1 \
                 WHERE practice_id = $2 AND id = $3 AND next_attempt_at <= $4 \
                 AND (status = 'queued' OR (status = 'sending' AND lease_until < $4)) RETURNING *",
            )
            .bind(lease_until)
            .bind(practice)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut tx)
            .await?;
            tx.commit().await?;
            if let Some(row) = won {
                claimed.push((PracticeId::from_uuid(practice), rows::message(&row)?));
            }
        }
        Ok(())
    }

    /// Sets when the practice's outbox next has work from the outbox itself (the earliest queued
    /// message, or claim that runs out), or takes the practice off the list when it has none.
    /// The practice's row is locked first, so that a message written meanwhile either is seen
    /// here or moves the time earlier after this (its write waits for the lock): no wake-up is
    /// lost. The time is written whether or not the row is there still (another worker may have
    /// taken it away after this pass read the list).
    async fn rearm_outbox(&self, practice: uuid::Uuid) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let lock = format!("SELECT due_at FROM outbox_wake WHERE practice_id = $1{}", tx.row_lock());
        query(&lock).bind(practice).fetch_optional(&mut tx).await?;
        let next = query(
            "SELECT MIN(CASE WHEN status = 'queued' THEN next_attempt_at ELSE lease_until END) AS next \
             FROM outbox WHERE practice_id = $1 AND status IN ('queued', 'sending')",
        )
        .bind(practice)
        .fetch_one(&mut tx)
        .await?
        .opt_time("next")?;
        match next {
            Some(at) => {
                query(
                    "INSERT INTO outbox_wake (practice_id, due_at) VALUES ($1, $2) \
                     ON CONFLICT (practice_id) DO UPDATE SET due_at = excluded.due_at",
                )
                .bind(practice)
                .bind(at)
                .execute(&mut tx)
                .await?
            }
            None => query("DELETE FROM outbox_wake WHERE practice_id = $1").bind(practice).execute(&mut tx).await?,
        };
        tx.commit().await
    }

    /// The practice's outbox has work at `at` (or earlier, if it already had), in `tx`.
    pub(crate) async fn wake_outbox(tx: &mut Tx, practice: PracticeId, at: DateTime<Utc>) -> StoreResult<()> {
        query(
            "INSERT INTO outbox_wake (practice_id, due_at) VALUES ($1, $2) ON CONFLICT (practice_id) \
             DO UPDATE SET due_at = CASE WHEN excluded.due_at < outbox_wake.due_at THEN excluded.due_at ELSE outbox_wake.due_at END",
        )
        .bind(practice.as_uuid())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
