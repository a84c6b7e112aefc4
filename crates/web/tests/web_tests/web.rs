#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP tests through the real router (in process, `oneshot`), against SQLite and PostgreSQL,
//! plus one smoke test over a real socket.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use caldicott_app::fixtures::{self, adult, consultation, time, withheld_entries};
use caldicott_app::App;
use caldicott_core::audit::Action;
use caldicott_core::tasks::TaskBody;
use caldicott_store::both;
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

async fn post_json(app: &App, uri: &str, token: &str, body: &Value) -> Reply {
    let req = Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply { status, headers, body }
}

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock())
}

async fn health_and_front_page_need_no_sign_in(t: &TestStore) {
    let app = app(t);
    let r = get(&app, "/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["database"], "ok");
    // Issue 24: liveness asks nothing of the database; readiness needs it and this build's schema
    // (a schema another build wrote: the store's contract test).
    let r = get(&app, "/health/live", None).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (StatusCode::OK, Some("live")));
    let r = get(&app, "/health/ready", None).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (StatusCode::OK, Some("ready")));
    let r = get(&app, "/api", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("caldicott"));
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    // An unknown API route answers in the API's JSON (an unknown page: see
    // `unknown_addresses_get_a_page_with_a_way_back`).
    let r = get(&app, "/api/v1/no/such/route", None).await;
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
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &all).await.unwrap();
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

/// A client that keeps cookies, as a browser does.
struct Browser {
    app: App,
    jar: std::collections::HashMap<String, String>,
}

impl Browser {
    fn new(app: &App) -> Self {
        Self { app: app.clone(), jar: Default::default() }
    }

    async fn send(&mut self, req: axum::http::request::Builder, body: Body) -> Reply {
        let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let req = if cookies.is_empty() { req } else { req.header(header::COOKIE, cookies.join("; ")) };
        let res = caldicott_web::router(self.app.clone()).oneshot(req.body(body).unwrap()).await.unwrap();
        for set in res.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            assert!(set.contains("Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
            let (kv, _) = set.split_once(';').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
        let status = res.status();
        let headers = res.headers().clone();
        // Lossy: a PDF download is not UTF-8; the tests read only its first bytes.
        let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
        Reply { status, headers, body }
    }

    async fn get(&mut self, uri: &str) -> Reply {
        self.send(Request::get(uri), Body::empty()).await
    }

    /// A `multipart/form-data` POST, as a browser sends a form with a file.
    async fn upload(&mut self, uri: &str, fields: &[(&str, &str)], file: (&str, &[u8])) -> Reply {
        let boundary = "----caldicott-test-boundary";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"record.json\"\r\n\
                 Content-Type: application/json\r\n\r\n",
                file.0
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.1);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = Request::post(uri).header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"));
        self.send(req, Body::from(body)).await
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| {
                format!("{k}={}", v.replace('%', "%25").replace('&', "%26").replace('+', "%2B").replace(' ', "+"))
            })
            .collect();
        let req = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(req, Body::from(body.join("&"))).await
    }
}

