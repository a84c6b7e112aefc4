#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The outbox under faults: a provider that fails, times out or rate-limits 30% of the time, and
//! a worker killed mid-run. Every message is delivered once; none is lost, none goes twice.

use caldicott_app::fixtures::{self, adult};
use caldicott_app::outbox::{Accepted, Courier, Draft, Failure, LEASE};
use caldicott_app::App;
use caldicott_core::audit::{Actor, ActorKind};
use caldicott_core::ids::MessageId;
use caldicott_core::messages::{Channel, MessageStatus, OutboundMessage};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Fails 30% of tries (a third each: timeout, HTTP 429, HTTP 500), decided by a counter so the
/// run is the same every time; records every message it delivered. Like GOV.UK Notify, it can
/// be asked whether it already holds a message, and the courier asks before a message tried
/// before is sent again.
#[derive(Default)]
struct Flaky {
    tries: AtomicU64,
    delivered: Mutex<HashMap<MessageId, u32>>,
}

impl Courier for Flaky {
    fn deliver(&self, m: &OutboundMessage) -> Result<Accepted, Failure> {
        if m.tries > 1 && self.delivered.lock().unwrap().contains_key(&m.id) {
            return Ok(Accepted::Delivered(format!("provider-{}", m.id)));
        }
        let n = self.tries.fetch_add(1, Ordering::SeqCst);
        match (n * 7919) % 10 {
            0 => {
                std::thread::sleep(std::time::Duration::from_millis(30));
                Err(Failure::Temporary("timed out".into()))
            }
            1 => Err(Failure::Temporary("rate limited (429)".into())),
            2 => Err(Failure::Temporary("server error (500)".into())),
            _ => {
                std::thread::sleep(std::time::Duration::from_millis(2));
                *self.delivered.lock().unwrap().entry(m.id).or_insert(0) += 1;
                Ok(Accepted::Delivered(format!("provider-{}", m.id)))
            }
        }
    }
}

async fn every_message_arrives_despite_faults_and_a_killed_worker(t: &TestStore) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = offset.clone();
    let app = App::new(
        t.store.clone(),
        Arc::new(move || caldicott_app::fixtures::now() + Duration::seconds(clock.load(Ordering::SeqCst))),
    );
    let tp = fixtures::practice(&app).await.unwrap();
    let mut patients = Vec::new();
    for _ in 0..3 {
        patients.push(adult(&app, tp.practice.id).await.unwrap());
    }
    let system = Actor { kind: ActorKind::System, id: "test".into(), role: "system".into() };
    let total = 120;
    for i in 0..total {
        let p = &patients[i % 3];
        let draft = Draft {
            patient: p.id,
            purpose: "test",
            channel: if i % 2 == 0 { Channel::Email } else { Channel::Sms },
            recipient: format!("recipient-{i}"),
            subject: "Test".into(),
            body: format!("Message {i}"),
        };
        app.queue_message(tp.practice.id, system.clone(), draft).await.unwrap();
    }
    let flaky = Arc::new(Flaky::default());
    let courier: Arc<dyn Courier> = flaky.clone();
    // A worker runs, and is killed once some messages have gone.
    let (_keep_running, running) = tokio::sync::watch::channel(false);
    let worker = app.spawn_outbox_worker(courier.clone(), std::time::Duration::from_millis(5), running);
    for _ in 0..400 {
        if flaky.delivered.lock().unwrap().len() >= 30 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    worker.abort();
    let _ = worker.await;
    // Later, a new worker: claims left by the dead one run out, and retries come due.
    let mut passes = 0;
    loop {
        offset.fetch_add(LEASE.num_seconds() + 3600, Ordering::SeqCst);
        let tried = app.deliver_due(&courier, 500).await.unwrap();
        passes += 1;
        if tried == 0 || passes > 60 {
            break;
        }
    }
    let mut undelivered = 0;
    for p in &patients {
        for m in app.store_for_tests().messages_for_patient(tp.practice.id, p.id).await.unwrap() {
            if m.status != MessageStatus::Delivered {
                undelivered += 1;
            }
        }
    }
    let delivered = flaky.delivered.lock().unwrap();
    let duplicates: u32 = delivered.values().map(|n| n - 1).sum();
    eprintln!(
        "outbox fault run ({:?}): {total} messages, {} tries, {} delivered, {duplicates} duplicates, {passes} passes after the kill",
        t.store.backend(),
        flaky.tries.load(Ordering::SeqCst),
        delivered.len()
    );
    assert_eq!(undelivered, 0, "every message reached delivered");
    assert_eq!(delivered.len(), total, "none lost");
    assert_eq!(duplicates, 0, "a message in flight when the worker died is looked up, not sent again");
}

