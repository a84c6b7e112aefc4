//! Results over time (issue 26): a patient, or a proxy whose scope allows it, follows a result's
//! history; only the readings the visibility engine shows them are in it (R8, T1): a hidden or
//! unfiled result is absent from the series, its count and its latest value, and a series made
//! only of hidden readings does not exist for them. Staff see every reading, each marked with
//! whether the patient sees it. Both databases.

use caldicott_app::fixtures::{self, adult};
use caldicott_app::{App, AppError, StaffPrincipal};
use caldicott_core::access::AccessLevel;
use caldicott_core::audit::Action;
use caldicott_core::entry::*;
use caldicott_core::patient::Patient;
use caldicott_core::snomed::{Coding, ConceptId};
use caldicott_core::trends::Flag;
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), fixtures::test_clock())
}

const HBA1C: &str = "1019431000000105";
const CHOLESTEROL: &str = "1005671000000105";
const BP: &str = "75367002";

fn coded(code: &str, term: &str, e: Entry) -> Entry {
    Entry { code: Some(Coding { concept: ConceptId::parse(code).unwrap(), term: term.into() }), ..e }
}

/// A filed laboratory result entered `days_ago` days before the test clock's now.
fn result(p: &Patient, days_ago: i64, code: &str, value: &str, unit: &str, range: &str) -> Entry {
    let mut e = fixtures::consultation(p, fixtures::now() - Duration::days(days_ago), "");
    e.body = EntryBody::TestResult {
        test: "Test".into(),
        value: value.into(),
        unit: unit.into(),
        range: range.into(),
        abnormal: false,
        filing: Filing::Filed,
    };
    coded(code, "Test", e)
}

fn hidden(mut e: Entry) -> Entry {
    e.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::PotentiallyHarmful, "to be discussed first", "Dr Test", fixtures::now()).unwrap(),
    );
    e
}

async fn add(app: &App, practice: caldicott_core::ids::PracticeId, p: &Patient, entries: &[Entry]) {
    fixtures::add_entries(app, practice, Some(p.id), entries).await.unwrap();
}

async fn signed_in(
    app: &App,
    staff: &StaffPrincipal,
    p: &Patient,
) -> caldicott_app::patient_services::PatientPrincipal {
    let (_, _, cookie) = fixtures::patient_account(app, staff, p, "P9").await.unwrap();
    app.patient_signed_in(&cookie).await.unwrap().who
}

async fn a_patient_follows_only_the_readings_shown_to_them(t: &TestStore) {
    // R8, T1: hidden, unfiled and superseded results never reach the patient's charts.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let shown_old = result(&pat, 300, HBA1C, "58", "mmol/mol", "20-41");
    let shown_new = result(&pat, 30, HBA1C, "50", "mmol/mol", "20-41");
    let secret = hidden(result(&pat, 100, HBA1C, "987.6", "mmol/mol", "20-41"));
    let mut unfiled = result(&pat, 5, HBA1C, "876.5", "mmol/mol", "20-41");
    unfiled.body = EntryBody::TestResult {
        test: "Test".into(),
        value: "876.5".into(),
        unit: "mmol/mol".into(),
        range: "20-41".into(),
        abnormal: true,
        filing: Filing::Unfiled,
    };
    // A series whose only reading is hidden does not exist for the patient.
    let only_hidden = hidden(result(&pat, 40, CHOLESTEROL, "765.4", "mmol/L", "<5.0"));
    let bp = coded(
        BP,
        "Blood pressure",
        Entry {
            body: EntryBody::Coded { value: Some("142/91 mmHg".into()) },
            ..fixtures::consultation(&pat, fixtures::now() - Duration::days(20), "")
        },
    );
    add(&app, tp.practice.id, &pat, &[shown_old.clone(), shown_new.clone(), secret.clone(), unfiled, only_hidden, bp])
        .await;
    let me = signed_in(&app, &tp.clinician, &pat).await;

    let all = app.my_results(&me, None, None).await.unwrap();
    assert!(all.no_record.is_none());
    let slugs: Vec<&str> = all.series.iter().map(|s| s.slug.as_str()).collect();
    assert_eq!(slugs, ["hba1c", "blood-pressure"], "the cholesterol series holds only a hidden reading");
    let hba1c = &all.series[0];
    assert_eq!(hba1c.readings.iter().map(|r| r.entry).collect::<Vec<_>>(), [shown_old.id, shown_new.id]);
    assert_eq!(hba1c.latest().unwrap().as_recorded, "50 mmol/mol");
    assert_eq!(hba1c.readings[0].flag, Flag::High, "58 is above 20-41");
    let text = format!("{all:?}");
    for leak in ["987.6", "876.5", "765.4", &secret.id.to_string()] {
        assert!(!text.contains(leak), "{leak} reached the patient");
    }
    let bp = &all.series[1];
    assert_eq!(bp.readings[0].values, [142.0, 91.0]);
    assert_eq!(bp.readings[0].flag, Flag::High, "142/91 is at or above NICE's 140/90");

    let one = app.my_results(&me, None, Some("hba1c")).await.unwrap();
    assert_eq!(one.series.len(), 1);
    assert_eq!(one.series[0].readings.len(), 2);
    // Hidden and never recorded answer alike.
    let hidden_only = app.my_results(&me, None, Some("cholesterol")).await.unwrap_err();
    let never = app.my_results(&me, None, Some("weight")).await.unwrap_err();
    let unknown = app.my_results(&me, None, Some("../record")).await.unwrap_err();
    assert!(matches!(&hidden_only, AppError::NotFound(_)), "{hidden_only:?}");
    assert_eq!(hidden_only.to_string(), never.to_string());
    assert_eq!(hidden_only.to_string(), unknown.to_string());

    // Each look is audited as a look at the record online, with what was shown.
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    let looks: Vec<&str> = trail
        .iter()
        .filter(|e| e.action == "record.view_online" && e.actor_kind == "patient")
        .map(|e| e.detail.as_str())
        .collect();
    assert!(looks.iter().any(|d| d.contains("results series=all") && d.ends_with("entries=3")), "{looks:?}");
    assert!(looks.iter().any(|d| d.contains("results series=hba1c") && d.ends_with("entries=2")), "{looks:?}");

    // Staff see every reading, each marked with whether the patient sees it online.
    let staff = app.staff_results(&tp.clinician, pat.nhs_number.as_str(), Some("hba1c")).await.unwrap();
    let values: Vec<f64> = staff.series[0].readings.iter().map(|r| r.values[0]).collect();
    assert_eq!(values, [58.0, 987.6, 50.0, 876.5]);
    assert!(staff.online[&shown_new.id].visible);
    let why = staff.online[&secret.id].withheld.as_ref().expect("the hidden reading is marked");
    assert!(!staff.online[&secret.id].visible && !why.reason.is_empty());
    assert!(app.staff_results(&tp.clinician, pat.nhs_number.as_str(), Some("cholesterol")).await.is_ok());
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "record.view_staff" && e.detail.contains("results series=hba1c")));
}

