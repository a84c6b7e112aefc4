#![allow(clippy::unwrap_used, clippy::expect_used)]
//! An app links with its user's NHS login P9 identity (R21, R22): ID tokens issued to the app by
//! a local provider (discovery, keys and userinfo as NHS login serves them), checked by caldicott.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use caldicott_adapters::nhs_login::{NhsLogin, OidcConfig};
use caldicott_app::fixtures::{self, adult};
use caldicott_app::{auth, App};
use caldicott_store::test_support;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

pub(crate) const KEY: &[u8] = include_bytes!("../../../app/tests/app_tests/fixtures/test-oidc-provider-key.pem");
const JWKS: &str = include_str!("../../../app/tests/app_tests/fixtures/test-oidc-provider-jwks.json");

/// Discovery, keys and userinfo; the access token "access-<nhs>-<birthdate>" reads that person.
pub(crate) async fn start_provider() -> String {
    start_provider_with(std::sync::Arc::new(std::sync::Mutex::new(serde_json::from_str(JWKS).unwrap()))).await
}

/// The provider, publishing whatever keys `jwks` holds when it is asked.
async fn start_provider_with(jwks: std::sync::Arc<std::sync::Mutex<Value>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = base.clone();
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let b = issuer.clone();
                async move {
                    Json(json!({
                        "issuer": b, "authorization_endpoint": format!("{b}/authorize"), "token_endpoint": format!("{b}/token"),
                        "userinfo_endpoint": format!("{b}/userinfo"), "jwks_uri": format!("{b}/jwks"),
                        "response_types_supported": ["code"], "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256", "RS512"]
                    }))
                }
            }),
        )
        .route("/jwks", get(move || async move { Json(jwks.lock().unwrap().clone()) }))
        .route(
            "/userinfo",
            get(|headers: axum::http::HeaderMap| async move {
                let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").trim_start_matches("Bearer ");
                let parts: Vec<&str> = token.splitn(3, '-').collect();
                match parts.as_slice() {
                    ["access", nhs, born] => (StatusCode::OK, Json(json!({ "sub": format!("sub-{nhs}"), "nhs_number": nhs, "birthdate": born }))),
                    _ => (StatusCode::UNAUTHORIZED, Json(json!({}))),
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

fn id_token(issuer: &str, audience: &str, sub: &str, level: &str, nonce: Option<&str>) -> String {
    id_token_by("test-key-1", issuer, audience, sub, level, nonce)
}

fn id_token_by(kid: &str, issuer: &str, audience: &str, sub: &str, level: &str, nonce: Option<&str>) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let mut claims = json!({ "iss": issuer, "aud": audience, "sub": sub, "exp": now + 300, "iat": now, "vot": format!("{level}.Cp.Cd") });
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_pem(KEY).unwrap()).unwrap()
}

async fn link(app: &App, client: &str, secret: &str, id_token: &str, access: &str) -> (StatusCode, String) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
    let req = Request::post("/api/apps/v1/links/nhs-login")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "id_token": id_token, "access_token": access }).to_string()))
        .unwrap();
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    (status, String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
}

/// A nonce for `client`'s NHS login request, from caldicott.
async fn nonce(app: &App, client: &str, secret: &str) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
    let req = Request::post("/api/apps/v1/links/nhs-login/nonce")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::empty())
        .unwrap();
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    body["nonce"].as_str().unwrap().to_owned()
}

