#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 24: PostgreSQL failover. The test starts its own primary and a streaming standby on
//! loopback (synchronous replication), with a small TCP proxy in front standing for the address
//! an operator's failover tooling moves (Patroni with HAProxy, a virtual IP, a managed service's
//! endpoint). caldicott runs through the proxy while writes go on; the primary is killed
//! (`pg_ctl stop -m immediate`, as a crash), the standby promoted and the proxy pointed at it.
//! caldicott reconnects by itself, no acknowledged write is lost, and the audit chain verifies.
//! It prints the recovery time it measured (docs/operations.md quotes it).

use caldicott_app::{auth, system_clock, App};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const ODS: &str = "Y90210";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// A PostgreSQL program, as the `postgres` user when the test runs as root (PostgreSQL will
/// not run as root).
fn pg(program: &str, args: &[&str]) -> std::process::Output {
    let path = format!("{BIN}/{program}");
    assert!(Path::new(&path).exists(), "{path} is needed (Debian: postgresql-15)");
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(&path)
    };
    c.args(args).current_dir("/tmp").stdin(Stdio::null());
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The two servers' folders, stopped and removed at the end.
struct Cluster {
    root: PathBuf,
}

impl Cluster {
    fn data(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for name in ["primary", "standby"] {
            let data = self.data(name);
            if Path::new(&data).join("postmaster.pid").exists() {
                let _ = Command::new("runuser")
                    .args(["-u", "postgres", "--", &format!("{BIN}/pg_ctl"), "-D", &data, "stop", "-m", "immediate"])
                    .output();
                let _ = Command::new(format!("{BIN}/pg_ctl")).args(["-D", &data, "stop", "-m", "immediate"]).output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Forwards every connection to 127.0.0.1:`target` (which can be changed), as failover tooling's
/// stable address does.
fn proxy(target: Arc<AtomicU16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target.load(Ordering::SeqCst))) else { continue };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                    let _ = from.shutdown(std::net::Shutdown::Both);
                });
            };
            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
            pipe(server, client);
        }
    });
    port
}

