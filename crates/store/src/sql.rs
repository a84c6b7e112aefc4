//! The SQL implementations. One body of code, written once in `sql_store!`, serves both
//! databases: queries use `$n` placeholders in order of first use (which SQLite reads as named
//! parameters), and every value is bound as a type both drivers encode (UUID, chrono dates and
//! times, text, integers, booleans, bytes). Only the schema (see `migrations/`) and connection
//! setup differ.

use crate::migrate::{self, Migration};
use crate::rows::{self, corrupt, Cols};
use crate::*;
use caldicott_core::access::*;
use caldicott_core::audit::{seal, ChainHash, ChainHead, StoredEvent};
use caldicott_core::entry::*;
use caldicott_core::messages::*;
use caldicott_core::online::{AppLink, PatientApp};
use caldicott_core::patient::*;
use caldicott_core::practice::*;
use caldicott_core::snomed::{ENHANCED_REVIEW_INDICATED, ENHANCED_REVIEW_NOT_INDICATED};
use caldicott_core::staff::*;
use caldicott_core::tasks::TaskKind;
use caldicott_core::NhsNumber;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

mod chat;
mod documents;
mod fhir;
mod governance;
mod inbound;
mod sar;

/// Maps a driver error to a domain error, in one place.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) => match d.kind() {
            sqlx::error::ErrorKind::UniqueViolation => StoreError::Conflict(d.message().to_owned()),
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                StoreError::Conflict(format!("refers to something that does not exist: {}", d.message()))
            }
            _ => StoreError::Database(d.message().to_owned()),
        },
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(e.to_string()))
}

fn origin_columns(o: &Origin) -> (&'static str, Option<&str>) {
    match o {
        Origin::Native => ("native", None),
        Origin::TransferredIn { from_ods } => ("transferred_in", Some(from_ods)),
        Origin::Inbound { sender_ods } => ("inbound", Some(sender_ods)),
    }
}

/// The four columns that hold an entry's online visibility: reason, note, by, at.
type VisibilityColumns<'a> = (Option<&'static str>, Option<&'a str>, Option<&'a str>, Option<DateTime<Utc>>);

fn visibility_columns(v: &OnlineVisibility) -> VisibilityColumns<'_> {
    match v {
        OnlineVisibility::Visible => (None, None, None, None),
        OnlineVisibility::Hidden(r) => (Some(r.reason().as_str()), Some(r.note()), Some(r.by()), Some(r.at())),
    }
}

fn proxy_status_columns(s: &ProxyStatus) -> (&'static str, Option<NaiveDate>, Option<&str>) {
    match s {
        ProxyStatus::Active => ("active", None, None),
        ProxyStatus::Suspended { since, reason } => ("suspended", Some(*since), Some(reason)),
        ProxyStatus::Revoked { on, reason } => ("revoked", Some(*on), Some(reason)),
        ProxyStatus::Refused { on, reason } => ("refused", Some(*on), Some(reason)),
    }
}

pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

pub(crate) const ENTRY_COLUMNS: &str =
    "id, patient_id, kind, event_date, entered_at, author_staff_id, author_name, origin, \
    origin_ods, code, term, body, hidden_reason, hidden_note, hidden_by, hidden_at, nopat, safeguarding, confidential, \
    superseded_at, superseded_note";

const PROXY_COLUMNS: &str =
    "id, patient_id, proxy_id, relationship, basis, appointments, prescriptions, demographics, \
    record_level, record_from, granted_on, decided_by, ends_on, status, status_since, status_reason";

const AUDIT_COLUMNS: &str =
    "practice_id, seq, id, at, actor_kind, actor_id, actor_role, patient_id, action, entity, outcome, detail, client_addr, prev_hash, hash";

macro_rules! patient_sql {
    ($tail:literal) => {
        concat!(
            "SELECT p.*, r.kind AS r_kind, r.started AS r_started, r.ended AS r_ended, ",
            "r.previous_practice AS r_previous_practice ",
            "FROM patient p LEFT JOIN registration r ON r.practice_id = p.practice_id AND r.patient_id = p.id ",
            $tail
        )
    };
}

/// A session and its member of staff; the session's columns are prefixed `s_`.
const SESSION_AND_STAFF: &str = "SELECT x.id AS s_id, x.staff_id AS s_staff_id, x.secret_hash AS s_secret_hash, \
     x.csrf_token AS s_csrf_token, x.stage AS s_stage, x.created_at AS s_created_at, x.last_seen_at AS s_last_seen_at, \
     x.expires_at AS s_expires_at, x.ended_at AS s_ended_at, s.* \
     FROM staff_session x JOIN staff s ON s.practice_id = x.practice_id AND s.id = x.staff_id \
     WHERE x.practice_id = $1 AND x.id = $2";

pub(crate) const PRACTICE_BY_ID: &str = "SELECT * FROM practice WHERE id = $1";

pub(crate) const TOKEN_AND_STAFF: &str =
    "SELECT t.staff_id, t.label, t.secret_hash, t.created_at AS token_created_at, t.expires_at, t.revoked_at, s.* \
     FROM api_token t JOIN staff s ON s.practice_id = t.practice_id AND s.id = t.staff_id \
     WHERE t.practice_id = $1 AND t.id = $2";

/// The patient row joined with its registrations, oldest first.
pub(crate) const PATIENT_BY_ID: &str = patient_sql!("WHERE p.practice_id = $1 AND p.id = $2 ORDER BY r.position");
pub(crate) const PATIENT_BY_NHS_NUMBER: &str =
    patient_sql!("WHERE p.practice_id = $1 AND p.nhs_number = $2 ORDER BY r.position");

/// All access facts of one patient in one round trip: the settings row, the grants, the 104/106
/// codes and the patient's own accounts, as one UNION tagged by `src`. The first branch casts its
/// NULLs so that PostgreSQL can type the columns.
pub(crate) const ACCESS_FACTS: &str = "SELECT 's' AS src, own_level AS level, transfer_hold_since AS from_date, \
            own_level_set_on AS granted_on, own_level_set_by AS granted_by, \
            opted_out AS flag, CAST(NULL AS TIMESTAMPTZ) AS entered_at \
       FROM access_setting WHERE practice_id = $1 AND patient_id = $2 \
     UNION ALL \
     SELECT 'g', level, from_date, granted_on, granted_by, NULL, NULL \
       FROM access_grant WHERE practice_id = $1 AND patient_id = $2 \
     UNION ALL \
     SELECT 'c', code, NULL, NULL, NULL, NULL, entered_at \
       FROM entry WHERE practice_id = $1 AND patient_id = $2 AND code IN ($3, $4) \
     UNION ALL \
     SELECT 'a', identity_level, NULL, NULL, NULL, NULL, NULL \
       FROM online_account WHERE practice_id = $1 AND holder_id = $2 \
     UNION ALL \
     SELECT 'i', NULL, NULL, NULL, NULL, NULL, imported_at \
       FROM record_import WHERE practice_id = $1 AND patient_id = $2";

/// A page of a patient's entries, newest first, after an optional cursor, in an optional section.
/// Parameters: practice, patient, [cursor date, time, id], [kinds …], limit.
pub(crate) fn entries_sql(q: &EntryQuery) -> String {
    let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM entry WHERE practice_id = $1 AND patient_id = $2");
    let mut next = 3;
    if q.after.is_some() {
        sql.push_str(
            " AND (event_date < $3 OR (event_date = $3 AND (entered_at < $4 OR (entered_at = $4 AND id < $5))))",
        );
        next = 6;
    }
    let kinds = q.section.map(|s| s.kinds()).unwrap_or(&[]);
    if !kinds.is_empty() {
        sql.push_str(&format!(" AND kind IN ({})", placeholders(next, kinds.len())));
        next += kinds.len();
    }
    sql.push_str(&format!(" ORDER BY event_date DESC, entered_at DESC, id DESC LIMIT ${next}"));
    sql
}

/// The columns of a slot joined with a booking (`a`), as `rows::slot_and_booking` and
/// `rows::appointment_and_slot` read them.
macro_rules! slot_booking_columns {
    () => {
        "SELECT s.*, a.id AS a_id, a.patient_id, a.booked_at, a.booked_by, a.cancelled_at, a.cancelled_by"
    };
}

