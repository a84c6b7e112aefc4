//! Online backups and their restore, on either database.
//!
//! A backup is one file: a first line naming the format, a second line with the manifest (JSON:
//! the database kind, the schema version, every practice's audit chain head at the moment of the
//! copy, and the payload's length and SHA-256), then the payload:
//! - SQLite: a consistent copy of the database made by `VACUUM INTO` while the server runs (a
//!   read transaction: writers go on, the copy is the database as at one instant);
//! - PostgreSQL: a `pg_dump` archive in custom format, taken in a snapshot exported from a
//!   repeatable-read transaction in which the chain heads are read, so that the heads in the
//!   manifest are exactly those of the dump.
//!
//! A restore checks the payload against the manifest before it touches anything, refuses to
//! overwrite a database that holds caldicott data unless forced, and (on SQLite) builds the new
//! database beside the old one, so that the old one is replaced only once the new one has been
//! checked. The caller then checks each practice's audit chain against the manifest's heads.

use crate::redact_url;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Why a backup or a restore did not happen, in words for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackupError(pub String);

type StoreResult<T> = Result<T, BackupError>;

fn fail(why: impl Into<String>) -> BackupError {
    BackupError(why.into())
}

/// The first line of every backup file.
const MAGIC: &str = "caldicott-backup 1";

/// What a backup file says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// `sqlite` or `postgres`: a backup restores onto the same kind of database.
    pub database: String,
    /// The highest schema migration applied in the copy.
    pub schema_version: i64,
    /// When the copy was taken.
    pub taken_at: DateTime<Utc>,
    /// The caldicott version that took it.
    pub caldicott_version: String,
    /// Every practice's audit chain head in the copy.
    pub heads: Vec<Head>,
    /// The payload's length in bytes and its SHA-256 (hex).
    pub payload_bytes: u64,
    pub payload_sha256: String,
}

