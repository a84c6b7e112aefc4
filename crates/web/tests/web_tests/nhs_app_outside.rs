//! An outside check of token exchange (RFC 8693) and Prescriptions Management, written from
//! domain rules R12, R15, R22, R23 and the public docs (fhir-api.md, "The NHS App through NHS
//! England's API platform"; gp-connect.md, "Repeat prescriptions patients' apps order"), as an
//! attacker, a patient's app and NHS England's API platform would call the service.

use super::app_nhs_login::{provider_config, start_provider, KEY};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use caldicott_adapters::nhs_login::NhsLogin;
use caldicott_app::fixtures::{self, adult, consultation, linked_app, TestPractice};
use caldicott_app::{auth, App};
use caldicott_core::access::{AccessLevel, ProxyStatus};
use caldicott_core::entry::*;
use caldicott_core::ids::{EntryId, PatientId, PracticeId, TaskId};
use caldicott_core::patient::Patient;
use caldicott_core::tasks::{TaskKind, TaskStatus};
use caldicott_store::test_support::{self, TestStore};
use chrono::Duration;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

const PLATFORM_KEY: &[u8] = include_bytes!("fixtures/test-apim-client-key.pem");
const PLATFORM_PUBLIC: &str = include_str!("fixtures/test-apim-client-public.pem");
const NHS_APP_AT_NHS_LOGIN: &str = "nhs-app-at-nhs-login";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const REQUEST_ID: &str = "9a6c1e4e-37a4-4d55-9d0c-0f6c7a1f2b3c";
pub(super) const CORRELATION_ID: &str = "11C46F5F-CDEF-4865-94B2-0EE0EDCC26DA";
const ALL_SCOPES: &str = "patient/*.read patient/Appointment.write patient/Task.write";

// ---------------------------------------------------------------------------------------------
// Token exchange helpers
// ---------------------------------------------------------------------------------------------

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn id_claims(issuer: &str, level: &str, nhs: &str, born: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({
        "iss": issuer, "aud": NHS_APP_AT_NHS_LOGIN, "sub": format!("sub-{nhs}"), "exp": now + 300, "iat": now,
        "vot": format!("{level}.Cp.Cd"), "identity_proofing_level": level, "nhs_number": nhs, "birthdate": born,
    })
}

/// An ID token with these claims, signed as NHS login signs (RS256, its key "test-key-1").
fn sign_id(claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("test-key-1".into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_pem(KEY).unwrap()).unwrap()
}

fn id_token(issuer: &str, level: &str, nhs: &str, born: &str) -> String {
    sign_id(&id_claims(issuer, level, nhs, born))
}

/// An unsigned JWT (`alg: none`).
fn unsigned(claims: &Value) -> String {
    format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims.to_string().as_bytes()))
}

fn assertion_claims(app: &App, client: &str, jti: &str) -> Value {
    let now = app.now().timestamp();
    json!({ "iss": client, "sub": client, "aud": app.fhir_token_url(), "jti": jti, "iat": now, "exp": now + 300 })
}

fn sign_assertion(claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::RS512), claims, &EncodingKey::from_rsa_pem(PLATFORM_KEY).unwrap())
        .unwrap()
}

fn assertion(app: &App, client: &str, jti: &str) -> String {
    sign_assertion(&assertion_claims(app, client, jti))
}

fn enc(v: &str) -> String {
    v.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// The platform's exchange request; `extra` adds parameters or, by name, replaces one.
fn exchange_form(client: &str, assertion: &str, id_token: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("grant_type", EXCHANGE),
        ("client_id", client),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
        ("subject_token", id_token),
        ("subject_token_type", ID_TOKEN),
        ("scope", ALL_SCOPES),
    ];
    for (k, v) in extra {
        if let Some(p) = pairs.iter_mut().find(|p| p.0 == *k) {
            p.1 = v;
        } else {
            pairs.push((k, v));
        }
    }
    form(&pairs)
}

async fn post_token_with(app: &App, body: String, host: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::post("/fhir/r4/token").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(h) = host {
        req = req.header(header::HOST, h).header("X-Forwarded-Host", h).header("X-Forwarded-Proto", "http");
    }
    let res = caldicott_web::router(app.clone()).oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn post_token(app: &App, body: String) -> (StatusCode, Value) {
    post_token_with(app, body, None).await
}

async fn links_and_alerts(app: &App, practice: PracticeId, patient: PatientId) -> (usize, usize) {
    let links = app.store_for_tests().app_links_for_patient(practice, patient).await.unwrap();
    let tasks = app.store_for_tests().tasks_for_patient(practice, patient).await.unwrap();
    (links.len(), tasks.iter().filter(|t| t.kind == TaskKind::OnlineServicesLinked).count())
}

/// An app at the practice allowed to exchange NHS login ID tokens: (the App, its client id, issuer).
struct Exchange {
    app: App,
    tp: TestPractice,
    client: String,
    app_id: String,
    issuer: String,
}

async fn exchange_setup(t: &TestStore) -> Exchange {
    let issuer = start_provider().await;
    let app = App::new(t.store.clone(), fixtures::test_clock())
        .with_public_url("http://test")
        .unwrap()
        .with_nhs_login(NhsLogin::new(provider_config(&issuer)).unwrap());
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (nhs_app, _) = app.register_app(&admin, "NHS App", "NHS England", "").await.unwrap();
    app.set_app_token_exchange(&admin, &nhs_app.id.to_string(), NHS_APP_AT_NHS_LOGIN, PLATFORM_PUBLIC).await.unwrap();
    Exchange { app, tp, client: nhs_app.client_id.clone(), app_id: nhs_app.id.to_string(), issuer }
}

fn born(p: &Patient) -> String {
    p.date_of_birth.to_string()
}

async fn refused_exchanges(app: &App, practice: PracticeId, app_id: &str) -> usize {
    let events = app.store_for_tests().audit_events(practice, 0, 1_000_000).await.unwrap();
    events.iter().filter(|e| e.action == "fhir.token_issue" && e.actor_id == app_id && e.outcome != "success").count()
}

// ---------------------------------------------------------------------------------------------
// Prescriptions Management helpers
// ---------------------------------------------------------------------------------------------

/// An answer: its status, headers, JSON body and the body as text.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: axum::http::HeaderMap,
    pub(super) body: Value,
    pub(super) text: String,
}

impl Reply {
    /// The Spine code of a refusal.
    pub(super) fn code(&self) -> &str {
        self.body["issue"][0]["details"]["coding"][0]["code"].as_str().unwrap_or("")
    }
    pub(super) fn resources(&self, kind: &str) -> Vec<Value> {
        self.body["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .filter(|r| r["resourceType"] == kind)
            .collect()
    }
}

/// A request with the app's bearer token and, when given, `X-Request-ID` (and an
/// `X-Correlation-ID` beside it).
pub(super) async fn call_raw(
    app: &App,
    method: &str,
    path: &str,
    token: &str,
    body: Option<(&str, Vec<u8>)>,
    request_id: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(id) = request_id {
        req = req.header("X-Request-ID", id).header("X-Correlation-ID", CORRELATION_ID);
    }
    let req = match body {
        Some((media, b)) => req.header(header::CONTENT_TYPE, media).body(Body::from(b)).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), text }
}

