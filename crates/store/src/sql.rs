//! The SQL implementations. One body of code, written once in `sql_store!`, serves both
//! databases: queries use `$n` placeholders in order of first use (which SQLite reads as named
//! parameters), and every value is bound as a type both drivers encode (UUID, chrono dates and
//! times, text, integers, booleans, bytes). Only the schema (see `migrations/`) and connection
//! setup differ.

use crate::db::{insert_rows, query, Bind, Pool, Query, Row, Tx};
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
use uuid::Uuid;

/// The store on either database: SQLite for one practice, PostgreSQL (or Citus) for many.
/// Opened by [`SqlStore::open_sqlite`] or [`SqlStore::connect_postgres`] (in `connect`).
pub struct SqlStore {
    backend: Backend,
    /// Transactions: on SQLite, one connection (its one writer); on PostgreSQL, the pool.
    write: Pool,
    read: Pool,
    /// SQLite's reads on every request's path, on rusqlite.
    fast: Option<crate::sqlite_fast::FastReads>,
    /// SQLite's background WAL checkpointer.
    checkpointer: Option<tokio::task::JoinHandle<()>>,
}

mod appointments;
mod audit;
mod chat;
pub(crate) mod citus;
mod connect;
mod credentials;
mod documents;
pub(crate) mod fhir;
mod governance;
mod inbound;
mod outbox;
mod patient_services;
mod patients;
mod practices;
mod records;
mod sar;
mod staff;
mod tasks;

/// Maps a driver error to a domain error, in one place. A unique key is named by what it means
/// ([`Conflict`]); the database's own message goes to the log, never into the error.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) => match d.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                let conflict = if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    let columns = pg.detail().and_then(Conflict::postgres_columns).unwrap_or_default();
                    Conflict::of_unique_key(Conflict::unsharded(pg.table().unwrap_or_default()), &columns)
                } else {
                    Conflict::sqlite_key(d.message())
                        .map_or(Conflict::AlreadyExists, |(table, columns)| Conflict::of_unique_key(table, &columns))
                };
                tracing::debug!(error = %d.message(), ?conflict, "unique key conflict");
                StoreError::Conflict(conflict)
            }
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                tracing::debug!(error = %d.message(), "foreign key conflict");
                StoreError::Conflict(Conflict::MissingReference)
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
        Origin::PatientEntered => ("patient", None),
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

/// An integration's access token with the integration it stands on: the one read that tells
/// who a practice integration's request is from.
pub(crate) const SYSTEM_TOKEN_AND_INTEGRATION: &str =
    "SELECT t.token_hash, t.integration_id, t.scopes AS token_scopes, t.issued_at, t.expires_at, i.* \
     FROM fhir_system_token t JOIN fhir_integration i ON i.practice_id = t.practice_id AND i.id = t.integration_id \
     WHERE t.practice_id = $1 AND t.token_hash = $2";

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

/// Whose password: a member of staff's, or the login of a patient's online account.
#[derive(Clone, Copy)]
enum Login {
    Staff(StaffId),
    Patient(AccountId),
}

impl Login {
    fn id(self) -> Uuid {
        match self {
            Login::Staff(s) => s.as_uuid(),
            Login::Patient(a) => a.as_uuid(),
        }
    }
}

/// Whose sessions: staff's (`staff_session`) or patients' (`patient_session`).
#[derive(Clone, Copy)]
enum Sessions {
    Staff,
    Patient,
}

impl SqlStore {
    /// Rows of `sql`, whose two parameters are the practice and one key, mapped by `map`.
    async fn rows_by<T>(
        &self,
        sql: &str,
        practice: PracticeId,
        key: impl Bind + Send,
        map: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        query(sql).bind(practice.as_uuid()).bind(key).fetch_all(self.read()).await?.iter().map(map).collect()
    }

    /// The one row of `sql` (practice and one key), if there is one.
    async fn row_by<T>(
        &self,
        sql: &str,
        practice: PracticeId,
        key: impl Bind + Send,
        map: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        Ok(self.rows_by(sql, practice, key, map).await?.into_iter().next())
    }

