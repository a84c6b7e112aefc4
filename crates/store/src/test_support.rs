//! Fresh, isolated stores for tests: an SQLite file in a temporary folder, or a fresh schema in a
//! database created once per test process on the local PostgreSQL server
//! (`CALDICOTT_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`).

use crate::{SqlStore, Store, StoreResult};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// A store for one test; its SQLite file is removed when dropped.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    /// The URL another process (the CLI under test) can open the same database with.
    pub url: String,
    cleanup: Option<PathBuf>,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(dir) = self.cleanup.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub async fn sqlite() -> StoreResult<TestStore> {
    let dir = std::env::temp_dir().join(format!("caldicott-test-{}", uuid::Uuid::now_v7().simple()));
    let path = dir.join("caldicott.db");
    let store = SqlStore::open_sqlite(&path).await?;
    Ok(TestStore { store: Arc::new(store), url: path.display().to_string(), cleanup: Some(dir) })
}

fn server_url() -> String {
    std::env::var("CALDICOTT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

static TEST_DATABASE: OnceCell<String> = OnceCell::const_new();

/// Creates this process's test database once, dropping test databases older than a day that
/// earlier runs left behind.
async fn test_database() -> StoreResult<String> {
    TEST_DATABASE
        .get_or_try_init(|| async {
            use sqlx::Connection;
            let admin_url = server_url();
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.map_err(|e| {
                crate::StoreError::Unavailable(format!(
                    "PostgreSQL test server at {} is not reachable: {e}",
                    crate::redact_url(&admin_url)
                ))
            })?;
            let now = chrono::Utc::now().timestamp();
            let stale: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'caldicott_t_%'")
                    .fetch_all(&mut conn)
                    .await
                    .map_err(|e| crate::StoreError::Database(e.to_string()))?;
            for name in stale {
                let created = name.split('_').nth(2).and_then(|s| s.parse::<i64>().ok()).unwrap_or(now);
                if now - created > 86_400 {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            }
            let name = format!("caldicott_t_{now}_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await
                .map_err(|e| crate::StoreError::Database(e.to_string()))?;
            let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b).to_owned();
            Ok(format!("{base}/{name}"))
        })
        .await
        .cloned()
}

pub async fn postgres() -> StoreResult<TestStore> {
    in_fresh_schema(&test_database().await?).await
}

/// A store for one test on the Citus cluster named by `CALDICOTT_TEST_CITUS` (a coordinator
/// database with the extension and its workers; `scripts/citus-tests.sh` starts one with
/// `../shared/citus/citus.sh`): a fresh schema, migrated, its tables distributed by practice.
pub async fn citus() -> StoreResult<TestStore> {
    citus_on("CALDICOTT_TEST_CITUS").await
}

/// As [`citus`], on the database named by the environment variable `var` (the shard-move test
/// has a database of its own, so that draining a worker moves only its shards).
pub async fn citus_on(var: &str) -> StoreResult<TestStore> {
    let db_url = std::env::var(var).map_err(|_| {
        crate::StoreError::Unavailable(format!(
            "{var} is not set: the Citus suite runs from scripts/citus-tests.sh, which starts a cluster"
        ))
    })?;
    in_fresh_schema(&db_url).await
}

/// A fresh schema in the PostgreSQL (or Citus) database at `db_url`, and a store migrated in it.
async fn in_fresh_schema(db_url: &str) -> StoreResult<TestStore> {
    use sqlx::Connection;
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut conn =
        sqlx::PgConnection::connect(db_url).await.map_err(|e| crate::StoreError::Unavailable(e.to_string()))?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .map_err(|e| crate::StoreError::Database(e.to_string()))?;
    let store = SqlStore::connect_postgres(db_url, Some(&schema)).await?;
    let url = format!("{db_url}?options=-c%20search_path%3D{schema}");
    Ok(TestStore { store: Arc::new(store), url, cleanup: None })
}

/// Walks a practice's whole audit chain from its head, checking every event; how many it holds,
/// or the break it found (as `Corrupt`).
pub async fn verified_chain(store: &dyn Store, practice: caldicott_core::ids::PracticeId) -> StoreResult<i64> {
    let broken = |e: &dyn std::fmt::Debug| crate::StoreError::Corrupt(format!("the audit chain is broken: {e:?}"));
    let head = store.audit_head(practice).await?;
    let mut v = caldicott_core::audit::ChainVerifier::new(vec![head]);
    let mut after = 0;
    loop {
        let page = store.audit_events(practice, after, 500).await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            v.push(e).map_err(|e| broken(&e))?;
            after = e.seq;
        }
    }
    Ok(v.finish().map_err(|e| broken(&e))?.count)
}

/// Runs each named `async fn(&TestStore)` as two tests, `sqlite::<name>` and
/// `postgres::<name>` (the names the hazard log cites), each on a fresh store of its own:
/// `both!(a, b)` on two worker threads, `both!(workers = 4; a, b)` on more.
///
/// `both!(a, b, c; citus: a, c)` also runs the cases named after `citus:` as `citus::<name>` on
/// the Citus cluster of `CALDICOTT_TEST_CITUS` when the calling crate's `citus` feature is on
/// (the crate declares that feature; `scripts/citus-tests.sh` turns it on).
#[macro_export]
macro_rules! both {
    ($($name:ident),* ; citus: $($c:ident),* $(,)?) => {
        $crate::both!(workers = 2; $($name),*);
        #[cfg(feature = "citus")]
        mod citus { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $c() { super::$c(&$crate::test_support::citus().await.unwrap()).await; })* }
    };
    (workers = $w:literal; $($name:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = $w)] async fn $name() { super::$name(&$crate::test_support::sqlite().await.unwrap()).await; })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = $w)] async fn $name() { super::$name(&$crate::test_support::postgres().await.unwrap()).await; })* }
    };
    ($($name:ident),* $(,)?) => {
        $crate::both!(workers = 2; $($name),*);
    };
}
