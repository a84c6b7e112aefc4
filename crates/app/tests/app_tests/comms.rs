#![allow(clippy::unwrap_used, clippy::expect_used)]
//! "A security alert is done only when the patient was told, once" (R23, R38–R42): what the
//! practice sees when a safety-net message cannot reach the patient, and what the patient gets.
//! Every case runs on SQLite and on PostgreSQL.

use caldicott_app::apps::AlertOutcome;
use caldicott_app::fixtures::{self, TestPractice};
use caldicott_app::outbox::{Accepted, Courier, Failure};
use caldicott_app::{auth, App, StaffPrincipal};
use caldicott_core::audit::Action;
use caldicott_core::entry::EntryBody;
use caldicott_core::ids::TaskId;
use caldicott_core::messages::{Channel, MessageStatus, OutboundMessage, MAX_ATTEMPTS};
use caldicott_core::patient::{Patient, PreferredContactMethod};
use caldicott_core::tasks::{Task, TaskKind, TaskStatus};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// An app whose clock the test moves forward, a second at a time.
fn app_with_clock(t: &TestStore) -> (App, Arc<AtomicI64>) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = offset.clone();
    let app =
        App::new(t.store.clone(), Arc::new(move || fixtures::now() + Duration::seconds(clock.load(Ordering::SeqCst))))
            .with_notify_callback_token("callback-secret");
    (app, offset)
}

/// A courier that answers every try the same way.
struct Answers(fn(&OutboundMessage) -> Result<Accepted, Failure>);

impl Courier for Answers {
    fn deliver(&self, m: &OutboundMessage) -> Result<Accepted, Failure> {
        (self.0)(m)
    }
}

/// A registered patient who prefers email, with an address on record.
async fn emailer(app: &App, tp: &TestPractice, address: &str) -> Patient {
    let mut p = fixtures::person(tp.practice.id, fixtures::date(1980, 5, 17));
    p.contact.email = Some(address.into());
    p.preferred_contact = PreferredContactMethod::Email;
    app.store_for_tests()
        .create_patient(tp.practice.id, &p, &fixtures::audit(Action::PatientCreate, Some(p.id)))
        .await
        .unwrap();
    p
}

/// An app links to the patient; returns the alert task it raised.
async fn alert_for(app: &App, tp: &TestPractice, p: &Patient) -> TaskId {
    fixtures::linked_app(app, tp, p).await.unwrap();
    let reception = auth::authenticate(app, &tp.receptionist_token).await.unwrap();
    app.task_list(&reception, false)
        .await
        .unwrap()
        .into_iter()
        .find(|(t, l)| l.id == p.id && t.kind == TaskKind::OnlineServicesLinked)
        .map(|(t, _)| t.id)
        .expect("the link raised an alert task")
}

async fn task(app: &App, who: &StaffPrincipal, id: TaskId) -> Task {
    app.open_task(who, id).await.unwrap().0
}

