#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The FHIR API's use cases (T1, T2, T6 for the FHIR routes): tokens and scopes, the patient-bound
//! view with the visibility engine (the patient's own, and a proxy's), `$everything` paging,
//! MedicationStatement, `_include`, documents and Binary, practice integrations with `system/`
//! scopes, practice-facing NOPAT labels, and revocation on the next request. Both databases.

use caldicott_app::documents::NewDocument;
use caldicott_app::fhir_api::{
    client_assertion, new_key_pair, FhirCaller, NewIntegration, Search, TokenError, TokenRequest,
};
use caldicott_app::fixtures::{self, adult, consultation, linked_app, withheld_entries};
use caldicott_app::{auth, App, AppError};
use caldicott_core::access::{AccessLevel, ProxyStatus};
use caldicott_core::audit::Action;
use caldicott_core::entry::*;
use caldicott_core::ids::EntryId;
use caldicott_store::both;
use caldicott_store::test_support::{self, TestStore};
use chrono::{Duration, Utc};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::HashSet;

const BASE: &str = "http://test/fhir/r4";
const TOKEN_URL: &str = "http://test/fhir/r4/token";

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock()).with_public_url("http://test").unwrap()
}

async fn app_token(app: &App, client: &str, secret: &str, link: &str, scope: &str) -> FhirCaller {
    let t = app.fhir_token(&TokenRequest::app(client, secret, link, scope)).await.unwrap();
    app.fhir_caller(&t.access_token).await.unwrap()
}

fn oauth_error(r: Result<caldicott_app::fhir_api::TokenResponse, TokenError>) -> &'static str {
    match r {
        Err(TokenError::OAuth { error, .. }) => error,
        other => panic!("expected an OAuth error, got {other:?}"),
    }
}

fn unknown(r: Result<Value, AppError>) -> String {
    match r {
        Err(AppError::NotFound(m)) => m,
        other => panic!("expected not found, got {other:?}"),
    }
}

/// Every page of `$everything`, following the cursors.
async fn everything(app: &App, who: &FhirCaller, patient: &str, count: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let page = app.fhir_everything(who, patient, BASE, Some(count), cursor.as_deref()).await.unwrap();
        all.extend(resources(&page));
        let next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").cloned();
        match next {
            Some(l) => cursor = Some(l["url"].as_str().unwrap().split("_cursor=").nth(1).unwrap().to_owned()),
            None => return all,
        }
    }
    panic!("paging never ended");
}

use caldicott_app::fixtures::no_empty_arrays;

/// The resources of a Bundle, in order.
fn resources(bundle: &Value) -> Vec<Value> {
    no_empty_arrays(bundle);
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn repeat(p: &caldicott_core::patient::Patient, at: chrono::DateTime<Utc>, drug: &str) -> Entry {
    let mut e = consultation(p, at, "");
    e.body = EntryBody::Medication {
        drug: drug.into(),
        dosage: "One daily".into(),
        quantity: "28 tablets".into(),
        course: MedicationCourse::RepeatTemplate,
    };
    e
}

fn issue_of(template: &Entry, at: chrono::DateTime<Utc>) -> Entry {
    let EntryBody::Medication { drug, dosage, quantity, .. } = &template.body else { panic!("a repeat") };
    Entry {
        id: EntryId::from_uuid(caldicott_app::new_id()),
        event_date: at.date_naive(),
        entered_at: at,
        visibility: OnlineVisibility::Visible,
        body: EntryBody::MedicationIssue {
            drug: drug.clone(),
            dosage: dosage.clone(),
            quantity: quantity.clone(),
            template: Some(template.id),
        },
        ..template.clone()
    }
}

fn hide(e: &mut Entry) {
    e.visibility =
        OnlineVisibility::Hidden(Redaction::new(HiddenReason::ThirdParty, "test", "Dr", e.entered_at).unwrap());
}

async fn a_linked_app_reads_exactly_the_online_view(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let other = adult(&app, tp.practice.id).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let seen: Vec<_> =
        (0..5).map(|i| consultation(&pat, now - Duration::days(10 + i), &format!("VISIBLE-{i} chest clear"))).collect();
    let hidden = withheld_entries(&pat, now - Duration::days(3), "SECRET-FHIR");
    let theirs = consultation(&other, now - Duration::days(2), "OTHER-PATIENT");
    let audit = fixtures::audit(Action::EntryCreate, None);
    app.store_for_tests().add_entries(tp.practice.id, &seen, &audit).await.unwrap();
    app.store_for_tests().add_entries(tp.practice.id, &hidden, &audit).await.unwrap();
    app.store_for_tests().add_entries(tp.practice.id, std::slice::from_ref(&theirs), &audit).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();

    // The token endpoint: the app's own credentials and link only; offered scopes only.
    assert_eq!(oauth_error(app.fhir_token(&TokenRequest::app(&client, "wrong", &link, "")).await), "invalid_client");
    let password = TokenRequest { grant_type: "password".into(), ..TokenRequest::app(&client, &secret, &link, "") };
    assert_eq!(oauth_error(app.fhir_token(&password).await), "unsupported_grant_type");
    let no_client = TokenRequest { basic: None, ..TokenRequest::app(&client, &secret, &link, "") };
    assert_eq!(oauth_error(app.fhir_token(&no_client).await), "invalid_client");
    assert_eq!(
        oauth_error(app.fhir_token(&TokenRequest::app(&client, &secret, &link, "system/*.read")).await),
        "invalid_scope"
    );
    assert_eq!(
        oauth_error(app.fhir_token(&TokenRequest::app(&client, &secret, "lnk_forged", "")).await),
        "invalid_grant"
    );
    // Someone the holder does not act for is refused.
    let stranger =
        TokenRequest { patient: Some(other.id.to_string()), ..TokenRequest::app(&client, &secret, &link, "") };
    assert_eq!(oauth_error(app.fhir_token(&stranger).await), "invalid_grant");
    let granted = app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await.unwrap();
    assert_eq!((granted.scope.as_str(), granted.patient.clone()), ("patient/*.read", Some(pat.id.to_string())));
    let who = app.fhir_caller(&granted.access_token).await.unwrap();
    assert!(matches!(app.fhir_caller("fat_0000").await, Err(AppError::Unauthenticated(_))));

    // Reads: its own patient; another patient is not known; a hidden entry answers exactly as a
    // made-up id does (T2).
    let me = app.fhir_read(&who, "Patient", &pat.id.to_string()).await.unwrap();
    assert_eq!(me["identifier"][0]["value"], pat.nhs_number.as_str());
    unknown(app.fhir_read(&who, "Patient", &other.id.to_string()).await);
    assert!(app.fhir_read(&who, "Encounter", &seen[0].id.to_string()).await.is_ok());
    for h in &hidden {
        let t = caldicott_fhir::write::resource_type(h.kind());
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
    let ids: Vec<String> = everything_of
        .iter()
        .map(|r| format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()))
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "no duplicates across pages");
    assert_eq!(everything_of.iter().filter(|r| r["resourceType"] == "Encounter").count(), 5, "no gaps");
    // Another patient's search, or $everything, is not this token's to ask.
    let theirs_search = Search { patient: Some(other.id.to_string()), ..Default::default() };
    assert!(matches!(app.fhir_search(&who, "Encounter", BASE, &theirs_search).await, Err(AppError::NotFound(_))));
    assert!(matches!(
        app.fhir_everything(&who, &other.id.to_string(), BASE, None, None).await,
        Err(AppError::NotFound(_))
    ));
    // Patient by NHS number: its own only; another's number finds nothing.
    let by_number =
        |n: &str| Search { identifier: Some(format!("https://fhir.nhs.uk/Id/nhs-number|{n}")), ..Default::default() };
    let mine = app.fhir_search(&who, "Patient", BASE, &by_number(pat.nhs_number.as_str())).await.unwrap();
    assert_eq!(mine["entry"][0]["resource"]["id"], pat.id.to_string());
    let not_mine = app.fhir_search(&who, "Patient", BASE, &by_number(other.nhs_number.as_str())).await.unwrap();
    assert!(resources(&not_mine).is_empty());
    assert!(!not_mine.to_string().contains(&other.id.to_string()));
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
    // Staff find a patient by NHS number.
    let found = app.fhir_search(&staff, "Patient", BASE, &by_number(pat.nhs_number.as_str())).await.unwrap();
    assert_eq!(found["entry"][0]["resource"]["id"], pat.id.to_string());
    assert!(matches!(
        app.fhir_search(&staff, "Patient", BASE, &Search { identifier: Some("123".into()), ..Default::default() })
            .await,
        Err(AppError::BadRequest(_))
    ));
    // Administrators do not read records.
    let admin_token = tp.admin_token.clone();
    assert!(matches!(app.fhir_caller(&admin_token).await, Err(AppError::Forbidden(_))));
    let manager = app.fhir_caller(&tp.manager_token).await.unwrap();
    assert!(app.fhir_read(&manager, "Patient", &pat.id.to_string()).await.is_ok());

    // Every read is audited, as the app.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "fhir.token_issue"));
    assert!(events.iter().any(|e| e.actor_kind == "app" && e.entity.contains("$everything")));

    // Revocation takes effect on the next request.
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    app.reset_app_links(&reception, pat.nhs_number.as_str()).await.unwrap();
    assert!(matches!(app.fhir_caller(&granted.access_token).await, Err(AppError::Unauthenticated(_))));
    assert_eq!(oauth_error(app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await), "invalid_grant");
}

