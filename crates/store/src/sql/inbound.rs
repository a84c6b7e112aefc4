//! [`InboundStore`] for both databases, written once like the rest of `sql`.

use super::SqlStore;
use crate::db::{query, Tx};
use crate::inbound::*;
use crate::rows::{corrupt, from_json, Cols};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::entry::Entry;
use caldicott_core::ids::{PatientId, PracticeId, TaskId};
use caldicott_core::tasks::Task;
use uuid::Uuid;

fn sender_row(r: &impl Cols) -> StoreResult<Sender> {
    Ok(Sender {
        id: r.uuid("id")?,
        ods_code: r.text("ods_code")?,
        name: r.text("name")?,
        client_id: r.text("client_id")?,
        secret_hash: r.bytes("secret_hash")?,
        active: r.flag("active")?,
        created_at: r.time("created_at")?,
    })
}

fn message_row(r: &impl Cols) -> StoreResult<InboundMessage> {
    let status = r.text("status")?;
    Ok(InboundMessage {
        id: r.uuid("id")?,
        message_id: r.text("message_id")?,
        sender_ods: r.text("sender_ods")?,
        via: r.text("via")?,
        received_at: r.time("received_at")?,
        status: InboundStatus::parse(&status).ok_or_else(|| corrupt("inbound status", &status))?,
        response_code: r.int("response_code")?,
        problems: from_json("inbound problems", &r.text("problems")?)?,
        payload: r.opt_text("payload")?.unwrap_or_default(),
        record: r.opt_text("record")?.map(|t| from_json("inbound record", &t)).transpose()?,
        items: r.opt_text("items")?.map(|t| from_json("inbound items", &t)).transpose()?.unwrap_or_default(),
        patient: r.opt_uuid("patient_id")?.map(PatientId::from_uuid),
        replaces: r.opt_uuid("replaces")?,
        superseded_by: r.opt_uuid("superseded_by")?,
        task: r.opt_uuid("task_id")?.map(TaskId::from_uuid),
        decided_at: r.opt_time("decided_at")?,
        decided_by: r.opt_text("decided_by")?,
        decision_note: r.opt_text("decision_note")?,
    })
}

/// What a queue shows of a message's record; the rest of it is skipped unread.
#[derive(serde::Deserialize)]
struct Brief {
    service: String,
    nhs_number: String,
    family_name: String,
    given_name: String,
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(e.to_string()))
}

/// Closes a task inside a transaction (only if it is still open); how many tasks it closed.
async fn close_task(tx: &mut Tx, practice: PracticeId, t: &Task) -> StoreResult<u64> {
    let done = query(
        "UPDATE task SET status = $1, body = $2, outcome = $3, closed_at = $4, closed_by = $5 \
         WHERE practice_id = $6 AND id = $7 AND status = 'open'",
    )
    .bind(t.status.as_str())
    .bind(to_json(&t.body)?)
    .bind(&t.outcome)
    .bind(t.closed_at)
    .bind(&t.closed_by)
    .bind(practice.as_uuid())
    .bind(t.id.as_uuid())
    .execute(tx)
    .await?;
    Ok(done.rows_affected())
}