fn psql(port: u16, sql: &str) -> String {
    let out = Command::new(format!("{BIN}/psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-tAc", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A command on `db`, run in `dir` (where it may write a key), never in the source tree.
fn caldicott(db: &str, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .args(args)
        .current_dir(dir)
        .env("CALDICOTT_DATABASE", db)
        .env("CALDICOTT_LOG", "warn")
        .output()
        .unwrap()
}

fn http_status(port: u16, path: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent.get(&format!("http://127.0.0.1:{port}{path}")).call().map(|r| r.status().as_u16()).unwrap_or(0)
}

#[test]
fn postgres_a_killed_primary_fails_over_to_its_synchronous_standby_without_losing_a_write() {
    let root = std::env::temp_dir().join(format!("caldicott-failover-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&root).unwrap();
    if is_root() {
        assert!(Command::new("chown")
            .args(["postgres:postgres", &root.display().to_string()])
            .status()
            .unwrap()
            .success());
    }
    let cluster = Cluster { root };
    let (p1, p2) = (free_port(), free_port());
    let (primary, standby) = (cluster.data("primary"), cluster.data("standby"));
    pg("initdb", &["-D", &primary, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"]);
    std::fs::write(
        Path::new(&primary).join("postgresql.auto.conf"),
        format!(
            "port = {p1}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nwal_level = replica\n\
             max_wal_senders = 5\nsynchronous_standby_names = 'standby1'\nsynchronous_commit = on\n",
            cluster.root.display()
        ),
    )
    .unwrap();
    let hba = Path::new(&primary).join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&hba).unwrap();
    rules.push_str("\nhost replication all 127.0.0.1/32 trust\n");
    std::fs::write(&hba, rules).unwrap();
    pg("pg_ctl", &["-D", &primary, "-l", &format!("{primary}.log"), "-w", "start"]);
    pg(
        "pg_basebackup",
        &["-h", "127.0.0.1", "-p", &p1.to_string(), "-U", "postgres", "-D", &standby, "-R", "-X", "stream"],
    );
    let auto = Path::new(&standby).join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto).unwrap();
    // Promoted, it runs alone until a new standby joins: it must not wait for one.
    conf = conf
        .replace(&format!("port = {p1}"), &format!("port = {p2}"))
        .replace("synchronous_standby_names = 'standby1'", "synchronous_standby_names = ''");
    conf.push_str(&format!(
        "\nprimary_conninfo = 'host=127.0.0.1 port={p1} user=postgres application_name=standby1'\n"
    ));
    std::fs::write(&auto, conf).unwrap();
    pg("pg_ctl", &["-D", &standby, "-l", &format!("{standby}.log"), "-w", "start"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql(p1, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'") != "sync" {
        assert!(Instant::now() < deadline, "the standby did not become synchronous");
        std::thread::sleep(Duration::from_millis(100));
    }
    psql(p1, "CREATE DATABASE caldicott");

    // caldicott through the stable address.
    let target = Arc::new(AtomicU16::new(p1));
    let front = proxy(target.clone());
    let url = format!("postgres://postgres@127.0.0.1:{front}/caldicott");
    let dir = cluster.root.join("caldicott");
    std::fs::create_dir_all(&dir).unwrap();
    let built =
        caldicott(&url, &dir, &["demo", "--build-only", "--patients", "25", "--seed", "3", "--as-of", "2026-11-22"]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let port = free_port();
    let server = Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .env("CALDICOTT_DATABASE", &url)
        .env("CALDICOTT_LOG", "warn")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(port, "/health/ready") != 200 {
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Writes go on throughout; each acknowledged one is kept. Failures while the database is
    // away are expected, and are not acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let failed = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, acked, failed, stop) = (url.clone(), acked.clone(), failed.clone(), stop.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
                let app = App::new(caldicott_store::open(&url).await.unwrap(), system_clock());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match auth::issue_token(&app, ODS, "dr.okafor", &format!("w{n}"), chrono::Duration::days(1)).await {
                        Ok(t) => acked.lock().unwrap().push((Instant::now(), t.token.id.to_string())),
                        Err(_) => {
                            failed.lock().unwrap().push(Instant::now());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
    };
    while acked.lock().unwrap().len() < 30 {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The primary crashes; the standby is promoted and the stable address moved to it.
    let killed = Instant::now();
    pg("pg_ctl", &["-D", &primary, "-m", "immediate", "-w", "stop"]);
    pg("pg_ctl", &["-D", &standby, "-w", "promote"]);
    target.store(p2, Ordering::SeqCst);
    let promoted = Instant::now();
    // caldicott finds its way back by itself: writes are acknowledged again, and the running
    // server answers ready without a restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = acked.lock().unwrap().iter().filter(|(at, _)| *at > promoted).count();
        if after >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume after the failover");
        std::thread::sleep(Duration::from_millis(20));
    }
    let resumed = acked.lock().unwrap().iter().find(|(at, _)| *at > promoted).map(|(at, _)| *at).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(port, "/health/ready") != 200 {
        assert!(Instant::now() < deadline, "the server did not come back");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let before = acked.iter().filter(|(at, _)| *at < killed).count();

    // Every acknowledged write is on the new primary, and the chain verifies.
    let held: Vec<String> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let app = App::new(caldicott_store::open(&url).await.unwrap(), system_clock());
        auth::list_tokens(&app, ODS).await.unwrap().into_iter().map(|t| t.token.id.to_string()).collect()
    });
    let lost: Vec<&String> = acked.iter().map(|(_, id)| id).filter(|id| !held.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost in the failover: {lost:?}");
    let verified = caldicott(&url, &dir, &["audit", "verify"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    let mut log = String::new();
    let _ = std::fs::File::open(format!("{standby}.log")).and_then(|mut f| f.read_to_string(&mut log));
    eprintln!(
        "failover: {} writes acknowledged ({before} before the crash), none lost; {} refused while the database was away; \
         writes resumed {:.2} s after the crash ({:.2} s after promotion)",
        acked.len(),
        failed.lock().unwrap().len(),
        resumed.duration_since(killed).as_secs_f64(),
        resumed.duration_since(promoted).as_secs_f64()
    );
}
