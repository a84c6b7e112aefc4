//! Token exchange (RFC 8693) at the FHIR token endpoint, as NHS England's API platform sends it
//! for the NHS App: the platform is a registered client that signs its assertion (RS512,
//! `private_key_jwt`) and sends its user's NHS login ID token as the subject token. Written from
//! RFC 8693 §2 (request and response), RFC 7523 §3 (the assertion), R22 (P9 only), R23 (a new
//! link raises the "online services linked" task), R15 (a proxy acts only under a live link)
//! and the standard that nothing hidden reaches an online viewer.

use super::app_nhs_login::{provider_config, start_provider, KEY};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use caldicott_adapters::nhs_login::NhsLogin;
use caldicott_app::fixtures::{self, adult, withheld_entries};
use caldicott_app::{auth, App};
use caldicott_core::tasks::TaskKind;
use caldicott_store::test_support::{self, TestStore};
use chrono::Duration;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

const PLATFORM_KEY: &[u8] = include_bytes!("fixtures/test-apim-client-key.pem");
const PLATFORM_PUBLIC: &str = include_str!("fixtures/test-apim-client-public.pem");
/// The NHS App's client id at NHS login: the audience of the ID tokens it exchanges.
const NHS_APP_AT_NHS_LOGIN: &str = "nhs-app-at-nhs-login";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An NHS login ID token for a person, issued to `audience`, as the provider signs it.
fn id_token(issuer: &str, audience: &str, level: &str, nhs: &str, born: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("test-key-1".into());
    let claims = json!({
        "iss": issuer, "aud": audience, "sub": format!("sub-{nhs}"), "exp": now + 300, "iat": now,
        "vot": format!("{level}.Cp.Cd"), "identity_proofing_level": level, "nhs_number": nhs, "birthdate": born,
    });
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_pem(KEY).unwrap()).unwrap()
}

/// The platform's client assertion (RFC 7523): iss and sub its client id, aud the token
/// endpoint, a fresh jti, five minutes by the service's clock; RS512 as the platform signs.
fn assertion(app: &App, client_id: &str, jti: &str) -> String {
    assertion_with(app, client_id, jti, &app.fhir_token_url(), Algorithm::RS512, PLATFORM_KEY)
}