/// An administrator turns a registered app off (a compromised app, or one that lost its
/// assurance): every link it holds is refused from the next request — the token it holds, a new
/// token, a new link — and only administrators may do it; turned on again, its links work.
async fn an_app_turned_off_is_refused_on_its_next_request(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let registered = app.registered_apps(&admin).await.unwrap();
    let wallet = registered.iter().find(|a| a.client_id == client).unwrap().clone();
    let granted = app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await.unwrap();
    let reader = app.fhir_caller(&granted.access_token).await.unwrap();
    assert!(app.fhir_read(&reader, "Patient", &pat.id.to_string()).await.is_ok());

    // Only an administrator turns an app off; a clinician or receptionist is refused and
    // nothing changes.
    for token in [&tp.clinician_token, &tp.receptionist_token] {
        let who = auth::authenticate(&app, token).await.unwrap();
        assert!(matches!(app.set_app_active(&who, &wallet.id.to_string(), false).await, Err(AppError::Forbidden(_))));
    }
    assert!(app.fhir_caller(&granted.access_token).await.is_ok());
    // An app of another practice, or a made-up id, is not found.
    let other = fixtures::practice(&app).await.unwrap();
    let other_admin = auth::authenticate(&app, &other.admin_token).await.unwrap();
    assert!(matches!(
        app.set_app_active(&other_admin, &wallet.id.to_string(), false).await,
        Err(AppError::NotFound(_))
    ));
    assert!(matches!(app.set_app_active(&admin, "not-an-id", false).await, Err(AppError::NotFound(_))));
    assert!(app.fhir_caller(&granted.access_token).await.is_ok(), "another practice cannot turn it off");

    app.set_app_active(&admin, &wallet.id.to_string(), false).await.unwrap();
    assert!(!app.registered_apps(&admin).await.unwrap().iter().find(|a| a.id == wallet.id).unwrap().active);
    // The token it holds, a new token and a new link are all refused.
    assert!(matches!(app.fhir_caller(&granted.access_token).await, Err(AppError::Unauthenticated(_))));
    // A turned-off app's own credentials no longer authenticate it (RFC 6749: invalid_client).
    assert_eq!(oauth_error(app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await), "invalid_client");
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    // (Another patient's letter: a new letter for `pat` would itself cut the link off, R21.)
    let second = adult(&app, tp.practice.id).await.unwrap();
    let letter = app.issue_linkage(&reception, second.nhs_number.as_str(), "P9").await.unwrap();
    let request = caldicott_app::apps::LinkRequest {
        ods_code: letter.ods_code,
        account_id: letter.account_id,
        linkage_key: letter.linkage_key,
        family_name: second.name.family.clone(),
        birth_date: second.date_of_birth.to_string(),
    };
    assert!(app.link_app(&client, &secret, &request).await.is_err(), "a turned-off app links no one");
    // Audited, as the administrator.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "app.change" && e.detail == "turned off" && e.entity == format!("app/{}", wallet.id)));

    // Turned on again: the link works again, and the second patient's letter links.
    app.set_app_active(&admin, &wallet.id.to_string(), true).await.unwrap();
    let again = app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await.unwrap();
    let reader = app.fhir_caller(&again.access_token).await.unwrap();
    assert!(app.fhir_read(&reader, "Patient", &pat.id.to_string()).await.is_ok());
    assert!(app.link_app(&client, &secret, &request).await.is_ok());
}

