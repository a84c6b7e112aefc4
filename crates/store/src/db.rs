//! Running one SQL text on either database, so that the store's queries are ordinary code,
//! written once.
//!
//! A [`Query`] collects its values as [`Arg`]s, each typed as both drivers encode it (UUID,
//! text, integers, booleans, dates, times, bytes), and binds them to the driver of the
//! connection it runs on: a transaction ([`Tx`]) or a read pool ([`Pool`]). Rows come back as
//! [`Row`], read by column name through [`Cols`](crate::rows::Cols). Placeholders are `$n`
//! in order of first use, which SQLite reads as named parameters. The cost over calling sqlx
//! directly is one `match` and an owned copy of each bound text value (see BENCHMARKS.md).

use crate::sql::db;
use crate::StoreResult;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnection, PgPool, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool, SqliteRow};
use uuid::Uuid;

/// A value to bind, typed as both drivers encode it; `None` binds SQL NULL of that type.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    I64(Option<i64>),
    I32(Option<i32>),
    Bool(Option<bool>),
    Date(Option<NaiveDate>),
    Time(Option<DateTime<Utc>>),
    Bytes(Option<Vec<u8>>),
}

/// A Rust value that can be bound to a query.
pub(crate) trait Bind {
    fn arg(&self) -> Arg;
    /// NULL of this value's SQL type.
    fn null() -> Arg;
}

macro_rules! bind_as {
    ($($T:ty => $Variant:ident),* $(,)?) => {$(
        impl Bind for $T {
            fn arg(&self) -> Arg {
                Arg::$Variant(Some(self.to_owned().into()))
            }
            fn null() -> Arg {
                Arg::$Variant(None)
            }
        }
    )*};
}

bind_as!(Uuid => Uuid, String => Text, str => Text, i64 => I64, i32 => I32, bool => Bool,
    NaiveDate => Date, DateTime<Utc> => Time, Vec<u8> => Bytes, [u8] => Bytes);

impl<T: Bind> Bind for Option<T> {
    fn arg(&self) -> Arg {
        self.as_ref().map_or_else(T::null, Bind::arg)
    }
    fn null() -> Arg {
        T::null()
    }
}

impl<T: Bind + ?Sized> Bind for &T {
    fn arg(&self) -> Arg {
        (**self).arg()
    }
    fn null() -> Arg {
        T::null()
    }
}

/// One SQL statement and its values.
#[must_use = "a query does nothing until it is run"]
pub(crate) struct Query<'q> {
    sql: &'q str,
    args: Vec<Arg>,
}

/// A statement to run on either database.
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query { sql, args: Vec::new() }
}

/// One `INSERT` of many rows: `head` names the table and its columns, and each row gives its
/// values in the same order. Returns the statement and its values, to bind with
/// [`Query::bind_all`].
pub(crate) fn insert_rows(head: &str, rows: impl IntoIterator<Item = Vec<Arg>>) -> (String, Vec<Arg>) {
    let mut sql = format!("{head} VALUES ");
    let mut args = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&crate::sql::placeholders(args.len() + 1, row.len()));
        sql.push(')');
        args.extend(row);
    }
    (sql, args)
}

/// What a statement that returns no rows did.
pub(crate) struct Done {
    rows: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows
    }
}

/// Where a statement runs: inside a transaction, or on a read pool.
pub(crate) enum On<'c> {
    SqliteTx(&'c mut SqliteConnection),
    PostgresTx(&'c mut PgConnection),
    SqlitePool(&'c SqlitePool),
    PostgresPool(&'c PgPool),
}

/// A transaction on either database.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub(crate) async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await.map_err(db),
            Tx::Postgres(t) => t.commit().await.map_err(db),
        }
    }

    pub(crate) async fn rollback(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await.map_err(db),
            Tx::Postgres(t) => t.rollback().await.map_err(db),
        }
    }

    /// Runs a script of several statements without values (a schema migration).
    pub(crate) async fn run_script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => sqlx::raw_sql(sql).execute(&mut **t).await.map(drop),
            Tx::Postgres(t) => sqlx::raw_sql(sql).execute(&mut **t).await.map(drop),
        }
    }

    /// The clause that locks the rows a `SELECT` reads until the transaction ends. SQLite needs
    /// none: its transactions begin IMMEDIATE and so hold the one write lock already.
    pub(crate) fn row_lock(&self) -> &'static str {
        match self {
            Tx::Sqlite(_) => "",
            Tx::Postgres(_) => " FOR UPDATE",
        }
    }
}

