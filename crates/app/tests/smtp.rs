#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The safety-net email, end to end: an app links, staff action the alert, the worker sends the
//! email through a real SMTP server (Debian's python3-aiosmtpd, started here), and the message
//! lands in its mailbox, carrying nothing the patient may not see (T8).

use caldicott_app::apps::{AlertOutcome, LinkRequest};
use caldicott_app::fixtures::{self, withheld_entries};
use caldicott_app::outbox::Courier;
use caldicott_app::smtp::{Couriers, SmtpCourier};
use caldicott_app::{auth, App};
use caldicott_core::audit::Action;
use caldicott_core::messages::MessageStatus;
use caldicott_core::patient::PreferredContactMethod;
use caldicott_core::tasks::TaskKind;
use caldicott_store::test_support;
use chrono::Duration;
use std::process::{Child, Command, Stdio};
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
    let ok = Command::new(AIOSMTPD).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    assert!(ok, "the SMTP test needs Debian's python3-aiosmtpd: run scripts/test.sh (it installs it) or `apt-get install python3-aiosmtpd`");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let maildir = std::env::temp_dir().join(format!("caldicott-smtp-{}", uuid::Uuid::now_v7().simple()));
    let child = Command::new(AIOSMTPD)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = SmtpServer { child, port, maildir };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("aiosmtpd did not start");
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
    app.store
        .create_patient(tp.practice.id, &pat, &fixtures::audit(Action::PatientCreate, Some(pat.id)))
        .await
        .unwrap();
    let hidden = withheld_entries(&pat, caldicott_app::fixtures::now() - Duration::days(1), "SECRET");
    app.store.add_entries(tp.practice.id, &hidden, &fixtures::audit(Action::EntryCreate, Some(pat.id))).await.unwrap();
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
    let m = app.store.messages_for_patient(tp.practice.id, pat.id).await.unwrap().remove(0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_on_sqlite() {
    the_safety_net_email_reaches_the_mailbox(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_on_postgres() {
    the_safety_net_email_reaches_the_mailbox(&test_support::postgres().await.unwrap()).await;
}