/// MedicationStatement beside MedicationRequest, and an issue of a hidden repeat (R12): the
/// issue is shown, but nothing of the repeat, not even its id, reaches the app.
async fn medication_statements_and_hidden_repeats(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let shown_repeat = repeat(&pat, now - Duration::days(40), "Amlodipine 5mg tablets");
    let mut hidden_repeat = repeat(&pat, now - Duration::days(39), "SECRET-DRUG 10mg");
    hide(&mut hidden_repeat);
    let issue_of_shown = issue_of(&shown_repeat, now - Duration::days(10));
    let issue_of_hidden = issue_of(&hidden_repeat, now - Duration::days(9));
    let mut acute = consultation(&pat, now - Duration::days(5), "");
    acute.body = EntryBody::Medication {
        drug: "Amoxicillin 500mg capsules".into(),
        dosage: "Three times a day".into(),
        quantity: "21 capsules".into(),
        course: MedicationCourse::Acute,
    };
    let entries = vec![
        shown_repeat.clone(),
        hidden_repeat.clone(),
        issue_of_shown.clone(),
        issue_of_hidden.clone(),
        acute.clone(),
    ];
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    // The patient's own account first (a new letter later would end the app's link).
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let who = app_token(&app, &client, &secret, &link, "").await;

    let statements = app.fhir_search(&who, "MedicationStatement", BASE, &Search::default()).await.unwrap();
    let st: Vec<&Value> = statements["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    assert_eq!(st.len(), 2, "the shown repeat and the acute course; issues have no statement of their own");
    let repeat_st = st.iter().find(|r| r["id"] == shown_repeat.id.to_string()).unwrap();
    assert_eq!(repeat_st["status"], "active");
    assert_eq!(repeat_st["basedOn"][0]["reference"], format!("MedicationRequest/{}", shown_repeat.id));
    assert_eq!(st.iter().find(|r| r["id"] == acute.id.to_string()).unwrap()["status"], "completed");
    let read = app.fhir_read(&who, "MedicationStatement", &shown_repeat.id.to_string()).await.unwrap();
    assert_eq!(read["medicationCodeableConcept"]["text"], "Amlodipine 5mg tablets");
    // An issue is not a course: no MedicationStatement of that id.
    unknown(app.fhir_read(&who, "MedicationStatement", &issue_of_shown.id.to_string()).await);

    // The issues are both shown; only the shown repeat's is linked to it.
    let requests = app.fhir_search(&who, "MedicationRequest", BASE, &Search::default()).await.unwrap();
    let by_id = |id: EntryId| {
        requests["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()).find(|r| r["id"] == id.to_string())
    };
    assert_eq!(
        by_id(issue_of_shown.id).unwrap()["basedOn"][0]["reference"],
        format!("MedicationRequest/{}", shown_repeat.id)
    );
    let lone = by_id(issue_of_hidden.id).expect("the issue of a hidden repeat is shown (R12)");
    assert!(lone.get("basedOn").is_none(), "{lone}");
    assert!(by_id(hidden_repeat.id).is_none());
    // No trace of the hidden repeat's id anywhere the app looks (the issue's word is its own).
    let mut all = serde_json::to_string(&everything(&app, &who, &pat.id.to_string(), "1").await).unwrap();
    all.push_str(&requests.to_string());
    all.push_str(&statements.to_string());
    all.push_str(&app.fhir_read(&who, "MedicationRequest", &issue_of_hidden.id.to_string()).await.unwrap().to_string());
    assert!(!all.contains(&hidden_repeat.id.to_string()));
    unknown(app.fhir_read(&who, "MedicationStatement", &hidden_repeat.id.to_string()).await);

    // A page of one entry keeps a course's request and statement together.
    let page = app.fhir_everything(&who, &pat.id.to_string(), BASE, Some("2"), None).await.unwrap();
    let types: Vec<&str> = page["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert!(types.len() <= 3, "{types:?}");

    // The practice sees the hidden repeat, its statement labelled NOPAT too, and the issue's link.
    let staff = FhirCaller::Staff(tp.clinician.clone());
    let full = everything(&app, &staff, &pat.id.to_string(), "100").await;
    let labelled: Vec<&Value> = full.iter().filter(|r| r["id"] == hidden_repeat.id.to_string()).collect();
    assert_eq!(labelled.len(), 2);
    assert!(labelled.iter().all(|r| r["meta"]["security"][0]["code"] == "NOPAT"));
    let issue = full.iter().find(|r| r["id"] == issue_of_hidden.id.to_string()).unwrap();
    assert_eq!(issue["basedOn"][0]["reference"], format!("MedicationRequest/{}", hidden_repeat.id));
    // "Who viewed my record" names the app.
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let lines = app.my_record_activity(&me).await.unwrap();
    assert!(lines
        .iter()
        .any(|l| l.who == "Health Wallet, an app linked to your record" && l.what == "Viewed your record online"));
}

/// `_include`: the patient, the clinicians who wrote the entries, an appointment's slot; only
/// within the token's scopes; unknown ones named.
async fn searches_include_what_their_resources_point_at(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let mut by_doctor = consultation(&pat, now - Duration::days(3), "");
    by_doctor.author = Author { staff: Some(tp.clinician.staff), name: tp.clinician.name.clone() };
    by_doctor.body = EntryBody::TestResult {
        test: "Haemoglobin".into(),
        value: "132".into(),
        unit: "g/L".into(),
        range: "115-165".into(),
        abnormal: false,
        filing: Filing::Filed,
    };
    let mut hidden_by_doctor = by_doctor.clone();
    hidden_by_doctor.id = EntryId::from_uuid(caldicott_app::new_id());
    hidden_by_doctor.entered_at = now - Duration::days(2);
    hide(&mut hidden_by_doctor);
    let mut by_stranger = by_doctor.clone();
    by_stranger.id = EntryId::from_uuid(caldicott_app::new_id());
    by_stranger.author = Author { staff: None, name: "Locum from elsewhere".into() };
    let entries = vec![by_doctor.clone(), hidden_by_doctor.clone(), by_stranger.clone()];
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let who = app_token(&app, &client, &secret, &link, "").await;
    let with = |inc: &[&str]| Search { include: inc.iter().map(|s| s.to_string()).collect(), ..Default::default() };

    let b = app
        .fhir_search(&who, "Observation", BASE, &with(&["Observation:performer", "Observation:patient"]))
        .await
        .unwrap();
    let included: Vec<&Value> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(included.len(), 2, "{b}");
    assert!(included.iter().any(|r| r["resourceType"] == "Practitioner" && r["id"] == tp.clinician.staff.to_string()));
    assert!(included.iter().any(|r| r["resourceType"] == "Patient" && r["id"] == pat.id.to_string()));
    let matched: Vec<&Value> =
        b["entry"].as_array().unwrap().iter().filter(|e| e["search"]["mode"] == "match").collect();
    assert_eq!(matched.len(), 2, "the hidden result is not among the matches");
    assert!(!b.to_string().contains(&hidden_by_doctor.id.to_string()));
    assert!(b["link"][0]["url"].as_str().unwrap().contains("_include=Observation:performer"));
    // The one reference a stranger's entry has is their name.
    let stranger = matched.iter().find(|e| e["resource"]["id"] == by_stranger.id.to_string()).unwrap();
    assert!(stranger["resource"]["performer"][0].get("reference").is_none());
    // `*` is every include of the type; scopes still apply to what is included.
    let all = app.fhir_search(&who, "Observation", BASE, &with(&["Observation:*"])).await.unwrap();
    assert_eq!(all["entry"].as_array().unwrap().len(), 4);
    let obs_only = app_token(&app, &client, &secret, &link, "patient/Observation.read").await;
    let narrow = app.fhir_search(&obs_only, "Observation", BASE, &with(&["Observation:*"])).await.unwrap();
    assert!(narrow["entry"].as_array().unwrap().iter().all(|e| e["search"]["mode"] == "match"));
    // What is not offered is named, with what is.
    for bad in ["Observation:based-on", "Condition:patient", "Observation:performer:Organization"] {
        match app.fhir_search(&who, "Observation", BASE, &with(&[bad])).await {
            Err(AppError::BadRequest(m)) => assert!(m.contains("Observation:performer"), "{m}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    // $everything brings the clinicians its page names.
    let ev = everything(&app, &who, &pat.id.to_string(), "50").await;
    assert!(ev.iter().any(|r| r["resourceType"] == "Practitioner"));
    assert!(ev.iter().any(|r| r["resourceType"] == "Organization"));
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec()
}

/// Documents and their files: waiting in the filing queue they are nobody's online; filed
/// visible, the patient and their app open them (DocumentReference, then Binary); hidden, they
/// answer as unknown ids; staff open any.
async fn documents_open_only_where_the_reader_may_see_them(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let today = caldicott_app::fixtures::today();
    // A letter dated a month ago: a fixed day of this year would be in the future in January.
    let dated = today - Duration::days(30);
    let new_doc = |title: &str, content: Vec<u8>, name: &str| NewDocument {
        title: title.into(),
        summary: "Seen in clinic".into(),
        day: dated.format("%d").to_string(),
        month: dated.format("%m").to_string(),
        year: dated.format("%Y").to_string(),
        filename: name.into(),
        content,
    };
    // Bad input is named and nothing is kept.
    let problems = app
        .add_document(&reception, pat.nhs_number.as_str(), new_doc("", b"\x00\x01".to_vec(), "x.bin"))
        .await
        .unwrap()
        .unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
    assert_eq!(fields, vec!["title", "file"]);
    let future = NewDocument {
        year: (today.format("%Y").to_string().parse::<i32>().unwrap() + 1).to_string(),
        ..new_doc("Letter", pdf(), "a.pdf")
    };
    assert_eq!(
        app.add_document(&reception, pat.nhs_number.as_str(), future).await.unwrap().unwrap_err()[0].field,
        "date"
    );
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    assert!(matches!(
        app.add_document(&admin, pat.nhs_number.as_str(), new_doc("Letter", pdf(), "a.pdf")).await,
        Err(AppError::Forbidden(_))
    ));
    let letter = app
        .add_document(
            &reception,
            pat.nhs_number.as_str(),
            new_doc("Clinic letter", pdf(), "../../etc/clinic\"letter.pdf"),
        )
        .await
        .unwrap()
        .unwrap();
    let secret_doc = app
        .add_document(&reception, pat.nhs_number.as_str(), new_doc("SECRET-LETTER about her brother", pdf(), "s.pdf"))
        .await
        .unwrap()
        .unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let who = app_token(&app, &client, &secret, &link, "").await;
    // Waiting to be filed: not online.
    let made_up = uuid::Uuid::now_v7().to_string();
    let a = unknown(app.fhir_read(&who, "Binary", &letter.to_string()).await);
    let b = unknown(app.fhir_read(&who, "Binary", &made_up).await);
    assert_eq!(a.replace(&letter.to_string(), "X"), b.replace(&made_up, "X"));
    unknown(app.fhir_read(&who, "DocumentReference", &letter.to_string()).await);
    // Staff open it at once (the filing page links it).
    let staff_copy = app.staff_document(&reception, letter).await.unwrap();
    assert_eq!((staff_copy.content_type.as_str(), staff_copy.bytes.clone()), ("application/pdf", pdf()));
    assert_eq!(staff_copy.filename, "clinicletter.pdf", "only the last part of the name, quotes dropped");
    // Filed: one visible, one hidden.
    app.file(&tp.clinician, letter, &caldicott_app::redaction::VisibilityChange::Show { note: String::new() }, false)
        .await
        .unwrap();
    app.file(
        &tp.clinician,
        secret_doc,
        &caldicott_app::redaction::VisibilityChange::Hide {
            reason: HiddenReason::ThirdParty,
            note: "about a relative".into(),
        },
        false,
    )
    .await
    .unwrap();
    let doc_ref = app.fhir_read(&who, "DocumentReference", &letter.to_string()).await.unwrap();
    let attachment = &doc_ref["content"][0]["attachment"];
    assert_eq!(attachment["url"], format!("Binary/{letter}"));
    assert_eq!(attachment["contentType"], "application/pdf");
    assert_eq!(attachment["size"], pdf().len());
    let binary = app.fhir_read(&who, "Binary", &letter.to_string()).await.unwrap();
    assert_eq!(binary["resourceType"], "Binary");
    assert_eq!(binary["securityContext"]["reference"], format!("DocumentReference/{letter}"));
    use base64::Engine;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(binary["data"].as_str().unwrap()).unwrap(), pdf());
    let c = app.fhir_binary(&who, &letter.to_string()).await.unwrap();
    assert_eq!(c.bytes, pdf());
    // The hidden one: unknown, byte for byte, by every path.
    let h = unknown(app.fhir_read(&who, "Binary", &secret_doc.to_string()).await);
    assert_eq!(h.replace(&secret_doc.to_string(), "X"), b.replace(&made_up, "X"));
    unknown(app.fhir_read(&who, "DocumentReference", &secret_doc.to_string()).await);
    let docs = app.fhir_search(&who, "DocumentReference", BASE, &Search::default()).await.unwrap();
    assert_eq!(docs["entry"].as_array().unwrap().len(), 1);
    assert!(!docs.to_string().contains(&secret_doc.to_string()) && !docs.to_string().contains("SECRET-LETTER"));
    // Binary is read by id only; and only within scopes.
    assert!(matches!(app.fhir_search(&who, "Binary", BASE, &Search::default()).await, Err(AppError::BadRequest(_))));
    let no_binary = app_token(&app, &client, &secret, &link, "patient/DocumentReference.read").await;
    assert!(matches!(app.fhir_read(&no_binary, "Binary", &letter.to_string()).await, Err(AppError::Forbidden(_))));
    // The practice opens the hidden one, and sees it labelled.
    let staff = FhirCaller::Staff(tp.clinician.clone());
    assert_eq!(app.fhir_binary(&staff, &secret_doc.to_string()).await.unwrap().bytes, pdf());
    let labelled = app.fhir_read(&staff, "DocumentReference", &secret_doc.to_string()).await.unwrap();
    assert_eq!(labelled["meta"]["security"][0]["code"], "NOPAT");
    // A document held as a summary only opens as that summary, as text.
    let mut summary_only = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(1), "");
    summary_only.body = EntryBody::Document {
        title: "Old letter".into(),
        summary: "Discharged after day surgery".into(),
        filing: Filing::Filed,
        review: DocumentReview::Reviewed,
    };
    fixtures::add_entries(&app, tp.practice.id, None, std::slice::from_ref(&summary_only)).await.unwrap();
    let text = app.fhir_binary(&who, &summary_only.id.to_string()).await.unwrap();
    assert_eq!(
        (text.content_type.as_str(), text.bytes.as_slice()),
        ("text/plain; charset=utf-8", b"Discharged after day surgery".as_slice())
    );
    // Every opening is audited.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.actor_kind == "app" && e.entity == format!("fhir/Binary/{letter}")));
    assert!(events.iter().any(|e| e.actor_kind == "staff" && e.entity == format!("document/{letter}")));
}

/// A practice integration: a client assertion signed with its key for a `system/` token; each
/// assertion once; its own practice only; turned off, its tokens end.
async fn a_practice_integration_reads_its_practice_with_system_scopes(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let other_tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let elsewhere = adult(&app, other_tp.practice.id).await.unwrap();
    let hidden = withheld_entries(&pat, caldicott_app::fixtures::now() - Duration::days(1), "SECRET-SYSTEM");
    fixtures::add_entries(&app, tp.practice.id, None, &hidden).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (private, public) = new_key_pair().unwrap();
    // Registration: administrators only, a public key only, offered scopes only.
    assert!(matches!(
        app.register_integration(
            &tp.clinician,
            &NewIntegration { name: "X".into(), public_key: public.clone(), scopes: String::new() }
        )
        .await,
        Err(AppError::Forbidden(_))
    ));
    for (key, scopes) in [
        (private.as_str(), ""),
        ("not a key", ""),
        (public.as_str(), "patient/*.read"),
        (public.as_str(), "system/*.write"),
    ] {
        let r = app
            .register_integration(
                &admin,
                &NewIntegration { name: "Reporting".into(), public_key: key.into(), scopes: scopes.into() },
            )
            .await;
        assert!(matches!(r, Err(AppError::BadRequest(_))), "{key:.20} {scopes}: {r:?}");
    }
    let reporting = app
        .register_integration(
            &admin,
            &NewIntegration {
                name: "Reporting".into(),
                public_key: public.clone(),
                scopes: "system/Patient.read system/Encounter.read".into(),
            },
        )
        .await
        .unwrap();
    let request = |assertion: String, scope: &str| TokenRequest {
        grant_type: "client_credentials".into(),
        client_assertion_type: caldicott_app::fhir_api::ASSERTION_TYPE.into(),
        client_assertion: assertion,
        scope: scope.into(),
        ..TokenRequest::default()
    };
    let now = caldicott_app::fixtures::now();
    let assertion = client_assertion(&reporting.client_id, &private, TOKEN_URL, now).unwrap();
    let granted = app.fhir_token(&request(assertion.clone(), "")).await.unwrap();
    assert_eq!(
        (granted.scope.as_str(), granted.patient.clone(), granted.expires_in),
        ("system/Encounter.read system/Patient.read", None, 300)
    );
    // The same assertion again is refused; so are one for another audience, one signed with
    // another key, an expired one, and scopes it was not registered for.
    assert_eq!(oauth_error(app.fhir_token(&request(assertion, "")).await), "invalid_grant");
    let wrong_aud = client_assertion(&reporting.client_id, &private, "http://elsewhere/token", now).unwrap();
    assert_eq!(oauth_error(app.fhir_token(&request(wrong_aud, "")).await), "invalid_client");
    let (other_private, _) = new_key_pair().unwrap();
    let forged = client_assertion(&reporting.client_id, &other_private, TOKEN_URL, now).unwrap();
    assert_eq!(oauth_error(app.fhir_token(&request(forged, "")).await), "invalid_client");
    let old = client_assertion(&reporting.client_id, &private, TOKEN_URL, now - Duration::minutes(30)).unwrap();
    assert_eq!(oauth_error(app.fhir_token(&request(old, "")).await), "invalid_client");
    let wider = client_assertion(&reporting.client_id, &private, TOKEN_URL, now).unwrap();
    assert_eq!(oauth_error(app.fhir_token(&request(wider, "system/*.read")).await), "invalid_scope");
    let no_assertion = TokenRequest { client_assertion: String::new(), ..request(String::new(), "") };
    assert_eq!(oauth_error(app.fhir_token(&no_assertion).await), "invalid_client");

    // What it reads: its practice's whole record within its scopes, labelled.
    let system = app.fhir_caller(&granted.access_token).await.unwrap();
    let enc = app
        .fhir_search(&system, "Encounter", BASE, &Search { patient: Some(pat.id.to_string()), ..Default::default() })
        .await
        .unwrap();
    assert!(enc.to_string().contains("SECRET-SYSTEM") && enc.to_string().contains("NOPAT"));
    assert!(matches!(
        app.fhir_search(
            &system,
            "Observation",
            BASE,
            &Search { patient: Some(pat.id.to_string()), ..Default::default() }
        )
        .await,
        Err(AppError::Forbidden(_))
    ));
    assert!(
        matches!(app.fhir_search(&system, "Encounter", BASE, &Search::default()).await, Err(AppError::BadRequest(_))),
        "patient= is required"
    );
    unknown(app.fhir_read(&system, "Patient", &elsewhere.id.to_string()).await);
    // A system token cannot book.
    let body = serde_json::json!({ "resourceType": "Appointment", "slot": [{ "reference": "Slot/x" }] });
    assert!(matches!(app.fhir_create(&system, "Appointment", &body).await, Err(AppError::Forbidden(_))));
    // Audited under its own name.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.actor_kind == "integration" && e.action == "fhir.token_issue"));
    assert!(events.iter().any(|e| e.actor_kind == "integration"
        && e.action == "record.view_staff"
        && e.patient == Some(pat.id.to_string())));
    // The patient sees that the practice's reporting system opened their record.
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let lines = app.my_record_activity(&me).await.unwrap();
    let seen = format!("Reporting, a system of {}", tp.practice.name);
    assert!(lines.iter().any(|l| l.who == seen && l.what == "Opened your record at the practice"), "{lines:?}");
    // Turned off: the next request is refused, and no new token is given.
    app.set_integration_active(&admin, &reporting.id.to_string(), false).await.unwrap();
    assert!(matches!(app.fhir_caller(&granted.access_token).await, Err(AppError::Unauthenticated(_))));
    let fresh = client_assertion(&reporting.client_id, &private, TOKEN_URL, caldicott_app::fixtures::now()).unwrap();
    assert_eq!(oauth_error(app.fhir_token(&request(fresh, "")).await), "invalid_client");
    assert!(app.integrations(&admin).await.unwrap().iter().all(|i| !i.active));
}

/// An app linked by a parent, acting for their child through the proxy link: the proxy's view
/// of the child's record (its level and start date), not the child's own; the proxy's
/// permissions for appointments and contact details; ended with the proxy link.
async fn an_app_acts_for_a_dependant_within_the_proxy_scope(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let today = caldicott_app::fixtures::today();
    let mut child = fixtures::person(tp.practice.id, today - Duration::days(365 * 8));
    child.contact.address.postcode = "CH1 1LD".into();
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let granted_on = today - Duration::days(30);
    let mut link =
        fixtures::proxy_link(&app, tp.practice.id, &child, &parent, AccessLevel::Summary, granted_on).await.unwrap();
    link.scope.appointments = false;
    link.scope.demographics = false;
    app.store_for_tests()
        .update_proxy_link(tp.practice.id, &link, &fixtures::audit(Action::ProxyLinkUpdate, Some(child.id)))
        .await
        .unwrap();
    let now = caldicott_app::fixtures::now();
    let mut allergy = consultation(&child, now - Duration::days(5), "");
    allergy.body = EntryBody::Allergy { substance: "Peanuts".into(), reaction: "Hives".into() };
    let visit = consultation(&child, now - Duration::days(4), "DETAIL-ONLY consultation text");
    let mut before_grant = consultation(&child, now - Duration::days(60), "");
    before_grant.body = EntryBody::Allergy { substance: "BEFORE-GRANT eggs".into(), reaction: "Rash".into() };
    let entries = vec![allergy.clone(), visit.clone(), before_grant.clone()];
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    let (client, secret, link_token) = linked_app(&app, &tp, &parent).await.unwrap();
    // The holder's own token, then one for the child.
    let for_child =
        TokenRequest { patient: Some(child.id.to_string()), ..TokenRequest::app(&client, &secret, &link_token, "") };
    let t = app.fhir_token(&for_child).await.unwrap();
    assert_eq!(t.patient, Some(child.id.to_string()));
    let who = app.fhir_caller(&t.access_token).await.unwrap();
    // Summary level from the grant date: the allergy since, not the consultation, not before.
    let ev = everything(&app, &who, &child.id.to_string(), "10").await;
    let text = serde_json::to_string(&ev).unwrap();
    assert!(text.contains("Peanuts"));
    assert!(!text.contains("DETAIL-ONLY") && !text.contains("BEFORE-GRANT"), "{text}");
    unknown(app.fhir_read(&who, "Encounter", &visit.id.to_string()).await);
    // The parent's own record is not this token's.
    unknown(app.fhir_read(&who, "Patient", &parent.id.to_string()).await);
    // No demographics permission: who the child is, not where they live.
    let me = app.fhir_read(&who, "Patient", &child.id.to_string()).await.unwrap();
    assert_eq!(me["identifier"][0]["value"], child.nhs_number.as_str());
    assert!(me.get("address").is_none() && !me.to_string().contains("CH1 1LD"));
    // No appointments permission.
    assert!(matches!(app.fhir_search(&who, "Slot", BASE, &Search::default()).await, Err(AppError::Forbidden(_))));
    assert!(matches!(
        app.fhir_search(&who, "Appointment", BASE, &Search::default()).await,
        Err(AppError::Forbidden(_))
    ));
    // Audited as the app, acting through the proxy link.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.actor_kind == "app"
        && e.actor_role == format!("app for proxy link {}", link.id)
        && e.patient == Some(child.id.to_string())));
    // The proxy link suspended: the next request is refused, and no new token for the child.
    link.status = ProxyStatus::Suspended { since: today, reason: "review".into() };
    app.store_for_tests()
        .update_proxy_link(tp.practice.id, &link, &fixtures::audit(Action::ProxyLinkUpdate, Some(child.id)))
        .await
        .unwrap();
    assert!(matches!(app.fhir_caller(&t.access_token).await, Err(AppError::Unauthenticated(_))));
    assert_eq!(oauth_error(app.fhir_token(&for_child).await), "invalid_grant");
    // The holder's own token still works.
    app_token(&app, &client, &secret, &link_token, "").await;
}

async fn a_linked_app_books_and_cancels_an_appointment(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    fixtures::online_clinic(&app, &tp, 5, ("09:00", "09:30"), 15).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let reader = app_token(&app, &client, &secret, &link, "patient/*.read").await;
    let booker = app_token(&app, &client, &secret, &link, "patient/*.read patient/Appointment.write").await;
    let slots = app.fhir_search(&booker, "Slot", BASE, &Search::default()).await.unwrap();
    let free: Vec<String> =
        slots["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(free.len(), 2, "two 15-minute slots");
    // Paged by _count: one, then the other by the next link's cursor, then no next.
    let next_cursor = |b: &Value| {
        b["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").map(|l| {
            let url = l["url"].as_str().unwrap();
            url.split("_cursor=").nth(1).unwrap().split('&').next().unwrap().to_owned()
        })
    };
    let one = Search { count: Some("1".into()), ..Default::default() };
    let first = app.fhir_search(&booker, "Slot", BASE, &one).await.unwrap();
    assert_eq!(first["entry"].as_array().unwrap().len(), 1);
    let cursor = next_cursor(&first).expect("a next link");
    let second =
        app.fhir_search(&booker, "Slot", BASE, &Search { cursor: Some(cursor.clone()), ..one.clone() }).await.unwrap();
    let paged: Vec<&Value> = [&first, &second].iter().map(|b| &b["entry"][0]["resource"]["id"]).collect();
    assert_eq!(paged, free.iter().map(|f| Value::from(f.as_str())).collect::<Vec<_>>().iter().collect::<Vec<_>>());
    assert_eq!(next_cursor(&second), None);
    // A cursor is good only for the caller it was given to, and only for this kind of search.
    assert!(matches!(
        app.fhir_search(
            &FhirCaller::Staff(tp.clinician.clone()),
            "Slot",
            BASE,
            &Search { cursor: Some(cursor.clone()), ..one.clone() }
        )
        .await,
        Err(AppError::BadRequest(_))
    ));
    assert!(matches!(
        app.fhir_search(&booker, "Encounter", BASE, &Search { cursor: Some(cursor), ..one.clone() }).await,
        Err(AppError::BadRequest(_))
    ));
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
    // Server-owned fields in the body are not taken (T7): the id, the times, who booked, the
    // labels; the slot alone says when.
    let mut claimed = body.clone();
    let made_up = uuid::Uuid::now_v7().to_string();
    claimed["id"] = Value::from(made_up.clone());
    claimed["start"] = Value::from("2031-01-01T09:00:00Z");
    claimed["end"] = Value::from("2031-01-01T11:00:00Z");
    claimed["created"] = Value::from("2001-01-01T00:00:00Z");
    claimed["meta"] = serde_json::json!({ "security": [{ "code": "NOPAT" }] });
    let booked = app.fhir_create(&booker, "Appointment", &claimed).await.unwrap();
    assert_eq!(booked["status"], "booked");
    assert_ne!(booked["id"], Value::from(made_up));
    let first = slots["entry"][0]["resource"].clone();
    assert_eq!((&booked["start"], &booked["end"]), (&first["start"], &first["end"]));
    assert_ne!(booked["created"], "2001-01-01T00:00:00Z");
    assert!(booked["meta"].get("security").is_none());
    // The slot is no longer free; booking it again is refused.
    let left = app.fhir_search(&booker, "Slot", BASE, &Search::default()).await.unwrap();
    assert_eq!(left["entry"].as_array().unwrap().len(), 1);
    assert!(app.fhir_create(&booker, "Appointment", &body).await.is_err());
    let mine = app.fhir_search(&reader, "Appointment", BASE, &Search::default()).await.unwrap();
    assert_eq!(mine["entry"][0]["resource"]["id"], booked["id"]);
    // Its slot comes with it when asked, busy now.
    let with_slot = Search { include: vec!["Appointment:slot".into()], ..Default::default() };
    let inc = app.fhir_search(&reader, "Appointment", BASE, &with_slot).await.unwrap();
    let slot = inc["entry"].as_array().unwrap().iter().find(|e| e["search"]["mode"] == "include").unwrap();
    assert_eq!(
        (slot["resource"]["id"].as_str(), slot["resource"]["status"].as_str()),
        (Some(free[0].as_str()), Some("busy"))
    );
    let id = booked["id"].as_str().unwrap().to_owned();
    assert_eq!(app.fhir_read(&reader, "Appointment", &id).await.unwrap()["status"], "booked");
    // The booking's slot reference resolves: busy now; the other is still free; a made-up id
    // is unknown.
    let slot_of = |who: &'static str, r: Result<Value, AppError>| (who, r.map(|s| s["status"].clone()).ok());
    assert_eq!(
        slot_of("booked", app.fhir_read(&reader, "Slot", &free[0]).await),
        ("booked", Some(Value::from("busy")))
    );
    assert_eq!(slot_of("free", app.fhir_read(&reader, "Slot", &free[1]).await), ("free", Some(Value::from("free"))));
    unknown(app.fhir_read(&reader, "Slot", &uuid::Uuid::now_v7().to_string()).await);
    // The practice reads one booking by its id alone; another practice cannot.
    let read_by_staff = app.fhir_read(&staff, "Appointment", &id).await.unwrap();
    assert_eq!(read_by_staff["participant"][0]["actor"]["reference"], format!("Patient/{}", pat.id));
    let other = fixtures::practice(&app).await.unwrap();
    unknown(app.fhir_read(&FhirCaller::Staff(other.clinician.clone()), "Appointment", &id).await);
    unknown(app.fhir_read(&FhirCaller::Staff(other.clinician.clone()), "Slot", &free[0]).await);
    unknown(app.fhir_read(&staff, "Appointment", "not-an-id").await);
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
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    for action in ["appointment.book", "appointment.cancel"] {
        assert!(events.iter().any(|e| e.action == action && e.actor_kind == "app"), "{action}");
    }
}

/// One generated entry: (kind, hidden, nopat, unfiled).
type Gen = (u8, bool, bool, bool);

/// T1/T2 as a property: over generated records and viewers (the patient, or a proxy with a
/// generated record level), no entry the viewer cannot see online ever reaches their app, by
/// read, search, `_include`, `$everything`, Binary or a reference, and every one they can see
/// arrives once.
async fn no_hidden_entry_reaches_an_app(t: &TestStore, flags: Vec<Gen>, viewer: u8) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let today = caldicott_core::uk::uk_date(now);
    let adult_pat = adult(&app, tp.practice.id).await.unwrap();
    // viewer 0: the patient; 1..: a parent whose proxy link has that record level.
    let (pat, holder, proxy) = if viewer == 0 {
        (adult_pat.clone(), adult_pat.clone(), None)
    } else {
        let child = fixtures::person(tp.practice.id, today - Duration::days(365 * 6));
        app.store_for_tests()
            .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
            .await
            .unwrap();
        let level = [AccessLevel::Summary, AccessLevel::Detailed, AccessLevel::Documents, AccessLevel::Full]
            [viewer as usize % 4];
        let link = fixtures::proxy_link(&app, tp.practice.id, &child, &adult_pat, level, today - Duration::days(3))
            .await
            .unwrap();
        (child, adult_pat.clone(), Some(link))
    };
    let mut entries: Vec<Entry> = Vec::new();
    for (i, (kind, hide_it, nopat, unfiled)) in flags.iter().enumerate() {
        let at = now - Duration::hours(i as i64 * 7 + 1);
        let mut e = consultation(&pat, at, &format!("ENTRY-{i} words"));
        e.author = Author { staff: Some(tp.clinician.staff), name: tp.clinician.name.clone() };
        match kind % 8 {
            1 => {
                e.body = EntryBody::TestResult {
                    test: format!("ENTRY-{i} result"),
                    value: "5".into(),
                    unit: "mmol/L".into(),
                    range: String::new(),
                    abnormal: false,
                    filing: if *unfiled { Filing::Unfiled } else { Filing::Filed },
                }
            }
            2 => e.body = EntryBody::Allergy { substance: format!("ENTRY-{i} nuts"), reaction: "Rash".into() },
            3 => {
                e.body = EntryBody::Medication {
                    drug: format!("ENTRY-{i} drug"),
                    dosage: "One daily".into(),
                    quantity: "28".into(),
                    course: MedicationCourse::RepeatTemplate,
                }
            }
            4 => {
                // An issue of the nearest earlier repeat, if any (its own words are the issue's).
                let template =
                    entries.iter().rev().find(|x| matches!(x.body, EntryBody::Medication { .. })).map(|x| x.id);
                e.body = EntryBody::MedicationIssue {
                    drug: format!("ENTRY-{i} issue"),
                    dosage: "One daily".into(),
                    quantity: "28".into(),
                    template,
                }
            }
            5 => {
                e.body = EntryBody::Document {
                    title: format!("ENTRY-{i} letter"),
                    summary: format!("ENTRY-{i} summary"),
                    filing: if *unfiled { Filing::Unfiled } else { Filing::Filed },
                    review: DocumentReview::Reviewed,
                }
            }
            6 => e.body = EntryBody::Problem { title: format!("ENTRY-{i} problem"), active: true },
            7 => {
                e.body = EntryBody::AdminMessage {
                    subject: format!("ENTRY-{i} message"),
                    text: "Sent by email".into(),
                    channel: AdminChannel::Email,
                }
            }
            _ => {}
        }
        if *hide_it {
            hide(&mut e);
        }
        e.nopat = *nopat;
        entries.push(e);
    }
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &holder).await.unwrap();
    let req = TokenRequest {
        patient: proxy.as_ref().map(|_| pat.id.to_string()),
        ..TokenRequest::app(&client, &secret, &link, "")
    };
    let who = app.fhir_caller(&app.fhir_token(&req).await.unwrap().access_token).await.unwrap();
    // The reference: the online view staff preview for the same viewer.
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let view_as = match &proxy {
        None => caldicott_app::record::ViewAs::Patient,
        Some(l) => caldicott_app::record::ViewAs::Proxy(l.id),
    };
    let preview = app
        .online_view(
            &reception,
            pat.nhs_number.as_str(),
            view_as,
            &caldicott_app::record::PageRequest { limit: Some(200), ..Default::default() },
        )
        .await
        .unwrap();
    let expected: HashSet<String> = preview.entries.iter().map(|e| e.id.to_string()).collect();
    let hidden: Vec<(usize, &Entry)> =
        entries.iter().enumerate().filter(|(_, e)| !expected.contains(&e.id.to_string())).collect();

    let got = everything(&app, &who, &pat.id.to_string(), "3").await;
    let got_entries: Vec<String> = got
        .iter()
        .filter(|r| {
            !matches!(
                r["resourceType"].as_str(),
                Some("Patient" | "Organization" | "Practitioner" | "MedicationStatement")
            )
        })
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got_entries.len(), expected.len(), "each shown entry once");
    assert_eq!(got_entries.iter().cloned().collect::<HashSet<_>>(), expected);
    let mut responses = serde_json::to_string(&got).unwrap();
    for t in caldicott_app::fhir_api::CLINICAL_TYPES {
        let all_includes = Search { include: vec![format!("{t}:*")], ..Default::default() };
        responses.push_str(&app.fhir_search(&who, t, BASE, &all_includes).await.unwrap().to_string());
    }
    for e in &entries {
        let mut types: Vec<&str> = caldicott_fhir::write::resource_types(e.kind()).to_vec();
        if e.kind() == EntryKind::Document {
            types.push("Binary");
        }
        for t in types {
            match app.fhir_read(&who, t, &e.id.to_string()).await {
                Ok(r) => responses.push_str(&r.to_string()),
                Err(AppError::NotFound(_)) => {
                    assert!(!expected.contains(&e.id.to_string()) || t == "Binary", "{t}/{} shown but not read", e.id)
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }
    for (i, e) in hidden {
        assert!(!responses.contains(&e.id.to_string()), "hidden entry {i} ({:?}) reached the app", e.kind());
        assert!(!responses.contains(&format!("ENTRY-{i} ")), "hidden entry {i}'s words reached the app");
    }
}

/// One entry of every kind the record holds, a day apart, written by the practice's clinician.
fn one_of_every_kind(p: &caldicott_core::patient::Patient, tp: &fixtures::TestPractice) -> Vec<Entry> {
    let now = caldicott_app::fixtures::now();
    let bodies = vec![
        EntryBody::Consultation { text: "KIND consultation".into(), status: ConsultationStatus::Final },
        EntryBody::Problem { title: "KIND problem".into(), active: true },
        EntryBody::Coded { value: Some("KIND coded".into()) },
        EntryBody::TestResult {
            test: "KIND result".into(),
            value: "5.1".into(),
            unit: "mmol/L".into(),
            range: "3.5-5.3".into(),
            abnormal: false,
            filing: Filing::Filed,
        },
        EntryBody::Medication {
            drug: "KIND repeat".into(),
            dosage: "One daily".into(),
            quantity: "28 tablets".into(),
            course: MedicationCourse::RepeatTemplate,
        },
        EntryBody::MedicationIssue {
            drug: "KIND issue".into(),
            dosage: "One daily".into(),
            quantity: "28 tablets".into(),
            template: None,
        },
        EntryBody::Allergy { substance: "KIND allergy".into(), reaction: "Rash".into() },
        EntryBody::Immunisation { vaccine: "KIND vaccine".into() },
        EntryBody::Document {
            title: "KIND letter".into(),
            summary: "KIND summary".into(),
            filing: Filing::Filed,
            review: DocumentReview::Reviewed,
        },
        EntryBody::AdminMessage { subject: "KIND admin".into(), text: "KIND note".into(), channel: AdminChannel::Note },
        EntryBody::OnlineConsultation { text: "KIND online consultation".into() },
        EntryBody::SystemSms { text: "KIND text message".into() },
        EntryBody::Diary { text: "KIND diary".into(), due: caldicott_app::fixtures::today() + Duration::days(30) },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut e = consultation(p, now - Duration::days(i as i64 + 1), "");
            e.author = Author { staff: Some(tp.clinician.staff), name: tp.clinician.name.clone() };
            e.body = body;
            e
        })
        .collect()
}

fn declares(cap: &Value, resource: &str, interaction: &str) -> bool {
    cap["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["type"] == resource && r["interaction"].as_array().unwrap().iter().any(|i| i["code"] == interaction))
}

/// What a client does with `$everything`: every resource in it is of a type the
/// CapabilityStatement declares, and reads back by its id as the same resource. Communication
/// (messages, online consultations, texts, diary entries) is served to practice-facing callers
/// like every other type; it is never shown online (R8), so an app never receives one by any
/// path, and one's id answers as a made-up id does.
async fn everything_in_everything_is_declared_and_reads_back(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let entries = one_of_every_kind(&pat, &tp);
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    let cap = caldicott_app::fhir_api::capability_statement(BASE, "test");
    no_empty_arrays(&cap);
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let patient_app = app_token(&app, &client, &secret, &link, "").await;
    let staff = FhirCaller::Staff(tp.clinician.clone());
    for who in [&staff, &patient_app] {
        let all = everything(&app, who, &pat.id.to_string(), "4").await;
        assert!(all.len() > 3, "{all:?}");
        for r in &all {
            let (ty, id) = (r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
            assert!(
                declares(&cap, ty, "read"),
                "$everything gave a {ty}, which the CapabilityStatement does not declare"
            );
            let back =
                app.fhir_read(who, ty, id).await.unwrap_or_else(|e| panic!("{ty}/{id} does not read back: {e:?}"));
            no_empty_arrays(&back);
            assert_eq!(&back, r, "{ty}/{id} reads back as it was in $everything");
        }
    }
    // The practice: every communication, read and searched by patient, labelled not for the
    // patient (R8).
    assert!(declares(&cap, "Communication", "search-type"));
    let comms: Vec<&Entry> =
        entries.iter().filter(|e| caldicott_fhir::write::resource_type(e.kind()) == "Communication").collect();
    assert_eq!(comms.len(), 4);
    let search = Search { patient: Some(pat.id.to_string()), ..Default::default() };
    let found = resources(&app.fhir_search(&staff, "Communication", BASE, &search).await.unwrap());
    assert_eq!(found.len(), 4, "{found:?}");
    for c in &comms {
        let r = found.iter().find(|r| r["id"] == c.id.to_string()).expect("each communication is found");
        assert_eq!(r["resourceType"], "Communication");
        assert_eq!(r["subject"]["reference"], format!("Patient/{}", pat.id));
        assert_eq!(r["meta"]["security"][0]["code"], "NOPAT");
    }
    let full = everything(&app, &staff, &pat.id.to_string(), "50").await;
    assert_eq!(full.iter().filter(|r| r["resourceType"] == "Communication").count(), 4);
    let included = Search { include: vec!["Communication:*".into()], ..search.clone() };
    let with = app.fhir_search(&staff, "Communication", BASE, &included).await.unwrap();
    assert!(with.to_string().contains(&format!("\"Practitioner/{}\"", tp.clinician.staff)));

    // The app: none, by search, read, $everything or _include, even with the scope asked for by name.
    let narrow = app_token(&app, &client, &secret, &link, "patient/Communication.read").await;
    for who in [&patient_app, &narrow] {
        let b = app.fhir_search(who, "Communication", BASE, &Search::default()).await.unwrap();
        assert!(resources(&b).is_empty(), "{b}");
        let b = app
            .fhir_search(
                who,
                "Communication",
                BASE,
                &Search { include: vec!["Communication:*".into()], ..Default::default() },
            )
            .await
            .unwrap();
        assert!(resources(&b).is_empty(), "{b}");
        for c in &comms {
            let said = unknown(app.fhir_read(who, "Communication", &c.id.to_string()).await);
            let made_up = uuid::Uuid::now_v7().to_string();
            let said_made_up = unknown(app.fhir_read(who, "Communication", &made_up).await);
            assert_eq!(said.replace(&c.id.to_string(), "X"), said_made_up.replace(&made_up, "X"));
        }
    }
    let seen = serde_json::to_string(&everything(&app, &patient_app, &pat.id.to_string(), "3").await).unwrap();
    assert!(!seen.contains("\"Communication\""));
    for c in &comms {
        assert!(!seen.contains(&c.id.to_string()));
    }
}

/// FHIR has no empty arrays: an element with nothing in it is left out. A patient with a
/// postcode but no address lines, a search that finds nothing, and a page of every kind.
async fn no_answer_carries_an_empty_array(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let mut pat = fixtures::person(tp.practice.id, fixtures::date(1970, 1, 1));
    pat.contact.address.lines = Vec::new();
    pat.contact.address.postcode = "LS1 4AP".into();
    app.store_for_tests()
        .create_patient(tp.practice.id, &pat, &fixtures::audit(Action::PatientCreate, Some(pat.id)))
        .await
        .unwrap();
    let staff = FhirCaller::Staff(tp.clinician.clone());
    let read = app.fhir_read(&staff, "Patient", &pat.id.to_string()).await.unwrap();
    no_empty_arrays(&read);
    assert_eq!(read["address"][0]["postalCode"], "LS1 4AP");
    let of_patient = Search { patient: Some(pat.id.to_string()), ..Default::default() };
    for t in caldicott_app::fhir_api::CLINICAL_TYPES {
        let b = app.fhir_search(&staff, t, BASE, &of_patient).await.unwrap();
        assert!(resources(&b).is_empty(), "{t}: {b}");
        assert!(b.get("entry").is_none(), "{t}: nothing found, no entry element");
    }
    let nobody =
        Search { identifier: Some("https://fhir.nhs.uk/Id/nhs-number|9434765919".into()), ..Default::default() };
    assert!(resources(&app.fhir_search(&staff, "Patient", BASE, &nobody).await.unwrap()).is_empty());
    for t in ["Organization", "Practitioner", "Slot"] {
        resources(&app.fhir_search(&staff, t, BASE, &Search::default()).await.unwrap());
    }
    let entries = one_of_every_kind(&pat, &tp);
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    everything(&app, &staff, &pat.id.to_string(), "2").await;
    no_empty_arrays(&caldicott_app::fhir_api::capability_statement(BASE, "test"));
}

fn snomed(code: &str, term: &str) -> Option<caldicott_core::snomed::Coding> {
    Some(caldicott_core::snomed::Coding {
        concept: caldicott_core::snomed::ConceptId::parse(code).unwrap(),
        term: term.into(),
    })
}

/// UK Core Immunization: `vaccineCode` is the vaccine product given; the SNOMED CT procedure the
/// entry is coded with ("Seasonal influenza vaccination") goes in UK Core's vaccination
/// procedure extension, never in `vaccineCode`.
async fn immunizations_carry_the_vaccine_and_the_procedure_apart(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let mut jab = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(20), "");
    jab.body = EntryBody::Immunisation { vaccine: "Influenza vaccine (surface antigen, inactivated)".into() };
    jab.code = snomed("822851000000102", "Seasonal influenza vaccination");
    let mut uncoded = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(21), "");
    uncoded.body = EntryBody::Immunisation { vaccine: "Tetanus vaccine".into() };
    fixtures::add_entries(&app, tp.practice.id, None, &[jab.clone(), uncoded.clone()]).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let who = app_token(&app, &client, &secret, &link, "").await;
    let staff = FhirCaller::Staff(tp.clinician.clone());
    for reader in [&who, &staff] {
        let r = app.fhir_read(reader, "Immunization", &jab.id.to_string()).await.unwrap();
        assert_eq!(r["vaccineCode"]["text"], "Influenza vaccine (surface antigen, inactivated)");
        assert!(!r["vaccineCode"].to_string().contains("822851000000102"), "the procedure is not the vaccine: {r}");
        let procedure: Vec<&Value> = r["extension"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["url"] == "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-VaccinationProcedure")
            .collect();
        assert_eq!(procedure.len(), 1, "{r}");
        let coding = &procedure[0]["valueCodeableConcept"]["coding"][0];
        assert_eq!(coding["system"], "http://snomed.info/sct");
        assert_eq!(coding["code"], "822851000000102");
        assert_eq!(coding["display"], "Seasonal influenza vaccination");
        // Without a code there is no procedure to say; the vaccine is still named.
        let plain = app.fhir_read(reader, "Immunization", &uncoded.id.to_string()).await.unwrap();
        assert!(plain.get("extension").is_none(), "{plain}");
        assert_eq!(plain["vaccineCode"]["text"], "Tetanus vaccine");
    }
}

/// MedicationRequest `status` says where the course is: an acute course is one supply, issued
/// on its date, so it is `active` on the day it is issued and `completed` once that day has
/// passed; an issue of a repeat likewise; a repeat template that is current is `active`. The
/// MedicationStatement of a course says the same.
async fn medication_request_status_follows_the_course(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let template = repeat(&pat, now - Duration::days(60), "Ramipril 5mg capsules");
    let past_issue = issue_of(&template, now - Duration::days(30));
    let acute = |days: i64, drug: &str| {
        let mut e = consultation(&pat, now - Duration::days(days), "");
        e.event_date = caldicott_app::fixtures::today() - Duration::days(days);
        e.body = EntryBody::Medication {
            drug: drug.into(),
            dosage: "Three times a day".into(),
            quantity: "21 capsules".into(),
            course: MedicationCourse::Acute,
        };
        e
    };
    let finished = acute(7, "Amoxicillin 500mg capsules");
    let issued_today = acute(0, "Flucloxacillin 500mg capsules");
    let entries = [template.clone(), past_issue.clone(), finished.clone(), issued_today.clone()];
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let who = app_token(&app, &client, &secret, &link, "").await;
    let staff = FhirCaller::Staff(tp.clinician.clone());
    for reader in [&who, &staff] {
        let status = |t: &'static str, id: EntryId| {
            let app = app.clone();
            async move { app.fhir_read(reader, t, &id.to_string()).await.unwrap()["status"].as_str().unwrap().to_owned() }
        };
        let (request, statement) = ("MedicationRequest", "MedicationStatement");
        assert_eq!(status(request, finished.id).await, "completed", "a finished acute course");
        assert_eq!(status(statement, finished.id).await, "completed");
        assert_eq!(status(request, issued_today.id).await, "active", "issued today");
        assert_eq!(status(statement, issued_today.id).await, "active");
        assert_eq!(status(request, template.id).await, "active", "a current repeat");
        assert_eq!(status(statement, template.id).await, "active");
        assert_eq!(status(request, past_issue.id).await, "completed", "an issue made a month ago");
    }
}

/// Quantities a client can compute with: a unit that is a UCUM unit comes with its UCUM code
/// (system http://unitsofmeasure.org); a unit that is not (tablets) is text only; a result
/// that is not a number is a `valueString` of what was recorded, with no unit or valueQuantity;
/// "<5" and ">90" keep their comparator.
async fn quantities_carry_ucum_codes_and_text_results_none(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let results = [
        ("Serum potassium", "4.1", "mmol/L", Some("mmol/L")),
        ("Systolic blood pressure", "128", "mmHg", Some("mm[Hg]")),
        ("Body weight", "72.5", "kg", Some("kg")),
        ("HbA1c", "48", "mmol/mol", Some("mmol/mol")),
        ("Oxygen saturation", "97", "%", Some("%")),
        ("Creatinine", "88", "umol/L", Some("umol/L")),
        ("White cell count", "6.2", "x10^9/L", Some("10*9/L")),
        ("Stool sample", "12", "pots", None),
    ];
    let mut entries: Vec<Entry> = results
        .iter()
        .enumerate()
        .map(|(i, (test, value, unit, _))| {
            let mut e = consultation(&pat, now - Duration::hours(i as i64 + 1), "");
            e.body = EntryBody::TestResult {
                test: (*test).into(),
                value: (*value).into(),
                unit: (*unit).into(),
                range: String::new(),
                abnormal: false,
                filing: Filing::Filed,
            };
            e
        })
        .collect();
    let text_result = |test: &str, value: &str, unit: &str, h: i64| {
        let mut e = consultation(&pat, now - Duration::hours(h), "");
        e.body = EntryBody::TestResult {
            test: test.into(),
            value: value.into(),
            unit: unit.into(),
            range: String::new(),
            abnormal: false,
            filing: Filing::Filed,
        };
        e
    };
    let negative = text_result("Urine glucose", "Negative", "mmol/L", 20);
    let under = text_result("C-reactive protein", "<5", "mg/L", 21);
    let over = text_result("eGFR", ">90", "mL/min/1.73m2", 22);
    let mut liquid = consultation(&pat, now - Duration::hours(23), "");
    liquid.body = EntryBody::Medication {
        drug: "Lactulose 3.35g/5ml oral solution".into(),
        dosage: "15ml twice a day".into(),
        quantity: "300 ml".into(),
        course: MedicationCourse::RepeatTemplate,
    };
    let tablets = repeat(&pat, now - Duration::hours(24), "Amlodipine 5mg tablets");
    entries.extend([negative.clone(), under.clone(), over.clone(), liquid.clone(), tablets.clone()]);
    fixtures::add_entries(&app, tp.practice.id, None, &entries).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let who = app_token(&app, &client, &secret, &link, "").await;
    let obs = |id: EntryId| {
        let (app, who) = (app.clone(), who.clone());
        async move { app.fhir_read(&who, "Observation", &id.to_string()).await }
    };
    for (e, (_, value, unit, ucum)) in entries.iter().zip(results) {
        let q = obs(e.id).await.unwrap()["valueQuantity"].clone();
        assert_eq!(q["value"].to_string(), value);
        assert_eq!(q["unit"], unit);
        match ucum {
            Some(code) => {
                assert_eq!(q["system"], "http://unitsofmeasure.org", "{unit}: {q}");
                assert_eq!(q["code"], code, "{unit}");
            }
            None => assert!(q.get("system").is_none() && q.get("code").is_none(), "{unit} is not UCUM: {q}"),
        }
    }
    let r = obs(negative.id).await.unwrap();
    assert_eq!(r["valueString"], "Negative", "{r}");
    assert!(r.get("valueQuantity").is_none());
    let r = obs(under.id).await.unwrap();
    assert_eq!(r["valueQuantity"]["comparator"], "<", "{r}");
    assert_eq!(r["valueQuantity"]["value"], 5);
    assert_eq!(r["valueQuantity"]["code"], "mg/L");
    let r = obs(over.id).await.unwrap();
    assert_eq!(r["valueQuantity"]["comparator"], ">", "{r}");
    assert_eq!(r["valueQuantity"]["code"], "mL/min/{1.73_m2}");
    let q = app.fhir_read(&who, "MedicationRequest", &liquid.id.to_string()).await.unwrap()["dispenseRequest"]
        ["quantity"]
        .clone();
    assert_eq!(
        (q["value"].as_i64(), q["system"].as_str(), q["code"].as_str()),
        (Some(300), Some("http://unitsofmeasure.org"), Some("mL"))
    );
    let q = app.fhir_read(&who, "MedicationRequest", &tablets.id.to_string()).await.unwrap()["dispenseRequest"]
        ["quantity"]
        .clone();
    assert_eq!(q["unit"], "tablets");
    assert!(q.get("system").is_none() && q.get("code").is_none(), "{q}");
}

fn records() -> impl Strategy<Value = Vec<Gen>> {
    proptest::collection::vec(
        (0u8..8, any::<bool>(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.2)),
        1..16,
    )
}

/// The NHS App's Patient Facing Services Prescriptions API, through this FHIR API: an app orders
/// one of its patient's current repeats as a Task (intent order, "Renewal of prescription", focus
/// the repeat's MedicationRequest); it becomes the same task for a clinician as an order on the
/// patient's pages, and the clinician's decision comes back as the Task's status.
async fn a_linked_app_orders_a_repeat_and_follows_it(t: &TestStore) {
    use caldicott_app::redaction::VisibilityChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let (a, hidden) = (
        repeat(&pat, now - Duration::days(30), "Amlodipine 5mg"),
        repeat(&pat, now - Duration::days(30), "SECRET-DRUG"),
    );
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[a.clone(), hidden.clone()]).await.unwrap();
    let hide = VisibilityChange::Hide { reason: HiddenReason::PotentiallyHarmful, note: "not yet discussed".into() };
    app.change_visibility(&tp.clinician, pat.nhs_number.as_str(), hidden.id, &hide, false).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let reader = app_token(&app, &client, &secret, &link, "patient/*.read").await;
    let orderer = app_token(&app, &client, &secret, &link, "patient/*.read patient/Task.write").await;
    let order = |template: &Entry| {
        serde_json::json!({
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "103742009", "display": "Renewal of prescription" }] },
            "focus": { "reference": format!("MedicationRequest/{}", template.id) },
            "for": { "reference": format!("Patient/{}", pat.id) },
            "note": [{ "authorString": "Patient", "text": "ran out of previous prescription" }],
        })
    };
    // Reading is not ordering; a hidden repeat cannot be ordered and says nothing of itself.
    assert!(matches!(app.fhir_create(&reader, "Task", &order(&a)).await, Err(AppError::Forbidden(_))));
    match app.fhir_create(&orderer, "Task", &order(&hidden)).await {
        Err(AppError::BadRequest(m)) => assert!(!m.contains("SECRET"), "{m}"),
        other => panic!("a hidden repeat was ordered: {other:?}"),
    }
    let mut unknown = order(&a);
    unknown["focus"]["reference"] = Value::from(format!("MedicationRequest/{}", uuid::Uuid::now_v7()));
    assert!(matches!(app.fhir_create(&orderer, "Task", &unknown).await, Err(AppError::BadRequest(_))));
    let mut for_someone_else = order(&a);
    for_someone_else["for"]["reference"] = Value::from(format!("Patient/{}", uuid::Uuid::now_v7()));
    assert!(matches!(app.fhir_create(&orderer, "Task", &for_someone_else).await, Err(AppError::Forbidden(_))));
    let mut not_an_order = order(&a);
    not_an_order["intent"] = Value::from("plan");
    assert!(matches!(app.fhir_create(&orderer, "Task", &not_an_order).await, Err(AppError::BadRequest(_))));
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let repeats_for = |tasks: Vec<(caldicott_core::tasks::Task, caldicott_app::PatientListing)>| {
        tasks
            .into_iter()
            .filter(|(t, p)| p.id == pat.id && t.kind == caldicott_core::tasks::TaskKind::RepeatRequest)
            .map(|(t, _)| t)
            .collect::<Vec<_>>()
    };
    assert!(repeats_for(app.task_list(&reception, false).await.unwrap()).is_empty(), "nothing refused made a task");

    // The order: a task for the practice, the Task requested.
    let made = app.fhir_create(&orderer, "Task", &order(&a)).await.unwrap();
    assert_eq!(made["resourceType"], "Task");
    assert_eq!(made["status"], "requested");
    assert_eq!(made["focus"]["reference"], format!("MedicationRequest/{}", a.id));
    assert_eq!(made["note"][0]["text"], "ran out of previous prescription");
    crate::sar_export::validate_fhir(&serde_json::to_vec(&made).unwrap());
    let open = repeats_for(app.task_list(&reception, false).await.unwrap());
    let task = open.first().expect("the order is a task for the practice");
    assert!(task.requested_by.contains("Health Wallet"), "{}", task.requested_by);
    // Followed: the search and the read, as the clinician decides.
    let found = app.fhir_search(&reader, "Task", BASE, &Search::default()).await.unwrap();
    assert_eq!(found["entry"].as_array().unwrap().len(), 1);
    let id = made["id"].as_str().unwrap().to_owned();
    app.decide_repeat_item(&tp.clinician, task.id, a.id, false, "Blood test due first").await.unwrap();
    let read = app.fhir_read(&reader, "Task", &id).await.unwrap();
    assert_eq!(read["status"], "rejected");
    assert_eq!(read["statusReason"]["text"], "Blood test due first");
    // The practice reads it too; another patient's app does not.
    let staff = FhirCaller::Staff(tp.clinician.clone());
    assert_eq!(app.fhir_read(&staff, "Task", &id).await.unwrap()["status"], "rejected");
    let other = adult(&app, tp.practice.id).await.unwrap();
    let (c2, s2, l2) = linked_app(&app, &tp, &other).await.unwrap();
    let stranger = app_token(&app, &c2, &s2, &l2, "patient/*.read").await;
    assert!(app.fhir_read(&stranger, "Task", &id).await.is_err());
    let theirs = app.fhir_search(&stranger, "Task", BASE, &Search::default()).await.unwrap();
    assert!(theirs.get("entry").is_none_or(|e| e.as_array().is_none_or(|a| a.is_empty())));
    // Every order read is audited.
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    assert!(trail.iter().any(|e| e.entity == "fhir/Task" && e.actor_kind == "app"));
    assert!(trail.iter().any(|e| e.action == "task.create" && e.actor_kind == "app"));
}