fn csrf(html: &str) -> String {
    let marker = "name=\"_csrf\" value=\"";
    let at = html.find(marker).expect("a CSRF field") + marker.len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn location(r: &Reply) -> &str {
    r.headers.get(header::LOCATION).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// Signs a member of staff in through the pages, enrolling their authenticator on first use.
async fn sign_in(b: &mut Browser, ods: &str, username: &str) -> String {
    let page = b.get("/sign-in").await;
    assert_eq!(page.status, StatusCode::OK);
    let r = b
        .post(
            "/sign-in",
            &[("_csrf", &csrf(&page.body)), ("ods", ods), ("username", username), ("password", "a long test password")],
        )
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/sign-in/code"), "{}", r.body);
    let page = b.get("/sign-in/code").await;
    let secret_at =
        page.body.find("id=\"totp-secret\">").expect("enrolment shows the secret") + "id=\"totp-secret\">".len();
    let secret = page.body[secret_at..].split('<').next().unwrap().to_owned();
    assert!(page.body.contains("<svg"), "enrolment shows a QR code");
    let code = caldicott_app::session::current_code(&secret, caldicott_app::fixtures::now()).unwrap();
    let r = b.post("/sign-in/code", &[("_csrf", &csrf(&page.body)), ("code", &code)]).await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/"), "{}", r.body);
    secret
}

async fn a_consultation_naming_someone_is_checked_before_it_is_visible_online(t: &TestStore) {
    // Redact as information is entered: the form warns, says who will see it, never blocks.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let mut b = Browser::new(&app);
    sign_in(&mut b, tp.practice.ods_code.as_str(), "clinician").await;
    let nhs = pat.nhs_number.as_str();
    let form = b.get(&format!("/patients/{nhs}/consultations/new")).await;
    let token = csrf(&form.body);
    let text = "Her son Mr Tom Reed told us about his overdose.";
    let before = app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap();
    let first = b
        .post(
            &format!("/patients/{nhs}/consultations"),
            &[("_csrf", &token), ("text", text), ("visible_online", "yes"), ("status", "final")],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.contains("Check before it is visible online"), "{}", first.body);
    assert!(first.body.contains("(the patient): will see it online as soon as it is saved"), "{}", first.body);
    assert!(first.body.contains(r#"name="checked" value="yes""#));
    assert!(first.body.contains(text), "the form keeps what was typed");
    assert_eq!(app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap(), before, "nothing saved yet");
    // Hide it from the same form: saved hidden, with the choice audited.
    let saved = b
        .post(
            &format!("/patients/{nhs}/consultations"),
            &[
                ("_csrf", &token),
                ("text", text),
                ("status", "final"),
                ("reason", "third_party"),
                ("note", "Names her son"),
                ("checked", "yes"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap(), before + 1);
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 20).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "entry.create" && e.detail.ends_with("shown=yes chosen=hidden")));
    // Nothing to say: saved at once.
    let plain = b
        .post(
            &format!("/patients/{nhs}/consultations"),
            &[("_csrf", &token), ("text", "Blood pressure fine."), ("visible_online", "yes"), ("status", "final")],
        )
        .await;
    assert_eq!(plain.status, StatusCode::SEE_OTHER);
}

async fn access_changes_through_the_api_are_checked_then_confirmed(t: &TestStore) {
    // R13, R44: the staff API sets the patient's own level the same way as the panel: first what
    // it would change, then (with confirm) the change itself.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    fixtures::add_entries(
        &app,
        tp.practice.id,
        Some(pat.id),
        &[consultation(&pat, time(2024, 6, 1), "Seen for a cough")],
    )
    .await
    .unwrap();
    let uri = format!("/api/v1/patients/{}/access", pat.nhs_number.as_str());
    let tok = &tp.clinician_token;
    let summary = serde_json::json!({ "change": "set_level", "level": "summary", "from": "2023-10-31" });
    let r = post_json(&app, &uri, tok, &summary).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["confirmed"], false);
    assert_eq!(v["patient"]["before"]["level"], "full");
    assert_eq!(v["patient"]["after"]["level"], "summary");
    assert!(
        v["patient"]["changes"][0]["sentence"]
            .as_str()
            .unwrap()
            .contains("consultations from 1 Jun 2024 will no longer be visible"),
        "{v}"
    );
    let (who, nhs) = (tp.clinician.clone(), pat.nhs_number.as_str().to_owned());
    let online = |app: App| {
        let (who, nhs) = (who.clone(), nhs.clone());
        async move {
            app.online_view(&who, &nhs, caldicott_app::record::ViewAs::Patient, &Default::default())
                .await
                .unwrap()
                .entries
                .len()
        }
    };
    assert_eq!(online(app.clone()).await, 1, "the check changed nothing");
    // An empty start date is refused; the whole record needs its own confirmation.
    let r = post_json(&app, &uri, tok, &serde_json::json!({ "change": "set_level", "level": "full", "confirm": true }))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let whole = serde_json::json!({ "change": "set_level", "level": "full", "from": "whole_record", "confirm": true });
    assert_eq!(post_json(&app, &uri, tok, &whole).await.status, StatusCode::BAD_REQUEST);
    let mut confirmed = summary.clone();
    confirmed["confirm"] = serde_json::json!(true);
    let r = post_json(&app, &uri, tok, &confirmed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(online(app.clone()).await, 0, "Summary: no consultations");
    assert_eq!(post_json(&app, &uri, &tp.receptionist_token, &confirmed).await.status, StatusCode::FORBIDDEN);
    let r = post_json(
        &app,
        &format!("/api/v1/patients/{}/enhanced-review", pat.nhs_number.as_str()),
        tok,
        &serde_json::json!({ "code": "105" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn staff_sign_in_find_a_patient_and_see_their_online_view(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let shown = consultation(&pat, time(2024, 2, 2), "Seen for a cough");
    let mut all = vec![shown.clone()];
    all.extend(withheld_entries(&pat, time(2024, 2, 3), "ZZSECRET"));
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &all).await.unwrap();
    let mut b = Browser::new(&app);
    let ods = tp.practice.ods_code.as_str().to_owned();
    // Not signed in: every page sends you to sign in.
    for path in ["/", "/patients/9434765919", "/patients/9434765919/online"] {
        let r = b.get(path).await;
        assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/sign-in"), "{path}");
    }
    // The sign-in form refuses a post without its CSRF token.
    let page = b.get("/sign-in").await;
    let r = b.post("/sign-in", &[("ods", &ods), ("username", "clinician"), ("password", "a long test password")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A wrong password shows the error summary and the inline error.
    let r = b
        .post(
            "/sign-in",
            &[("_csrf", &csrf(&page.body)), ("ods", &ods), ("username", "clinician"), ("password", "wrong")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("nhsuk-error-summary") && r.body.contains("is not right"), "{}", r.body);
    let pending = b.jar.get(caldicott_web::SESSION_COOKIE).cloned();
    sign_in(&mut b, &ods, "clinician").await;
    assert_ne!(b.jar.get(caldicott_web::SESSION_COOKIE).cloned(), pending, "the session cookie changes at sign-in");

    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("Find a patient") && home.body.contains("Test clinician"));
    let found = b.get(&format!("/?q={}", pat.nhs_number.to_string().replace(' ', "+"))).await;
    assert!(found.body.contains(&format!("/patients/{}", pat.nhs_number.as_str())), "{}", found.body);
    assert_eq!(b.get("/?q=zz9").await.status, StatusCode::BAD_REQUEST);

    let rec = b.get(&format!("/patients/{}", pat.nhs_number.as_str())).await;
    assert_eq!(rec.status, StatusCode::OK);
    assert!(rec.body.contains("Seen for a cough") && rec.body.contains("ZZSECRET"), "staff see every entry");
    assert!(
        rec.body.contains("title=\"Rule R8\">hidden online: Third-party information<"),
        "the reason in words, the rule in a tooltip: {}",
        rec.body
    );
    assert!(!rec.body.contains("(R8)"), "no rule codes in the words staff read");
    let home = b.get("/").await;
    assert!(
        home.body.contains("Recently viewed") && home.body.contains(&format!("/patients/{}", pat.nhs_number.as_str()))
    );
    let before = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
    let online = b.get(&format!("/patients/{}/online", pat.nhs_number.as_str())).await;
    assert_eq!(online.status, StatusCode::OK);
    let events = app.store_for_tests().audit_events(tp.practice.id, before, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        vec!["record.preview_online"],
        "one event per view"
    );
    assert!(online.body.contains("Seen for a cough"));
    assert!(!online.body.contains("ZZSECRET"), "a withheld entry reached the online view page");
    for e in &all[1..] {
        assert!(!online.body.contains(&e.id.to_string()));
    }
    // Sign-out needs the session's CSRF token, then ends the session.
    assert_eq!(b.post("/sign-out", &[("_csrf", "forged")]).await.status, StatusCode::FORBIDDEN);
    let r = b.post("/sign-out", &[("_csrf", &csrf(&home.body))]).await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/sign-in"));
    assert_eq!(location(&b.get("/").await), "/sign-in");
}

async fn the_portal_keeps_practices_and_roles_apart(t: &TestStore) {
    let app = app(t);
    let a = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, a.practice.id).await.unwrap();
    let entry = consultation(&pat, time(2024, 3, 3), "Private matter");
    fixtures::add_entries(&app, a.practice.id, Some(pat.id), std::slice::from_ref(&entry)).await.unwrap();
    let change = format!("/patients/{}/entries/{}/online", pat.nhs_number.as_str(), entry.id);
    // Receptionists see the record but cannot hide entries.
    let mut reception = Browser::new(&app);
    sign_in(&mut reception, a.practice.ods_code.as_str(), "reception").await;
    let rec = reception.get(&format!("/patients/{}", pat.nhs_number.as_str())).await;
    assert_eq!(rec.status, StatusCode::OK);
    assert!(!rec.body.contains("Hide online"));
    assert_eq!(reception.get(&change).await.status, StatusCode::FORBIDDEN);
    // A clinician's form needs the session's CSRF token.
    let mut clinician = Browser::new(&app);
    sign_in(&mut clinician, a.practice.ods_code.as_str(), "clinician").await;
    let form = clinician.get(&change).await;
    assert_eq!(form.status, StatusCode::OK);
    let post = [("change", "hide"), ("reason", "third_party"), ("note", "Names a relative")];
    assert_eq!(
        clinician.post(&change, &[("_csrf", "forged"), post[0], post[1], post[2]]).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(!app.store_for_tests().entry(a.practice.id, entry.id).await.unwrap().unwrap().visibility.is_hidden());
    let done = clinician.post(&change, &[("_csrf", &csrf(&form.body)), post[0], post[1], post[2]]).await;
    assert_eq!(
        (done.status, location(&done)),
        (StatusCode::SEE_OTHER, format!("/patients/{}", pat.nhs_number.as_str()).as_str())
    );
    assert!(app.store_for_tests().entry(a.practice.id, entry.id).await.unwrap().unwrap().visibility.is_hidden());
    let other = fixtures::practice(&app).await.unwrap();
    let mut b = Browser::new(&app);
    sign_in(&mut b, other.practice.ods_code.as_str(), "clinician").await;
    let r = b.get(&format!("/patients/{}", pat.nhs_number.as_str())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.body.contains("Test Patient"));
    assert_eq!(b.get(&change).await.status, StatusCode::NOT_FOUND, "another practice's entry is not there");
    assert!(b.get(&format!("/?q={}", pat.nhs_number.as_str())).await.body.contains("0 patients found"));
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, a.practice.ods_code.as_str(), "admin").await;
    assert_eq!(admin.get(&format!("/?q={}", pat.nhs_number.as_str())).await.status, StatusCode::FORBIDDEN);
    assert_eq!(admin.get(&format!("/patients/{}", pat.nhs_number.as_str())).await.status, StatusCode::FORBIDDEN);
}

const PERMISSIONS: &str = include_str!("../../../../docs/permissions.md");

/// The GET routes of the permission table whose answers carry no patient data: empty forms,
/// settings, staff and integration lists, and counts. Every other GET answer must write an audit
/// event (`every_route_follows_the_permission_table` checks each, for every role).
const GETS_WITHOUT_PATIENT_DATA: &[&str] = &[
    "/staff",
    "/account/password",
    "/patients/new",
    "/patients/transfer-in",
    "/settings/messages",
    "/integrations",
    "/tokens",
    "/apps",
    "/settings",
    "/reports",
    "/reports/monthly-return",
    "/reports/monthly-return.csv",
    "/reports/trend",
    "/reports/trend.csv",
    "/bulk-code",
    "/icb",
    "/icb.csv",
    "/icb/appointments",
    "/icb/appointments.csv",
    "/reports/appointments",
    "/reports/appointments.csv",
    "/appointments/slots/{slot}/book",
    "/inbound/senders",
    "/sars/new",
    "/chat/unread",
    // Staff messages: the inbox names no patient (only "About a patient"); a message linked to
    // a patient is audited when it is opened (the test's message is linked to none).
    "/chat",
    "/chat/{chat}",
    "/api/v1/reports/exclusions",
    "/api/v1/reports/monthly-return",
    "/api/v1/reports/trend",
    "/api/v1/icb/exclusions",
];

#[test]
fn every_get_route_without_patient_data_is_in_the_permission_table() {
    // A route named here that no longer exists would hide a new route of the same name.
    let rows = permission_rows();
    for path in GETS_WITHOUT_PATIENT_DATA {
        assert!(rows.iter().any(|(m, p, _)| m == "GET" && p == path), "{path} is not a GET row of the table");
    }
}

/// One row of docs/permissions.md: method, path, and allow for receptionist, clinician,
/// practice manager, administrator, ICB analyst.
fn permission_rows() -> Vec<(String, String, [bool; 5])> {
    PERMISSIONS
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
            let (method, path) = cells[0].trim_matches('`').split_once(' ').unwrap();
            let allow = [1, 2, 3, 4, 5].map(|i| match cells[i] {
                "allow" => true,
                "deny" => false,
                other => panic!("{other:?} in docs/permissions.md"),
            });
            (method.to_owned(), path.to_owned(), allow)
        })
        .collect()
}

#[test]
fn the_permission_table_covers_every_route() {
    let rows = permission_rows();
    assert!(rows.len() >= 8);
    let sources = [
        ("", include_str!("../../src/staff/sign_in.rs")),
        ("", include_str!("../../src/staff/passwords.rs")),
        ("", include_str!("../../src/staff/search.rs")),
        ("", include_str!("../../src/staff/record.rs")),
        ("", include_str!("../../src/staff/visibility.rs")),
        ("", include_str!("../../src/staff/split.rs")),
        ("", include_str!("../../src/staff/access.rs")),
        ("", include_str!("../../src/staff/trail.rs")),
        ("", include_str!("../../src/staff/settings.rs")),
        ("", include_str!("../../src/staff/consultation.rs")),
        ("", include_str!("../../src/staff/accounts.rs")),
        ("", include_str!("../../src/staff/registration.rs")),
        ("", include_str!("../../src/staff/letters.rs")),
        ("", include_str!("../../src/staff/transfer.rs")),
        ("", include_str!("../../src/staff/filing.rs")),
        ("/api/v1", include_str!("../../src/staff/access_api.rs")),
        ("", include_str!("../../src/pages.rs")),
        ("/api/v1", include_str!("../../src/api.rs")),
        ("", include_str!("../../src/patient.rs")),
        ("", include_str!("../../src/booking.rs")),
        ("", include_str!("../../src/comms.rs")),
        ("", include_str!("../../src/documents.rs")),
        ("", include_str!("../../src/integrations.rs")),
        ("", include_str!("../../src/tokens.rs")),
        ("", include_str!("../../src/staff_work.rs")),
        ("", include_str!("../../src/governance.rs")),
        ("", include_str!("../../src/inbound.rs")),
        ("", include_str!("../../src/sars.rs")),
        ("", include_str!("../../src/sar_export.rs")),
        ("", include_str!("../../src/chat.rs")),
        ("/api/update-record/v1", include_str!("../../src/update_record_api.rs")),
        ("/api/apps/v1", include_str!("../../src/app_api.rs")),
    ];
    for (prefix, src) in sources {
        for piece in src.split(".route(\"").skip(1) {
            let path = format!("{prefix}{}", piece.split('"').next().unwrap());
            let in_table = rows.iter().any(|(_, p, _)| p.split('?').next() == Some(path.as_str()));
            let open =
                PERMISSIONS.contains(&format!("`GET {path}`")) || PERMISSIONS.contains(&format!("`POST {path}`"));
            assert!(in_table || open, "route {path} has no row in docs/permissions.md");
        }
    }
}

async fn every_route_follows_the_permission_table(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    // An unfiled result: every route that takes an entry can act on it, the filing pages too.
    let mut entry = consultation(&pat, time(2024, 3, 3), "");
    entry.body = caldicott_core::entry::EntryBody::TestResult {
        test: "HbA1c".into(),
        value: "48".into(),
        unit: "mmol/mol".into(),
        range: "20-41".into(),
        abnormal: true,
        filing: caldicott_core::entry::Filing::Unfiled,
    };
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), std::slice::from_ref(&entry)).await.unwrap();
    // A consultation for the split routes (only consultations split).
    let consult = consultation(&pat, time(2024, 3, 4), "Part one.\nPart two.");
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), std::slice::from_ref(&consult)).await.unwrap();
    // A booked appointment and an open message task, for the routes that take them.
    let day = caldicott_app::fixtures::today() + chrono::Duration::days(5);
    let clinic = caldicott_app::appointments::NewClinic {
        slot_type: "gp_telephone".into(),
        others_bookable: false,
        location: "Phone".into(),
        ..fixtures::clinic_form(&tp, day, ("14:00", "14:30"), 15, "100")
    };
    let (clinic, _) = app.create_clinic(&tp.clinician, &clinic).await.unwrap().unwrap();
    let book = app.appointment_book(&tp.clinician, clinic.date, 1).await.unwrap();
    let slot = book[0].slot.clone();
    // A free slot, for the routes that book one for a patient and change its online offer.
    let free_slot = book[1].slot.id.to_string();
    let appointment = caldicott_core::appointments::Appointment::new(
        caldicott_core::ids::AppointmentId::from_uuid(caldicott_app::new_id()),
        slot.id,
        pat.id,
        caldicott_app::fixtures::now(),
        "by reception".into(),
        caldicott_core::appointments::BookingChannel::Practice,
    );
    app.store_for_tests()
        .book_slot(tp.practice.id, &appointment, &fixtures::audit(Action::AppointmentBook, Some(pat.id)))
        .await
        .unwrap();
    let task = caldicott_core::tasks::Task {
        id: caldicott_core::ids::TaskId::from_uuid(caldicott_app::new_id()),
        patient: pat.id,
        kind: caldicott_core::tasks::TaskKind::MedicationQuery,
        status: caldicott_core::tasks::TaskStatus::Open,
        created_at: caldicott_app::fixtures::now(),
        requested_by: "the patient, online".into(),
        body: caldicott_core::tasks::TaskBody::Message { text: "Can I take ibuprofen?".into() },
        outcome: None,
        closed_at: None,
        closed_by: None,
    };
    app.store_for_tests()
        .create_task(tp.practice.id, &task, &fixtures::audit(Action::TaskCreate, Some(pat.id)))
        .await
        .unwrap();
    let clinic_day = (day.format("%d").to_string(), day.format("%m").to_string(), day.format("%Y").to_string());
    // A failed message, for the retry route.
    let message = app
        .queue_message(
            tp.practice.id,
            caldicott_core::audit::Actor {
                kind: caldicott_core::audit::ActorKind::System,
                id: "test".into(),
                role: "system".into(),
            },
            caldicott_app::outbox::Draft {
                patient: pat.id,
                purpose: "test",
                channel: caldicott_core::messages::Channel::Email,
                recipient: "a@example.com".into(),
                subject: "s".into(),
                body: "b".into(),
            },
        )
        .await
        .unwrap();
    let now = caldicott_app::fixtures::now();
    app.store_for_tests().claim_due_messages(now, now + chrono::Duration::seconds(60), 100).await.unwrap();
    app.store_for_tests()
        .finish_message(
            tp.practice.id,
            message.id,
            &caldicott_store::DeliveryOutcome::Failed { error: "test".into() },
            now,
        )
        .await
        .unwrap();
    // An "online services linked" alert, from an app linked with the patient's letter.
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (wallet, wallet_secret) = app.register_app(&admin, "Wallet", "Wallet Ltd", "").await.unwrap();
    let letter = app.issue_linkage(&tp.clinician, pat.nhs_number.as_str(), "P9").await.unwrap();
    let link_req = caldicott_app::apps::LinkRequest {
        ods_code: letter.ods_code.clone(),
        account_id: letter.account_id.clone(),
        linkage_key: letter.linkage_key.clone(),
        family_name: pat.name.family.clone(),
        birth_date: pat.date_of_birth.to_string(),
    };
    app.link_app(&wallet.client_id, &wallet_secret, &link_req).await.unwrap();
    let alert = app
        .task_list(&tp.clinician, false)
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.kind == caldicott_core::tasks::TaskKind::OnlineServicesLinked)
        .unwrap()
        .0;
    let alert_id = alert.id.to_string();
    // A letter waiting to be posted.
    let post = caldicott_core::tasks::Task {
        id: caldicott_core::ids::TaskId::from_uuid(caldicott_app::new_id()),
        kind: caldicott_core::tasks::TaskKind::PostLetter,
        body: caldicott_core::tasks::TaskBody::Letter { message: message.id, text: "Dear Test Patient".into() },
        ..task.clone()
    };
    app.store_for_tests()
        .create_task(tp.practice.id, &post, &fixtures::audit(Action::TaskCreate, Some(pat.id)))
        .await
        .unwrap();
    let post_id = post.id.to_string();
    let applicant = adult(&app, tp.practice.id).await.unwrap();
    let applicant_nhs = applicant.nhs_number.as_str().to_owned();
    let proxy = fixtures::proxy_link(
        &app,
        tp.practice.id,
        &pat,
        &applicant,
        caldicott_core::access::AccessLevel::Summary,
        caldicott_app::fixtures::today(),
    )
    .await
    .unwrap();
    let clinician_id = tp.clinician.staff.to_string();
    let patient_id = pat.id.to_string();
    // A bulk 104 of one patient, for the undo route.
    let manager = caldicott_app::auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let bulk_patient = adult(&app, tp.practice.id).await.unwrap();
    let bulk = caldicott_app::governance::BulkInput {
        code: "104".into(),
        csv: bulk_patient.nhs_number.as_str().to_owned(),
        ..Default::default()
    };
    let plan_day = caldicott_app::fixtures::today() + chrono::Duration::days(30);
    let plan_date = plan_day.to_string();
    let plan_boxes =
        [plan_day.format("%-d").to_string(), plan_day.format("%-m").to_string(), plan_day.format("%Y").to_string()];
    // A pharmacy's consultation summary for the patient, waiting for review.
    let (sender, sender_secret) = app.register_sender(&admin, "FA123", "Quayside Pharmacy").await.unwrap();
    let summary = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/update-record/pharmacy-first.json"
    ))
    .unwrap()
    .replace("9990996008", pat.nhs_number.as_str())
    .replace("1987-03-14", &pat.date_of_birth.to_string());
    let inbound_id = app
        .receive_update_http(&sender.client_id, &sender_secret, summary.as_bytes())
        .await
        .unwrap()
        .id
        .unwrap()
        .to_string();
    let sar_id = app
        .log_sar(
            &manager,
            &caldicott_app::sar::NewSar {
                nhs_number: pat.nhs_number.as_str().to_owned(),
                requester: "The patient".into(),
                day: "1".into(),
                month: "11".into(),
                year: "2026".into(),
                waiting_for: "identity".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    let sar_key = format!("entry/{}", entry.id);
    // A message to everyone for each role, which they may read and then delete.
    let mut chat_ids = Vec::new();
    for _ in 0..5 {
        let compose = caldicott_app::chat::Compose {
            to: "team:everyone".into(),
            body: "Fire drill at noon".into(),
            ..Default::default()
        };
        match app.send_staff_message(&manager, &compose).await.unwrap().unwrap() {
            caldicott_app::chat::Sent::Sent(m) => chat_ids.push(m.id.to_string()),
            caldicott_app::chat::Sent::AskToLink(_) => unreachable!(),
        }
    }
    let job_id = app.bulk_apply(&manager, &bulk, "1").await.unwrap().unwrap().job.id.to_string();
    // A document with its file, and a practice integration.
    let document_id = app
        .add_document(
            &manager,
            pat.nhs_number.as_str(),
            caldicott_app::documents::NewDocument {
                title: "Clinic letter".into(),
                day: "1".into(),
                month: "2".into(),
                year: "2025".into(),
                filename: "letter.txt".into(),
                content: b"Dear Dr Test".to_vec(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap()
        .to_string();
    let (_, public_key) = caldicott_app::fhir_api::new_key_pair().unwrap();
    let registered_app_id = app.register_app(&admin, "Walk Wallet", "Walk Ltd", "").await.unwrap().0.id.to_string();
    let integration_id = app
        .register_integration(
            &admin,
            &caldicott_app::fhir_api::NewIntegration {
                name: "Reporting".into(),
                public_key: public_key.clone(),
                scopes: String::new(),
            },
        )
        .await
        .unwrap()
        .id
        .to_string();
    // A token of the clinician's, for the revoke route (not the one the walk uses).
    let spare_token_id = caldicott_app::auth::issue_token(
        &app,
        tp.practice.ods_code.as_str(),
        "clinician",
        "spare",
        chrono::Duration::days(1),
    )
    .await
    .unwrap()
    .token
    .id
    .to_string();
    let roles = [
        ("reception", &tp.receptionist_token),
        ("clinician", &tp.clinician_token),
        ("manager", &tp.manager_token),
        ("admin", &tp.admin_token),
        ("analyst", &tp.analyst_token),
    ];
    let mut unaudited_looks = Vec::new();
    for (i, (user, token)) in roles.into_iter().enumerate() {
        let mut b = Browser::new(&app);
        sign_in(&mut b, tp.practice.ods_code.as_str(), user).await;
        // Administrators and ICB analysts land on their own home, not the patient search.
        let token_csrf = csrf(
            &b.get(match user {
                "analyst" => "/icb",
                "admin" => "/staff",
                _ => "/",
            })
            .await
            .body,
        );
        for (method, path, allow) in permission_rows() {
            let uri = path
                .replace("{nhs_number}", pat.nhs_number.as_str())
                .replace("{entry}", &if path.ends_with("/split") { consult.id } else { entry.id }.to_string())
                .replace("{query}", pat.nhs_number.as_str())
                .replace("{staff}", &tp.clinician.staff.to_string())
                .replace("{appointment}", &appointment.id.to_string())
                .replace("{slot}", &free_slot)
                .replace("{task}", &task.id.to_string())
                .replace("{link}", &proxy.id.to_string())
                .replace("{message}", &message.id.to_string())
                .replace("{alert}", &alert_id)
                .replace("{letter}", &post_id)
                .replace("{job}", &job_id)
                .replace("{inbound}", &inbound_id)
                .replace("{sar}", &sar_id)
                .replace("{chat}", &chat_ids[i])
                .replace("{export}", &uuid::Uuid::nil().to_string())
                .replace("{document}", &document_id)
                .replace("{integration}", &integration_id)
                .replace("{app}", &registered_app_id)
                .replace("{token}", &spare_token_id)
                .replace("{format}", "pdf");
            let mut last_body = String::new();
            let audited_before = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
            let status = match (method.as_str(), uri.starts_with("/api/")) {
                ("GET", true) => get(&app, &uri, Some(token)).await.status,
                ("POST", true) if uri.ends_with("/access") || uri.ends_with("/enhanced-review") => {
                    // Without "confirm", a check of what the change would do: nothing changes.
                    let body = serde_json::json!({ "change": "opt_out", "code": "104" });
                    let r = post_json(&app, &uri, token, &body).await;
                    last_body = r.body;
                    r.status
                }
                ("POST", true) if uri.ends_with("/gp-connect-sharing") => {
                    let body = serde_json::json!({ "dissent": true, "reason": "Permission test" });
                    let r = post_json(&app, &uri, token, &body).await;
                    last_body = r.body;
                    r.status
                }
                ("POST", true) if uri.contains("/appointments") || uri.contains("/slots/") => {
                    // Each appointment route reads its own fields: book the free slot for the
                    // patient, record a did-not-attend, take the slot off the online list.
                    let body = serde_json::json!({
                        "slot": free_slot, "nhs_number": applicant_nhs.as_str(),
                        "attendance": "did_not_attend", "online": false,
                    });
                    let r = post_json(&app, &uri, token, &body).await;
                    last_body = r.body;
                    r.status
                }
                ("POST", true) => {
                    // A transfer-in, for a patient new to the practice.
                    let nhs = caldicott_core::NhsNumber::from_first_nine(999_100_000 + i as u32 * 10)
                        .or_else(|| caldicott_core::NhsNumber::from_first_nine(999_100_001 + i as u32 * 10))
                        .unwrap();
                    let bundle =
                        fixtures::transfer_bundle(nhs.as_str(), "1970-01-01", "Api", "Transfer", "B82001", "P");
                    let r = post_json(&app, &uri, token, &bundle).await;
                    last_body = r.body;
                    r.status
                }
                ("GET", false) => b.get(&uri).await.status,
                ("POST", false) => {
                    let new_nhs = caldicott_core::NhsNumber::from_first_nine(999_000_300 + i as u32 * 10)
                        .or_else(|| caldicott_core::NhsNumber::from_first_nine(999_000_301 + i as u32 * 10))
                        .unwrap()
                        .as_str()
                        .to_owned();
                    let bundle =
                        fixtures::transfer_bundle(&new_nhs, "1990-02-01", "Registered", "Bytest", "B82001", "PERM")
                            .to_string();
                    // One form with the fields of every form; each route reads its own.
                    let form = [
                        ("_csrf", token_csrf.as_str()),
                        ("change", "reset"),
                        ("reason", "other"),
                        ("dissent", "yes"),
                        ("note", "Permission test"),
                        ("code", "104"),
                        ("switch_on_day", "31"),
                        ("switch_on_month", "10"),
                        ("switch_on_year", "2023"),
                        ("default_level", "full"),
                        ("proxy_review_age", "11"),
                        ("action", "opt_out"),
                        ("release", "visible"),
                        ("text", "Seen today"),
                        ("status", "final"),
                        ("visible_online", "yes"),
                        ("name", "Permission Test"),
                        ("username", "perm.test"),
                        ("role", "receptionist"),
                        ("password", "a long enough password"),
                        ("nhs_number", new_nhs.as_str()),
                        ("given", "Registered"),
                        ("family", "Bytest"),
                        ("birth_day", "1"),
                        ("birth_month", "2"),
                        ("birth_year", "1990"),
                        ("sex", "female"),
                        ("postcode", "RV1 1AA"),
                        ("parts", "Part one.\n---\nPart two."),
                        ("bundle", bundle.as_str()),
                        ("identity", "P9"),
                        ("clinician", clinician_id.as_str()),
                        ("staff", clinician_id.as_str()),
                        ("sds_user_id", "555021935107"),
                        ("day", clinic_day.0.as_str()),
                        ("month", clinic_day.1.as_str()),
                        ("year", clinic_day.2.as_str()),
                        ("start", "16:00"),
                        ("end", "16:30"),
                        ("slot_minutes", "10"),
                        ("slot_type", "gp_face_to_face"),
                        ("location", "Room 3"),
                        ("online_share", "50"),
                        ("online", "no"),
                        ("attendance", "did_not_attend"),
                        ("patient", patient_id.as_str()),
                        ("decision", "close"),
                        ("outcome", "Permission test outcome"),
                        ("pharmacy_ods", "FA123"),
                        ("applicant_nhs", applicant_nhs.as_str()),
                        ("relationship", "Carer"),
                        ("basis", "consent"),
                        ("record_level", "summary"),
                        ("record_from", "grant"),
                        ("proxy_outcome", "refuse"),
                        ("refusal_reason", "Permission test refusal"),
                        ("proxy_action", "end"),
                        ("task", alert_id.as_str()),
                        ("preset", caldicott_core::messages::SAFETY_NET_NAME),
                        ("send_key", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
                        ("preferred", "unknown"),
                        ("preset_name", "Permission test preset"),
                        ("preset_body", "Hello <initials>"),
                        ("app_name", "Permission App"),
                        ("supplier", "Permission Ltd"),
                        ("pharmacy_name", "Test Pharmacy"),
                        ("review_outcome", "granted"),
                        ("min_age", "120"),
                        ("inbound_action", "reject"),
                        ("sar_action", "wait"),
                        ("sar_decision", "release"),
                        ("key", sar_key.as_str()),
                        ("to", "team:everyone"),
                        ("body", "Permission test message"),
                        ("waiting_for", "identity"),
                        ("requester", "Permission Requester"),
                        ("received_day", "2"),
                        ("received_month", "11"),
                        ("received_year", "2026"),
                        ("sender_ods", "FB456"),
                        ("sender_name", "Permission Pharmacy"),
                        ("owner", "Permission Test Owner"),
                        ("review_by", plan_date.as_str()),
                        ("below_half_by", plan_date.as_str()),
                        ("review_by_day", plan_boxes[0].as_str()),
                        ("review_by_month", plan_boxes[1].as_str()),
                        ("review_by_year", plan_boxes[2].as_str()),
                        ("below_half_by_day", plan_boxes[0].as_str()),
                        ("below_half_by_month", plan_boxes[1].as_str()),
                        ("below_half_by_year", plan_boxes[2].as_str()),
                        ("title", "Permission letter"),
                        ("doc_day", "3"),
                        ("doc_month", "4"),
                        ("doc_year", "2025"),
                        ("public_key", public_key.as_str()),
                        ("exchange_app", registered_app_id.as_str()),
                        ("exchange_client_id", "walk-at-nhs-login"),
                        ("exchange_key", public_key.as_str()),
                        ("integration_action", "deactivate"),
                        ("app_action", "deactivate"),
                        // Each role changes its own password (the session walking carries on).
                        ("current_password", "a long test password"),
                        ("new_password", "the walk's new password"),
                        ("new_password_again", "the walk's new password"),
                    ];
                    let r = b.post(&uri, &form).await;
                    last_body = r.body;
                    r.status
                }
                other => panic!("no way to call {other:?}"),
            };
            // Every look at patient data is audited before the answer goes (the audit of every
            // look): a GET answered with a page or JSON that carries patient data wrote at least
            // one event of the caller's own.
            if method == "GET" && status.is_success() && !GETS_WITHOUT_PATIENT_DATA.contains(&path.as_str()) {
                let new = app.store_for_tests().audit_events(tp.practice.id, audited_before, 1000).await.unwrap();
                if !new.iter().any(|e| e.actor_kind == "staff" && e.outcome == "success") {
                    unaudited_looks.push(format!("{user} GET {path}"));
                }
            }
            if allow[i] {
                // 409: permitted, but the state had already changed (deregistered by an earlier role).
                // 404 on an export's files: permitted, but there is no such export to collect.
                let no_such_export = path.contains("{export}") && status == StatusCode::NOT_FOUND;
                assert!(
                    status.is_success() || status.is_redirection() || status == StatusCode::CONFLICT || no_such_export,
                    "{user} {method} {path}: expected allow, got {status}: {last_body}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{user} {method} {path}: expected deny");
            }
        }
    }
    assert!(unaudited_looks.is_empty(), "answers with patient data but no audit event: {unaudited_looks:#?}");
}

async fn an_administrator_records_a_clinicians_sds_user_id_on_the_staff_page(t: &TestStore) {
    // GP Connect names practitioners by their SDS user id: the administrator records it.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let gp = tp.clinician.staff.to_string();
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, &ods, "admin").await;
    let page = admin.get("/staff").await;
    assert!(page.body.contains("<label class=\"nhsuk-label\" for=\"sds_user_id\">SDS user ID</label>"));
    assert!(page.body.contains(&format!("<option value=\"{gp}\"")));
    assert!(
        page.body.contains("<option value=\"\" selected>Choose a member of staff</option>"),
        "nobody is chosen for you"
    );
    let token = csrf(&page.body);
    // A malformed id: the page again, with the error on the field and what was typed kept.
    let bad = admin.post("/staff/sds-user-id", &[("_csrf", &token), ("staff", &gp), ("sds_user_id", "12-34")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("<title>Error: "), "the title says there is an error");
    assert!(bad.body.contains("href=\"#sds_user_id\""), "the summary links to the field");
    assert!(bad.body.contains("value=\"12-34\""), "what was typed is kept");
    // The field says what is wrong, tied to the box for screen readers (NHS.UK error message).
    assert!(bad.body.contains("id=\"sds_user_id-error\""));
    assert!(bad.body.contains("nhsuk-input--error"));
    assert!(bad.body.contains("aria-describedby=\"sds_user_id-hint sds_user_id-error\""));
    assert!(bad.body.contains(&format!("<option value=\"{gp}\" selected")), "the member chosen is kept");
    let nobody = admin.post("/staff/sds-user-id", &[("_csrf", &token), ("staff", "x"), ("sds_user_id", "1")]).await;
    assert_eq!(nobody.status, StatusCode::BAD_REQUEST);
    assert!(nobody.body.contains("Choose the member of staff"));
    // Saved: said, and shown in the list.
    let done =
        admin.post("/staff/sds-user-id", &[("_csrf", &token), ("staff", &gp), ("sds_user_id", "555021935107")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("SDS user ID 555021935107 recorded for Test clinician."), "{}", done.body);
    assert!(admin.get("/staff").await.body.contains("<td class=\"nhsuk-table__cell\">555021935107</td>"));
    let admin_who = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let member = app.staff_accounts(&admin_who).await.unwrap().into_iter().find(|m| m.id == tp.clinician.staff);
    assert_eq!(member.and_then(|m| m.sds_user_id).as_deref(), Some("555021935107"));
    // Another member cannot be given the same id.
    let reception = caldicott_app::auth::authenticate(&app, &tp.receptionist_token).await.unwrap().staff.to_string();
    let taken = admin
        .post("/staff/sds-user-id", &[("_csrf", &token), ("staff", &reception), ("sds_user_id", "555021935107")])
        .await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST);
    assert!(taken.body.contains("another member of staff at this practice has that SDS user ID"), "{}", taken.body);
    // Left blank, it is removed.
    let cleared = admin.post("/staff/sds-user-id", &[("_csrf", &token), ("staff", &gp), ("sds_user_id", "")]).await;
    assert!(cleared.body.contains("SDS user ID removed for Test clinician."));
    let again = admin.post("/staff/sds-user-id", &[("_csrf", &token), ("staff", &gp), ("sds_user_id", "")]).await;
    assert!(again.body.contains("has no SDS user ID recorded"), "nothing held, nothing removed");
    // A request without the box at all removes nothing.
    admin.post("/staff/sds-user-id", &[("_csrf", &token), ("staff", &gp), ("sds_user_id", "555021935107")]).await;
    let absent = admin.post("/staff/sds-user-id", &[("_csrf", &token), ("staff", &gp)]).await;
    assert_eq!(absent.status, StatusCode::BAD_REQUEST);
    assert!(admin.get("/staff").await.body.contains("<td class=\"nhsuk-table__cell\">555021935107</td>"));
}

async fn staff_change_their_password_and_an_administrator_resets_one_through_the_pages(t: &TestStore) {
    // ASVS 2.5 through the pages: "Change password" from the header, and an administrator's
    // one-time code used at /sign-in/reset; the reset ends the member's session at once.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let mut clinician = Browser::new(&app);
    sign_in(&mut clinician, &ods, "clinician").await;
    let home = clinician.get("/").await;
    assert!(home.body.contains("href=\"/account/password\""), "the header links to the page");
    let page = clinician.get("/account/password").await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page.body);
    let new = "the clinician's own new password";
    let wrong = clinician
        .post(
            "/account/password",
            &[("_csrf", &token), ("current_password", "not it"), ("new_password", new), ("new_password_again", new)],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("Your current password is not right"), "{}", wrong.body);
    let short = clinician
        .post(
            "/account/password",
            &[
                ("_csrf", &token),
                ("current_password", "a long test password"),
                ("new_password", "short"),
                ("new_password_again", "short"),
            ],
        )
        .await;
    assert!(short.body.contains("at least 12 characters") && short.body.contains("nhsuk-error-summary"));
    let done = clinician
        .post(
            "/account/password",
            &[
                ("_csrf", &token),
                ("current_password", "a long test password"),
                ("new_password", new),
                ("new_password_again", new),
            ],
        )
        .await;
    assert_eq!(location(&done), "/account/password?done=1");
    assert!(clinician.get("/account/password?done=1").await.body.contains("Your password has been changed"));
    // The administrator resets it: a code shown once, and the clinician is signed out.
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, &ods, "admin").await;
    let staff = admin.get("/staff").await;
    assert!(staff.body.contains("Reset password"));
    let made = admin.post(&format!("/staff/{}/password", tp.clinician.staff), &[("_csrf", &csrf(&staff.body))]).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let code = between(&made.body, "id=\"reset-code\">", "<").to_owned();
    assert_eq!(code.len(), 14, "{code}");
    assert_eq!(location(&clinician.get("/").await), "/sign-in", "the clinician's session has ended");
    // The clinician sets a new password with it.
    let mut b = Browser::new(&app);
    let sign_in_page = b.get("/sign-in").await;
    assert!(sign_in_page.body.contains("Forgotten your password?") && sign_in_page.body.contains("/sign-in/reset"));
    let page = b.get("/sign-in/reset").await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page.body);
    let after = "the password after the reset";
    let reset_form = |again: &'static str| {
        vec![
            ("_csrf", token.as_str()),
            ("ods", ods.as_str()),
            ("username", "clinician"),
            ("code", code.as_str()),
            ("new_password", after),
            ("new_password_again", again),
        ]
    };
    let r = b.post("/sign-in/reset", &reset_form("the password after the resett")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Enter the same new password twice"));
    let right = reset_form(after);
    let r = b.post("/sign-in/reset", &right).await;
    assert_eq!(location(&r), "/sign-in?done=password", "{}", r.body);
    assert!(b.get("/sign-in?done=password").await.body.contains("Your new password is set"));
    let again = b.post("/sign-in/reset", &right).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("one-time code is not right"), "a code works once");
    let token = csrf(&b.get("/sign-in").await.body);
    let r =
        b.post("/sign-in", &[("_csrf", &token), ("ods", &ods), ("username", "clinician"), ("password", after)]).await;
    assert_eq!(location(&r), "/sign-in/code");
    assert!(!b.get("/sign-in/code").await.body.contains("totp-secret"), "the authenticator stays as it was");
}

async fn a_patient_changes_their_password_and_uses_a_password_letter_through_the_pages(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (username, password, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let mut p = Browser::new(&app);
    p.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    let page = p.get("/my/security").await;
    assert!(page.body.contains("Change your password"));
    let token = csrf(&page.body);
    let new = "my own new patient password";
    let wrong = [
        ("_csrf", token.as_str()),
        ("step", "password"),
        ("current_password", "not my password"),
        ("new_password", new),
        ("new_password_again", new),
    ];
    let r = p.post("/my/security", &wrong).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Your current password is not right"));
    let right = vec![
        ("_csrf", token.as_str()),
        ("step", "password"),
        ("current_password", password.as_str()),
        ("new_password", new),
        ("new_password_again", new),
    ];
    let r = p.post("/my/security", &right).await;
    assert_eq!(location(&r), "/my/security?done=password");
    // Forgotten: the sign-in page says what to do; the practice prints a password letter.
    let mut q = Browser::new(&app);
    let sign_in_page = q.get("/my/sign-in").await;
    assert!(sign_in_page.body.contains("Forgotten your password?"));
    assert!(sign_in_page.body.contains("ask for a new password letter"));
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "reception").await;
    let record = staff.get(&format!("/patients/{}", pat.nhs_number.as_str())).await;
    assert!(record.body.contains("Print password letter"));
    let letter = staff
        .post(&format!("/patients/{}/password-letter", pat.nhs_number.as_str()), &[("_csrf", &csrf(&record.body))])
        .await;
    assert_eq!(letter.status, StatusCode::OK, "{}", letter.body);
    assert_eq!(between(&letter.body, "id=\"letter-username\">", "<"), username);
    let account_id = between(&letter.body, "id=\"letter-account-id\">", "<").to_owned();
    let key = between(&letter.body, "id=\"letter-linkage-key\">", "<").to_owned();
    let token = csrf(&q.get("/my/reset").await.body);
    let dob = pat.date_of_birth;
    let (d, m, y) = (dob.format("%d").to_string(), dob.format("%m").to_string(), dob.format("%Y").to_string());
    let after = "the password from my letter";
    let mut form = vec![
        ("_csrf", token.as_str()),
        ("ods_code", tp.practice.ods_code.as_str()),
        ("account_id", account_id.as_str()),
        ("linkage_key", key.as_str()),
        ("family", pat.name.family.as_str()),
        ("birth_day", d.as_str()),
        ("birth_month", m.as_str()),
        ("birth_year", "1901"),
        ("new_password", after),
        ("new_password_again", after),
    ];
    let r = q.post("/my/reset", &form).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("These details do not match our records"));
    assert!(!r.body.contains(after), "a password is never written back into the page");
    form[7].1 = y.as_str();
    let r = q.post("/my/reset", &form).await;
    assert_eq!(location(&r), "/my/sign-in?done=password", "{}", r.body);
    assert_eq!(location(&p.get("/my/record").await), "/my/sign-in", "every session of the account has ended");
    assert!(q.get("/my/sign-in?done=password").await.body.contains("Your new password is set"));
    let token = csrf(&q.get("/my/sign-in").await.body);
    let ods = tp.practice.ods_code.as_str();
    let r =
        q.post("/my/sign-in", &[("_csrf", &token), ("ods", ods), ("username", &username), ("password", after)]).await;
    assert_eq!(location(&r), "/my");
}