    /// Sets the password hash of a member of staff or of a patient's login, and ends every
    /// session of theirs but `keep`.
    async fn put_password(
        tx: &mut Tx,
        practice: PracticeId,
        whose: Login,
        password_hash: &str,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (set, end_others, what) = match whose {
            Login::Staff(_) => (
                "UPDATE staff SET password_hash = $1 WHERE practice_id = $2 AND id = $3",
                "UPDATE staff_session SET ended_at = $1 WHERE practice_id = $2 AND staff_id = $3 \
                 AND ended_at IS NULL AND id <> $4",
                "staff member",
            ),
            Login::Patient(_) => (
                "UPDATE patient_login SET password_hash = $1 WHERE practice_id = $2 AND account_id = $3",
                "UPDATE patient_session SET ended_at = $1 WHERE practice_id = $2 AND account_id = $3 \
                 AND ended_at IS NULL AND id <> $4",
                "patient login",
            ),
        };
        let id = whose.id();
        let q = query(set).bind(password_hash).bind(practice.as_uuid()).bind(id);
        Self::change_one_in(tx, q, StoreError::NotFound(what)).await?;
        query(end_others)
            .bind(at)
            .bind(practice.as_uuid())
            .bind(id)
            .bind(keep.map_or(Uuid::nil(), |k| k.as_uuid()))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Runs `q` inside `tx`, which must change a row: when it changes none, `missing` (the
    /// caller returns it, and the transaction, dropped, writes nothing).
    async fn change_one_in(tx: &mut Tx, q: Query<'_>, missing: StoreError) -> StoreResult<()> {
        if q.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(missing);
        }
        Ok(())
    }

    /// One statement in a transaction of its own, unaudited: the rows it changed.
    async fn execute_alone(&self, q: Query<'_>) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = q.execute(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Marks a live session (of staff or of a patient) seen at `at`.
    async fn touch_live_session(
        &self,
        sessions: Sessions,
        practice: PracticeId,
        id: SessionId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let sql = match sessions {
            Sessions::Staff => {
                "UPDATE staff_session SET last_seen_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL"
            }
            Sessions::Patient => {
                "UPDATE patient_session SET last_seen_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL"
            }
        };
        self.execute_alone(query(sql).bind(at).bind(practice.as_uuid()).bind(id.as_uuid())).await.map(drop)
    }

    /// The statement that ends a live session (of staff or of a patient) at `at`.
    fn end_live_session(sessions: Sessions, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> Query<'static> {
        let sql = match sessions {
            Sessions::Staff => {
                "UPDATE staff_session SET ended_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL"
            }
            Sessions::Patient => {
                "UPDATE patient_session SET ended_at = $1 WHERE practice_id = $2 AND id = $3 AND ended_at IS NULL"
            }
        };
        query(sql).bind(at).bind(practice.as_uuid()).bind(id.as_uuid())
    }

    /// Ends an audited write: appends `records` to the practice's audit chain inside `tx` and
    /// commits, so that the change and its audit land together or not at all.
    async fn commit_audited(mut tx: Tx, practice: PracticeId, records: &[&AuditRecord]) -> StoreResult<()> {
        Self::append_in(&mut tx, practice, records).await?;
        tx.commit().await
    }

    /// One statement and its audit events, committed together: the rows it changed.
    async fn execute_audited(&self, practice: PracticeId, q: Query<'_>, records: &[&AuditRecord]) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = q.execute(&mut tx).await?;
        Self::commit_audited(tx, practice, records).await?;
        Ok(done.rows_affected())
    }

    /// One statement that must change a row, and its audit events: when it changes none,
    /// `NotFound(what)` and nothing is written (the audit neither).
    async fn change_one_audited(
        &self,
        practice: PracticeId,
        q: Query<'_>,
        what: &'static str,
        records: &[&AuditRecord],
    ) -> StoreResult<()> {
        self.change_one_audited_or(practice, q, StoreError::NotFound(what), records).await
    }

    /// As [`Self::change_one_audited`], with the error to give when no row changes.
    async fn change_one_audited_or(
        &self,
        practice: PracticeId,
        q: Query<'_>,
        missing: StoreError,
        records: &[&AuditRecord],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::change_one_in(&mut tx, q, missing).await?;
        Self::commit_audited(tx, practice, records).await
    }

    /// Appends records to one practice's chain inside `tx`.
    async fn append_in(tx: &mut Tx, practice: PracticeId, records: &[&AuditRecord]) -> StoreResult<()> {
        let started = std::time::Instant::now();
        let lock = format!("SELECT count, hash FROM audit_head WHERE practice_id = $1{}", tx.row_lock());
        let row = query(&lock)
            .bind(practice.as_uuid())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("practice audit chain"))?;
        let hash: Vec<u8> = row.bytes("hash")?;
        let mut head = ChainHead {
            count: row.int("count")?,
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
            let (sql, args) = insert_rows(
                "INSERT INTO audit_event (practice_id, seq, id, at, actor_kind, actor_id, actor_role, patient_id, \
                 action, entity, outcome, detail, client_addr, prev_hash, hash)",
                chunk.iter().map(|e| {
                    vec![
                        practice.as_uuid().arg(),
                        e.seq.arg(),
                        e.id.arg(),
                        e.at.arg(),
                        e.actor_kind.arg(),
                        e.actor_id.arg(),
                        e.actor_role.arg(),
                        e.patient.arg(),
                        e.action.arg(),
                        e.entity.arg(),
                        e.outcome.arg(),
                        e.detail.arg(),
                        e.client.arg(),
                        e.prev_hash.arg(),
                        e.hash.arg(),
                    ]
                }),
            );
            query(&sql).bind_all(args).execute(&mut *tx).await?;
        }
        query("UPDATE audit_head SET count = $1, hash = $2 WHERE practice_id = $3")
            .bind(head.count)
            .bind(head.hash.0.to_vec())
            .bind(practice.as_uuid())
            .execute(&mut *tx)
            .await?;
        metrics::histogram!("caldicott_audit_append_seconds").record(started.elapsed().as_secs_f64());
        for e in &sealed {
            let who = match e.action.as_str() {
                "staff.sign_in_failed" => "staff",
                "patient.sign_in_failed" => "patient",
                _ => continue,
            };
            metrics::counter!("caldicott_sign_in_failures_total", "who" => who).increment(1);
        }
        Ok(())
    }

    async fn insert_patient(tx: &mut Tx, practice: PracticeId, p: &Patient) -> StoreResult<()> {
        if p.practice != practice {
            return Err(StoreError::refused("the patient belongs to another practice"));
        }
        query(
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
        .execute(&mut *tx)
        .await?;
        for (i, r) in p.registrations.iter().enumerate() {
            query(
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
            .execute(&mut *tx)
            .await?;
        }
        query("INSERT INTO access_setting (practice_id, patient_id, opted_out) VALUES ($1, $2, $3)")
            .bind(practice.as_uuid())
            .bind(p.id.as_uuid())
            .bind(false)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn write_access(
        tx: &mut Tx,
        practice: PracticeId,
        patient: PatientId,
        s: &OnlineAccessSettings,
    ) -> StoreResult<()> {
        let own = s.own_level.as_ref();
        let updated = query(
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
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("patient"));
        }
        query("DELETE FROM access_grant WHERE practice_id = $1 AND patient_id = $2")
            .bind(practice.as_uuid())
            .bind(patient.as_uuid())
            .execute(&mut *tx)
            .await?;
        for g in &s.grants {
            let from = match g.from {
                RecordFrom::Beginning => None,
                RecordFrom::Date(d) => Some(d),
            };
            query(
                "INSERT INTO access_grant (practice_id, patient_id, level, from_date, granted_on, granted_by) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(practice.as_uuid())
            .bind(patient.as_uuid())
            .bind(g.level.as_str())
            .bind(from)
            .bind(g.granted_on)
            .bind(&g.granted_by)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                // The grant's own key (patient and level) taken; any other conflict is told as it is.
                StoreError::Conflict(Conflict::AlreadyExists) => {
                    StoreError::refused(format!("two grants for the {} level", g.level.as_str()))
                }
                other => other,
            })?;
        }
        Ok(())
    }

    async fn insert_account(tx: &mut Tx, practice: PracticeId, a: &OnlineAccount) -> StoreResult<()> {
        query(
            "INSERT INTO online_account (practice_id, id, holder_id, kind, identity_level, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(practice.as_uuid())
        .bind(a.id.as_uuid())
        .bind(a.holder.as_uuid())
        .bind(a.kind.as_str())
        .bind(a.identity.as_str())
        .bind(a.created_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// The file of a document entry, inserted with it.
    async fn insert_file(
        tx: &mut Tx,
        practice: PracticeId,
        entry: EntryId,
        f: &crate::documents::StoredFile,
    ) -> StoreResult<()> {
        query(
            "INSERT INTO document_file (practice_id, entry_id, content_type, filename, size, sha1, content) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(practice.as_uuid())
        .bind(entry.as_uuid())
        .bind(&f.info.content_type)
        .bind(&f.info.filename)
        .bind(i64::try_from(f.info.size).map_err(|_| StoreError::refused("the file is too large"))?)
        .bind(f.info.sha1.to_vec())
        .bind(&f.content)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn insert_entry(tx: &mut Tx, practice: PracticeId, e: &Entry) -> StoreResult<()> {
        let (origin, origin_ods) = origin_columns(&e.origin);
        let (reason, note, by, at) = visibility_columns(&e.visibility);
        query(
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
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn insert_session(tx: &mut Tx, practice: PracticeId, x: &StaffSession) -> StoreResult<()> {
        query(
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
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn insert_task(tx: &mut Tx, practice: PracticeId, t: &Task) -> StoreResult<()> {
        query(
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
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn insert_message(tx: &mut Tx, practice: PracticeId, m: &OutboundMessage) -> StoreResult<()> {
        if Self::insert_message_once(tx, practice, m).await? {
            Ok(())
        } else {
            Err(StoreError::refused("a message with this idempotency key is already in the outbox"))
        }
    }

    /// Writes a message unless one with its idempotency key is already there; returns
    /// whether it was written.
    async fn insert_message_once(tx: &mut Tx, practice: PracticeId, m: &OutboundMessage) -> StoreResult<bool> {
        let done = query(
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
        .execute(&mut *tx)
        .await?;
        let written = done.rows_affected() == 1;
        if written && m.status == MessageStatus::Queued {
            Self::wake_outbox(tx, practice, m.next_attempt_at).await?;
        }
        Ok(written)
    }

    /// A message failed for good: if it is the latest message of an alert task that is
    /// done, the task opens again with the reason, audited in the same transaction (R23).
    async fn reopen_alert_of(
        tx: &mut Tx,
        practice: PracticeId,
        message: Uuid,
        error: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let Some(row) = query(
            "SELECT task_id, patient_id, channel, created_at FROM outbox WHERE practice_id = $1 AND id = $2 AND task_id IS NOT NULL",
        )
        .bind(practice.as_uuid())
        .bind(message)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(());
        };
        let task = row.uuid("task_id")?;
        let patient = row.uuid("patient_id")?;
        let channel = Channel::parse(&row.text("channel")?).ok_or_else(|| corrupt("channel", "unknown"))?;
        let created: DateTime<Utc> = row.time("created_at")?;
        let reopened = query(
            "UPDATE task SET status = 'open', outcome = $1, closed_at = NULL, closed_by = NULL \
             WHERE practice_id = $2 AND id = $3 AND status = 'done' \
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.practice_id = $2 AND o.task_id = $3 AND o.id <> $4 AND o.created_at > $5)",
        )
        .bind(undelivered_reason(channel, error))
        .bind(practice.as_uuid())
        .bind(task)
        .bind(message)
        .bind(created)
        .execute(&mut *tx)
        .await?;
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

    async fn insert_proxy(tx: &mut Tx, practice: PracticeId, l: &ProxyLink) -> StoreResult<()> {
        if l.patient == l.proxy {
            return Err(StoreError::refused("a patient cannot be their own proxy"));
        }
        let (status, since, reason) = proxy_status_columns(&l.status);
        let from = match l.scope.record_from {
            RecordFrom::Beginning => None,
            RecordFrom::Date(d) => Some(d),
        };
        query(&format!(
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
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }
    async fn health(&self) -> StoreResult<()> {
        query("SELECT 1").execute(self.read()).await?;
        Ok(())
    }
    async fn schema_current(&self) -> StoreResult<bool> {
        let known = match self.backend {
            Backend::Sqlite => crate::migrate::SQLITE,
            Backend::Postgres => crate::migrate::POSTGRES,
        };
        let row = query("SELECT COUNT(*) AS n, COALESCE(MAX(version), 0) AS latest FROM schema_migration")
            .fetch_one(self.read())
            .await?;
        let latest = known.last().map_or(0, |m| m.version);
        Ok(row.int("n")? == known.len() as i64 && row.int("latest")? == latest)
    }

    fn pool_use(&self) -> Vec<PoolUse> {
        [("write", &self.write), ("read", &self.read)]
            .into_iter()
            .map(|(pool, p)| {
                let (open, idle, max) = match p {
                    Pool::Sqlite(p) => (p.size(), p.num_idle() as u32, p.options().get_max_connections()),
                    Pool::Postgres(p) => (p.size(), p.num_idle() as u32, p.options().get_max_connections()),
                };
                PoolUse { pool, open, idle, max }
            })
            .collect()
    }

    async fn outbox_depth(&self) -> StoreResult<Vec<(String, String, i64)>> {
        query("SELECT channel, status, COUNT(*) AS n FROM outbox GROUP BY channel, status ORDER BY channel, status")
            .fetch_all(self.read())
            .await?
            .iter()
            .map(|r| Ok((r.text("channel")?, r.text("status")?, r.int("n")?)))
            .collect()
    }
}

/// The reads on every request's path: on SQLite through rusqlite, without sqlx's thread
/// hand-offs (`sqlite_fast`), and otherwise through sqlx; both use the same SQL text.
impl SqlStore {
    async fn hot_practice(&self, id: PracticeId) -> StoreResult<Option<Practice>> {
        if let Some(fast) = &self.fast {
            return fast.practice(id);
        }
        query(PRACTICE_BY_ID)
            .bind(id.as_uuid())
            .fetch_optional(self.read())
            .await?
            .map(|r| rows::practice(&r))
            .transpose()
    }

    async fn hot_token_and_staff(
        &self,
        practice: PracticeId,
        id: TokenId,
    ) -> StoreResult<Option<(ApiToken, StaffMember)>> {
        if let Some(fast) = &self.fast {
            return fast.token_and_staff(practice, id);
        }
        let Some(r) =
            query(TOKEN_AND_STAFF).bind(practice.as_uuid()).bind(id.as_uuid()).fetch_optional(self.read()).await?
        else {
            return Ok(None);
        };
        Ok(Some((rows::token(practice, id, &r)?, rows::staff(practice, &r)?)))
    }

    pub(crate) async fn hot_system_caller(
        &self,
        practice: PracticeId,
        hash: &[u8; 32],
    ) -> StoreResult<Option<(crate::fhir::SystemToken, crate::fhir::Integration)>> {
        if let Some(fast) = &self.fast {
            return fast.system_caller(practice, hash);
        }
        query(SYSTEM_TOKEN_AND_INTEGRATION)
            .bind(practice.as_uuid())
            .bind(hash.to_vec())
            .fetch_optional(self.read())
            .await?
            .map(|r| fhir::system_caller_row(&r))
            .transpose()
    }

    async fn hot_patient(&self, practice: PracticeId, key: PatientKey<'_>) -> StoreResult<Option<Patient>> {
        if let Some(fast) = &self.fast {
            return fast.patient(practice, key);
        }
        let q = query(key.sql()).bind(practice.as_uuid());
        let q = match key {
            PatientKey::Id(id) => q.bind(id),
            PatientKey::Nhs(n) => q.bind(n),
        };
        let found = q.fetch_all(self.read()).await?;
        let Some(first) = found.first() else { return Ok(None) };
        let regs =
            found.iter().map(rows::joined_registration).filter_map(Result::transpose).collect::<StoreResult<_>>()?;
        rows::patient(practice, first, regs).map(Some)
    }

    async fn hot_access_facts(&self, practice: PracticeId, patient: PatientId) -> StoreResult<AccessFacts> {
        if let Some(fast) = &self.fast {
            return fast.access_facts(practice, patient);
        }
        let found = query(ACCESS_FACTS)
            .bind(practice.as_uuid())
            .bind(patient.as_uuid())
            .bind(ENHANCED_REVIEW_INDICATED)
            .bind(ENHANCED_REVIEW_NOT_INDICATED)
            .fetch_all(self.read())
            .await?;
        let mut fold = rows::FactsFold::default();
        for r in &found {
            fold.push(r)?;
        }
        fold.finish()
    }

    async fn hot_entries(&self, practice: PracticeId, patient: PatientId, q: EntryQuery) -> StoreResult<Vec<Entry>> {
        if let Some(fast) = &self.fast {
            return fast.entries(practice, patient, q);
        }
        let sql = entries_sql(&q);
        let mut query = query(&sql).bind(practice.as_uuid()).bind(patient.as_uuid());
        if let Some(c) = q.after {
            query = query.bind(c.event_date).bind(c.entered_at).bind(c.id.as_uuid());
        }
        for k in q.section.map(|s| s.kinds()).unwrap_or(&[]) {
            query = query.bind(k.as_str());
        }
        query.bind(i64::from(q.limit)).fetch_all(self.read()).await?.iter().map(rows::entry).collect()
    }
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
