#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The FHIR API's use cases (T1, T2, T6 for the FHIR routes): tokens and scopes, the patient-bound
//! view with the visibility engine, `$everything` paging, practice-facing NOPAT labels, and
//! revocation on the next request. Both databases.

use caldicott_app::fhir_api::{FhirCaller, Search};
use caldicott_app::fixtures::{self, adult, consultation, linked_app, withheld_entries};
use caldicott_app::{auth, App, AppError};
use caldicott_core::audit::Action;
use caldicott_core::entry::{EntryBody, Filing};
use caldicott_store::test_support::{self, TestStore};
use chrono::{Duration, Utc};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::HashSet;

const BASE: &str = "http://test/fhir/r4";

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::system_clock())
}

async fn app_token(app: &App, client: &str, secret: &str, link: &str, scope: &str) -> FhirCaller {
    let t = app.fhir_token(client, secret, "refresh_token", link, scope).await.unwrap();
    app.fhir_caller(&t.access_token).await.unwrap()
}

/// Every page of `$everything`, following the cursors.
async fn everything(app: &App, who: &FhirCaller, patient: &str, count: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let page = app.fhir_everything(who, patient, BASE, Some(count), cursor.as_deref()).await.unwrap();
        all.extend(page["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()));
        let next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").cloned();
        match next {
            Some(l) => cursor = Some(l["url"].as_str().unwrap().split("_cursor=").nth(1).unwrap().to_owned()),
            None => return all,
        }
    }
    panic!("paging never ended");
}

async fn a_linked_app_reads_exactly_the_online_view(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let other = adult(&app, tp.practice.id).await.unwrap();
    let now = Utc::now();
    let seen: Vec<_> =
        (0..5).map(|i| consultation(&pat, now - Duration::days(10 + i), &format!("VISIBLE-{i} chest clear"))).collect();
    let hidden = withheld_entries(&pat, now - Duration::days(3), "SECRET-FHIR");
    let theirs = consultation(&other, now - Duration::days(2), "OTHER-PATIENT");
    let audit = fixtures::audit(Action::EntryCreate, None);
    app.store.add_entries(tp.practice.id, &seen, &audit).await.unwrap();
    app.store.add_entries(tp.practice.id, &hidden, &audit).await.unwrap();
    app.store.add_entries(tp.practice.id, std::slice::from_ref(&theirs), &audit).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();

    // The token endpoint: the app's own credentials and link only; offered scopes only.
    assert!(matches!(
        app.fhir_token(&client, "wrong", "refresh_token", &link, "").await,
        Err(AppError::Unauthenticated(_))
    ));
    assert!(matches!(app.fhir_token(&client, &secret, "password", &link, "").await, Err(AppError::BadRequest(_))));
    assert!(matches!(
        app.fhir_token(&client, &secret, "refresh_token", &link, "system/*.read").await,
        Err(AppError::BadRequest(_))
    ));
    assert!(matches!(
        app.fhir_token(&client, &secret, "refresh_token", "lnk_forged", "").await,
        Err(AppError::Unauthenticated(_))
    ));
    let granted = app.fhir_token(&client, &secret, "refresh_token", &link, "").await.unwrap();
    assert_eq!((granted.scope.as_str(), granted.patient.clone()), ("patient/*.read", pat.id.to_string()));
    let who = app.fhir_caller(&granted.access_token).await.unwrap();
    assert!(matches!(app.fhir_caller("fat_0000").await, Err(AppError::Unauthenticated(_))));

    // Reads: its own patient; another patient is not known; a hidden entry answers exactly as a
    // made-up id does (T2).
    let me = app.fhir_read(&who, "Patient", &pat.id.to_string()).await.unwrap();
    assert_eq!(me["identifier"][0]["value"], pat.nhs_number.as_str());
    let unknown = |r: Result<Value, AppError>| match r {
        Err(AppError::NotFound(m)) => m,
        other => panic!("expected not found, got {other:?}"),
    };
    unknown(app.fhir_read(&who, "Patient", &other.id.to_string()).await);
    assert!(app.fhir_read(&who, "Encounter", &seen[0].id.to_string()).await.is_ok());
    for h in &hidden {
        let t = caldicott_app::fhir_out::resource_type(h.kind());
        let said = unknown(app.fhir_read(&who, t, &h.id.to_string()).await);
        let made_up = uuid::Uuid::now_v7().to_string();
        let said_made_up = unknown(app.fhir_read(&who, t, &made_up).await);
        assert_eq!(said.replace(&h.id.to_string(), "X"), said_made_up.replace(&made_up, "X"));
    }
    unknown(app.fhir_read(&who, "Encounter", &theirs.id.to_string()).await);

    // Searches and $everything: the visible entries, once each, nothing hidden, in any trace.
    let found = app.fhir_search(&who, "Encounter", BASE, &Search::default()).await.unwrap();
    let text = found.to_string();
    assert!((0..5).all(|i| text.contains(&format!("VISIBLE-{i}"))));
    let everything_of = everything(&app, &who, &pat.id.to_string(), "2").await;
    let all = serde_json::to_string(&everything_of).unwrap();
    assert!(!all.contains("SECRET-FHIR") && !all.contains("OTHER-PATIENT") && !all.contains("NOPAT"));
    assert!(!all.contains("\"security\""), "what goes to an app carries no labels");
    for h in &hidden {
        assert!(!all.contains(&h.id.to_string()) && !text.contains(&h.id.to_string()));
    }
    let ids: Vec<&str> = everything_of.iter().filter_map(|r| r["id"].as_str()).collect();
    let unique: HashSet<&&str> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "no duplicates across pages");
    assert_eq!(everything_of.iter().filter(|r| r["resourceType"] == "Encounter").count(), 5, "no gaps");
    // Another patient's search, or $everything, is not this token's to ask.
    let theirs_search = Search { patient: Some(other.id.to_string()), ..Default::default() };
    assert!(matches!(app.fhir_search(&who, "Encounter", BASE, &theirs_search).await, Err(AppError::NotFound(_))));
    assert!(matches!(
        app.fhir_everything(&who, &other.id.to_string(), BASE, None, None).await,
        Err(AppError::NotFound(_))
    ));
    // Bad paging input is named.
    let bad = Search { count: Some("0".into()), ..Default::default() };
    assert!(matches!(app.fhir_search(&who, "Encounter", BASE, &bad).await, Err(AppError::BadRequest(_))));

    // The practice and its clinicians; another practice's Organization is not known.
    let org = app.fhir_read(&who, "Organization", &tp.practice.id.to_string()).await.unwrap();
    assert_eq!(org["identifier"][0]["value"], tp.practice.ods_code.as_str());
    unknown(app.fhir_read(&who, "Organization", &uuid::Uuid::now_v7().to_string()).await);
    let doctors = app.fhir_search(&who, "Practitioner", BASE, &Search::default()).await.unwrap();
    assert!(doctors.to_string().contains(&tp.clinician.name));
    let doctor = app.fhir_read(&who, "Practitioner", &tp.clinician.staff.to_string()).await.unwrap();
    assert_eq!(doctor["name"][0]["text"], tp.clinician.name.as_str());

    // Narrower scopes: Observation only.
    let narrow = app_token(&app, &client, &secret, &link, "patient/Observation.read").await;
    assert!(matches!(
        app.fhir_search(&narrow, "Encounter", BASE, &Search::default()).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(app.fhir_search(&narrow, "Observation", BASE, &Search::default()).await.is_ok());

    // A cursor is bound to the caller that was given it.
    let staff = FhirCaller::Staff(tp.clinician.clone());
    let page = app.fhir_everything(&who, &pat.id.to_string(), BASE, Some("1"), None).await.unwrap();
    let next = page["link"][1]["url"].as_str().unwrap().split("_cursor=").nth(1).unwrap().to_owned();
    assert!(matches!(
        app.fhir_everything(&staff, &pat.id.to_string(), BASE, Some("1"), Some(&next)).await,
        Err(AppError::BadRequest(_))
    ));

    // Practice-facing: the whole record, hidden entries labelled NOPAT.
    let full = everything(&app, &staff, &pat.id.to_string(), "50").await;
    for h in &hidden {
        let r = full.iter().find(|r| r["id"] == h.id.to_string()).expect("the practice sees hidden entries");
        assert_eq!(r["meta"]["security"][0]["code"], "NOPAT");
    }
    let shown = full.iter().find(|r| r["id"] == seen[0].id.to_string()).unwrap();
    assert_eq!(shown["meta"]["security"][0]["code"], "N", "shown online: confidentiality normal");
    // Administrators do not read records.
    let admin_token = tp.admin_token.clone();
    assert!(matches!(app.fhir_caller(&admin_token).await, Err(AppError::Forbidden(_))));
    let manager = app.fhir_caller(&tp.manager_token).await.unwrap();
    assert!(app.fhir_read(&manager, "Patient", &pat.id.to_string()).await.is_ok());

    // Every read is audited, as the app.
    let events = app.store.audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "fhir.token_issue"));
    assert!(events.iter().any(|e| e.actor_kind == "app" && e.entity.contains("$everything")));

    // Revocation takes effect on the next request.
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    app.reset_app_links(&reception, pat.nhs_number.as_str()).await.unwrap();
    assert!(matches!(app.fhir_caller(&granted.access_token).await, Err(AppError::Unauthenticated(_))));
    assert!(matches!(
        app.fhir_token(&client, &secret, "refresh_token", &link, "").await,
        Err(AppError::Unauthenticated(_))
    ));
}