macro_rules! sql_store {
    ($Store:ident, $DB:ty, lock = $lock:literal) => {
        impl $Store {
            /// Rows of `sql`, whose two parameters are the practice and one id, mapped by `map`.
            async fn rows_by<T>(
                &self,
                sql: &str,
                practice: PracticeId,
                id: Uuid,
                map: impl Fn(&<$DB as sqlx::Database>::Row) -> StoreResult<T>,
            ) -> StoreResult<Vec<T>> {
                sqlx::query(sql)
                    .bind(practice.as_uuid())
                    .bind(id)
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(map)
                    .collect()
            }

            /// The one row of `sql` (practice and id), if there is one.
            async fn row_by<T>(
                &self,
                sql: &str,
                practice: PracticeId,
                id: Uuid,
                map: impl Fn(&<$DB as sqlx::Database>::Row) -> StoreResult<T>,
            ) -> StoreResult<Option<T>> {
                Ok(self.rows_by(sql, practice, id, map).await?.into_iter().next())
            }

            /// Sets a member of staff's password hash and ends every session of theirs but `keep`.
            async fn put_staff_password(
                tx: &mut sqlx::Transaction<'static, $DB>,
                practice: PracticeId,
                staff: StaffId,
                password_hash: &str,
                keep: Option<SessionId>,
                at: DateTime<Utc>,
            ) -> StoreResult<()> {
                let done = sqlx::query("UPDATE staff SET password_hash = $1 WHERE practice_id = $2 AND id = $3")
                    .bind(password_hash)
                    .bind(practice.as_uuid())
                    .bind(staff.as_uuid())
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("staff member"));
                }
                sqlx::query(
                    "UPDATE staff_session SET ended_at = $1 WHERE practice_id = $2 AND staff_id = $3 \
                     AND ended_at IS NULL AND id <> $4",
                )
                .bind(at)
                .bind(practice.as_uuid())
                .bind(staff.as_uuid())
                .bind(keep.map_or(Uuid::nil(), |k| k.as_uuid()))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(())
            }

            /// Sets a patient login's password hash and ends every session of the account but `keep`.
            async fn put_patient_password(
                tx: &mut sqlx::Transaction<'static, $DB>,
                practice: PracticeId,
                account: AccountId,
                password_hash: &str,
                keep: Option<SessionId>,
                at: DateTime<Utc>,
            ) -> StoreResult<()> {
                let done = sqlx::query("UPDATE patient_login SET password_hash = $1 WHERE practice_id = $2 AND account_id = $3")
                    .bind(password_hash)
                    .bind(practice.as_uuid())
                    .bind(account.as_uuid())
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("patient login"));
                }
                sqlx::query(
                    "UPDATE patient_session SET ended_at = $1 WHERE practice_id = $2 AND account_id = $3 \
                     AND ended_at IS NULL AND id <> $4",
                )
                .bind(at)
                .bind(practice.as_uuid())
                .bind(account.as_uuid())
                .bind(keep.map_or(Uuid::nil(), |k| k.as_uuid()))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(())
            }

            /// Appends records to one practice's chain inside `tx`.
            async fn append_in(
                tx: &mut sqlx::Transaction<'static, $DB>,
                practice: PracticeId,
                records: &[&AuditRecord],
            ) -> StoreResult<()> {
                let row = sqlx::query(concat!("SELECT count, hash FROM audit_head WHERE practice_id = $1", $lock))
                    .bind(practice.as_uuid())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db)?
                    .ok_or(StoreError::NotFound("practice audit chain"))?;
                let hash: Vec<u8> = row.try_get("hash").map_err(db)?;
                let mut head = ChainHead {
                    count: row.try_get("count").map_err(db)?,
                    hash: ChainHash::from_slice(&hash).ok_or_else(|| StoreError::Corrupt("audit head hash".into()))?,
                };
                let mut sealed = Vec::with_capacity(records.len());
                let here = crate::client::current();
                for record in records {
                    // An event written for a request records where the request came from.
                    let stamped;
                    let record = if record.client.is_none() && here.is_some() {
                        stamped = AuditRecord { client: here, ..(*record).clone() };
                        &stamped
                    } else {
                        *record
                    };
                    let (e, next) = seal(practice, head, record);
                    sealed.push(e);
                    head = next;
                }
                // One multi-row INSERT per chunk: a batch costs one round trip, not one per event.
                for chunk in sealed.chunks(200) {
                    let mut sql = String::from(
                        "INSERT INTO audit_event (practice_id, seq, id, at, actor_kind, actor_id, actor_role, patient_id, \
                         action, entity, outcome, detail, client_addr, prev_hash, hash) VALUES ",
                    );
                    for i in 0..chunk.len() {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push('(');
                        sql.push_str(&placeholders(i * 15 + 1, 15));
                        sql.push(')');
                    }
                    let mut q = sqlx::query(&sql);
                    for e in chunk {
                        q = q
                            .bind(practice.as_uuid())
                            .bind(e.seq)
                            .bind(&e.id)
                            .bind(e.at)
                            .bind(&e.actor_kind)
                            .bind(&e.actor_id)
                            .bind(&e.actor_role)
                            .bind(&e.patient)
                            .bind(&e.action)
                            .bind(&e.entity)
                            .bind(&e.outcome)
                            .bind(&e.detail)
                            .bind(&e.client)
                            .bind(&e.prev_hash)
                            .bind(&e.hash);
                    }
                    q.execute(&mut **tx).await.map_err(db)?;
                }
                sqlx::query("UPDATE audit_head SET count = $1, hash = $2 WHERE practice_id = $3")
                    .bind(head.count)
                    .bind(head.hash.0.to_vec())
                    .bind(practice.as_uuid())
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn insert_patient(tx: &mut sqlx::Transaction<'static, $DB>, practice: PracticeId, p: &Patient) -> StoreResult<()> {
                if p.practice != practice {
                    return Err(StoreError::Conflict("the patient belongs to another practice".into()));
                }
                sqlx::query(
                    "INSERT INTO patient (practice_id, id, nhs_number, title, given_name, family_name, date_of_birth, sex, \
                     email, mobile, address_lines, postcode, preferred_contact, date_of_death, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(practice.as_uuid())
                .bind(p.id.as_uuid())
                .bind(p.nhs_number.as_str())
                .bind(&p.name.title)
                .bind(&p.name.given)
                .bind(&p.name.family)
                .bind(p.date_of_birth)
                .bind(p.sex.as_str())
                .bind(&p.contact.email)
                .bind(&p.contact.mobile)
                .bind(json(&p.contact.address.lines)?)
                .bind(&p.contact.address.postcode)
                .bind(p.preferred_contact.code().map(i32::from))
                .bind(p.date_of_death)
                .bind(Utc::now())
                .execute(&mut **tx)
                .await
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!(
                        "a patient with NHS number {} is already registered at this practice",
                        p.nhs_number
                    )),
                    other => other,
                })?;
                for (i, r) in p.registrations.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO registration (practice_id, patient_id, position, kind, started, ended, previous_practice) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(practice.as_uuid())
                    .bind(p.id.as_uuid())
                    .bind(i32::try_from(i).unwrap_or(i32::MAX))
                    .bind(r.kind.as_str())
                    .bind(r.started)
                    .bind(r.ended)
                    .bind(&r.previous_practice)
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                }
                sqlx::query("INSERT INTO access_setting (practice_id, patient_id, opted_out) VALUES ($1, $2, $3)")
                    .bind(practice.as_uuid())
                    .bind(p.id.as_uuid())
                    .bind(false)
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn write_access(
                tx: &mut sqlx::Transaction<'static, $DB>,
                practice: PracticeId,
                patient: PatientId,
                s: &OnlineAccessSettings,
            ) -> StoreResult<()> {
                let own = s.own_level.as_ref();
                let updated = sqlx::query(
                    "UPDATE access_setting SET opted_out = $1, own_level = $4, own_level_set_on = $5, \
                     own_level_set_by = $6, transfer_hold_since = $7 WHERE practice_id = $2 AND patient_id = $3",
                )
                    .bind(s.opted_out)
                    .bind(practice.as_uuid())
                    .bind(patient.as_uuid())
                    .bind(own.map(|o| o.level.as_str()))
                    .bind(own.map(|o| o.set_on))
                    .bind(own.map(|o| o.set_by.as_str()))
                    .bind(s.transfer_review_pending)
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound("patient"));
                }
                sqlx::query("DELETE FROM access_grant WHERE practice_id = $1 AND patient_id = $2")
                    .bind(practice.as_uuid())
                    .bind(patient.as_uuid())
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                for g in &s.grants {
                    let from = match g.from {
                        RecordFrom::Beginning => None,
                        RecordFrom::Date(d) => Some(d),
                    };
                    sqlx::query(
                        "INSERT INTO access_grant (practice_id, patient_id, level, from_date, granted_on, granted_by) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(practice.as_uuid())
                    .bind(patient.as_uuid())
                    .bind(g.level.as_str())
                    .bind(from)
                    .bind(g.granted_on)
                    .bind(&g.granted_by)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| match db(e) {
                        StoreError::Conflict(_) => {
                            StoreError::Conflict(format!("two grants for the {} level", g.level.as_str()))
                        }
                        other => other,
                    })?;
                }
                Ok(())
            }

            async fn insert_account(tx: &mut sqlx::Transaction<'static, $DB>, practice: PracticeId, a: &OnlineAccount) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO online_account (practice_id, id, holder_id, kind, identity_level, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(practice.as_uuid())
                .bind(a.id.as_uuid())
                .bind(a.holder.as_uuid())
                .bind(a.kind.as_str())
                .bind(a.identity.as_str())
                .bind(a.created_at)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(())
            }

            /// The file of a document entry, inserted with it.
            async fn insert_file(
                tx: &mut sqlx::Transaction<'static, $DB>,
                practice: PracticeId,
                entry: EntryId,
                f: &crate::documents::StoredFile,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO document_file (practice_id, entry_id, content_type, filename, size, sha1, content) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(practice.as_uuid())
                .bind(entry.as_uuid())
                .bind(&f.info.content_type)
                .bind(&f.info.filename)
                .bind(i64::try_from(f.info.size).map_err(|_| StoreError::Conflict("the file is too large".into()))?)
                .bind(f.info.sha1.to_vec())
                .bind(&f.content)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn insert_entry(tx: &mut sqlx::Transaction<'static, $DB>, practice: PracticeId, e: &Entry) -> StoreResult<()> {
                let (origin, origin_ods) = origin_columns(&e.origin);
                let (reason, note, by, at) = visibility_columns(&e.visibility);
                sqlx::query(
                    "INSERT INTO entry (practice_id, id, patient_id, kind, event_date, entered_at, author_staff_id, author_name, \
                     origin, origin_ods, code, term, body, hidden_reason, hidden_note, hidden_by, hidden_at, nopat, \
                     safeguarding, confidential, awaiting_filing, superseded_at, superseded_note) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
                     $22, $23)",
                )
                .bind(practice.as_uuid())
                .bind(e.id.as_uuid())
                .bind(e.patient.as_uuid())
                .bind(e.kind().as_str())
                .bind(e.event_date)
                .bind(e.entered_at)
                .bind(e.author.staff.map(|s| s.as_uuid()))
                .bind(&e.author.name)
                .bind(origin)
                .bind(origin_ods)
                .bind(e.code.as_ref().map(|c| c.concept.as_str()))
                .bind(e.code.as_ref().map(|c| c.term.as_str()))
                .bind(json(&e.body)?)
                .bind(reason)
                .bind(note)
                .bind(by)
                .bind(at)
                .bind(e.nopat)
                .bind(e.safeguarding)
                .bind(e.confidential)
                .bind(e.awaits_filing())
                .bind(e.superseded.as_ref().map(|x| x.at))
                .bind(e.superseded.as_ref().map(|x| x.note.clone()))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn insert_session(tx: &mut sqlx::Transaction<'static, $DB>, practice: PracticeId, x: &StaffSession) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO staff_session (practice_id, id, staff_id, secret_hash, csrf_token, stage, created_at, \
                     last_seen_at, expires_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(practice.as_uuid())
                .bind(x.id.as_uuid())
                .bind(x.staff.as_uuid())
                .bind(x.secret_hash.to_vec())
                .bind(&x.csrf_token)
                .bind(x.stage.as_str())
                .bind(x.created_at)
                .bind(x.last_seen_at)
                .bind(x.expires_at)
                .bind(x.ended_at)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn insert_task(tx: &mut sqlx::Transaction<'static, $DB>, practice: PracticeId, t: &Task) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO task (practice_id, id, patient_id, kind, status, created_at, requested_by, body, outcome, closed_at, closed_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(practice.as_uuid())
                .bind(t.id.as_uuid())
                .bind(t.patient.as_uuid())
                .bind(t.kind.as_str())
                .bind(t.status.as_str())
                .bind(t.created_at)
                .bind(&t.requested_by)
                .bind(json(&t.body)?)
                .bind(&t.outcome)
                .bind(t.closed_at)
                .bind(&t.closed_by)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn insert_message(tx: &mut sqlx::Transaction<'static, $DB>, practice: PracticeId, m: &OutboundMessage) -> StoreResult<()> {
                if Self::insert_message_once(tx, practice, m).await? {
                    Ok(())
                } else {
                    Err(StoreError::Conflict("a message with this idempotency key is already in the outbox".into()))
                }
            }

            /// Writes a message unless one with its idempotency key is already there; returns
            /// whether it was written.
            async fn insert_message_once(tx: &mut sqlx::Transaction<'static, $DB>, practice: PracticeId, m: &OutboundMessage) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO outbox (practice_id, id, patient_id, purpose, channel, recipient, subject, body, idempotency_key, status, \
                     attempts, next_attempt_at, fragments, cost_hundredths, created_at, task_id, tries, email_message_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                     ON CONFLICT (practice_id, idempotency_key) DO NOTHING",
                )
                .bind(practice.as_uuid())
                .bind(m.id.as_uuid())
                .bind(m.patient.as_uuid())
                .bind(&m.purpose)
                .bind(m.channel.as_str())
                .bind(&m.recipient)
                .bind(&m.subject)
                .bind(&m.body)
                .bind(&m.idempotency_key)
                .bind(m.status.as_str())
                .bind(i32::try_from(m.attempts).unwrap_or(0))
                .bind(m.next_attempt_at)
                .bind(i32::try_from(m.fragments).unwrap_or(i32::MAX))
                .bind(m.cost_hundredths)
                .bind(m.created_at)
                .bind(m.task.map(|t| t.as_uuid()))
                .bind(i32::try_from(m.tries).unwrap_or(0))
                .bind(&m.email_message_id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(done.rows_affected() == 1)
            }

            /// A message failed for good: if it is the latest message of an alert task that is
            /// done, the task opens again with the reason, audited in the same transaction (R23).
            async fn reopen_alert_of(
                tx: &mut sqlx::Transaction<'static, $DB>,
                practice: PracticeId,
                message: Uuid,
                error: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<()> {
                let Some(row) = sqlx::query(
                    "SELECT task_id, patient_id, channel, created_at FROM outbox WHERE practice_id = $1 AND id = $2 AND task_id IS NOT NULL",
                )
                .bind(practice.as_uuid())
                .bind(message)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?
                else {
                    return Ok(());
                };
                let task = row.uuid("task_id")?;
                let patient = row.uuid("patient_id")?;
                let channel = Channel::parse(&row.text("channel")?).ok_or_else(|| corrupt("channel", "unknown"))?;
                let created: DateTime<Utc> = row.time("created_at")?;
                let reopened = sqlx::query(
                    "UPDATE task SET status = 'open', outcome = $1, closed_at = NULL, closed_by = NULL \
                     WHERE practice_id = $2 AND id = $3 AND status = 'done' \
                     AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.practice_id = $2 AND o.task_id = $3 AND o.id <> $4 AND o.created_at > $5)",
                )
                .bind(undelivered_reason(channel, error))
                .bind(practice.as_uuid())
                .bind(task)
                .bind(message)
                .bind(created)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                if reopened.rows_affected() == 1 {
                    let audit = AuditRecord::new(
                        caldicott_core::ids::AuditEventId::from_uuid(Uuid::now_v7()),
                        now,
                        caldicott_core::audit::Actor {
                            kind: caldicott_core::audit::ActorKind::System,
                            id: "outbox".into(),
                            role: "system".into(),
                        },
                        Some(PatientId::from_uuid(patient)),
                        caldicott_core::audit::Action::TaskReopen,
                        format!("task/{task}"),
                        caldicott_core::audit::Outcome::Success,
                        format!("safety net message/{message} by {} not delivered", channel.as_str()),
                    );
                    Self::append_in(tx, practice, &[&audit]).await?;
                }
                Ok(())
            }

            async fn insert_proxy(tx: &mut sqlx::Transaction<'static, $DB>, practice: PracticeId, l: &ProxyLink) -> StoreResult<()> {
                if l.patient == l.proxy {
                    return Err(StoreError::Conflict("a patient cannot be their own proxy".into()));
                }
                let (status, since, reason) = proxy_status_columns(&l.status);
                let from = match l.scope.record_from {
                    RecordFrom::Beginning => None,
                    RecordFrom::Date(d) => Some(d),
                };
                sqlx::query(&format!(
                    "INSERT INTO proxy_link (practice_id, {PROXY_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
                ))
                .bind(practice.as_uuid())
                .bind(l.id.as_uuid())
                .bind(l.patient.as_uuid())
                .bind(l.proxy.as_uuid())
                .bind(&l.relationship)
                .bind(l.basis.as_str())
                .bind(l.scope.appointments)
                .bind(l.scope.prescriptions)
                .bind(l.scope.demographics)
                .bind(l.scope.record.as_str())
                .bind(from)
                .bind(l.granted_on)
                .bind(&l.decided_by)
                .bind(l.ends_on)
                .bind(status)
                .bind(since)
                .bind(reason)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
                Ok(())
            }

        }

        #[async_trait]
        impl Store for $Store {
            fn backend(&self) -> Backend {
                Self::BACKEND
            }

            async fn health(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.read()).await.map_err(db)?;
                Ok(())
            }

            async fn create_practice(&self, p: &Practice, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO practice (id, ods_code, name, telephone, address_lines, postcode, switch_on, paused, \
                     default_level, proxy_review_age, created_at, visible_online_by_default, show_staff_names, cancel_cutoff_hours, pause_reason, accept_update_record) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                )
                .bind(p.id.as_uuid())
                .bind(p.ods_code.as_str())
                .bind(&p.name)
                .bind(&p.telephone)
                .bind(json(&p.address.lines)?)
                .bind(&p.address.postcode)
                .bind(p.online.prospective_switch_on)
                .bind(p.online.paused)
                .bind(p.online.default_level.as_str())
                .bind(i32::from(p.online.proxy_review_age.years()))
                .bind(Utc::now())
                .bind(p.online.visible_online_by_default)
                .bind(p.online.show_staff_names_to_patients)
                .bind(i32::from(p.online.cancel_cutoff_hours))
                .bind(if p.online.paused { Some(p.online.pause_reason.as_str()) } else { None })
                .bind(p.online.accept_update_record)
                .execute(&mut *tx)
                .await
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!("a practice with ODS code {} already exists", p.ods_code)),
                    other => other,
                })?;
                sqlx::query("INSERT INTO audit_head (practice_id, count, hash) VALUES ($1, $2, $3)")
                    .bind(p.id.as_uuid())
                    .bind(0i64)
                    .bind(ChainHash::GENESIS.0.to_vec())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Self::append_in(&mut tx, p.id, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn practice(&self, id: PracticeId) -> StoreResult<Option<Practice>> {
                self.hot_practice(id).await
            }

            async fn practice_by_ods(&self, ods: &OdsCode) -> StoreResult<Option<Practice>> {
                sqlx::query("SELECT * FROM practice WHERE ods_code = $1")
                    .bind(ods.as_str())
                    .fetch_optional(self.read())
                    .await
                    .map_err(db)?
                    .map(|r| rows::practice(&r))
                    .transpose()
            }

            async fn practices(&self) -> StoreResult<Vec<Practice>> {
                sqlx::query("SELECT * FROM practice ORDER BY ods_code")
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(rows::practice)
                    .collect()
            }

            async fn set_online_services(&self, practice: PracticeId, s: &OnlineServicesSettings, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE practice SET switch_on = $1, paused = $2, default_level = $3, proxy_review_age = $4, \
                     visible_online_by_default = $5, show_staff_names = $6, cancel_cutoff_hours = $7, pause_reason = $8, \
                     accept_update_record = $9 WHERE id = $10",
                )
                .bind(s.prospective_switch_on)
                .bind(s.paused)
                .bind(s.default_level.as_str())
                .bind(i32::from(s.proxy_review_age.years()))
                .bind(s.visible_online_by_default)
                .bind(s.show_staff_names_to_patients)
                .bind(i32::from(s.cancel_cutoff_hours))
                .bind(if s.paused { Some(s.pause_reason.as_str()) } else { None })
                .bind(s.accept_update_record)
                .bind(practice.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("practice"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn create_staff(&self, practice: PracticeId, s: &StaffMember, audit: &AuditRecord) -> StoreResult<()> {
                if s.practice != practice {
                    return Err(StoreError::Conflict("the staff member belongs to another practice".into()));
                }
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO staff (practice_id, id, username, display_name, role, password_hash, active, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(practice.as_uuid())
                .bind(s.id.as_uuid())
                .bind(&s.username)
                .bind(&s.display_name)
                .bind(s.role.as_str())
                .bind(&s.password_hash)
                .bind(s.active)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!("the username {} is taken", s.username)),
                    other => other,
                })?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn staff_member(&self, practice: PracticeId, id: StaffId) -> StoreResult<Option<StaffMember>> {
                self.row_by("SELECT * FROM staff WHERE practice_id = $1 AND id = $2", practice, id.as_uuid(), |r| {
                    rows::staff(practice, r)
                })
                .await
            }

            async fn staff_by_username(&self, practice: PracticeId, username: &str) -> StoreResult<Option<StaffMember>> {
                sqlx::query("SELECT * FROM staff WHERE practice_id = $1 AND username = $2")
                    .bind(practice.as_uuid())
                    .bind(username)
                    .fetch_optional(self.read())
                    .await
                    .map_err(db)?
                    .map(|r| rows::staff(practice, &r))
                    .transpose()
            }

            async fn staff_members(&self, practice: PracticeId) -> StoreResult<Vec<StaffMember>> {
                sqlx::query("SELECT * FROM staff WHERE practice_id = $1 ORDER BY display_name")
                    .bind(practice.as_uuid())
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| rows::staff(practice, r))
                    .collect()
            }

            async fn create_api_token(&self, practice: PracticeId, t: &ApiToken, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO api_token (practice_id, id, staff_id, label, secret_hash, created_at, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(practice.as_uuid())
                .bind(t.id.as_uuid())
                .bind(t.staff.as_uuid())
                .bind(&t.label)
                .bind(t.secret_hash.to_vec())
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.revoked_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn api_token(&self, practice: PracticeId, id: TokenId) -> StoreResult<Option<ApiToken>> {
                Ok(self.hot_token_and_staff(practice, id).await?.map(|(t, _)| t))
            }

            async fn api_tokens(&self, practice: PracticeId) -> StoreResult<Vec<(ApiToken, StaffMember)>> {
                sqlx::query(
                    "SELECT t.id AS token_id, t.staff_id, t.label, t.secret_hash, t.created_at AS token_created_at, \
                     t.expires_at, t.revoked_at, s.* \
                     FROM api_token t JOIN staff s ON s.practice_id = t.practice_id AND s.id = t.staff_id \
                     WHERE t.practice_id = $1 ORDER BY t.created_at DESC LIMIT 1000",
                )
                .bind(practice.as_uuid())
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .map(|r| {
                    let id = TokenId::from_uuid(r.uuid("token_id")?);
                    Ok((rows::token(practice, id, r)?, rows::staff(practice, r)?))
                })
                .collect()
            }

            async fn staff_for_token(&self, practice: PracticeId, id: TokenId) -> StoreResult<Option<(ApiToken, StaffMember)>> {
                self.hot_token_and_staff(practice, id).await
            }

            async fn revoke_api_token(&self, practice: PracticeId, id: TokenId, at: DateTime<Utc>, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query("UPDATE api_token SET revoked_at = $1 WHERE practice_id = $2 AND id = $3 AND revoked_at IS NULL")
                    .bind(at)
                    .bind(practice.as_uuid())
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("active token"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn set_staff_active(&self, practice: PracticeId, staff: StaffId, active: bool, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query("UPDATE staff SET active = $1 WHERE practice_id = $2 AND id = $3")
                    .bind(active)
                    .bind(practice.as_uuid())
                    .bind(staff.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("staff member"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn use_app_link_nonce(
                &self,
                practice: PracticeId,
                app: AppId,
                nonce_hash: &[u8; 32],
                expires: DateTime<Utc>,
                now: DateTime<Utc>,
            ) -> StoreResult<bool> {
                let mut tx = self.begin().await?;
                sqlx::query("DELETE FROM app_link_nonces_used WHERE practice_id = $1 AND expires_ms < $2")
                    .bind(practice.as_uuid())
                    .bind(now.timestamp_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let done = sqlx::query(
                    "INSERT INTO app_link_nonces_used (practice_id, app_id, nonce_hash, expires_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (practice_id, app_id, nonce_hash) DO NOTHING",
                )
                .bind(practice.as_uuid())
                .bind(app.as_uuid())
                .bind(nonce_hash.as_slice())
                .bind(expires.timestamp_millis())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(done.rows_affected() == 1)
            }

            async fn reseal_secrets(
                &self,
                reseal: &(dyn for<'s> Fn(&'s str) -> Result<Option<String>, String> + Sync),
            ) -> StoreResult<usize> {
                let mut tx = self.begin().await?;
                let mut done = 0;
                for (select, update) in [
                    (
                        "SELECT practice_id, id, totp_secret FROM staff WHERE totp_secret IS NOT NULL",
                        "UPDATE staff SET totp_secret = $1 WHERE practice_id = $2 AND id = $3",
                    ),
                    (
                        "SELECT practice_id, account_id AS id, totp_secret FROM patient_login WHERE totp_secret IS NOT NULL",
                        "UPDATE patient_login SET totp_secret = $1 WHERE practice_id = $2 AND account_id = $3",
                    ),
                ] {
                    let rows: Vec<(Uuid, Uuid, String)> =
                        sqlx::query_as(select).fetch_all(&mut *tx).await.map_err(db)?;
                    for (practice, id, stored) in rows {
                        let Some(sealed) = reseal(&stored).map_err(StoreError::Conflict)? else { continue };
                        sqlx::query(update).bind(sealed).bind(practice).bind(id).execute(&mut *tx).await.map_err(db)?;
                        done += 1;
                    }
                }
                tx.commit().await.map_err(db)?;
                Ok(done)
            }

            async fn claim_credential_try(
                &self,
                practice: PracticeId,
                subject: &caldicott_core::credentials::Subject,
                address: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<Option<caldicott_core::credentials::Claim>> {
                let now_ms = now.timestamp_millis();
                let mut tx = self.begin().await?;
                // One statement claims the try: a row whose wait is still due is not updated and
                // returns nothing. A count untouched for a day starts again.
                let claimed: Option<(i64, i64)> = sqlx::query_as(
                    "INSERT INTO credential_tries (practice_id, subject, address, failures, wait_until_ms, last_try_ms) \
                     VALUES ($1, $2, $3, 1, $4, $4) \
                     ON CONFLICT (practice_id, subject, address) DO UPDATE SET \
                     failures = CASE WHEN credential_tries.last_try_ms < $4 - 86400000 THEN 1 ELSE credential_tries.failures + 1 END, \
                     last_try_ms = $4 \
                     WHERE credential_tries.wait_until_ms <= $4 \
                     RETURNING failures, succeeded_ms",
                )
                .bind(practice.as_uuid())
                .bind(subject.as_str())
                .bind(address)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                let Some((n, succeeded_ms)) = claimed else {
                    tx.rollback().await.map_err(db)?;
                    return Ok(None);
                };
                if n == 1 {
                    // A new count: forget rows nobody has tried or signed in from for 30 days
                    // (tries at made-up usernames leave rows behind).
                    let stale = now_ms - caldicott_core::credentials::KNOWN_ADDRESS_FOR.num_milliseconds();
                    sqlx::query(
                        "DELETE FROM credential_tries WHERE practice_id = $1 AND last_try_ms < $2 AND succeeded_ms < $2",
                    )
                    .bind(practice.as_uuid())
                    .bind(stale)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                let wait = caldicott_core::credentials::wait_after(n).num_milliseconds();
                sqlx::query(
                    "UPDATE credential_tries SET wait_until_ms = $1 WHERE practice_id = $2 AND subject = $3 AND address = $4",
                )
                .bind(now_ms + wait)
                .bind(practice.as_uuid())
                .bind(subject.as_str())
                .bind(address)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                let known_after = now_ms - caldicott_core::credentials::KNOWN_ADDRESS_FOR.num_milliseconds();
                Ok(Some(caldicott_core::credentials::Claim { failures: n, known_address: succeeded_ms > known_after }))
            }

            async fn clear_credential_tries(
                &self,
                practice: PracticeId,
                subject: &caldicott_core::credentials::Subject,
                address: &str,
                now: DateTime<Utc>,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "UPDATE credential_tries SET failures = 0, wait_until_ms = 0, succeeded_ms = $1 \
                     WHERE practice_id = $2 AND subject = $3 AND address = $4",
                )
                    .bind(now.timestamp_millis())
                    .bind(practice.as_uuid())
                    .bind(subject.as_str())
                    .bind(address)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)
            }

            async fn use_totp_step(
                &self,
                practice: PracticeId,
                login: caldicott_core::credentials::TotpLogin,
                step: i64,
            ) -> StoreResult<bool> {
                use caldicott_core::credentials::TotpLogin;
                let (sql, id) = match login {
                    TotpLogin::Staff(s) => (
                        "UPDATE staff SET totp_last_step = $1 WHERE practice_id = $2 AND id = $3 \
                         AND (totp_last_step IS NULL OR totp_last_step < $1)",
                        s.as_uuid(),
                    ),
                    TotpLogin::Patient(a) => (
                        "UPDATE patient_login SET totp_last_step = $1 WHERE practice_id = $2 AND account_id = $3 \
                         AND (totp_last_step IS NULL OR totp_last_step < $1)",
                        a.as_uuid(),
                    ),
                };
                let mut tx = self.begin().await?;
                let done = sqlx::query(sql).bind(step).bind(practice.as_uuid()).bind(id).execute(&mut *tx).await.map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_sign_in_state(&self, practice: PracticeId, staff: StaffId, st: &SignInState, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE staff SET totp_secret = $1, totp_confirmed = $2, failed_sign_ins = $3, locked_until = $4 \
                     WHERE practice_id = $5 AND id = $6",
                )
                .bind(&st.totp_secret)
                .bind(st.totp_confirmed)
                .bind(i32::try_from(st.failed).unwrap_or(i32::MAX))
                .bind(st.locked_until)
                .bind(practice.as_uuid())
                .bind(staff.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("staff member"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn create_session(&self, practice: PracticeId, session: &StaffSession, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::insert_session(&mut tx, practice, session).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn session(&self, practice: PracticeId, id: SessionId) -> StoreResult<Option<(StaffSession, StaffMember)>> {
                self.row_by(SESSION_AND_STAFF, practice, id.as_uuid(), |r| Ok((rows::session(practice, r)?, rows::staff(practice, r)?))).await
            }

            async fn touch_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE staff_session SET last_seen_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL")
                    .bind(at)
                    .bind(practice.as_uuid())
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)
            }

            async fn replace_session(&self, practice: PracticeId, old: SessionId, new: &StaffSession, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query("UPDATE staff_session SET ended_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL")
                    .bind(new.created_at)
                    .bind(practice.as_uuid())
                    .bind(old.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("live session"));
                }
                Self::insert_session(&mut tx, practice, new).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn end_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE staff_session SET ended_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL")
                    .bind(at)
                    .bind(practice.as_uuid())
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn set_staff_password(
                &self,
                practice: PracticeId,
                staff: StaffId,
                password_hash: &str,
                keep: Option<SessionId>,
                at: DateTime<Utc>,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::put_staff_password(&mut tx, practice, staff, password_hash, keep, at).await?;
                sqlx::query("DELETE FROM staff_password_reset WHERE practice_id = $1 AND staff_id = $2")
                    .bind(practice.as_uuid())
                    .bind(staff.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn start_password_reset(
                &self,
                practice: PracticeId,
                reset: &caldicott_core::staff::PasswordReset,
                placeholder_hash: &str,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::put_staff_password(&mut tx, practice, reset.staff, placeholder_hash, None, reset.created_at).await?;
                sqlx::query(
                    "INSERT INTO staff_password_reset (practice_id, staff_id, code_hash, made_by, created_at, expires_at, used_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL) \
                     ON CONFLICT (practice_id, staff_id) DO UPDATE SET code_hash = $3, made_by = $4, created_at = $5, \
                     expires_at = $6, used_at = NULL",
                )
                .bind(practice.as_uuid())
                .bind(reset.staff.as_uuid())
                .bind(reset.code_hash.to_vec())
                .bind(reset.made_by.as_uuid())
                .bind(reset.created_at)
                .bind(reset.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn password_reset(
                &self,
                practice: PracticeId,
                staff: StaffId,
            ) -> StoreResult<Option<caldicott_core::staff::PasswordReset>> {
                self.row_by(
                    "SELECT * FROM staff_password_reset WHERE practice_id = $1 AND staff_id = $2",
                    practice,
                    staff.as_uuid(),
                    rows::password_reset,
                )
                .await
            }

            async fn finish_password_reset(
                &self,
                practice: PracticeId,
                staff: StaffId,
                code_hash: &[u8; 32],
                password_hash: &str,
                at: DateTime<Utc>,
                audit: &AuditRecord,
            ) -> StoreResult<bool> {
                let mut tx = self.begin().await?;
                // The code is taken in the statement that checks it is unused: used once, even
                // by two requests at the same moment.
                let used = sqlx::query(
                    "UPDATE staff_password_reset SET used_at = $1 \
                     WHERE practice_id = $2 AND staff_id = $3 AND code_hash = $4 AND used_at IS NULL",
                )
                .bind(at)
                .bind(practice.as_uuid())
                .bind(staff.as_uuid())
                .bind(code_hash.to_vec())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if used.rows_affected() == 0 {
                    tx.rollback().await.map_err(db)?;
                    return Ok(false);
                }
                Self::put_staff_password(&mut tx, practice, staff, password_hash, None, at).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)?;
                Ok(true)
            }

            async fn create_patient(&self, practice: PracticeId, p: &Patient, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::insert_patient(&mut tx, practice, p).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn patient(&self, practice: PracticeId, id: PatientId) -> StoreResult<Option<Patient>> {
                self.hot_patient(practice, PatientKey::Id(id.as_uuid())).await
            }

            async fn patient_by_nhs_number(&self, practice: PracticeId, nhs: &NhsNumber) -> StoreResult<Option<Patient>> {
                self.hot_patient(practice, PatientKey::Nhs(nhs.as_str())).await
            }

            async fn patient_count(&self, practice: PracticeId) -> StoreResult<i64> {
                sqlx::query("SELECT COUNT(*) AS n FROM patient WHERE practice_id = $1")
                    .bind(practice.as_uuid())
                    .fetch_one(self.read())
                    .await
                    .map_err(db)?
                    .try_get("n")
                    .map_err(db)
            }

            async fn end_registration(&self, practice: PracticeId, patient: PatientId, on: NaiveDate, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE registration SET ended = $1 WHERE practice_id = $2 AND patient_id = $3 AND ended IS NULL AND started <= $1",
                )
                .bind(on)
                .bind(practice.as_uuid())
                .bind(patient.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("current registration"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn recently_viewed(&self, practice: PracticeId, staff: StaffId, limit: u32) -> StoreResult<Vec<PatientListing>> {
                let ids: Vec<Uuid> = sqlx::query(
                    "SELECT patient_id, MAX(seq) AS last FROM audit_event \
                     WHERE practice_id = $1 AND actor_id = $2 AND action = 'record.view_staff' AND outcome = 'success' \
                     AND patient_id IS NOT NULL GROUP BY patient_id ORDER BY last DESC LIMIT $3",
                )
                .bind(practice.as_uuid())
                .bind(staff.to_string())
                .bind(i64::from(limit))
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .filter_map(|r| r.try_get::<String, _>("patient_id").ok().and_then(|s| Uuid::try_parse(&s).ok()))
                .collect();
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT p.id AS p_id, p.* FROM patient p WHERE p.practice_id = $1 AND p.id IN ({})",
                    placeholders(2, ids.len())
                );
                let mut q = sqlx::query(&sql).bind(practice.as_uuid());
                for id in &ids {
                    q = q.bind(*id);
                }
                let found: Vec<PatientListing> =
                    q.fetch_all(self.read()).await.map_err(db)?.iter().map(rows::listing).collect::<StoreResult<_>>()?;
                // In the order they were viewed.
                Ok(ids.iter().filter_map(|id| found.iter().find(|p| p.id.as_uuid() == *id).cloned()).collect())
            }

            async fn search_patients(&self, practice: PracticeId, q: &PatientSearch, limit: u32) -> StoreResult<Vec<PatientListing>> {
                let mut sql = String::from("SELECT * FROM patient WHERE practice_id = $1");
                let mut n = 2;
                if q.nhs_number.is_some() {
                    sql.push_str(&format!(" AND nhs_number = ${n}"));
                    n += 1;
                }
                if q.date_of_birth.is_some() {
                    sql.push_str(&format!(" AND date_of_birth = ${n}"));
                    n += 1;
                }
                if q.postcode.is_some() {
                    sql.push_str(&format!(" AND replace(upper(postcode), ' ', '') = ${n}"));
                    n += 1;
                }
                for _ in &q.names {
                    sql.push_str(&format!(" AND (lower(family_name) LIKE ${n} OR lower(given_name) LIKE ${n})"));
                    n += 1;
                }
                sql.push_str(&format!(" ORDER BY family_name, given_name, date_of_birth LIMIT ${n}"));
                let mut query = sqlx::query(&sql).bind(practice.as_uuid());
                if let Some(nhs) = &q.nhs_number {
                    query = query.bind(nhs.as_str());
                }
                if let Some(dob) = q.date_of_birth {
                    query = query.bind(dob);
                }
                if let Some(pc) = &q.postcode {
                    query = query.bind(pc);
                }
                for word in &q.names {
                    let clean: String = word.chars().filter(|c| *c != '%' && *c != '_' && *c != '\\').collect();
                    query = query.bind(format!("{clean}%"));
                }
                query
                    .bind(i64::from(limit))
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| {
                        let p = rows::patient(practice, r, Vec::new())?;
                        Ok(PatientListing {
                            id: p.id,
                            nhs_number: p.nhs_number,
                            name: p.name,
                            date_of_birth: p.date_of_birth,
                            sex: p.sex,
                            address: p.contact.address,
                            date_of_death: p.date_of_death,
                        })
                    })
                    .collect()
            }

            async fn import_patients(&self, practice: PracticeId, batch: &[PatientImport], audit: &[AuditRecord]) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                for item in batch {
                    Self::insert_patient(&mut tx, practice, &item.patient).await?;
                    Self::write_access(&mut tx, practice, item.patient.id, &item.access).await?;
                    for a in &item.accounts {
                        Self::insert_account(&mut tx, practice, a).await?;
                    }
                    for e in &item.entries {
                        if e.patient != item.patient.id {
                            return Err(StoreError::Conflict("an entry belongs to another patient".into()));
                        }
                        Self::insert_entry(&mut tx, practice, e).await?;
                    }
                }
                for item in batch {
                    for link in &item.proxies {
                        if link.patient != item.patient.id {
                            return Err(StoreError::Conflict("a proxy link belongs to another patient".into()));
                        }
                        Self::insert_proxy(&mut tx, practice, link).await?;
                    }
                }
                let records: Vec<&AuditRecord> = audit.iter().collect();
                Self::append_in(&mut tx, practice, &records).await?;
                tx.commit().await.map_err(db)
            }

            async fn access_facts(&self, practice: PracticeId, patient: PatientId) -> StoreResult<AccessFacts> {
                self.hot_access_facts(practice, patient).await
            }

            async fn set_access_settings(&self, practice: PracticeId, patient: PatientId, s: &OnlineAccessSettings, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::write_access(&mut tx, practice, patient, s).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn create_online_account(&self, practice: PracticeId, a: &OnlineAccount, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::insert_account(&mut tx, practice, a).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn online_accounts(&self, practice: PracticeId, holder: PatientId) -> StoreResult<Vec<OnlineAccount>> {
                sqlx::query("SELECT * FROM online_account WHERE practice_id = $1 AND holder_id = $2 ORDER BY created_at")
                    .bind(practice.as_uuid())
                    .bind(holder.as_uuid())
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| {
                        let kind: String = r.try_get("kind").map_err(db)?;
                        let level: String = r.try_get("identity_level").map_err(db)?;
                        Ok(OnlineAccount {
                            id: AccountId::from_uuid(r.try_get("id").map_err(db)?),
                            holder,
                            kind: AccountKind::parse(&kind).ok_or_else(|| corrupt("account kind", &kind))?,
                            identity: IdentityLevel::parse(&level).ok_or_else(|| corrupt("identity level", &level))?,
                            created_at: r.try_get("created_at").map_err(db)?,
                        })
                    })
                    .collect()
            }

            async fn create_proxy_link(&self, practice: PracticeId, l: &ProxyLink, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::insert_proxy(&mut tx, practice, l).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn proxy_link(&self, practice: PracticeId, id: ProxyLinkId) -> StoreResult<Option<ProxyLink>> {
                let sql = format!("SELECT {PROXY_COLUMNS} FROM proxy_link WHERE practice_id = $1 AND id = $2");
                self.row_by(&sql, practice, id.as_uuid(), rows::proxy).await
            }

            async fn proxy_links_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<ProxyLink>> {
                let sql =
                    format!("SELECT {PROXY_COLUMNS} FROM proxy_link WHERE practice_id = $1 AND patient_id = $2 ORDER BY granted_on");
                self.rows_by(&sql, practice, patient.as_uuid(), rows::proxy).await
            }

            async fn add_entries(&self, practice: PracticeId, entries: &[Entry], audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                for e in entries {
                    Self::insert_entry(&mut tx, practice, e).await?;
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn transfer_in(
                &self,
                practice: PracticeId,
                new_patient: Option<&Patient>,
                import: &RecordImport,
                entries: &[Entry],
                files: &[(EntryId, crate::documents::StoredFile)],
                audit: &[AuditRecord],
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                if let Some(p) = new_patient {
                    Self::insert_patient(&mut tx, practice, p).await?;
                }
                sqlx::query(
                    "INSERT INTO record_import (practice_id, id, patient_id, sha256, from_ods, entries, hidden_by_sender, \
                     pending_review, imported_at, imported_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(practice.as_uuid())
                .bind(import.id)
                .bind(import.patient.as_uuid())
                .bind(&import.sha256)
                .bind(&import.from_ods)
                .bind(import.entries)
                .bind(import.hidden_by_sender)
                .bind(import.pending_review)
                .bind(import.imported_at)
                .bind(&import.imported_by)
                .execute(&mut *tx)
                .await
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => StoreError::Conflict("this file has already been imported for this patient".into()),
                    other => other,
                })?;
                // R7: the patient's grants made by hand do not reach what this brings until staff
                // set the level again after reviewing it.
                sqlx::query("UPDATE access_setting SET transfer_hold_since = $3 WHERE practice_id = $1 AND patient_id = $2")
                    .bind(practice.as_uuid())
                    .bind(import.patient.as_uuid())
                    .bind(caldicott_core::uk::uk_date(import.imported_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                for e in entries {
                    if e.patient != import.patient {
                        return Err(StoreError::Conflict("an imported entry belongs to another patient".into()));
                    }
                    Self::insert_entry(&mut tx, practice, e).await?;
                }
                for (entry, file) in files {
                    if !entries.iter().any(|e| e.id == *entry) {
                        return Err(StoreError::Conflict("an imported file belongs to no imported entry".into()));
                    }
                    Self::insert_file(&mut tx, practice, *entry, file).await?;
                }
                let audit: Vec<&AuditRecord> = audit.iter().collect();
                Self::append_in(&mut tx, practice, &audit).await?;
                tx.commit().await.map_err(db)
            }

            async fn record_imports(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<RecordImport>> {
                self.rows_by(
                    "SELECT * FROM record_import WHERE practice_id = $1 AND patient_id = $2 ORDER BY imported_at DESC",
                    practice,
                    patient.as_uuid(),
                    rows::record_import,
                )
                .await
            }

            async fn issue_linkage_key(&self, practice: PracticeId, k: &LinkageKey, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                // Every app linked with an earlier key loses its access at once (R21).
                sqlx::query(
                    "UPDATE app_link SET revoked_at = $1, revoked_why = 'linkage key regenerated' \
                     WHERE practice_id = $2 AND patient_id = $3 AND revoked_at IS NULL AND linkage_ref IN \
                     (SELECT account_ref FROM linkage_key WHERE practice_id = $2 AND holder_id = $3 AND revoked_at IS NULL)",
                )
                .bind(k.issued_at)
                .bind(practice.as_uuid())
                .bind(k.holder.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                sqlx::query(
                    "UPDATE linkage_key SET revoked_at = $1 WHERE practice_id = $2 AND holder_id = $3 AND revoked_at IS NULL",
                )
                .bind(k.issued_at)
                .bind(practice.as_uuid())
                .bind(k.holder.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                sqlx::query(
                    "INSERT INTO linkage_key (practice_id, account_ref, holder_id, key_hash, identity_level, issued_at, issued_by, resets_account_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(practice.as_uuid())
                .bind(&k.account_ref)
                .bind(k.holder.as_uuid())
                .bind(k.key_hash.to_vec())
                .bind(k.identity.as_str())
                .bind(k.issued_at)
                .bind(&k.issued_by)
                .bind(k.resets.map(|a| a.as_uuid()))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn linkage_key(&self, practice: PracticeId, account_ref: &str) -> StoreResult<Option<LinkageKey>> {
                sqlx::query("SELECT * FROM linkage_key WHERE practice_id = $1 AND account_ref = $2")
                    .bind(practice.as_uuid())
                    .bind(account_ref)
                    .fetch_optional(self.read())
                    .await
                    .map_err(db)?
                    .map(|r| rows::linkage_key(&r))
                    .transpose()
            }

            async fn create_patient_login(
                &self,
                practice: PracticeId,
                account: &OnlineAccount,
                login: &PatientLogin,
                linkage_ref: &str,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let used = sqlx::query(
                    "UPDATE linkage_key SET used_at = $1 WHERE practice_id = $2 AND account_ref = $3 AND holder_id = $4 \
                     AND used_at IS NULL AND revoked_at IS NULL",
                )
                .bind(account.created_at)
                .bind(practice.as_uuid())
                .bind(linkage_ref)
                .bind(account.holder.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if used.rows_affected() == 0 {
                    return Err(StoreError::Conflict("these linkage details have already been used".into()));
                }
                Self::insert_account(&mut tx, practice, account).await?;
                sqlx::query(
                    "INSERT INTO patient_login (practice_id, account_id, username, password_hash, failed_sign_ins, locked_until) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(practice.as_uuid())
                .bind(account.id.as_uuid())
                .bind(&login.username)
                .bind(&login.password_hash)
                .bind(0i32)
                .bind(Option::<DateTime<Utc>>::None)
                .execute(&mut *tx)
                .await
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => StoreError::Conflict("that username is taken: choose another".into()),
                    other => other,
                })?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn patient_login(&self, practice: PracticeId, username: &str) -> StoreResult<Option<(PatientLogin, OnlineAccount)>> {
                sqlx::query(
                    "SELECT l.*, a.id AS a_id, a.holder_id, a.kind, a.identity_level, a.created_at AS a_created_at FROM patient_login l \
                     JOIN online_account a ON a.practice_id = l.practice_id AND a.id = l.account_id \
                     WHERE l.practice_id = $1 AND l.username = $2",
                )
                .bind(practice.as_uuid())
                .bind(username)
                .fetch_optional(self.read())
                .await
                .map_err(db)?
                .map(|r| Ok((rows::patient_login(&r)?, rows::online_account(&r, "a_id")?)))
                .transpose()
            }

            async fn patient_login_of(&self, practice: PracticeId, account: AccountId) -> StoreResult<Option<PatientLogin>> {
                self.row_by("SELECT * FROM patient_login WHERE practice_id = $1 AND account_id = $2", practice, account.as_uuid(), rows::patient_login)
                    .await
            }

            async fn set_patient_totp(
                &self,
                practice: PracticeId,
                account: AccountId,
                secret: Option<&str>,
                confirmed: bool,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE patient_login SET totp_secret = $1, totp_confirmed = $2 WHERE practice_id = $3 AND account_id = $4")
                    .bind(secret)
                    .bind(confirmed)
                    .bind(practice.as_uuid())
                    .bind(account.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn create_patient_session(&self, practice: PracticeId, s: &PatientSession, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO patient_session (practice_id, id, account_id, secret_hash, csrf_token, created_at, last_seen_at, expires_at, stage) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(practice.as_uuid())
                .bind(s.id.as_uuid())
                .bind(s.account.as_uuid())
                .bind(s.secret_hash.to_vec())
                .bind(&s.csrf_token)
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .bind(s.stage.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn patient_session(&self, practice: PracticeId, id: SessionId) -> StoreResult<Option<(PatientSession, OnlineAccount)>> {
                sqlx::query(
                    "SELECT s.*, a.id AS a_id, a.holder_id, a.kind, a.identity_level, a.created_at AS a_created_at \
                     FROM patient_session s JOIN online_account a ON a.practice_id = s.practice_id AND a.id = s.account_id \
                     WHERE s.practice_id = $1 AND s.id = $2",
                )
                .bind(practice.as_uuid())
                .bind(id.as_uuid())
                .fetch_optional(self.read())
                .await
                .map_err(db)?
                .map(|r| Ok((rows::patient_session(&r)?, rows::online_account(&r, "a_id")?)))
                .transpose()
            }

            async fn touch_patient_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE patient_session SET last_seen_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL")
                    .bind(at)
                    .bind(practice.as_uuid())
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)
            }

            async fn end_patient_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE patient_session SET ended_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL")
                    .bind(at)
                    .bind(practice.as_uuid())
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn set_patient_password(
                &self,
                practice: PracticeId,
                account: AccountId,
                password_hash: &str,
                keep: Option<SessionId>,
                at: DateTime<Utc>,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::put_patient_password(&mut tx, practice, account, password_hash, keep, at).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn reset_patient_password(
                &self,
                practice: PracticeId,
                linkage_ref: &str,
                account: AccountId,
                password_hash: &str,
                at: DateTime<Utc>,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let used = sqlx::query(
                    "UPDATE linkage_key SET used_at = $1 WHERE practice_id = $2 AND account_ref = $3 \
                     AND resets_account_id = $4 AND used_at IS NULL AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(practice.as_uuid())
                .bind(linkage_ref)
                .bind(account.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if used.rows_affected() == 0 {
                    return Err(StoreError::Conflict("this letter has already been used".into()));
                }
                Self::put_patient_password(&mut tx, practice, account, password_hash, None, at).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn oidc_account(&self, practice: PracticeId, issuer: &str, subject: &str) -> StoreResult<Option<OnlineAccount>> {
                sqlx::query(
                    "SELECT a.id AS a_id, a.holder_id, a.kind, a.identity_level, a.created_at AS a_created_at FROM oidc_subject o \
                     JOIN online_account a ON a.practice_id = o.practice_id AND a.id = o.account_id \
                     WHERE o.practice_id = $1 AND o.issuer = $2 AND o.subject = $3",
                )
                .bind(practice.as_uuid())
                .bind(issuer)
                .bind(subject)
                .fetch_optional(self.read())
                .await
                .map_err(db)?
                .map(|r| rows::online_account(&r, "a_id"))
                .transpose()
            }

            async fn create_oidc_account(
                &self,
                practice: PracticeId,
                account: &OnlineAccount,
                issuer: &str,
                subject: &str,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::insert_account(&mut tx, practice, account).await?;
                sqlx::query("INSERT INTO oidc_subject (practice_id, issuer, subject, account_id, linked_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(practice.as_uuid())
                    .bind(issuer)
                    .bind(subject)
                    .bind(account.id.as_uuid())
                    .bind(account.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn set_account_identity(
                &self,
                practice: PracticeId,
                account: AccountId,
                identity: IdentityLevel,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE online_account SET identity_level = $1 WHERE practice_id = $2 AND id = $3")
                    .bind(identity.as_str())
                    .bind(practice.as_uuid())
                    .bind(account.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn update_proxy_link(&self, practice: PracticeId, l: &ProxyLink, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let gone = sqlx::query("DELETE FROM proxy_link WHERE practice_id = $1 AND id = $2 AND patient_id = $3 AND proxy_id = $4")
                    .bind(practice.as_uuid())
                    .bind(l.id.as_uuid())
                    .bind(l.patient.as_uuid())
                    .bind(l.proxy.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if gone.rows_affected() == 0 {
                    return Err(StoreError::NotFound("proxy link"));
                }
                Self::insert_proxy(&mut tx, practice, l).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn proxy_last_used(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<(ProxyLinkId, DateTime<Utc>)>> {
                sqlx::query(
                    "SELECT actor_role, MAX(at) AS last FROM audit_event WHERE practice_id = $1 AND patient_id = $2 \
                     AND actor_kind = 'proxy' GROUP BY actor_role",
                )
                .bind(practice.as_uuid())
                .bind(patient.to_string())
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .filter_map(|r| {
                    let role = r.opt_text("actor_role").ok()??;
                    let id = role.strip_prefix("proxy/")?.parse::<ProxyLinkId>().ok()?;
                    Some(r.opt_time("last").map(|t| t.map(|t| (id, t))))
                })
                .filter_map(|r| r.transpose())
                .collect()
            }

            async fn proxy_links_for_proxy(&self, practice: PracticeId, proxy: PatientId) -> StoreResult<Vec<ProxyLink>> {
                let sql =
                    format!("SELECT {PROXY_COLUMNS} FROM proxy_link WHERE practice_id = $1 AND proxy_id = $2 ORDER BY granted_on");
                self.rows_by(&sql, practice, proxy.as_uuid(), rows::proxy).await
            }

            async fn create_clinic(&self, practice: PracticeId, c: &Clinic, slots: &[Slot], audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO clinic (practice_id, id, clinician_id, clinician_name, day, start_time, end_time, slot_minutes, \
                     slot_type, online_bookable, location) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(practice.as_uuid())
                .bind(c.id.as_uuid())
                .bind(c.clinician.as_uuid())
                .bind(&c.clinician_name)
                .bind(c.date)
                .bind(c.start.format("%H:%M").to_string())
                .bind(c.end.format("%H:%M").to_string())
                .bind(i32::from(c.slot_minutes))
                .bind(c.slot_type.as_str())
                .bind(c.online_bookable)
                .bind(&c.location)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                for s in slots {
                    sqlx::query(
                        "INSERT INTO slot (practice_id, id, clinic_id, starts_at, minutes, slot_type, online_bookable, clinician_name, location) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(practice.as_uuid())
                    .bind(s.id.as_uuid())
                    .bind(c.id.as_uuid())
                    .bind(s.starts_at)
                    .bind(i32::from(s.minutes))
                    .bind(s.slot_type.as_str())
                    .bind(s.online_bookable)
                    .bind(&s.clinician_name)
                    .bind(&s.location)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn slots_between(
                &self,
                practice: PracticeId,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
            ) -> StoreResult<Vec<(Slot, Option<Appointment>)>> {
                sqlx::query(
                    concat!(
                        slot_booking_columns!(),
                        " FROM slot s LEFT JOIN appointment a ON a.practice_id = s.practice_id AND a.slot_id = s.id AND a.cancelled_at IS NULL \
                         WHERE s.practice_id = $1 AND s.starts_at >= $2 AND s.starts_at < $3 ORDER BY s.starts_at, s.clinician_name"
                    ),
                )
                .bind(practice.as_uuid())
                .bind(from)
                .bind(to)
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .map(rows::slot_and_booking)
                .collect()
            }

            async fn slot(&self, practice: PracticeId, id: SlotId) -> StoreResult<Option<Slot>> {
                self.row_by("SELECT * FROM slot WHERE practice_id = $1 AND id = $2", practice, id.as_uuid(), rows::slot).await
            }

            async fn book_slot(&self, practice: PracticeId, a: &Appointment, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO appointment (practice_id, id, slot_id, patient_id, booked_at, booked_by) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(practice.as_uuid())
                .bind(a.id.as_uuid())
                .bind(a.slot.as_uuid())
                .bind(a.patient.as_uuid())
                .bind(a.booked_at)
                .bind(&a.booked_by)
                .execute(&mut *tx)
                .await
                .map_err(|e| match db(e) {
                    StoreError::Conflict(m) if !m.starts_with("refers to") => {
                        StoreError::Conflict("that appointment has just been booked by someone else".into())
                    }
                    other => other,
                })?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn cancel_appointment(
                &self,
                practice: PracticeId,
                id: AppointmentId,
                patient: PatientId,
                at: DateTime<Utc>,
                by: &str,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE appointment SET cancelled_at = $1, cancelled_by = $2 \
                     WHERE practice_id = $3 AND id = $4 AND patient_id = $5 AND cancelled_at IS NULL",
                )
                .bind(at)
                .bind(by)
                .bind(practice.as_uuid())
                .bind(id.as_uuid())
                .bind(patient.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("booked appointment"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn appointments_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<(Appointment, Slot)>> {
                sqlx::query(
                    concat!(
                        slot_booking_columns!(),
                        " FROM appointment a JOIN slot s ON s.practice_id = a.practice_id AND s.id = a.slot_id \
                         WHERE a.practice_id = $1 AND a.patient_id = $2 ORDER BY s.starts_at DESC, a.booked_at DESC"
                    ),
                )
                .bind(practice.as_uuid())
                .bind(patient.as_uuid())
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .map(rows::appointment_and_slot)
                .collect()
            }

            async fn appointment(&self, practice: PracticeId, id: AppointmentId) -> StoreResult<Option<(Appointment, Slot)>> {
                self.row_by(
                    concat!(
                        slot_booking_columns!(),
                        " FROM appointment a JOIN slot s ON s.practice_id = a.practice_id AND s.id = a.slot_id \
                         WHERE a.practice_id = $1 AND a.id = $2"
                    ),
                    practice,
                    id.as_uuid(),
                    rows::appointment_and_slot,
                )
                .await
            }

            async fn slot_with_booking(&self, practice: PracticeId, id: SlotId) -> StoreResult<Option<(Slot, Option<Appointment>)>> {
                self.row_by(
                    concat!(
                        slot_booking_columns!(),
                        " FROM slot s LEFT JOIN appointment a ON a.practice_id = s.practice_id AND a.slot_id = s.id AND a.cancelled_at IS NULL \
                         WHERE s.practice_id = $1 AND s.id = $2"
                    ),
                    practice,
                    id.as_uuid(),
                    rows::slot_and_booking,
                )
                .await
            }

            async fn create_task(&self, practice: PracticeId, t: &Task, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::insert_task(&mut tx, practice, t).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn task(&self, practice: PracticeId, id: TaskId) -> StoreResult<Option<Task>> {
                self.row_by("SELECT * FROM task WHERE practice_id = $1 AND id = $2", practice, id.as_uuid(), rows::task).await
            }

            async fn tasks(&self, practice: PracticeId, status: TaskStatus, limit: u32) -> StoreResult<Vec<(Task, PatientListing)>> {
                sqlx::query(
                    "SELECT t.*, p.id AS p_id, p.nhs_number, p.title, p.given_name, p.family_name, p.date_of_birth, p.sex, \
                     p.address_lines, p.postcode, p.date_of_death \
                     FROM task t JOIN patient p ON p.practice_id = t.practice_id AND p.id = t.patient_id \
                     WHERE t.practice_id = $1 AND t.status = $2 ORDER BY t.created_at, t.id LIMIT $3",
                )
                .bind(practice.as_uuid())
                .bind(status.as_str())
                .bind(i64::from(limit))
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((rows::task(r)?, rows::listing(r)?)))
                .collect()
            }

            async fn count_open_tasks(&self, practice: PracticeId, kind: TaskKind, created_before: DateTime<Utc>) -> StoreResult<i64> {
                sqlx::query("SELECT COUNT(*) AS n FROM task WHERE practice_id = $1 AND status = 'open' AND kind = $2 AND created_at < $3")
                    .bind(practice.as_uuid())
                    .bind(kind.as_str())
                    .bind(created_before)
                    .fetch_one(self.read())
                    .await
                    .map_err(db)?
                    .try_get("n")
                    .map_err(db)
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
                t: &Task,
                entries: &[Entry],
                message: Option<&OutboundMessage>,
                follow_up: Option<&Task>,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE task SET status = $1, body = $2, outcome = $3, closed_at = $4, closed_by = $5 \
                     WHERE practice_id = $6 AND id = $7 AND status = 'open'",
                )
                .bind(t.status.as_str())
                .bind(json(&t.body)?)
                .bind(&t.outcome)
                .bind(t.closed_at)
                .bind(&t.closed_by)
                .bind(practice.as_uuid())
                .bind(t.id.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict("this task has already been completed".into()));
                }
                for e in entries {
                    if e.patient != t.patient {
                        return Err(StoreError::Conflict("an entry of a task belongs to another patient".into()));
                    }
                    Self::insert_entry(&mut tx, practice, e).await?;
                }
                if let Some(m) = message {
                    if m.patient != t.patient {
                        return Err(StoreError::Conflict("a task's message is for another patient".into()));
                    }
                    Self::insert_message(&mut tx, practice, m).await?;
                }
                if let Some(next) = follow_up {
                    Self::insert_task(&mut tx, practice, next).await?;
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn letter_posted(&self, practice: PracticeId, t: &Task, message: MessageId, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE task SET status = $1, outcome = $2, closed_at = $3, closed_by = $4 WHERE practice_id = $5 AND id = $6 AND status = 'open'",
                )
                .bind(t.status.as_str())
                .bind(&t.outcome)
                .bind(t.closed_at)
                .bind(&t.closed_by)
                .bind(practice.as_uuid())
                .bind(t.id.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict("this letter has already been posted".into()));
                }
                sqlx::query(
                    "UPDATE outbox SET status = 'sent', sent_at = $1, provider_id = 'posted by the practice' \
                     WHERE practice_id = $2 AND id = $3 AND status = 'printing'",
                )
                .bind(t.closed_at)
                .bind(practice.as_uuid())
                .bind(message.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn nominated_pharmacy(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Option<(String, String)>> {
                self.row_by(
                    "SELECT ods_code, name FROM nominated_pharmacy WHERE practice_id = $1 AND patient_id = $2",
                    practice,
                    patient.as_uuid(),
                    |r| Ok((r.try_get::<String, _>("ods_code").map_err(db)?, r.try_get::<String, _>("name").map_err(db)?)),
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
                sqlx::query("DELETE FROM nominated_pharmacy WHERE practice_id = $1 AND patient_id = $2")
                    .bind(practice.as_uuid())
                    .bind(patient.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if let Some((ods, name)) = pharmacy {
                    sqlx::query("INSERT INTO nominated_pharmacy (practice_id, patient_id, ods_code, name) VALUES ($1, $2, $3, $4)")
                        .bind(practice.as_uuid())
                        .bind(patient.as_uuid())
                        .bind(ods)
                        .bind(name)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn enqueue_message(&self, practice: PracticeId, m: &OutboundMessage, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                Self::insert_message(&mut tx, practice, m).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
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
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)?;
                Ok(true)
            }

            async fn claim_due_messages(
                &self,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: u32,
            ) -> StoreResult<Vec<(PracticeId, OutboundMessage)>> {
                let candidates = sqlx::query(
                    "SELECT practice_id, id FROM outbox WHERE next_attempt_at <= $1 \
                     AND (status = 'queued' OR (status = 'sending' AND lease_until < $1)) ORDER BY next_attempt_at LIMIT $2",
                )
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(self.read())
                .await
                .map_err(db)?;
                let mut claimed = Vec::new();
                for c in candidates {
                    let (practice, id) = (c.uuid("practice_id")?, c.uuid("id")?);
                    let mut tx = self.begin().await?;
                    let won = sqlx::query(
                        "UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1, tries = tries + 1 \
                         WHERE practice_id = $2 AND id = $3 AND next_attempt_at <= $4 \
                         AND (status = 'queued' OR (status = 'sending' AND lease_until < $4))",
                    )
                    .bind(lease_until)
                    .bind(practice)
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    if won.rows_affected() == 1 {
                        let row = sqlx::query("SELECT * FROM outbox WHERE practice_id = $1 AND id = $2")
                            .bind(practice)
                            .bind(id)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(db)?;
                        claimed.push((PracticeId::from_uuid(practice), rows::message(&row)?));
                    }
                    tx.commit().await.map_err(db)?;
                }
                Ok(claimed)
            }

            async fn fix_email_message_id(&self, practice: PracticeId, id: MessageId, candidate: &str) -> StoreResult<String> {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE outbox SET email_message_id = COALESCE(email_message_id, $1) WHERE practice_id = $2 AND id = $3")
                    .bind(candidate)
                    .bind(practice.as_uuid())
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let fixed: Option<String> = sqlx::query("SELECT email_message_id FROM outbox WHERE practice_id = $1 AND id = $2")
                    .bind(practice.as_uuid())
                    .bind(id.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?
                    .map(|r| r.opt_text("email_message_id"))
                    .transpose()?
                    .flatten();
                tx.commit().await.map_err(db)?;
                fixed.ok_or(StoreError::NotFound("message"))
            }

            async fn finish_message(&self, practice: PracticeId, id: MessageId, outcome: &DeliveryOutcome, now: DateTime<Utc>) -> StoreResult<()> {
                let (status, provider, error, next, sent): (&str, Option<&str>, Option<&str>, DateTime<Utc>, Option<DateTime<Utc>>) = match outcome {
                    DeliveryOutcome::Sent { provider_id } => ("sent", Some(provider_id), None, now, Some(now)),
                    DeliveryOutcome::Delivered { provider_id } => ("delivered", Some(provider_id), None, now, Some(now)),
                    DeliveryOutcome::Retry { error, next } => ("queued", None, Some(error), *next, None),
                    DeliveryOutcome::Failed { error } => ("failed", None, Some(error), now, None),
                };
                let mut tx = self.begin().await?;
                let done = sqlx::query(
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
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if let (DeliveryOutcome::Failed { error }, 1) = (outcome, done.rows_affected()) {
                    Self::reopen_alert_of(&mut tx, practice, id.as_uuid(), error, now).await?;
                }
                tx.commit().await.map_err(db)
            }

            async fn apply_delivery_report(&self, provider_id: &str, status: &str, now: DateTime<Utc>) -> StoreResult<bool> {
                let mut tx = self.begin().await?;
                let fresh = sqlx::query(
                    "INSERT INTO outbox_callback (provider_id, status, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(provider_id)
                .bind(status)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if fresh.rows_affected() == 0 {
                    return Ok(false);
                }
                // Temporary and technical failures go back in the queue for another try in an hour
                // (R41); the worker gives up after its usual number of tries.
                let retry = Some(now + chrono::Duration::hours(1));
                let (new_status, error, next) = match status {
                    "delivered" => ("delivered", None, None),
                    "permanent-failure" => ("failed", Some("the provider could not deliver it: check the address or number"), None),
                    "temporary-failure" => ("queued", Some("the provider could not deliver it for now (phone off or inbox full): trying again"), retry),
                    "technical-failure" => ("queued", Some("the provider had a technical failure: trying again"), retry),
                    _ => return tx.commit().await.map_err(db).map(|()| false),
                };
                let affected = sqlx::query("SELECT practice_id, id FROM outbox WHERE provider_id = $1 AND status IN ('sent', 'delivered')")
                    .bind(provider_id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?;
                let done = sqlx::query(
                    "UPDATE outbox SET status = $1, last_error = $2, next_attempt_at = COALESCE($4, next_attempt_at) \
                     WHERE provider_id = $3 AND status IN ('sent', 'delivered')",
                )
                .bind(new_status)
                .bind(error)
                .bind(provider_id)
                .bind(next)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if let (Some(error), "failed") = (error, new_status) {
                    for r in &affected {
                        Self::reopen_alert_of(&mut tx, PracticeId::from_uuid(r.uuid("practice_id")?), r.uuid("id")?, error, now).await?;
                    }
                }
                tx.commit().await.map_err(db)?;
                Ok(done.rows_affected() > 0)
            }

            async fn messages_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<OutboundMessage>> {
                self.rows_by(
                    "SELECT * FROM outbox WHERE practice_id = $1 AND patient_id = $2 ORDER BY created_at DESC",
                    practice,
                    patient.as_uuid(),
                    rows::message,
                )
                .await
            }

            async fn failed_messages(&self, practice: PracticeId, limit: u32) -> StoreResult<Vec<(OutboundMessage, PatientListing)>> {
                sqlx::query(
                    "SELECT o.*, p.id AS p_id, p.nhs_number, p.title, p.given_name, p.family_name, p.date_of_birth, p.sex, \
                     p.address_lines, p.postcode, p.date_of_death \
                     FROM outbox o JOIN patient p ON p.practice_id = o.practice_id AND p.id = o.patient_id \
                     WHERE o.practice_id = $1 AND o.status = 'failed' ORDER BY o.created_at DESC LIMIT $2",
                )
                .bind(practice.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((rows::message(r)?, rows::listing(r)?)))
                .collect()
            }

            async fn retry_message(&self, practice: PracticeId, id: MessageId, now: DateTime<Utc>, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE outbox SET status = 'queued', next_attempt_at = $1, attempts = 0, last_error = NULL \
                     WHERE practice_id = $2 AND id = $3 AND status = 'failed'",
                )
                .bind(now)
                .bind(practice.as_uuid())
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict("this message is not waiting for a retry".into()));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn presets(&self, practice: PracticeId) -> StoreResult<Vec<(PresetId, Preset)>> {
                sqlx::query("SELECT id, name, body FROM message_preset WHERE practice_id = $1 ORDER BY name")
                    .bind(practice.as_uuid())
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| Ok((PresetId::from_uuid(r.uuid("id")?), Preset { name: r.text("name")?, body: r.text("body")? })))
                    .collect()
            }

            async fn save_preset(&self, practice: PracticeId, p: &Preset, by: &str, at: DateTime<Utc>, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let updated = sqlx::query(
                    "UPDATE message_preset SET body = $1, updated_at = $2, updated_by = $3 WHERE practice_id = $4 AND name = $5",
                )
                .bind(&p.body)
                .bind(at)
                .bind(by)
                .bind(practice.as_uuid())
                .bind(&p.name)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if updated.rows_affected() == 0 {
                    sqlx::query(
                        "INSERT INTO message_preset (practice_id, id, name, body, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(practice.as_uuid())
                    .bind(uuid::Uuid::now_v7())
                    .bind(&p.name)
                    .bind(&p.body)
                    .bind(at)
                    .bind(by)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
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
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE patient SET preferred_contact = $1, email = $2, mobile = $3 WHERE practice_id = $4 AND id = $5",
                )
                .bind(preferred.code().map(i32::from))
                .bind(email)
                .bind(mobile)
                .bind(practice.as_uuid())
                .bind(patient.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("patient"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn create_app(&self, practice: PracticeId, a: &PatientApp, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO patient_app (practice_id, id, name, supplier, client_id, client_secret_hash, active, created_at, \
                     nhs_login_client_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(practice.as_uuid())
                .bind(a.id.as_uuid())
                .bind(&a.name)
                .bind(&a.supplier)
                .bind(&a.client_id)
                .bind(a.client_secret_hash.to_vec())
                .bind(a.active)
                .bind(a.created_at)
                .bind(&a.nhs_login_client_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn apps(&self, practice: PracticeId) -> StoreResult<Vec<PatientApp>> {
                sqlx::query("SELECT * FROM patient_app WHERE practice_id = $1 ORDER BY name")
                    .bind(practice.as_uuid())
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| rows::patient_app(r, "id"))
                    .collect()
            }

            async fn set_app_active(
                &self,
                practice: PracticeId,
                app: AppId,
                active: bool,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                let done = sqlx::query("UPDATE patient_app SET active = $3 WHERE practice_id = $1 AND id = $2")
                    .bind(practice.as_uuid())
                    .bind(app.as_uuid())
                    .bind(active)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("app"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn app_by_client_id(&self, client_id: &str) -> StoreResult<Option<(PracticeId, PatientApp)>> {
                sqlx::query("SELECT * FROM patient_app WHERE client_id = $1")
                    .bind(client_id)
                    .fetch_optional(self.read())
                    .await
                    .map_err(db)?
                    .map(|r| Ok((PracticeId::from_uuid(r.uuid("practice_id")?), rows::patient_app(&r, "id")?)))
                    .transpose()
            }

            async fn create_app_link(&self, practice: PracticeId, l: &AppLink, t: &Task, audit: &AuditRecord) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO app_link (practice_id, id, app_id, patient_id, via, linkage_ref, token_hash, linked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(practice.as_uuid())
                .bind(l.id.as_uuid())
                .bind(l.app.as_uuid())
                .bind(l.patient.as_uuid())
                .bind(l.via.as_str())
                .bind(&l.linkage_ref)
                .bind(l.token_hash.to_vec())
                .bind(l.linked_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                Self::insert_task(&mut tx, practice, t).await?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn app_link(&self, practice: PracticeId, id: AppLinkId) -> StoreResult<Option<AppLink>> {
                self.row_by("SELECT * FROM app_link WHERE practice_id = $1 AND id = $2", practice, id.as_uuid(), rows::app_link).await
            }

            async fn app_links_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<(AppLink, PatientApp)>> {
                sqlx::query(
                    "SELECT l.*, a.id AS a_id, a.name, a.supplier, a.client_id, a.client_secret_hash, a.nhs_login_client_id, a.active, a.created_at \
                     FROM app_link l JOIN patient_app a ON a.practice_id = l.practice_id AND a.id = l.app_id \
                     WHERE l.practice_id = $1 AND l.patient_id = $2 ORDER BY l.linked_at DESC",
                )
                .bind(practice.as_uuid())
                .bind(patient.as_uuid())
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((rows::app_link(r)?, rows::patient_app(r, "a_id")?)))
                .collect()
            }

            async fn revoke_app_links(
                &self,
                practice: PracticeId,
                patient: PatientId,
                only: Option<AppLinkId>,
                why: &str,
                at: DateTime<Utc>,
                audit: &AuditRecord,
            ) -> StoreResult<u64> {
                let mut tx = self.begin().await?;
                let done = match only {
                    Some(id) => sqlx::query(
                        "UPDATE app_link SET revoked_at = $1, revoked_why = $2 WHERE practice_id = $3 AND patient_id = $4 \
                         AND revoked_at IS NULL AND id = $5",
                    )
                    .bind(at)
                    .bind(why)
                    .bind(practice.as_uuid())
                    .bind(patient.as_uuid())
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?,
                    None => sqlx::query(
                        "UPDATE app_link SET revoked_at = $1, revoked_why = $2 WHERE practice_id = $3 AND patient_id = $4 \
                         AND revoked_at IS NULL",
                    )
                    .bind(at)
                    .bind(why)
                    .bind(practice.as_uuid())
                    .bind(patient.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?,
                };
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)?;
                Ok(done.rows_affected())
            }

            async fn entry(&self, practice: PracticeId, id: EntryId) -> StoreResult<Option<Entry>> {
                let sql = format!("SELECT {ENTRY_COLUMNS} FROM entry WHERE practice_id = $1 AND id = $2");
                self.row_by(&sql, practice, id.as_uuid(), rows::entry).await
            }

            async fn entries(&self, practice: PracticeId, patient: PatientId, q: EntryQuery) -> StoreResult<Vec<Entry>> {
                self.hot_entries(practice, patient, q).await
            }

            async fn entry_count(&self, practice: PracticeId, patient: PatientId) -> StoreResult<i64> {
                sqlx::query("SELECT COUNT(*) AS n FROM entry WHERE practice_id = $1 AND patient_id = $2")
                    .bind(practice.as_uuid())
                    .bind(patient.as_uuid())
                    .fetch_one(self.read())
                    .await
                    .map_err(db)?
                    .try_get("n")
                    .map_err(db)
            }

            async fn split_entry(&self, practice: PracticeId, original: EntryId, parts: &[Entry], audit: &AuditRecord) -> StoreResult<()> {
                let Some(patient) = parts.first().map(|p| p.patient) else {
                    return Err(StoreError::Conflict("a split needs parts".into()));
                };
                let mut tx = self.begin().await?;
                let done = sqlx::query("DELETE FROM entry WHERE practice_id = $1 AND id = $2 AND patient_id = $3")
                    .bind(practice.as_uuid())
                    .bind(original.as_uuid())
                    .bind(patient.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("entry"));
                }
                for part in parts {
                    Self::insert_entry(&mut tx, practice, part).await?;
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn filing_queue(&self, practice: PracticeId, limit: u32) -> StoreResult<Vec<(Entry, PatientListing)>> {
                let columns: Vec<String> = ENTRY_COLUMNS.split(", ").map(|c| format!("e.{}", c.trim())).collect();
                let sql = format!(
                    "SELECT {}, p.id AS p_id, p.nhs_number, p.title, p.given_name, p.family_name, p.date_of_birth, p.sex, \
                     p.address_lines, p.postcode, p.date_of_death \
                     FROM entry e JOIN patient p ON p.practice_id = e.practice_id AND p.id = e.patient_id \
                     WHERE e.practice_id = $1 AND e.awaiting_filing ORDER BY e.entered_at, e.id LIMIT $2",
                    columns.join(", ")
                );
                sqlx::query(&sql)
                    .bind(practice.as_uuid())
                    .bind(i64::from(limit))
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| Ok((rows::entry(r)?, rows::listing(r)?)))
                    .collect()
            }

            async fn file_entry(&self, practice: PracticeId, e: &Entry, audit: &AuditRecord) -> StoreResult<()> {
                let (reason, note, by, at) = visibility_columns(&e.visibility);
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE entry SET body = $1, awaiting_filing = $2, hidden_reason = $3, hidden_note = $4, hidden_by = $5, \
                     hidden_at = $6 WHERE practice_id = $7 AND id = $8 AND awaiting_filing",
                )
                .bind(json(&e.body)?)
                .bind(e.awaits_filing())
                .bind(reason)
                .bind(note)
                .bind(by)
                .bind(at)
                .bind(practice.as_uuid())
                .bind(e.id.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("entry waiting to be filed"));
                }
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn set_entries_visibility(&self, practice: PracticeId, changes: &[(EntryId, OnlineVisibility, AuditRecord)]) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                for (entry, v, _) in changes {
                    let (reason, note, by, at) = visibility_columns(v);
                    let done = sqlx::query(
                        "UPDATE entry SET hidden_reason = $1, hidden_note = $2, hidden_by = $3, hidden_at = $4 \
                         WHERE practice_id = $5 AND id = $6",
                    )
                    .bind(reason)
                    .bind(note)
                    .bind(by)
                    .bind(at)
                    .bind(practice.as_uuid())
                    .bind(entry.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("entry"));
                    }
                }
                let audits: Vec<&AuditRecord> = changes.iter().map(|(_, _, a)| a).collect();
                Self::append_in(&mut tx, practice, &audits).await?;
                tx.commit().await.map_err(db)
            }

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
                tx.commit().await.map_err(db)
            }

            async fn audit_head(&self, practice: PracticeId) -> StoreResult<ChainHead> {
                let r = sqlx::query("SELECT count, hash FROM audit_head WHERE practice_id = $1")
                    .bind(practice.as_uuid())
                    .fetch_optional(self.read())
                    .await
                    .map_err(db)?
                    .ok_or(StoreError::NotFound("practice audit chain"))?;
                let hash: Vec<u8> = r.try_get("hash").map_err(db)?;
                Ok(ChainHead {
                    count: r.try_get("count").map_err(db)?,
                    hash: ChainHash::from_slice(&hash).ok_or_else(|| StoreError::Corrupt("audit head hash".into()))?,
                })
            }

            async fn audit_events(&self, practice: PracticeId, after: i64, limit: i64) -> StoreResult<Vec<StoredEvent>> {
                sqlx::query(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_event WHERE practice_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ))
                .bind(practice.as_uuid())
                .bind(after)
                .bind(limit)
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .map(rows::audit_event)
                .collect()
            }

            async fn audit_for_patient(&self, practice: PracticeId, patient: PatientId, limit: i64) -> StoreResult<Vec<StoredEvent>> {
                sqlx::query(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_event WHERE practice_id = $1 AND patient_id = $2 ORDER BY seq DESC LIMIT $3"
                ))
                .bind(practice.as_uuid())
                .bind(patient.to_string())
                .bind(limit)
                .fetch_all(self.read())
                .await
                .map_err(db)?
                .iter()
                .map(rows::audit_event)
                .collect()
            }
        }
    };
}

/// The reads on every request's path, through sqlx (PostgreSQL). The embedded SQLite store has
/// its own, without thread hand-offs (`sqlite_fast`); both use the same SQL text.
macro_rules! sqlx_hot_reads {
    ($Store:ident) => {
        impl $Store {
            async fn hot_practice(&self, id: PracticeId) -> StoreResult<Option<Practice>> {
                sqlx::query(PRACTICE_BY_ID)
                    .bind(id.as_uuid())
                    .fetch_optional(self.read())
                    .await
                    .map_err(db)?
                    .map(|r| rows::practice(&r))
                    .transpose()
            }

            async fn hot_token_and_staff(
                &self,
                practice: PracticeId,
                id: TokenId,
            ) -> StoreResult<Option<(ApiToken, StaffMember)>> {
                let Some(r) = sqlx::query(TOKEN_AND_STAFF)
                    .bind(practice.as_uuid())
                    .bind(id.as_uuid())
                    .fetch_optional(self.read())
                    .await
                    .map_err(db)?
                else {
                    return Ok(None);
                };
                Ok(Some((rows::token(practice, id, &r)?, rows::staff(practice, &r)?)))
            }

            async fn hot_patient(&self, practice: PracticeId, key: PatientKey<'_>) -> StoreResult<Option<Patient>> {
                let q = sqlx::query(key.sql()).bind(practice.as_uuid());
                let q = match key {
                    PatientKey::Id(id) => q.bind(id),
                    PatientKey::Nhs(n) => q.bind(n),
                };
                let found = q.fetch_all(self.read()).await.map_err(db)?;
                let Some(first) = found.first() else { return Ok(None) };
                let regs = found
                    .iter()
                    .map(rows::joined_registration)
                    .filter_map(Result::transpose)
                    .collect::<StoreResult<_>>()?;
                rows::patient(practice, first, regs).map(Some)
            }

            async fn hot_access_facts(&self, practice: PracticeId, patient: PatientId) -> StoreResult<AccessFacts> {
                let found = sqlx::query(ACCESS_FACTS)
                    .bind(practice.as_uuid())
                    .bind(patient.as_uuid())
                    .bind(ENHANCED_REVIEW_INDICATED)
                    .bind(ENHANCED_REVIEW_NOT_INDICATED)
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?;
                let mut fold = rows::FactsFold::default();
                for r in &found {
                    fold.push(r)?;
                }
                fold.finish()
            }

            async fn hot_entries(
                &self,
                practice: PracticeId,
                patient: PatientId,
                q: EntryQuery,
            ) -> StoreResult<Vec<Entry>> {
                let sql = entries_sql(&q);
                let mut query = sqlx::query(&sql).bind(practice.as_uuid()).bind(patient.as_uuid());
                if let Some(c) = q.after {
                    query = query.bind(c.event_date).bind(c.entered_at).bind(c.id.as_uuid());
                }
                for k in q.section.map(|s| s.kinds()).unwrap_or(&[]) {
                    query = query.bind(k.as_str());
                }
                query
                    .bind(i64::from(q.limit))
                    .fetch_all(self.read())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(rows::entry)
                    .collect()
            }
        }
    };
}

/// How a patient is looked up.
pub(crate) enum PatientKey<'a> {
    Id(Uuid),
    Nhs(&'a str),
}

impl PatientKey<'_> {
    pub(crate) fn sql(&self) -> &'static str {
        match self {
            Self::Id(_) => PATIENT_BY_ID,
            Self::Nhs(_) => PATIENT_BY_NHS_NUMBER,
        }
    }
}

/// The embedded store: one SQLite file in WAL mode with `synchronous=FULL` and foreign keys on.
/// Writes go through one connection (SQLite has one writer at a time; queuing them here avoids
/// lock contention), reads through a pool.
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    pub(crate) fast: crate::sqlite_fast::FastReads,
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// Copies the write-ahead log back into the database file once a second, on a connection of
/// its own, so that the writer (and the requests waiting for their audit commit) never stall on
/// a checkpoint. A PASSIVE checkpoint never blocks readers or the writer.
fn spawn_checkpointer(options: SqliteConnectOptions) -> tokio::task::JoinHandle<()> {
    use sqlx::{ConnectOptions, Connection};
    // Its own connection: a checkpoint may wait for the writer, which is no cause for alarm.
    let options = options
        .busy_timeout(Duration::from_secs(1))
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::ZERO);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn = None;
        loop {
            tick.tick().await;
            if conn.is_none() {
                conn = options
                    .connect()
                    .await
                    .map_err(|e| tracing::warn!(error = %e, "checkpoint connection failed"))
                    .ok();
            }
            let Some(c) = conn.as_mut() else { continue };
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&mut *c).await {
                tracing::warn!(error = %e, "WAL checkpoint failed; will try again");
                if let Some(c) = conn.take() {
                    let _ = c.close().await;
                }
            }
        }
    })
}

impl SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;

    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        refuse_network_filesystem(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            // Reads through a memory map instead of a read() call per page.
            .pragma("mmap_size", "268435456")
            // Once the log restarts, cut the file back so it never stays large.
            .pragma("journal_size_limit", "67108864")
            // A page of entries comes back without the worker thread waiting on the reader.
            .row_buffer_size(512);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // A request dropped half-way through starting a transaction (a client that hangs up,
            // a worker stopped) can leave sqlx's count of open transactions out of step with the
            // connection (sqlx issue #3932), and every later write would then fail. Such a
            // connection is closed, which rolls back whatever it held, instead of going back to
            // the pool.
            .after_release(|conn, _| {
                Box::pin(async move {
                    Ok(<sqlx::sqlite::SqliteTransactionManager as sqlx::TransactionManager>::get_transaction_depth(
                        conn,
                    ) == 0)
                })
            })
            // Checkpoints are left to the background checkpointer.
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // Each SQLite connection has a worker thread; more readers than cores only adds switching.
        let readers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4) as u32 * 4;
        let read = SqlitePoolOptions::new()
            .max_connections(readers)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(db)?;
        let checkpointer = spawn_checkpointer(options.clone());
        let store = Self { write, read, fast: crate::sqlite_fast::FastReads::new(path), checkpointer };
        store.check_durability().await?;
        store.migrate().await?;
        Ok(store)
    }

    fn read(&self) -> &SqlitePool {
        &self.read
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        // IMMEDIATE takes the write lock at once, so a transaction that reads before it writes
        // cannot fail half-way because another process wrote in between.
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }

    /// T21: refuse to run unless every connection is configured for durability.
    async fn check_durability(&self) -> StoreResult<()> {
        for pool in [&self.write, &self.read] {
            let mut conn = pool.acquire().await.map_err(db)?;
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await.map_err(db)?;
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.map_err(db)?;
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *conn).await.map_err(db)?;
            durability_verdict(&mode, sync, fk)?;
        }
        Ok(())
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.write.acquire().await.map_err(db)?;
        sqlx::raw_sql(migrate::CREATE_TABLE).execute(&mut *conn).await.map_err(db)?;
        drop(conn);
        run_migrations_sqlite(&self.write, migrate::SQLITE).await
    }
}

/// File systems on which SQLite's locking and WAL shared memory are not reliable.
const NETWORK_FILESYSTEMS: &[&str] = &["nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "afs", "ncpfs"];

/// The file system type of the mount that holds `path`, from a `/proc/mounts` listing.
fn filesystem_of(path: &Path, mounts: &str) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_dev, mount, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            let mount = mount.replace("\\040", " ");
            path.starts_with(&mount).then(|| (mount.len(), fstype.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fstype)| fstype)
}

/// T21: SQLite must not run on a network file system (its locks and WAL index are unreliable
/// there). Where the mount table cannot be read the check is skipped.
fn refuse_network_filesystem(path: &Path) -> StoreResult<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(dir) = dir.canonicalize() else { return Ok(()) };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return Ok(()) };
    match filesystem_of(&dir, &mounts) {
        Some(fs) if NETWORK_FILESYSTEMS.contains(&fs.as_str()) => Err(StoreError::UnsafeConfiguration(format!(
            "{} is on a network file system ({fs}); keep the SQLite database on a local disk, or use PostgreSQL",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The durability settings SQLite must run with (T21).
pub(crate) fn durability_verdict(journal_mode: &str, synchronous: i64, foreign_keys: i64) -> StoreResult<()> {
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::UnsafeConfiguration(format!(
            "SQLite journal_mode is {journal_mode}, not WAL (is the database on a network file system?)"
        )));
    }
    if synchronous < 2 {
        return Err(StoreError::UnsafeConfiguration(format!(
            "SQLite synchronous is {synchronous}; FULL (2) or EXTRA (3) is needed so that commits survive power loss"
        )));
    }
    if foreign_keys != 1 {
        return Err(StoreError::UnsafeConfiguration("SQLite foreign_keys is off".into()));
    }
    Ok(())
}

/// The durability settings PostgreSQL must run with (T21).
pub(crate) fn pg_durability_verdict(fsync: &str, full_page_writes: &str, synchronous_commit: &str) -> StoreResult<()> {
    if fsync != "on" {
        return Err(StoreError::UnsafeConfiguration(format!("PostgreSQL fsync is {fsync}; it must be on")));
    }
    if full_page_writes != "on" {
        return Err(StoreError::UnsafeConfiguration(format!(
            "PostgreSQL full_page_writes is {full_page_writes}; it must be on"
        )));
    }
    if !["on", "remote_write", "remote_apply"].contains(&synchronous_commit) {
        return Err(StoreError::UnsafeConfiguration(format!(
            "PostgreSQL synchronous_commit is {synchronous_commit}; it must be on (or remote_write/remote_apply)"
        )));
    }
    Ok(())
}

macro_rules! migration_runner {
    ($name:ident, $DB:ty, $Pool:ty) => {
        async fn $name(pool: &$Pool, all: &[Migration]) -> StoreResult<()> {
            let applied: Vec<(i64, String)> =
                sqlx::query("SELECT version, checksum FROM schema_migration ORDER BY version")
                    .fetch_all(pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| Ok((r.try_get("version").map_err(db)?, r.try_get("checksum").map_err(db)?)))
                    .collect::<StoreResult<_>>()?;
            for m in migrate::pending(all, &applied)? {
                let mut tx = pool.begin().await.map_err(db)?;
                sqlx::raw_sql(m.sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::Migration(format!("{} ({}): {e}", m.version, m.name)))?;
                sqlx::query(
                    "INSERT INTO schema_migration (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(m.version)
                .bind(m.name)
                .bind(migrate::checksum(m.sql))
                .bind(Utc::now().to_rfc3339())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                tracing::info!(version = m.version, name = m.name, "applied schema migration");
            }
            Ok(())
        }
    };
}

migration_runner!(run_migrations_sqlite, sqlx::Sqlite, SqlitePool);
migration_runner!(run_migrations_postgres, sqlx::Postgres, PgPool);

/// The shared store: PostgreSQL, for many practices on one service.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    const BACKEND: Backend = Backend::Postgres;

    /// Connects, optionally inside one schema (tests use a fresh schema each), checks durability
    /// settings and migrates.
    pub async fn connect(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        let mut options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?;
        if let Some(schema) = schema {
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {}: {e}", redact_url(url))))?;
        let store = Self { pool };
        store.check_durability().await?;
        let lock_key = 0x00ca_1d1c_0771_i64;
        // One migrator at a time when several servers start together.
        let mut conn = store.pool.acquire().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(lock_key).execute(&mut *conn).await.map_err(db)?;
        let result = async {
            sqlx::raw_sql(migrate::CREATE_TABLE).execute(&store.pool).await.map_err(db)?;
            run_migrations_postgres(&store.pool, migrate::POSTGRES).await
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(lock_key).execute(&mut *conn).await.map_err(db)?;
        result?;
        Ok(store)
    }

    fn read(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(db)
    }

    async fn check_durability(&self) -> StoreResult<()> {
        let show = |name: &'static str| async move {
            sqlx::query_scalar::<_, String>(&format!("SHOW {name}")).fetch_one(&self.pool).await.map_err(db)
        };
        pg_durability_verdict(
            &show("fsync").await?,
            &show("full_page_writes").await?,
            &show("synchronous_commit").await?,
        )
    }
}

sql_store!(SqliteStore, sqlx::Sqlite, lock = "");
sql_store!(PostgresStore, sqlx::Postgres, lock = " FOR UPDATE");
sqlx_hot_reads!(PostgresStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_sqlite_settings_are_refused() {
        // T21
        assert!(durability_verdict("wal", 2, 1).is_ok());
        assert!(durability_verdict("WAL", 3, 1).is_ok());
        assert!(matches!(durability_verdict("delete", 2, 1), Err(StoreError::UnsafeConfiguration(_))));
        assert!(matches!(durability_verdict("wal", 1, 1), Err(StoreError::UnsafeConfiguration(_))));
        assert!(matches!(durability_verdict("wal", 2, 0), Err(StoreError::UnsafeConfiguration(_))));
    }

    #[test]
    fn unsafe_postgres_settings_are_refused() {
        // T21
        assert!(pg_durability_verdict("on", "on", "on").is_ok());
        assert!(pg_durability_verdict("on", "on", "remote_apply").is_ok());
        assert!(pg_durability_verdict("off", "on", "on").is_err());
        assert!(pg_durability_verdict("on", "off", "on").is_err());
        assert!(pg_durability_verdict("on", "on", "off").is_err());
        assert!(pg_durability_verdict("on", "on", "local").is_err());
    }

    #[test]
    fn databases_on_network_file_systems_are_recognised() {
        // T21
        let mounts = "/dev/vda / ext4 rw 0 0\nserver:/export /mnt/nfs nfs4 rw 0 0\n//nas/share /mnt/smb cifs rw 0 0\n";
        assert_eq!(filesystem_of(Path::new("/srv/data"), mounts).as_deref(), Some("ext4"));
        assert_eq!(filesystem_of(Path::new("/mnt/nfs/caldicott"), mounts).as_deref(), Some("nfs4"));
        assert_eq!(filesystem_of(Path::new("/mnt/smb"), mounts).as_deref(), Some("cifs"));
        assert!(NETWORK_FILESYSTEMS.contains(&"nfs4"));
        assert!(refuse_network_filesystem(Path::new("relative/dir/x.db")).is_ok());
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("data/caldicott.db"), "data/caldicott.db");
    }
}
