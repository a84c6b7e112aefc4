#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Patient/$everything` speed (`cargo bench -p caldicott-app --bench fhir_everything`): a linked
//! app pages through a 10,000-entry record (one entry in twenty hidden online) 100 entries at a
//! time, on SQLite with the durable settings the server uses. Target: under 50 ms a page. Each
//! page includes authenticating the token (token, link and app looked up), the visibility engine
//! on every entry, the FHIR resources and the audit event.

use caldicott_app::fhir_api::FhirCaller;
use caldicott_app::fixtures::{self, adult, consultation, linked_app};
use caldicott_app::App;
use caldicott_core::audit::Action;
use caldicott_core::entry::{HiddenReason, OnlineVisibility, Redaction};
use chrono::{Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::HashSet;

const ENTRIES: i64 = 10_000;

async fn page(app: &App, token: &str, patient: &str, cursor: Option<&str>) -> (usize, Option<String>) {
    let who: FhirCaller = app.fhir_caller(token).await.expect("caller");
    let b = app.fhir_everything(&who, patient, "http://bench/fhir/r4", Some("100"), cursor).await.expect("page");
    let n = b["entry"].as_array().map_or(0, Vec::len);
    let next = b["link"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["relation"] == "next"))
        .map(|l| l["url"].as_str().unwrap_or_default().split("_cursor=").nth(1).unwrap_or_default().to_owned());
    (n, next)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (app, token, patient, middle) = rt.block_on(async {
        let t = caldicott_store::test_support::sqlite().await.expect("store");
        let app = App::new(t.store.clone(), caldicott_app::system_clock());
        std::mem::forget(t);
        let tp = fixtures::practice(&app).await.expect("practice");
        let pat = adult(&app, tp.practice.id).await.expect("patient");
        let now = Utc::now();
        let entries: Vec<_> = (0..ENTRIES)
            .map(|i| {
                let mut e =
                    consultation(&pat, now - Duration::minutes(i + 1), &format!("Entry {i}: reviewed, plan agreed"));
                if i % 20 == 7 {
                    e.visibility = OnlineVisibility::Hidden(
                        Redaction::new(HiddenReason::ThirdParty, "bench", "Dr", now).expect("redaction"),
                    );
                }
                e
            })
            .collect();
        for chunk in entries.chunks(1000) {
            app.store_for_tests()
                .add_entries(tp.practice.id, chunk, &fixtures::audit(Action::EntryCreate, None))
                .await
                .expect("entries");
        }
        let (client, secret, link) = linked_app(&app, &tp, &pat).await.expect("link");
        let token = app
            .fhir_token(&caldicott_app::fhir_api::TokenRequest::app(&client, &secret, &link, ""))
            .await
            .expect("token")
            .access_token;
        // Page through everything once: no duplicates, no gaps; keep the cursor of page 50.
        let (mut seen, mut ids, mut cursor, mut middle, mut pages) = (0, HashSet::new(), None::<String>, None, 0);
        loop {
            let who = app.fhir_caller(&token).await.expect("caller");
            let b = app
                .fhir_everything(&who, &pat.id.to_string(), "http://bench/fhir/r4", Some("100"), cursor.as_deref())
                .await
                .expect("page");
            for e in b["entry"].as_array().expect("entries") {
                if e["resource"]["resourceType"] == "Encounter" {
                    seen += 1;
                    assert!(ids.insert(e["resource"]["id"].as_str().expect("id").to_owned()), "duplicate");
                }
            }
            pages += 1;
            let (_, next) = page(&app, &token, &pat.id.to_string(), cursor.as_deref()).await;
            if pages == 50 {
                middle = next.clone();
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, ENTRIES - ENTRIES / 20, "every visible entry once");
        eprintln!("paged {seen} entries in {pages} pages of 100");
        (app, token, pat.id.to_string(), middle.expect("a middle page"))
    });
    c.bench_function("$everything first page of 100, 10,000-entry record (SQLite)", |b| {
        b.iter(|| rt.block_on(page(&app, &token, &patient, None)))
    });
    c.bench_function("$everything page 51 of 100, 10,000-entry record (SQLite)", |b| {
        b.iter(|| rt.block_on(page(&app, &token, &patient, Some(&middle))))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(8));
    targets = bench
}
criterion_main!(benches);
