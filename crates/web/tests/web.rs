#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP tests through the real router (in process, `oneshot`), against SQLite and PostgreSQL,
//! plus one smoke test over a real socket.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use caldicott_app::fixtures::{self, adult, consultation, time, withheld_entries};
use caldicott_app::App;
use caldicott_core::audit::Action;
use caldicott_store::test_support::{self, TestStore};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn get(app: &App, uri: &str, token: Option<&str>) -> Reply {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = caldicott_web::router(app.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply { status, headers, body }
}

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::system_clock())
}

async fn health_and_front_page_need_no_sign_in(t: &TestStore) {
    let app = app(t);
    let r = get(&app, "/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["database"], "ok");
    let r = get(&app, "/", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("caldicott"));
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let r = get(&app, "/no/such/page", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["status"], 404);
}

async fn patient_data_needs_a_valid_token(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let uri = format!("/api/v1/patients/{}/record", pat.nhs_number.as_str());
    for token in [None, Some("nonsense"), Some(&tp.clinician_token[..60])] {
        let r = get(&app, &uri, token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!r.body.contains(pat.nhs_number.as_str()));
    }
    let r = get(&app, &uri, Some(&tp.clinician_token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["patient"]["nhs_number"], pat.nhs_number.as_str());
    let r = get(&app, &uri, Some(&tp.admin_token)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn bad_input_gets_a_clear_error(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let tok = Some(tp.clinician_token.as_str());
    let r = get(&app, "/api/v1/patients/9434765918/record", tok).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("check digit"), "{}", r.body);
    let r = get(&app, "/api/v1/patients/12345/online-view", tok).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let nhs = pat.nhs_number.as_str();
    for (query, needle) in [
        ("section=gossip", "unknown section"),
        ("limit=0", "limit"),
        ("limit=many", "whole number"),
        ("cursor=garbage", "cursor"),
        ("as=doctor", "patient or proxy"),
        ("as=proxy", "proxy="),
        ("as=proxy&proxy=12", "not a proxy link id"),
    ] {
        let r = get(&app, &format!("/api/v1/patients/{nhs}/online-view?{query}"), tok).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains(needle), "{query}: {}", r.body);
    }
    // Unknown, and another practice's patient, look the same: not here.
    let other = fixtures::practice(&app).await.unwrap();
    let r = get(&app, &format!("/api/v1/patients/{nhs}/record"), Some(&other.clinician_token)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains(&other.practice.name));
    let r = get(&app, "/api/v1/patients/9434765919/record", tok).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn no_withheld_entry_reaches_the_online_view_response(t: &TestStore) {
    // T1 at the HTTP boundary: every byte of the response is scanned.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let shown = consultation(&pat, time(2024, 2, 2), "Seen for a cough");
    let mut all = vec![shown.clone()];
    let withheld = withheld_entries(&pat, time(2024, 2, 3), "ZZSECRET");
    all.extend(withheld.clone());
    app.store.add_entries(tp.practice.id, &all, &fixtures::audit(Action::EntryCreate, Some(pat.id))).await.unwrap();
    let nhs = pat.nhs_number.as_str();
    for section in ["", "&section=consultations", "&section=results", "&section=documents", "&section=communications"] {
        let r =
            get(&app, &format!("/api/v1/patients/{nhs}/online-view?as=patient{section}"), Some(&tp.clinician_token))
                .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.body.contains("ZZSECRET"), "{section}: {}", r.body);
        for e in &withheld {
            assert!(!r.body.contains(&e.id.to_string()));
        }
    }
    let r = get(&app, &format!("/api/v1/patients/{nhs}/online-view"), Some(&tp.clinician_token)).await;
    let ids: Vec<String> =
        r.json()["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(ids, vec![shown.id.to_string()]);
    // Staff see everything, with reasons.
    let r = get(&app, &format!("/api/v1/patients/{nhs}/record"), Some(&tp.clinician_token)).await;
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), all.len());
    assert!(r.body.contains("\"rule\":\"R8\""));
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(&super::test_support::sqlite().await.unwrap()).await; })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(&super::test_support::postgres().await.unwrap()).await; })* }
    };
}

both!(
    health_and_front_page_need_no_sign_in,
    patient_data_needs_a_valid_token,
    bad_input_gets_a_clear_error,
    no_withheld_entry_reaches_the_online_view_response,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_a_real_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = test_support::sqlite().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = caldicott_web::router(app(&t));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"status\":\"ok\""));
    server.abort();
}