both!(
    a_linked_app_orders_a_repeat_and_follows_it,
    a_linked_app_reads_exactly_the_online_view,
    an_app_turned_off_is_refused_on_its_next_request,
    medication_statements_and_hidden_repeats,
    searches_include_what_their_resources_point_at,
    documents_open_only_where_the_reader_may_see_them,
    a_practice_integration_reads_its_practice_with_system_scopes,
    an_app_acts_for_a_dependant_within_the_proxy_scope,
    a_linked_app_books_and_cancels_an_appointment,
    everything_in_everything_is_declared_and_reads_back,
    no_answer_carries_an_empty_array,
    immunizations_carry_the_vaccine_and_the_procedure_apart,
    medication_request_status_follows_the_course,
    quantities_carry_ucum_codes_and_text_results_none,
);

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn generated_records_and_viewers_leak_nothing_to_apps_sqlite(flags in records(), viewer in 0u8..5) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async { no_hidden_entry_reaches_an_app(&test_support::sqlite().await.unwrap(), flags, viewer).await });
    }

    #[test]
    fn generated_records_and_viewers_leak_nothing_to_apps_postgres(flags in records(), viewer in 0u8..5) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async { no_hidden_entry_reaches_an_app(&test_support::postgres().await.unwrap(), flags, viewer).await });
    }
}