async fn a_proxy_sees_results_only_where_their_scope_includes_them(t: &TestStore) {
    // R15, R19: results are part of the detailed record; a proxy at summary level sees none.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let other_parent = adult(&app, tp.practice.id).await.unwrap();
    let child = fixtures::person(tp.practice.id, fixtures::today() - Duration::days(365 * 8));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let granted = fixtures::today() - Duration::days(400);
    let summary =
        fixtures::proxy_link(&app, tp.practice.id, &child, &parent, AccessLevel::Summary, granted).await.unwrap();
    let detailed = fixtures::proxy_link(&app, tp.practice.id, &child, &other_parent, AccessLevel::Detailed, granted)
        .await
        .unwrap();
    add(&app, tp.practice.id, &child, &[result(&child, 30, "1022541000000102", "121", "g/L", "115-165")]).await;

    let me = signed_in(&app, &tp.clinician, &parent).await;
    let seen = app.my_results(&me, Some(summary.id), None).await.unwrap();
    assert!(seen.series.is_empty(), "{:?}", seen.series);
    assert!(matches!(
        app.my_results(&me, Some(summary.id), Some("code-1022541000000102")).await,
        Err(AppError::NotFound(_))
    ));
    // Another person's link is not this account's to use.
    assert!(matches!(app.my_results(&me, Some(detailed.id), None).await, Err(AppError::NotFound(_))));

    let them = signed_in(&app, &tp.clinician, &other_parent).await;
    let seen = app.my_results(&them, Some(detailed.id), None).await.unwrap();
    assert_eq!(seen.series.len(), 1);
    assert_eq!(seen.series[0].unit, "g/L");
    assert!(seen.whose.contains(&child.name.given));
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, child.id, 20).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "record.view_online" && e.actor_kind == "proxy"), "audited as the proxy");
}

async fn an_enhanced_review_shows_no_results_and_gives_no_clinical_reason(t: &TestStore) {
    // R2/R3: an active 104 withholds automatic access; the patient is not told why.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let review = coded(
        caldicott_core::snomed::ENHANCED_REVIEW_INDICATED,
        "Enhanced review indicated before granting access to own health record",
        Entry {
            body: EntryBody::Coded { value: None },
            ..fixtures::consultation(&pat, fixtures::now() - Duration::days(60), "")
        },
    );
    add(&app, tp.practice.id, &pat, &[review, result(&pat, 30, HBA1C, "50", "mmol/mol", "20-41")]).await;
    let me = signed_in(&app, &tp.clinician, &pat).await;
    let seen = app.my_results(&me, None, None).await.unwrap();
    assert!(seen.series.is_empty());
    let sentence = seen.no_record.expect("the page says there is no record to show");
    assert!(!sentence.to_lowercase().contains("review") && !sentence.contains("104"), "{sentence}");
}

/// The Observations of a searchset page, and the cursor of the next page.
fn page_of(bundle: &serde_json::Value) -> (Vec<serde_json::Value>, Option<String>) {
    let found = bundle["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone());
    let next = bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").map(|l| {
        let url = l["url"].as_str().unwrap();
        assert!(url.contains("code=http%3A%2F%2Fsnomed.info%2Fsct%7C"), "the next link keeps the search: {url}");
        url.split("_cursor=").nth(1).unwrap().split('&').next().unwrap().to_owned()
    });
    (found.collect(), next)
}

