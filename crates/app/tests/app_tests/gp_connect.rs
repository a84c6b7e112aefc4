//! GP Connect Access Record: Structured, as a clinician in another care setting asks for it
//! through the Spine: requests built as the specification's examples build them (the `Ssp-*`
//! headers, the unsigned JWT of audit claims, the `Parameters`), answers read as a consumer reads
//! them. Every case runs on SQLite and PostgreSQL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_app::fixtures::{self, adult, consultation, FIXTURE_ASID};
use caldicott_app::gp_connect::{service_root, GpcCall};
use caldicott_app::App;
use caldicott_core::audit::Action;
use caldicott_core::entry::*;
use caldicott_core::patient::Patient;
use caldicott_fhir::gpconnect::documents;
use caldicott_fhir::gpconnect::request::SspHeaders;
use caldicott_fhir::gpconnect::{GpcError, SpineCode, STRUCTURED_INTERACTION, STRUCTURED_METADATA_INTERACTION};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use serde_json::{json, Value};

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), fixtures::test_clock())
}

/// The specification's example claims for a request to `ods`, issued now on the test clock.
fn jwt(ods: &str, scope: &str) -> String {
    jwt_for(&service_root(ods), scope)
}

/// The same claims for the service root `root`.
pub(crate) fn jwt_for(root: &str, scope: &str) -> String {
    jwt_as(root, scope, "RXX01", "Riverside General Hospital")
}

/// The claims of a practitioner at the organisation `org_ods` (named `org_name`), issued now.
pub(crate) fn jwt_as(root: &str, scope: &str, org_ods: &str, org_name: &str) -> String {
    jwt_at(root, scope, org_ods, org_name, fixtures::now())
}

/// The same claims, issued at `at`.
pub(crate) fn jwt_at(
    root: &str,
    scope: &str,
    org_ods: &str,
    org_name: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let now = at.timestamp();
    let claims = json!({
        "iss": "https://consumersupplier.thirdparty.nhs.uk/",
        "sub": "10019",
        "aud": format!("https://provider.example.nhs.uk{root}"),
        "exp": now + 300,
        "iat": now,
        "reason_for_request": "directcare",
        "requested_scope": scope,
        "requesting_device": {"resourceType": "Device", "identifier": [{"system": "https://consumersupplier.com/Id/device-identifier", "value": "CONS-APP-4"}], "model": "Consumer product name", "version": "5.3.0"},
        "requesting_organization": {"resourceType": "Organization", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": org_ods}], "name": org_name},
        "requesting_practitioner": {"resourceType": "Practitioner", "id": "10019",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "111222333444"}, {"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "444555666777"}],
            "name": [{"family": "Jones", "given": ["Claire"], "prefix": ["Dr"]}]}
    });
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    format!("Bearer {head}.{}.", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()))
}

