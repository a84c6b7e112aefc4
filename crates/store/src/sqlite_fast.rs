//! The embedded store's hot read path, on rusqlite.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every query and every row
//! across to it, which costs more than the query itself for the short, indexed look-ups every
//! request makes (see BENCHMARKS.md). These reads run instead on a small pool of rusqlite
//! connections to the same file, on the calling task: a token (a member of staff's, or a practice
//! integration's with its integration), a practice, a patient, their access facts and a page of
//! entries, each a few rows found by index. They use the same SQL
//! text as the PostgreSQL path and the same row mapping (`rows`). Writes, and any long read,
//! still go through sqlx.

use crate::rows;
use crate::sql::{
    entries_sql, PatientKey, ACCESS_FACTS, PRACTICE_BY_ID, SYSTEM_TOKEN_AND_INTEGRATION, TOKEN_AND_STAFF,
};
use crate::{AccessFacts, EntryQuery, StoreError, StoreResult};
use caldicott_core::entry::Entry;
use caldicott_core::ids::*;
use caldicott_core::patient::Patient;
use caldicott_core::practice::Practice;
use caldicott_core::snomed::{ENHANCED_REVIEW_INDICATED, ENHANCED_REVIEW_NOT_INDICATED};
use caldicott_core::staff::{ApiToken, StaffMember};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const IDLE_CONNECTIONS: usize = 8;

pub(crate) fn err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        rusqlite::Error::InvalidColumnName(_) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// A value bound exactly as sqlx-sqlite encodes it, so that comparisons in SQL agree.
enum Param<'a> {
    Uuid(uuid::Uuid),
    Text(&'a str),
    Date(NaiveDate),
    Time(DateTime<Utc>),
    Int(i64),
    Bytes(&'a [u8]),
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Uuid(u) => ToSqlOutput::Owned(Value::Blob(u.as_bytes().to_vec())),
            Param::Text(t) => ToSqlOutput::Owned(Value::Text((*t).to_owned())),
            Param::Date(d) => ToSqlOutput::Owned(Value::Text(d.format("%F").to_string())),
            Param::Time(t) => ToSqlOutput::Owned(Value::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))),
            Param::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Param::Bytes(b) => ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Blob(b)),
        })
    }
}

/// A few read-only rusqlite connections, opened on demand and kept for reuse.
pub(crate) struct FastReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl FastReads {
    pub(crate) fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), idle: Mutex::new(Vec::new()) }
    }

    fn open(&self) -> StoreResult<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        // These connections only ever read.
        conn.pragma_update(None, "query_only", true).map_err(err)?;
        conn.pragma_update(None, "mmap_size", 268_435_456i64).map_err(err)?;
        Ok(conn)
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match taken {
            Some(c) => c,
            None => self.open()?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
        result
    }

    /// Runs `sql` and hands each row to `f` as it is read.
    fn each(
        &self,
        sql: &str,
        params: &[Param<'_>],
        mut f: impl FnMut(&rusqlite::Row<'_>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(err)?;
            let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
            let mut rows = stmt.query(refs.as_slice()).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                f(row)?;
            }
            Ok(())
        })
    }

    fn rows<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        map: impl Fn(&rusqlite::Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        self.each(sql, params, |r| {
            out.push(map(r)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// The reads on every request's path, each a few rows found by index.
impl FastReads {
    pub(crate) fn practice(&self, id: PracticeId) -> StoreResult<Option<Practice>> {
        Ok(self.rows(PRACTICE_BY_ID, &[Param::Uuid(id.as_uuid())], |r| rows::practice(r))?.pop())
    }

    pub(crate) fn token_and_staff(
        &self,
        practice: PracticeId,
        id: TokenId,
    ) -> StoreResult<Option<(ApiToken, StaffMember)>> {
        let found = self.rows(TOKEN_AND_STAFF, &[Param::Uuid(practice.as_uuid()), Param::Uuid(id.as_uuid())], |r| {
            Ok((rows::token(practice, id, r)?, rows::staff(practice, r)?))
        })?;
        Ok(found.into_iter().next())
    }

    pub(crate) fn system_caller(
        &self,
        practice: PracticeId,
        hash: &[u8; 32],
    ) -> StoreResult<Option<(crate::fhir::SystemToken, crate::fhir::Integration)>> {
        let params = [Param::Uuid(practice.as_uuid()), Param::Bytes(hash)];
        Ok(self.rows(SYSTEM_TOKEN_AND_INTEGRATION, &params, |r| crate::sql::fhir::system_caller_row(r))?.pop())
    }

    pub(crate) fn patient(&self, practice: PracticeId, key: PatientKey<'_>) -> StoreResult<Option<Patient>> {
        let value = match key {
            PatientKey::Id(id) => Param::Uuid(id),
            PatientKey::Nhs(n) => Param::Text(n),
        };
        let mut patient: Option<Patient> = None;
        let mut registrations = Vec::new();
        self.each(key.sql(), &[Param::Uuid(practice.as_uuid()), value], |r| {
            if patient.is_none() {
                patient = Some(rows::patient(practice, r, Vec::new())?);
            }
            registrations.extend(rows::joined_registration(r)?);
            Ok(())
        })?;
        Ok(patient.map(|p| Patient { registrations, ..p }))
    }

    pub(crate) fn access_facts(&self, practice: PracticeId, patient: PatientId) -> StoreResult<AccessFacts> {
        let params = [
            Param::Uuid(practice.as_uuid()),
            Param::Uuid(patient.as_uuid()),
            Param::Text(ENHANCED_REVIEW_INDICATED),
            Param::Text(ENHANCED_REVIEW_NOT_INDICATED),
        ];
        let mut fold = rows::FactsFold::default();
        self.each(ACCESS_FACTS, &params, |r| fold.push(r))?;
        fold.finish()
    }

    pub(crate) fn entries(&self, practice: PracticeId, patient: PatientId, q: EntryQuery) -> StoreResult<Vec<Entry>> {
        let mut params = vec![Param::Uuid(practice.as_uuid()), Param::Uuid(patient.as_uuid())];
        if let Some(c) = q.after {
            params.extend([Param::Date(c.event_date), Param::Time(c.entered_at), Param::Uuid(c.id.as_uuid())]);
        }
        params.extend(q.section.map(|s| s.kinds()).unwrap_or(&[]).iter().map(|k| Param::Text(k.as_str())));
        params.push(Param::Int(i64::from(q.limit)));
        self.rows(&entries_sql(&q), &params, |r| rows::entry(r))
    }
}