async fn an_app_draws_a_result_over_time_by_code_date_and_sort(t: &TestStore) {
    // Issue 26 (FHIR: Observation?patient=&code=&date= with _sort=date), R8/T1: an app gets the
    // same readings the patient's chart shows, in date order, and never a hidden one.
    use caldicott_app::fhir_api::{FhirCaller, Search, TokenRequest};
    let app = App::new(t.store.clone(), fixtures::test_clock()).with_public_url("http://test").unwrap();
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let readings = [
        result(&pat, 700, HBA1C, "64", "mmol/mol", "20-41"),
        result(&pat, 400, HBA1C, "58", "mmol/mol", "20-41"),
        hidden(result(&pat, 200, HBA1C, "987.6", "mmol/mol", "20-41")),
        result(&pat, 30, HBA1C, "50", "mmol/mol", "20-41"),
        result(&pat, 20, CHOLESTEROL, "4.4", "mmol/L", "<5.0"),
    ];
    add(&app, tp.practice.id, &pat, &readings).await;
    let (client, secret, link) = fixtures::linked_app(&app, &tp, &pat).await.unwrap();
    let token = app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await.unwrap();
    let who = app.fhir_caller(&token.access_token).await.unwrap();
    let base = "http://test/fhir/r4";
    let code = Some(format!("http://snomed.info/sct|{HBA1C}"));
    let search = Search { code: code.clone(), sort: Some("date".into()), ..Search::default() };
    let bundle = app.fhir_search(&who, "Observation", base, &search).await.unwrap();
    let (found, next) = page_of(&bundle);
    let values: Vec<f64> = found.iter().map(|o| o["valueQuantity"]["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [64.0, 58.0, 50.0], "oldest first, HbA1c only, the hidden reading absent");
    assert!(next.is_none());
    assert!(!bundle.to_string().contains("987.6") && !bundle.to_string().contains(&readings[2].id.to_string()));

    // Newest first, a page of one at a time: every reading once, in order, none hidden.
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let q = Search {
            code: code.clone(),
            sort: Some("-date".into()),
            count: Some("1".into()),
            cursor,
            ..Search::default()
        };
        let (found, next) = page_of(&app.fhir_search(&who, "Observation", base, &q).await.unwrap());
        seen.extend(found.iter().map(|o| o["valueQuantity"]["value"].as_f64().unwrap()));
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, [50.0, 58.0, 64.0]);

    // A date range: every date parameter must hold.
    let from = (fixtures::today() - Duration::days(500)).format("%Y-%m-%d").to_string();
    let q =
        Search { code: code.clone(), date: vec![format!("ge{from}")], sort: Some("date".into()), ..Search::default() };
    let (found, _) = page_of(&app.fhir_search(&who, "Observation", base, &q).await.unwrap());
    assert_eq!(found.len(), 2, "{found:?}");
    let q = Search { date: vec![format!("ge{from}"), format!("lt{from}")], ..Search::default() };
    assert!(page_of(&app.fhir_search(&who, "Observation", base, &q).await.unwrap()).0.is_empty());

    // Bad parameters are refused with words, and change nothing.
    for bad in [
        Search { date: vec!["2024-13".into()], ..Search::default() },
        Search { sort: Some("value".into()), ..Search::default() },
        Search { code: Some("a|b|c".into()), ..Search::default() },
        Search { code: Some("x".into()), strict: true, ..Search::default() },
    ] {
        let resource = if bad.strict { "Condition" } else { "Observation" };
        assert!(matches!(app.fhir_search(&who, resource, base, &bad).await, Err(AppError::BadRequest(_))), "{bad:?}");
    }
    // A cursor of one search does not serve another caller.
    let q = Search { code: code.clone(), count: Some("1".into()), ..Search::default() };
    let (_, next) = page_of(&app.fhir_search(&who, "Observation", base, &q).await.unwrap());
    let staff = FhirCaller::Staff(tp.clinician.clone());
    let stolen = Search { patient: Some(pat.id.to_string()), cursor: next, ..q.clone() };
    assert!(matches!(app.fhir_search(&staff, "Observation", base, &stolen).await, Err(AppError::BadRequest(_))));

    // The practice reads every reading, the hidden one labelled.
    let q = Search { patient: Some(pat.id.to_string()), code, sort: Some("date".into()), ..Search::default() };
    let (found, _) = page_of(&app.fhir_search(&staff, "Observation", base, &q).await.unwrap());
    assert_eq!(found.len(), 4);
    assert!(found[2].to_string().contains("NOPAT"), "{}", found[2]);
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    assert!(trail.iter().any(|e| e.detail.contains("search entries=3 code=")), "each search is audited");
}

both!(
    a_patient_follows_only_the_readings_shown_to_them,
    a_proxy_sees_results_only_where_their_scope_includes_them,
    an_enhanced_review_shows_no_results_and_gives_no_clinical_reason,
    an_app_draws_a_result_over_time_by_code_date_and_sort
);