fn parameters(nhs: &str, areas: Value) -> Vec<u8> {
    let mut p = vec![
        json!({"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}}),
    ];
    p.extend(areas.as_array().cloned().unwrap_or_default());
    serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": p})).unwrap()
}

fn everything() -> Value {
    json!([
        {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": true}]},
        {"name": "includeMedication"},
        {"name": "includeConsultations"},
        {"name": "includeProblems"},
        {"name": "includeImmunisations"},
        {"name": "includeUncategorisedData"},
        {"name": "includeInvestigations"},
        {"name": "includeReferrals"},
        {"name": "includeDiaryEntries"}
    ])
}

/// Asks `ods`'s endpoint for `nhs`'s record, addressed to `to`.
async fn ask(app: &App, ods: &str, to: &str, nhs: &str, areas: Value) -> Result<Value, GpcError> {
    let auth = jwt(ods, "patient/*.read");
    let body = parameters(nhs, areas);
    app.gp_connect_structured(GpcCall {
        ods,
        ssp: SspHeaders {
            trace_id: Some("09a01679-2564-0fb4-5129-aecc81ea2706"),
            from: Some("200000000115"),
            to: Some(to),
            interaction_id: Some(STRUCTURED_INTERACTION),
        },
        authorization: Some(&auth),
        body: &body,
        query: &[],
    })
    .await
}

/// The practice's settings as the fixtures make them, with GP Connect's two switches as given.
fn settings(structured: bool, documents: bool) -> caldicott_app::settings::SettingsInput {
    caldicott_app::settings::SettingsInput {
        default_level: "full".into(),
        proxy_review_age: "11".into(),
        switch_on_day: "31".into(),
        switch_on_month: "10".into(),
        switch_on_year: "2023".into(),
        visible_online_by_default: true,
        accept_update_record: true,
        gp_connect_structured: structured,
        gp_connect_documents: documents,
        gp_connect_asid: FIXTURE_ASID.into(),
        ..Default::default()
    }
}

fn resources(b: &Value) -> Vec<&Value> {
    b["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect()
}

fn list<'a>(b: &'a Value, title: &str) -> &'a Value {
    resources(b).into_iter().find(|r| r["resourceType"] == "List" && r["title"] == title).unwrap()
}

fn nopat(r: &Value) -> bool {
    r["meta"]["security"].as_array().is_some_and(|s| s.iter().any(|c| c["code"] == "NOPAT"))
}

/// Validates STU3 JSON with fhir.resources' STU3 models and the GP Connect checks of
/// scripts/validate-gpconnect.py. Fails if the validator is not installed.
pub(crate) fn validate_gp_connect(json: &Value) -> String {
    let python = std::env::var("CALDICOTT_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/caldicott/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let dir = std::env::temp_dir().join(format!("caldicott-gpc-{}", caldicott_app::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("answer.json");
    std::fs::write(&path, serde_json::to_vec(json).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/validate-gpconnect.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}; run scripts/test.sh, which installs the validator"));
    std::fs::remove_dir_all(&dir).ok();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    said
}

async fn add(app: &App, practice: caldicott_core::ids::PracticeId, p: &Patient, entries: &[Entry]) {
    fixtures::add_entries(app, practice, Some(p.id), entries).await.unwrap();
}

async fn hidden_online_goes_with_nopat_private_and_safeguarding_stay_at_the_practice(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let at = fixtures::now() - Duration::days(10);
    let shown = consultation(&pat, at, "GPC-SHOWN reviewed asthma");
    // Every way of being withheld online (R8), each text marked.
    let withheld = fixtures::withheld_entries(&pat, at, "GPC-MARK");
    let mut private = consultation(&pat, at, "GPC-PRIVATE");
    private.confidential = true;
    let mut allergy = consultation(&pat, at, "");
    allergy.body = EntryBody::Allergy { substance: "Penicillin".into(), reaction: "Rash".into() };
    add(&app, tp.practice.id, &pat, &[vec![shown, private, allergy], withheld].concat()).await;

    let b = ask(&app, &ods, FIXTURE_ASID, pat.nhs_number.as_str(), everything()).await.unwrap();
    validate_gp_connect(&b);
    let text = b.to_string();
    assert!(text.contains("GPC-SHOWN"));
    // Hidden online (third party), NOPAT and the diary entry go to the clinician, labelled.
    for marker in ["GPC-MARK hidden third-party text", "GPC-MARK nopat", "GPC-MARK diary"] {
        let holder = resources(&b)
            .into_iter()
            .find(|r| r.to_string().contains(marker))
            .unwrap_or_else(|| panic!("{marker} is released to the clinician"));
        assert!(nopat(holder), "{marker} carries NOPAT");
    }
    let shown_note = resources(&b).into_iter().find(|r| r.to_string().contains("GPC-SHOWN")).unwrap();
    assert!(!nopat(shown_note));
    // Private and safeguarding entries never leave; drafts and the unfiled result wait.
    for never in ["GPC-PRIVATE", "GPC-MARK safeguarding", "GPC-MARK draft", "GPC-MARK PSA", "GPC-MARK admin"] {
        assert!(!text.contains(never), "{never} must not leave the practice");
    }
    let consultations = list(&b, "List of consultations");
    let codes: Vec<&str> =
        consultations["extension"].as_array().unwrap().iter().filter_map(|x| x["valueCode"].as_str()).collect();
    assert!(codes.contains(&"confidential-items") && codes.contains(&"data-awaiting-filing"), "{codes:?}");
    let investigations = list(&b, "Investigations and results");
    assert!(investigations.get("entry").is_none());
    assert_eq!(investigations["extension"][1]["valueCode"], "data-awaiting-filing");

    // The read is audited with who asked, from where and why.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    let e = events.iter().rev().find(|e| e.action == "record.gp_connect_structured").unwrap();
    assert_eq!(e.outcome, "success");
    assert_eq!(e.actor_kind, "gp_connect");
    assert_eq!(e.actor_id, "RXX01");
    assert_eq!(e.actor_role, "111222333444");
    assert_eq!(e.patient.as_deref(), Some(pat.id.to_string().as_str()));
    for part in [
        "who=Dr Claire Jones at Riverside General Hospital (RXX01)",
        "consumer_asid=200000000115",
        "trace=09a01679-2564-0fb4-5129-aecc81ea2706",
        "reason=directcare",
        "role_profile=444555666777",
    ] {
        assert!(e.detail.contains(part), "{part} in {}", e.detail);
    }
    assert!(!e.detail.contains("GPC-"), "no clinical text in the audit");

    // The patient sees who read their record, by name and organisation.
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let lines = app.my_record_activity(&me).await.unwrap();
    let line = lines.iter().find(|l| l.what.contains("GP Connect")).expect("the GP Connect read is listed");
    assert_eq!(line.who, "Dr Claire Jones at Riverside General Hospital (RXX01)");
}

async fn an_unknown_deregistered_deceased_or_other_practices_patient_is_not_found_alike(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let other = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let gone = adult(&app, tp.practice.id).await.unwrap();
    app.deregister_patient(&tp.clinician, gone.nhs_number.as_str(), "moved away").await.unwrap();
    let mut dead = fixtures::person(tp.practice.id, fixtures::date(1940, 1, 1));
    dead.nhs_number = caldicott_core::NhsNumber::parse("9990001316").unwrap();
    dead.date_of_death = Some(fixtures::today() - Duration::days(3));
    app.store_for_tests()
        .create_patient(tp.practice.id, &dead, &fixtures::audit(Action::PatientCreate, Some(dead.id)))
        .await
        .unwrap();
    let elsewhere = adult(&app, other.practice.id).await.unwrap();
    add(&app, other.practice.id, &elsewhere, &[consultation(&elsewhere, fixtures::now(), "OTHER-PRACTICE")]).await;
    let mut said = Vec::new();
    for nhs in ["9990002312", gone.nhs_number.as_str(), dead.nhs_number.as_str(), elsewhere.nhs_number.as_str()] {
        let e = ask(&app, &ods, FIXTURE_ASID, nhs, everything()).await.unwrap_err();
        assert_eq!(e.code, SpineCode::PatientNotFound, "{nhs}");
        assert_eq!(e.code.http_status(), 404);
        validate_gp_connect(&e.operation_outcome());
        said.push(e.diagnostics);
    }
    said.dedup();
    assert_eq!(said.len(), 1, "every refusal reads the same: {said:?}");
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    let refused =
        events.iter().filter(|e| e.action == "record.gp_connect_structured" && e.outcome == "not_found").count();
    assert_eq!(refused, 4, "every refusal is audited at the practice asked");
    // Nothing was audited at the other practice: its patient was never looked at.
    let there = app.store_for_tests().audit_events(other.practice.id, 0, 1_000_000).await.unwrap();
    assert!(there.iter().all(|e| e.action != "record.gp_connect_structured"));
}

async fn the_practice_switch_and_its_asid_decide_whether_it_answers(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str();
    // Addressed to another system's ASID: refused before anything is read.
    let e = ask(&app, &ods, "918999198738", nhs, everything()).await.unwrap_err();
    assert_eq!(e.code, SpineCode::BadRequest);
    assert!(e.diagnostics.contains("Ssp-To"), "{}", e.diagnostics);
    // No such practice at this address.
    assert_eq!(ask(&app, "Z99999", FIXTURE_ASID, nhs, everything()).await.unwrap_err().code, SpineCode::BadRequest);
    // The practice turns the service off (an audited settings change): every request is refused.
    let manager = caldicott_app::auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let mut input = settings(false, true);
    app.change_practice_settings(&manager, &input).await.unwrap().unwrap();
    let e = ask(&app, &ods, FIXTURE_ASID, nhs, everything()).await.unwrap_err();
    assert_eq!((e.code, e.code.http_status()), (SpineCode::AccessDenied, 403));
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "record.gp_connect_structured" && e.outcome == "denied"));
    // Not connected: no ASID, nothing answered.
    input.gp_connect_structured = true;
    input.gp_connect_asid = String::new();
    app.change_practice_settings(&manager, &input).await.unwrap().unwrap();
    assert_eq!(ask(&app, &ods, FIXTURE_ASID, nhs, everything()).await.unwrap_err().code, SpineCode::AccessDenied);
    input.gp_connect_asid = FIXTURE_ASID.into();
    app.change_practice_settings(&manager, &input).await.unwrap().unwrap();
    assert!(ask(&app, &ods, FIXTURE_ASID, nhs, everything()).await.is_ok());
}

async fn a_bad_request_reads_nothing_and_the_capability_statement_needs_the_organisation_scope(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let before = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap().len();
    let e = ask(&app, &ods, FIXTURE_ASID, "9434765918", everything()).await.unwrap_err();
    assert_eq!(e.code, SpineCode::InvalidNhsNumber);
    let e = ask(&app, &ods, FIXTURE_ASID, pat.nhs_number.as_str(), json!([{"name": "includeAllergies"}]))
        .await
        .unwrap_err();
    assert_eq!(e.code, SpineCode::InvalidParameter);
    let after = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap().len();
    assert_eq!(before, after, "a refused request changed nothing");

    let call = |auth: &'static str, interaction: &'static str| GpcCall {
        ods: "",
        ssp: SspHeaders {
            trace_id: Some("t-1"),
            from: Some("200000000115"),
            to: Some(FIXTURE_ASID),
            interaction_id: Some(interaction),
        },
        authorization: Some(auth),
        body: &[],
        query: &[],
    };
    let org = Box::leak(jwt(&ods, "organization/*.read").into_boxed_str());
    let cs =
        app.gp_connect_metadata(GpcCall { ods: &ods, ..call(org, STRUCTURED_METADATA_INTERACTION) }).await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "3.0.1");
    assert_eq!(cs["rest"][0]["operation"][0]["name"], "gpc.getstructuredrecord");
    let patient = Box::leak(jwt(&ods, "patient/*.read").into_boxed_str());
    let e = app
        .gp_connect_metadata(GpcCall { ods: &ods, ..call(patient, STRUCTURED_METADATA_INTERACTION) })
        .await
        .unwrap_err();
    assert_eq!(e.code, SpineCode::BadRequest);
    let e = app.gp_connect_metadata(GpcCall { ods: &ods, ..call(org, STRUCTURED_INTERACTION) }).await.unwrap_err();
    assert_eq!(e.code, SpineCode::BadRequest);
    // Access Document's own capability statement: its service root, the organisation scope.
    let docs_root = caldicott_app::gp_connect::documents_root(&ods);
    let docs_org = Box::leak(jwt_for(&docs_root, "organization/*.read").into_boxed_str());
    let interaction = caldicott_fhir::gpconnect::documents::METADATA_INTERACTION;
    let cs = app.gp_connect_documents_metadata(GpcCall { ods: &ods, ..call(docs_org, interaction) }).await.unwrap();
    validate_gp_connect(&cs);
    assert_eq!((cs["resourceType"].as_str(), cs["fhirVersion"].as_str()), (Some("CapabilityStatement"), Some("3.0.1")));
    let kinds: Vec<&str> =
        cs["rest"][0]["resource"].as_array().unwrap().iter().filter_map(|r| r["type"].as_str()).collect();
    assert!(kinds.contains(&"DocumentReference") && kinds.contains(&"Binary"), "{kinds:?}");
    let docs_patient = Box::leak(jwt_for(&docs_root, "patient/*.read").into_boxed_str());
    let e =
        app.gp_connect_documents_metadata(GpcCall { ods: &ods, ..call(docs_patient, interaction) }).await.unwrap_err();
    assert_eq!(e.code, SpineCode::BadRequest);
    // The structured record's token is not this endpoint's (its audience is another root).
    let e = app.gp_connect_documents_metadata(GpcCall { ods: &ods, ..call(org, interaction) }).await.unwrap_err();
    assert_eq!(e.code, SpineCode::BadRequest);
}