/// One practice's audit chain head: how many events, and the last one's chain hash (hex).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head {
    pub practice_id: Uuid,
    pub ods_code: String,
    pub count: i64,
    pub hash: String,
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    pub fn of(url: &str) -> Self {
        if crate::is_postgres(url) {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

use crate::sqlite_path;

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BackupError {
    move |e| fail(format!("{what}: {e}"))
}

fn sqlite_err(e: rusqlite::Error) -> BackupError {
    fail(e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file beside `path` to build into, removed when dropped unless kept.
struct Scratch(PathBuf);

impl Scratch {
    fn beside(path: &Path, what: &str) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
        Self(path.with_file_name(format!(".{name}.{what}-{}", Uuid::now_v7().simple())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// The chain heads and schema version, read on one connection (in whatever transaction it has).
fn sqlite_heads(conn: &rusqlite::Connection) -> StoreResult<(Vec<Head>, i64)> {
    let mut stmt = conn
        .prepare(
            "SELECT h.practice_id, p.ods_code, h.count, h.hash FROM audit_head h \
             JOIN practice p ON p.id = h.practice_id ORDER BY p.ods_code",
        )
        .map_err(sqlite_err)?;
    let heads = stmt
        .query_map([], |r| {
            let id: Vec<u8> = r.get(0)?;
            let hash: Vec<u8> = r.get(3)?;
            Ok((id, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, hex(&hash)))
        })
        .map_err(sqlite_err)?
        .map(|row| {
            let (id, ods_code, count, hash) = row.map_err(sqlite_err)?;
            let practice_id = Uuid::from_slice(&id).map_err(|e| fail(format!("practice id {}: {e}", hex(&id))))?;
            Ok(Head { practice_id, ods_code, count, hash })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let version: i64 = conn
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migration", [], |r| r.get(0))
        .map_err(sqlite_err)?;
    Ok((heads, version))
}

/// Takes a backup of the database at `url` into `out` (written beside it and moved into place
/// once complete, so that `out` is never half a backup). The server may be running.
pub async fn take(url: &str, out: &Path) -> StoreResult<Manifest> {
    let kind = Kind::of(url);
    let payload = Scratch::beside(out, "payload");
    let (heads, schema_version) = match kind {
        Kind::Sqlite => {
            let (src, dst) = (sqlite_path(url), payload.0.clone());
            tokio::task::spawn_blocking(move || sqlite_copy(&src, &dst)).await.map_err(|e| fail(e.to_string()))??
        }
        Kind::Postgres => pg_dump(url, &payload.0).await?,
    };
    let (payload_bytes, payload_sha256) = digest_file(&payload.0)?;
    let manifest = Manifest {
        database: kind.name().to_owned(),
        schema_version,
        taken_at: Utc::now(),
        caldicott_version: env!("CARGO_PKG_VERSION").to_owned(),
        heads,
        payload_bytes,
        payload_sha256,
    };
    let whole = Scratch::beside(out, "writing");
    {
        let mut f = std::fs::File::create(&whole.0).map_err(io(format!("writing {}", whole.0.display())))?;
        let header = serde_json::to_string(&manifest).map_err(|e| fail(e.to_string()))?;
        writeln!(f, "{MAGIC}\n{header}").map_err(io("writing the backup"))?;
        let mut from = std::fs::File::open(&payload.0).map_err(io("reading the copy"))?;
        std::io::copy(&mut from, &mut f).map_err(io("writing the backup"))?;
        f.sync_all().map_err(io("writing the backup"))?;
    }
    std::fs::rename(&whole.0, out).map_err(io(format!("moving the backup to {}", out.display())))?;
    Ok(manifest)
}

/// SQLite: `VACUUM INTO` a copy (one read transaction: a consistent instant, writers carry on),
/// then the heads as the copy has them, after an integrity check of the copy.
fn sqlite_copy(src: &Path, dst: &Path) -> StoreResult<(Vec<Head>, i64)> {
    use rusqlite::OpenFlags;
    if !src.exists() {
        return Err(fail(format!("there is no database at {}", src.display())));
    }
    let conn = rusqlite::Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(sqlite_err)?;
    conn.execute("VACUUM INTO ?1", [dst.display().to_string()]).map_err(sqlite_err)?;
    drop(conn);
    let copy = rusqlite::Connection::open_with_flags(dst, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_err)?;
    sqlite_integrity(&copy)?;
    sqlite_heads(&copy)
}

/// `PRAGMA integrity_check` and `foreign_key_check`: both must find nothing.
fn sqlite_integrity(conn: &rusqlite::Connection) -> StoreResult<()> {
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(sqlite_err)?;
    if verdict != "ok" {
        return Err(fail(format!("the SQLite integrity check failed: {verdict}")));
    }
    let mut fk = conn.prepare("PRAGMA foreign_key_check").map_err(sqlite_err)?;
    let broken = fk.query_map([], |r| r.get::<_, String>(0)).map_err(sqlite_err)?.count();
    if broken > 0 {
        return Err(fail(format!("{broken} row(s) refer to rows that are not there")));
    }
    Ok(())
}

/// The libpq connection string without its password, and the password (for `PGPASSWORD`, so
/// that it never shows in the process list).
fn libpq(url: &str) -> (String, Option<String>) {
    if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@')) {
        if at > scheme {
            let creds = &url[scheme + 3..at];
            if let Some(colon) = creds.find(':') {
                let password = percent_decode(&creds[colon + 1..]);
                return (format!("{}{}{}", &url[..scheme + 3], &creds[..colon], &url[at..]), Some(password));
            }
        }
    }
    (url.to_owned(), None)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a PostgreSQL client program (`pg_dump`, `pg_restore`) against `url`.
fn pg_tool(program: &str, url: &str) -> std::process::Command {
    let (conn, password) = libpq(url);
    let mut c = std::process::Command::new(program);
    c.arg(format!("--dbname={conn}"));
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    c
}

fn pg_tool_missing(program: &str, e: &std::io::Error) -> BackupError {
    if e.kind() == std::io::ErrorKind::NotFound {
        fail(format!(
            "{program} was not found: install PostgreSQL's client programs (Debian: postgresql-client, \
             the server's major version or later)"
        ))
    } else {
        fail(format!("running {program}: {e}"))
    }
}

/// PostgreSQL: a repeatable-read transaction exports its snapshot and reads the heads in it;
/// `pg_dump` dumps that same snapshot while the transaction stays open.
async fn pg_dump(url: &str, dst: &Path) -> StoreResult<(Vec<Head>, i64)> {
    use sqlx::{Connection, Row};
    let mut conn =
        sqlx::PgConnection::connect(url).await.map_err(|e| fail(format!("connecting to {}: {e}", redact_url(url))))?;
    let db = |e: sqlx::Error| fail(format!("reading the database: {e}"));
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut conn).await.map_err(db)?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()").fetch_one(&mut conn).await.map_err(db)?;
    let rows = sqlx::query(
        "SELECT h.practice_id, p.ods_code, h.count, h.hash FROM audit_head h \
         JOIN practice p ON p.id = h.practice_id ORDER BY p.ods_code",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(db)?;
    let heads = rows
        .iter()
        .map(|r| {
            Ok(Head {
                practice_id: r.try_get("practice_id").map_err(db)?,
                ods_code: r.try_get("ods_code").map_err(db)?,
                count: r.try_get("count").map_err(db)?,
                hash: hex(&r.try_get::<Vec<u8>, _>("hash").map_err(db)?),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migration")
        .fetch_one(&mut conn)
        .await
        .map_err(db)?;
    let mut cmd = pg_tool("pg_dump", url);
    cmd.args(["--format=custom", "--no-owner", "--no-privileges"])
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--file={}", dst.display()))
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| pg_tool_missing("pg_dump", &e))?;
    sqlx::query("COMMIT").execute(&mut conn).await.map_err(db)?;
    if !out.status.success() {
        return Err(fail(format!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok((heads, version))
}

fn digest_file(path: &Path) -> StoreResult<(u64, String)> {
    let mut f = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    digest(&mut f)
}

fn digest(r: &mut impl Read) -> StoreResult<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let got = r.read(&mut buf).map_err(io("reading the backup"))?;
        if got == 0 {
            break;
        }
        hasher.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, hex(&hasher.finalize())))
}

/// Opens a backup file positioned at its payload, with its manifest.
fn open_backup(file: &Path) -> StoreResult<(Manifest, BufReader<std::fs::File>)> {
    let f = std::fs::File::open(file).map_err(io(format!("reading {}", file.display())))?;
    let mut r = BufReader::new(f);
    let mut line = String::new();
    r.read_line(&mut line).map_err(io("reading the backup"))?;
    if line.trim_end() != MAGIC {
        return Err(fail(format!("{} is not a caldicott backup", file.display())));
    }
    line.clear();
    r.read_line(&mut line).map_err(io("reading the backup"))?;
    let manifest: Manifest = serde_json::from_str(line.trim_end())
        .map_err(|e| fail(format!("the backup's manifest cannot be read: {e}")))?;
    Ok((manifest, r))
}

/// Reads a backup's manifest and checks its payload against it (length and SHA-256).
pub fn check(file: &Path) -> StoreResult<Manifest> {
    let (manifest, mut r) = open_backup(file)?;
    let (n, sum) = digest(&mut r)?;
    if n != manifest.payload_bytes || sum != manifest.payload_sha256 {
        return Err(fail(format!(
            "{} is damaged: its contents do not match its manifest ({n} bytes, SHA-256 {sum}; expected {} bytes, {})",
            file.display(),
            manifest.payload_bytes,
            manifest.payload_sha256
        )));
    }
    Ok(manifest)
}

/// A restore written but not yet in place: on SQLite a new file beside the target; on
/// PostgreSQL the target itself (restored in one transaction).
pub struct Restored {
    pub manifest: Manifest,
    /// Where to open the restored database to check it before [`Restored::finish`].
    pub url: String,
    target: String,
    staged: Option<Scratch>,
}

impl Restored {
    /// Puts a checked SQLite restore in place of the target (a rename: all or nothing).
    pub fn finish(mut self) -> StoreResult<Manifest> {
        if let Some(staged) = self.staged.take() {
            let target = sqlite_path(&self.target);
            // The staged file was opened to check it: fold its log in first.
            let c = rusqlite::Connection::open(&staged.0).map_err(sqlite_err)?;
            c.busy_timeout(std::time::Duration::from_secs(30)).map_err(sqlite_err)?;
            let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(sqlite_err)?;
            if busy != 0 {
                return Err(fail("the restored copy is still in use and could not be put in place; run again"));
            }
            drop(c);
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
            }
            std::fs::rename(&staged.0, &target).map_err(io(format!("moving the restore to {}", target.display())))?;
            // Its log is empty now: the staged name's log and index go; the file is the target.
            std::mem::forget(staged);
            let staged = self.url.clone();
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{staged}{suffix}"));
            }
        }
        Ok(self.manifest)
    }
}

/// Whether the database at `url` already holds caldicott data.
pub async fn holds_data(url: &str) -> StoreResult<bool> {
    match Kind::of(url) {
        Kind::Sqlite => {
            let path = sqlite_path(url);
            Ok(std::fs::metadata(&path).map(|m| m.len() > 0).unwrap_or(false))
        }
        Kind::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| fail(format!("connecting to {}: {e}", redact_url(url))))?;
            let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('schema_migration')::text")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| fail(e.to_string()))?;
            Ok(table.is_some())
        }
    }
}

/// Restores `file` onto the database at `url`: checks the payload, refuses a database holding
/// caldicott data unless `force`, and writes the data. The caller opens [`Restored::url`] (which
/// runs the migrations), verifies the audit chains against the manifest, and calls
/// [`Restored::finish`].
pub async fn restore(file: &Path, url: &str, force: bool) -> StoreResult<Restored> {
    let manifest = check(file)?;
    let kind = Kind::of(url);
    if manifest.database != kind.name() {
        return Err(fail(format!(
            "this is a backup of a {} database; it restores only onto {} (the target is {})",
            manifest.database,
            manifest.database,
            kind.name()
        )));
    }
    if !force && holds_data(url).await? {
        return Err(fail(format!(
            "{} already holds a caldicott database: stop the server, take a backup of it, and run again with \
             --force to replace it",
            redact_url(url)
        )));
    }
    let (_, mut payload) = open_backup(file)?;
    match kind {
        Kind::Sqlite => {
            let target = sqlite_path(url);
            if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io(format!("making {}", dir.display())))?;
            }
            let staged = Scratch::beside(&target, "restoring");
            {
                let mut f = std::fs::File::create(&staged.0).map_err(io("writing the restore"))?;
                std::io::copy(&mut payload, &mut f).map_err(io("writing the restore"))?;
                f.sync_all().map_err(io("writing the restore"))?;
            }
            let path = staged.0.clone();
            tokio::task::spawn_blocking(move || {
                let c = rusqlite::Connection::open(&path).map_err(sqlite_err)?;
                sqlite_integrity(&c)
            })
            .await
            .map_err(|e| fail(e.to_string()))??;
            Ok(Restored { manifest, url: staged.0.display().to_string(), target: url.to_owned(), staged: Some(staged) })
        }
        Kind::Postgres => {
            let mut cmd = pg_tool("pg_restore", url);
            cmd.args([
                "--no-owner",
                "--no-privileges",
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--exit-on-error",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
            let out = tokio::task::spawn_blocking(move || -> std::io::Result<std::process::Output> {
                let mut child = cmd.spawn()?;
                if let Some(mut stdin) = child.stdin.take() {
                    std::io::copy(&mut payload, &mut stdin)?;
                }
                child.wait_with_output()
            })
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| pg_tool_missing("pg_restore", &e))?;
            if !out.status.success() {
                return Err(fail(format!(
                    "pg_restore failed, and the database is as it was: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(Restored { manifest, url: url.to_owned(), target: url.to_owned(), staged: None })
        }
    }
}

/// What the database at `url` is, read without changing anything: the kind, and how far its
/// schema is from this build's (`caldicott config check`).
pub async fn probe(url: &str) -> Result<String, BackupError> {
    let known = match Kind::of(url) {
        Kind::Sqlite => crate::migrate::SQLITE.len() as i64,
        Kind::Postgres => crate::migrate::POSTGRES.len() as i64,
    };
    let schema = move |version: Option<i64>| match version {
        None => format!("empty; the {known} migrations run at the first start"),
        Some(v) if v == known => format!("schema version {v}, this build's"),
        Some(v) if v < known => format!("schema version {v}; {} migration(s) run at the next start", known - v),
        Some(v) => format!("schema version {v}, NEWER than this build's {known}: this build will refuse it"),
    };
    match Kind::of(url) {
        Kind::Sqlite => {
            let path = sqlite_path(url);
            if !path.exists() {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                return Ok(format!(
                    "SQLite file {} is not there yet; it is made at the first start (in {})",
                    path.display(),
                    dir.display()
                ));
            }
            tokio::task::spawn_blocking(move || {
                let c = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(sqlite_err)?;
                let has: bool = c
                    .query_row("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'schema_migration'", [], |r| {
                        r.get(0)
                    })
                    .map_err(sqlite_err)?;
                let v = if has {
                    Some(
                        c.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migration", [], |r| r.get(0))
                            .map_err(sqlite_err)?,
                    )
                } else {
                    None
                };
                Ok(format!("SQLite file {}: {}", path.display(), schema(v)))
            })
            .await
            .map_err(|e| fail(e.to_string()))?
        }
        Kind::Postgres => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.map_err(|e| fail(format!("cannot connect: {e}")))?;
            let server: String =
                sqlx::query_scalar("SHOW server_version").fetch_one(&mut c).await.map_err(|e| fail(e.to_string()))?;
            let has: Option<String> = sqlx::query_scalar("SELECT to_regclass('schema_migration')::text")
                .fetch_one(&mut c)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let v = match has {
                None => None,
                Some(_) => Some(
                    sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(version), 0) FROM schema_migration")
                        .fetch_one(&mut c)
                        .await
                        .map_err(|e| fail(e.to_string()))?,
                ),
            };
            Ok(format!("PostgreSQL {server}: {}", schema(v)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_goes_to_the_environment_not_the_command_line() {
        let (conn, pw) = libpq("postgres://caldicott:s%40cret@db.example:5432/caldicott");
        assert_eq!(conn, "postgres://caldicott@db.example:5432/caldicott");
        assert_eq!(pw.as_deref(), Some("s@cret"));
        assert_eq!(libpq("postgres://postgres@127.0.0.1/test"), ("postgres://postgres@127.0.0.1/test".into(), None));
    }
}
