//! Opening the store on either database: SQLite's durability and write queue, PostgreSQL's
//! pool and settings, the schema migrations, and the checks that refuse an unsafe setup (T21).

use super::{db, SqlStore};
use crate::db::{query, Pool, Tx};
use crate::migrate::{self, Migration};
use crate::rows::Cols;
use crate::{redact_url, Backend, StoreError, StoreResult};
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(c) = &self.checkpointer {
            c.abort();
        }
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

impl SqlStore {
    /// The embedded store: one SQLite file in WAL mode with `synchronous=FULL` and foreign keys
    /// on. Writes go through one connection (SQLite has one writer at a time; queuing them here
    /// avoids lock contention), reads through a pool, and the reads on every request's path
    /// through rusqlite (`sqlite_fast`).
    pub async fn open_sqlite(path: &Path) -> StoreResult<Self> {
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
        let store = Self {
            backend: Backend::Sqlite,
            write: Pool::Sqlite(write),
            read: Pool::Sqlite(read),
            fast: Some(crate::sqlite_fast::FastReads::new(path)),
            checkpointer: Some(checkpointer),
        };
        store.check_sqlite_durability().await?;
        let Pool::Sqlite(write) = &store.write else { unreachable!("opened on SQLite") };
        sqlx::raw_sql(migrate::CREATE_TABLE).execute(write).await.map_err(db)?;
        store.migrate(migrate::SQLITE).await?;
        Ok(store)
    }

    /// T21: refuse to run unless every SQLite connection is configured for durability.
    async fn check_sqlite_durability(&self) -> StoreResult<()> {
        for pool in [&self.write, &self.read] {
            let Pool::Sqlite(pool) = pool else { continue };
            let mut conn = pool.acquire().await.map_err(db)?;
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await.map_err(db)?;
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.map_err(db)?;
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *conn).await.map_err(db)?;
            durability_verdict(&mode, sync, fk)?;
        }
        Ok(())
    }

    /// Applies the migrations not yet applied, each in a transaction of its own.
    async fn migrate(&self, all: &[Migration]) -> StoreResult<()> {
        let applied: Vec<(i64, String)> = query("SELECT version, checksum FROM schema_migration ORDER BY version")
            .fetch_all(&self.write)
            .await?
            .iter()
            .map(|r| Ok((r.int("version")?, r.text("checksum")?)))
            .collect::<StoreResult<_>>()?;
        let citus = self.backend == Backend::Postgres && {
            let mut tx = self.begin().await?;
            let found = super::citus::present(&mut tx).await?;
            tx.rollback().await?;
            found
        };
        for m in migrate::pending(all, &applied)? {
            let mut tx = self.begin().await?;
            if citus {
                tx.run_script(super::citus::SESSION).await.map_err(db)?;
            }
            // On Citus one statement at a time (see `citus::statements`).
            let parts = if citus { super::citus::statements(m.sql) } else { vec![m.sql] };
            for part in parts {
                tx.run_script(part)
                    .await
                    .map_err(|e| StoreError::Migration(format!("{} ({}): {e}", m.version, m.name)))?;
            }
            if citus {
                // The tables this migration made take their place on the cluster, in its
                // transaction: a crash leaves the schema before the migration or after it.
                super::citus::place_new_tables(&mut tx).await?;
            }
            query("INSERT INTO schema_migration (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(migrate::checksum(m.sql))
                .bind(Utc::now().to_rfc3339())
                .execute(&mut tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version = m.version, name = m.name, "applied schema migration");
        }
        if citus {
            // A database migrated on plain PostgreSQL and then made a Citus coordinator: its
            // tables are placed now, in one transaction.
            let mut tx = self.begin().await?;
            tx.run_script(super::citus::SESSION).await.map_err(db)?;
            super::citus::place_new_tables(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// A transaction on the writer. On SQLite, IMMEDIATE takes the write lock at once, so a
    /// transaction that reads before it writes cannot fail half-way because another process
    /// wrote in between.
    pub(crate) async fn begin(&self) -> StoreResult<Tx> {
        match &self.write {
            Pool::Sqlite(p) => p.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite).map_err(db),
            Pool::Postgres(p) => p.begin().await.map(Tx::Postgres).map_err(db),
        }
    }

    /// The pool for reads outside a transaction.
    pub(crate) fn read(&self) -> &Pool {
        &self.read
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

impl SqlStore {
    /// The shared store: PostgreSQL, for many practices on one service. Connects, optionally
    /// inside one schema (tests use a fresh schema each), checks durability settings and migrates.
    pub async fn connect_postgres(url: &str, schema: Option<&str>) -> StoreResult<Self> {
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
        check_postgres_durability(&pool).await?;
        let store = Self {
            backend: Backend::Postgres,
            write: Pool::Postgres(pool.clone()),
            read: Pool::Postgres(pool.clone()),
            fast: None,
            checkpointer: None,
        };
        let lock_key = 0x00ca_1d1c_0771_i64;
        // One migrator at a time when several servers start together.
        let mut conn = pool.acquire().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(lock_key).execute(&mut *conn).await.map_err(db)?;
        let result = async {
            sqlx::raw_sql(migrate::CREATE_TABLE).execute(&pool).await.map_err(db)?;
            store.migrate(migrate::POSTGRES).await
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(lock_key).execute(&mut *conn).await.map_err(db)?;
        result?;
        Ok(store)
    }
}

async fn check_postgres_durability(pool: &sqlx::PgPool) -> StoreResult<()> {
    {
        let show = |name: &'static str| async move {
            sqlx::query_scalar::<_, String>(&format!("SHOW {name}")).fetch_one(pool).await.map_err(db)
        };
        pg_durability_verdict(
            &show("fsync").await?,
            &show("full_page_writes").await?,
            &show("synchronous_commit").await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::placeholders;

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