#[test]
fn the_test_suite_validator_can_fail() {
    // The validator must refuse what GP Connect refuses, or the checks above prove nothing.
    let python = std::env::var("CALDICOTT_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/caldicott/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let dir = std::env::temp_dir().join(format!("caldicott-gpc-{}", caldicott_app::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "not STU3",
            json!({"resourceType": "Bundle", "type": "collection", "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1"]}, "entry": [{"resource": {"resourceType": "Patient", "unknownElement": 1}}]}),
        ),
        (
            "a List with NOPAT",
            json!({"resourceType": "Bundle", "type": "collection", "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1"]}, "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Patient-1"]}}},
            {"resource": {"resourceType": "Organization", "id": "o", "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Organization-1"]}}},
            {"resource": {"resourceType": "List", "status": "current", "mode": "snapshot", "title": "Problems", "subject": {"reference": "Patient/p"}, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "717711000000103"}]},
                "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-List-1"], "security": [{"system": "http://hl7.org/fhir/v3/ActCode", "code": "NOPAT"}]}, "emptyReason": {"text": "none"}}}]}),
        ),
        (
            "a reference to nothing",
            json!({"resourceType": "Bundle", "type": "collection", "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1"]}, "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Patient-1"]}, "generalPractitioner": [{"reference": "Organization/missing"}]}},
            {"resource": {"resourceType": "Organization", "id": "o", "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Organization-1"]}}}]}),
        ),
    ];
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/validate-gpconnect.py");
    for (what, bad) in cases {
        let path = dir.join("bad.json");
        std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
        let out = std::process::Command::new(&python).arg(script).arg(&path).output().unwrap();
        assert!(!out.status.success(), "{what} was accepted: {}", String::from_utf8_lossy(&out.stdout));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A request to the documents endpoint of `ods`, with the query given.
async fn documents_call<'a>(
    ods: &'a str,
    interaction: &'a str,
    auth: &'a str,
    query: &'a [(String, String)],
) -> GpcCall<'a> {
    GpcCall {
        ods,
        ssp: SspHeaders {
            trace_id: Some("5a1e7d36-46a2-4a0c-9d1f-0a8d1b2c3d4e"),
            from: Some("200000000115"),
            to: Some(FIXTURE_ASID),
            interaction_id: Some(interaction),
        },
        authorization: Some(auth),
        body: &[],
        query,
    }
}