async fn a_safety_net_that_fails_for_good_opens_the_alert_again(t: &TestStore) {
    // R23: the alert is done only when the patient was told. A message the provider refuses,
    // one the worker gives up on and one that bounces each put the task back in the list.
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let refused = emailer(&app, &tp, "refused@example.com").await;
    let given_up = emailer(&app, &tp, "timeout@example.com").await;
    let bounced = emailer(&app, &tp, "bounce@example.com").await;
    let mut tasks = Vec::new();
    for p in [&refused, &given_up, &bounced] {
        let id = alert_for(&app, &tp, p).await;
        assert_eq!(app.action_alert(&reception, id, false).await.unwrap(), AlertOutcome::Sent(Channel::Email));
        assert_eq!(task(&app, &reception, id).await.status, TaskStatus::Done);
        tasks.push(id);
    }
    let courier: Arc<dyn Courier> = Arc::new(Answers(|m| match m.recipient.as_str() {
        "refused@example.com" => Err(Failure::Permanent("the mail server refused it: 550 no such user".into())),
        "timeout@example.com" => Err(Failure::Temporary("the mail server did not take it: timed out".into())),
        _ => Ok(Accepted::Sent(format!("provider-{}", m.id))),
    }));
    // The worker runs until nothing is left to try, as the hours pass.
    for _ in 0..=MAX_ATTEMPTS + 1 {
        app.deliver_due(&courier, 10).await.unwrap();
        clock.fetch_add(3600, Ordering::SeqCst);
    }
    // The bounce comes back from the provider later.
    let sent = app.store_for_tests().messages_for_patient(tp.practice.id, bounced.id).await.unwrap().remove(0);
    assert_eq!(sent.status, MessageStatus::Sent);
    assert!(app
        .notify_delivery_report("callback-secret", sent.provider_id.as_deref().unwrap(), "permanent-failure")
        .await
        .unwrap());

    let open: Vec<TaskId> = app.task_list(&reception, false).await.unwrap().into_iter().map(|(t, _)| t.id).collect();
    for (id, why) in tasks.iter().zip(["550 no such user", "gave up", "could not deliver"]) {
        let reopened = task(&app, &reception, *id).await;
        assert_eq!(reopened.status, TaskStatus::Open, "{reopened:?}");
        assert!(open.contains(id), "the alert is back in the open task list");
        let outcome = reopened.outcome.clone().unwrap_or_default();
        assert!(outcome.contains("Safety-net email not delivered") && outcome.contains(why), "{outcome}");
        assert!(reopened.closed_at.is_none() && reopened.closed_by.is_none());
    }
    // Each reopening is in the audit trail, naming the task and the message.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 10_000).await.unwrap();
    for (id, p) in tasks.iter().zip([&refused, &given_up, &bounced]) {
        let message = app.store_for_tests().messages_for_patient(tp.practice.id, p.id).await.unwrap().remove(0);
        assert_eq!(message.status, MessageStatus::Failed);
        let reopen = events
            .iter()
            .filter(|e| e.entity == format!("task/{id}") && e.action == Action::TaskReopen.as_str())
            .collect::<Vec<_>>();
        assert_eq!(reopen.len(), 1, "one audited reopening for {id}");
        assert!(reopen[0].detail.contains(&format!("message/{}", message.id)), "{}", reopen[0].detail);
        assert_eq!(reopen[0].patient.as_deref(), Some(p.id.to_string().as_str()));
    }
    assert!(caldicott_app::audit_log::verify_chain(app.store_for_tests().as_ref(), tp.practice.id, &[])
        .await
        .unwrap()
        .is_ok());
    // A failure report that comes again changes nothing more.
    assert!(!app
        .notify_delivery_report("callback-secret", sent.provider_id.as_deref().unwrap(), "permanent-failure")
        .await
        .unwrap());
    // Staff can action the alert again: a fresh message goes and the task is done once more.
    assert_eq!(app.action_alert(&reception, tasks[0], true).await.unwrap(), AlertOutcome::Sent(Channel::Email));
    assert_eq!(task(&app, &reception, tasks[0]).await.status, TaskStatus::Done);
    assert_eq!(app.store_for_tests().messages_for_patient(tp.practice.id, refused.id).await.unwrap().len(), 2);
}

async fn a_message_that_fails_without_an_alert_reopens_nothing(t: &TestStore) {
    // Only a safety-net message has an alert to reopen; a preset sent by hand that fails stays
    // a failed message, and no task changes.
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let p = emailer(&app, &tp, "refused@example.com").await;
    let id = alert_for(&app, &tp, &p).await;
    assert_eq!(app.action_alert(&reception, id, false).await.unwrap(), AlertOutcome::Sent(Channel::Email));
    let ok: Arc<dyn Courier> = Arc::new(Answers(|m| Ok(Accepted::Delivered(format!("p-{}", m.id)))));
    app.deliver_due(&ok, 10).await.unwrap();
    app.send_preset(&reception, p.nhs_number.as_str(), caldicott_core::messages::SAFETY_NET_NAME, &send_key())
        .await
        .unwrap();
    let refuse: Arc<dyn Courier> = Arc::new(Answers(|_| Err(Failure::Permanent("550 no such user".into()))));
    app.deliver_due(&refuse, 10).await.unwrap();
    let messages = app.store_for_tests().messages_for_patient(tp.practice.id, p.id).await.unwrap();
    assert_eq!(
        messages.iter().map(|m| m.status).collect::<Vec<_>>(),
        vec![MessageStatus::Failed, MessageStatus::Delivered]
    );
    assert_eq!(task(&app, &reception, id).await.status, TaskStatus::Done, "a delivered safety net stays done");
}