async fn a_pharmacy_posts_a_summary_and_a_clinician_files_it_through_the_pages(t: &TestStore) {
    // R24-R27, R30 through HTTP: the pharmacy's endpoint and the staff pages.
    use base64::Engine;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, tp.practice.ods_code.as_str(), "admin").await;
    let page = admin.get("/inbound/senders").await;
    let r = admin
        .post(
            "/inbound/senders",
            &[("_csrf", &csrf(&page.body)), ("sender_ods", "FA123"), ("sender_name", "Quayside Pharmacy")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let client_id = between(&r.body, "id=\"sender-client-id\">", "<").to_owned();
    let secret = between(&r.body, "id=\"sender-client-secret\">", "<").to_owned();
    let example = |name: &str| {
        std::fs::read_to_string(format!("{}/../../docs/examples/update-record/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .replace("9990996008", &nhs)
            .replace("1987-03-14", &pat.date_of_birth.to_string())
    };
    let post = |auth: String, body: Vec<u8>| {
        let app = app.clone();
        async move {
            let req = Request::post("/api/update-record/v1/messages")
                .header(header::AUTHORIZATION, auth)
                .header(header::CONTENT_TYPE, "application/fhir+json")
                .body(Body::from(body))
                .unwrap();
            let res = caldicott_web::router(app).oneshot(req).await.unwrap();
            let status = res.status();
            let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
            (status, body)
        }
    };
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}")));
    let (status, body) = post(basic.clone(), example("pharmacy-first.json").into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let receipt: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(receipt["code"], 20013);
    let id = receipt["id"].as_str().unwrap().to_owned();
    let (status, body) = post(basic.clone(), example("pharmacy-first.json").into_bytes()).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["code"].clone()),
        (StatusCode::OK, serde_json::json!(20007))
    );
    let (status, body) = post(basic.clone(), example("invalid-iteration-2-allergy.json").into_bytes()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("Iteration 2") && body.contains("20009"), "{body}");
    let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:guess")));
    assert_eq!(post(wrong, example("contraception.json").into_bytes()).await.0, StatusCode::UNAUTHORIZED);
    // Larger than 2 MB: an ITK3 answer as JSON with its code, recorded like other refusals (D13).
    let (status, body) = post(basic.clone(), vec![b' '; 3 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let oversize: Value = serde_json::from_str(&body).expect("an ITK3 answer in JSON");
    assert_eq!(oversize["code"], 20009);
    assert!(oversize["problems"][0].as_str().unwrap().contains("larger than 2 MB"), "{body}");
    let kept =
        app.store_for_tests().inbound(tp.practice.id, oversize["id"].as_str().unwrap().parse().unwrap()).await.unwrap();
    assert_eq!(kept.map(|m| m.response_code), Some(20009));
    // A clinician reviews it in the queue, removes an item and files it.
    let mut doctor = Browser::new(&app);
    sign_in(&mut doctor, tp.practice.ods_code.as_str(), "clinician").await;
    let queue = doctor.get("/inbound").await;
    let spaced = format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..]);
    assert!(queue.body.contains(&format!("/inbound/{id}")) && queue.body.contains(&spaced), "one NHS number format");
    let view = doctor.get(&format!("/inbound/{id}")).await;
    assert_eq!(view.status, StatusCode::OK);
    assert!(view.body.contains("Phenoxymethylpenicillin") && view.body.contains("Ms Anita Shah"));
    // R26: the review names the pharmacy, the pharmacist and their role, the presenting
    // complaint and the patient it matched (with a link to the record), and shows the medicine
    // entry exactly as filing will write it, field by field.
    for shown in [
        "Quayside Pharmacy",
        "Community pharmacist",
        "Sore throat for 4 days, no cough, fever 38.1",
        &format!("href=\"/patients/{nhs}\""),
        "<dt class=\"nhsuk-summary-list__key\">Dosage</dt><dd class=\"nhsuk-summary-list__value\">Two tablets four times a day for 5 days</dd>",
        "<dt class=\"nhsuk-summary-list__key\">Quantity</dt><dd class=\"nhsuk-summary-list__value\">40 tablet</dd>",
        "<dt class=\"nhsuk-summary-list__key\">Medicine</dt><dd class=\"nhsuk-summary-list__value\">Phenoxymethylpenicillin 250mg tablets</dd>",
    ] {
        assert!(view.body.contains(shown), "{shown} not on the review page");
    }
    let token = csrf(&view.body);
    let r =
        doctor.post(&format!("/inbound/{id}"), &[("_csrf", &token), ("inbound_action", "remove"), ("item", "0")]).await;
    assert!(r.status.is_redirection());
    let r = doctor
        .post(
            &format!("/inbound/{id}"),
            &[("_csrf", &token), ("inbound_action", "recode"), ("item", "0"), ("code", "x"), ("term", "y")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("is not a SNOMED CT concept id"));
    let r = doctor.post(&format!("/inbound/{id}"), &[("_csrf", &token), ("inbound_action", "file")]).await;
    assert!(r.status.is_redirection());
    let record = doctor.get(&format!("/patients/{nhs}")).await;
    assert!(record.body.contains("Quayside Pharmacy") && record.body.contains("Phenoxymethylpenicillin"));
    let done = doctor.get(&format!("/inbound/{id}")).await;
    assert!(done.body.contains("Filed on") && done.body.contains("removed Clinical impression"));
    // A summary whose date of birth matches no one waits apart: the clinician tries to match it
    // again (the reason it still does not match is on the page), then closes it as not theirs.
    let stray = example("contraception.json")
        .replace(&pat.date_of_birth.to_string(), "1901-01-01")
        .replace("c1a4e5f0-0003-4d1b-9c11-000000000003", "c1a4e5f0-0003-4d1b-9c11-0000000000ff");
    let (status, body) = post(basic.clone(), stray.into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let stray_id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    let view = doctor.get(&format!("/inbound/{stray_id}")).await;
    assert!(view.body.contains("Match again") && view.body.contains("Close the message"));
    assert!(!view.body.contains("File into the record"), "nothing to file it into");
    let token = csrf(&view.body);
    let r = doctor.post(&format!("/inbound/{stray_id}"), &[("_csrf", &token), ("inbound_action", "match")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("1 January 1901"), "the reason it does not match");
    let r = doctor
        .post(
            &format!("/inbound/{stray_id}"),
            &[("_csrf", &token), ("inbound_action", "reject"), ("reason", "Not our patient")],
        )
        .await;
    assert_eq!(location(&r), "/inbound?done");
    assert!(doctor.get(&format!("/inbound/{stray_id}")).await.body.contains("Not our patient"));
    // The practice manager switches Update Record off: the pharmacy is refused, and it is logged.
    let manager = caldicott_app::auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let mut settings = caldicott_app::settings::SettingsInput {
        switch_on_day: "31".into(),
        switch_on_month: "10".into(),
        switch_on_year: "2023".into(),
        default_level: "full".into(),
        proxy_review_age: "11".into(),
        visible_online_by_default: true,
        accept_update_record: false,
        ..Default::default()
    };
    app.change_practice_settings(&manager, &settings).await.unwrap().unwrap();
    let (status, body) = post(basic.clone(), example("contraception.json").into_bytes()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("20010") && body.contains("does not accept"), "{body}");
    assert!(doctor.get("/inbound").await.body.contains("Refused: Update Record switched off"));
    settings.accept_update_record = true;
    app.change_practice_settings(&manager, &settings).await.unwrap().unwrap();
}

async fn a_replaced_pharmacy_summary_shows_as_superseded_in_the_record(t: &TestStore) {
    // R28: once a replacement is filed, the entries the earlier payload filed stay in the staff
    // record, labelled superseded by the later message, and are not shown online.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (sender, secret) = app.register_sender(&admin, "FA123", "Quayside Pharmacy").await.unwrap();
    let example = |name: &str| {
        std::fs::read_to_string(format!("{}/../../docs/examples/update-record/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .replace("9990996008", &nhs)
            .replace("1987-03-14", &pat.date_of_birth.to_string())
    };
    let first = app.receive_update_http(&sender.client_id, &secret, example("pharmacy-first.json").as_bytes()).await;
    let first = first.unwrap().id.unwrap();
    app.file_inbound(&tp.clinician, first).await.unwrap();
    let second = app
        .receive_update_http(&sender.client_id, &secret, example("pharmacy-first-replacement.json").as_bytes())
        .await
        .unwrap();
    assert_eq!(second.code, 20013, "{:?}", second.problems);
    let mut doctor = Browser::new(&app);
    sign_in(&mut doctor, tp.practice.ods_code.as_str(), "clinician").await;
    let review = doctor.get(&format!("/inbound/{}", second.id.unwrap())).await;
    assert!(review.body.contains("This replaces a message already filed"), "the difference is shown");
    let token = csrf(&review.body);
    let r = doctor
        .post(&format!("/inbound/{}", second.id.unwrap()), &[("_csrf", &token), ("inbound_action", "file")])
        .await;
    assert!(r.status.is_redirection());
    let record = doctor.get(&format!("/patients/{nhs}")).await;
    assert!(record.body.contains("Superseded</strong>"), "labelled superseded");
    assert!(record.body.contains("Superseded by GP Connect Update Record message c1a4e5f0-0005"));
    let online = doctor.get(&format!("/patients/{nhs}/online")).await;
    assert!(online.body.contains("for 10 days") && !online.body.contains("for 5 days"));
}

async fn staff_log_a_subject_access_request_and_see_its_due_date(t: &TestStore) {
    // R31, R32 through the pages and the API.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let mut b = Browser::new(&app);
    sign_in(&mut b, tp.practice.ods_code.as_str(), "manager").await;
    let form = b.get("/sars/new").await;
    assert_eq!(form.status, StatusCode::OK);
    let token = csrf(&form.body);
    let bad = b.post("/sars", &[("_csrf", &token), ("nhs_number", "123"), ("requester", "")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Enter the NHS number of a patient of this practice"));
    let r = b
        .post(
            "/sars",
            &[
                ("_csrf", &token),
                ("nhs_number", pat.nhs_number.as_str()),
                ("requester", "Smith & Co solicitors"),
                ("relationship", "solicitor acting with consent"),
                ("received_day", "2"),
                ("received_month", "10"),
                ("received_year", "2026"),
                ("waiting_for", ""),
            ],
        )
        .await;
    assert!(r.status.is_redirection(), "{}", r.body);
    let location = r.headers.get(header::LOCATION).unwrap().to_str().unwrap().to_owned();
    let page = b.get(&location).await;
    // Received Friday 2 October 2026: due Monday 2 November 2026.
    assert!(page.body.contains("2 Nov 2026"), "{}", page.body);
    // An extension, the requester told on the date in three boxes.
    let extend = |day: &'static str, month: &'static str| {
        [
            ("_csrf", token.clone()),
            ("sar_action", "extend".into()),
            ("reason", "Complex".into()),
            ("notified_on_day", day.into()),
            ("notified_on_month", month.into()),
            ("notified_on_year", "2026".into()),
        ]
    };
    // Too late to extend: the due date has passed.
    let form = extend("20", "10");
    let r = b.post(&location, &form.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("before the original due date"));
    // Issue 23: dates are NHS.UK date inputs (three boxes), never a browser date picker, and a
    // date that is not one is named in words.
    let page = b.get(&location).await;
    assert!(page.body.contains("name=\"notified_on_day\"") && !page.body.contains("type=\"date\""));
    let form = extend("31", "2");
    let r = b.post(&location, &form.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("The date the requester was told must be a real date"), "{}", r.body);
    assert!(b.get("/").await.body.contains("1 subject access request past the legal deadline"));
    let list = b.get("/sars").await;
    assert!(list.body.contains("Overdue by") && list.body.contains("Co solicitors"));
    let api = get(&app, "/api/v1/sars", Some(&tp.manager_token)).await;
    assert_eq!(api.status, StatusCode::OK);
    assert!(api.body.contains("\"due\":\"2026-11-02\""), "{}", api.body);
}

/// Logs a subject access request from the patient, received today, through the form; its address.
async fn log_sar_today(b: &mut Browser, token: &str, pat: &caldicott_core::patient::Patient) -> String {
    let today = caldicott_app::fixtures::today();
    let (d, m, y) = (today.format("%-d").to_string(), today.format("%-m").to_string(), today.format("%Y").to_string());
    let r = b
        .post(
            "/sars",
            &[
                ("_csrf", token),
                ("nhs_number", pat.nhs_number.as_str()),
                ("requester", "The patient"),
                ("received_day", &d),
                ("received_month", &m),
                ("received_year", &y),
            ],
        )
        .await;
    location(&r).to_owned()
}

async fn a_subject_access_export_is_reviewed_released_and_collected_once(t: &TestStore) {
    // R33, T37, T38 through the pages: flagged items need a decision, the release needs the
    // password again, progress is shown, each file is handed over once and never cached.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let hidden = withheld_entries(&pat, time(2025, 6, 1), "SAR-HIDDEN");
    fixtures::add_entries(&app, tp.practice.id, None, &hidden).await.unwrap();
    let mut b = Browser::new(&app);
    sign_in(&mut b, tp.practice.ods_code.as_str(), "manager").await;
    let token = csrf(&b.get("/sars/new").await.body);
    let sar = log_sar_today(&mut b, &token, &pat).await;
    assert!(b.get(&sar).await.body.contains("Review and release the records"));
    let review = b.get(&format!("{sar}/export")).await;
    assert_eq!(review.status, StatusCode::OK);
    assert!(
        review.body.contains("Hidden online: Third-party information") && review.body.contains("Not ready to release")
    );
    // Releasing now is refused with the reasons.
    let early =
        b.post(&format!("{sar}/export/release"), &[("_csrf", &token), ("password", "a long test password")]).await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert!(early.body.contains("still need"));
    // Withhold one hidden entry without a reason: named; with one: recorded.
    let first = format!("entry/{}", hidden[0].id);
    let no_reason = b
        .post(
            &format!("{sar}/export/decide"),
            &[("_csrf", &token), ("key", &first), ("sar_decision", "withhold"), ("ground", "third_party")],
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    assert!(no_reason.body.contains("Give the reason for withholding"));
    let ok = b
        .post(
            &format!("{sar}/export/decide"),
            &[
                ("_csrf", &token),
                ("key", &first),
                ("sar_decision", "withhold"),
                ("ground", "third_party"),
                ("reason", "Names a relative"),
            ],
        )
        .await;
    assert!(ok.status.is_redirection(), "{}", ok.body);
    // Release the rest of the flagged items in one go (the form repeats `key`).
    let page = b.get(&format!("{sar}/export")).await.body;
    let mut form: Vec<(&str, String)> = vec![("_csrf", token.clone()), ("sar_decision", "release".into())];
    for h in &hidden[1..] {
        let key = format!("entry/{}", h.id);
        if page.contains(&format!("value=\"{key}\"")) {
            form.push(("key", key));
        }
    }
    for piece in page.split("value=\"staff_message/").skip(1) {
        form.push(("key", format!("staff_message/{}", piece.split('"').next().unwrap())));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert!(b.post(&format!("{sar}/export/decide"), &pairs).await.status.is_redirection());
    assert!(!b.get(&format!("{sar}/export")).await.body.contains("Not ready to release"));
    // The wrong password is refused; the right one starts the export.
    let wrong = b.post(&format!("{sar}/export/release"), &[("_csrf", &token), ("password", "guess")]).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("That is not your password"));
    let started =
        b.post(&format!("{sar}/export/release"), &[("_csrf", &token), ("password", "a long test password")]).await;
    let job = location(&started).to_owned();
    assert!(job.contains("/export/jobs/"), "{}", started.body);
    let mut ready = String::new();
    for _ in 0..200 {
        let p = b.get(&job).await;
        assert_eq!(p.status, StatusCode::OK);
        if p.body.contains("Download the FHIR file") {
            ready = p.body;
            break;
        }
        assert!(p.body.contains("http-equiv=\"refresh\""), "a running export refreshes itself");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready.contains("1 withheld"), "{ready}");
    // Another member of staff cannot collect it.
    let mut other = Browser::new(&app);
    sign_in(&mut other, tp.practice.ods_code.as_str(), "clinician").await;
    let other_token = csrf(&other.get("/").await.body);
    assert_eq!(other.post(&format!("{job}/fhir"), &[("_csrf", &other_token)]).await.status, StatusCode::NOT_FOUND);
    // The file, once, not cached, as an attachment; without the withheld entry.
    let file = b.post(&format!("{job}/fhir"), &[("_csrf", &token)]).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.headers[header::CACHE_CONTROL], "no-store");
    assert!(file.headers[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
    assert_eq!(file.json()["resourceType"], "Bundle");
    assert!(!file.body.contains(&hidden[0].id.to_string()));
    assert_eq!(b.post(&format!("{job}/fhir"), &[("_csrf", &token)]).await.status, StatusCode::NOT_FOUND);
    let pdf = b.post(&format!("{job}/pdf"), &[("_csrf", &token)]).await;
    assert_eq!((pdf.status, pdf.headers[header::CONTENT_TYPE].to_str().unwrap()), (StatusCode::OK, "application/pdf"));
    assert!(pdf.body.starts_with("%PDF"));
    // Both collected: the export is gone.
    assert_eq!(b.get(&job).await.status, StatusCode::NOT_FOUND);
    assert!(b.get(&format!("{sar}/export")).await.body.contains("Released before"));
}

/// Issue 24: two servers on one database behind a load balancer, each with its own connections
/// and process state. Requests alternate between them: signed in on one, the record opens on the
/// other; a subject access export released on one shows its progress and hands its files over
/// on the other, each file once even when both servers are asked at the same moment.
async fn two_servers_share_sign_in_and_subject_access_exports(t: &TestStore) {
    let one = app(t);
    let two = App::new(caldicott_store::open(&t.url).await.unwrap(), caldicott_app::fixtures::test_clock());
    let tp = fixtures::practice(&one).await.unwrap();
    let pat = adult(&one, tp.practice.id).await.unwrap();
    let mut b = Browser::new(&one);
    sign_in(&mut b, tp.practice.ods_code.as_str(), "manager").await;
    b.app = two.clone();
    let record = b.get(&format!("/patients/{}", pat.nhs_number.as_str())).await;
    assert_eq!(record.status, StatusCode::OK, "the session made on one server is good on the other");
    let token = csrf(&b.get("/sars/new").await.body);
    b.app = one.clone();
    let sar = log_sar_today(&mut b, &token, &pat).await;
    b.app = two.clone();
    assert!(!b.get(&format!("{sar}/export")).await.body.contains("Not ready to release"));
    b.app = one.clone();
    let started =
        b.post(&format!("{sar}/export/release"), &[("_csrf", &token), ("password", "a long test password")]).await;
    let job = location(&started).to_owned();
    assert!(job.contains("/export/jobs/"), "{}", started.body);
    b.app = two.clone();
    let mut ready = false;
    for _ in 0..400 {
        let p = b.get(&job).await;
        assert_eq!(p.status, StatusCode::OK, "the other server knows the export");
        if p.body.contains("Download the FHIR file") {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ready, "the export finished and the other server says so");
    // Both servers asked for the same file at once: one hands it over, the other says it is gone.
    let mut b2 = Browser::new(&two);
    b2.jar = b.jar.clone();
    b.app = one.clone();
    let fhir = format!("{job}/fhir");
    let form = [("_csrf", token.as_str())];
    let (a, c) = tokio::join!(b.post(&fhir, &form), b2.post(&fhir, &form));
    let mut statuses = [a.status, c.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::NOT_FOUND]);
    let file = if a.status == StatusCode::OK { a } else { c };
    assert_eq!(file.json()["resourceType"], "Bundle");
    // The PDF on the other server, once; then the export is gone from both.
    let pdf = b2.post(&format!("{job}/pdf"), &[("_csrf", &token)]).await;
    assert!(pdf.body.starts_with("%PDF"));
    assert_eq!(b.post(&format!("{job}/pdf"), &[("_csrf", &token)]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(b.get(&job).await.status, StatusCode::NOT_FOUND);
    assert_eq!(b2.get(&job).await.status, StatusCode::NOT_FOUND);
    // Both collections are in the audit log, once each.
    let trail = one.store_for_tests().audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    let collected = trail.iter().filter(|e| e.detail.starts_with("collected format=")).count();
    assert_eq!(collected, 2);
}

async fn documents_are_added_filed_and_opened_through_the_pages(t: &TestStore) {
    // R8: a new document waits unseen; filed visible, its patient opens it, and no one else.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let other = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let mut reception = Browser::new(&app);
    sign_in(&mut reception, tp.practice.ods_code.as_str(), "reception").await;
    let form = reception.get(&format!("/patients/{nhs}/documents/new")).await;
    assert_eq!(form.status, StatusCode::OK);
    let token = csrf(&form.body);
    let fields = |title: &'static str| {
        vec![
            ("_csrf", token.clone()),
            ("title", title.to_owned()),
            ("doc_day", "3".into()),
            ("doc_month", "2".into()),
            ("doc_year", "2025".into()),
        ]
    };
    let as_refs = |v: &Vec<(&'static str, String)>| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    // Not a file type it keeps: the form again, with the error, nothing added.
    let f = as_refs(&fields("Discharge letter"));
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bad = reception.upload(&format!("/patients/{nhs}/documents"), &f, ("file", b"\x00\x01binary")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("The file must be PDF"), "{}", bad.body);
    let ok = reception.upload(&format!("/patients/{nhs}/documents"), &f, ("file", b"%PDF-1.4 DISCHARGE")).await;
    assert!(ok.status.is_redirection(), "{}", ok.body);
    let (entry, _) = app
        .filing_queue(&tp.clinician)
        .await
        .unwrap()
        .into_iter()
        .find(|(e, _)| e.patient == pat.id)
        .expect("the document waits in the filing queue");
    // Staff open it from the record and the filing page; it is a download, never run.
    let record = reception.get(&format!("/patients/{nhs}")).await;
    assert!(record.body.contains(&format!("/documents/{}", entry.id)));
    let file = reception.get(&format!("/documents/{}", entry.id)).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.headers[header::CONTENT_TYPE], "application/pdf");
    assert!(file.headers[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
    assert!(file.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("sandbox"));
    assert!(file.body.contains("DISCHARGE"));
    // The patient: not yet (unfiled), then yes once filed visible; another patient never.
    let mut patient = Browser::new(&app);
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    patient.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    let mut stranger = Browser::new(&app);
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &other, "P9").await.unwrap();
    stranger.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    let url = format!("/my/documents/{}", entry.id);
    let made_up = format!("/my/documents/{}", uuid::Uuid::now_v7());
    let unknown = patient.get(&made_up).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // What a page says, without its session's own form token.
    let said = |r: &Reply| {
        (r.status, r.body.split("<main").nth(1).unwrap_or("").split("</main>").next().unwrap_or("").to_owned())
    };
    let waiting = patient.get(&url).await;
    assert_eq!(said(&waiting), said(&unknown));
    app.file(&tp.clinician, entry.id, &caldicott_app::redaction::VisibilityChange::Show { note: String::new() }, false)
        .await
        .unwrap();
    let mine = patient.get("/my/record?section=documents").await;
    assert!(mine.body.contains(&url), "{}", mine.body);
    let opened = patient.get(&url).await;
    assert_eq!(opened.status, StatusCode::OK);
    assert!(opened.body.contains("DISCHARGE"));
    let theirs = stranger.get(&url).await;
    assert_eq!(said(&theirs), said(&unknown));
    // A text document pasted as a form, from a script.
    let f = as_refs(&fields("Email from the hospital"));
    let mut f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    f.push(("text", "Please repeat the blood test in a week."));
    assert!(reception.post(&format!("/patients/{nhs}/documents"), &f).await.status.is_redirection());
    // Administrators may not.
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, tp.practice.ods_code.as_str(), "admin").await;
    assert_eq!(admin.get(&format!("/documents/{}", entry.id)).await.status, StatusCode::FORBIDDEN);
}

async fn administrators_register_and_turn_off_an_integration(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, tp.practice.ods_code.as_str(), "admin").await;
    let page = admin.get("/integrations").await;
    let token = csrf(&page.body);
    let (private, public) = caldicott_app::fhir_api::new_key_pair().unwrap();
    let refused = admin
        .post("/integrations", &[("_csrf", &token), ("name", "Reporting"), ("public_key", &private), ("scopes", "")])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("That is a private key"));
    let made = admin
        .post(
            "/integrations",
            &[("_csrf", &token), ("name", "Reporting"), ("public_key", &public), ("scopes", "system/Patient.read")],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let client_id =
        made.body.split("id=\"integration-client-id\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(made.body.contains("http://localhost/fhir/r4/token") || made.body.contains("/fhir/r4/token"));
    let i = app.integrations(&caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap()).await.unwrap();
    assert_eq!(
        (i[0].client_id.as_str(), i[0].scopes.as_str(), i[0].active),
        (client_id.as_str(), "system/Patient.read", true)
    );
    let off = admin
        .post(&format!("/integrations/{}", i[0].id), &[("_csrf", &token), ("integration_action", "deactivate")])
        .await;
    assert_eq!(location(&off), "/integrations");
    assert!(admin.get("/integrations").await.body.contains("Turned off"));
    let _ = private;
}

/// Issue 23 (WCAG 2.4.5, 3.2.3): an address no route answers is an NHS.UK "Page not found" page
/// with a title, the page's language and a way back, signed in or out, staff's or patients'; the
/// APIs keep their JSON. Each role's way back (and its landing after sign-in) is its own home:
/// an administrator is not sent to a patient search they may not use.
async fn unknown_addresses_get_a_page_with_a_way_back(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let page = |r: &Reply| {
        let kind = r.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(kind.starts_with("text/html"), "{kind}: {}", r.body);
        assert!(r.body.contains("<html lang=\"en-GB\">") && r.body.contains("<title>Page not found – "), "{}", r.body);
        assert!(r.body.contains("<h1>Page not found</h1>"));
    };
    let out = get(&app, "/no-such-page", None).await;
    assert_eq!(out.status, StatusCode::NOT_FOUND);
    page(&out);
    assert!(out.body.contains("href=\"/sign-in\">Go to sign in"));
    let patient_out = get(&app, "/my/no-such-page", None).await;
    assert_eq!(patient_out.status, StatusCode::NOT_FOUND);
    page(&patient_out);
    assert!(patient_out.body.contains("Your GP services") && patient_out.body.contains("href=\"/my/sign-in\""));
    for api in ["/api/v1/no-such-route", "/api/apps/v1/nothing"] {
        let r = get(&app, api, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{api}");
        assert!(r.json().is_object(), "{api} keeps its JSON: {}", r.body);
    }
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, tp.practice.ods_code.as_str(), "admin").await;
    assert_eq!(location(&admin.get("/").await), "/staff", "an administrator starts on the staff accounts");
    let r = admin.get("/no-such-page").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    page(&r);
    assert!(r.body.contains("aria-label=\"Staff menu\"") && r.body.contains("href=\"/staff\">Go to your home page"));
    let refused = admin.get("/appointments").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("href=\"/staff\">Go to your home page"),
        "the refusal does not loop back: {}",
        refused.body
    );
    let mut reception = Browser::new(&app);
    sign_in(&mut reception, tp.practice.ods_code.as_str(), "reception").await;
    assert_eq!(reception.get("/").await.status, StatusCode::OK, "reception starts on patient search");
    assert!(reception.get("/no-such-page").await.body.contains("href=\"/\">Go to your home page"));
}

/// Issue 23: a patient with two parents online; staff looking "as" one of them see which one, by
/// name, not only "Parent".
async fn staff_previewing_as_a_proxy_see_which_person_by_name(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let child = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - chrono::Duration::days(365 * 7));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let (mother, father) = (adult(&app, tp.practice.id).await.unwrap(), adult(&app, tp.practice.id).await.unwrap());
    let granted = caldicott_app::fixtures::today() - chrono::Duration::days(30);
    let level = caldicott_core::access::AccessLevel::Summary;
    let to_mother = fixtures::proxy_link(&app, tp.practice.id, &child, &mother, level, granted).await.unwrap();
    let to_father = fixtures::proxy_link(&app, tp.practice.id, &child, &father, level, granted).await.unwrap();
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "clinician").await;
    for (link, who, other) in [(&to_mother, &mother, &father), (&to_father, &father, &mother)] {
        let page =
            staff.get(&format!("/patients/{}/online?as=proxy&proxy={}", child.nhs_number.as_str(), link.id)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let heading = between(&page.body, "<h2 class=\"nhsuk-heading-m\">What ", "</h2>");
        let name = format!("{} {}", who.name.given, who.name.family);
        assert!(heading.contains(&name) && heading.contains("sees online for"), "{heading}");
        assert!(!heading.contains(&other.name.family) || other.name.family == who.name.family, "{heading}");
    }
}

/// Issue 23: times are shown in UK time. On a summer day (BST, UTC+1) a look at 11:00 UTC is
/// listed at 12:00 on the patient's "who viewed my record".
async fn who_viewed_my_record_shows_uk_time(t: &TestStore) {
    use chrono::TimeZone;
    let summer = chrono::Utc.with_ymd_and_hms(2026, 7, 1, 11, 0, 0).unwrap();
    let app = App::new(t.store.clone(), std::sync::Arc::new(move || summer));
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let mut p = Browser::new(&app);
    p.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    assert_eq!(p.get("/my/record").await.status, StatusCode::OK);
    let page = p.get("/my/activity").await;
    assert!(page.body.contains("1 Jul 2026, 12:00"), "UK time: {}", page.body);
    assert!(!page.body.contains("1 Jul 2026, 11:00"), "not UTC");
}

/// Issue 23 (WCAG 2.2.1): the page asks how long the session has left without that counting as
/// activity (nor does the unread count it polls, or an unattended screen would never sign out);
/// "Stay signed in" gives the whole idle time back; once idle for 30 minutes the session has
/// ended.
async fn an_open_page_neither_keeps_a_session_alive_nor_loses_it_without_warning(t: &TestStore) {
    use std::sync::atomic::{AtomicI64, Ordering};
    let offset = std::sync::Arc::new(AtomicI64::new(0));
    let clock = offset.clone();
    let app = App::new(
        t.store.clone(),
        std::sync::Arc::new(move || {
            caldicott_app::fixtures::now() + chrono::Duration::seconds(clock.load(Ordering::SeqCst))
        }),
    );
    let tp = fixtures::practice(&app).await.unwrap();
    let mut b = Browser::new(&app);
    sign_in(&mut b, tp.practice.ods_code.as_str(), "clinician").await;
    let token = csrf(&b.get("/").await.body);
    let left = |r: &Reply| r.json()["seconds_left"].as_i64().unwrap_or(-1);
    let first = left(&b.get("/session").await);
    assert!((1790..=1800).contains(&first), "{first}");
    offset.fetch_add(20 * 60, Ordering::SeqCst);
    assert_eq!(b.get("/chat/unread").await.status, StatusCode::OK);
    let after_poll = left(&b.get("/session").await);
    assert!((590..=600).contains(&after_poll), "polling is not activity: {after_poll}");
    let kept = b.post("/session/keep-alive", &[("_csrf", &token)]).await;
    assert_eq!(kept.status, StatusCode::OK);
    assert!((1790..=1800).contains(&left(&kept)), "stay signed in: {}", kept.body);
    let forged = b.post("/session/keep-alive", &[("_csrf", "not the token")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "keeping a session needs its CSRF token");
    offset.fetch_add(31 * 60, Ordering::SeqCst);
    assert_eq!(b.get("/session").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get("/chat/unread").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(location(&b.get("/").await), "/sign-in", "idle for 30 minutes: signed out");
    let page = b.get("/sign-in?timeout").await;
    assert!(page.body.contains("You were signed out because nothing was done for 30 minutes"));
}

/// A patient tells the practice they do not want other care settings to see their GP record: a
/// clinician records it on the access page, GP Connect refuses (`NO_PATIENT_CONSENT`, 403, the
/// Structured and Access Document error tables), and a practice manager takes it away through
/// the API.
async fn a_clinician_records_a_patients_dissent_and_the_spine_is_refused(t: &TestStore) {
    use crate::gp_connect::{jwt, parameters, send, spine_code, spine_request};
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let op = format!("{}/Patient/$gpc.getstructuredrecord", caldicott_app::gp_connect::service_root(&ods));
    let structured = || {
        let req = spine_request(
            "POST",
            &op,
            caldicott_fhir::gpconnect::STRUCTURED_INTERACTION,
            &jwt(&ods, "patient/*.read"),
            parameters(&nhs),
            |_| {},
        );
        send(caldicott_web::spine_router(app.clone()), req)
    };
    assert_eq!(structured().await.status, StatusCode::OK);

    let mut b = Browser::new(&app);
    sign_in(&mut b, &ods, "clinician").await;
    let access = format!("/patients/{nhs}/access");
    let page = b.get(&access).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Sharing with other care settings (GP Connect)"));
    let token = csrf(&page.body);
    let sharing = format!("/patients/{nhs}/gp-connect-sharing");
    // No reason: the page again with the error at the field; nothing recorded.
    let r = b.post(&sharing, &[("_csrf", &token), ("dissent", "yes"), ("reason", "  ")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("<title>Error: "), "a page with errors says so in its title");
    assert!(r.body.contains("say why"), "{}", r.body);
    assert_eq!(structured().await.status, StatusCode::OK, "nothing was recorded");
    let said = "Told reception she does not want hospitals to see her GP record";
    let r = b.post(&sharing, &[("_csrf", &token), ("dissent", "yes"), ("reason", said)]).await;
    assert!(r.status.is_redirection(), "{}: {}", r.status, r.body);
    let page = b.get(&access).await;
    assert!(page.body.contains("The patient has dissented from sharing their record"));
    assert!(page.body.contains(said));

    let refused = structured().await;
    assert_eq!((refused.status, spine_code(&refused)), (StatusCode::FORBIDDEN, "NO_PATIENT_CONSENT"));
    assert!(!refused.json.to_string().contains("hospitals"), "the reason stays at the practice");

    // The record API carries it; a receptionist may not change it; a manager takes it away.
    let rec = get(&app, &format!("/api/v1/patients/{nhs}/record"), Some(&tp.clinician_token)).await;
    assert_eq!(rec.json()["gp_connect_dissent"]["reason"], said);
    let api = format!("/api/v1/patients/{nhs}/gp-connect-sharing");
    let denied = serde_json::json!({ "dissent": false });
    assert_eq!(post_json(&app, &api, &tp.receptionist_token, &denied).await.status, StatusCode::FORBIDDEN);
    let bad = post_json(&app, &api, &tp.manager_token, &serde_json::json!({ "dissent": "no" })).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(structured().await.status, StatusCode::FORBIDDEN, "still refused");
    let r = post_json(&app, &api, &tp.manager_token, &denied).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["dissent"], false);
    assert_eq!(r.json()["shared_through_gp_connect"], true);
    assert_eq!(structured().await.status, StatusCode::OK, "shared again");
}

both!(
    a_clinician_records_a_patients_dissent_and_the_spine_is_refused,
    an_open_page_neither_keeps_a_session_alive_nor_loses_it_without_warning,
    who_viewed_my_record_shows_uk_time,
    staff_previewing_as_a_proxy_see_which_person_by_name,
    unknown_addresses_get_a_page_with_a_way_back,
    a_patient_sees_that_the_practice_turned_their_app_off,
    a_replaced_pharmacy_summary_shows_as_superseded_in_the_record,
    documents_are_added_filed_and_opened_through_the_pages,
    administrators_register_and_turn_off_an_integration,
    staff_log_a_subject_access_request_and_see_its_due_date,
    a_subject_access_export_is_reviewed_released_and_collected_once,
    two_servers_share_sign_in_and_subject_access_exports,
    a_pharmacy_posts_a_summary_and_a_clinician_files_it_through_the_pages,
    health_and_front_page_need_no_sign_in,
    patient_data_needs_a_valid_token,
    bad_input_gets_a_clear_error,
    no_withheld_entry_reaches_the_online_view_response,
    staff_sign_in_find_a_patient_and_see_their_online_view,
    a_consultation_naming_someone_is_checked_before_it_is_visible_online,
    access_changes_through_the_api_are_checked_then_confirmed,
    the_portal_keeps_practices_and_roles_apart,
    every_route_follows_the_permission_table,
    audit_events_record_the_client_address_never_a_forwarded_header,
    refused_machine_credentials_are_audited_at_their_practice,
    machine_endpoints_refuse_an_unauthenticated_body_unread,
    an_administrator_revokes_an_api_token_and_its_next_call_is_refused,
    staff_transfer_in_a_record_from_a_file,
    a_patient_signs_up_with_the_letter_staff_print,
    patient_routes_reach_only_the_callers_own_data,
    results_charts_are_drawn_only_from_what_the_viewer_is_shown,
    care_plans_are_written_read_and_added_to_over_http,
    online_capacity_is_kept_and_reported_through_the_pages,
    the_appointment_book_and_capacity_report_answer_through_the_json_api,
    patient_services_reach_only_whom_the_caller_acts_for,
    a_patient_books_an_appointment_and_orders_a_repeat_through_the_pages,
    every_patient_route_for_every_kind_of_proxy,
    a_patient_turns_on_two_step_sign_in,
    staff_change_their_password_and_an_administrator_resets_one_through_the_pages,
    an_administrator_records_a_clinicians_sds_user_id_on_the_staff_page,
    a_patient_changes_their_password_and_uses_a_password_letter_through_the_pages,
    an_app_links_through_the_api_and_staff_action_the_alert,
    send_a_message_submitted_twice_at_once_sends_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_credential_tries_from_one_address_is_answered_429_with_retry_after() {
    // ASVS 2.2.1 / 11.1.4: per client address, on every route that checks a credential; the
    // answer is 429 with Retry-After, in each route's own format; another address is not held.
    use axum::extract::connect_info::MockConnectInfo;
    use caldicott_web::throttle::Throttles;
    let t = test_support::sqlite().await.unwrap();
    let base = caldicott_web::router(app(&t));
    let from = |ip: [u8; 4]| base.clone().layer(MockConnectInfo(std::net::SocketAddr::from((ip, 40000))));
    let post = |router: axum::Router, uri: &'static str| async move {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("username=clinician&password=guess"))
            .unwrap();
        router.oneshot(req).await.unwrap()
    };
    for (n, (uri, (burst, _))) in [
        ("/sign-in", Throttles::CREDENTIALS),
        ("/my/sign-in/code", Throttles::CREDENTIALS),
        ("/fhir/r4/token", Throttles::MACHINES),
        ("/api/apps/v1/links", Throttles::MACHINES),
    ]
    .into_iter()
    .enumerate()
    {
        // The people's routes share one limit per address, as do the machines': each case its own.
        let attacker = from([192, 0, 2, u8::try_from(n).unwrap() + 1]);
        for i in 0..burst {
            let r = post(attacker.clone(), uri).await;
            assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{uri}: try {i} is within the burst");
        }
        let r = post(attacker.clone(), uri).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{uri}");
        let wait: u64 = r.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{uri}: Retry-After {wait}");
        let kind = r.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        let expected = if uri.starts_with("/fhir") {
            "application/fhir+json"
        } else if uri.starts_with("/api") {
            "application/json"
        } else {
            "text/html"
        };
        assert!(kind.starts_with(expected), "{uri}: {kind}");
        // Someone else, elsewhere, is not held back.
        let r = post(from([198, 51, 100, 7]), uri).await;
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{uri}: another address");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pharmacy_credentials_from_one_address_are_held_back() {
    // The Update Record endpoint counts only failed credentials per address (one pharmacy system
    // may send for many pharmacies from one address): past the rate, that address is answered
    // 429 with Retry-After before any credential is checked; a pharmacy elsewhere is not.
    use axum::extract::connect_info::MockConnectInfo;
    use base64::Engine;
    use caldicott_web::throttle::Throttles;
    let t = test_support::sqlite().await.unwrap();
    let app = app(&t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (sender, secret) = app.register_sender(&admin, "FA123", "Quayside Pharmacy").await.unwrap();
    let base = caldicott_web::router(app.clone());
    let post = |ip: [u8; 4], secret: String| {
        let router = base.clone().layer(MockConnectInfo(std::net::SocketAddr::from((ip, 40000))));
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", sender.client_id));
        async move {
            let req = Request::post("/api/update-record/v1/messages")
                .header(header::AUTHORIZATION, format!("Basic {auth}"))
                .header(header::CONTENT_TYPE, "application/fhir+json")
                .body(Body::from("{}"))
                .unwrap();
            router.oneshot(req).await.unwrap()
        }
    };
    let attacker = [192, 0, 2, 66];
    for i in 0..Throttles::FAILURES.0 {
        assert_eq!(post(attacker, format!("guess {i}")).await.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // One failure past the burst, and the address is held back: even the right secret waits.
    assert_eq!(post(attacker, "one more".into()).await.status(), StatusCode::UNAUTHORIZED);
    let held = post(attacker, secret.clone()).await;
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = held.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=Throttles::FAILURES.1.as_secs()).contains(&wait), "Retry-After {wait}");
    // The pharmacy at its own address is answered as usual (its body is not a valid message).
    let elsewhere = post([198, 51, 100, 9], secret).await;
    assert_ne!(elsewhere.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_ne!(elsewhere.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_served_without_any_other_site() {
    let t = test_support::sqlite().await.unwrap();
    let app = app(&t);
    let css = get(&app, "/assets/nhsuk-frontend.min.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains(".nhsuk-header"));
    assert!(!css.body.contains("https://"), "the stylesheet must not load anything from another site");
    assert_eq!(get(&app, "/assets/caldicott.js", None).await.status, StatusCode::OK);
    assert_eq!(get(&app, "/assets/images/favicon.svg", None).await.status, StatusCode::OK);
    assert_eq!(get(&app, "/assets/nope.css", None).await.status, StatusCode::NOT_FOUND);
    let api = get(&app, "/api", None).await;
    assert!(api.body.contains("/api/v1/patients/{nhs_number}/online-view"));
}

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

async fn audit_events_record_the_client_address_never_a_forwarded_header(t: &TestStore) {
    // ASVS V7.1: each audit event says where the request came from; the TCP peer's address is
    // the only source, so a client cannot write someone else's address into the log.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let last_event = || async {
        let head = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
        app.store_for_tests().audit_events(tp.practice.id, head - 1, 1).await.unwrap().remove(0)
    };
    // Over a real socket, as `caldicott serve` runs it, with a forged X-Forwarded-For.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = caldicott_web::router(app.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/patients/{}/record HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         X-Forwarded-For: 203.0.113.66\r\nForwarded: for=203.0.113.66\r\nConnection: close\r\n\r\n",
        pat.nhs_number.as_str(),
        tp.clinician_token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    server.abort();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let read = last_event().await;
    assert_eq!(read.action, "record.view_staff");
    assert_eq!(read.client.as_deref(), Some("127.0.0.1"), "the peer's address, not the header's");
    // A change written in the store's own transaction records it too.
    let mut req = Request::post("/api/v1/transfer-in")
        .header(header::AUTHORIZATION, format!("Bearer {}", tp.clinician_token))
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .header("x-forwarded-for", "203.0.113.66")
        .body(Body::from(
            fixtures::transfer_bundle(
                caldicott_core::NhsNumber::from_first_nine(999_300_001).unwrap().as_str(),
                "1970-01-01",
                "Addr",
                "Test",
                "B82001",
                "P",
            )
            .to_string(),
        ))
        .unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([198, 51, 100, 4], 40000))));
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let change = last_event().await;
    assert_eq!(change.action, "record.transfer_in");
    assert_eq!(change.client.as_deref(), Some("198.51.100.4"));
    // Without a connection (in process) there is no address, and nothing from the headers.
    let r = get(&app, &format!("/api/v1/patients/{}/record", pat.nhs_number.as_str()), Some(&tp.clinician_token)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(last_event().await.client, None);
    // And the chain, addresses included, verifies.
    assert!(caldicott_app::audit_log::verify_chain(app.store_for_tests().as_ref(), tp.practice.id, &[])
        .await
        .unwrap()
        .is_ok());
}

async fn refused_machine_credentials_are_audited_at_their_practice(t: &TestStore) {
    // ASVS V7.2: an app, a pharmacy or an integration presenting a wrong credential leaves an
    // event (outcome denied, no patient, the client's address) in the chain of the practice it
    // claimed; a credential that names nothing known has no practice and changes no chain.
    use base64::Engine;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (wallet, _) = app.register_app(&admin, "Wallet", "Wallet Ltd", "").await.unwrap();
    let (sender, _) = app.register_sender(&admin, "FA123", "Quayside Pharmacy").await.unwrap();
    let basic = |id: &str, secret: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    };
    let post = |uri: &str, auth: String, body: &str| {
        let mut req = Request::post(uri)
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([192, 0, 2, 44], 5555))));
        let app = app.clone();
        async move { caldicott_web::router(app).oneshot(req).await.unwrap().status() }
    };
    let link = serde_json::json!({ "ods_code": "X", "account_id": "X", "linkage_key": "X", "family_name": "X", "birth_date": "2000-01-01" }).to_string();
    let cases = [
        ("/api/apps/v1/links", basic(&wallet.client_id, "not-the-secret"), link.clone(), "app.link", "app"),
        (
            "/api/update-record/v1/messages",
            basic(&sender.client_id, "not-the-secret"),
            "{}".into(),
            "inbound.receive",
            "system",
        ),
    ];
    for (uri, auth, body, action, kind) in cases {
        let before = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
        assert_eq!(post(uri, auth, &body).await, StatusCode::UNAUTHORIZED, "{uri}");
        let events = app.store_for_tests().audit_events(tp.practice.id, before, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{uri}: {events:?}");
        let e = &events[0];
        assert_eq!((e.action.as_str(), e.outcome.as_str(), e.actor_kind.as_str()), (action, "denied", kind), "{uri}");
        assert_eq!((e.patient.as_deref(), e.client.as_deref()), (None, Some("192.0.2.44")), "{uri}");
        assert!(!e.detail.contains("not-the-secret") && !e.entity.contains("not-the-secret"));
    }
    // Unknown client ids: refused, and no practice's chain changes.
    let before = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
    assert_eq!(post("/api/apps/v1/links", basic("app_nobody", "x"), &link).await, StatusCode::UNAUTHORIZED);
    assert_eq!(post("/api/update-record/v1/messages", basic("ur_nobody", "x"), "{}").await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count, before);
}

/// Sends a request over a real socket that promises a large body (`Content-Length`) and sends
/// only `sent` bytes of it, and returns the status the server answers with, or `None` if it
/// waits for the rest (a server that reads bodies before checking who sends them).
async fn status_before_the_body_arrives(addr: std::net::SocketAddr, head: &str, sent: usize) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{head}Host: localhost\r\nContent-Length: 3000000\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'a'; sent]).await.unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read).await.ok()?;
    String::from_utf8_lossy(&reply).split(' ').nth(1).and_then(|s| s.parse().ok())
}

async fn machine_endpoints_refuse_an_unauthenticated_body_unread(t: &TestStore) {
    // ASVS V13/V4: a caller without a valid credential is answered 401 before its body is read:
    // promising 3 MB (over every limit) and sending a little, the answer comes without the rest.
    use base64::Engine;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (wallet, _) = app.register_app(&admin, "Wallet", "Wallet Ltd", "").await.unwrap();
    let (sender, _) = app.register_sender(&admin, "FA123", "Quayside Pharmacy").await.unwrap();
    let basic = |id: &str| {
        format!("Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(format!("{id}:wrong")))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = caldicott_web::router(app.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let json = "Content-Type: application/json\r\n";
    let fhir = "Content-Type: application/fhir+json\r\n";
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let cases = [
        format!("POST /api/update-record/v1/messages HTTP/1.1\r\n{fhir}"),
        format!("POST /api/update-record/v1/messages HTTP/1.1\r\n{fhir}{}", basic(&sender.client_id)),
        format!("POST /api/apps/v1/links HTTP/1.1\r\n{json}"),
        format!("POST /api/apps/v1/links HTTP/1.1\r\n{json}{}", basic(&wallet.client_id)),
        format!("POST /api/apps/v1/links/nhs-login HTTP/1.1\r\n{json}{}", basic(&wallet.client_id)),
        format!("POST /fhir/r4/Appointment HTTP/1.1\r\n{fhir}"),
        format!(
            "PUT /fhir/r4/Appointment/{} HTTP/1.1\r\n{fhir}Authorization: Bearer fat_forged\r\n",
            uuid::Uuid::nil()
        ),
        format!("POST /fhir/r4/token HTTP/1.1\r\n{form}{}", basic(&wallet.client_id)),
    ];
    for head in &cases {
        let status = status_before_the_body_arrives(addr, head, 1024).await;
        assert_eq!(status, Some(401), "{head}");
    }
    // The token endpoint's integrations carry their credential in the body: it reads at most
    // 16 KB of it, and with no credential in that, refuses.
    let token = format!("POST /fhir/r4/token HTTP/1.1\r\n{form}");
    assert_eq!(status_before_the_body_arrives(addr, &token, 20 * 1024).await, Some(401));
    server.abort();
    // In process, with the whole 3 MB sent: 401, not 413.
    let big = vec![b'a'; 3_000_000];
    for uri in ["/fhir/r4/Appointment", "/api/apps/v1/links", "/api/update-record/v1/messages", "/fhir/r4/token"] {
        let req =
            Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(Body::from(big.clone())).unwrap();
        let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }
}

async fn an_administrator_revokes_an_api_token_and_its_next_call_is_refused(t: &TestStore) {
    // ASVS V3/V7: tokens can be seen and revoked; revocation holds from the next request.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let other = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let issued = caldicott_app::auth::issue_token(
        &app,
        tp.practice.ods_code.as_str(),
        "clinician",
        "reporting script",
        chrono::Duration::days(7),
    )
    .await
    .unwrap();
    let id = issued.token.id.to_string();
    let record = format!("/api/v1/patients/{}/record", pat.nhs_number.as_str());
    assert_eq!(get(&app, &record, Some(&issued.secret)).await.status, StatusCode::OK);
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, tp.practice.ods_code.as_str(), "admin").await;
    let page = admin.get("/tokens").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("reporting script") && page.body.contains(&id), "{}", page.body);
    assert!(!page.body.contains(&issued.secret), "a token's secret is never shown again");
    let revoke = format!("/tokens/{id}/revoke");
    // Without the session's CSRF token: refused, and the token still works.
    assert_eq!(admin.post(&revoke, &[("_csrf", "forged")]).await.status, StatusCode::FORBIDDEN);
    // Another practice's administrator cannot reach it.
    let mut stranger = Browser::new(&app);
    sign_in(&mut stranger, other.practice.ods_code.as_str(), "admin").await;
    let their_csrf = csrf(&stranger.get("/tokens").await.body);
    assert_eq!(stranger.post(&revoke, &[("_csrf", their_csrf.as_str())]).await.status, StatusCode::NOT_FOUND);
    // Nor a clinician of this practice.
    let mut clinician = Browser::new(&app);
    sign_in(&mut clinician, tp.practice.ods_code.as_str(), "clinician").await;
    let clinician_csrf = csrf(&clinician.get("/").await.body);
    assert_eq!(clinician.post(&revoke, &[("_csrf", clinician_csrf.as_str())]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, &record, Some(&issued.secret)).await.status, StatusCode::OK);
    // The administrator revokes it: audited, and its very next call is 401.
    let before = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
    let done = admin.post(&revoke, &[("_csrf", csrf(&page.body).as_str())]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Revoked"));
    let events = app.store_for_tests().audit_events(tp.practice.id, before, 10).await.unwrap();
    assert!(events.iter().any(|e| e.action == "token.revoke" && e.entity == format!("token/{id}")), "{events:?}");
    let r = get(&app, &record, Some(&issued.secret)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.body.contains(pat.nhs_number.as_str()));
    // Revoking it again: not found, nothing written.
    let again = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
    let csrf_now = csrf(&admin.get("/tokens").await.body);
    assert_eq!(admin.post(&revoke, &[("_csrf", csrf_now.as_str())]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count, again);
}

async fn staff_transfer_in_a_record_from_a_file(t: &TestStore) {
    // R7, D4: through the page (multipart upload) and the API
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let nhs = caldicott_core::NhsNumber::from_first_nine(999_200_001).unwrap();
    let file = fixtures::transfer_bundle(nhs.as_str(), "1990-02-01", "Ruth", "Ellis", "B82001", "MARK").to_string();
    let mut b = Browser::new(&app);
    sign_in(&mut b, tp.practice.ods_code.as_str(), "clinician").await;
    let home = b.get("/").await;
    assert!(home.body.contains("href=\"/patients/transfer-in\""));
    let page = b.get("/patients/transfer-in").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("enctype=\"multipart/form-data\""));
    let token = csrf(&page.body);
    let r = b.upload("/patients/transfer-in", &[("_csrf", "wrong")], ("bundle", file.as_bytes())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a forged form imports nothing");
    let r =
        b.upload("/patients/transfer-in", &[("_csrf", &token)], ("bundle", b"{\"resourceType\": \"Bundle\"}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("There is a problem") && r.body.contains("The Bundle has no entries"), "{}", r.body);
    let r = b.upload("/patients/transfer-in", &[("_csrf", &token)], ("bundle", file.as_bytes())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Record transferred in"));
    assert!(r.body.contains("9 entries from practice B82001"));
    assert!(r.body.contains("who is now registered here as transferred in"));
    assert_eq!(r.body.matches("/online\">Review").count(), 2, "each entry pending review links to its review");
    let again = b.upload("/patients/transfer-in", &[("_csrf", &token)], ("bundle", file.as_bytes())).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("already been imported"));
    let record = b.get(&format!("/patients/{}", nhs.as_str())).await;
    assert_eq!(record.status, StatusCode::OK);
    assert!(record.body.contains("Ruth"));
    assert!(record.body.contains("transferred in from B82001"), "staff see where an entry came from");

    // The API: 422 with every problem, 201 with what was imported, 403 for reception.
    let other = caldicott_core::NhsNumber::from_first_nine(999_200_002).unwrap();
    let mut bad = fixtures::transfer_bundle(other.as_str(), "1990-02-01", "A", "B", "B82001", "M");
    bad["entry"][4]["resource"].as_object_mut().unwrap().remove("period");
    bad["entry"][0]["resource"].as_object_mut().unwrap().remove("birthDate");
    let r = post_json(&app, "/api/v1/transfer-in", &tp.clinician_token, &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["problems"].as_array().unwrap().len(), 2, "{}", r.body);
    let good = fixtures::transfer_bundle(other.as_str(), "1990-02-01", "A", "B", "B82001", "M");
    let r = post_json(&app, "/api/v1/transfer-in", &tp.receptionist_token, &good).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post_json(&app, "/api/v1/transfer-in", &tp.manager_token, &good).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["pending_review"], 2);
    let list = get(&app, &format!("/api/v1/patients/{}/transfers", other.as_str()), Some(&tp.clinician_token)).await;
    assert_eq!(list.json().as_array().unwrap().len(), 1);
    assert_eq!(list.json()[0]["from_ods"], "B82001");
    // Another practice reaches none of it.
    let elsewhere = fixtures::practice(&app).await.unwrap();
    let r =
        get(&app, &format!("/api/v1/patients/{}/transfers", other.as_str()), Some(&elsewhere.clinician_token)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let at = html.find(start).unwrap_or_else(|| panic!("{start} not in page")) + start.len();
    html[at..].split(end).next().unwrap()
}

async fn a_patient_signs_up_with_the_letter_staff_print(t: &TestStore) {
    // R21, R22: credentials issued after an identity check, used once
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let recent = caldicott_app::fixtures::now() - chrono::Duration::days(2);
    let mut entries = vec![consultation(&pat, recent, "VISIBLE-MARK seen online")];
    entries.extend(withheld_entries(&pat, recent, "SECRET"));
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &entries).await.unwrap();
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "reception").await;
    let record = staff.get(&format!("/patients/{}", pat.nhs_number.as_str())).await;
    assert!(record.body.contains("Print sign-up letter"));
    let token = csrf(&record.body);
    let letter = staff
        .post(&format!("/patients/{}/linkage", pat.nhs_number.as_str()), &[("_csrf", &token), ("identity", "P9")])
        .await;
    assert_eq!(letter.status, StatusCode::OK, "{}", letter.body);
    let account_id = between(&letter.body, "id=\"letter-account-id\">", "<").to_owned();
    let key = between(&letter.body, "id=\"letter-linkage-key\">", "<").to_owned();

    let mut p = Browser::new(&app);
    assert_eq!(location(&p.get("/my").await), "/my/sign-in");
    let page = p.get("/my/sign-up").await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page.body);
    let ods = tp.practice.ods_code.as_str().to_owned();
    let mut form = vec![
        ("_csrf", token.as_str()),
        ("ods_code", ods.as_str()),
        ("account_id", account_id.as_str()),
        ("linkage_key", key.as_str()),
        ("family", "Wrongname"),
        ("birth_day", "17"),
        ("birth_month", "5"),
        ("birth_year", "1980"),
        ("username", "test.patient"),
        ("password", "a patient password"),
    ];
    let r = p.post("/my/sign-up", &form).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("do not match our records"));
    assert!(!r.body.contains("a patient password"), "the password is never sent back");
    form[4] = ("family", "Patient");
    let r = p.post("/my/sign-up", &form).await;
    assert_eq!(location(&r), "/my", "{}", r.body);
    let home = p.get("/my").await;
    assert!(home.body.contains("Hello Test"));
    let rec = p.get("/my/record").await;
    assert_eq!(rec.status, StatusCode::OK);
    assert!(rec.body.contains("VISIBLE-MARK"));
    assert!(!rec.body.contains("SECRET"), "nothing withheld reaches the patient's page");
    let act = p.get("/my/activity").await;
    assert!(act.body.contains("Viewed your record online"));
    // Sign out, and sign in again with the username.
    let token = csrf(&home.body);
    // A patient's form without its CSRF token is refused, and nothing is done, on the patient
    // pages' own error page (not the staff portal's).
    let stale = p.post("/my/sign-out", &[("_csrf", "not-the-token")]).await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    assert!(stale.body.contains("This form has expired"));
    assert!(stale.body.contains("Your GP services"), "the patient pages' own error page");
    assert_eq!(p.get("/my/record").await.status, StatusCode::OK, "still signed in");
    assert_eq!(location(&p.post("/my/sign-out", &[("_csrf", &token)]).await), "/my/sign-in");
    assert_eq!(location(&p.get("/my/record").await), "/my/sign-in");
    let page = p.get("/my/sign-in").await;
    let token = csrf(&page.body);
    let bad = p
        .post("/my/sign-in", &[("_csrf", &token), ("ods", &ods), ("username", "test.patient"), ("password", "nope")])
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("There is a problem"));
    let ok = p
        .post(
            "/my/sign-in",
            &[("_csrf", &token), ("ods", &ods), ("username", "test.patient"), ("password", "a patient password")],
        )
        .await;
    assert_eq!(location(&ok), "/my");
    // The same letter does not make a second account.
    let mut q = Browser::new(&app);
    let token = csrf(&q.get("/my/sign-up").await.body);
    form[0] = ("_csrf", token.as_str());
    form[8] = ("username", "someone.else");
    assert_eq!(q.post("/my/sign-up", &form).await.status, StatusCode::BAD_REQUEST);
}

async fn patient_routes_reach_only_the_callers_own_data(t: &TestStore) {
    // T3, T6: every patient-facing route for every kind of caller
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let a = adult(&app, tp.practice.id).await.unwrap();
    let b = adult(&app, tp.practice.id).await.unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let child = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - chrono::Duration::days(365 * 7));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let recent = caldicott_app::fixtures::now() - chrono::Duration::days(5);
    let granted = caldicott_app::fixtures::today() - chrono::Duration::days(30);
    let link = fixtures::proxy_link(
        &app,
        tp.practice.id,
        &child,
        &parent,
        caldicott_core::access::AccessLevel::Summary,
        granted,
    )
    .await
    .unwrap();
    let suspended_parent = adult(&app, tp.practice.id).await.unwrap();
    let mut suspended = fixtures::proxy_link(
        &app,
        tp.practice.id,
        &child,
        &suspended_parent,
        caldicott_core::access::AccessLevel::Full,
        granted,
    )
    .await
    .unwrap();
    suspended.status = caldicott_core::access::ProxyStatus::Suspended { since: granted, reason: "review".into() };
    suspended.id = caldicott_core::ids::ProxyLinkId::from_uuid(caldicott_app::new_id());
    app.store_for_tests()
        .create_proxy_link(tp.practice.id, &suspended, &fixtures::audit(Action::ProxyLinkCreate, Some(child.id)))
        .await
        .unwrap();
    let mut child_med = consultation(&child, recent, "");
    child_med.body = caldicott_core::entry::EntryBody::Medication {
        drug: "CHILD-MED".into(),
        dosage: "5ml".into(),
        quantity: "100ml".into(),
        course: caldicott_core::entry::MedicationCourse::Acute,
    };
    // An entry of A's hidden online by staff: no page, printout or count may show it.
    let mut hidden = consultation(&a, recent, "A-HIDDEN third party");
    hidden.visibility = caldicott_core::entry::OnlineVisibility::Hidden(
        caldicott_core::entry::Redaction::new(caldicott_core::entry::HiddenReason::ThirdParty, "test", "Dr", recent)
            .unwrap(),
    );
    let entries = [
        consultation(&a, recent, "A-MARK"),
        hidden,
        consultation(&b, recent, "B-MARK"),
        consultation(&child, recent, "CHILD-CONSULT beyond a summary proxy"),
        child_med,
    ];
    for e in entries {
        fixtures::add_entries(&app, tp.practice.id, Some(e.patient), std::slice::from_ref(&e)).await.unwrap();
    }
    let mut browsers = Vec::new();
    for (who, p) in [("a", &a), ("b", &b), ("parent", &parent), ("suspended", &suspended_parent)] {
        let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, p, "P9").await.unwrap();
        let mut br = Browser::new(&app);
        br.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
        browsers.push((who, br));
    }
    let mut nobody = Browser::new(&app);
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "clinician").await;
    let routes = [
        "/my".to_owned(),
        "/my/record".to_owned(),
        format!("/my/record?for={}", link.id),
        format!("/my/record?for={}", suspended.id),
        "/my/record?for=not-a-link".to_owned(),
        "/my/activity".to_owned(),
        // Issue 23: the printout of the whole record, a new way out for entries.
        "/my/record/print".to_owned(),
        format!("/my/record/print?for={}", link.id),
        format!("/my/record/print?for={}", suspended.id),
        "/my/record/print?for=not-a-link".to_owned(),
        "/my/record/print?section=consultations".to_owned(),
    ];
    for route in &routes {
        for b in [&mut nobody, &mut staff] {
            let r = b.get(route).await;
            assert_eq!(location(&r), "/my/sign-in", "{route}: a staff session or none is not a patient session");
        }
    }
    let marks = ["A-MARK", "A-HIDDEN", "B-MARK", "CHILD-CONSULT", "CHILD-MED"];
    for (who, br) in browsers.iter_mut() {
        for route in &routes {
            let r = br.get(route).await;
            let own_link = (*who == "parent" && route.contains(&link.id.to_string()))
                || (*who == "suspended" && route.contains(&suspended.id.to_string()));
            let own_record = route.starts_with("/my/record") && !route.contains("for=");
            let expected_marks: &[&str] = match *who {
                "a" if own_record => &["A-MARK"],
                "b" if own_record => &["B-MARK"],
                "parent" if route.contains(&link.id.to_string()) && !route.contains("section=") => &["CHILD-MED"],
                _ => &[],
            };
            if route.contains("for=") && !own_link {
                assert_eq!(r.status, StatusCode::NOT_FOUND, "{who} {route}");
            } else {
                assert_eq!(r.status, StatusCode::OK, "{who} {route}: {}", r.body);
            }
            for m in marks {
                assert_eq!(r.body.contains(m), expected_marks.contains(&m), "{who} {route}: {m}");
            }
        }
    }
    // The printout counts only what it shows, and says whose record it is and where from.
    let (_, a_browser) = &mut browsers[0];
    let printout = a_browser.get("/my/record/print").await;
    assert!(printout.body.contains("(1 entry)"), "the hidden entry is not counted: {}", printout.body);
    assert!(printout.body.contains(&a.nhs_number.to_string()) && printout.body.contains("Test Surgery"));
    let (_, parent_browser) = &mut browsers[2];
    let printout = parent_browser.get(&format!("/my/record/print?for={}", link.id)).await;
    assert!(printout.body.contains("(1 entry)"), "beyond the summary is not counted: {}", printout.body);
    assert!(printout.body.contains(&child.nhs_number.to_string()));
    let home = parent_browser.get("/my").await;
    assert!(home.body.contains(&format!("/my/record?for={}", link.id)), "the parent picks whose services to use");
    let (_, suspended_browser) = &mut browsers[3];
    let home = suspended_browser.get("/my").await;
    assert!(home.body.contains("Suspended by the practice"));
}

/// The numbers on a chart's value axis (its tick labels), in order.
fn axis_numbers(svg_page: &str) -> Vec<f64> {
    svg_page
        .split("<text class=\"app-trend__tick\"")
        .skip(1)
        .filter(|t| t.contains("text-anchor=\"end\""))
        .filter_map(|t| t.split_once('>').and_then(|(_, rest)| rest.split_once('<')).map(|(n, _)| n.to_owned()))
        .filter_map(|n| n.parse().ok())
        .collect()
}

async fn results_charts_are_drawn_only_from_what_the_viewer_is_shown(t: &TestStore) {
    // R8, T1, issue 26: a hidden result is absent from the chart and its scale, not a gap; the
    // table says every shown reading in words; staff see each reading marked.
    use caldicott_core::entry::{EntryBody, Filing, HiddenReason, OnlineVisibility, Redaction};
    use caldicott_core::snomed::{Coding, ConceptId};
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let a = adult(&app, tp.practice.id).await.unwrap();
    let b = adult(&app, tp.practice.id).await.unwrap();
    let hba1c = |p: &caldicott_core::patient::Patient, days: i64, value: &str| {
        let mut e = consultation(p, caldicott_app::fixtures::now() - chrono::Duration::days(days), "");
        e.body = EntryBody::TestResult {
            test: "HbA1c level".into(),
            value: value.into(),
            unit: "mmol/mol".into(),
            range: "20-41".into(),
            abnormal: value != "39",
            filing: Filing::Filed,
        };
        e.code = Some(Coding { concept: ConceptId::parse("1019431000000105").unwrap(), term: "HbA1c level".into() });
        e
    };
    // A value with a decimal point: it cannot appear by chance in a token, an NHS number or a
    // chart coordinate (the chart is 480 wide), so finding it means the hidden reading leaked.
    let mut secret = hba1c(&a, 90, "987.6");
    secret.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::PotentiallyHarmful, "discuss first", "Dr", caldicott_app::fixtures::now())
            .unwrap(),
    );
    let entries = [hba1c(&a, 400, "58"), secret.clone(), hba1c(&a, 30, "39"), hba1c(&b, 30, "71")];
    fixtures::add_entries(&app, tp.practice.id, Some(a.id), &entries[..3]).await.unwrap();
    fixtures::add_entries(&app, tp.practice.id, Some(b.id), &entries[3..]).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &a, "P9").await.unwrap();
    let mut patient = Browser::new(&app);
    patient.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);

    let list = patient.get("/my/results").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("href=\"/my/results/hba1c\"") && list.body.contains("2 readings"), "{}", list.body);
    let page = patient.get("/my/results/hba1c").await;
    assert_eq!(page.status, StatusCode::OK);
    for leak in ["987.6", &secret.id.to_string(), "71 mmol/mol"] {
        assert!(!page.body.contains(leak), "{leak} reached the patient's chart page");
        assert!(!list.body.contains(leak), "{leak} reached the patient's results list");
    }
    // The scale is made from 58 and 39 and the range 20-41: nothing near 987.
    let axis = axis_numbers(&page.body);
    assert!(!axis.is_empty(), "the chart has a value axis: {}", page.body);
    assert!(axis.iter().all(|v| *v <= 100.0), "the hidden value set the scale: {axis:?}");
    assert!(axis.first().is_some_and(|v| *v <= 20.0) && axis.last().is_some_and(|v| *v >= 58.0), "{axis:?}");
    // The chart is an image with a name and a description, and the table says each reading in words.
    assert!(
        page.body.contains("role=\"img\"")
            && page.body.contains("aria-labelledby=\"chart-hba1c-title chart-hba1c-desc\"")
    );
    assert!(page.body.contains("2 readings from"), "{}", page.body);
    assert!(
        page.body.contains("58 mmol/mol") && page.body.contains("Above range") && page.body.contains("Within range")
    );
    assert_eq!(patient.get("/my/results/weight").await.status, StatusCode::NOT_FOUND);
    assert_eq!(patient.get("/my/results/hba1c?for=not-a-link").await.status, StatusCode::NOT_FOUND);

    // Staff see every reading, the hidden one marked as not shown online, with the reason.
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "clinician").await;
    let page = staff.get(&format!("/patients/{}/results/hba1c", a.nhs_number.as_str())).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("987.6 mmol/mol") && page.body.contains("Not shown:"), "{}", page.body);
    assert!(axis_numbers(&page.body).iter().any(|v| *v >= 987.0), "staff's chart draws every reading");
    let record = staff.get(&format!("/patients/{}", a.nhs_number.as_str())).await;
    assert!(record.body.contains(&format!("/patients/{}/results", a.nhs_number.as_str())));
    // Signed out, or signed in as staff, the patient's pages are not reached.
    let mut nobody = Browser::new(&app);
    assert_eq!(location(&nobody.get("/my/results/hba1c").await), "/my/sign-in");
    assert_eq!(location(&staff.get("/my/results").await), "/my/sign-in");
    assert_eq!(location(&nobody.get(&format!("/patients/{}/results", a.nhs_number.as_str())).await), "/sign-in");
}

