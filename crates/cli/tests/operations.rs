#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Running caldicott as an operations team does (issue 24): backups taken under write load and
//! proven by restoring them, restores that refuse to overwrite or to use a damaged file,
//! scheduled backups, and the metrics, on SQLite and on PostgreSQL.

use caldicott_app::{auth, system_clock, App};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ODS: &str = "Y90210";

fn caldicott(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .args(args)
        .env("CALDICOTT_DATABASE", db)
        .env("CALDICOTT_LOG", "warn")
        // What a command writes beside itself (a PostgreSQL service's secret key, the demo's
        // integration key) goes to the test's own folder, never into the source tree.
        .current_dir(working_folder(db))
        .output()
        .expect("the caldicott binary runs")
}

/// The folder commands on `db` run in: an SQLite file's own folder, or one per PostgreSQL
/// database (removed with it).
fn working_folder(db: &str) -> PathBuf {
    let dir = if db.starts_with("postgres") {
        std::env::temp_dir().join(format!("caldicott-ops-{}", db.rsplit('/').next().unwrap_or("pg")))
    } else {
        Path::new(db).parent().map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir)
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A folder for one test's files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let d = std::env::temp_dir().join(format!("caldicott-ops-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database of its own on the local PostgreSQL server (a backup is of a whole database),
/// dropped at the end.
struct PgDb {
    url: String,
    name: String,
}

fn pg_admin_url() -> String {
    std::env::var("CALDICOTT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn pg_db() -> PgDb {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let mut c = sqlx::PgConnection::connect(&admin).await.expect("the PostgreSQL test server");
    let name = format!("caldicott_ops_{}", &uuid::Uuid::now_v7().simple().to_string()[16..]);
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut c).await.unwrap();
    let base = admin.rsplit_once('/').unwrap().0.to_owned();
    PgDb { url: format!("{base}/{name}"), name }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(working_folder(&self.url));
        let admin = pg_admin_url();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut c).await;
                }
            })
        })
        .join();
    }
}

fn build_demo(db: &str) {
    let out = caldicott(db, &["demo", "--build-only", "--patients", "25", "--seed", "3", "--as-of", "2026-11-22"]);
    assert!(out.status.success(), "{}", text(&out));
}

async fn app_on(db: &str) -> App {
    App::new(caldicott_store::open(db).await.unwrap(), system_clock())
}

/// The ids of the practice's API tokens.
async fn token_ids(db: &str) -> Vec<String> {
    let app = app_on(db).await;
    auth::list_tokens(&app, ODS).await.unwrap().into_iter().map(|t| t.token.id.to_string()).collect()
}

/// Writes (audited: an API token issued to a member of staff) from a second process's point of
/// view, as fast as the database takes them, until stopped; each acknowledged write is kept
/// with the moment it was acknowledged.
/// Each acknowledged write: when, and the token's id.
type Acked = Arc<Mutex<Vec<(Instant, String)>>>;

fn writer(db: &str, stop: Arc<AtomicBool>) -> (std::thread::JoinHandle<()>, Acked) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (db, log) = (db.to_owned(), acked.clone());
    let handle = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            let app = app_on(&db).await;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let issued = auth::issue_token(&app, ODS, "dr.okafor", &format!("load {n}"), chrono::Duration::days(1))
                    .await
                    .expect("a write under load");
                log.lock().unwrap().push((Instant::now(), issued.token.id.to_string()));
            }
        });
    });
    (handle, acked)
}