async fn call(app: &App, method: &str, path: &str, token: &str, body: Option<(&str, Value)>) -> Reply {
    call_raw(app, method, path, token, body.map(|(m, b)| (m, b.to_string().into_bytes())), Some(REQUEST_ID)).await
}

async fn get(app: &App, path: &str, token: &str) -> Reply {
    call(app, "GET", path, token, None).await
}

async fn post_order(app: &App, root: &str, token: &str, body: Value) -> Reply {
    call(app, "POST", &format!("{root}/Task"), token, Some(("application/fhir+json", body))).await
}

async fn patch(app: &App, root: &str, token: &str, task: &str, body: Value) -> Reply {
    call(app, "PATCH", &format!("{root}/Task?id={task}"), token, Some(("application/json-patch+json", body))).await
}

fn cancel() -> Value {
    json!({ "op": "replace", "path": "/status", "value": "cancelled" })
}

/// A linked app's access token with `scope`, for the link's patient or, with `patient`, someone
/// they act for (its Patient id). (status, token)
pub(super) async fn token_for(
    app: &App,
    (client, secret, link): &(String, String, String),
    scope: &str,
    patient: Option<PatientId>,
) -> (StatusCode, String) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", link.as_str()), ("scope", scope)];
    let who = patient.map(|p| p.to_string());
    if let Some(w) = &who {
        pairs.push(("patient", w.as_str()));
    }
    let req = Request::post("/fhir/r4/token")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&pairs)))
        .unwrap();
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let v: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap_or(Value::Null);
    (status, v["access_token"].as_str().unwrap_or("").to_owned())
}

async fn patient_token(app: &App, tp: &TestPractice, pat: &Patient, scope: &str) -> String {
    let link = linked_app(app, tp, pat).await.unwrap();
    let (s, token) = token_for(app, &link, scope, None).await;
    assert_eq!(s, StatusCode::OK);
    token
}

fn medicine(pat: &Patient, drug: &str, course: MedicationCourse, days_ago: i64) -> Entry {
    let mut e = consultation(pat, fixtures::now() - Duration::days(days_ago), "");
    e.body =
        EntryBody::Medication { drug: drug.into(), dosage: "One daily".into(), quantity: "28 tablets".into(), course };
    e
}

fn issue_of(pat: &Patient, template: &Entry, drug: &str, days_ago: i64) -> Entry {
    let mut e = consultation(pat, fixtures::now() - Duration::days(days_ago), "");
    e.body = EntryBody::MedicationIssue {
        drug: drug.into(),
        dosage: "One daily".into(),
        quantity: "28 tablets".into(),
        template: Some(template.id),
    };
    e
}

fn hide(e: &mut Entry) {
    e.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::ThirdParty, "names a relative", "Dr Test", fixtures::now() - Duration::days(40))
            .unwrap(),
    );
}

fn order_body(nhs: &str, focus: &str) -> Value {
    json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "103742009", "display": "Renewal of prescription" }] },
        "focus": { "reference": format!("MedicationRequest/{focus}") },
        "for": { "reference": format!("Patient/{nhs}"), "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } },
        "authoredOn": "2022-10-13T09:20:27.000Z",
        "requester": { "reference": format!("Patient/{nhs}"), "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } },
        "note": [{ "authorString": "Patient", "text": "ran out" }],
    })
}

/// Open repeat orders of a patient, as tasks for a clinician.
async fn open_orders(app: &App, practice: PracticeId, pat: &Patient) -> Vec<TaskId> {
    let tasks = app.store_for_tests().tasks_for_patient(practice, pat.id).await.unwrap();
    tasks.iter().filter(|t| t.kind == TaskKind::RepeatRequest && t.status == TaskStatus::Open).map(|t| t.id).collect()
}

fn root(tp: &TestPractice) -> String {
    format!("/pfs/{}/FHIR/R4/prescriptions", tp.practice.ods_code.as_str())
}