async fn online_capacity_is_kept_and_reported_through_the_pages(t: &TestStore) {
    // Issue 26: reception books a patient who phoned into a slot, changes which slots are
    // offered online and records who did not come; the practice manager reads the weekly
    // report as a page and CSV, the ICB analyst the practice totals. Counts only: no patient
    // reaches a report. Bad input is named and changes nothing.
    use caldicott_core::appointments::*;
    use caldicott_core::ids::*;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let reception_who = caldicott_app::auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    // A clinic three days ahead with half its slots online.
    let day = caldicott_app::fixtures::today() + chrono::Duration::days(3);
    let mut reception = Browser::new(&app);
    sign_in(&mut reception, tp.practice.ods_code.as_str(), "reception").await;
    let book = reception.get("/appointments").await;
    let token = csrf(&book.body);
    let clinic = |share: &'static str| {
        vec![
            ("_csrf", token.clone()),
            ("clinician", tp.clinician.staff.to_string()),
            ("day", day.format("%-d").to_string()),
            ("month", day.format("%-m").to_string()),
            ("year", day.format("%Y").to_string()),
            ("start", "09:00".to_owned()),
            ("end", "10:00".to_owned()),
            ("slot_minutes", "15".to_owned()),
            ("slot_type", "gp_face_to_face".to_owned()),
            ("location", "Room 1".to_owned()),
            ("online_share", share.to_owned()),
        ]
    };
    let as_refs = |f: &[(&'static str, String)]| f.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let bad = as_refs(&clinic("half"));
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = reception.post("/appointments/clinics", &bad).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("a whole number from 0 to 100"), "{}", refused.body);
    let good = as_refs(&clinic("50"));
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let added = reception.post("/appointments/clinics", &good).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let slots: Vec<Slot> =
        app.appointment_book(&reception_who, day, 1).await.unwrap().into_iter().map(|l| l.slot).collect();
    assert_eq!(slots.len(), 4, "one clinic, not two: the refused form planned nothing");
    assert_eq!(slots.iter().filter(|s| s.online_bookable).count(), 2);
    let offline = slots.iter().find(|s| !s.online_bookable).unwrap();

    // Reception books the patient who phoned into a slot not offered online.
    let page = reception.get(&format!("/appointments/slots/{}/book", offline.id)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let url = format!("/appointments/slots/{}/book", offline.id);
    let wrong = reception.post(&url, &[("_csrf", &token), ("nhs_number", "12345")]).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("Enter a valid 10-digit NHS number") && wrong.body.contains("value=\"12345\""));
    // First the patient the number names, to check it is the person on the phone: nothing booked yet.
    let check = reception.post(&url, &[("_csrf", &token), ("nhs_number", pat.nhs_number.as_str())]).await;
    assert_eq!(check.status, StatusCode::OK, "{}", check.body);
    let named = format!("{}, {}", pat.name.family.to_uppercase(), pat.name.given);
    assert!(check.body.contains("Is this the patient?") && check.body.contains(&named), "{}", check.body);
    assert!(check.body.contains(&pat.date_of_birth.format("%-d %B %Y").to_string()));
    assert!(app.slot_for_staff(&reception_who, offline.id).await.unwrap().1.is_none(), "not booked before the check");
    let booked =
        reception.post(&url, &[("_csrf", &token), ("nhs_number", pat.nhs_number.as_str()), ("confirm", "yes")]).await;
    assert_eq!(booked.status, StatusCode::SEE_OTHER, "{}", booked.body);
    let week = reception.get(location(&booked)).await;
    assert!(
        week.body.contains("Appointment booked.")
            && week.body.contains(&format!("Booked by {} at the practice", reception_who.name))
    );
    assert!(week.body.contains(&format!("{}, {}", pat.name.family.to_uppercase(), pat.name.given)));
    let again = reception.get(&url).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "a booked slot is not offered for booking");
    // The practice stops offering an online slot online.
    let online = slots.iter().find(|s| s.online_bookable).unwrap();
    let stop = reception
        .post(&format!("/appointments/slots/{}/online", online.id), &[("_csrf", &token), ("online", "no")])
        .await;
    assert_eq!(stop.status, StatusCode::SEE_OTHER);
    assert!(!app.slot_for_staff(&reception_who, online.id).await.unwrap().0.online_bookable);
    let upcoming = app.slot_for_staff(&reception_who, offline.id).await.unwrap().1.unwrap();
    let early = reception
        .post(
            &format!("/appointments/{}/attendance", upcoming.id),
            &[("_csrf", &token), ("attendance", "did_not_attend")],
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "not before it has started");

    // Yesterday's clinic, booked online by the patient: reception records that they did not come.
    let yesterday = caldicott_app::fixtures::today() - chrono::Duration::days(1);
    let past = Clinic {
        id: ClinicId::from_uuid(caldicott_app::new_id()),
        clinician: tp.clinician.staff,
        clinician_name: tp.clinician.name.clone(),
        date: yesterday,
        start: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
        end: chrono::NaiveTime::from_hms_opt(9, 15, 0).unwrap(),
        slot_minutes: 15,
        slot_type: SlotType::GpFaceToFace,
        online_share: 100,
        others_bookable: false,
        others_bookable_by: Default::default(),
        location: "Room 1".into(),
    };
    let past_slots = past.slots(|| SlotId::from_uuid(caldicott_app::new_id())).unwrap();
    let audit = fixtures::audit(Action::ClinicCreate, None);
    app.seeding().plan_clinic(tp.practice.id, &past, &past_slots, &audit).await.unwrap();
    let missed = Appointment::new(
        AppointmentId::from_uuid(caldicott_app::new_id()),
        past_slots[0].id,
        pat.id,
        past_slots[0].starts_at - chrono::Duration::days(2),
        "the patient, online".into(),
        BookingChannel::Online,
    );
    app.seeding().book(tp.practice.id, &missed, &fixtures::audit(Action::AppointmentBook, Some(pat.id))).await.unwrap();
    let path = format!("/appointments/{}/attendance", missed.id);
    let nonsense = reception.post(&path, &[("_csrf", &token), ("attendance", "late")]).await;
    assert_eq!(nonsense.status, StatusCode::BAD_REQUEST);
    let dna = reception.post(&path, &[("_csrf", &token), ("attendance", "did_not_attend")]).await;
    assert_eq!(dna.status, StatusCode::SEE_OTHER, "{}", dna.body);
    let yesterday_page = reception.get(location(&dna)).await;
    assert!(yesterday_page.body.contains("Did not attend</strong>"), "{}", yesterday_page.body);
    assert!(yesterday_page.body.contains("name=\"attendance\" value=\"attended\""), "it can be corrected");
    assert_eq!(reception.get("/reports/appointments").await.status, StatusCode::FORBIDDEN);

    // The practice manager's report, for the weeks of both clinics.
    let mut manager = Browser::new(&app);
    sign_in(&mut manager, tp.practice.ods_code.as_str(), "manager").await;
    let from = caldicott_core::capacity::monday_of(yesterday);
    let query = format!("from={from}&weeks=2");
    let report = manager.get(&format!("/reports/appointments?{query}")).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert!(report.body.contains("Online appointment capacity") && report.body.contains(&tp.clinician.name));
    assert!(
        report
            .body
            .contains("Booked online</dt><dd class=\"nhsuk-summary-list__value\">1, of which 1 not attended (100%)"),
        "{}",
        report.body
    );
    assert!(report
        .body
        .contains("Booked by the practice</dt><dd class=\"nhsuk-summary-list__value\">1, of which 0 not attended"));
    let file = manager.get(&format!("/reports/appointments.csv?{query}")).await;
    assert_eq!(file.status, StatusCode::OK);
    assert!(file.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    assert!(file.headers[header::CONTENT_DISPOSITION].to_str().unwrap().contains("appointment-capacity-"));
    let rows: Vec<&str> = file.body.lines().collect();
    assert!(rows[0].starts_with("week_starting,clinician,appointment_type,slots_offered,offered_online"));
    let counted: u64 = rows[1..].iter().map(|r| r.split(',').nth(3).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(counted, 5, "four slots ahead and one yesterday: {}", file.body);
    for r in [&report.body, &file.body] {
        // As the appointment book names the patient ("PATIENT, Test").
        let named = format!("{}, {}", pat.name.family.to_uppercase(), pat.name.given);
        assert!(!r.contains(pat.nhs_number.as_str()) && !r.contains(&named), "counts only");
    }
    // The form's day, month and year boxes choose the same weeks; an impossible date is named.
    let boxes = format!(
        "/reports/appointments?from_day={}&from_month={}&from_year={}&weeks=2",
        yesterday.format("%-d"),
        yesterday.format("%-m"),
        yesterday.format("%Y")
    );
    let by_boxes = manager.get(&boxes).await;
    assert_eq!(by_boxes.status, StatusCode::OK);
    assert!(by_boxes
        .body
        .contains("Booked online</dt><dd class=\"nhsuk-summary-list__value\">1, of which 1 not attended"));
    let impossible = manager.get("/reports/appointments?from_day=31&from_month=2&from_year=2026").await;
    assert_eq!(impossible.status, StatusCode::BAD_REQUEST);
    assert!(impossible.body.contains("must be a real date"), "{}", impossible.body);
    let wrong_weeks = manager.get("/reports/appointments?weeks=99").await;
    assert_eq!(wrong_weeks.status, StatusCode::BAD_REQUEST);
    assert!(wrong_weeks.body.contains("from 1 to 26"), "{}", wrong_weeks.body);
    assert_eq!(manager.get("/icb/appointments").await.status, StatusCode::FORBIDDEN);

    // The ICB analyst sees the practice's totals and nothing about a clinician or patient.
    let mut analyst = Browser::new(&app);
    sign_in(&mut analyst, tp.practice.ods_code.as_str(), "analyst").await;
    let icb = analyst.get(&format!("/icb/appointments?{query}")).await;
    assert_eq!(icb.status, StatusCode::OK, "{}", icb.body);
    assert!(icb.body.contains(tp.practice.ods_code.as_str()) && !icb.body.contains(&tp.clinician.name));
    let icb_file = analyst.get(&format!("/icb/appointments.csv?{query}")).await;
    let ours = icb_file.body.lines().find(|l| l.starts_with(tp.practice.ods_code.as_str())).unwrap();
    let cells: Vec<&str> = ours.split(',').collect();
    assert_eq!(&cells[4..9], ["5", "2", "40", "1", "1"], "{ours}");
}

async fn the_appointment_book_and_capacity_report_answer_through_the_json_api(t: &TestStore) {
    // Issue 26 for practice tools: the same use cases as the pages, with the same permissions.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let day = caldicott_app::fixtures::today() + chrono::Duration::days(4);
    let form = fixtures::clinic_form(&tp, day, ("09:00", "10:00"), 15, "0");
    app.create_clinic(&tp.clinician, &form).await.unwrap().unwrap();
    let reception = tp.receptionist_token.as_str();
    let book = get(&app, &format!("/api/v1/appointments?from={day}&days=1"), Some(reception)).await;
    assert_eq!(book.status, StatusCode::OK, "{}", book.body);
    let v: Value = serde_json::from_str(&book.body).unwrap();
    let slots = v["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 4);
    assert!(slots.iter().all(|s| s["slot"]["online_bookable"] == false && s["appointment"].is_null()));
    let slot = slots[0]["slot"]["id"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, "/api/v1/appointments?days=15", Some(reception)).await.status, StatusCode::BAD_REQUEST);

    let bad = post_json(
        &app,
        "/api/v1/appointments",
        reception,
        &serde_json::json!({ "slot": slot, "nhs_number": "9434765870" }),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body.contains("No patient registered at this practice"));
    let body = serde_json::json!({ "slot": slot, "nhs_number": pat.nhs_number.as_str() });
    let made = post_json(&app, "/api/v1/appointments", reception, &body).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let made: Value = serde_json::from_str(&made.body).unwrap();
    assert_eq!(
        (made["appointment"]["channel"].as_str(), made["patient"]["nhs_number"].as_str()),
        (Some("practice"), Some(pat.nhs_number.as_str()))
    );
    assert_eq!(post_json(&app, "/api/v1/appointments", reception, &body).await.status, StatusCode::CONFLICT);
    let id = made["appointment"]["id"].as_str().unwrap();
    let early = post_json(
        &app,
        &format!("/api/v1/appointments/{id}/attendance"),
        reception,
        &serde_json::json!({ "attendance": "attended" }),
    )
    .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "not before it starts");
    let wrong = post_json(
        &app,
        &format!("/api/v1/appointments/{id}/attendance"),
        reception,
        &serde_json::json!({ "attendance": "dna" }),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let other = slots[1]["slot"]["id"].as_str().unwrap();
    let not_bool =
        post_json(&app, &format!("/api/v1/slots/{other}/online"), reception, &serde_json::json!({ "online": "yes" }))
            .await;
    assert_eq!(not_bool.status, StatusCode::BAD_REQUEST);
    let on =
        post_json(&app, &format!("/api/v1/slots/{other}/online"), reception, &serde_json::json!({ "online": true }))
            .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert!(on.body.contains("\"online_bookable\":true"));

    let week = caldicott_core::capacity::monday_of(day);
    let path = format!("/api/v1/reports/appointments?from={week}&weeks=1");
    assert_eq!(get(&app, &path, Some(reception)).await.status, StatusCode::FORBIDDEN);
    let report = get(&app, &path, Some(&tp.manager_token)).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    let r: Value = serde_json::from_str(&report.body).unwrap();
    assert_eq!((r["total"]["offered"].as_u64(), r["total"]["offered_online"].as_u64()), (Some(4), Some(1)));
    assert_eq!(r["total"]["booked_by_practice"].as_u64(), Some(1));
    assert!(!report.body.contains(pat.nhs_number.as_str()), "counts only");
    assert_eq!(
        get(&app, "/api/v1/reports/appointments?weeks=0", Some(&tp.manager_token)).await.status,
        StatusCode::BAD_REQUEST
    );
    let icb = get(&app, &format!("/api/v1/icb/appointments?from={week}&weeks=1"), Some(&tp.analyst_token)).await;
    assert_eq!(icb.status, StatusCode::OK);
    let icb: Value = serde_json::from_str(&icb.body).unwrap();
    let ours =
        icb["practices"].as_array().unwrap().iter().find(|p| p["ods_code"] == tp.practice.ods_code.as_str()).unwrap();
    assert_eq!(ours["counts"], r["total"]);
}

async fn care_plans_are_written_read_and_added_to_over_http(t: &TestStore) {
    // Issue 26, R8, R11: a clinician writes a plan; a part hidden online never reaches the
    // patient's page; the patient adds a goal and a home reading, marked as theirs; bad input is
    // named and loses nothing; another patient's plan is not found.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let a = adult(&app, tp.practice.id).await.unwrap();
    let b = adult(&app, tp.practice.id).await.unwrap();
    let nhs = a.nhs_number.as_str().to_owned();
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "clinician").await;
    let form = staff.get(&format!("/patients/{nhs}/care-plans/new")).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let token = csrf(&form.body);
    let bad = staff.post(&format!("/patients/{nhs}/care-plans"), &[("_csrf", &token), ("condition", "")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Enter the condition the plan is for") && bad.body.contains("Error: "));
    let saved = staff
        .post(
            &format!("/patients/{nhs}/care-plans"),
            &[
                ("_csrf", &token),
                ("condition", "Asthma"),
                ("goals", "No night waking"),
                ("actions", "Nurse: check inhaler technique\nGP: SECRET-PART to discuss"),
                ("review_day", ""),
                ("review_month", ""),
                ("review_year", ""),
            ],
        )
        .await;
    assert_eq!(
        (saved.status, location(&saved)),
        (StatusCode::SEE_OTHER, format!("/patients/{nhs}/care-plans?saved").as_str())
    );
    let plans = app.staff_care_plans(&tp.clinician, &nhs).await.unwrap();
    let plan = plans.plans[0].plan.id;
    let secret = plans.plans[0].parts.iter().find(|(e, _)| e.body.headline().contains("SECRET-PART")).unwrap().0.id;
    let hide = caldicott_app::redaction::VisibilityChange::Hide {
        reason: caldicott_core::entry::HiddenReason::PotentiallyHarmful,
        note: "discuss first".into(),
    };
    app.change_visibility(&tp.clinician, &nhs, secret, &hide, false).await.unwrap();
    let page = staff.get(&format!("/patients/{nhs}/care-plans")).await;
    assert!(page.body.contains("SECRET-PART") && page.body.contains("Not shown online:"), "{}", page.body);
    // Without the session's token a form is refused, and nothing is written.
    let forged = staff
        .post(&format!("/patients/{nhs}/care-plans"), &[("_csrf", "forged"), ("condition", "X"), ("goals", "Y")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(app.staff_care_plans(&tp.clinician, &nhs).await.unwrap().plans.len(), 1);

    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &a, "P9").await.unwrap();
    let mut patient = Browser::new(&app);
    patient.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    let mine = patient.get("/my/care-plans").await;
    assert_eq!(mine.status, StatusCode::OK);
    assert!(mine.body.contains("Care plan: Asthma") && mine.body.contains("No night waking"));
    assert!(!mine.body.contains("SECRET-PART") && !mine.body.contains(&secret.to_string()));
    let add_form = patient.get(&format!("/my/care-plans/{plan}/add")).await;
    assert_eq!(add_form.status, StatusCode::OK);
    let token = csrf(&add_form.body);
    let bad = patient
        .post(
            &format!("/my/care-plans/{plan}/add"),
            &[("_csrf", &token), ("kind", "reading"), ("measure", "blood-pressure"), ("value", "84/132")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Check the numbers") && bad.body.contains("value=\"84/132\""), "what was typed is kept");
    let ok = patient
        .post(
            &format!("/my/care-plans/{plan}/add"),
            &[("_csrf", &token), ("kind", "goal"), ("text", "Use my preventer every day")],
        )
        .await;
    assert_eq!((ok.status, location(&ok)), (StatusCode::SEE_OTHER, "/my/care-plans?added"));
    let ok = patient
        .post(
            &format!("/my/care-plans/{plan}/add"),
            &[("_csrf", &token), ("kind", "reading"), ("measure", "weight"), ("value", "71.2")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let mine = patient.get("/my/care-plans?added").await;
    assert!(mine.body.contains("Use my preventer every day") && mine.body.contains("Added by you"), "{}", mine.body);
    let weight = patient.get("/my/results/weight").await;
    assert!(weight.body.contains("71.2 kg") && weight.body.contains("Home reading"), "{}", weight.body);
    let forged = patient
        .post(&format!("/my/care-plans/{plan}/add"), &[("_csrf", "forged"), ("kind", "goal"), ("text", "x")])
        .await;
    assert_ne!(forged.status, StatusCode::SEE_OTHER);
    // Another patient reaches neither the plan nor its form.
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &b, "P9").await.unwrap();
    let mut other = Browser::new(&app);
    other.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    assert_eq!(other.get(&format!("/my/care-plans/{plan}/add")).await.status, StatusCode::NOT_FOUND);
    assert!(!other.get("/my/care-plans").await.body.contains("Asthma"));
    assert_eq!(
        app.staff_care_plans(&tp.clinician, &nhs).await.unwrap().plans[0].parts.len(),
        4,
        "three parts by the clinician, one by the patient (the reading is a result), and nothing else"
    );
}

/// A repeat template for `p` whose drug name is `drug`.
fn repeat_template(p: &caldicott_core::patient::Patient, drug: &str) -> caldicott_core::entry::Entry {
    let mut e = consultation(p, caldicott_app::fixtures::now() - chrono::Duration::days(20), "");
    e.body = caldicott_core::entry::EntryBody::Medication {
        drug: drug.into(),
        dosage: "One daily".into(),
        quantity: "28".into(),
        course: caldicott_core::entry::MedicationCourse::RepeatTemplate,
    };
    e
}

async fn patient_services_reach_only_whom_the_caller_acts_for(t: &TestStore) {
    // T3, T6, R15, R19: appointments, prescriptions and messages for each kind of caller
    use caldicott_core::access::{AccessLevel, ProxyStatus};
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let a = adult(&app, tp.practice.id).await.unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let suspended_parent = adult(&app, tp.practice.id).await.unwrap();
    let child = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - chrono::Duration::days(365 * 7));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let today = caldicott_app::fixtures::today();
    let link = fixtures::proxy_link(&app, tp.practice.id, &child, &parent, AccessLevel::Summary, today).await.unwrap();
    let mut suspended =
        fixtures::proxy_link(&app, tp.practice.id, &child, &suspended_parent, AccessLevel::Summary, today)
            .await
            .unwrap();
    suspended.id = caldicott_core::ids::ProxyLinkId::from_uuid(caldicott_app::new_id());
    suspended.status = ProxyStatus::Suspended { since: today, reason: "review".into() };
    app.store_for_tests()
        .create_proxy_link(tp.practice.id, &suspended, &fixtures::audit(Action::ProxyLinkCreate, Some(child.id)))
        .await
        .unwrap();
    for e in [repeat_template(&a, "A-REPEAT"), repeat_template(&child, "CHILD-REPEAT")] {
        fixtures::add_entries(&app, tp.practice.id, Some(e.patient), std::slice::from_ref(&e)).await.unwrap();
    }
    let mut callers = Vec::new();
    for (who, p) in [("a", &a), ("parent", &parent), ("suspended", &suspended_parent)] {
        let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, p, "P9").await.unwrap();
        let mut br = Browser::new(&app);
        br.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
        callers.push((who, br));
    }
    let (l, s) = (link.id.to_string(), suspended.id.to_string());
    let pages = ["/my/appointments", "/my/appointments/book", "/my/prescriptions"];
    for (who, br) in callers.iter_mut() {
        for page in pages {
            for target in [None, Some(&l), Some(&s)] {
                let uri = match target {
                    None => page.to_owned(),
                    Some(id) => format!("{page}?for={id}"),
                };
                let r = br.get(&uri).await;
                let expected = match (*who, target) {
                    (_, None) => StatusCode::OK,
                    ("parent", Some(id)) if *id == l => StatusCode::OK,
                    ("suspended", Some(id)) if *id == s => StatusCode::FORBIDDEN,
                    _ => StatusCode::NOT_FOUND,
                };
                assert_eq!(r.status, expected, "{who} {uri}");
                let shows = |m: &str| r.body.contains(m);
                if page == "/my/prescriptions" {
                    assert_eq!(shows("A-REPEAT"), *who == "a" && target.is_none(), "{who} {uri}");
                    assert_eq!(shows("CHILD-REPEAT"), *who == "parent" && target == Some(&l), "{who} {uri}");
                }
            }
        }
        // Messages are the caller's own: a proxy cannot send one for the person they act for.
        let r = br.get("/my/requests?for=anything").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.body.contains("CHILD"));
    }
}

async fn a_patient_books_an_appointment_and_orders_a_repeat_through_the_pages(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (t1, t2) = (repeat_template(&pat, "Amlodipine 5mg"), repeat_template(&pat, "Atorvastatin 20mg"));
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[t1.clone(), t2.clone()]).await.unwrap();
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "reception").await;
    let page = staff.get("/appointments").await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page.body);
    let day = caldicott_app::fixtures::today() + chrono::Duration::days(4);
    let (d, m, y) = (day.format("%d").to_string(), day.format("%m").to_string(), day.format("%Y").to_string());
    let clinician = tp.clinician.staff.to_string();
    let mut form = vec![
        ("_csrf", token.as_str()),
        ("clinician", clinician.as_str()),
        ("day", d.as_str()),
        ("month", m.as_str()),
        ("year", y.as_str()),
        ("start", "10:00"),
        ("end", "09:00"),
        ("slot_minutes", "15"),
        ("slot_type", "gp_face_to_face"),
        ("location", "Room 2"),
        ("online_share", "100"),
    ];
    let bad = staff.post("/appointments/clinics", &form).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("The session must end after it starts"));
    form[6] = ("end", "11:00");
    let ok = staff.post("/appointments/clinics", &form).await;
    assert!(location(&ok).starts_with("/appointments?from="), "{}", ok.body);
    let book = staff.get(location(&ok)).await;
    assert!(book.body.contains("Clinic added with 4 slots."));
    assert!(book.body.contains("Other care settings can book these slots"), "the form offers it");
    assert!(!book.body.contains("nhsuk-tag--blue\">Other care settings"), "not chosen for this clinic");
    // A clinic kept for NHS 111 and urgent care: not offered to patients online, tagged so.
    let mut kept = form.to_vec();
    kept[5] = ("start", "13:00");
    kept[6] = ("end", "13:30");
    kept[10] = ("online_share", "0");
    kept.push(("others_bookable", "yes"));
    let ok = staff.post("/appointments/clinics", &kept).await;
    let book = staff.get(location(&ok)).await;
    assert!(book.body.contains("Clinic added with 2 slots."), "{}", book.body);
    assert!(book.body.contains("nhsuk-tag--blue\">Other care settings"));
    // Kept for urgent care and one organisation (GP Connect slot availability management): a
    // code that is not an ODS code is refused at its field; then the book says whom for.
    let mut narrowed = kept.clone();
    narrowed[5] = ("start", "14:00");
    narrowed[6] = ("end", "14:15");
    narrowed.push(("others_urgent_care", "yes"));
    narrowed.push(("others_ods", "RR8; DROP"));
    let bad = staff.post("/appointments/clinics", &narrowed).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not an ODS code"), "{}", bad.body);
    assert!(bad.body.contains("value=\"RR8; DROP\""), "what was typed is kept");
    narrowed.pop();
    narrowed.push(("others_ods", "rr8"));
    // And a limit on how many of its slots they may book: a number from 1, or nothing.
    narrowed.push(("others_limit", "none"));
    let bad = staff.post("/appointments/clinics", &narrowed).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("a whole number from 1 to 500"), "{}", bad.body);
    assert!(bad.body.contains("value=\"none\""), "what was typed is kept");
    narrowed.pop();
    narrowed.push(("others_limit", "1"));
    narrowed.push(("others_release_hours", "24"));
    let ok = staff.post("/appointments/clinics", &narrowed).await;
    let book = staff.get(location(&ok)).await;
    assert!(book.body.contains("Clinic added with 1 slot."), "{}", book.body);
    assert!(book.body.contains("Only urgent care, and only ODS RR8; at most 1 slot booked by them; each offered from 24 hours before it starts"), "{}", book.body);

    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let mut p = Browser::new(&app);
    p.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    // Issue 23: one question a page, as the NHS booking pattern asks. First the kind of
    // appointment, then a day, then a time, then the patient checks what they chose.
    let page = p.get("/my/appointments/book").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("What kind of appointment do you need?"), "{}", page.body);
    assert!(!page.body.contains("name=\"slot\""), "times are not offered before a kind and a day");
    let token = csrf(&page.body);
    let unanswered = p.get("/my/appointments/book?step=kind").await;
    assert_eq!(unanswered.status, StatusCode::BAD_REQUEST);
    assert!(unanswered.body.contains("Choose the kind of appointment"));
    assert!(unanswered.body.contains("<title>Error: "), "a page with errors says so in its title");
    let kind = between(&page.body, "name=\"type\" type=\"radio\" value=\"", "\"").to_owned();
    assert_eq!(kind, "gp_face_to_face", "only the kind the practice offers online is offered");
    let days = p.get(&format!("/my/appointments/book?step=kind&type={kind}")).await;
    assert!(days.body.contains("Which day would you like?"));
    assert!(days.body.contains("4 times free"), "the day says how many times are free: {}", days.body);
    let day = between(&days.body, "name=\"day\" type=\"radio\" value=\"", "\"").to_owned();
    assert_eq!(
        day,
        caldicott_app::fixtures::today().checked_add_days(chrono::Days::new(4)).unwrap().format("%Y-%m-%d").to_string()
    );
    let times = p.get(&format!("/my/appointments/book?step=day&type={kind}&day={day}")).await;
    assert!(times.body.contains("Choose a time on"));
    assert_eq!(times.body.matches("name=\"slot\" type=\"radio\"").count(), 4, "that day's four times");
    assert!(times.body.contains(">10:00<") && times.body.contains(">10:45<"), "times in UK time");
    let slot = between(&times.body, "name=\"slot\" type=\"radio\" value=\"", "\"").to_owned();
    let no_time = p.get(&format!("/my/appointments/book?step=time&type={kind}&day={day}")).await;
    assert_eq!(no_time.status, StatusCode::BAD_REQUEST);
    assert!(no_time.body.contains("Choose a time"));
    let check = p.get(&format!("/my/appointments/book?step=time&type={kind}&day={day}&slot={slot}")).await;
    assert!(check.body.contains("Check your appointment") && check.body.contains("Room 2"), "{}", check.body);
    assert!(check.body.contains(&format!("name=\"slot\" value=\"{slot}\"")));
    let none = p.post("/my/appointments", &[("_csrf", &token), ("for", "")]).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert!(none.body.contains("Choose an appointment"));
    let booked = p.post("/my/appointments", &[("_csrf", &token), ("for", ""), ("slot", &slot)]).await;
    assert_eq!(location(&booked), "/my/appointments?done=booked");
    let mine = p.get("/my/appointments?done=booked").await;
    assert!(mine.body.contains("Your appointment is booked.") && mine.body.contains("Cancel this appointment"));
    let again = p
        .post("/my/appointments", &[("_csrf", &token), ("for", ""), ("type", &kind), ("day", &day), ("slot", &slot)])
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "a booked slot cannot be booked twice");
    assert!(again.body.contains("Choose another"));
    assert!(again.body.contains("Choose a time on"), "the patient is back at that day's times");
    assert_eq!(again.body.matches("name=\"slot\" type=\"radio\"").count(), 3, "the booked time is gone");
    let staff_view = staff.get(location(&ok)).await;
    assert!(staff_view.body.contains("Booked the patient, online"));
    // Issue 23: a cancelled appointment is no longer "Upcoming"; it is listed as cancelled.
    let mine = p.get("/my/appointments").await;
    let id = between(&mine.body, "action=\"/my/appointments/", "/cancel\"").to_owned();
    let cancelled = p.post(&format!("/my/appointments/{id}/cancel"), &[("_csrf", &token), ("for", "")]).await;
    assert_eq!(location(&cancelled), "/my/appointments?done=cancelled");
    let mine = p.get("/my/appointments").await;
    let upcoming = between(&mine.body, "<h2>Upcoming</h2>", "<h2>");
    assert!(upcoming.contains("No upcoming appointments."), "{upcoming}");
    let gone = between(&mine.body, "<h2>Cancelled</h2>", "<h2>Past</h2>");
    assert!(gone.contains("10:00") && gone.contains("Room 2"), "{gone}");

    // Two medicines at once: the form sends `items` twice.
    let page = p.get("/my/prescriptions").await;
    assert!(page.body.contains("Amlodipine 5mg") && page.body.contains("Atorvastatin 20mg"));
    let token = csrf(&page.body);
    let (i1, i2) = (t1.id.to_string(), t2.id.to_string());
    let r = p
        .post(
            "/my/prescriptions",
            &[("_csrf", &token), ("for", ""), ("items", &i1), ("items", &i2), ("note", "Thanks")],
        )
        .await;
    assert_eq!(location(&r), "/my/prescriptions?sent=1", "{}", r.body);
    let tasks = staff.get("/tasks").await;
    assert!(tasks.body.contains("Repeat prescription request"));
    let task =
        app.task_list(&tp.clinician, false).await.unwrap().into_iter().find(|(t, _)| t.patient == pat.id).unwrap().0;
    let TaskBody::Repeat { items, .. } = &task.body else { panic!("a repeat request") };
    assert_eq!(items.len(), 2);
    // Reception cannot decide; a clinician approves one and turns one down.
    let tpage = staff.get(&format!("/tasks/{}", task.id)).await;
    assert!(tpage.body.contains("A clinician records the outcome"));
    let denied = staff
        .post(
            &format!("/tasks/{}", task.id),
            &[("_csrf", &csrf(&tpage.body)), ("decision", "approve"), ("template", &i1)],
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let mut doc = Browser::new(&app);
    sign_in(&mut doc, tp.practice.ods_code.as_str(), "clinician").await;
    let tpage = doc.get(&format!("/tasks/{}", task.id)).await;
    let token = csrf(&tpage.body);
    let uri = format!("/tasks/{}", task.id);
    assert_eq!(location(&doc.post(&uri, &[("_csrf", &token), ("decision", "approve"), ("template", &i1)]).await), uri);
    let no_reason =
        doc.post(&uri, &[("_csrf", &token), ("decision", "reject"), ("template", &i2), ("reason", "")]).await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    assert!(no_reason.body.contains("Give a reason"));
    doc.post(&uri, &[("_csrf", &token), ("decision", "reject"), ("template", &i2), ("reason", "Blood test first")])
        .await;
    let page = p.get("/my/prescriptions").await;
    assert!(page.body.contains("Approved by") && page.body.contains("Blood test first"));
    assert!(!page.body.contains("Cancel this order"), "a decided order cannot be cancelled");

    // The patient orders again and changes their mind before the practice decides: cancelled.
    let token = csrf(&page.body);
    let r = p.post("/my/prescriptions", &[("_csrf", &token), ("for", ""), ("items", &i1)]).await;
    assert_eq!(location(&r), "/my/prescriptions?sent=1", "{}", r.body);
    let page = p.get("/my/prescriptions").await;
    assert_eq!(page.body.matches("Cancel this order").count(), 1, "only the undecided order");
    let order = app
        .task_list(&tp.clinician, false)
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.patient == pat.id && t.id != task.id)
        .unwrap()
        .0;
    let expired = p.post(&format!("/my/prescriptions/{}/cancel", order.id), &[("_csrf", "stale"), ("for", "")]).await;
    assert_ne!(expired.status, StatusCode::SEE_OTHER, "a form without its token changes nothing");
    let r =
        p.post(&format!("/my/prescriptions/{}/cancel", order.id), &[("_csrf", &csrf(&page.body)), ("for", "")]).await;
    assert_eq!(location(&r), "/my/prescriptions?cancelled=1", "{}", r.body);
    let page = p.get("/my/prescriptions?cancelled=1").await;
    assert!(page.body.contains("Your order has been cancelled"));
    assert!(page.body.contains("Cancelled by the patient, online."), "{}", page.body);
    assert!(!page.body.contains("Cancel this order"));
    let tasks = app.task_list(&tp.clinician, false).await.unwrap();
    assert!(tasks.iter().all(|(t, _)| t.id != order.id), "no longer the practice's to do");
    // The clinician opening it sees why, and nothing to decide.
    let seen = doc.get(&format!("/tasks/{}", order.id)).await;
    assert!(seen.body.contains("Cancelled by the patient, online"), "{}", seen.body);
    assert!(!seen.body.contains("Approve and issue"), "a cancelled order offers no decision");
    // Cancelling it again, or an order that is not theirs, is refused.
    let again =
        p.post(&format!("/my/prescriptions/{}/cancel", order.id), &[("_csrf", &csrf(&page.body)), ("for", "")]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let unknown = p
        .post(
            &format!("/my/prescriptions/{}/cancel", uuid::Uuid::now_v7()),
            &[("_csrf", &csrf(&page.body)), ("for", "")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn every_patient_route_for_every_kind_of_proxy(t: &TestStore) {
    // T3, T6: each proxy scope of A, an expired and a suspended proxy, patient B; GETs and POSTs
    use caldicott_core::access::{AccessLevel, ProxyStatus};
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let a = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - chrono::Duration::days(365 * 40));
    app.store_for_tests()
        .create_patient(tp.practice.id, &a, &fixtures::audit(Action::PatientCreate, Some(a.id)))
        .await
        .unwrap();
    let template = repeat_template(&a, "A-REPEAT-MED");
    fixtures::add_entries(&app, tp.practice.id, Some(a.id), std::slice::from_ref(&template)).await.unwrap();
    let day = caldicott_app::fixtures::today() + chrono::Duration::days(6);
    let clinic = caldicott_app::appointments::NewClinic {
        others_bookable: false,
        ..fixtures::clinic_form(&tp, day, ("09:00", "12:00"), 10, "100")
    };
    app.create_clinic(&tp.clinician, &clinic).await.unwrap().unwrap();
    let today = caldicott_app::fixtures::today();
    // (name, record, appointments, prescriptions, status, ends)
    let kinds: [(&str, AccessLevel, bool, bool, bool); 6] = [
        ("record-only", AccessLevel::Summary, false, false, true),
        ("appointments-only", AccessLevel::None, true, false, true),
        ("prescriptions-only", AccessLevel::None, false, true, true),
        ("everything", AccessLevel::Full, true, true, true),
        ("expired", AccessLevel::Full, true, true, false),
        ("suspended", AccessLevel::Full, true, true, false),
    ];
    let mut callers = Vec::new();
    for (name, record, appointments, prescriptions, _) in kinds {
        let proxy = adult(&app, tp.practice.id).await.unwrap();
        let mut link =
            fixtures::proxy_link(&app, tp.practice.id, &a, &proxy, record, today - chrono::Duration::days(30))
                .await
                .unwrap();
        link.scope.appointments = appointments;
        link.scope.prescriptions = prescriptions;
        link.scope.record_from = caldicott_core::access::RecordFrom::Beginning;
        if name == "expired" {
            link.ends_on = Some(today - chrono::Duration::days(1));
        }
        if name == "suspended" {
            link.status = ProxyStatus::Suspended { since: today, reason: "review".into() };
        }
        app.change_proxy(
            &tp.clinician,
            a.nhs_number.as_str(),
            link.id,
            &caldicott_app::proxies::ProxyChange::End { reason: "reset".into() },
        )
        .await
        .unwrap();
        link.id = caldicott_core::ids::ProxyLinkId::from_uuid(caldicott_app::new_id());
        app.store_for_tests()
            .create_proxy_link(tp.practice.id, &link, &fixtures::audit(Action::ProxyLinkCreate, Some(a.id)))
            .await
            .unwrap();
        let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &proxy, "P9").await.unwrap();
        callers.push((name, link, cookie));
    }
    let b = adult(&app, tp.practice.id).await.unwrap();
    let (_, _, b_cookie) = fixtures::patient_account(&app, &tp.clinician, &b, "P9").await.unwrap();
    let links: Vec<String> = callers.iter().map(|(_, l, _)| l.id.to_string()).collect();
    let free_slots = app.appointment_book(&tp.clinician, day, 1).await.unwrap();
    let as_caller = |cookie: &str| {
        let mut br = Browser::new(&app);
        br.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie.to_owned());
        br
    };
    for (i, (name, link, cookie)) in callers.iter().enumerate() {
        let (_, record, appointments, prescriptions, active) = kinds[i];
        let mut br = as_caller(cookie);
        let csrf = csrf(&br.get("/my").await.body);
        let l = link.id.to_string();
        let want = |allowed: bool| if !active || !allowed { StatusCode::FORBIDDEN } else { StatusCode::OK };
        let r = br.get(&format!("/my/record?for={l}")).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert_eq!(r.body.contains("A-REPEAT-MED"), active && record != AccessLevel::None, "{name}: record");
        assert_eq!(
            br.get(&format!("/my/appointments?for={l}")).await.status,
            want(appointments),
            "{name}: appointments"
        );
        assert_eq!(
            br.get(&format!("/my/appointments/book?for={l}")).await.status,
            want(appointments),
            "{name}: book page"
        );
        let r = br.get(&format!("/my/prescriptions?for={l}")).await;
        assert_eq!(r.status, want(prescriptions), "{name}: prescriptions");
        let slot = free_slots[i].slot.id.to_string();
        let booked = br.post("/my/appointments", &[("_csrf", &csrf), ("for", &l), ("slot", &slot)]).await;
        let ok = active && appointments;
        assert_eq!(booked.status, if ok { StatusCode::SEE_OTHER } else { StatusCode::FORBIDDEN }, "{name}: booking");
        let t = template.id.to_string();
        let ordered = br.post("/my/prescriptions", &[("_csrf", &csrf), ("for", &l), ("items", &t)]).await;
        let ok = active && prescriptions;
        assert_eq!(ordered.status, if ok { StatusCode::SEE_OTHER } else { StatusCode::FORBIDDEN }, "{name}: ordering");
        // The practice decides it, so that the next caller may order the same medicine (one
        // waiting for a decision is not ordered twice, whoever orders it).
        for task in app.store_for_tests().tasks_for_patient(tp.practice.id, a.id).await.unwrap() {
            if task.kind == caldicott_core::tasks::TaskKind::RepeatRequest
                && task.status == caldicott_core::tasks::TaskStatus::Open
            {
                app.decide_repeat_item(&tp.clinician, task.id, template.id, false, "Decided for the next caller")
                    .await
                    .unwrap();
            }
        }
        // Nobody else's link answers for this caller.
        for other in links.iter().filter(|o| **o != l) {
            assert_eq!(br.get(&format!("/my/prescriptions?for={other}")).await.status, StatusCode::NOT_FOUND, "{name}");
            let r = br.post("/my/appointments", &[("_csrf", &csrf), ("for", other), ("slot", &slot)]).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{name}");
        }
    }
    // Patient B reaches none of A's services through any of the links.
    let mut br = as_caller(&b_cookie);
    let csrf = csrf(&br.get("/my").await.body);
    for l in &links {
        for path in ["/my/record", "/my/appointments", "/my/prescriptions", "/my/appointments/book"] {
            assert_eq!(br.get(&format!("{path}?for={l}")).await.status, StatusCode::NOT_FOUND, "B {path}");
        }
        let t = template.id.to_string();
        assert_eq!(
            br.post("/my/prescriptions", &[("_csrf", &csrf), ("for", l), ("items", &t)]).await.status,
            StatusCode::NOT_FOUND
        );
    }
    // B's own order cannot name A's medicine.
    let t = template.id.to_string();
    let r = br.post("/my/prescriptions", &[("_csrf", &csrf), ("for", ""), ("items", &t)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.body.contains("A-REPEAT-MED"));
    // A forged form (no CSRF token) does nothing.
    let r = br.post("/my/requests", &[("kind", "medication_query"), ("text", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn a_patient_turns_on_two_step_sign_in(t: &TestStore) {
    // A code is accepted once (RFC 6238 5.2): each step below uses the next 30 seconds' code.
    let steps = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let start = caldicott_app::fixtures::now();
    let moved = steps.clone();
    let now = move || start + chrono::Duration::seconds(30 * moved.load(std::sync::atomic::Ordering::SeqCst));
    let app = App::new(t.store.clone(), std::sync::Arc::new(now.clone()));
    let next_step = || steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (username, password, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let mut p = Browser::new(&app);
    p.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    let page = p.get("/my/security").await;
    assert!(page.body.contains("Two-step sign-in is <strong>off</strong>"));
    let token = csrf(&page.body);
    let enrol = p.post("/my/security", &[("_csrf", &token), ("step", "begin")]).await;
    assert_eq!(enrol.status, StatusCode::OK);
    let secret = between(&enrol.body, "id=\"totp-secret\">", "<").to_owned();
    let wrong = p.post("/my/security", &[("_csrf", &token), ("step", "confirm"), ("code", "000000")]).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let code = caldicott_app::session::current_code(&secret, now()).unwrap();
    let on = p.post("/my/security", &[("_csrf", &token), ("step", "confirm"), ("code", &code)]).await;
    assert_eq!(location(&on), "/my/security?done=on");
    // Signing in now needs the code; the waiting session opens nothing.
    let mut q = Browser::new(&app);
    let token = csrf(&q.get("/my/sign-in").await.body);
    let ods = tp.practice.ods_code.as_str().to_owned();
    let r = q
        .post("/my/sign-in", &[("_csrf", &token), ("ods", &ods), ("username", &username), ("password", &password)])
        .await;
    assert_eq!(location(&r), "/my/sign-in/code");
    assert_eq!(location(&q.get("/my/record").await), "/my/sign-in", "a session waiting for its code is not signed in");
    let page = q.get("/my/sign-in/code").await;
    let token = csrf(&page.body);
    let bad = q.post("/my/sign-in/code", &[("_csrf", &token), ("code", "123456")]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    next_step();
    let code = caldicott_app::session::current_code(&secret, now()).unwrap();
    let ok = q.post("/my/sign-in/code", &[("_csrf", &token), ("code", &code)]).await;
    assert_eq!(location(&ok), "/my");
    assert_eq!(q.get("/my/record").await.status, StatusCode::OK);
    // And off again, with a code.
    let page = q.get("/my/security").await;
    let token = csrf(&page.body);
    let used = q.post("/my/security", &[("_csrf", &token), ("step", "off"), ("code", &code)]).await;
    assert_eq!(used.status, StatusCode::BAD_REQUEST, "a code used to sign in does not also turn two-step off");
    next_step();
    let code = caldicott_app::session::current_code(&secret, now()).unwrap();
    let off = q.post("/my/security", &[("_csrf", &token), ("step", "off"), ("code", &code)]).await;
    assert_eq!(location(&off), "/my/security?done=off");
}

async fn send_a_message_submitted_twice_at_once_sends_once(t: &TestStore) {
    // Send a message: the same form posted several times at once (a double click, a resent
    // request) sends one message, and every answer says it is on its way.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let mut pat = fixtures::person(tp.practice.id, fixtures::date(1980, 5, 17));
    pat.contact.email = Some("twice@example.com".into());
    pat.preferred_contact = caldicott_core::patient::PreferredContactMethod::Email;
    app.store_for_tests()
        .create_patient(tp.practice.id, &pat, &fixtures::audit(Action::PatientCreate, Some(pat.id)))
        .await
        .unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "reception").await;
    let page = staff.get(&format!("/patients/{nhs}/messages/new")).await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page.body);
    let key = between(&page.body, "name=\"send_key\" value=\"", "\"").to_owned();
    let preset = between(&page.body, "name=\"preset\" value=\"", "\"").to_owned();
    let mut posts = Vec::new();
    for _ in 0..6 {
        let mut b = Browser { app: app.clone(), jar: staff.jar.clone() };
        let (uri, token, key, preset) =
            (format!("/patients/{nhs}/messages"), token.clone(), key.clone(), preset.clone());
        posts.push(tokio::spawn(async move {
            b.post(&uri, &[("_csrf", &token), ("preset", &preset), ("send_key", &key)]).await
        }));
    }
    for p in posts {
        let r = p.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body.contains("The message is on its way"));
    }
    assert_eq!(
        app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().len(),
        1,
        "one form, one message"
    );
    // The page after sending is a new form, with a new key: sending it is a new message.
    let again = staff.get(&format!("/patients/{nhs}/messages/new")).await;
    let fresh = between(&again.body, "name=\"send_key\" value=\"", "\"").to_owned();
    assert_ne!(fresh, key);
    let r = staff
        .post(
            &format!("/patients/{nhs}/messages"),
            &[("_csrf", &csrf(&again.body)), ("preset", &preset), ("send_key", &fresh)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().len(), 2);
    // A form without its key is refused, and sends nothing.
    let r =
        staff.post(&format!("/patients/{nhs}/messages"), &[("_csrf", &csrf(&again.body)), ("preset", &preset)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap().len(), 2);
}

/// A patient whose linked app the practice has turned off is told so on their linked apps
/// page, and can still disconnect it.
async fn a_patient_sees_that_the_practice_turned_their_app_off(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let (client, _, _) = fixtures::linked_app(&app, &tp, &pat).await.unwrap();
    let mut p = Browser::new(&app);
    p.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    let before = p.get("/my/apps").await;
    assert!(before.body.contains("Health Wallet (Wallet Ltd)") && !before.body.contains("turned this app off"));
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let id = app.registered_apps(&admin).await.unwrap().into_iter().find(|a| a.client_id == client).unwrap().id;
    app.set_app_active(&admin, &id.to_string(), false).await.unwrap();
    let after = p.get("/my/apps").await;
    assert!(after.body.contains("Your GP practice has turned this app off for now"), "{}", after.body);
    assert!(after.body.contains("Disconnect"), "the patient can still disconnect it");
}

async fn an_app_links_through_the_api_and_staff_action_the_alert(t: &TestStore) {
    // R21, R23: the whole path through the pages and the app API
    use base64::Engine;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let mut admin = Browser::new(&app);
    sign_in(&mut admin, tp.practice.ods_code.as_str(), "admin").await;
    let page = admin.get("/apps").await;
    let r = admin
        .post("/apps", &[("_csrf", &csrf(&page.body)), ("app_name", "Health Wallet"), ("supplier", "Wallet Ltd")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let client_id = between(&r.body, "id=\"client-id\">", "<").to_owned();
    let client_secret = between(&r.body, "id=\"client-secret\">", "<").to_owned();
    let mut staff = Browser::new(&app);
    sign_in(&mut staff, tp.practice.ods_code.as_str(), "reception").await;
    let record = staff.get(&format!("/patients/{nhs}")).await;
    let token = csrf(&record.body);
    let letter = staff.post(&format!("/patients/{nhs}/linkage"), &[("_csrf", &token), ("identity", "P9")]).await;
    let account_id = between(&letter.body, "id=\"letter-account-id\">", "<").to_owned();
    let key = between(&letter.body, "id=\"letter-linkage-key\">", "<").to_owned();
    // The app links through the API.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
    let body = serde_json::json!({
        "ods_code": tp.practice.ods_code.as_str(), "account_id": account_id, "linkage_key": key,
        "family_name": "Patient", "birth_date": pat.date_of_birth.to_string()
    });
    let send = |auth: String, body: serde_json::Value| {
        let app = app.clone();
        async move {
            let req = Request::post("/api/apps/v1/links")
                .header(header::AUTHORIZATION, auth)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let res = caldicott_web::router(app).oneshot(req).await.unwrap();
            let status = res.status();
            (status, String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
        }
    };
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:guess"));
    assert_eq!(send(format!("Basic {wrong}"), body.clone()).await.0, StatusCode::UNAUTHORIZED);
    let mut bad = body.clone();
    bad["family_name"] = "Other".into();
    let (status, text) = send(format!("Basic {basic}"), bad).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!text.contains(&nhs), "a refusal reveals nothing about the record");
    let (status, text) = send(format!("Basic {basic}"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let link_token = serde_json::from_str::<serde_json::Value>(&text).unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, "/api/apps/v1/link", Some(&link_token)).await.status, StatusCode::OK);
    // The administrator turns the app off from the apps page: its link is refused on the next
    // request; turned on again, it works. A receptionist cannot do it.
    let apps = admin.get("/apps").await;
    assert!(apps.body.contains("Active") && apps.body.contains("Turn off"));
    let app_id = between(&apps.body, "action=\"/apps/", "\"").to_owned();
    let off = [("_csrf", csrf(&apps.body)), ("app_action", "deactivate".to_owned())];
    let staff_csrf = csrf(&staff.get("/tasks").await.body);
    let refused = staff.post(&format!("/apps/{app_id}"), &[("_csrf", &staff_csrf), ("app_action", "deactivate")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/api/apps/v1/link", Some(&link_token)).await.status, StatusCode::OK);
    let r = admin.post(&format!("/apps/{app_id}"), &[("_csrf", &off[0].1), ("app_action", &off[1].1)]).await;
    assert_eq!(location(&r), "/apps");
    assert!(admin.get("/apps").await.body.contains("Turned off"));
    assert_eq!(get(&app, "/api/apps/v1/link", Some(&link_token)).await.status, StatusCode::UNAUTHORIZED);
    let apps = admin.get("/apps").await;
    let r = admin.post(&format!("/apps/{app_id}"), &[("_csrf", &csrf(&apps.body)), ("app_action", "reactivate")]).await;
    assert_eq!(location(&r), "/apps");
    assert_eq!(get(&app, "/api/apps/v1/link", Some(&link_token)).await.status, StatusCode::OK);
    // The administrator lets the app exchange its users' NHS login ID tokens (the NHS App through
    // NHS England's API platform): its client id at NHS login and its public key. A private key
    // is refused with the reason on the page; a receptionist cannot do it.
    let (private, public) = caldicott_app::fhir_api::new_key_pair().unwrap();
    let apps = admin.get("/apps").await;
    assert!(apps.body.contains("Let an app exchange NHS login ID tokens"));
    let admin_csrf = csrf(&apps.body);
    let mut f = vec![
        ("_csrf", admin_csrf.as_str()),
        ("exchange_app", app_id.as_str()),
        ("exchange_client_id", "nhs-app-at-nhs-login"),
    ];
    f.push(("exchange_key", private.as_str()));
    let refused = admin.post("/apps/token-exchange", &f).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("That is a private key"), "{}", refused.body);
    let staff_form =
        [("_csrf", staff_csrf.as_str()), ("exchange_app", app_id.as_str()), ("exchange_key", public.as_str())];
    assert_eq!(staff.post("/apps/token-exchange", &staff_form).await.status, StatusCode::FORBIDDEN);
    f.pop();
    f.push(("exchange_key", public.as_str()));
    let r = admin.post("/apps/token-exchange", &f).await;
    assert_eq!(location(&r), "/apps");
    assert!(admin.get("/apps").await.body.contains("Allowed (ID tokens issued to nhs-app-at-nhs-login)"));
    // The alert waits in the task list; with no preference and no email it cannot be sent.
    let tasks = staff.get("/tasks").await;
    assert!(tasks.body.contains("Security alerts: online services linked"));
    let task_id = between(&tasks.body, "name=\"task\" type=\"checkbox\" value=\"", "\"").to_owned();
    let page = staff.get(&format!("/tasks/{task_id}")).await;
    assert!(page.body.contains("T.P., your GP record at Test Surgery"), "the message is shown before it is sent");
    assert!(page.body.contains("By text message: 2 fragments, 4.54p"), "with its SMS fragments and cost (R42)");
    let token = csrf(&page.body);
    let r = staff.post(&format!("/alerts/{task_id}"), &[("_csrf", &token), ("anyway", "")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("No SMS or email preference recorded: contact the patient manually"));
    // Record an email address (still no preference) from the task itself, then send anyway.
    assert!(page.body.contains("Change the contact preference or details"));
    let r = staff
        .post(
            &format!("/patients/{nhs}/contact"),
            &[
                ("_csrf", &token),
                ("preferred", "unknown"),
                ("contact_email", "pat@example.com"),
                ("contact_mobile", ""),
                ("task", &task_id),
            ],
        )
        .await;
    assert_eq!(location(&r), format!("/tasks/{task_id}"), "back to the task after saving");
    let r = staff.post(&format!("/alerts/{task_id}"), &[("_csrf", &token), ("anyway", "yes")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("The safety-net email is on its way"));
    let log = staff.get(&format!("/patients/{nhs}/communications")).await;
    assert!(log.body.contains("safety net") && log.body.contains("pat@example.com"));
    // The patient sees the app and disconnects it; the app's token stops working at once.
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    assert_eq!(
        get(&app, "/api/apps/v1/link", Some(&link_token)).await.status,
        StatusCode::UNAUTHORIZED,
        "a new letter regenerates the key (R21)"
    );
    let mut p = Browser::new(&app);
    p.jar.insert(caldicott_web::PATIENT_COOKIE.to_owned(), cookie);
    let mine = p.get("/my/apps").await;
    assert!(mine.body.contains("Health Wallet (Wallet Ltd)") && mine.body.contains("Disconnected"));
}