async fn a_linked_app_books_and_cancels_an_appointment(t: &TestStore) {
    use chrono::Datelike;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let day = (Utc::now() + Duration::days(5)).date_naive();
    let clinic = caldicott_app::appointments::NewClinic {
        clinician: tp.clinician.staff.to_string(),
        day: day.day().to_string(),
        month: day.month().to_string(),
        year: day.year().to_string(),
        start: "09:00".into(),
        end: "09:30".into(),
        slot_minutes: "15".into(),
        slot_type: "gp_face_to_face".into(),
        online_bookable: true,
        location: "Room 1".into(),
    };
    app.create_clinic(&reception, &clinic).await.unwrap().unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let reader = app_token(&app, &client, &secret, &link, "patient/*.read").await;
    let booker = app_token(&app, &client, &secret, &link, "patient/*.read patient/Appointment.write").await;
    let slots = app.fhir_search(&booker, "Slot", BASE, &Search::default()).await.unwrap();
    let free: Vec<String> =
        slots["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(free.len(), 2, "two 15-minute slots");
    let body = serde_json::json!({
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{ "reference": format!("Slot/{}", free[0]) }],
        "participant": [{ "actor": { "reference": format!("Patient/{}", pat.id) }, "status": "accepted" }],
    });
    // Reading is not booking; staff book in the appointment book; bad bodies are named.
    assert!(matches!(app.fhir_create(&reader, "Appointment", &body).await, Err(AppError::Forbidden(_))));
    let staff = FhirCaller::Staff(tp.clinician.clone());
    assert!(matches!(app.fhir_create(&staff, "Appointment", &body).await, Err(AppError::Forbidden(_))));
    let no_slot = serde_json::json!({ "resourceType": "Appointment" });
    assert!(matches!(app.fhir_create(&booker, "Appointment", &no_slot).await, Err(AppError::BadRequest(_))));
    let someone_else = serde_json::json!({
        "resourceType": "Appointment",
        "slot": [{ "reference": format!("Slot/{}", free[0]) }],
        "participant": [{ "actor": { "reference": format!("Patient/{}", uuid::Uuid::now_v7()) } }],
    });
    assert!(matches!(app.fhir_create(&booker, "Appointment", &someone_else).await, Err(AppError::Forbidden(_))));
    let booked = app.fhir_create(&booker, "Appointment", &body).await.unwrap();
    assert_eq!(booked["status"], "booked");
    // The slot is no longer free; booking it again is refused.
    let left = app.fhir_search(&booker, "Slot", BASE, &Search::default()).await.unwrap();
    assert_eq!(left["entry"].as_array().unwrap().len(), 1);
    assert!(app.fhir_create(&booker, "Appointment", &body).await.is_err());
    let mine = app.fhir_search(&reader, "Appointment", BASE, &Search::default()).await.unwrap();
    assert_eq!(mine["entry"][0]["resource"]["id"], booked["id"]);
    let id = booked["id"].as_str().unwrap().to_owned();
    assert_eq!(app.fhir_read(&reader, "Appointment", &id).await.unwrap()["status"], "booked");
    // Only cancelling is offered; then it is cancelled, audited as the app.
    let moved =
        serde_json::json!({ "resourceType": "Appointment", "status": "booked", "start": "2030-01-01T09:00:00Z" });
    assert!(matches!(app.fhir_update(&booker, "Appointment", &id, &moved).await, Err(AppError::BadRequest(_))));
    let cancel = serde_json::json!({ "resourceType": "Appointment", "status": "cancelled" });
    assert!(matches!(app.fhir_update(&reader, "Appointment", &id, &cancel).await, Err(AppError::Forbidden(_))));
    assert_eq!(app.fhir_update(&booker, "Appointment", &id, &cancel).await.unwrap()["status"], "cancelled");
    assert!(matches!(
        app.fhir_update(&booker, "Appointment", &uuid::Uuid::now_v7().to_string(), &cancel).await,
        Err(AppError::NotFound(_))
    ));
    let events = app.store.audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    for action in ["appointment.book", "appointment.cancel"] {
        assert!(events.iter().any(|e| e.action == action && e.actor_kind == "app"), "{action}");
    }
}

