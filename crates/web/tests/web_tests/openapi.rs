#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The OpenAPI document: in step with the routers (every JSON route described, nothing described
//! that is not routed), served at `/openapi.json`, and run through schemathesis against a live
//! server (T39: no generated request gets a server error, an answer that may be cached or an
//! error showing internals; a linked app never receives a hidden entry). Both databases for the
//! live run.

use caldicott_app::fixtures::{self, adult, consultation, linked_app, withheld_entries};
use caldicott_app::App;
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use std::collections::BTreeSet;

/// (method, path) of every route in a router's source, with its mount prefix.
fn routes_in(prefix: &str, src: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for piece in src.split(".route(").skip(1) {
        let piece = piece.trim_start();
        let Some(rest) = piece.strip_prefix('"') else { continue };
        let path = rest.split('"').next().unwrap();
        let after = &rest[path.len()..];
        for method in ["get", "post", "put"] {
            let called =
                [format!(" {method}("), format!("({method}("), format!("routing::{method}("), format!(".{method}(")];
            // This route's own call: up to the next route, or the end of the routes function.
            let first_call = after.split(".route(").next().unwrap().split("\n}").next().unwrap();
            if called.iter().any(|c| first_call.contains(c.as_str())) {
                out.insert((method.to_owned(), format!("{prefix}{path}")));
            }
        }
    }
    out
}

#[test]
fn the_openapi_document_and_the_json_routes_agree() {
    let mut routed = BTreeSet::new();
    routed.extend(routes_in("/api/v1", include_str!("../../src/api.rs")));
    routed.extend(routes_in("/api/v1", include_str!("../../src/staff/access_api.rs")));
    routed.extend(routes_in("/api/v1", include_str!("../../src/appointments_api.rs")));
    routed.extend(routes_in("/api/apps/v1", include_str!("../../src/app_api.rs")));
    routed.extend(routes_in("/api/update-record/v1", include_str!("../../src/update_record_api.rs")));
    routed.extend(routes_in("/fhir/r4", include_str!("../../src/fhir.rs")));
    // The pages router: its JSON routes (the API page is HTML; assets are files).
    routed.extend(
        routes_in("", include_str!("../../src/pages.rs"))
            .into_iter()
            .filter(|(_, p)| p != "/api" && !p.starts_with("/assets")),
    );
    assert!(routed.len() >= 20, "{routed:?}");
    let described: BTreeSet<(String, String)> =
        caldicott_web::openapi::OPERATIONS.iter().map(|o| (o.method.to_owned(), o.path.to_owned())).collect();
    let undescribed: Vec<_> = routed.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routed).collect();
    assert!(undescribed.is_empty(), "JSON routes missing from the OpenAPI document: {undescribed:?}");
    assert!(unrouted.is_empty(), "described but not routed: {unrouted:?}");
    let doc = caldicott_web::openapi::document();
    assert_eq!(doc["openapi"], "3.0.3");
    for (method, path) in &routed {
        assert!(doc["paths"][path][method]["responses"].is_object(), "{method} {path}");
    }
}

/// One schemathesis run against a live server: `token` on every request, the checks of
/// scripts/schemathesis-checks.py with `env` set for them, `more` arguments. Whether it passed,
/// and the end of its report.
async fn schemathesis(app: &App, token: &str, checks: &str, env: &[(&str, String)], more: &[&str]) -> (bool, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = caldicott_web::router(app.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let python = std::env::var("CALDICOTT_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/caldicott/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let st = std::path::Path::new(&python).with_file_name("st");
    let hooks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/schemathesis-checks.py");
    // schemathesis keeps a cache of what it found in the directory it runs in: one of its own,
    // outside the checkout.
    let workdir = std::env::temp_dir().join(format!("caldicott-schemathesis-{}", caldicott_app::new_id()));
    std::fs::create_dir_all(&workdir).unwrap();
    let cwd = workdir.clone();
    let header = format!("Authorization: Bearer {token}");
    let wanted = checks.to_owned();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    let more: Vec<String> = more.iter().map(|m| (*m).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&st)
            .current_dir(&cwd)
            .args([
                "run",
                &format!("http://{addr}/openapi.json"),
                "--checks",
                &wanted,
                "--max-examples",
                "15",
                // One worker: schemathesis' coverage phase is not safe across threads on every
                // Python (hypothesis' source inspection races).
                "--workers",
                "1",
                "--seed",
                "1",
                "--header",
                &header,
                "--no-color",
            ])
            .args(more)
            .env("SCHEMATHESIS_HOOKS", hooks)
            .envs(env)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("schemathesis: {e}; run scripts/test.sh, which installs it"));
    server.abort();
    let _ = std::fs::remove_dir_all(&workdir);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail: String = said.chars().rev().take(6000).collect::<Vec<_>>().into_iter().rev().collect();
    (out.status.success() && (said.contains("passed") || said.contains("Passed")), tail)
}

/// T39 (with T8 and T40): schemathesis, run from the served OpenAPI document, gets no server
/// error, no answer that may be cached and no error showing internals, as a clinician and as a
/// linked app; and the app, steered to its own patient's record, never receives an entry hidden
/// from the patient (its text or its id).
async fn schemathesis_finds_no_server_error(t: &TestStore) {
    let app = App::new(t.store.clone(), caldicott_app::fixtures::test_clock());
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let hidden = withheld_entries(&pat, now - Duration::hours(5), "SCHEMA");
    let mut entries = vec![consultation(&pat, now - Duration::days(1), "Seen")];
    entries.extend(hidden.iter().cloned());
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    let checks = "not_a_server_error,patient_data_is_never_cached,errors_show_no_internals";
    let (passed, report) = schemathesis(&app, &tp.clinician_token, checks, &[], &[]).await;
    assert!(passed, "{report}");
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let token = app
        .fhir_token(&caldicott_app::fhir_api::TokenRequest::app(&client, &secret, &link, ""))
        .await
        .unwrap()
        .access_token;
    let mut marks: Vec<String> = hidden.iter().map(|e| e.id.to_string()).collect();
    marks.push("SCHEMA".into());
    let env = [("CALDICOTT_HIDDEN", marks.join(",")), ("CALDICOTT_PATIENT_ID", pat.id.to_string())];
    let (passed, report) = schemathesis(&app, &token, &format!("{checks},no_hidden_content"), &env, &[]).await;
    assert!(passed, "{report}");
    // The checks can fail: told that the CapabilityStatement's own words are hidden, the run
    // over that one route fails, and names the check.
    let control = [("CALDICOTT_HIDDEN", "fhirVersion".to_owned())];
    let (passed, report) =
        schemathesis(&app, &token, "no_hidden_content", &control, &["--include-path", "/fhir/r4/metadata"]).await;
    assert!(!passed && report.contains("hidden entry (fhirVersion)"), "{report}");
}

both!(schemathesis_finds_no_server_error);