#[async_trait]
impl InboundStore for SqlStore {
    async fn create_sender(&self, practice: PracticeId, s: &Sender, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "INSERT INTO update_record_sender (practice_id, id, ods_code, name, client_id, secret_hash, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(practice.as_uuid())
        .bind(s.id)
        .bind(&s.ods_code)
        .bind(&s.name)
        .bind(&s.client_id)
        .bind(&s.secret_hash)
        .bind(s.active)
        .bind(s.created_at);
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn senders(&self, practice: PracticeId) -> StoreResult<Vec<Sender>> {
        let rows = query("SELECT * FROM update_record_sender WHERE practice_id = $1 ORDER BY ods_code")
            .bind(practice.as_uuid())
            .fetch_all(self.read())
            .await?;
        rows.iter().map(sender_row).collect()
    }

    async fn sender_by_client_id(&self, client_id: &str) -> StoreResult<Option<(PracticeId, Sender)>> {
        let row = query("SELECT * FROM update_record_sender WHERE client_id = $1")
            .bind(client_id.to_owned())
            .fetch_optional(self.read())
            .await?;
        row.map(|r| Ok((PracticeId::from_uuid(r.uuid("practice_id")?), sender_row(&r)?))).transpose()
    }

    async fn sender_by_ods(&self, practice: PracticeId, ods: &str) -> StoreResult<Option<Sender>> {
        self.row_by(
            "SELECT * FROM update_record_sender WHERE practice_id = $1 AND ods_code = $2",
            practice,
            ods,
            sender_row,
        )
        .await
    }

    async fn inbound_by_message_id(
        &self,
        practice: PracticeId,
        message_id: &str,
    ) -> StoreResult<Option<InboundMessage>> {
        // Only an accepted message (20013) holds its id: one refused may be delivered again.
        self.row_by(
            "SELECT * FROM inbound_message WHERE practice_id = $1 AND message_id = $2 AND response_code = 20013",
            practice,
            message_id,
            message_row,
        )
        .await
    }

    async fn inbound_named(&self, practice: PracticeId, target: &str) -> StoreResult<Option<InboundMessage>> {
        self.row_by(
            "SELECT * FROM inbound_message WHERE practice_id = $1 AND response_code = 20013 \
             AND (message_id = $2 OR composition_identifier = $2 OR document_identifier = $2) \
             ORDER BY CASE WHEN message_id = $2 THEN 0 WHEN composition_identifier = $2 THEN 1 ELSE 2 END, \
             received_at DESC, id LIMIT 1",
            practice,
            target,
            message_row,
        )
        .await
    }

    async fn inbound(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<InboundMessage>> {
        self.row_by("SELECT * FROM inbound_message WHERE practice_id = $1 AND id = $2", practice, id, message_row).await
    }

    async fn record_inbound(
        &self,
        practice: PracticeId,
        m: &InboundMessage,
        task: Option<&Task>,
        earlier: Earlier<'_>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if let Some(t) = task {
            Self::insert_task(&mut tx, practice, t).await?;
        }
        query(
            "INSERT INTO inbound_message (practice_id, id, message_id, sender_ods, via, received_at, status, response_code, \
             problems, payload, record, items, patient_id, replaces, task_id, composition_identifier, \
             document_identifier) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(practice.as_uuid())
        .bind(m.id)
        .bind(&m.message_id)
        .bind(&m.sender_ods)
        .bind(&m.via)
        .bind(m.received_at)
        .bind(m.status.as_str())
        .bind(i32::try_from(m.response_code).unwrap_or(0))
        .bind(to_json(&m.problems)?)
        .bind(&m.payload)
        .bind(m.record.as_ref().map(to_json).transpose()?)
        .bind(m.record.as_ref().map(|_| to_json(&m.items)).transpose()?)
        .bind(m.patient.map(|p| p.as_uuid()))
        .bind(m.replaces)
        .bind(m.task.map(|t| t.as_uuid()))
        .bind(m.record.as_ref().and_then(|r| r.composition_identifier.clone()))
        .bind(m.record.as_ref().and_then(|r| r.document_identifier.clone()))
        .execute(&mut tx)
        .await?;
        match earlier {
            Earlier::None => {}
            Earlier::Supersede(old, closed) | Earlier::Void(old, closed) => {
                let status = if matches!(earlier, Earlier::Void(..)) { "void" } else { "superseded" };
                let q = query(
                    "UPDATE inbound_message SET status = $1, superseded_by = $2 \
                     WHERE practice_id = $3 AND id = $4 AND status IN ('pending', 'unmatched')",
                )
                .bind(status)
                .bind(m.id)
                .bind(practice.as_uuid())
                .bind(old);
                Self::change_one_in(&mut tx, q, StoreError::refused("the message it replaces is no longer waiting"))
                    .await?;
                close_task(&mut tx, practice, closed).await?;
            }
            Earlier::Link(old) => {
                // A replacement of a message already decided: the earlier one points on to it.
                query("UPDATE inbound_message SET superseded_by = $1 WHERE practice_id = $2 AND id = $3")
                    .bind(m.id)
                    .bind(practice.as_uuid())
                    .bind(old)
                    .execute(&mut tx)
                    .await?;
            }
        }
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn inbound_list(&self, practice: PracticeId, statuses: &[InboundStatus]) -> StoreResult<Vec<InboundListing>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        // The statuses are the enum's own words, never input: written into the query.
        let wanted = statuses.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
        let rows = query(&format!(
            "SELECT m.id, m.message_id, m.sender_ods, m.received_at, m.status, m.record, m.items, m.replaces, \
             p.given_name AS p_given, p.family_name AS p_family \
             FROM inbound_message m LEFT JOIN patient p ON p.practice_id = m.practice_id AND p.id = m.patient_id \
             WHERE m.practice_id = $1 AND m.status IN ({wanted}) ORDER BY m.received_at, m.id"
        ))
        .bind(practice.as_uuid())
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                let status = r.text("status")?;
                let brief: Option<Brief> =
                    r.opt_text("record")?.map(|t| from_json("inbound record", &t)).transpose()?;
                let items: Vec<serde::de::IgnoredAny> =
                    r.opt_text("items")?.map(|t| from_json("inbound items", &t)).transpose()?.unwrap_or_default();
                let (service, nhs, name) = match brief {
                    Some(b) => (
                        b.service,
                        b.nhs_number,
                        match (r.opt_text("p_family")?, r.opt_text("p_given")?) {
                            (Some(f), Some(g)) => format!("{}, {g}", f.to_uppercase()),
                            _ => format!("{}, {} (as sent)", b.family_name.to_uppercase(), b.given_name),
                        },
                    ),
                    None => (String::new(), String::new(), String::new()),
                };
                Ok(InboundListing {
                    id: r.uuid("id")?,
                    message_id: r.text("message_id")?,
                    sender_ods: r.text("sender_ods")?,
                    received_at: r.time("received_at")?,
                    status: InboundStatus::parse(&status).ok_or_else(|| corrupt("inbound status", &status))?,
                    service,
                    nhs_number: nhs,
                    patient_name: name,
                    items: items.len() as i64,
                    replaces: r.opt_uuid("replaces")?,
                })
            })
            .collect()
    }

