#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The server as an attacker and an operator meet it (ASVS 9.1, 12.1, 13.1): a client that
//! sends its headers slowly is cut off, connections beyond the limit are refused while the
//! others are served, and with a certificate the server speaks only TLS, sends HSTS and takes a
//! renewed certificate without a restart. The test certificates (`tests/tls`) are made for
//! `localhost` by two test CAs and are of no use elsewhere.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Server(Child, PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tls_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls").join(name)
}

/// Starts `caldicott serve` on an empty database with `extra` arguments; waits until the port
/// takes connections.
fn serve(extra: &[&str]) -> (Server, u16) {
    let dir = std::env::temp_dir().join(format!("caldicott-server-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .env("CALDICOTT_DATABASE", dir.join("c.db"))
        .env("CALDICOTT_LOG", "warn")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child, dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

/// Whether the server closed `s` within `within` (a read returns end of file or a reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn health_over_plain_http(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
}

#[test]
fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let (_server, port) = serve(&["--header-timeout-secs", "1"]);
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: loc").unwrap();
    let began = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(10)), "a slow-header client is held open");
    assert!(began.elapsed() < Duration::from_secs(8));
    // A client that says nothing at all is cut off too; a prompt one is served.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)), "a silent client is held open");
    assert!(health_over_plain_http(port).starts_with("HTTP/1.1 200"));
}

#[test]
fn connections_beyond_the_limit_are_refused_and_the_others_served() {
    let (_server, port) = serve(&["--max-connections", "2", "--header-timeout-secs", "30"]);
    // Five at once against a limit of two: at most two are kept (fewer while the start-up
    // probe's connection is still being closed), the rest closed at once.
    let mut conns: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed: Vec<bool> = conns.iter_mut().map(|c| closed_within(c, Duration::from_secs(2))).collect();
    let kept = closed.iter().filter(|c| !**c).count();
    assert!(kept <= 2, "{kept} connections kept with a limit of 2");
    assert!(kept >= 1, "every connection was closed");
    // A kept one is served.
    let first = closed.iter().position(|c| !c).unwrap();
    let mut reply = String::new();
    conns[first].write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    conns[first].set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = conns[first].read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    // With them closed there is room again.
    assert!(health_over_plain_http(port).starts_with("HTTP/1.1 200"));
}

fn agent_trusting(ca: &str) -> ureq::Agent {
    let pem = std::fs::read(tls_file(ca)).unwrap();
    let root = ureq::tls::Certificate::from_pem(&pem).unwrap();
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root]))).build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

#[test]
fn with_a_certificate_it_speaks_tls_sends_hsts_and_takes_a_renewed_certificate() {
    let dir = std::env::temp_dir().join(format!("caldicott-tls-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(tls_file("cert1.pem"), &cert).unwrap();
    std::fs::copy(tls_file("key1.pem"), &key).unwrap();
    let (_server, port) = serve(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--header-timeout-secs",
        "5",
    ]);
    let url = format!("https://localhost:{port}/health");
    let r = agent_trusting("ca1.pem").get(&url).call().unwrap();
    assert_eq!(r.status(), 200);
    let hsts = r.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(hsts.as_deref(), Some("max-age=31536000; includeSubDomains"));
    // Plain HTTP on the TLS port gets no answer.
    assert!(!health_over_plain_http(port).contains("200"));
    // The certificate is renewed on disk: within a few seconds the new one is served, no restart.
    std::fs::copy(tls_file("cert2.pem"), &cert).unwrap();
    std::fs::copy(tls_file("key2.pem"), &key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if agent_trusting("ca2.pem").get(&url).call().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the renewed certificate was not taken up");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(agent_trusting("ca1.pem").get(&url).call().is_err(), "the old certificate is still served");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 24: told to stop by SIGTERM (what systemd and container runtimes send), the server stops
/// taking connections, finishes what it holds and exits with success, logging that it stopped;
/// before, SIGTERM killed it where it stood.
#[test]
fn sigterm_stops_the_server_gracefully() {
    let dir = std::env::temp_dir().join(format!("caldicott-server-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .env("CALDICOTT_DATABASE", dir.join("c.db"))
        .env("CALDICOTT_LOG", "info")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(health_over_plain_http(port).starts_with("HTTP/1.1 200"));
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not stop within 40 seconds of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "SIGTERM ends the server cleanly: {status:?}\n{log}");
    assert!(log.contains("told to stop") && log.contains("outbox worker stopped") && log.contains("stopped"), "{log}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "no longer listening");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent trusting `ca` and, when given, presenting the client certificate `name`
/// (`tests/tls/{name}.pem` with its key `{name}-key.pem`).
fn agent_with_client(ca: &str, client: Option<&str>) -> ureq::Agent {
    let pem = std::fs::read(tls_file(ca)).unwrap();
    let root = ureq::tls::Certificate::from_pem(&pem).unwrap().to_owned();
    let mut tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])));
    if let Some(name) = client {
        let cert = ureq::tls::Certificate::from_pem(&std::fs::read(tls_file(&format!("{name}.pem"))).unwrap())
            .unwrap()
            .to_owned();
        let key = ureq::tls::PrivateKey::from_pem(&std::fs::read(tls_file(&format!("{name}-key.pem"))).unwrap())
            .unwrap()
            .to_owned();
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GP Connect reaches caldicott only from the Spine Secure Proxy: the Spine listener takes a
/// connection only from a client with a certificate from the Spine's authority (here a test
/// one); a client without one, or with one from another authority, gets no answer at all. The
/// main listener does not serve the GP Connect routes.
#[test]
fn the_spine_listener_answers_only_callers_with_a_spine_certificate() {
    let spine_port = free_port();
    let (_server, port) = serve(&[
        "--spine-listen",
        &format!("127.0.0.1:{spine_port}"),
        "--spine-tls-cert",
        tls_file("cert1.pem").to_str().unwrap(),
        "--spine-tls-key",
        tls_file("key1.pem").to_str().unwrap(),
        "--spine-client-ca",
        tls_file("spine-ca.pem").to_str().unwrap(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", spine_port)).is_err() {
        assert!(Instant::now() < deadline, "the Spine listener did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://localhost:{spine_port}/gpconnect/A81001/STU3/1/structured/metadata");
    // With the Spine's certificate: a GP Connect answer (no practice A81001 on an empty database:
    // the OperationOutcome says so).
    let r = agent_with_client("ca1.pem", Some("spine-client")).get(&url).call().unwrap();
    assert_eq!(r.status(), 400);
    let body = r.into_body().read_to_string().unwrap();
    assert!(body.contains("GPConnect-OperationOutcome-1"), "{body}");
    // Without a certificate, or with another authority's: the handshake fails, nothing is answered.
    assert!(agent_with_client("ca1.pem", None).get(&url).call().is_err(), "no client certificate");
    assert!(agent_with_client("ca1.pem", Some("rogue-client")).get(&url).call().is_err(), "another authority's");
    // The main listener knows nothing of GP Connect.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /gpconnect/A81001/STU3/1/structured/metadata HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

/// A Spine listener asked for without its client authority does not start.
#[test]
fn the_spine_listener_needs_its_certificate_and_client_authority() {
    let out = Command::new(env!("CARGO_BIN_EXE_caldicott"))
        .env("CALDICOTT_DATABASE", std::env::temp_dir().join("never-made.db"))
        .args(["serve", "--listen", "127.0.0.1:0", "--spine-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("spine-tls-cert") || said.contains("spine_tls_cert"), "{said}");
}