fn documents_jwt(ods: &str) -> String {
    jwt_for(&caldicott_app::gp_connect::documents_root(ods), "patient/*.read")
}

fn search_query(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> =
        documents::REQUIRED_INCLUDES.iter().map(|i| ("_include".to_owned(), (*i).to_owned())).collect();
    q.push(("_revinclude:recurse".into(), documents::REQUIRED_REVINCLUDE.into()));
    q.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    q
}

async fn search_documents(
    app: &App,
    ods: &str,
    auth: &str,
    q: &[(String, String)],
    patient: &str,
) -> Result<Value, GpcError> {
    app.gp_connect_document_search(documents_call(ods, documents::DOCUMENT_SEARCH_INTERACTION, auth, q).await, patient)
        .await
}

fn document(pat: &Patient, title: &str, filing: Filing, review: DocumentReview) -> Entry {
    let mut e = consultation(pat, fixtures::now() - Duration::days(5), "");
    e.body = EntryBody::Document { title: title.into(), summary: format!("{title} summary"), filing, review };
    e
}

async fn the_practices_documents_are_found_listed_and_retrieved_as_they_may_leave_it(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let other = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let filed = document(&pat, "DOC-FILED discharge letter", Filing::Filed, DocumentReview::Reviewed);
    let mut hidden = document(&pat, "DOC-HIDDEN clinic letter", Filing::Filed, DocumentReview::Reviewed);
    hidden.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::PotentiallyHarmful, "discuss first", "Dr Test", fixtures::now()).unwrap(),
    );
    let unfiled = document(&pat, "DOC-UNFILED scan", Filing::Unfiled, DocumentReview::Unreviewed);
    let mut private = document(&pat, "DOC-PRIVATE letter", Filing::Filed, DocumentReview::Reviewed);
    private.confidential = true;
    let mut safeguarding = document(&pat, "DOC-SAFEGUARDING report", Filing::Filed, DocumentReview::Reviewed);
    safeguarding.safeguarding = true;
    let pdf = b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n".to_vec();
    for d in [&filed, &hidden, &unfiled, &private, &safeguarding] {
        let file = caldicott_app::documents::stored_file("letter.pdf", pdf.clone()).unwrap();
        app.store_for_tests()
            .add_document(tp.practice.id, d, &file, &fixtures::audit(Action::EntryCreate, Some(pat.id)))
            .await
            .unwrap();
    }
    let elsewhere = adult(&app, other.practice.id).await.unwrap();
    let theirs = document(&elsewhere, "DOC-OTHER practice", Filing::Filed, DocumentReview::Reviewed);
    let file = caldicott_app::documents::stored_file("letter.pdf", pdf.clone()).unwrap();
    app.store_for_tests()
        .add_document(other.practice.id, &theirs, &file, &fixtures::audit(Action::EntryCreate, Some(elsewhere.id)))
        .await
        .unwrap();
    let auth = documents_jwt(&ods);

    // Find the patient by NHS number: one Patient; nobody: an empty searchset, not an error.
    let q = vec![("identifier".to_owned(), format!("https://fhir.nhs.uk/Id/nhs-number|{}", pat.nhs_number.as_str()))];
    let found = app
        .gp_connect_find_patient(documents_call(&ods, documents::PATIENT_SEARCH_INTERACTION, &auth, &q).await)
        .await
        .unwrap();
    validate_gp_connect(&found);
    assert_eq!(found["type"], "searchset");
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"]["resourceType"], "Patient");
    assert_eq!(found["entry"][0]["search"]["mode"], "match");
    let patient_id = found["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    assert!(found["entry"][0]["fullUrl"].as_str().unwrap().starts_with("https://provider.example.nhs.uk/gpconnect/"));
    let q =
        vec![("identifier".to_owned(), format!("https://fhir.nhs.uk/Id/nhs-number|{}", elsewhere.nhs_number.as_str()))];
    let none = app
        .gp_connect_find_patient(documents_call(&ods, documents::PATIENT_SEARCH_INTERACTION, &auth, &q).await)
        .await
        .unwrap();
    assert!(none.get("entry").is_none(), "another practice's patient is not found here");

    // Search: the filed, hidden and unfiled documents; private and safeguarding ones never.
    let q = search_query(&[]);
    let b = search_documents(&app, &ods, &auth, &q, &patient_id).await.unwrap();
    validate_gp_connect(&b);
    let text = b.to_string();
    for shown in ["DOC-FILED", "DOC-HIDDEN", "DOC-UNFILED"] {
        assert!(text.contains(shown), "{shown}");
    }
    for never in ["DOC-PRIVATE", "DOC-SAFEGUARDING", "DOC-OTHER"] {
        assert!(!text.contains(never), "{never}");
    }
    let refs: Vec<&Value> = resources(&b).into_iter().filter(|r| r["resourceType"] == "DocumentReference").collect();
    assert_eq!(refs.len(), 3);
    for r in &refs {
        let title = r["description"].as_str().unwrap();
        assert_eq!(nopat(r), !title.starts_with("DOC-FILED"), "{title}: NOPAT unless the patient sees it online");
    }
    // Filters: words of the title.
    let q = search_query(&[("description", "clinic")]);
    let b = search_documents(&app, &ods, &auth, &q, &patient_id).await.unwrap();
    assert_eq!(resources(&b).into_iter().filter(|r| r["resourceType"] == "DocumentReference").count(), 1);
    // Without the mandatory includes: refused, naming the one missing.
    let q = vec![("_include".to_owned(), "DocumentReference:subject:Patient".to_owned())];
    let e = search_documents(&app, &ods, &auth, &q, &patient_id).await.unwrap_err();
    assert_eq!(e.code, SpineCode::InvalidParameter);
    // Another practice's patient id: not found.
    let q = search_query(&[]);
    let e = search_documents(&app, &ods, &auth, &q, &elsewhere.id.to_string()).await.unwrap_err();
    assert_eq!(e.code, SpineCode::PatientNotFound);

    // Retrieve: the released document's bytes; a private one, another practice's or an unknown id
    // answer alike.
    let bin = app
        .gp_connect_binary(documents_call(&ods, documents::BINARY_INTERACTION, &auth, &[]).await, &filed.id.to_string())
        .await
        .unwrap();
    assert_eq!(bin["resourceType"], "Binary");
    assert_eq!(bin["contentType"], "application/pdf");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(bin["content"].as_str().unwrap()).unwrap(), pdf);
    validate_gp_connect(&bin);
    let mut said = Vec::new();
    for id in [
        private.id.to_string(),
        safeguarding.id.to_string(),
        theirs.id.to_string(),
        "not-an-id".into(),
        caldicott_app::new_id().to_string(),
    ] {
        let e = app
            .gp_connect_binary(documents_call(&ods, documents::BINARY_INTERACTION, &auth, &[]).await, &id)
            .await
            .unwrap_err();
        assert_eq!((e.code, e.code.http_status()), (SpineCode::NoRecordFound, 404), "{id}");
        said.push(e.diagnostics);
    }
    said.dedup();
    assert_eq!(said.len(), 1);

    // Every look is audited, with who asked.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    let looks: Vec<_> = events.iter().filter(|e| e.action == "record.gp_connect_documents").collect();
    assert!(looks.iter().any(|e| e.outcome == "success" && e.entity == format!("document/{}", filed.id)));
    assert!(looks.iter().any(|e| e.outcome == "success" && e.detail.contains("documents=3")));
    assert!(looks.iter().all(|e| e.detail.contains("who=Dr Claire Jones at Riverside General Hospital (RXX01)")));
    assert!(looks.iter().all(|e| !e.detail.contains("DOC-")), "no document text in the audit");

    // The practice turns Access Document off: refused, and audited.
    let manager = caldicott_app::auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let input = settings(true, false);
    app.change_practice_settings(&manager, &input).await.unwrap().unwrap();
    let e = app
        .gp_connect_binary(documents_call(&ods, documents::BINARY_INTERACTION, &auth, &[]).await, &filed.id.to_string())
        .await
        .unwrap_err();
    assert_eq!(e.code, SpineCode::AccessDenied);
}

