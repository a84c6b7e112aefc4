//! `caldicott backup` and `caldicott restore`, and the backups `serve` takes on a schedule.
//! Every backup is proven: its audit chains are checked against the heads its manifest records
//! (on SQLite by restoring the copy into a scratch file; on PostgreSQL against the live chain,
//! whose events are append-only), and every restore is checked the same way before (SQLite) or
//! straight after (PostgreSQL, restored in one transaction) it is put in use.

use anyhow::{bail, Context};
use caldicott_app::{system_clock, App};
use caldicott_core::audit::{ChainHash, ChainHead};
use caldicott_core::ids::PracticeId;
use caldicott_store::backup::{self, Kind, Manifest};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Checks every practice's audit chain in the database at `url` against the manifest's heads.
/// `exact`: the database must hold those events and no more (a restore); otherwise the heads
/// are checkpoints of a chain that may have grown since (the live database).
async fn verify_against(url: &str, manifest: &Manifest, exact: bool) -> anyhow::Result<()> {
    let store =
        caldicott_store::open(url).await.with_context(|| format!("opening {}", caldicott_store::redact_url(url)))?;
    let app = App::new(store, system_clock());
    let held = app.practices().await?;
    if exact && held.len() != manifest.heads.len() {
        bail!("the database holds {} practice(s); the backup recorded {}", held.len(), manifest.heads.len());
    }
    for h in &manifest.heads {
        let hash = ChainHash::from_hex(&h.hash).context("a head's hash in the manifest")?;
        let checkpoint = ChainHead { count: h.count, hash };
        match app.verify_audit_chain(PracticeId::from_uuid(h.practice_id), &[checkpoint]).await? {
            Ok(head) if exact && head.count != h.count => {
                bail!("{}: the audit chain has {} events; the backup recorded {}", h.ods_code, head.count, h.count)
            }
            Ok(_) => {}
            Err(b) => bail!("{}: the audit chain does not verify at event {}: {b}", h.ods_code, b.first_bad()),
        }
    }
    Ok(())
}

/// Takes a backup of `url` into `out` and proves it.
pub async fn take(url: &str, out: &Path) -> anyhow::Result<Manifest> {
    let manifest = backup::take(url, out).await?;
    if let Err(e) = prove(url, out, &manifest).await {
        // A backup that does not prove is no backup: it is not left where one is looked for.
        let _ = std::fs::remove_file(out);
        return Err(e.context(format!("the backup {} did not verify and was removed", out.display())));
    }
    Ok(manifest)
}

/// [`take`] on a thread of its own with a runtime of its own, so that a long backup never holds
/// a server worker (and the scheduler's task needs nothing it holds to be `Send`).
async fn take_apart(url: String, out: PathBuf) -> anyhow::Result<Manifest> {
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(take(&url, &out))
    })
    .await?
}

/// SQLite: restore the copy into a scratch file and check it exactly. PostgreSQL: check the
/// live chain against the heads read in the dump's snapshot (the events up to them are the
/// ones dumped; audit events are never changed).
async fn prove(url: &str, out: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    backup::check(out)?;
    match Kind::of(url) {
        Kind::Sqlite => {
            let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let scratch = dir.join(format!(".caldicott-verify-{}.db", uuid::Uuid::now_v7().simple()));
            let scratch_url = scratch.display().to_string();
            let result = async {
                let restored = backup::restore(out, &scratch_url, false).await?;
                verify_against(&restored.url, manifest, true).await
            }
            .await;
            for suffix in ["", "-wal", "-shm", ".key"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", scratch.display()));
            }
            result
        }
        Kind::Postgres => verify_against(url, manifest, false).await,
    }
}

/// Restores `file` onto `url` and checks it; on SQLite the old file is replaced only then.
pub async fn restore(file: &Path, url: &str, force: bool) -> anyhow::Result<Manifest> {
    let restored = backup::restore(file, url, force).await?;
    verify_against(&restored.url, &restored.manifest, true).await.with_context(|| match Kind::of(url) {
        Kind::Sqlite => "the restored copy did not verify, so the database was left as it was".to_owned(),
        Kind::Postgres => "the restored database did not verify: do not start the server on it".to_owned(),
    })?;
    Ok(restored.finish()?)
}

/// One line per practice: ODS code, events, head.
pub fn describe(manifest: &Manifest) -> String {
    let mut s = format!(
        "{} backup of schema version {}, taken {} by caldicott {}: {} bytes\n",
        manifest.database,
        manifest.schema_version,
        manifest.taken_at.format("%Y-%m-%d %H:%M:%S UTC"),
        manifest.caldicott_version,
        manifest.payload_bytes
    );
    for h in &manifest.heads {
        s.push_str(&format!("  {}: audit chain of {} events, head {}\n", h.ods_code, h.count, h.hash));
    }
    s
}

/// Backups `serve` takes by itself.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
}

const PREFIX: &str = "caldicott-";
const SUFFIX: &str = ".backup";

/// Takes a backup every `schedule.every` (the first one after one interval), proves it, and
/// keeps the newest `schedule.keep`; stops when told.
pub fn spawn(
    url: String,
    schedule: Schedule,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // Both outcomes are counted from 0, so that an alert on the first failure sees it.
    caldicott_web::metrics::backups_scheduled();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(schedule.every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            let name = format!("{PREFIX}{}{SUFFIX}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
            let out = schedule.dir.join(name);
            let started = std::time::Instant::now();
            match take_apart(url.clone(), out.clone()).await {
                Ok(m) => {
                    caldicott_web::metrics::backup_taken(true, m.payload_bytes, started.elapsed());
                    tracing::info!(file = %out.display(), bytes = m.payload_bytes, seconds = started.elapsed().as_secs_f64(), "backup taken and verified");
                    prune(&schedule.dir, schedule.keep);
                }
                Err(e) => {
                    caldicott_web::metrics::backup_taken(false, 0, started.elapsed());
                    let _ = std::fs::remove_file(&out);
                    tracing::error!(file = %out.display(), error = %format!("{e:#}"), "BACKUP FAILED");
                }
            }
        }
    })
}

/// Removes all but the newest `keep` scheduled backups in `dir` (their names sort by time).
fn prune(dir: &Path, keep: usize) {
    let Ok(read) = std::fs::read_dir(dir) else { return };
    let mut ours: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep.max(1));
    for old in ours.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(file = %old.display(), error = %e, "an old backup could not be removed");
        }
    }
}
