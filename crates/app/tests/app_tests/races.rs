#![allow(clippy::unwrap_used, clippy::expect_used)]
//! T5, create and hide races (H01): clinicians record entries hidden from the start and hide
//! entries that were visible, while the patient's own pages and a linked app read the record as
//! fast as they can. No read ever returns an entry recorded hidden, and no read that begins after
//! a hide has returned shows the entry it hid. Both databases (SQLite's read pool and WAL;
//! PostgreSQL's pool).

use caldicott_app::consultation::NewConsultation;
use caldicott_app::fhir_api::{FhirCaller, TokenRequest};
use caldicott_app::fixtures::{self, adult, consultation, linked_app};
use caldicott_app::record::PageRequest;
use caldicott_app::redaction::VisibilityChange;
use caldicott_app::App;
use caldicott_core::entry::HiddenReason;
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Entries visible at the start, each hidden during the run.
const TO_HIDE: usize = 80;
/// Entries recorded hidden during the run.
const RECORDED_HIDDEN: usize = 80;
/// Readers of each kind (the patient's pages, the app).
const READERS: usize = 4;

/// A reader's look at the record: the patient's pages or the app's `$everything`, every page,
/// as one text to search.
async fn look(app: &App, who: &Reader) -> String {
    match who {
        Reader::Pages(me) => {
            let mut out = String::new();
            let mut cursor = None;
            loop {
                let page = PageRequest { section: None, cursor: cursor.clone(), limit: Some(200) };
                let p = app.my_record(me, None, &page).await.unwrap();
                out.push_str(&format!("{:?}", p.entries));
                match p.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return out,
                }
            }
        }
        Reader::App(caller, patient) => {
            let mut out = String::new();
            let mut cursor: Option<String> = None;
            loop {
                let b = app
                    .fhir_everything(caller, patient, "http://test/fhir/r4", Some("1000"), cursor.as_deref())
                    .await
                    .unwrap();
                out.push_str(&b.to_string());
                let next = b["link"].as_array().into_iter().flatten().find(|l| l["relation"] == "next");
                match next.and_then(|l| l["url"].as_str()).and_then(|u| u.split("_cursor=").nth(1)) {
                    Some(c) => cursor = Some(c.split('&').next().unwrap_or(c).to_owned()),
                    None => return out,
                }
            }
        }
    }
}

enum Reader {
    Pages(caldicott_app::patient_services::PatientPrincipal),
    App(FhirCaller, String),
}

async fn hidden_entries_never_show_while_clinicians_write(t: &TestStore) {
    let app = App::new(t.store.clone(), caldicott_app::fixtures::test_clock());
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let now = caldicott_app::fixtures::now();
    let visible: Vec<_> = (0..TO_HIDE)
        .map(|i| consultation(&pat, now - Duration::hours(2 + i as i64), &format!("RACE-VISIBLE-{i:03}")))
        .collect();
    fixtures::add_entries(&app, tp.practice.id, None, &visible).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let token = app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await.unwrap().access_token;
    let caller = app.fhir_caller(&token).await.unwrap();

    // A clock of events: a hide's "done" tick is taken after it returns, a read's "start" tick
    // before it begins; a read that started after a hide was done must not show that entry.
    let clock = Arc::new(AtomicU64::new(1));
    let hidden_at: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let writing = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(AtomicUsize::new(0));
    let seen_visible = Arc::new(AtomicUsize::new(0));

    let mut readers = Vec::new();
    for r in 0..READERS * 2 {
        let who = if r % 2 == 0 { Reader::Pages(me.clone()) } else { Reader::App(caller.clone(), pat.id.to_string()) };
        let (app, clock, hidden_at, writing, reads, seen_visible) =
            (app.clone(), clock.clone(), hidden_at.clone(), writing.clone(), reads.clone(), seen_visible.clone());
        readers.push(tokio::spawn(async move {
            let mut problems = Vec::new();
            // At least a few reads each, and on until the writers are done.
            let mut mine = 0;
            while writing.load(Ordering::SeqCst) || mine < 3 {
                let started = clock.fetch_add(1, Ordering::SeqCst);
                let done_before: Vec<String> =
                    hidden_at.lock().unwrap().iter().filter(|(_, at)| *at < started).map(|(m, _)| m.clone()).collect();
                let text = look(&app, &who).await;
                mine += 1;
                reads.fetch_add(1, Ordering::SeqCst);
                if text.contains("RACE-VISIBLE-") {
                    seen_visible.fetch_add(1, Ordering::SeqCst);
                }
                if text.contains("RACE-RECORDED-HIDDEN") {
                    problems.push("an entry recorded hidden was read".to_owned());
                }
                for m in done_before {
                    if text.contains(&m) {
                        problems.push(format!("{m} was read after its hide returned"));
                    }
                }
            }
            problems
        }));
    }

    // Two clinicians' worth of writes at once: one records hidden entries, one hides the
    // visible ones.
    let recorder = {
        let (app, clinician, nhs) = (app.clone(), tp.clinician.clone(), nhs.clone());
        tokio::spawn(async move {
            for i in 0..RECORDED_HIDDEN {
                let c = NewConsultation {
                    text: format!("RACE-RECORDED-HIDDEN-{i:03} names a neighbour"),
                    draft: false,
                    codes: vec![],
                    visible_online: false,
                    hidden_reason: Some(HiddenReason::ThirdParty),
                    note: "names a neighbour".into(),
                    checked: false,
                };
                app.add_consultation(&clinician, &nhs, &c).await.unwrap().unwrap();
            }
        })
    };
    let hider = {
        let (app, clinician, nhs, clock, hidden_at) =
            (app.clone(), tp.clinician.clone(), nhs.clone(), clock.clone(), hidden_at.clone());
        tokio::spawn(async move {
            for (i, e) in visible.iter().enumerate() {
                let change =
                    VisibilityChange::Hide { reason: HiddenReason::ThirdParty, note: "names a relative".into() };
                assert_eq!(app.change_visibility(&clinician, &nhs, e.id, &change, false).await.unwrap(), 1);
                let done = clock.fetch_add(1, Ordering::SeqCst);
                hidden_at.lock().unwrap().push((format!("RACE-VISIBLE-{i:03}"), done));
            }
        })
    };
    recorder.await.unwrap();
    hider.await.unwrap();
    writing.store(false, Ordering::SeqCst);
    let mut problems = Vec::new();
    for r in readers {
        problems.extend(r.await.unwrap());
    }
    let reads = reads.load(Ordering::SeqCst);
    eprintln!("T5: {reads} reads, {} saw visible entries", seen_visible.load(Ordering::SeqCst));
    assert!(
        problems.is_empty(),
        "{} problems in {reads} reads: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    // The run raced: readers read while the writes went on and saw the visible entries before
    // they were hidden; and at the end nothing of the run shows.
    assert!(reads >= READERS * 2 * 3, "{reads} reads");
    assert!(seen_visible.load(Ordering::SeqCst) > 0, "no read saw an entry before it was hidden");
    for who in [Reader::Pages(me), Reader::App(caller, pat.id.to_string())] {
        let text = look(&app, &who).await;
        assert!(!text.contains("RACE-"), "after the run");
    }
    // Every write is in the audit trail once: each hide and each recording.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    let changes = events.iter().filter(|e| e.action == "entry.visibility_change").count();
    assert_eq!(changes, TO_HIDE);
}

both!(hidden_entries_never_show_while_clinicians_write);