/// T1/T2 as a property: over generated records, no entry the patient cannot see online ever
/// reaches an app, by read, search or `$everything`, and every one they can see arrives once.
async fn no_hidden_entry_reaches_an_app(t: &TestStore, flags: Vec<(u8, bool, bool, bool)>) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = Utc::now();
    let mut entries = Vec::new();
    for (i, (kind, hide, nopat, unfiled)) in flags.iter().enumerate() {
        let mut e = consultation(&pat, now - Duration::hours(i as i64 + 1), &format!("ENTRY-{i}"));
        if kind % 3 == 1 {
            e.body = EntryBody::TestResult {
                test: format!("ENTRY-{i} result"),
                value: "5".into(),
                unit: "mmol/L".into(),
                range: String::new(),
                abnormal: false,
                filing: if *unfiled { Filing::Unfiled } else { Filing::Filed },
            };
        } else if kind % 3 == 2 {
            e.body = EntryBody::Allergy { substance: format!("ENTRY-{i} nuts"), reaction: "Rash".into() };
        }
        if *hide {
            e.visibility = caldicott_core::entry::OnlineVisibility::Hidden(
                caldicott_core::entry::Redaction::new(
                    caldicott_core::entry::HiddenReason::ThirdParty,
                    "test",
                    "Dr",
                    now,
                )
                .unwrap(),
            );
        }
        e.nopat = *nopat;
        entries.push(e);
    }
    app.store.add_entries(tp.practice.id, &entries, &fixtures::audit(Action::EntryCreate, None)).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let who = app_token(&app, &client, &secret, &link, "").await;
    let staff = FhirCaller::Staff(tp.clinician.clone());
    // The online view staff preview shows: the reference for what the app must get.
    let full = everything(&app, &staff, &pat.id.to_string(), "1000").await;
    let hidden_ids: HashSet<String> = full
        .iter()
        .filter(|r| r["meta"]["security"][0]["code"] == "NOPAT")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let got = everything(&app, &who, &pat.id.to_string(), "3").await;
    let got_ids: Vec<String> = got.iter().skip(2).map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    let expected: HashSet<String> =
        entries.iter().map(|e| e.id.to_string()).filter(|id| !hidden_ids.contains(id)).collect();
    assert_eq!(got_ids.len(), expected.len(), "each shown entry once");
    assert_eq!(got_ids.iter().cloned().collect::<HashSet<_>>(), expected);
    let mut responses = serde_json::to_string(&got).unwrap();
    for t in ["Encounter", "Observation", "AllergyIntolerance"] {
        responses.push_str(&app.fhir_search(&who, t, BASE, &Search::default()).await.unwrap().to_string());
    }
    for e in &entries {
        let t = caldicott_app::fhir_out::resource_type(e.kind());
        match app.fhir_read(&who, t, &e.id.to_string()).await {
            Ok(r) => responses.push_str(&r.to_string()),
            Err(AppError::NotFound(_)) => assert!(hidden_ids.contains(&e.id.to_string())),
            Err(other) => panic!("{other:?}"),
        }
    }
    for (i, e) in entries.iter().enumerate() {
        if hidden_ids.contains(&e.id.to_string()) {
            assert!(!responses.contains(&e.id.to_string()), "hidden entry {i} reached the app");
            assert!(!responses.contains(&format!("ENTRY-{i} ")), "hidden entry {i}'s words reached the app");
        }
    }
}

fn records() -> impl Strategy<Value = Vec<(u8, bool, bool, bool)>> {
    proptest::collection::vec(
        (0u8..3, any::<bool>(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.2)),
        1..14,
    )
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(&super::test_support::sqlite().await.unwrap()).await; })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(&super::test_support::postgres().await.unwrap()).await; })* }
    };
}

both!(a_linked_app_reads_exactly_the_online_view, a_linked_app_books_and_cancels_an_appointment);

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn generated_records_leak_nothing_to_apps_sqlite(flags in records()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async { no_hidden_entry_reaches_an_app(&test_support::sqlite().await.unwrap(), flags).await });
    }

    #[test]
    fn generated_records_leak_nothing_to_apps_postgres(flags in records()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async { no_hidden_entry_reaches_an_app(&test_support::postgres().await.unwrap(), flags).await });
    }
}