fn assertion_with(app: &App, client_id: &str, jti: &str, aud: &str, alg: Algorithm, pem: &[u8]) -> String {
    let now = app.now().timestamp();
    let claims = json!({ "iss": client_id, "sub": client_id, "aud": aud, "jti": jti, "iat": now, "exp": now + 300 });
    let key = match alg {
        Algorithm::ES384 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap()
}

/// The exchange request the platform sends (its form parameters as the platform names them).
fn exchange_form(client_id: &str, assertion: &str, id_token: &str, issuer: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("grant_type", EXCHANGE),
        ("client_id", client_id),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
        ("subject_token", id_token),
        ("subject_token_type", ID_TOKEN),
        ("subject_issuer", issuer),
        ("scope", "patient/*.read patient/Appointment.write patient/Task.write"),
    ];
    pairs.extend_from_slice(extra);
    // application/x-www-form-urlencoded: every byte but letters and digits percent-encoded.
    let enc = |v: &str| {
        v.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

async fn post_token(app: &App, form: String) -> (StatusCode, Value) {
    let req = Request::post("/fhir/r4/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn get(app: &App, token: &str, path: &str) -> (StatusCode, String) {
    let req = Request::get(path).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap();
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    (status, String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned())
}

/// (links of the app to the patient, "online services linked" tasks of the patient).
async fn links_and_alerts(
    app: &App,
    practice: caldicott_core::ids::PracticeId,
    patient: caldicott_core::ids::PatientId,
) -> (usize, usize) {
    let links = app.store_for_tests().app_links_for_patient(practice, patient).await.unwrap();
    let tasks = app.store_for_tests().tasks_for_patient(practice, patient).await.unwrap();
    (links.len(), tasks.iter().filter(|t| t.kind == TaskKind::OnlineServicesLinked).count())
}

/// The service with NHS login set up against a local provider: (the provider's issuer, the app).
async fn with_nhs_login(t: &TestStore) -> (String, App) {
    let issuer = start_provider().await;
    let app = App::new(t.store.clone(), fixtures::test_clock())
        .with_public_url("http://test")
        .unwrap()
        .with_nhs_login(NhsLogin::new(provider_config(&issuer)).unwrap());
    (issuer, app)
}

async fn the_nhs_app_exchanges_its_users_id_token(t: &TestStore) {
    let (issuer, app) = with_nhs_login(t).await;
    let tp = fixtures::practice(&app).await.unwrap();
    let practice = tp.practice.id;
    let pat = adult(&app, practice).await.unwrap();
    let hidden = withheld_entries(&pat, fixtures::now() - Duration::days(2), "SECRET-EXCHANGE");
    fixtures::add_entries(&app, practice, None, &hidden).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (nhs_app, _) = app.register_app(&admin, "NHS App", "NHS England", "").await.unwrap();
    let client = nhs_app.client_id.clone();
    let (nhs, born) = (pat.nhs_number.as_str().to_owned(), pat.date_of_birth.to_string());
    let good_id = id_token(&issuer, NHS_APP_AT_NHS_LOGIN, "P9", &nhs, &born);

    // Before the practice lets the app exchange tokens: refused, and nothing is linked.
    let (s, b) =
        post_token(&app, exchange_form(&client, &assertion(&app, &client, "j0"), &good_id, &issuer, &[])).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")), "{b}");
    assert_eq!(links_and_alerts(&app, practice, pat.id).await, (0, 0));
    // A private key is never taken; the client id at NHS login is needed.
    let private = String::from_utf8(PLATFORM_KEY.to_vec()).unwrap();
    assert!(app.set_app_token_exchange(&admin, &nhs_app.id.to_string(), NHS_APP_AT_NHS_LOGIN, &private).await.is_err());
    assert!(app.set_app_token_exchange(&admin, &nhs_app.id.to_string(), "", PLATFORM_PUBLIC).await.is_err());
    app.set_app_token_exchange(&admin, &nhs_app.id.to_string(), NHS_APP_AT_NHS_LOGIN, PLATFORM_PUBLIC).await.unwrap();

    // The exchange: an access token for the person (RFC 8693 §2.2.1), bound to their record.
    let (s, b) =
        post_token(&app, exchange_form(&client, &assertion(&app, &client, "j1"), &good_id, &issuer, &[])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(b["patient"], pat.id.to_string());
    assert!(b["expires_in"].as_i64().unwrap() > 0);
    let token = b["access_token"].as_str().unwrap().to_owned();
    // R23: the first exchange links the app, with the security alert task.
    assert_eq!(links_and_alerts(&app, practice, pat.id).await, (1, 1));
    let (s, body) = get(&app, &token, &format!("/fhir/r4/Patient/{}/$everything", pat.id)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains(&nhs), "the record is the person's own");
    assert!(!body.contains("SECRET-EXCHANGE"), "a withheld entry reached the app: {body}");
    // The same token reaches GP Connect's Patient Facing Services (its capability statement).
    let ods = &tp.practice.ods_code;
    let (s, body) = get(&app, &token, &format!("/pfs/{ods}/STU3/1/appointments/metadata")).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // The next sign-in reuses the link: no second link or alert.
    let (s, b) =
        post_token(&app, exchange_form(&client, &assertion(&app, &client, "j2"), &good_id, &issuer, &[])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(links_and_alerts(&app, practice, pat.id).await, (1, 1));

    // RFC 7523 §3: an assertion is taken once.
    let used = assertion(&app, &client, "j2");
    let (s, b) = post_token(&app, exchange_form(&client, &used, &good_id, &issuer, &[])).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{b}");

    // Refused, each without a token or a new link: R22 (P5 gives no record access), an ID token
    // issued to another app, another issuer, another subject token type, an assertion signed with
    // another key or for another audience, a client id that is not the assertion's.
    let p5 = id_token(&issuer, NHS_APP_AT_NHS_LOGIN, "P5", &nhs, &born);
    let other_app = id_token(&issuer, "another-app", "P9", &nhs, &born);
    let (other_key, _) = caldicott_app::fhir_api::new_key_pair().unwrap();
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "P5",
            exchange_form(&client, &assertion(&app, &client, "r1"), &p5, &issuer, &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "audience",
            exchange_form(&client, &assertion(&app, &client, "r2"), &other_app, &issuer, &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "issuer",
            exchange_form(&client, &assertion(&app, &client, "r3"), &good_id, "https://elsewhere.example", &[]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "type",
            exchange_form(
                &client,
                &assertion(&app, &client, "r4"),
                &good_id,
                &issuer,
                &[("subject_token_type", "urn:ietf:params:oauth:token-type:access_token")],
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "key",
            exchange_form(
                &client,
                &assertion_with(&app, &client, "r5", &app.fhir_token_url(), Algorithm::ES384, other_key.as_bytes()),
                &good_id,
                &issuer,
                &[],
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "assertion audience",
            exchange_form(
                &client,
                &assertion_with(&app, &client, "r6", "https://elsewhere.example/token", Algorithm::RS512, PLATFORM_KEY),
                &good_id,
                &issuer,
                &[],
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "client id",
            exchange_form("app_someone_else", &assertion(&app, &client, "r7"), &good_id, &issuer, &[]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ];
    for (what, form, status, error) in cases {
        let (s, b) = post_token(&app, form).await;
        assert_eq!((s, b["error"].as_str()), (status, Some(error)), "{what}: {b}");
        assert!(b.get("access_token").is_none(), "{what}");
    }
    assert_eq!(links_and_alerts(&app, practice, pat.id).await, (1, 1));

    // Someone not registered here, or whose date of birth differs: the same answer.
    let stranger = fixtures::person(practice, fixtures::date(1970, 1, 1));
    let unknown = id_token(&issuer, NHS_APP_AT_NHS_LOGIN, "P9", stranger.nhs_number.as_str(), "1970-01-01");
    let wrong_born = id_token(&issuer, NHS_APP_AT_NHS_LOGIN, "P9", &nhs, "1901-01-01");
    for (jti, id) in [("u1", &unknown), ("u2", &wrong_born)] {
        let (s, b) = post_token(&app, exchange_form(&client, &assertion(&app, &client, jti), id, &issuer, &[])).await;
        assert_eq!((s, b["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{b}");
        assert_eq!(b["error_description"], "this NHS login does not match a patient registered at the practice");
    }

    // R15: acting for someone needs a live proxy link; with one the token is for them.
    let child = fixtures::person(practice, fixtures::today() - Duration::days(365 * 6));
    app.store_for_tests()
        .create_patient(
            practice,
            &child,
            &fixtures::audit(caldicott_core::audit::Action::PatientCreate, Some(child.id)),
        )
        .await
        .unwrap();
    let for_child = [("patient", child.nhs_number.as_str())];
    let (s, b) =
        post_token(&app, exchange_form(&client, &assertion(&app, &client, "p1"), &good_id, &issuer, &for_child)).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{b}");
    fixtures::proxy_link(&app, practice, &child, &pat, caldicott_core::access::AccessLevel::Full, fixtures::today())
        .await
        .unwrap();
    let (s, b) =
        post_token(&app, exchange_form(&client, &assertion(&app, &client, "p2"), &good_id, &issuer, &for_child)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["patient"], child.id.to_string());
    let child_token = b["access_token"].as_str().unwrap().to_owned();
    let (s, _) = get(&app, &child_token, &format!("/fhir/r4/Patient/{}", child.id)).await;
    assert_eq!(s, StatusCode::OK);
    // The token is the child's only: the holder's own record is not reached with it.
    let (s, _) = get(&app, &child_token, &format!("/fhir/r4/Patient/{}/$everything", pat.id)).await;
    assert!(s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND, "{s}");

    // Each refusal after the app was known is audited at the practice, as the app.
    let events = app.store_for_tests().audit_events(practice, 0, 1_000_000).await.unwrap();
    let refused = events
        .iter()
        .filter(|e| e.action == "fhir.token_issue" && e.actor_id == nhs_app.id.to_string() && e.outcome != "success")
        .count();
    assert!(refused >= 9, "refused exchanges audited: {refused}");

    // Turning the app off refuses the next exchange and the tokens it holds.
    app.set_app_active(&admin, &nhs_app.id.to_string(), false).await.unwrap();
    let (s, b) =
        post_token(&app, exchange_form(&client, &assertion(&app, &client, "off"), &good_id, &issuer, &[])).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{b}");
    let (s, _) = get(&app, &token, &format!("/fhir/r4/Patient/{}", pat.id)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// R23 "only once": parallel first exchanges for one person make one link and one alert.
async fn parallel_first_exchanges_link_once(t: &TestStore) {
    let (issuer, app) = with_nhs_login(t).await;
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (nhs_app, _) = app.register_app(&admin, "NHS App", "NHS England", "").await.unwrap();
    app.set_app_token_exchange(&admin, &nhs_app.id.to_string(), NHS_APP_AT_NHS_LOGIN, PLATFORM_PUBLIC).await.unwrap();
    let id = id_token(&issuer, NHS_APP_AT_NHS_LOGIN, "P9", pat.nhs_number.as_str(), &pat.date_of_birth.to_string());
    let mut runs = Vec::new();
    for i in 0..6 {
        let form = exchange_form(
            &nhs_app.client_id,
            &assertion(&app, &nhs_app.client_id, &format!("par-{i}")),
            &id,
            &issuer,
            &[],
        );
        let app = app.clone();
        runs.push(tokio::spawn(async move { post_token(&app, form).await.0 }));
    }
    for r in runs {
        assert_eq!(r.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(links_and_alerts(&app, tp.practice.id, pat.id).await, (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_on_sqlite() {
    the_nhs_app_exchanges_its_users_id_token(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_on_postgres() {
    the_nhs_app_exchanges_its_users_id_token(&test_support::postgres().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_exchange_links_once_in_parallel_on_sqlite() {
    parallel_first_exchanges_link_once(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_exchange_links_once_in_parallel_on_postgres() {
    parallel_first_exchanges_link_once(&test_support::postgres().await.unwrap()).await;
}