async fn an_app_links_with_its_users_p9_identity(t: &test_support::TestStore) {
    let issuer = start_provider().await;
    let provider = NhsLogin::new(provider_config(&issuer)).unwrap();
    let app = App::new(t.store.clone(), caldicott_app::fixtures::test_clock()).with_nhs_login(provider);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (wallet, secret) = app.register_app(&admin, "Wallet", "Wallet Ltd", "wallet-at-nhs-login").await.unwrap();
    let (letters_only, letters_secret) = app.register_app(&admin, "Paper", "Paper Ltd", "").await.unwrap();
    let nhs = pat.nhs_number.as_str();
    let born = pat.date_of_birth.to_string();
    let access = format!("access-{nhs}-{born}");
    let sub = format!("sub-{nhs}");
    // Refused: a P5 identity, a token issued to another app, an app not set up for NHS login,
    // a date of birth that does not match.
    let n = nonce(&app, &wallet.client_id, &secret).await;
    let p5 = id_token(&issuer, "wallet-at-nhs-login", &sub, "P5", Some(&n));
    assert_eq!(link(&app, &wallet.client_id, &secret, &p5, &access).await.0, StatusCode::FORBIDDEN);
    let other = id_token(&issuer, "someone-else", &sub, "P9", Some(&n));
    assert_eq!(link(&app, &wallet.client_id, &secret, &other, &access).await.0, StatusCode::BAD_REQUEST);
    let n = nonce(&app, &wallet.client_id, &secret).await;
    let good = id_token(&issuer, "wallet-at-nhs-login", &sub, "P9", Some(&n));
    assert_eq!(link(&app, &letters_only.client_id, &letters_secret, &good, &access).await.0, StatusCode::FORBIDDEN);
    let wrong_born = format!("access-{nhs}-1901-01-01");
    assert_eq!(link(&app, &wallet.client_id, &secret, &good, &wrong_born).await.0, StatusCode::FORBIDDEN);
    // An access token that reads someone else's details.
    assert_eq!(
        link(&app, &wallet.client_id, &secret, &good, "access-for-someone-else").await.0,
        StatusCode::BAD_REQUEST
    );
    // The nonce: none, one made up, one given to another app, one signed by another server —
    // each refused before anything is linked.
    let (letters_nonce, other_server) = (
        nonce(&app, &letters_only.client_id, &letters_secret).await,
        App::new(t.store.clone(), caldicott_app::fixtures::test_clock()).app_link_nonce(&wallet).0,
    );
    for bad in [None, Some("made-up"), Some(letters_nonce.as_str()), Some(other_server.as_str())] {
        let token = id_token(&issuer, "wallet-at-nhs-login", &sub, "P9", bad);
        let (status, body) = link(&app, &wallet.client_id, &secret, &token, &access).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(body.contains("nonce"), "{body}");
    }
    // Linked: the app gets a token, and the practice a security alert. (Each try above used its
    // nonce up, whatever its outcome: a fresh sign-in brings a fresh one.)
    let n = nonce(&app, &wallet.client_id, &secret).await;
    let good = id_token(&issuer, "wallet-at-nhs-login", &sub, "P9", Some(&n));
    let (status, body) = link(&app, &wallet.client_id, &secret, &good, &access).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The same ID token again (replayed, or sent twice) links nothing more.
    let (status, body) = link(&app, &wallet.client_id, &secret, &good, &access).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("linked already"), "{body}");
    let links = app.patient_apps(&tp.clinician, nhs).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].0.via, caldicott_core::online::LinkVia::NhsLogin);
    let tasks = app.task_list(&tp.clinician, false).await.unwrap();
    assert!(tasks
        .iter()
        .any(|(t, p)| p.id == pat.id && t.kind == caldicott_core::tasks::TaskKind::OnlineServicesLinked));
}

pub(crate) fn provider_config(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer: issuer.to_owned(),
        client_id: "caldicott".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        key_pem: KEY.to_vec(),
        key_id: None,
        algorithm: Algorithm::RS512,
        id_token_algorithm: Algorithm::RS256,
        scope: "openid".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_rotates_its_signing_key_is_followed_and_an_unpublished_key_refused() {
    // R22: NHS login rotates its signing keys. A token signed with the new key is accepted once
    // the provider publishes it (caldicott fetches the keys again, at most every few minutes),
    // and a key the provider does not publish is refused however often it is tried.
    let published: Value = serde_json::from_str(JWKS).unwrap();
    let keys = std::sync::Arc::new(std::sync::Mutex::new(published.clone()));
    let issuer = start_provider_with(keys.clone()).await;
    let following = NhsLogin::new(provider_config(&issuer)).unwrap().with_keys_refresh_after(std::time::Duration::ZERO);
    let patient = NhsLogin::new(provider_config(&issuer)).unwrap();
    let (sub, access) = ("sub-9434765919", "access-9434765919-1980-01-01");
    for login in [&following, &patient] {
        let old = id_token_by("test-key-1", &issuer, "an-app", sub, "P9", None);
        assert!(login.identify_for_app(&old, access, "an-app").await.is_ok(), "the key published first");
    }
    // The provider rotates: the same key material now published as "test-key-2" only.
    let mut rotated = published.clone();
    rotated["keys"][0]["kid"] = json!("test-key-2");
    *keys.lock().unwrap() = rotated;
    let new = id_token_by("test-key-2", &issuer, "an-app", sub, "P9", None);
    let (_, level, nhs, _, _) = following.identify_for_app(&new, access, "an-app").await.unwrap();
    assert_eq!((level, nhs.as_str()), (caldicott_core::access::IdentityLevel::P9, "9434765919"));
    // Within the refresh interval the keys are not fetched again: the new key is not known yet.
    let err = patient.identify_for_app(&new, access, "an-app").await.unwrap_err().to_string();
    assert!(err.contains("unknown signing key"), "{err}");
    // A key nobody publishes is refused, even with fetching allowed every time.
    let forged = id_token_by("test-key-9", &issuer, "an-app", sub, "P9", None);
    let err = following.identify_for_app(&forged, access, "an-app").await.unwrap_err().to_string();
    assert!(err.contains("unknown signing key"), "{err}");
    // The old key, no longer published, is refused too.
    let old = id_token_by("test-key-1", &issuer, "an-app", sub, "P9", None);
    assert!(following.identify_for_app(&old, access, "an-app").await.is_err(), "a retired key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_nhs_login_on_sqlite() {
    an_app_links_with_its_users_p9_identity(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_nhs_login_on_postgres() {
    an_app_links_with_its_users_p9_identity(&test_support::postgres().await.unwrap()).await;
}
