#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The GOV.UK Notify courier against a local server that implements Notify's documented
//! contract (the v2 notifications API with a fresh HS256 JWT per request), and Notify's
//! delivery reports coming back to caldicott.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use caldicott_adapters::notify::{NotifyConfig, NotifyCourier};
use caldicott_app::fixtures::{self, adult};
use caldicott_app::outbox::{Courier, Draft};
use caldicott_app::App;
use caldicott_core::audit::{Actor, ActorKind};
use caldicott_core::messages::{Channel, MessageStatus};
use caldicott_store::test_support;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

const SERVICE: &str = "26785a09-ab16-4eb0-8407-a37497a57506";
const SECRET: &str = "3d844edf-8d35-48ac-975b-e847b4f122b0";

#[derive(Clone, Default)]
struct FakeNotify {
    /// Every notification Notify created: (kind, request body, notification id).
    received: Arc<Mutex<Vec<(String, Value)>>>,
    ids: Arc<Mutex<Vec<String>>>,
    refused_once: Arc<Mutex<Vec<String>>>,
    /// Whether the first request of each kind meets the rate limit.
    rate_limit_first: bool,
    /// Recipients whose first notification is answered only after this long: Notify has created
    /// it, but the answer comes late.
    late: Arc<Mutex<HashMap<String, std::time::Duration>>>,
}

/// Notify's check of the bearer JWT: signed with the key's secret, iss = service id, iat within
/// 30 seconds.
fn authorised(headers: &HeaderMap) -> bool {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else { return false };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let Ok(claims) =
        jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()), &v)
    else {
        return false;
    };
    let now = jsonwebtoken::get_current_timestamp() as i64;
    claims.claims["iss"] == SERVICE && (now - claims.claims["iat"].as_i64().unwrap_or(0)).abs() <= 30
}

/// GET /v2/notifications?reference=…, as Notify documents it: the notifications with that
/// reference, newest first.
async fn find_notifications(
    State(s): State<FakeNotify>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    if !authorised(&headers) {
        return (StatusCode::FORBIDDEN, Json(json!({ "status_code": 403, "errors": [{ "error": "AuthError" }] })));
    }
    let reference = q.get("reference").cloned().unwrap_or_default();
    let received = s.received.lock().unwrap();
    let ids = s.ids.lock().unwrap();
    let found: Vec<Value> = received
        .iter()
        .zip(ids.iter())
        .rev()
        .filter(|((_, body), _)| body["reference"] == reference.as_str())
        .map(
            |((kind, body), id)| json!({ "id": id, "reference": body["reference"], "type": kind, "status": "sending" }),
        )
        .collect();
    (StatusCode::OK, Json(json!({ "notifications": found, "links": { "current": "" } })))
}

/// POST /v2/notifications/{email|sms|letter}, as Notify documents it.
async fn notifications(
    State(s): State<FakeNotify>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let error = |status: StatusCode, message: &str| {
        (
            status,
            Json(
                json!({ "status_code": status.as_u16(), "errors": [{ "error": "BadRequestError", "message": message }] }),
            ),
        )
    };
    if !authorised(&headers) {
        return error(StatusCode::FORBIDDEN, "Invalid token: signature, iss or iat");
    }
    let need: &[&str] = match kind.as_str() {
        "email" => &["email_address", "template_id"],
        "sms" => &["phone_number", "template_id"],
        "letter" => &["template_id"],
        _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    if need.iter().any(|k| body[*k].as_str().is_none_or(str::is_empty))
        || body["personalisation"]["body"].as_str().is_none()
    {
        return error(StatusCode::BAD_REQUEST, "missing field");
    }
    if kind == "letter" && body["personalisation"]["address_line_1"].as_str().is_none() {
        return error(StatusCode::BAD_REQUEST, "address_line_1 is required");
    }
    // The first request of each kind meets the rate limit, so the retry path runs too.
    if s.rate_limit_first {
        let mut refused = s.refused_once.lock().unwrap();
        if !refused.contains(&kind) {
            refused.push(kind.clone());
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds",
            );
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let recipient = body["email_address"].as_str().or(body["phone_number"].as_str()).unwrap_or("").to_owned();
    {
        let mut received = s.received.lock().unwrap();
        received.push((kind, body.clone()));
        s.ids.lock().unwrap().push(id.clone());
    }
    let late = s.late.lock().unwrap().remove(&recipient);
    if let Some(wait) = late {
        tokio::time::sleep(wait).await;
    }
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "reference": body["reference"], "content": {}, "uri": "", "template": {} })),
    )
}