/// A patient who prefers text messages, with a mobile number, whose latest SMS consent code is a
/// dissent (R40).
async fn dissenting_texter(app: &App, tp: &TestPractice, email: Option<&str>) -> Patient {
    let mut p = fixtures::person(tp.practice.id, fixtures::date(1975, 1, 2));
    p.contact.mobile = Some("07700 900111".into());
    p.contact.email = email.map(str::to_owned);
    p.preferred_contact = PreferredContactMethod::Sms;
    app.store_for_tests()
        .create_patient(tp.practice.id, &p, &fixtures::audit(Action::PatientCreate, Some(p.id)))
        .await
        .unwrap();
    let mut dissent = fixtures::consultation(&p, fixtures::now() - Duration::days(3), "");
    dissent.body = EntryBody::Coded { value: None };
    dissent.code = Some(caldicott_core::snomed::Coding {
        concept: caldicott_core::snomed::ConceptId::parse(caldicott_core::snomed::SMS_DISSENT).unwrap(),
        term: "Dissent from SMS".into(),
    });
    fixtures::add_entries(app, tp.practice.id, Some(p.id), &[dissent]).await.unwrap();
    p
}

async fn an_sms_dissent_is_named_as_the_reason_a_text_cannot_go(t: &TestStore) {
    // R40: when the dissent is why no text goes, the alert says so, not that there is no
    // preference or no mobile number.
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let p = dissenting_texter(&app, &tp, None).await;
    let id = alert_for(&app, &tp, &p).await;
    for anyway in [false, true] {
        let AlertOutcome::Manual(why) = app.action_alert(&reception, id, anyway).await.unwrap() else {
            panic!("no text goes against a dissent")
        };
        assert!(why.contains("dissent from text messages"), "{why}");
        assert!(!why.contains("No SMS or email preference") && !why.contains("mobile number on record"), "{why}");
        assert!(why.contains("contact the patient"), "{why}");
    }
    assert_eq!(task(&app, &reception, id).await.status, TaskStatus::Open);
    assert!(app.store_for_tests().messages_for_patient(tp.practice.id, p.id).await.unwrap().is_empty());
    // With an email address too, sending anyway goes by email, and the dissent still stands.
    let q = dissenting_texter(&app, &tp, Some("q@example.com")).await;
    let id = alert_for(&app, &tp, &q).await;
    let AlertOutcome::Manual(why) = app.action_alert(&reception, id, false).await.unwrap() else { panic!() };
    assert!(why.contains("dissent from text messages"), "{why}");
    assert_eq!(app.action_alert(&reception, id, true).await.unwrap(), AlertOutcome::Sent(Channel::Email));
}

/// The key a "Send a message" form carries, made when the page is shown.
fn send_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn a_message_submitted_twice_at_once_goes_once(t: &TestStore) {
    // "Send a message" submitted twice (a double click, a resent form) with the same form key:
    // one message, one audit event, however close together the requests come.
    use caldicott_core::messages::SAFETY_NET_NAME;
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let p = emailer(&app, &tp, "twice@example.com").await;
    let nhs = p.nhs_number.as_str().to_owned();
    let key = send_key();
    let mut sends = Vec::new();
    for _ in 0..8 {
        let (app, who, nhs, key) = (app.clone(), reception.clone(), nhs.clone(), key.clone());
        sends.push(tokio::spawn(async move { app.send_preset(&who, &nhs, SAFETY_NET_NAME, &key).await }));
    }
    for s in sends {
        let composed = s.await.unwrap().unwrap();
        assert_eq!(composed.channel, Some(Channel::Email), "each request is answered as sent");
    }
    let messages = app.store_for_tests().messages_for_patient(tp.practice.id, p.id).await.unwrap();
    assert_eq!(messages.len(), 1, "one message for one form");
    let queued = app
        .store_for_tests()
        .audit_events(tp.practice.id, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::MessageQueue.as_str() && e.patient.as_deref() == Some(&p.id.to_string()))
        .count();
    assert_eq!(queued, 1, "and one audit event");
    // The key is not personal data: it reaches no provider, and says nothing about the patient.
    for personal in [p.nhs_number.as_str(), "twice@example.com", "Patient"] {
        assert!(!messages[0].idempotency_key.contains(personal));
    }
    // A new form (a new key) is a new message.
    app.send_preset(&reception, &nhs, SAFETY_NET_NAME, &send_key()).await.unwrap();
    assert_eq!(app.store_for_tests().messages_for_patient(tp.practice.id, p.id).await.unwrap().len(), 2);
    // A request without a usable key is refused and changes nothing.
    for bad in ["", "not-a-key"] {
        assert!(matches!(
            app.send_preset(&reception, &nhs, SAFETY_NET_NAME, bad).await,
            Err(caldicott_app::AppError::BadRequest(_))
        ));
    }
    assert_eq!(app.store_for_tests().messages_for_patient(tp.practice.id, p.id).await.unwrap().len(), 2);
}