fn plain_app(t: &TestStore) -> App {
    App::new(t.store.clone(), fixtures::test_clock()).with_public_url("http://test").unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Forged or unacceptable exchanges: refused, no token, nothing linked, each audited.
// ---------------------------------------------------------------------------------------------

async fn forged_exchanges_are_refused_and_link_nothing(t: &TestStore) {
    let x = exchange_setup(t).await;
    let (app, client, issuer) = (&x.app, x.client.as_str(), x.issuer.as_str());
    let practice = x.tp.practice.id;
    let pat = adult(app, practice).await.unwrap();
    let (nhs, dob) = (pat.nhs_number.as_str().to_owned(), born(&pat));
    let good = id_token(issuer, "P9", &nhs, &dob);
    let child = fixtures::person(practice, fixtures::today() - Duration::days(365 * 6));
    app.store_for_tests()
        .create_patient(
            practice,
            &child,
            &fixtures::audit(caldicott_core::audit::Action::PatientCreate, Some(child.id)),
        )
        .await
        .unwrap();

    let now = jsonwebtoken::get_current_timestamp();
    // The ID tokens an attacker could make.
    let alg_none = unsigned(&id_claims(issuer, "P9", &nhs, &dob));
    let other_key = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("test-key-1".into());
        jsonwebtoken::encode(
            &h,
            &id_claims(issuer, "P9", &nhs, &dob),
            &EncodingKey::from_rsa_pem(PLATFORM_KEY).unwrap(),
        )
        .unwrap()
    };
    let mut c = id_claims(issuer, "P9", &nhs, &dob);
    c["exp"] = json!(now - 3600);
    c["iat"] = json!(now - 7200);
    let expired = sign_id(&c);
    let mut c = id_claims(issuer, "P9", &nhs, &dob);
    c["identity_proofing_level"] = json!("P5");
    let p5_claim_p9_vot = sign_id(&c);
    let mut c = id_claims(issuer, "P9", &nhs, &dob);
    c.as_object_mut().unwrap().remove("birthdate");
    let no_birthdate = sign_id(&c);
    let mut c = id_claims(issuer, "P9", &nhs, &dob);
    c["iss"] = json!("https://evil.example");
    let other_iss = sign_id(&c);
    // The client assertions an attacker could make.
    let a_none = unsigned(&assertion_claims(app, client, "f-none"));
    let a_hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &assertion_claims(app, client, "f-hs"),
        &EncodingKey::from_secret(PLATFORM_PUBLIC.as_bytes()),
    )
    .unwrap();
    let mut c = assertion_claims(app, client, "f-nojti");
    c.as_object_mut().unwrap().remove("jti");
    let a_no_jti = sign_assertion(&c);
    let mut c = assertion_claims(app, client, "f-long");
    c["exp"] = json!(app.now().timestamp() + 3600);
    let a_long = sign_assertion(&c);
    let mut c = assertion_claims(app, client, "f-old");
    c["exp"] = json!(app.now().timestamp() - 120);
    c["iat"] = json!(app.now().timestamp() - 400);
    let a_expired = sign_assertion(&c);
    let mut c = assertion_claims(app, client, "f-sub");
    c["sub"] = json!("app_someone_else");
    let a_sub = sign_assertion(&c);
    let mut c = assertion_claims(app, client, "f-iss");
    c["iss"] = json!("app_someone_else");
    let a_iss = sign_assertion(&c);

    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        // R22 and "an ID token that is not right": invalid_grant.
        (
            "ID token alg none",
            exchange_form(client, &assertion(app, client, "g1"), &alg_none, &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "ID token signed by another key under NHS login's kid",
            exchange_form(client, &assertion(app, client, "g2"), &other_key, &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "ID token expired",
            exchange_form(client, &assertion(app, client, "g3"), &expired, &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "identity_proofing_level P5 (vot says P9)",
            exchange_form(client, &assertion(app, client, "g4"), &p5_claim_p9_vot, &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "ID token without birthdate",
            exchange_form(client, &assertion(app, client, "g5"), &no_birthdate, &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "ID token of another issuer, signed with NHS login's key",
            exchange_form(client, &assertion(app, client, "g6"), &other_iss, &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        // RFC 7523 / the docs' assertion rules: invalid_client (401).
        ("assertion alg none", exchange_form(client, &a_none, &good, &[]), StatusCode::UNAUTHORIZED, "invalid_client"),
        (
            "assertion HS256 keyed with the app's public key",
            exchange_form(client, &a_hs256, &good, &[]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "assertion without jti",
            exchange_form(client, &a_no_jti, &good, &[]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "assertion living an hour",
            exchange_form(client, &a_long, &good, &[]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "assertion expired",
            exchange_form(client, &a_expired, &good, &[]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "assertion sub not the client",
            exchange_form(client, &a_sub, &good, &[]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "assertion iss not the client",
            exchange_form(client, &a_iss, &good, &[]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        // A scope not offered.
        (
            "scope system/*.read",
            exchange_form(client, &assertion(app, client, "g7"), &good, &[("scope", "system/*.read")]),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        // R15: acting for someone without a live proxy link, on the very first exchange.
        (
            "patient= without a proxy link",
            exchange_form(client, &assertion(app, client, "g8"), &good, &[("patient", child.nhs_number.as_str())]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
    ];
    let mut unaudited = Vec::new();
    for (what, body, status, error) in cases {
        let before = refused_exchanges(app, practice, &x.app_id).await;
        let (s, b) = post_token(app, body).await;
        let after = refused_exchanges(app, practice, &x.app_id).await;
        if after != before + 1 {
            unaudited.push(format!("{what}: {} audit events", after - before));
        }
        assert_eq!((s, b["error"].as_str()), (status, Some(error)), "{what}: {b}");
        assert!(b.get("access_token").is_none(), "{what}: {b}");
        // "Every refusal gives no token and links nothing" (R23: no link, no alert).
        assert_eq!(links_and_alerts(app, practice, pat.id).await, (0, 0), "{what} linked the app");
    }
    // An assertion for a forged Host (aud = the forged host's token URL): refused.
    let mut c = assertion_claims(app, client, "g9");
    c["aud"] = json!("http://evil.example/fhir/r4/token");
    let before = refused_exchanges(app, practice, &x.app_id).await;
    let (s, b) =
        post_token_with(app, exchange_form(client, &sign_assertion(&c), &good, &[]), Some("evil.example")).await;
    let after = refused_exchanges(app, practice, &x.app_id).await;
    if after != before + 1 {
        unaudited.push(format!("forged host: {} audit events", after - before));
    }
    assert_eq!((s, b["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "forged host: {b}");
    assert_eq!(links_and_alerts(app, practice, pat.id).await, (0, 0));
    // Each refusal of a known app is audited at its practice (fhir-api.md; R22/R23 refusals).
    assert!(unaudited.is_empty(), "refusals of a known app not audited (each once): {unaudited:?}");
    // The control: a good exchange links, once, with one alert (R23).
    let (s, b) = post_token(app, exchange_form(client, &assertion(app, client, "ok"), &good, &[])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(links_and_alerts(app, practice, pat.id).await, (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_forged_exchanges_on_sqlite() {
    forged_exchanges_are_refused_and_link_nothing(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_forged_exchanges_on_postgres() {
    forged_exchanges_are_refused_and_link_nothing(&test_support::postgres().await.unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// 2. An assertion is good once: replayed in parallel, or its jti reused in a new assertion.
// ---------------------------------------------------------------------------------------------

async fn an_assertion_is_taken_once(t: &TestStore) {
    let x = exchange_setup(t).await;
    let (app, client, issuer) = (&x.app, x.client.clone(), x.issuer.as_str());
    let pat = adult(app, x.tp.practice.id).await.unwrap();
    let good = id_token(issuer, "P9", pat.nhs_number.as_str(), &born(&pat));
    let one = assertion(app, &client, "replayed");
    let mut runs = Vec::new();
    for _ in 0..6 {
        let (app, body) = (app.clone(), exchange_form(&client, &one, &good, &[]));
        runs.push(tokio::spawn(async move { post_token(&app, body).await }));
    }
    let mut issued = 0;
    for r in runs {
        let (s, b) = r.await.unwrap();
        if s == StatusCode::OK {
            issued += 1;
        } else {
            assert_eq!((s, b["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{b}");
        }
    }
    assert_eq!(issued, 1, "one assertion sent six times at once gave {issued} tokens");
    assert_eq!(links_and_alerts(app, x.tp.practice.id, pat.id).await, (1, 1));
    // A new assertion (another iat, so another signature) with a jti used before: refused.
    let mut c = assertion_claims(app, &client, "replayed");
    c["iat"] = json!(app.now().timestamp() - 5);
    c["exp"] = json!(app.now().timestamp() + 200);
    let (s, b) = post_token(app, exchange_form(&client, &sign_assertion(&c), &good, &[])).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "jti reused: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_assertion_once_on_sqlite() {
    an_assertion_is_taken_once(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_assertion_once_on_postgres() {
    an_assertion_is_taken_once(&test_support::postgres().await.unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Who may be reached: registration here, live proxy links only (R15), relinking (R23).
// ---------------------------------------------------------------------------------------------

async fn exchange_reaches_only_registered_people_and_live_proxies(t: &TestStore) {
    let x = exchange_setup(t).await;
    let (app, client, issuer) = (&x.app, x.client.as_str(), x.issuer.as_str());
    let practice = x.tp.practice.id;
    let create = |p: Patient| async move {
        app.store_for_tests()
            .create_patient(practice, &p, &fixtures::audit(caldicott_core::audit::Action::PatientCreate, Some(p.id)))
            .await
            .unwrap();
        p
    };
    let refused = |body: String, what: &'static str| async move {
        let (s, b) = post_token(app, body).await;
        assert_eq!((s, b["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{what}: {b}");
        assert!(b.get("access_token").is_none(), "{what}");
    };

    // A patient registered at another practice: not known here, and nothing is linked there.
    let other = fixtures::practice(app).await.unwrap();
    let elsewhere = adult(app, other.practice.id).await.unwrap();
    let id = id_token(issuer, "P9", elsewhere.nhs_number.as_str(), &born(&elsewhere));
    refused(exchange_form(client, &assertion(app, client, "e1"), &id, &[]), "another practice's patient").await;
    assert_eq!(links_and_alerts(app, other.practice.id, elsewhere.id).await, (0, 0));

    // A patient who has left the practice (R6): no access.
    let left = adult(app, practice).await.unwrap();
    let dereg = fixtures::audit(caldicott_core::audit::Action::PatientUpdate, Some(left.id));
    app.store_for_tests()
        .end_registration(practice, left.id, fixtures::today() - Duration::days(30), &dereg)
        .await
        .unwrap();
    let id = id_token(issuer, "P9", left.nhs_number.as_str(), &born(&left));
    refused(exchange_form(client, &assertion(app, client, "e2"), &id, &[]), "deregistered").await;
    assert_eq!(links_and_alerts(app, practice, left.id).await, (0, 0));

    // A parent with proxy links, live then not.
    let parent = adult(app, practice).await.unwrap();
    let parent_id = id_token(issuer, "P9", parent.nhs_number.as_str(), &born(&parent));
    let (s, b) = post_token(app, exchange_form(client, &assertion(app, client, "e3"), &parent_id, &[])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let parent_token = b["access_token"].as_str().unwrap().to_owned();
    let mut kids = Vec::new();
    for _ in 0..4 {
        let kid = create(fixtures::person(practice, fixtures::today() - Duration::days(365 * 6))).await;
        let link =
            fixtures::proxy_link(app, practice, &kid, &parent, AccessLevel::Full, fixtures::today()).await.unwrap();
        kids.push((kid, link));
    }
    let audit = || fixtures::audit(caldicott_core::audit::Action::ProxyLinkCreate, None);
    // 0: suspended; 1: ended yesterday; 2: revoked; 3: the child has left the practice (R6).
    let mut l = kids[0].1.clone();
    l.status = ProxyStatus::Suspended { since: fixtures::today(), reason: "review".into() };
    app.store_for_tests().update_proxy_link(practice, &l, &audit()).await.unwrap();
    let mut l = kids[1].1.clone();
    l.ends_on = Some(fixtures::today() - Duration::days(1));
    app.store_for_tests().update_proxy_link(practice, &l, &audit()).await.unwrap();
    let mut l = kids[2].1.clone();
    l.status = ProxyStatus::Revoked { on: fixtures::today(), reason: "asked".into() };
    app.store_for_tests().update_proxy_link(practice, &l, &audit()).await.unwrap();
    let gone = &kids[3].0;
    let dereg = fixtures::audit(caldicott_core::audit::Action::PatientUpdate, Some(gone.id));
    app.store_for_tests()
        .end_registration(practice, gone.id, fixtures::today() - Duration::days(2), &dereg)
        .await
        .unwrap();
    for (n, (kid, _)) in kids.iter().enumerate() {
        let what = ["suspended proxy link", "ended proxy link", "revoked proxy link", "child deregistered"][n];
        let jti = format!("k{n}");
        refused(
            exchange_form(client, &assertion(app, client, &jti), &parent_id, &[("patient", kid.nhs_number.as_str())]),
            what,
        )
        .await;
    }

    // R23: after "reset third party links" the old token is dead; the next sign-in links again,
    // with a new alert.
    app.reset_app_links(&x.tp.clinician, parent.nhs_number.as_str()).await.unwrap();
    let r = get(app, &format!("/fhir/r4/Patient/{}", parent.id), &parent_token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a token of a reset link still reads: {}", r.text);
    let (s, b) = post_token(app, exchange_form(client, &assertion(app, client, "e4"), &parent_id, &[])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, alerts) = links_and_alerts(app, practice, parent.id).await;
    assert_eq!(alerts, 2, "a new link after reset raises a new 'online services linked' task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_exchange_who_on_sqlite() {
    exchange_reaches_only_registered_people_and_live_proxies(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_exchange_who_on_postgres() {
    exchange_reaches_only_registered_people_and_live_proxies(&test_support::postgres().await.unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// 4. An exchanged token and Prescriptions Management: scope, and parallel orders from two apps.
// ---------------------------------------------------------------------------------------------

async fn exchanged_tokens_order_within_their_scope(t: &TestStore) {
    let x = exchange_setup(t).await;
    let (app, client, issuer) = (&x.app, x.client.as_str(), x.issuer.as_str());
    let practice = x.tp.practice.id;
    let pat = adult(app, practice).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let repeat = medicine(&pat, "Ramipril 5mg capsules", MedicationCourse::RepeatTemplate, 30);
    fixtures::add_entries(app, practice, Some(pat.id), std::slice::from_ref(&repeat)).await.unwrap();
    let id = id_token(issuer, "P9", &nhs, &born(&pat));
    let root = root(&x.tp);
    // A read-only exchange: no ordering.
    let (s, b) =
        post_token(app, exchange_form(client, &assertion(app, client, "s1"), &id, &[("scope", "patient/*.read")]))
            .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let reader = b["access_token"].as_str().unwrap().to_owned();
    let r = post_order(app, &root, &reader, order_body(&nhs, &repeat.id.to_string())).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"), "{}", r.text);
    assert!(open_orders(app, practice, &pat).await.is_empty());
    // The NHS App and another linked app order the same medicine at the same moment: one order.
    let (s, b) = post_token(app, exchange_form(client, &assertion(app, client, "s2"), &id, &[])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let nhs_app_token = b["access_token"].as_str().unwrap().to_owned();
    let wallet = patient_token(app, &x.tp, &pat, "patient/*.read patient/Task.write").await;
    let mut runs = Vec::new();
    for n in 0..6 {
        let token = if n % 2 == 0 { nhs_app_token.clone() } else { wallet.clone() };
        let (app, root, body) = (app.clone(), root.clone(), order_body(&nhs, &repeat.id.to_string()));
        runs.push(tokio::spawn(async move { post_order(&app, &root, &token, body).await.status }));
    }
    let mut made = 0;
    for r in runs {
        match r.await.unwrap() {
            StatusCode::CREATED => made += 1,
            StatusCode::CONFLICT => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(made, 1, "parallel orders of one medicine from two apps");
    assert_eq!(open_orders(app, practice, &pat).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_exchange_scope_on_sqlite() {
    exchanged_tokens_order_within_their_scope(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_exchange_scope_on_postgres() {
    exchanged_tokens_order_within_their_scope(&test_support::postgres().await.unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// 5. One patient's token and another patient's (or practice's) medicines and orders.
// ---------------------------------------------------------------------------------------------

async fn a_token_reaches_no_one_elses_prescriptions(t: &TestStore) {
    let app = plain_app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let practice = tp.practice.id;
    let root = root(&tp);
    let alice = adult(&app, practice).await.unwrap();
    let bob = adult(&app, practice).await.unwrap();
    let alice_rx = medicine(&alice, "Metformin 500mg tablets", MedicationCourse::RepeatTemplate, 30);
    let bob_rx = medicine(&bob, "BOB-ONLY Lithium 400mg tablets", MedicationCourse::RepeatTemplate, 30);
    let bob_issue = issue_of(&bob, &bob_rx, "BOB-ONLY Lithium 400mg tablets", 10);
    fixtures::add_entries(&app, practice, Some(alice.id), std::slice::from_ref(&alice_rx)).await.unwrap();
    fixtures::add_entries(&app, practice, Some(bob.id), &[bob_rx.clone(), bob_issue.clone()]).await.unwrap();
    let scope = "patient/*.read patient/Task.write";
    let alice_token = patient_token(&app, &tp, &alice, scope).await;
    let bob_token = patient_token(&app, &tp, &bob, scope).await;
    let (a_nhs, b_nhs) = (alice.nhs_number.as_str().to_owned(), bob.nhs_number.as_str().to_owned());
    let r = post_order(&app, &root, &bob_token, order_body(&b_nhs, &bob_rx.id.to_string())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let bob_task = r.body["id"].as_str().unwrap().to_owned();

    // Bob's medicines by id: unknown to Alice, answered as a made-up id is.
    let made_up = EntryId::from_uuid(uuid::Uuid::now_v7()).to_string();
    let unknown = get(&app, &format!("{root}/MedicationRequest/{made_up}"), &alice_token).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"));
    for id in [bob_rx.id.to_string(), bob_issue.id.to_string()] {
        let r = get(&app, &format!("{root}/MedicationRequest/{id}"), &alice_token).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"), "{}", r.text);
        assert!(!r.text.contains("BOB-ONLY"));
        assert_eq!(r.text.replace(&id, "X"), unknown.text.replace(&made_up, "X"), "another patient's id answers apart");
    }
    // Bob's lists by his NHS number (R15 has no link here): ACCESS_DENIED.
    for what in ["MedicationStatement", "MedicationRequest"] {
        let r = get(&app, &format!("{root}/Patient/{b_nhs}/{what}"), &alice_token).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"), "{what}: {}", r.text);
        assert!(!r.text.contains("BOB-ONLY"));
    }
    // Bob's order by its Task id: not among Alice's orders, not by id alone.
    for path in [format!("{root}/Task?patient={a_nhs}&id={bob_task}"), format!("{root}/Task?id={bob_task}")] {
        let r = get(&app, &path, &alice_token).await;
        assert!(r.resources("Task").is_empty(), "{path}: {}", r.text);
        assert!(!r.text.contains("BOB-ONLY") && !r.text.contains(&b_nhs), "{path}: {}", r.text);
    }
    // Cancelling Bob's order with Alice's token: RESOURCE_NOT_FOUND, and it still waits.
    let r = patch(&app, &root, &alice_token, &bob_task, json!([cancel()])).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"), "{}", r.text);
    let r = patch(&app, &root, &alice_token, &bob_task, cancel()).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"), "{}", r.text);
    assert_eq!(open_orders(&app, practice, &bob).await.len(), 1, "Alice cancelled Bob's order");
    // Ordering Bob's medicine: for Alice (not hers), or for Bob (not her patient).
    let before = open_orders(&app, practice, &bob).await.len();
    let r = post_order(&app, &root, &alice_token, order_body(&a_nhs, &bob_rx.id.to_string())).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "REFERENCE_NOT_FOUND"), "{}", r.text);
    assert!(!r.text.contains("BOB-ONLY"));
    let r = post_order(&app, &root, &alice_token, order_body(&b_nhs, &bob_rx.id.to_string())).await;
    assert!(r.status.is_client_error() && r.status != StatusCode::CONFLICT, "{}: {}", r.status, r.text);
    // Alice's medicine with Bob as requester (the body says `requester` is the patient).
    let mut body = order_body(&a_nhs, &alice_rx.id.to_string());
    body["requester"] = json!({ "reference": format!("Patient/{b_nhs}"),
        "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": b_nhs } });
    let r = post_order(&app, &root, &alice_token, body).await;
    assert!(r.status.is_client_error(), "an order requested in another patient's name: {} {}", r.status, r.text);
    assert_eq!(open_orders(&app, practice, &bob).await.len(), before, "an order was made for Bob");
    assert!(open_orders(&app, practice, &alice).await.is_empty(), "an order was made for Alice");

    // Another practice: its order's Task id at this practice's address, and this token at its.
    let tp2 = fixtures::practice(&app).await.unwrap();
    let carol = adult(&app, tp2.practice.id).await.unwrap();
    let carol_rx = medicine(&carol, "CAROL-ONLY Warfarin 1mg tablets", MedicationCourse::RepeatTemplate, 30);
    fixtures::add_entries(&app, tp2.practice.id, Some(carol.id), std::slice::from_ref(&carol_rx)).await.unwrap();
    let carol_token = patient_token(&app, &tp2, &carol, scope).await;
    let root2 = self::root(&tp2);
    let c_nhs = carol.nhs_number.as_str().to_owned();
    let r = post_order(&app, &root2, &carol_token, order_body(&c_nhs, &carol_rx.id.to_string())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let carol_task = r.body["id"].as_str().unwrap().to_owned();
    let r = patch(&app, &root, &alice_token, &carol_task, cancel()).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"), "{}", r.text);
    let r = patch(&app, &root2, &alice_token, &carol_task, cancel()).await;
    assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND, "{}: {}", r.status, r.text);
    assert_eq!(open_orders(&app, tp2.practice.id, &carol).await.len(), 1, "another practice's order was cancelled");
    let r = get(&app, &format!("{root}/MedicationRequest/{}", carol_rx.id), &alice_token).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"));
    let r = get(&app, &format!("{root2}/Patient/{c_nhs}/MedicationStatement"), &alice_token).await;
    assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND, "{}: {}", r.status, r.text);
    assert!(!r.text.contains("CAROL-ONLY"));
    let r = get(&app, &format!("{root2}/Patient/{a_nhs}/MedicationStatement"), &alice_token).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "ACCESS_DENIED"),
        "another practice's address: {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_cross_patient_on_sqlite() {
    a_token_reaches_no_one_elses_prescriptions(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_cross_patient_on_postgres() {
    a_token_reaches_no_one_elses_prescriptions(&test_support::postgres().await.unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// 6. R12: a hidden medicine by every path; stopped, acute and issue ids are not orderable.
// ---------------------------------------------------------------------------------------------

async fn hidden_medicines_are_reached_by_no_path(t: &TestStore) {
    let app = plain_app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let practice = tp.practice.id;
    let root = root(&tp);
    let pat = adult(&app, practice).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    // R12: the template is hidden, its issue is not (hiding a template does not hide its issues).
    let mut hidden_tpl = medicine(&pat, "SECRET-TPL Sertraline 50mg tablets", MedicationCourse::RepeatTemplate, 60);
    hide(&mut hidden_tpl);
    let visible_issue = issue_of(&pat, &hidden_tpl, "Sertraline 50mg tablets", 20);
    // A visible template with a hidden issue.
    let shown_tpl = medicine(&pat, "Levothyroxine 50mcg tablets", MedicationCourse::RepeatTemplate, 60);
    let mut hidden_issue = issue_of(&pat, &shown_tpl, "SECRET-ISSUE Levothyroxine 50mcg", 15);
    hide(&mut hidden_issue);
    // A repeat no longer current, and an acute course.
    let mut stopped = medicine(&pat, "SECRET-STOPPED Simvastatin 40mg tablets", MedicationCourse::RepeatTemplate, 90);
    stopped.superseded =
        Some(Superseded { at: fixtures::now() - Duration::days(5), note: "replaced by a later message".into() });
    let acute = medicine(&pat, "Amoxicillin 500mg capsules", MedicationCourse::Acute, 5);
    // One that is ordered, then hidden by a clinician.
    let later_hidden = medicine(&pat, "MARKER-V Propranolol 40mg tablets", MedicationCourse::RepeatTemplate, 60);
    let all = [
        hidden_tpl.clone(),
        visible_issue.clone(),
        shown_tpl.clone(),
        hidden_issue.clone(),
        stopped.clone(),
        acute.clone(),
        later_hidden.clone(),
    ];
    fixtures::add_entries(&app, practice, Some(pat.id), &all).await.unwrap();
    let token = patient_token(&app, &tp, &pat, "patient/*.read patient/Task.write").await;
    let secret_ids = [hidden_tpl.id.to_string(), hidden_issue.id.to_string(), stopped.id.to_string()];
    let leaks = |r: &Reply| -> Option<String> {
        if r.text.contains("SECRET-") {
            return Some("a hidden medicine's name".into());
        }
        secret_ids.iter().find(|id| r.text.contains(id.as_str())).map(|id| format!("hidden id {id}"))
    };
    // R12, R8: every list: nothing hidden, no reference to it, counts of what is shown only.
    for q in [
        "MedicationStatement",
        "MedicationRequest",
        "MedicationRequest?intent=plan",
        "MedicationRequest?intent=order",
        "MedicationRequest?status=active",
        "MedicationRequest?status=stopped",
        "MedicationRequest?status=completed",
    ] {
        let r = get(&app, &format!("{root}/Patient/{nhs}/{q}"), &token).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        assert_eq!(leaks(&r), None, "{q}: {}", r.text);
        if let Some(total) = r.body["total"].as_u64() {
            let shown = r.body["entry"].as_array().map_or(0, Vec::len) as u64;
            assert_eq!(total, shown, "{q}: the count counts something not shown");
        }
    }
    // The visible issue of a hidden template is shown (R12), without naming the template.
    let r = get(&app, &format!("{root}/Patient/{nhs}/MedicationRequest?intent=order"), &token).await;
    assert!(r.resources("MedicationRequest").iter().any(|m| m["id"] == visible_issue.id.to_string()), "{}", r.text);
    let r = get(&app, &format!("{root}/MedicationRequest/{}", visible_issue.id), &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(leaks(&r), None, "{}", r.text);
    // Hidden ones by id: byte for byte the made-up id's answer.
    let made_up = EntryId::from_uuid(uuid::Uuid::now_v7()).to_string();
    let unknown = get(&app, &format!("{root}/MedicationRequest/{made_up}"), &token).await;
    for id in &secret_ids {
        let r = get(&app, &format!("{root}/MedicationRequest/{id}"), &token).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"), "{id}: {}", r.text);
        assert_eq!(r.text.replace(id.as_str(), "X"), unknown.text.replace(&made_up, "X"));
    }
    // Not orderable, and the refusal names nothing: hidden template, stopped repeat, acute
    // course, an issue's id, the hidden template by an absolute URL.
    let focus_cases = [
        ("hidden template", format!("MedicationRequest/{}", hidden_tpl.id)),
        ("stopped repeat", format!("MedicationRequest/{}", stopped.id)),
        ("acute course", format!("MedicationRequest/{}", acute.id)),
        ("an issue, not a repeat", format!("MedicationRequest/{}", visible_issue.id)),
        ("absolute URL", format!("https://elsewhere.example/fhir/MedicationRequest/{}", hidden_tpl.id)),
    ];
    for (what, focus) in focus_cases {
        let mut body = order_body(&nhs, "x");
        body["focus"] = json!({ "reference": focus });
        let r = post_order(&app, &root, &token, body).await;
        // An absolute URL is not the specification's reference: INVALID_RESOURCE is as good.
        let codes: &[&str] = if what == "absolute URL" {
            &["REFERENCE_NOT_FOUND", "INVALID_RESOURCE"]
        } else {
            &["REFERENCE_NOT_FOUND"]
        };
        assert_eq!(r.status.as_u16(), 422, "{what}: {}", r.text);
        assert!(codes.contains(&r.code()), "{what}: {}", r.text);
        assert_eq!(leaks(&r), None, "{what}: {}", r.text);
    }
    assert!(open_orders(&app, practice, &pat).await.is_empty(), "a refused order was made");
    // R11, R12: ordered while shown, then hidden by a clinician: the hiding takes effect in every
    // view, so the orders no longer name the medicine ("a hidden medicine is in no list").
    let r = post_order(&app, &root, &token, order_body(&nhs, &later_hidden.id.to_string())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    app.change_visibility(
        &tp.clinician,
        &nhs,
        later_hidden.id,
        &caldicott_app::redaction::VisibilityChange::Hide {
            reason: HiddenReason::ThirdParty,
            note: "names a relative".into(),
        },
        false,
    )
    .await
    .unwrap();
    let r = get(&app, &format!("{root}/MedicationRequest/{}", later_hidden.id), &token).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"));
    for q in ["_include=Task:focus:MedicationRequest", "_include=Task:focus", "_include=*", ""] {
        let r = get(&app, &format!("{root}/Task?patient={nhs}&{q}"), &token).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        assert!(
            !r.resources("MedicationRequest").iter().any(|m| m["id"] == later_hidden.id.to_string()),
            "{q}: a hidden medicine included: {}",
            r.text
        );
        assert!(!r.text.contains("MARKER-V"), "{q}: a hidden medicine named: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_hidden_medicines_on_sqlite() {
    hidden_medicines_are_reached_by_no_path(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_hidden_medicines_on_postgres() {
    hidden_medicines_are_reached_by_no_path(&test_support::postgres().await.unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// 7. X-Request-ID, odd JSON Patch bodies, huge bodies, decided orders, a race with a clinician.
// ---------------------------------------------------------------------------------------------

async fn orders_change_only_as_the_specification_says(t: &TestStore) {
    let app = plain_app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let practice = tp.practice.id;
    let root = root(&tp);
    let pat = adult(&app, practice).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let rx: Vec<Entry> = (0..4)
        .map(|n| medicine(&pat, &format!("Drug {n} 10mg tablets"), MedicationCourse::RepeatTemplate, 30))
        .collect();
    fixtures::add_entries(&app, practice, Some(pat.id), &rx).await.unwrap();
    // One link, two tokens (a new linkage letter would end the first link's tokens, R21).
    let link = linked_app(&app, &tp, &pat).await.unwrap();
    let (s, token) = token_for(&app, &link, "patient/*.read patient/Task.write", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, reader) = token_for(&app, &link, "patient/*.read", None).await;
    assert_eq!(s, StatusCode::OK);
    let order = |n: usize| order_body(&nhs, &rx[n].id.to_string());

    // X-Request-ID: not a UUID, or missing on a write; nothing is written.
    let r =
        call_raw(&app, "GET", &format!("{root}/Patient/{nhs}/MedicationStatement"), &token, None, Some("not-a-uuid"))
            .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{}", r.text);
    let r = call_raw(
        &app,
        "POST",
        &format!("{root}/Task"),
        &token,
        Some(("application/fhir+json", order(0).to_string().into_bytes())),
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{}", r.text);
    assert!(open_orders(&app, practice, &pat).await.is_empty(), "an order without X-Request-ID was made");

    let r = post_order(&app, &root, &token, order(0)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let task = r.body["id"].as_str().unwrap().to_owned();
    let r = call_raw(
        &app,
        "PATCH",
        &format!("{root}/Task?id={task}"),
        &token,
        Some(("application/json-patch+json", json!([cancel()]).to_string().into_bytes())),
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{}", r.text);
    assert_eq!(open_orders(&app, practice, &pat).await.len(), 1);

    // Odd JSON Patch bodies: each refused, and the order still waits.
    let other_nhs = adult(&app, practice).await.unwrap().nhs_number.as_str().to_owned();
    let odd: Vec<(&str, Vec<u8>)> = vec![
        (
            "cancel plus a change of patient",
            json!([cancel(), { "op": "replace", "path": "/for/identifier/value", "value": other_nhs }])
                .to_string()
                .into_bytes(),
        ),
        (
            "cancel plus a change of medicine",
            json!([cancel(), { "op": "replace", "path": "/focus/reference", "value": format!("MedicationRequest/{}", rx[1].id) }])
                .to_string()
                .into_bytes(),
        ),
        ("remove status", json!([{ "op": "remove", "path": "/status" }]).to_string().into_bytes()),
        ("another path", json!([{ "op": "replace", "path": "/statusReason", "value": { "text": "x" } }]).to_string().into_bytes()),
        ("an empty patch", b"[]".to_vec()),
        ("not JSON", b"op=replace&path=/status".to_vec()),
        ("not a patch", json!({ "status": "cancelled" }).to_string().into_bytes()),
    ];
    for (what, body) in odd {
        let r = call_raw(
            &app,
            "PATCH",
            &format!("{root}/Task?id={task}"),
            &token,
            Some(("application/json-patch+json", body)),
            Some(REQUEST_ID),
        )
        .await;
        assert!(r.status.is_client_error(), "{what}: {} {}", r.status, r.text);
        assert_eq!(open_orders(&app, practice, &pat).await.len(), 1, "{what} changed the order");
        let r = get(&app, &format!("{root}/Task?patient={nhs}&id={task}"), &token).await;
        let tasks = r.resources("Task");
        assert_eq!(tasks.len(), 1, "{what}: {}", r.text);
        assert_eq!(tasks[0]["status"], "requested", "{what}");
        assert_eq!(tasks[0]["for"]["identifier"]["value"], nhs.as_str(), "{what}");
        assert_eq!(tasks[0]["focus"]["reference"], format!("MedicationRequest/{}", rx[0].id), "{what}");
    }
    // Task ids that are not an order's: refused without a server error, and the order waits.
    let bare = task.rsplit_once('-').map_or(task.clone(), |(head, _)| head.to_owned());
    for odd_id in [
        format!("{bare}-1"),
        format!("{bare}-99999999999999999999999"),
        format!("{bare}--1"),
        bare.clone(),
        format!("{task}%00"),
        "..%2F..%2Fadmin".to_owned(),
    ] {
        let r = patch(&app, &root, &token, &odd_id, cancel()).await;
        assert!(r.status.is_client_error(), "{odd_id}: {} {}", r.status, r.text);
        assert_eq!(open_orders(&app, practice, &pat).await.len(), 1, "{odd_id} cancelled the order");
    }
    // A read-only token does not cancel.
    let r = patch(&app, &root, &reader, &task, cancel()).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"), "{}", r.text);
    assert_eq!(open_orders(&app, practice, &pat).await.len(), 1);
    // Huge bodies: refused, nothing made.
    let mut big = order(1);
    big["note"][0]["text"] = json!("x".repeat(8 * 1024 * 1024));
    let r = post_order(&app, &root, &token, big).await;
    assert!(r.status.is_client_error(), "an 8 MB order: {}", r.status);
    assert_eq!(open_orders(&app, practice, &pat).await.len(), 1, "the 8 MB order was made");
    let huge_patch = json!([cancel(), { "op": "test", "path": "/status", "value": "y".repeat(8 * 1024 * 1024) }]);
    let r = patch(&app, &root, &token, &task, huge_patch).await;
    assert!(r.status.is_client_error(), "an 8 MB patch: {}", r.status);
    assert_eq!(open_orders(&app, practice, &pat).await.len(), 1);

    // A decided order stands: RESOURCE_NOT_FOUND, and it stays decided.
    let task_ids = open_orders(&app, practice, &pat).await;
    app.decide_repeat_item(&tp.clinician, task_ids[0], rx[0].id, true, "").await.unwrap();
    let r = patch(&app, &root, &token, &task, cancel()).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"), "{}", r.text);
    let r = get(&app, &format!("{root}/Task?patient={nhs}&id={task}"), &token).await;
    assert_eq!(r.resources("Task")[0]["status"], "completed", "{}", r.text);

    // The patient cancels while a clinician decides: one of them wins, and the Task says which.
    for round in 0..3 {
        let n = 2 + round % 2;
        let r = post_order(&app, &root, &token, order(n)).await;
        assert_eq!(r.status, StatusCode::CREATED, "round {round}: {}", r.text);
        let task = r.body["id"].as_str().unwrap().to_owned();
        let open = open_orders(&app, practice, &pat).await;
        assert_eq!(open.len(), 1);
        let (a1, a2, tk, rt, tid) = (app.clone(), app.clone(), token.clone(), root.clone(), task.clone());
        let who = tp.clinician.clone();
        let (template, internal) = (rx[n].id, open[0]);
        let cancel_run = tokio::spawn(async move { patch(&a1, &rt, &tk, &tid, cancel()).await.status });
        let decide_run =
            tokio::spawn(async move { a2.decide_repeat_item(&who, internal, template, true, "").await.is_ok() });
        let (cancelled, decided) = (cancel_run.await.unwrap() == StatusCode::OK, decide_run.await.unwrap());
        assert!(cancelled != decided, "round {round}: cancelled {cancelled}, decided {decided}: both or neither");
        let r = get(&app, &format!("{root}/Task?patient={nhs}&id={task}"), &token).await;
        let want = if cancelled { "cancelled" } else { "completed" };
        assert_eq!(r.resources("Task")[0]["status"], want, "round {round}: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_orders_change_on_sqlite() {
    orders_change_only_as_the_specification_says(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_orders_change_on_postgres() {
    orders_change_only_as_the_specification_says(&test_support::postgres().await.unwrap()).await;
}

// ---------------------------------------------------------------------------------------------
// 8. R15 (proxies order only with the prescriptions permission, under a live link) and R22 (P9).
// ---------------------------------------------------------------------------------------------

async fn proxies_and_p5_order_only_as_permitted(t: &TestStore) {
    let app = plain_app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let practice = tp.practice.id;
    let root = root(&tp);
    let parent = adult(&app, practice).await.unwrap();
    let child = fixtures::person(practice, fixtures::today() - Duration::days(365 * 7));
    app.store_for_tests()
        .create_patient(
            practice,
            &child,
            &fixtures::audit(caldicott_core::audit::Action::PatientCreate, Some(child.id)),
        )
        .await
        .unwrap();
    let child_rx = medicine(&child, "CHILD-RX Salbutamol 100mcg inhaler", MedicationCourse::RepeatTemplate, 30);
    fixtures::add_entries(&app, practice, Some(child.id), std::slice::from_ref(&child_rx)).await.unwrap();
    let mut link = fixtures::proxy_link(&app, practice, &child, &parent, AccessLevel::Full, fixtures::date(2020, 1, 1))
        .await
        .unwrap();
    link.scope.prescriptions = false;
    let audit = || fixtures::audit(caldicott_core::audit::Action::ProxyLinkCreate, None);
    app.store_for_tests().update_proxy_link(practice, &link, &audit()).await.unwrap();
    let parent_link = linked_app(&app, &tp, &parent).await.unwrap();
    let c_nhs = child.nhs_number.as_str().to_owned();
    let p_nhs = parent.nhs_number.as_str().to_owned();

    // R15: no prescriptions permission, no order.
    let (s, token) = token_for(&app, &parent_link, "patient/*.read patient/Task.write", Some(child.id)).await;
    assert_eq!(s, StatusCode::OK, "the proxy may still read what their scope allows");
    let r = post_order(&app, &root, &token, order_body(&c_nhs, &child_rx.id.to_string())).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"), "{}", r.text);
    assert!(open_orders(&app, practice, &child).await.is_empty(), "a proxy without the permission ordered");

    // With it: the order is made (the control), and the token is the child's only.
    link.scope.prescriptions = true;
    app.store_for_tests().update_proxy_link(practice, &link, &audit()).await.unwrap();
    let (s, token) = token_for(&app, &parent_link, "patient/*.read patient/Task.write", Some(child.id)).await;
    assert_eq!(s, StatusCode::OK);
    let r = post_order(&app, &root, &token, order_body(&c_nhs, &child_rx.id.to_string())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let task = r.body["id"].as_str().unwrap().to_owned();
    let r = get(&app, &format!("{root}/Patient/{p_nhs}/MedicationStatement"), &token).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"), "{}", r.text);
    // The permission taken away after the token was issued: the next request is refused.
    link.scope.prescriptions = false;
    app.store_for_tests().update_proxy_link(practice, &link, &audit()).await.unwrap();
    let r = patch(&app, &root, &token, &task, cancel()).await;
    assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNAUTHORIZED, "{}: {}", r.status, r.text);
    assert_eq!(open_orders(&app, practice, &child).await.len(), 1);
    // The link suspended: nothing of the child is read.
    link.scope.prescriptions = true;
    link.status = ProxyStatus::Suspended { since: fixtures::today(), reason: "review".into() };
    app.store_for_tests().update_proxy_link(practice, &link, &audit()).await.unwrap();
    let r = get(&app, &format!("{root}/Patient/{c_nhs}/MedicationStatement"), &token).await;
    assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNAUTHORIZED, "{}: {}", r.status, r.text);
    assert!(!r.text.contains("CHILD-RX"));

    // R22: a link made at P5 gives no record or ordering.
    let p5 = adult(&app, practice).await.unwrap();
    let p5_rx = medicine(&p5, "P5-RX Omeprazole 20mg capsules", MedicationCourse::RepeatTemplate, 30);
    fixtures::add_entries(&app, practice, Some(p5.id), std::slice::from_ref(&p5_rx)).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let (wallet, secret) = app.register_app(&admin, "P5 Wallet", "Wallet Ltd", "").await.unwrap();
    let letter = app.issue_linkage(&reception, p5.nhs_number.as_str(), "P5").await.unwrap();
    let linked = app
        .link_app(
            &wallet.client_id,
            &secret,
            &caldicott_app::apps::LinkRequest {
                ods_code: letter.ods_code,
                account_id: letter.account_id,
                linkage_key: letter.linkage_key,
                family_name: p5.name.family.clone(),
                birth_date: p5.date_of_birth.to_string(),
            },
        )
        .await;
    let (_, link_token) = linked.expect("a letter at P5 links an app (its access is what P5 allows)");
    let (s, token) =
        token_for(&app, &(wallet.client_id.clone(), secret, link_token), "patient/*.read patient/Task.write", None)
            .await;
    assert_eq!(s, StatusCode::OK);
    let n5 = p5.nhs_number.as_str();
    let r = get(&app, &format!("{root}/Patient/{n5}/MedicationStatement"), &token).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"), "P5 read: {}", r.text);
    assert!(!r.text.contains("P5-RX"));
    let r = post_order(&app, &root, &token, order_body(n5, &p5_rx.id.to_string())).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"), "P5 order: {}", r.text);
    assert!(open_orders(&app, practice, &p5).await.is_empty(), "a P5 link ordered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_proxy_and_p5_on_sqlite() {
    proxies_and_p5_order_only_as_permitted(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_proxy_and_p5_on_postgres() {
    proxies_and_p5_order_only_as_permitted(&test_support::postgres().await.unwrap()).await;
}