    async fn amend_inbound(
        &self,
        practice: PracticeId,
        id: Uuid,
        a: &Amendment,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let items = to_json(&a.items)?;
        let q =
            query("UPDATE inbound_message SET items = $1 WHERE practice_id = $2 AND id = $3 AND status = 'pending'")
                .bind(&items)
                .bind(practice.as_uuid())
                .bind(id);
        Self::change_one_in(&mut tx, q, StoreError::refused("this message is no longer waiting for review")).await?;
        query(
            "INSERT INTO inbound_amendment (practice_id, id, inbound_id, at, by_name, change, items) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(practice.as_uuid())
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(a.at)
        .bind(&a.by)
        .bind(&a.change)
        .bind(&items)
        .execute(&mut tx)
        .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn amendments(&self, practice: PracticeId, id: Uuid) -> StoreResult<Vec<Amendment>> {
        self.rows_by(
            "SELECT * FROM inbound_amendment WHERE practice_id = $1 AND inbound_id = $2 ORDER BY at, id",
            practice,
            id,
            |r| {
                Ok(Amendment {
                    at: r.time("at")?,
                    by: r.text("by_name")?,
                    change: r.text("change")?,
                    items: from_json("amended items", &r.text("items")?)?,
                })
            },
        )
        .await
    }

    async fn match_inbound(
        &self,
        practice: PracticeId,
        id: Uuid,
        patient: PatientId,
        task: &Task,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let q = query(
            "UPDATE inbound_message SET status = 'pending', patient_id = $1, task_id = $2 \
             WHERE practice_id = $3 AND id = $4 AND status = 'unmatched'",
        )
        .bind(patient.as_uuid())
        .bind(task.id.as_uuid())
        .bind(practice.as_uuid())
        .bind(id);
        Self::change_one_in(&mut tx, q, StoreError::refused("this message is no longer waiting to be matched")).await?;
        Self::insert_task(&mut tx, practice, task).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn decide_inbound(
        &self,
        practice: PracticeId,
        id: Uuid,
        d: InboundDecision<'_>,
        entries: &[Entry],
        retire: Option<&Retire>,
        task: Option<&Task>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let q = query(
            "UPDATE inbound_message SET status = $1, decided_at = $2, decided_by = $3, decision_note = $4 \
             WHERE practice_id = $5 AND id = $6 \
               AND (status = 'pending' OR (status = 'unmatched' AND $1 = 'rejected'))",
        )
        .bind(d.status.as_str())
        .bind(d.at)
        .bind(d.by.to_owned())
        .bind(d.note.to_owned())
        .bind(practice.as_uuid())
        .bind(id);
        Self::change_one_in(&mut tx, q, StoreError::refused("this message is no longer waiting for review")).await?;
        for e in entries {
            Self::insert_entry(&mut tx, practice, e).await?;
            query("INSERT INTO inbound_entry (practice_id, inbound_id, entry_id) VALUES ($1, $2, $3)")
                .bind(practice.as_uuid())
                .bind(id)
                .bind(e.id.as_uuid())
                .execute(&mut tx)
                .await?;
        }
        let mut audits = vec![audit];
        if let Some(r) = retire {
            for entry in &r.entries {
                let q = query(
                    "UPDATE entry SET superseded_at = $1, superseded_note = $2 \
                     WHERE practice_id = $3 AND id = $4 AND superseded_at IS NULL",
                )
                .bind(r.at)
                .bind(&r.note)
                .bind(practice.as_uuid())
                .bind(*entry);
                Self::change_one_in(
                    &mut tx,
                    q,
                    StoreError::refused(format!("entry {entry} is missing or already superseded")),
                )
                .await?;
            }
            audits.extend(r.audits.iter());
        }
        if let Some(t) = task {
            close_task(&mut tx, practice, t).await?;
        }
        Self::commit_audited(tx, practice, &audits).await
    }

    async fn inbound_entries(&self, practice: PracticeId, id: Uuid) -> StoreResult<Vec<Uuid>> {
        self.rows_by(
            "SELECT entry_id FROM inbound_entry WHERE practice_id = $1 AND inbound_id = $2",
            practice,
            id,
            |r| r.uuid("entry_id"),
        )
        .await
    }

    async fn inbound_of_entry(&self, practice: PracticeId, entry: Uuid) -> StoreResult<Option<Uuid>> {
        self.row_by(
            "SELECT inbound_id FROM inbound_entry WHERE practice_id = $1 AND entry_id = $2",
            practice,
            entry,
            |r| r.uuid("inbound_id"),
        )
        .await
    }
}