async fn start_fake(rate_limit_first: bool) -> (String, FakeNotify) {
    let state = FakeNotify { rate_limit_first, ..FakeNotify::default() };
    let router = Router::new()
        .route("/v2/notifications", get(find_notifications))
        .route("/v2/notifications/{kind}", post(notifications))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), state)
}

async fn report(app: &App, token: &str, body: Value) -> StatusCode {
    let req = Request::post("/notify/delivery-reports")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    caldicott_web::router(app.clone()).oneshot(req).await.unwrap().status()
}

async fn notify_delivers_with_a_fresh_token_and_reports_come_back(t: &test_support::TestStore) {
    // R41, T8 (no personal data in references)
    let (base_url, fake) = start_fake(true).await;
    let offset = Arc::new(AtomicI64::new(0));
    let clock = offset.clone();
    let app = App::new(
        t.store.clone(),
        Arc::new(move || caldicott_app::fixtures::now() + chrono::Duration::seconds(clock.load(Ordering::SeqCst))),
    )
    .with_notify_callback_token("callback-secret");
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let system = Actor { kind: ActorKind::System, id: "test".into(), role: "system".into() };
    let mut ids = Vec::new();
    for (channel, to) in [
        (Channel::Email, "test.patient@example.com"),
        (Channel::Sms, "07700 900123"),
        (Channel::Letter, "Test Patient\n1 Test Street\nTE1 1ST"),
    ] {
        let draft = Draft {
            patient: pat.id,
            purpose: "test",
            channel,
            recipient: to.into(),
            subject: "From your practice".into(),
            body: "Test Patient, your practice has a message for you.".into(),
        };
        ids.push(app.queue_message(tp.practice.id, system.clone(), draft).await.unwrap().id);
    }
    let key = format!("caldicott_test-{SERVICE}-{SECRET}");
    let (service_id, secret) = caldicott_adapters::notify::split_key(&key).unwrap();
    assert!(caldicott_adapters::notify::split_key("not-a-key").is_err());
    let courier: Arc<dyn Courier> = Arc::new(NotifyCourier::new(NotifyConfig {
        base_url,
        service_id,
        secret,
        email_template: "e-template".into(),
        sms_template: "s-template".into(),
        letter_template: "l-template".into(),
    }));
    // First pass: each kind meets a 429 and is queued again; the retry goes through.
    assert_eq!(app.deliver_due(&courier, 10).await.unwrap(), 3);
    let messages = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap();
    assert!(messages
        .iter()
        .all(|m| m.status == MessageStatus::Queued && m.last_error.as_deref().unwrap_or("").contains("429")));
    // The retry comes due after its backoff.
    offset.fetch_add(10, Ordering::SeqCst);
    assert_eq!(app.deliver_due(&courier, 10).await.unwrap(), 3);
    let messages = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap();
    assert!(messages.iter().all(|m| m.status == MessageStatus::Sent && m.provider_id.is_some()), "{messages:?}");
    // T8: the reference is the message id, nothing about the person.
    for (_, body) in fake.received.lock().unwrap().iter() {
        let reference = body["reference"].as_str().unwrap();
        assert!(ids.iter().any(|id| id.to_string() == reference));
        for personal in [pat.nhs_number.as_str(), "Test Patient", "example.com", "07700", "TE1"] {
            assert!(!reference.contains(personal));
        }
    }
    // Delivery reports: the wrong token is refused; each report is applied once.
    let email = messages.iter().find(|m| m.channel == Channel::Email).unwrap();
    let sms = messages.iter().find(|m| m.channel == Channel::Sms).unwrap();
    let pid = email.provider_id.clone().unwrap();
    assert_eq!(report(&app, "guess", json!({"id": pid, "status": "delivered"})).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        report(&app, "callback-secret", json!({"id": pid, "status": "delivered"})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        report(&app, "callback-secret", json!({"id": pid, "status": "delivered"})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(report(&app, "callback-secret", json!({"nope": 1})).await, StatusCode::BAD_REQUEST);
    // Without the token nothing of the body is read: a malformed or outsized one is answered
    // 401 like any other (ASVS 13.1: authentication before processing).
    assert_eq!(report(&app, "guess", json!({"nope": 1})).await, StatusCode::UNAUTHORIZED);
    assert_eq!(report(&app, "guess", json!({"pad": "x".repeat(3 * 1024 * 1024)})).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        report(&app, "callback-secret", json!({"pad": "x".repeat(64 * 1024)})).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let sms_pid = sms.provider_id.clone().unwrap();
    report(&app, "callback-secret", json!({"id": sms_pid, "status": "permanent-failure"})).await;
    let messages = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap();
    let status_of = |c: Channel| messages.iter().find(|m| m.channel == c).unwrap().clone();
    assert_eq!(status_of(Channel::Email).status, MessageStatus::Delivered);
    let failed = status_of(Channel::Sms);
    assert_eq!(failed.status, MessageStatus::Failed);
    assert!(failed.last_error.unwrap().contains("check the address or number"));
    assert_eq!(failed.fragments, 1);
    // A temporary failure goes back in the queue by itself (R41).
    let letter = status_of(Channel::Letter);
    report(&app, "callback-secret", json!({"id": letter.provider_id.clone().unwrap(), "status": "temporary-failure"}))
        .await;
    let again = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap();
    let letter = again.iter().find(|m| m.channel == Channel::Letter).unwrap();
    assert_eq!(letter.status, MessageStatus::Queued);
    assert!(letter.next_attempt_at > caldicott_app::fixtures::now() + chrono::Duration::minutes(50));
    // Staff see it among the failed messages and send it again.
    let listed = app.failed_messages(&tp.clinician).await.unwrap();
    assert_eq!(listed.len(), 1);
    app.retry_message(&tp.clinician, failed.id).await.unwrap();
    assert!(app.retry_message(&tp.clinician, failed.id).await.is_err(), "only a failed message is retried");
}

fn config(base_url: String) -> NotifyConfig {
    NotifyConfig {
        base_url,
        service_id: SERVICE.into(),
        secret: SECRET.into(),
        email_template: "e-template".into(),
        sms_template: "s-template".into(),
        letter_template: "l-template".into(),
    }
}

/// How many notifications Notify holds with this reference.
fn held(fake: &FakeNotify, reference: &str) -> usize {
    fake.received.lock().unwrap().iter().filter(|(_, b)| b["reference"] == reference).count()
}

async fn each_message_reaches_notify_once_after_a_late_answer_or_a_stopped_worker(t: &test_support::TestStore) {
    // R41, exactly once towards the provider: a try whose answer never came back (Notify answered
    // after the client's timeout, or the worker was stopped mid-send) may still have reached
    // Notify; the patient must get the message once.
    let (base_url, fake) = start_fake(false).await;
    let offset = Arc::new(AtomicI64::new(0));
    let clock = offset.clone();
    let app = App::new(
        t.store.clone(),
        Arc::new(move || caldicott_app::fixtures::now() + chrono::Duration::seconds(clock.load(Ordering::SeqCst))),
    );
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let system = Actor { kind: ActorKind::System, id: "test".into(), role: "system".into() };
    let draft = |channel: Channel, to: &str| Draft {
        patient: pat.id,
        purpose: "test",
        channel,
        recipient: to.into(),
        subject: "From your practice".into(),
        body: "Your practice has a message for you.".into(),
    };
    // 1. Notify creates the text message but answers only after the client has given up.
    fake.late.lock().unwrap().insert("07700 900001".into(), std::time::Duration::from_millis(1500));
    let late = app.queue_message(tp.practice.id, system.clone(), draft(Channel::Sms, "07700 900001")).await.unwrap();
    let impatient: Arc<dyn Courier> =
        Arc::new(NotifyCourier::with_timeout(config(base_url.clone()), std::time::Duration::from_millis(400)));
    assert_eq!(app.deliver_due(&impatient, 10).await.unwrap(), 1);
    let m = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().remove(0);
    assert_eq!(m.status, MessageStatus::Queued, "no answer in time: tried again later");
    assert_eq!(held(&fake, &late.id.to_string()), 1, "but Notify has it");
    offset.fetch_add(60, Ordering::SeqCst);
    assert_eq!(app.deliver_due(&impatient, 10).await.unwrap(), 1);
    let m = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().remove(0);
    assert_eq!(m.status, MessageStatus::Sent, "{:?}", m.last_error);
    assert_eq!(held(&fake, &late.id.to_string()), 1, "the retry found it at Notify and did not send it again");
    let notify_id = fake.ids.lock().unwrap()[0].clone();
    assert_eq!(m.provider_id.as_deref(), Some(notify_id.as_str()), "its delivery reports will match");

    // 2. The worker is stopped while Notify is taking the email; a later worker takes it up.
    fake.late.lock().unwrap().insert("stopped@example.com".into(), std::time::Duration::from_millis(2000));
    let stopped =
        app.queue_message(tp.practice.id, system.clone(), draft(Channel::Email, "stopped@example.com")).await.unwrap();
    let patient: Arc<dyn Courier> = Arc::new(NotifyCourier::new(config(base_url.clone())));
    let (a, c) = (app.clone(), patient.clone());
    let worker = tokio::spawn(async move { a.deliver_due(&c, 10).await });
    for _ in 0..200 {
        if held(&fake, &stopped.id.to_string()) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    worker.abort();
    let _ = worker.await;
    let in_flight = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().remove(0);
    assert_eq!((in_flight.id, in_flight.status), (stopped.id, MessageStatus::Sending), "stopped mid-send");
    offset.fetch_add(caldicott_app::outbox::LEASE.num_seconds() + 1, Ordering::SeqCst);
    assert_eq!(app.deliver_due(&patient, 10).await.unwrap(), 1, "the claim ran out and the message is taken up");
    let m = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().remove(0);
    assert_eq!(m.status, MessageStatus::Sent, "{:?}", m.last_error);
    // Even once the stopped try's late answer has come and gone, Notify holds each message once.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    offset.fetch_add(3600, Ordering::SeqCst);
    assert_eq!(app.deliver_due(&patient, 10).await.unwrap(), 0);
    assert_eq!(held(&fake, &stopped.id.to_string()), 1);
    assert_eq!(held(&fake, &late.id.to_string()), 1);
    assert_eq!(fake.received.lock().unwrap().len(), 2, "one notification per message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_once_on_sqlite() {
    each_message_reaches_notify_once_after_a_late_answer_or_a_stopped_worker(&test_support::sqlite().await.unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_once_on_postgres() {
    each_message_reaches_notify_once_after_a_late_answer_or_a_stopped_worker(&test_support::postgres().await.unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_on_sqlite() {
    notify_delivers_with_a_fresh_token_and_reports_come_back(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_on_postgres() {
    notify_delivers_with_a_fresh_token_and_reports_come_back(&test_support::postgres().await.unwrap()).await;
}