/// "The patient has dissented to sharing their clinical record" → `NO_PATIENT_CONSENT` (403), in
/// the error tables of Access Record: Structured and Access Document. Written from those tables
/// and from what a practice does: a patient tells reception they do not want hospitals to see
/// their GP record; a clinician records it; every record interface refuses until it is taken away.
async fn a_patient_who_dissents_is_refused_on_every_record_interface_until_the_practice_takes_it_away(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let other = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    add(&app, tp.practice.id, &pat, &[consultation(&pat, fixtures::now() - Duration::days(3), "DISSENT-NOTE asthma")])
        .await;
    let letter = document(&pat, "DISSENT-DOC discharge letter", Filing::Filed, DocumentReview::Reviewed);
    let file = caldicott_app::documents::stored_file("letter.pdf", b"%PDF-1.7\n%%EOF\n".to_vec()).unwrap();
    app.store_for_tests()
        .add_document(tp.practice.id, &letter, &file, &fixtures::audit(Action::EntryCreate, Some(pat.id)))
        .await
        .unwrap();
    let auth = documents_jwt(&ods);
    let search = |app: &App| {
        let (app, ods, auth, id) = (app.clone(), ods.clone(), auth.clone(), pat.id.to_string());
        async move { search_documents(&app, &ods, &auth, &search_query(&[]), &id).await }
    };
    let retrieve = |app: &App| {
        let (app, ods, auth, id) = (app.clone(), ods.clone(), auth.clone(), letter.id.to_string());
        async move {
            app.gp_connect_binary(documents_call(&ods, documents::BINARY_INTERACTION, &auth, &[]).await, &id).await
        }
    };
    assert!(ask(&app, &ods, FIXTURE_ASID, &nhs, everything()).await.is_ok(), "shared by default");
    assert!(search(&app).await.is_ok() && retrieve(&app).await.is_ok());

    // Only clinicians and practice managers record it; a reason is required; another practice's
    // staff cannot reach the patient. Each refusal changes nothing.
    let reception = caldicott_app::auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let e = app.set_gp_connect_dissent(&reception, &nhs, true, "asked at the desk").await.unwrap_err();
    assert!(matches!(e, caldicott_app::AppError::Forbidden(_)), "{e:?}");
    let e = app.set_gp_connect_dissent(&tp.clinician, &nhs, true, " \n\t ").await.unwrap_err();
    assert!(matches!(e, caldicott_app::AppError::BadRequest(_)), "{e:?}");
    let e = app.set_gp_connect_dissent(&other.clinician, &nhs, true, "not ours").await.unwrap_err();
    assert!(matches!(e, caldicott_app::AppError::NotFound(_)), "{e:?}");
    assert!(ask(&app, &ods, FIXTURE_ASID, &nhs, everything()).await.is_ok(), "nothing was recorded");

    // Recorded, with who and why; the staff record carries it.
    let held = app
        .set_gp_connect_dissent(&tp.clinician, &nhs, true, "Does not want hospitals\nto see her GP record")
        .await
        .unwrap()
        .expect("the dissent stands");
    assert_eq!(held.reason, "Does not want hospitals to see her GP record", "one line, nothing lost");
    assert_eq!(held.recorded_by, tp.clinician.name);
    let page = caldicott_app::record::PageRequest { limit: Some(1), ..Default::default() };
    let rec = app.staff_record(&tp.clinician, &nhs, caldicott_app::record::ViewAs::Patient, &page).await.unwrap();
    assert_eq!(rec.gp_connect_dissent.as_ref(), Some(&held));

    // Every record interface refuses with NO_PATIENT_CONSENT, and says nothing of the record.
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let listed = |lines: Vec<caldicott_app::patient_services::ActivityLine>| {
        lines.iter().filter(|l| l.what.contains("GP Connect")).count()
    };
    let reads_before = listed(app.my_record_activity(&me).await.unwrap());
    assert!(reads_before >= 3, "the reads made before the dissent are listed");
    let before = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
    let refusals = [
        ask(&app, &ods, FIXTURE_ASID, &nhs, everything()).await.unwrap_err(),
        search(&app).await.unwrap_err(),
        retrieve(&app).await.unwrap_err(),
    ];
    for e in &refusals {
        assert_eq!((e.code, e.code.http_status()), (SpineCode::NoPatientConsent, 403));
        let oo = e.operation_outcome();
        validate_gp_connect(&oo);
        assert_eq!(oo["issue"][0]["code"], "forbidden");
        assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "NO_PATIENT_CONSENT");
        assert!(!oo.to_string().contains("DISSENT-") && !oo.to_string().contains("hospitals"), "{oo}");
    }
    // Each refusal is audited, as denied, with who asked.
    let events = app.store_for_tests().audit_events(tp.practice.id, before, 1000).await.unwrap();
    let denied: Vec<_> = events.iter().filter(|e| e.outcome == "denied").collect();
    assert_eq!(denied.len(), 3, "{events:#?}");
    assert!(denied.iter().all(|e| e.patient.as_deref() == Some(pat.id.to_string().as_str())
        && e.detail.contains("who=Dr Claire Jones at Riverside General Hospital (RXX01)")
        && e.detail.contains("dissented")));
    assert!(events.iter().all(|e| e.outcome != "success"), "nothing was released");
    // The patient's "who viewed my record" lists no refused attempt.
    assert_eq!(listed(app.my_record_activity(&me).await.unwrap()), reads_before);
    // Finding the patient (demographics only, used to book appointments) still answers.
    let q = vec![("identifier".to_owned(), format!("https://fhir.nhs.uk/Id/nhs-number|{nhs}"))];
    let found = app
        .gp_connect_find_patient(documents_call(&ods, documents::PATIENT_SEARCH_INTERACTION, &auth, &q).await)
        .await
        .unwrap();
    assert_eq!(found["total"], 1);

    // Recording it again changes nothing (one audit event in all).
    let again = app.set_gp_connect_dissent(&tp.clinician, &nhs, true, "said again").await.unwrap();
    assert_eq!(again.as_ref(), Some(&held));
    // Taken away: shared again.
    let manager = caldicott_app::auth::authenticate(&app, &tp.manager_token).await.unwrap();
    assert_eq!(app.set_gp_connect_dissent(&manager, &nhs, false, "asked to share again").await.unwrap(), None);
    assert!(ask(&app, &ods, FIXTURE_ASID, &nhs, everything()).await.is_ok());
    assert!(search(&app).await.is_ok() && retrieve(&app).await.is_ok());
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    let changes: Vec<_> = events.iter().filter(|e| e.action == "access.gp_connect_dissent").collect();
    assert_eq!(changes.len(), 2, "recorded once, taken away once");
    assert!(changes[0].detail.contains("Does not want hospitals to see her GP record"));
    assert!(changes[1].detail.contains("taken away: asked to share again"));
}