/// The whole round trip on one database kind: `source` and `target` are two empty databases.
async fn backup_under_load_then_restore(source: &str, target: &str, dir: &Dir) {
    build_demo(source);
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, acked) = writer(source, stop.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20 {
        assert!(!handle.is_finished(), "the writer stopped");
        assert!(Instant::now() < deadline, "the writer did not write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let file = dir.file("service.backup");
    let began = Instant::now();
    let before: Vec<String> =
        acked.lock().unwrap().iter().filter(|(at, _)| *at <= began).map(|(_, id)| id.clone()).collect();
    let (src, f) = (source.to_owned(), file.display().to_string());
    let out = tokio::task::spawn_blocking(move || caldicott(&src, &["backup", "--out", &f])).await.unwrap();
    let during = acked.lock().unwrap().iter().filter(|(at, _)| *at > began).count();
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("verified"), "{}", text(&out));
    assert!(during > 0, "the writer kept writing while the backup ran");

    let out = caldicott(target, &["restore", &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("every audit chain verified"), "{}", text(&out));
    let restored = token_ids(target).await;
    let missing: Vec<&String> = before.iter().filter(|id| !restored.contains(id)).collect();
    assert!(missing.is_empty(), "writes acknowledged before the backup began are missing: {missing:?}");
    let out = caldicott(target, &["audit", "verify"]);
    assert!(out.status.success() && text(&out).contains("audit chain intact"), "{}", text(&out));

    // A second restore onto the restored (now live) database is refused, and changes nothing.
    // The chain heads, without the moment each was read.
    let heads = || {
        let out = caldicott(target, &["audit", "checkpoint"]);
        text(&out)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{} {} {}", v["practice"], v["count"], v["hash"])
            })
            .collect::<Vec<_>>()
    };
    let audit_before = heads();
    let out = caldicott(target, &["restore", &file.display().to_string()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(heads(), audit_before);
    // With --force it goes ahead.
    let out = caldicott(target, &["restore", "--force", &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));

    // A damaged file is refused before anything is touched.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xff;
    let damaged = dir.file("damaged.backup");
    std::fs::write(&damaged, bytes).unwrap();
    let out = caldicott(target, &["restore", "--force", &damaged.display().to_string()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("damaged"), "{}", text(&out));
    assert!(caldicott(target, &["audit", "verify"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_backup_under_write_load_restores_every_acknowledged_write_with_a_verified_chain() {
    let dir = Dir::new();
    let (source, target) = (dir.file("live.db").display().to_string(), dir.file("restored.db").display().to_string());
    backup_under_load_then_restore(&source, &target, &dir).await;
    // A backup of one kind of database does not go onto the other.
    let pg = pg_db().await;
    let out = caldicott(&pg.url, &["restore", &dir.file("service.backup").display().to_string()]);
    assert!(!out.status.success() && text(&out).contains("restores only onto sqlite"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_backup_under_write_load_restores_every_acknowledged_write_with_a_verified_chain() {
    let dir = Dir::new();
    let (source, target) = (pg_db().await, pg_db().await);
    backup_under_load_then_restore(&source.url, &target.url, &dir).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(db: &str, dir: &Path, args: &[&str]) -> (Served, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .env("CALDICOTT_DATABASE", db)
        .env("CALDICOTT_LOG", "warn")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served(child);
    wait_for_port(port);
    (served, port)
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(url);
    if let Some(t) = bearer {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut res = req.call().unwrap();
    let status = res.status().as_u16();
    (status, res.body_mut().read_to_string().unwrap_or_default())
}

const TOKEN: &str = "metrics-scraper-token-of-forty-characters";

#[test]
fn metrics_are_kept_from_the_public_and_name_routes_never_patients() {
    let dir = Dir::new();
    let db = dir.file("c.db").display().to_string();
    build_demo(&db);
    let nhs = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{db}")).await.unwrap();
            sqlx::query_scalar::<_, String>("SELECT nhs_number FROM patient ORDER BY nhs_number LIMIT 1")
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    };
    let out = caldicott(&db, &["token", "create", "--practice", ODS, "--staff", "dr.okafor"]);
    assert!(out.status.success(), "{}", text(&out));
    let api = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // Without a token or an address of its own there is no /metrics.
    let (_s, port) = serve(&db, &dir.0, &[]);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/metrics"), None).0, 404);
    drop(_s);

    let mport = free_port();
    let (_s, port) = serve(&db, &dir.0, &["--metrics-token", TOKEN, "--metrics-listen", &format!("127.0.0.1:{mport}")]);
    wait_for_port(mport);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(get(&format!("{base}/health/ready"), None).0, 200);
    // A request about one patient (refused: no credential) is counted by its route template.
    assert_eq!(get(&format!("{base}/api/v1/patients/{nhs}/online-view"), Some("wrong")).0, 401);
    // An audited read of that patient's record.
    assert_eq!(get(&format!("{base}/api/v1/patients/{nhs}/online-view"), Some(&api)).0, 200);
    assert_eq!(get(&format!("{base}/metrics"), None).0, 401);
    assert_eq!(get(&format!("{base}/metrics"), Some("metrics-scraper-token-of-forty-characterX")).0, 401);
    let (status, body) = get(&format!("{base}/metrics"), Some(TOKEN));
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"caldicott_http_requests_total{route="/health/ready",method="GET",status="200"} 1"#),
        "{body}"
    );
    assert!(body.contains(r#"route="/api/v1/patients/{nhs_number}/online-view""#), "{body}");
    assert!(body.contains("caldicott_http_request_duration_seconds_bucket"), "{body}");
    assert!(body.contains(r#"caldicott_db_pool_connections{pool="write",state="max"} 1"#), "{body}");
    assert!(body.contains("caldicott_audit_append_seconds"), "{body}");
    assert!(body.contains(r#"caldicott_outbox_messages{channel="sms",status="failed"} 0"#), "{body}");
    assert!(!body.contains(&nhs), "a patient's NHS number reached the metrics");
    // The address of its own answers without a token.
    let (status, body) = get(&format!("http://127.0.0.1:{mport}/metrics"), None);
    assert_eq!(status, 200);
    assert!(body.contains("caldicott_database_up 1"), "{body}");
}

#[test]
fn a_short_metrics_token_is_refused_at_start() {
    let dir = Dir::new();
    let out = caldicott(&dir.file("c.db").display().to_string(), &["serve", "--metrics-token", "short"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("at least 32 characters"), "{}", text(&out));
}

#[test]
fn scheduled_backups_are_taken_verified_and_pruned() {
    let dir = Dir::new();
    let db = dir.file("c.db").display().to_string();
    build_demo(&db);
    let backups = dir.file("backups");
    let mport = free_port();
    // Every 1.8 seconds; keep two.
    let (_s, _port) = serve(
        &db,
        &dir.0,
        &[
            "--backup-dir",
            &backups.display().to_string(),
            "--backup-every",
            "0.0005",
            "--backup-keep",
            "2",
            "--metrics-listen",
            &format!("127.0.0.1:{mport}"),
        ],
    );
    wait_for_port(mport);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = get(&format!("http://127.0.0.1:{mport}/metrics"), None);
        if body.contains(r#"caldicott_backups_total{result="ok"} 3"#) {
            assert!(body.contains("caldicott_backup_last_success_timestamp_seconds"));
            break;
        }
        // Failures are counted from 0, so an alert sees the first one; there are none.
        assert!(body.contains(r#"caldicott_backups_total{result="failed"} 0"#), "a scheduled backup failed:\n{body}");
        assert!(Instant::now() < deadline, "three scheduled backups were not taken in a minute:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut kept: Vec<PathBuf> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "backup"))
        .collect();
    kept.sort();
    assert!((2..=3).contains(&kept.len()), "kept {kept:?}");
    // The newest restores and verifies.
    let target = dir.file("restored.db").display().to_string();
    let out = caldicott(&target, &["restore", &kept.last().unwrap().display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// `caldicott` with only the given environment (no CALDICOTT_DATABASE from the test).
fn bare(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caldicott"));
    c.args(args).current_dir(dir).env("CALDICOTT_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[test]
fn a_configuration_file_is_checked_and_flags_and_environment_override_it() {
    let dir = Dir::new();
    let db = dir.file("c.db").display().to_string();
    build_demo(&db);
    let port = free_port();
    let file = dir.file("caldicott.toml");
    let write = |token: &str, extra: &str| {
        std::fs::write(
            &file,
            format!(
                "database = {db:?}\nlog_format = \"json\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\
                 public_url = \"https://gp.example.nhs.uk\"\n{extra}\n[metrics]\ntoken = {token:?}\n\n[backup]\n\
                 dir = {:?}\nevery_hours = 24\nkeep = 7\n",
                dir.file("backups").display().to_string()
            ),
        )
        .unwrap()
    };
    let config = file.display().to_string();
    // A short metrics token: named as a problem, its value never printed.
    write("short-secret", "");
    let out = bare(&dir.0, &[], &["config", "check", "--config", &config]).output().unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("problem: metrics.token must be at least 32 characters"), "{said}");
    assert!(!said.contains("short-secret"), "a secret was printed:\n{said}");
    assert!(said.contains(&format!("127.0.0.1:{port}  [file: CALDICOTT_LISTEN]")), "{said}");
    // The demo's database is at this build's schema, whatever number that is.
    assert!(said.contains("ok: database: SQLite file") && said.contains(", this build's"), "{said}");
    // A key it does not know is refused by name.
    write(TOKEN, "lisen = \"0.0.0.0:80\"");
    let out = bare(&dir.0, &[], &["config", "check", "--config", &config]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("server.lisen"), "{}", text(&out));
    // A good file passes.
    write(TOKEN, "");
    let out = bare(&dir.0, &[], &["config", "check", "--config", &config]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("The configuration is good."));
    // serve takes the listen address and the metrics token from the file…
    let child =
        bare(&dir.0, &[], &["serve", "--config", &config]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let served = Served(child);
    wait_for_port(port);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/metrics"), Some(TOKEN)).0, 200);
    drop(served);
    // …and the environment, then a flag, win over the file.
    let (env_port, flag_port) = (free_port(), free_port());
    let child =
        bare(&dir.0, &[("CALDICOTT_LISTEN", &format!("127.0.0.1:{env_port}"))], &["serve", "--config", &config])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let served = Served(child);
    wait_for_port(env_port);
    drop(served);
    let child = bare(
        &dir.0,
        &[("CALDICOTT_LISTEN", &format!("127.0.0.1:{env_port}"))],
        &["serve", "--config", &config, "--listen", &format!("127.0.0.1:{flag_port}")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let _served = Served(child);
    wait_for_port(flag_port);
}

/// Every patient's identifying details in the demo: NHS number, full name, email, mobile.
async fn identifiers(db: &str) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{db}")).await.unwrap();
    let rows = sqlx::query("SELECT nhs_number, given_name, family_name, email, mobile FROM patient")
        .fetch_all(&mut c)
        .await
        .unwrap();
    let mut out = Vec::new();
    for r in rows {
        out.push(r.get::<String, _>("nhs_number"));
        out.push(format!("{} {}", r.get::<String, _>("given_name"), r.get::<String, _>("family_name")));
        for col in ["email", "mobile"] {
            if let Some(v) = r.get::<Option<String>, _>(col).filter(|v| v.len() > 5) {
                out.push(v);
            }
        }
    }
    out
}

#[test]
fn the_logs_hold_no_patient_data() {
    let dir = Dir::new();
    let db = dir.file("c.db").display().to_string();
    let built = caldicott(&db, &["demo", "--build-only", "--patients", "25", "--seed", "3", "--as-of", "2026-11-22"]);
    assert!(built.status.success(), "{}", text(&built));
    let said = text(&built);
    // The demo pharmacy's credentials, from the demo's own words.
    let pharmacy = said.lines().find(|l| l.starts_with("Pharmacy ")).expect("the demo names its pharmacy").to_owned();
    let words: Vec<&str> = pharmacy.split_whitespace().collect();
    let at = |w: &str| words[words.iter().position(|x| *x == w).unwrap() + 1];
    let (client_id, secret) = (at("id").to_owned(), at("secret").to_owned());
    let ids = tokio::runtime::Runtime::new().unwrap().block_on(identifiers(&db));
    assert!(ids.len() > 50, "the demo's patients were read");
    let out = caldicott(&db, &["token", "create", "--practice", ODS, "--staff", "dr.okafor"]);
    let api = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let log = dir.file("server.log");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .env("CALDICOTT_DATABASE", &db)
        // Everything the server can say, at every level.
        .env("CALDICOTT_LOG", "trace")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let served = Served(child);
    wait_for_port(port);
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let nhs: Vec<&String> = ids.iter().filter(|s| s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())).collect();
    // Staff reads of every record and online view, through the API.
    for n in &nhs {
        for what in ["record", "online-view"] {
            let r = agent
                .get(&format!("{base}/api/v1/patients/{n}/{what}"))
                .header("Authorization", &format!("Bearer {api}"))
                .call()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    }
    // Requests that go wrong while naming a patient: a bad registration, a wrong password for a
    // patient's email, a pharmacy message that does not parse.
    let name = ids[1].clone();
    let r = agent
        .post(&format!("{base}/api/v1/patients"))
        .header("Authorization", &format!("Bearer {api}"))
        .header("Content-Type", "application/json")
        .send(format!(r#"{{"nhs_number":"{}","name":"{name}","date_of_birth":"not a date"}}"#, nhs[0]))
        .unwrap();
    assert!(r.status().is_client_error());
    let email = ids.iter().find(|s| s.contains('@')).expect("a patient with an email").clone();
    let mut page = agent.get(&format!("{base}/my/sign-in")).call().unwrap();
    let cookies: Vec<String> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let body = page.body_mut().read_to_string().unwrap();
    let csrf = body.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = agent
        .post(&format!("{base}/my/sign-in"))
        .header("Cookie", &cookies.join("; "))
        .send_form([("_csrf", csrf.as_str()), ("username", email.as_str()), ("password", "not the password")])
        .unwrap();
    assert!(r.status().is_client_error() || r.status().is_success(), "{}", r.status());
    let r = agent
        .post(&format!("{base}/api/update-record/v1/messages"))
        .header("Authorization", &format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{client_id}:{secret}"))))
        .header("Content-Type", "application/fhir+json")
        .send(format!(r#"{{"resourceType":"Bundle","entry":[{{"resource":{{"resourceType":"Patient","identifier":[{{"value":"{}"}}],"name":[{{"text":"{name}"}}]}}}}]"#, nhs[2]))
        .unwrap();
    assert!(r.status().as_u16() >= 200);
    // An address naming a patient that the server does not know.
    let r = agent.get(&format!("{base}/patients/{}", nhs[3])).call().unwrap();
    assert!(r.status().as_u16() >= 300);
    drop(served);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().count() > 5, "the server logged at trace level:\n{logged}");
    for id in &ids {
        assert!(!logged.contains(id.as_str()), "the log holds a patient's details ({id}):\n{logged}");
    }
}

#[test]
fn an_operator_sets_up_a_real_practice_from_an_empty_database() {
    let dir = Dir::new();
    let db = dir.file("c.db").display().to_string();
    let add = |ods: &str| {
        caldicott(
            &db,
            &[
                "practice",
                "add",
                "--ods",
                ods,
                "--name",
                "Riverside Medical Practice",
                "--telephone",
                "01632 960000",
                "--address-line",
                "1 River Street",
                "--address-line",
                "Riverton",
                "--postcode",
                "rv1 1aa",
            ],
        )
    };
    let out = add("A81001");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Riverside Medical Practice (A81001) is set up"));
    // The same ODS code again, or one that is not an ODS code: refused, nothing added.
    assert!(text(&add("A81001")).contains("already here"));
    assert!(!add("not-an-ods").status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .args([
            "staff",
            "add",
            "--practice",
            "A81001",
            "--username",
            "j.smith",
            "--name",
            "Jo Smith",
            "--role",
            "practice_manager",
        ])
        .env("CALDICOTT_DATABASE", &db)
        .env("CALDICOTT_STAFF_PASSWORD", "a long first password")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Both are in the practice's audit chain, which verifies.
    let out = caldicott(&db, &["audit", "verify"]);
    assert!(
        out.status.success() && text(&out).contains("A81001 Riverside Medical Practice: audit chain intact: 2 events"),
        "{}",
        text(&out)
    );
}