impl<'c> From<&'c mut Tx> for On<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        match tx {
            Tx::Sqlite(t) => On::SqliteTx(t),
            Tx::Postgres(t) => On::PostgresTx(t),
        }
    }
}

/// A pool of connections to either database.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl<'c> From<&'c Pool> for On<'c> {
    fn from(pool: &'c Pool) -> Self {
        match pool {
            Pool::Sqlite(p) => On::SqlitePool(p),
            Pool::Postgres(p) => On::PostgresPool(p),
        }
    }
}

/// A row from either database.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// Binds every value of `$q` to the sqlx query for one driver.
macro_rules! with_args {
    ($q:expr) => {{
        let mut q = sqlx::query($q.sql);
        for a in $q.args {
            q = match a {
                Arg::Uuid(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::I64(v) => q.bind(v),
                Arg::I32(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Date(v) => q.bind(v),
                Arg::Time(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Runs the sqlx query method `$run` of `$q` on the connection `$on`, mapping its rows with
/// `$lite` or `$pg` and its error with [`db`].
macro_rules! run_on {
    ($q:expr, $on:expr, $run:ident, $lite:expr, $pg:expr) => {
        match $on.into() {
            On::SqliteTx(c) => with_args!($q).$run(c).await.map($lite).map_err(db),
            On::SqlitePool(p) => with_args!($q).$run(p).await.map($lite).map_err(db),
            On::PostgresTx(c) => with_args!($q).$run(c).await.map($pg).map_err(db),
            On::PostgresPool(p) => with_args!($q).$run(p).await.map($pg).map_err(db),
        }
    };
}

impl Query<'_> {
    pub(crate) fn bind(mut self, v: impl Bind) -> Self {
        self.args.push(v.arg());
        self
    }

    /// Binds values made elsewhere (a statement of many rows).
    pub(crate) fn bind_all(mut self, args: impl IntoIterator<Item = Arg>) -> Self {
        self.args.extend(args);
        self
    }

    pub(crate) async fn execute<'c>(self, on: impl Into<On<'c>>) -> StoreResult<Done> {
        run_on!(
            self,
            on,
            execute,
            |d: sqlx::sqlite::SqliteQueryResult| Done { rows: d.rows_affected() },
            |d: sqlx::postgres::PgQueryResult| Done { rows: d.rows_affected() }
        )
    }

    pub(crate) async fn fetch_all<'c>(self, on: impl Into<On<'c>>) -> StoreResult<Vec<Row>> {
        run_on!(self, on, fetch_all, |rows: Vec<SqliteRow>| rows.into_iter().map(Row::Sqlite).collect(), |rows: Vec<
            PgRow,
        >| {
            rows.into_iter().map(Row::Postgres).collect()
        })
    }

    pub(crate) async fn fetch_optional<'c>(self, on: impl Into<On<'c>>) -> StoreResult<Option<Row>> {
        run_on!(self, on, fetch_optional, |r: Option<SqliteRow>| r.map(Row::Sqlite), |r: Option<PgRow>| r
            .map(Row::Postgres))
    }

    pub(crate) async fn fetch_one<'c>(self, on: impl Into<On<'c>>) -> StoreResult<Row> {
        run_on!(self, on, fetch_one, Row::Sqlite, Row::Postgres)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_inserted_with_their_values_numbered_in_order() {
        let (sql, args) =
            insert_rows("INSERT INTO t (a, b)", [vec![1i64.arg(), "x".arg()], vec![2i64.arg(), None::<&str>.arg()]]);
        assert_eq!(sql, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        assert!(matches!(args.as_slice(), [Arg::I64(Some(1)), Arg::Text(Some(_)), Arg::I64(Some(2)), Arg::Text(None)]));
    }

    #[test]
    fn absent_values_bind_null_of_their_own_type() {
        assert!(matches!(Option::<&str>::None.arg(), Arg::Text(None)));
        assert!(matches!(Some("x").arg(), Arg::Text(Some(t)) if t == "x"));
        assert!(matches!(Option::<Uuid>::None.arg(), Arg::Uuid(None)));
        assert!(matches!(Bind::arg(&&Some(3i32)), Arg::I32(Some(3))));
        assert!(matches!(vec![1u8, 2].as_slice().arg(), Arg::Bytes(Some(b)) if b == [1, 2]));
    }
}
