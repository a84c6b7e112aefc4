#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The safety-net email, end to end: an app links, staff action the alert, the worker sends the
//! email through a real SMTP server (Debian's python3-aiosmtpd, started here), and the message
//! lands in its mailbox, carrying nothing the patient may not see (T8).

use caldicott_adapters::smtp::{Couriers, SmtpCourier};
use caldicott_app::apps::{AlertOutcome, LinkRequest};
use caldicott_app::fixtures::{self, withheld_entries};
use caldicott_app::outbox::{Courier, Draft};
use caldicott_app::{auth, App};
use caldicott_core::audit::{Action, Actor, ActorKind};
use caldicott_core::messages::{Channel, MessageStatus};
use caldicott_core::patient::PreferredContactMethod;
use caldicott_core::tasks::TaskKind;
use caldicott_store::test_support;
use chrono::Duration;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const AIOSMTPD: &str = "/usr/bin/python3";

struct SmtpServer {
    child: Child,
    port: u16,
    maildir: std::path::PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

fn start_smtp() -> SmtpServer {
    start_aiosmtpd("receiver.NamedMailbox", &[])
}

/// A receiving server as the tests need it, on aiosmtpd: it keeps every message it is given in
/// `received/` (with a summary of its MIME structure, parsed by Python's `email` package, in a
/// `.json` beside it) and one copy per `Message-ID` in `kept/`, as a server that drops repeats
/// does. The first time it sees a message to an address beginning `late`, it answers only after
/// `delay` seconds (having taken the message).
const RECEIVER: &str = r#"
import asyncio, email, email.policy, json, pathlib
from aiosmtpd.handlers import Mailbox

class NamedMailbox(Mailbox):
    """aiosmtpd's Mailbox, which also answers NOOP with its folder's name."""
    def __init__(self, mail_dir, *args):
        # The folder exists (it holds this module), so Maildir would not make its parts.
        for part in ("tmp", "new", "cur"):
            (pathlib.Path(mail_dir) / part).mkdir(exist_ok=True)
        super().__init__(mail_dir, *args)
        self.name = pathlib.Path(mail_dir).name