/// How a safety-net message gives the time of a link: UK time, as the patient's clock shows it.
fn uk_words(at: chrono::DateTime<chrono::Utc>) -> String {
    caldicott_core::appointments::uk_time(at).format("%-d %B %Y at %H:%M").to_string()
}

async fn the_safety_net_names_the_app_and_when_it_linked(t: &TestStore) {
    // R23: the patient can tell their own link from someone else's: the default safety net
    // names the app and when it linked, each alert its own; previews show both.
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let p = emailer(&app, &tp, "two.apps@example.com").await;
    let nhs = p.nhs_number.as_str().to_owned();
    let mut alerts = Vec::new();
    for (name, after) in [("Health Wallet", 0), ("Other Reader", 3 * 3600 + 17 * 60)] {
        clock.fetch_add(after, Ordering::SeqCst);
        let (registered, secret) = app.register_app(&admin, name, "Supplier Ltd", "").await.unwrap();
        let letter = app.issue_linkage(&reception, &nhs, "P9").await.unwrap();
        let request = caldicott_app::apps::LinkRequest {
            ods_code: letter.ods_code,
            account_id: letter.account_id,
            linkage_key: letter.linkage_key,
            family_name: p.name.family.clone(),
            birth_date: p.date_of_birth.to_string(),
        };
        let (link, _) = app.link_app(&registered.client_id, &secret, &request).await.unwrap();
        let task = app
            .task_list(&reception, false)
            .await
            .unwrap()
            .into_iter()
            .find(|(t, l)| {
                l.id == p.id && t.kind == TaskKind::OnlineServicesLinked && !alerts.iter().any(|(id, _, _)| *id == t.id)
            })
            .map(|(t, _)| t.id)
            .unwrap();
        alerts.push((task, name, link.linked_at));
    }
    // The later alert is actioned first; each message names its own app and time.
    for (task, name, at) in alerts.iter().rev() {
        assert_eq!(app.action_alert(&reception, *task, false).await.unwrap(), AlertOutcome::Sent(Channel::Email));
        let m = app.store_for_tests().messages_for_patient(tp.practice.id, p.id).await.unwrap().remove(0);
        assert!(m.body.contains(name), "{}", m.body);
        assert!(m.body.contains(&uk_words(*at)), "{} in {}", uk_words(*at), m.body);
        assert!(!m.body.contains('<'), "every placeholder filled: {}", m.body);
    }
    let bodies: Vec<String> = app
        .store_for_tests()
        .messages_for_patient(tp.practice.id, p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert!(!bodies[0].contains("Other Reader") && !bodies[1].contains("Health Wallet"), "{bodies:?}");
    // A practice's own wording may use them, and the preview shows them for a real patient (the
    // latest link), or says so plainly for a patient with none.
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let wording =
        "<initials>: <app_name> linked to your record on <linked_at>. Not you? Call <organisation_main_telephone>";
    assert!(app.save_preset(&manager, "Own safety net", wording).await.unwrap().is_ok());
    let preview = app.preview_preset(&reception, wording, &nhs).await.unwrap().unwrap();
    assert_eq!(
        preview.text,
        format!("T.P.: Other Reader linked to your record on {}. Not you? Call 01632 960000", uk_words(alerts[1].2))
    );
    let nobody = emailer(&app, &tp, "no.apps@example.com").await;
    let preview = app.preview_preset(&reception, wording, nobody.nhs_number.as_str()).await.unwrap().unwrap();
    assert!(!preview.text.contains('<') && !preview.text.contains(": linked"), "{}", preview.text);
}

both!(
    a_safety_net_that_fails_for_good_opens_the_alert_again,
    a_message_that_fails_without_an_alert_reopens_nothing,
    an_sms_dissent_is_named_as_the_reason_a_text_cannot_go,
    a_message_submitted_twice_at_once_goes_once,
    the_safety_net_names_the_app_and_when_it_linked,
);