fn system() -> Actor {
    Actor { kind: ActorKind::System, id: "test".into(), role: "system".into() }
}

/// Test email number `i` to the patient.
fn email(patient: caldicott_core::ids::PatientId, i: usize) -> Draft {
    Draft {
        patient,
        purpose: "test",
        channel: Channel::Email,
        recipient: format!("r{i}@example.com"),
        subject: "Test".into(),
        body: format!("Message {i}"),
    }
}

/// A courier that takes its time, as a real provider does, and always accepts.
#[derive(Default)]
struct Slow {
    delivered: Mutex<Vec<MessageId>>,
}

impl Courier for Slow {
    fn deliver(&self, m: &OutboundMessage) -> Result<Accepted, Failure> {
        std::thread::sleep(std::time::Duration::from_millis(15));
        self.delivered.lock().unwrap().push(m.id);
        Ok(Accepted::Delivered(format!("provider-{}", m.id)))
    }
}

/// Issue 24: a server told to stop (SIGTERM) stops its outbox worker gracefully: the pass in
/// hand is finished, so no message is left claimed ("Sending") for its lease to run out, and
/// each one sent is recorded as sent.
async fn a_stopped_worker_finishes_its_pass_and_leaves_nothing_claimed(t: &TestStore) {
    let app = App::new(t.store.clone(), caldicott_app::fixtures::test_clock());
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    for i in 0..15 {
        app.queue_message(tp.practice.id, system(), email(pat.id, i)).await.unwrap();
    }
    let slow = Arc::new(Slow::default());
    let courier: Arc<dyn Courier> = slow.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = app.spawn_outbox_worker(courier, std::time::Duration::from_millis(5), stopped);
    while slow.delivered.lock().unwrap().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), worker).await.expect("the worker stops").unwrap();
    let messages = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap();
    let claimed: Vec<_> = messages.iter().filter(|m| m.status == MessageStatus::Sending).collect();
    assert!(claimed.is_empty(), "left claimed: {claimed:?}");
    let sent = messages.iter().filter(|m| m.status != MessageStatus::Queued).count();
    assert_eq!(sent, slow.delivered.lock().unwrap().len(), "each message sent is recorded as sent");
}

/// Issue 24: two servers on one database (each with its own connections, as two processes
/// behind a load balancer have), each running its outbox worker: every message goes once.
async fn two_servers_workers_send_each_message_once(t: &TestStore) {
    let one = App::new(t.store.clone(), caldicott_app::fixtures::test_clock());
    let two = App::new(caldicott_store::open(&t.url).await.unwrap(), caldicott_app::fixtures::test_clock());
    let tp = fixtures::practice(&one).await.unwrap();
    let pat = adult(&one, tp.practice.id).await.unwrap();
    let total = 40;
    for i in 0..total {
        // Queued through both servers.
        let app = if i % 2 == 0 { &one } else { &two };
        app.queue_message(tp.practice.id, system(), email(pat.id, i)).await.unwrap();
    }
    let slow = Arc::new(Slow::default());
    let courier: Arc<dyn Courier> = slow.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = [
        one.spawn_outbox_worker(courier.clone(), std::time::Duration::from_millis(5), stopped.clone()),
        two.spawn_outbox_worker(courier, std::time::Duration::from_millis(5), stopped),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while slow.delivered.lock().unwrap().len() < total {
        assert!(std::time::Instant::now() < deadline, "not every message went");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let delivered = slow.delivered.lock().unwrap();
    let distinct: std::collections::HashSet<_> = delivered.iter().collect();
    assert_eq!((delivered.len(), distinct.len()), (total, total), "each message once, none twice");
}

both!(
    every_message_arrives_despite_faults_and_a_killed_worker,
    a_stopped_worker_finishes_its_pass_and_leaves_nothing_claimed,
    two_servers_workers_send_each_message_once;
    // On Citus too: the worker finds each practice's messages through the wake-up table.
    citus: every_message_arrives_despite_faults_and_a_killed_worker,
    two_servers_workers_send_each_message_once
);