/// Dissent is recorded once and taken away once, also when a clinician and a practice manager
/// press the button at the same moment: every request answers with the one record that stands,
/// and the audit log has one event for each change, not one per request.
async fn dissent_recorded_from_parallel_requests_is_recorded_once(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let manager = caldicott_app::auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let changes = || async {
        let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
        events.iter().filter(|e| e.action == "access.gp_connect_dissent").count()
    };
    for (dissent, expected) in [(true, 1), (false, 2)] {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (app, who, nhs) =
                (app.clone(), if i % 2 == 0 { tp.clinician.clone() } else { manager.clone() }, nhs.clone());
            calls.spawn(async move { app.set_gp_connect_dissent(&who, &nhs, dissent, &format!("request {i}")).await });
        }
        let mut answers = Vec::new();
        while let Some(r) = calls.join_next().await {
            answers.push(r.unwrap().unwrap());
        }
        answers.dedup();
        assert_eq!(answers.len(), 1, "every request answers with what stands: {answers:?}");
        assert_eq!(answers[0].is_some(), dissent);
        assert_eq!(changes().await, expected, "one audited change, not one per request");
    }
}

both!(
    dissent_recorded_from_parallel_requests_is_recorded_once,
    a_patient_who_dissents_is_refused_on_every_record_interface_until_the_practice_takes_it_away,
    the_practices_documents_are_found_listed_and_retrieved_as_they_may_leave_it,
    hidden_online_goes_with_nopat_private_and_safeguarding_stay_at_the_practice,
    an_unknown_deregistered_deceased_or_other_practices_patient_is_not_found_alike,
    the_practice_switch_and_its_asid_decide_whether_it_answers,
    a_bad_request_reads_nothing_and_the_capability_statement_needs_the_organisation_scope,
);