    async def handle_NOOP(self, server, session, envelope, arg):
        return "250 " + self.name

class Receiver:
    def __init__(self, folder, delay):
        self.dir = pathlib.Path(folder)
        self.delay = float(delay)
        self.n = 0
        for sub in ("received", "kept"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(*args)

    async def handle_NOOP(self, server, session, envelope, arg):
        # Names this server, so that the test knows it reached its own and not another on a reused port.
        return "250 " + self.dir.name

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        mid = msg.get("Message-ID", "")
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append({"content_type": part.get_content_type(), "charset": part.get_content_charset(),
                          "text": part.get_content()})
        summary = {"message_id": mid, "mime_version": msg.get("MIME-Version", ""),
                   "content_type": msg.get_content_type(), "parts": parts}
        # Written whole and then renamed, so that the test never reads half a summary.
        unfinished = self.dir / "received" / f"{self.n:04}.part"
        unfinished.write_text(json.dumps(summary))
        unfinished.rename(self.dir / "received" / f"{self.n:04}.json")
        (self.dir / "received" / f"{self.n:04}.eml").write_bytes(raw)
        kept = self.dir / "kept" / ("".join(c for c in mid if c.isalnum()) + ".eml")
        seen = kept.exists()
        if not seen:
            kept.write_bytes(raw)
        if not seen and any(r.startswith("late") for r in envelope.rcpt_tos):
            await asyncio.sleep(self.delay)
        return "250 Message accepted for delivery"
"#;

/// The receiving server, answering late by `delay` seconds.
fn start_receiver(delay: f64) -> SmtpServer {
    start_aiosmtpd("receiver.Receiver", &[delay.to_string()])
}

/// aiosmtpd with `handler` (a class of [`RECEIVER`]) on a free port, keeping mail in a folder of
/// its own. A free port may be taken by another test's server before this one binds it: the
/// server is asked its name (NOOP), and started again on another port until the answer is its
/// own.
fn start_aiosmtpd(handler: &str, args: &[String]) -> SmtpServer {
    let ok = Command::new(AIOSMTPD).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    assert!(ok, "the SMTP test needs Debian's python3-aiosmtpd: run scripts/test.sh (it installs it) or `apt-get install python3-aiosmtpd`");
    for _ in 0..5 {
        let maildir = std::env::temp_dir().join(format!("caldicott-smtp-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&maildir).unwrap();
        std::fs::write(maildir.join("receiver.py"), RECEIVER).unwrap();
        let name = maildir.file_name().unwrap().to_string_lossy().into_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(AIOSMTPD)
            .env("PYTHONPATH", &maildir)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", handler])
            .arg(&maildir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = SmtpServer { child, port, maildir };
        for _ in 0..100 {
            match answers_noop(port) {
                Some(reply) if reply.contains(&name) => return server,
                Some(_) => break,
                None => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
        drop(server);
    }
    panic!("aiosmtpd did not start");
}

/// The reply of the SMTP server on `port` to NOOP, or `None` while nothing listens there.
fn answers_noop(port: u16) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    (&stream).write_all(b"NOOP\r\nQUIT\r\n").ok()?;
    line.clear();
    reader.read_line(&mut line).ok()?;
    Some(line)
}

/// What the receiving server was given: each message's MIME summary, in order.
fn received(server: &SmtpServer) -> Vec<serde_json::Value> {
    let mut names: Vec<_> = std::fs::read_dir(server.maildir.join("received"))
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
        .unwrap_or_default();
    names.sort();
    names.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
}

/// How many messages the server kept after dropping repeats of a `Message-ID`.
fn kept(server: &SmtpServer) -> usize {
    std::fs::read_dir(server.maildir.join("kept")).map(|d| d.count()).unwrap_or(0)
}

fn mailbox(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries.flatten() {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}

async fn the_safety_net_email_reaches_the_mailbox(t: &test_support::TestStore) {
    // R23, T8
    let server = start_smtp();
    let app = App::new(t.store.clone(), caldicott_app::fixtures::test_clock());
    let tp = fixtures::practice(&app).await.unwrap();
    let mut pat = fixtures::person(tp.practice.id, fixtures::date(1980, 5, 17));
    pat.contact.email = Some("pat@example.com".into());
    pat.preferred_contact = PreferredContactMethod::Email;
    app.store_for_tests()
        .create_patient(tp.practice.id, &pat, &fixtures::audit(Action::PatientCreate, Some(pat.id)))
        .await
        .unwrap();
    let hidden = withheld_entries(&pat, caldicott_app::fixtures::now() - Duration::days(1), "SECRET");
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &hidden).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (wallet, secret) = app.register_app(&admin, "Health Wallet", "Wallet Ltd", "").await.unwrap();
    let letter = app.issue_linkage(&tp.clinician, pat.nhs_number.as_str(), "P9").await.unwrap();
    let req = LinkRequest {
        ods_code: letter.ods_code,
        account_id: letter.account_id,
        linkage_key: letter.linkage_key,
        family_name: "Patient".into(),
        birth_date: pat.date_of_birth.to_string(),
    };
    app.link_app(&wallet.client_id, &secret, &req).await.unwrap();
    let (task, _) = app
        .task_list(&tp.clinician, false)
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.kind == TaskKind::OnlineServicesLinked)
        .unwrap();
    let outcome = app.action_alert(&tp.clinician, task.id, false).await.unwrap();
    assert_eq!(outcome, AlertOutcome::Sent(caldicott_core::messages::Channel::Email));
    let courier: Arc<dyn Courier> = Arc::new(Couriers {
        smtp: Some(
            SmtpCourier::new(&format!("smtp://127.0.0.1:{}", server.port), "Test Surgery <surgery@example.nhs.uk>")
                .unwrap(),
        ),
        notify: None,
    });
    assert_eq!(app.deliver_due(&courier, 10).await.unwrap(), 1);
    let m = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().remove(0);
    assert_eq!(m.status, MessageStatus::Delivered, "{:?}", m.last_error);
    let mut mail = Vec::new();
    for _ in 0..50 {
        mail = mailbox(&server.maildir);
        if !mail.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(mail.len(), 1, "one email in the mailbox");
    let email = &mail[0];
    assert!(email.contains("To: pat@example.com"), "{email}");
    assert!(email.contains("your GP record at Test Surgery"), "{email}");
    assert!(email.contains(&format!("<{}@example.nhs.uk>", m.id)));
    assert!(!email.contains("SECRET"), "nothing hidden goes out");
    assert!(!email.contains(pat.nhs_number.as_str()));
}

async fn an_email_keeps_one_message_id_across_tries(t: &test_support::TestStore) {
    // Exactly once by SMTP: a try whose answer never came back (the server answered after the
    // client's timeout, or the worker was stopped mid-send) may have reached the server. The
    // retry carries the same Message-ID, fixed and recorded before the first try, so the
    // receiving side keeps one copy.
    let server = start_receiver(1.5);
    let offset = Arc::new(AtomicI64::new(0));
    let clock = offset.clone();
    let app =
        App::new(t.store.clone(), Arc::new(move || fixtures::now() + Duration::seconds(clock.load(Ordering::SeqCst))));
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = fixtures::adult(&app, tp.practice.id).await.unwrap();
    let system = Actor { kind: ActorKind::System, id: "test".into(), role: "system".into() };
    let url = format!("smtp://127.0.0.1:{}", server.port);
    let from = "Test Surgery <surgery@example.nhs.uk>";
    let courier = |timeout_ms: u64| -> Arc<dyn Courier> {
        Arc::new(Couriers {
            smtp: Some(SmtpCourier::with_timeout(&url, from, std::time::Duration::from_millis(timeout_ms)).unwrap()),
            notify: None,
        })
    };
    let email = |to: &str| Draft {
        patient: pat.id,
        purpose: "test",
        channel: Channel::Email,
        recipient: to.into(),
        subject: "From your practice".into(),
        body: "Your practice has a message for you.".into(),
    };
    let latest =
        || async { app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().remove(0) };
    // 1. The server takes the email but answers after the client has given up.
    let first = app.queue_message(tp.practice.id, system.clone(), email("late.answer@example.com")).await.unwrap();
    let impatient = courier(400);
    assert_eq!(app.deliver_due(&impatient, 10).await.unwrap(), 1);
    let m = latest().await;
    assert_eq!(m.status, MessageStatus::Queued, "no answer in time: tried again later");
    let fixed = m.email_message_id.clone().expect("the Message-ID is recorded before the first try");
    assert_eq!(fixed, format!("<{}@example.nhs.uk>", first.id), "it carries nothing about the patient");
    offset.fetch_add(60, Ordering::SeqCst);
    assert_eq!(app.deliver_due(&impatient, 10).await.unwrap(), 1);
    let m = latest().await;
    assert_eq!(m.status, MessageStatus::Delivered, "{:?}", m.last_error);
    assert_eq!(m.email_message_id.as_deref(), Some(fixed.as_str()));
    let got = received(&server);
    assert_eq!(got.len(), 2, "the server was given it twice");
    assert!(got.iter().all(|e| e["message_id"] == fixed.as_str()), "with one Message-ID: {got:?}");
    assert_eq!(kept(&server), 1, "and kept it once");

    // 2. The worker is stopped while the server is taking the email; a later worker takes it up.
    let second = app.queue_message(tp.practice.id, system.clone(), email("late.stopped@example.com")).await.unwrap();
    let patient = courier(10_000);
    let (a, c) = (app.clone(), patient.clone());
    let worker = tokio::spawn(async move { a.deliver_due(&c, 10).await });
    for _ in 0..300 {
        if received(&server).len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    worker.abort();
    let _ = worker.await;
    let m = latest().await;
    assert_eq!((m.id, m.status), (second.id, MessageStatus::Sending), "stopped mid-send");
    let fixed = m.email_message_id.clone().expect("the Message-ID is recorded before the first try");
    offset.fetch_add(caldicott_app::outbox::LEASE.num_seconds() + 1, Ordering::SeqCst);
    assert_eq!(app.deliver_due(&patient, 10).await.unwrap(), 1, "the claim ran out and the email is taken up");
    assert_eq!(latest().await.status, MessageStatus::Delivered);
    let got = received(&server);
    assert_eq!(got.len(), 4);
    assert!(got[2..].iter().all(|e| e["message_id"] == fixed.as_str()), "{got:?}");
    assert_eq!(kept(&server), 2, "one copy of each email");
}

async fn an_email_is_mime_complete(t: &test_support::TestStore) {
    // An email is a complete MIME message: MIME-Version 1.0, multipart/alternative with a
    // text/plain and a text/html part, the HTML escaped, as the receiving server parses it.
    let server = start_receiver(0.0);
    let app = App::new(t.store.clone(), fixtures::test_clock());
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = fixtures::adult(&app, tp.practice.id).await.unwrap();
    let system = Actor { kind: ActorKind::System, id: "test".into(), role: "system".into() };
    let body = "T.P., call us on 01632 960000 <now> & ask for \"Dr O'Brien\": £5 > £3.\n\n<script>alert(1)</script>";
    let draft = Draft {
        patient: pat.id,
        purpose: "test",
        channel: Channel::Email,
        recipient: "pat@example.com".into(),
        subject: "A message from Test Surgery & Co".into(),
        body: body.into(),
    };
    app.queue_message(tp.practice.id, system, draft).await.unwrap();
    let courier: Arc<dyn Courier> = Arc::new(Couriers {
        smtp: Some(
            SmtpCourier::new(&format!("smtp://127.0.0.1:{}", server.port), "Test Surgery <surgery@example.nhs.uk>")
                .unwrap(),
        ),
        notify: None,
    });
    assert_eq!(app.deliver_due(&courier, 10).await.unwrap(), 1);
    let got = received(&server);
    assert_eq!(got.len(), 1);
    let email = &got[0];
    assert_eq!(email["mime_version"], "1.0", "{email}");
    assert_eq!(email["content_type"], "multipart/alternative", "{email}");
    let parts = email["parts"].as_array().unwrap();
    let types: Vec<&str> = parts.iter().map(|p| p["content_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text/plain", "text/html"], "plain text first, the richer part last");
    assert!(parts.iter().all(|p| p["charset"] == "utf-8"), "{parts:?}");
    let plain = parts[0]["text"].as_str().unwrap();
    assert_eq!(plain.replace("\r\n", "\n").trim_end(), body, "the text part is the message as written");
    let html = parts[1]["text"].as_str().unwrap();
    assert!(!html.contains("<script>") && !html.contains("<now>"), "nothing in the text becomes markup: {html}");
    for escaped in [
        "&lt;now&gt;",
        "&amp; ask",
        "&quot;Dr O&#39;Brien&quot;",
        "£5 &gt; £3",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ] {
        assert!(html.contains(escaped), "{escaped} in {html}");
    }
    assert!(html.contains("<html lang=\"en\">") && html.contains("<p>"), "{html}");
    assert!(html.contains("<title>A message from Test Surgery &amp; Co</title>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mime_on_sqlite() {
    an_email_is_mime_complete(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mime_on_postgres() {
    an_email_is_mime_complete(&test_support::postgres().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_id_on_sqlite() {
    an_email_keeps_one_message_id_across_tries(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_id_on_postgres() {
    an_email_keeps_one_message_id_across_tries(&test_support::postgres().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_on_sqlite() {
    the_safety_net_email_reaches_the_mailbox(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_on_postgres() {
    the_safety_net_email_reaches_the_mailbox(&test_support::postgres().await.unwrap()).await;
}
