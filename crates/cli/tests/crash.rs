#![allow(clippy::unwrap_used, clippy::expect_used)]
//! T22, kill -9 under concurrent writes (SQLite, H06, H10). The binary serves the demo practice;
//! pharmacies post GP Connect Update Record messages from many threads at once (each a message
//! row, a task and an audit event in one transaction); the server is killed with SIGKILL at a
//! varying moment, then opened again. Every time: no acknowledged message is missing, none is
//! there twice, every message kept has its task and its one audit event, `PRAGMA integrity_check`
//! says ok, and the audit chain verifies. The server starts again on the same file each time.
//!
//! `CALDICOTT_CRASH_ITERATIONS` sets the number of kills (5 by default; the plan's nightly run
//! is 50).

use base64::Engine;
use sqlx::{Connection, Row};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Threads posting at once.
const CLIENTS: usize = 24;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn caldicott(db: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caldicott"));
    c.env("CALDICOTT_DATABASE", db).env("CALDICOTT_LOG", "warn");
    c
}

/// A port nobody is listening on just now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// A running server; killed (SIGKILL) and reaped when dropped, so a failing test leaves none.
struct Server(Child);

impl Server {
    fn kill_9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server on `db` and waits until it answers.
fn serve(db: &Path) -> (Server, String) {
    let port = free_port();
    let server = Server(
        caldicott(db)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = agent.get(&format!("{base}/fhir/r4/metadata")).call() {
            if r.status() == 200 {
                return (server, base);
            }
        }
        assert!(Instant::now() < deadline, "the server did not start on {base}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the clients know of their messages: answered 2xx, or sent without an answer.
#[derive(Default)]
struct Outcomes {
    acknowledged: HashSet<String>,
    uncertain: HashSet<String>,
}

/// `CLIENTS` threads posting messages (each with a fresh id) until `stop`.
fn load(
    base: &str,
    auth: &str,
    template: &str,
    stop: &Arc<AtomicBool>,
    out: &Arc<Mutex<Outcomes>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|_| {
            let (base, auth, template, stop, out) =
                (base.to_owned(), auth.to_owned(), template.to_owned(), stop.clone(), out.clone());
            std::thread::spawn(move || {
                let agent = agent();
                while !stop.load(Ordering::SeqCst) {
                    let id = uuid::Uuid::now_v7().to_string();
                    let body = template.replace(TEMPLATE_ID, &id);
                    let r = agent
                        .post(&format!("{base}/api/update-record/v1/messages"))
                        .header("Authorization", &auth)
                        .header("Content-Type", "application/fhir+json")
                        .send(body.as_bytes());
                    let mut o = out.lock().unwrap();
                    match r {
                        Ok(r) if r.status() == 202 => {
                            o.acknowledged.insert(id);
                        }
                        Ok(r) => panic!("message {id}: HTTP {}", r.status()),
                        Err(_) => {
                            o.uncertain.insert(id);
                        }
                    }
                }
            })
        })
        .collect()
}

/// The id of the sample message, replaced by a fresh one for every post.
const TEMPLATE_ID: &str = "c1a4e5f0-0002-4d1b-9c11-000000000002";

#[test]
fn acknowledged_writes_survive_kill_9() {
    let iterations: usize = std::env::var("CALDICOTT_CRASH_ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(5);
    let dir = Dir(std::env::temp_dir().join(format!("caldicott-crash-{}", uuid::Uuid::now_v7().simple())));
    let db = dir.0.join("caldicott.db");
    let built = caldicott(&db).args(["demo", "--build-only", "--patients", "5", "--seed", "3"]).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let said = String::from_utf8_lossy(&built.stdout).into_owned();
    // "… with client id upd_… and secret …"
    let pharmacy = said.lines().find(|l| l.contains("Update Record messages")).unwrap();
    let words: Vec<&str> = pharmacy.split_whitespace().collect();
    let after = |w: &str| words[words.iter().position(|x| *x == w).unwrap() + 1];
    let (client, secret) = (after("id"), after("secret"));
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}")));
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/update-record/blood-pressure-check.json"),
    )
    .unwrap();
    assert!(template.contains(TEMPLATE_ID));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let mut all_acknowledged = HashSet::new();
    let mut total_uncertain = 0;
    for i in 0..iterations {
        let (server, base) = serve(&db);
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let clients = load(&base, &auth, &template, &stop, &outcomes);
        // Killed at a different moment each time, 0.5 to 3 s into the load.
        std::thread::sleep(Duration::from_millis(500 + (i as u64 * 613) % 2500));
        server.kill_9();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().unwrap();
        }
        let o = std::mem::take(&mut *outcomes.lock().unwrap());
        assert!(!o.acknowledged.is_empty(), "iteration {i}: no message was acknowledged before the kill");
        total_uncertain += o.uncertain.len();
        all_acknowledged.extend(o.acknowledged);
        rt.block_on(reconcile(&db, &all_acknowledged, i));
    }
    // The audit chain verifies, and the server starts again on the file.
    let verified = caldicott(&db).args(["audit", "verify"]).output().unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let (server, _) = serve(&db);
    server.kill_9();
    eprintln!(
        "T22: {iterations} kills, {} acknowledged messages kept, {total_uncertain} uncertain",
        all_acknowledged.len()
    );
}

/// After a kill: every acknowledged message is there once with its task and its audit event,
/// nothing is half-written, and the file is sound.
async fn reconcile(db: &Path, acknowledged: &HashSet<String>, iteration: usize) {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display())).await.unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut c).await.unwrap();
    assert_eq!(integrity, "ok", "iteration {iteration}");
    let rows = sqlx::query("SELECT id, message_id, task_id FROM inbound_message").fetch_all(&mut c).await.unwrap();
    let kept: HashSet<String> = rows.iter().map(|r| r.get::<String, _>("message_id")).collect();
    assert_eq!(kept.len(), rows.len(), "iteration {iteration}: a message is there twice");
    let missing: Vec<&String> = acknowledged.difference(&kept).collect();
    assert!(missing.is_empty(), "iteration {iteration}: {} acknowledged messages lost: {missing:?}", missing.len());
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM inbound_message m LEFT JOIN task t ON t.practice_id = m.practice_id AND t.id = m.task_id \
         WHERE m.task_id IS NOT NULL AND t.id IS NULL",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "iteration {iteration}: a message's task is missing");
    let audited: Vec<String> = sqlx::query_scalar("SELECT entity FROM audit_event WHERE action = 'inbound.receive'")
        .fetch_all(&mut c)
        .await
        .unwrap();
    let audited_set: HashSet<&str> = audited.iter().map(String::as_str).collect();
    assert_eq!(audited_set.len(), audited.len(), "iteration {iteration}: a message audited twice");
    for r in &rows {
        let id: uuid::Uuid = r.get("id");
        assert!(
            audited_set.contains(format!("inbound/{id}").as_str()),
            "iteration {iteration}: message {id} has no audit event"
        );
    }
    assert_eq!(audited.len(), rows.len(), "iteration {iteration}: an audit event for a message that is not there");
    c.close().await.unwrap();
}
