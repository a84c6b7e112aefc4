//! GP Connect Patient Facing Services: Prescriptions Management (FHIR R4), as a patient's app
//! calls it. Written from the specification (NHS England's OpenAPI document for the API: each
//! endpoint, its parameters and its error table), R22 (P9 for the record), R15 (a proxy with
//! the prescriptions permission), R12 (a hidden medicine is never shown or offered) and the
//! rule that an order made twice (a retried request, a second tap) makes one order.

use axum::http::{header, StatusCode};
use caldicott_app::fixtures::{self, adult, consultation, linked_app};
use caldicott_app::App;
use caldicott_core::entry::*;
use caldicott_core::ids::EntryId;
use caldicott_core::patient::Patient;
use caldicott_core::tasks::{TaskKind, TaskStatus};
use caldicott_store::test_support::{self, TestStore};
use chrono::Duration;
use serde_json::{json, Value};

use super::nhs_app_outside::{call_raw, token_for, Reply, CORRELATION_ID};

const REQUEST_ID: &str = "60E0B220-8136-4CA5-AE46-1D97EF59D068";

async fn call(
    app: &App,
    method: &str,
    path: &str,
    token: &str,
    body: Option<(&str, Value)>,
    request_id: bool,
) -> Reply {
    let body = body.map(|(media, b)| (media, b.to_string().into_bytes()));
    call_raw(app, method, path, token, body, request_id.then_some(REQUEST_ID)).await
}

/// Checks answers as FHIR R4 with fhirclient's strict models (scripts/validate-fhir.py).
fn validate_r4(answers: &[Value]) {
    let dir = std::env::temp_dir().join(format!("caldicott-pfs-rx-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<String> = answers
        .iter()
        .enumerate()
        .map(|(n, a)| {
            let p = dir.join(format!("{n}.json"));
            std::fs::write(&p, a.to_string()).unwrap();
            p.display().to_string()
        })
        .collect();
    let python = std::env::var("CALDICOTT_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/caldicott/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/validate-fhir.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .args(&paths)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}; run scripts/test.sh, which installs the FHIR validator"));
    std::fs::remove_dir_all(&dir).ok();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert_eq!(said.matches("valid FHIR R4").count(), answers.len(), "{said}");
}

async fn get(app: &App, path: &str, token: &str) -> Reply {
    call(app, "GET", path, token, None, true).await
}

/// An access token with `scope` for the patient of an app's link (client id, secret, link token).
async fn token_with(app: &App, link: &(String, String, String), scope: &str) -> String {
    let (status, token) = token_for(app, link, scope, None).await;
    assert_eq!(status, StatusCode::OK);
    token
}

fn medicine(pat: &Patient, drug: &str, course: MedicationCourse, days_ago: i64) -> Entry {
    let mut e = consultation(pat, fixtures::now() - Duration::days(days_ago), "");
    e.body =
        EntryBody::Medication { drug: drug.into(), dosage: "One daily".into(), quantity: "28 tablets".into(), course };
    e
}

/// The specification's example order, for `nhs`, of the course `focus`.
fn order_body(nhs: &str, focus: &str) -> Value {
    json!({
        "resourceType": "Task",
        "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Task"] },
        "identifier": [{ "system": "https://tools.ietf.org/html/rfc4122", "value": "ce3354f5-98c2-43ad-95bd-a6df1c5ed169" }],
        "status": "requested",
        "intent": "order",
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "103742009", "display": "Renewal of prescription" }] },
        "focus": { "reference": format!("MedicationRequest/{focus}") },
        "for": { "reference": format!("Patient/{nhs}"), "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } },
        "authoredOn": "2022-10-13T09:20:27.000Z",
        "requester": { "reference": format!("Patient/{nhs}"), "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } },
        "note": [{ "authorString": "Patient", "text": "ran out of previous prescription" }],
    })
}

async fn open_orders(app: &App, tp: &fixtures::TestPractice, pat: &Patient) -> usize {
    let tasks = app.store_for_tests().tasks_for_patient(tp.practice.id, pat.id).await.unwrap();
    tasks.iter().filter(|t| t.kind == TaskKind::RepeatRequest && t.status == TaskStatus::Open).count()
}

async fn a_patients_app_manages_their_prescriptions(t: &TestStore) {
    let app = App::new(t.store.clone(), fixtures::test_clock()).with_public_url("http://test").unwrap();
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let amlodipine = medicine(&pat, "Amlodipine 5mg tablets", MedicationCourse::RepeatTemplate, 40);
    let atorvastatin = medicine(&pat, "Atorvastatin 20mg tablets", MedicationCourse::RepeatTemplate, 40);
    let acute = medicine(&pat, "Amoxicillin 250mg capsules", MedicationCourse::Acute, 10);
    let mut hidden = medicine(&pat, "SECRET-RX Sertraline 50mg tablets", MedicationCourse::RepeatTemplate, 40);
    hidden.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::ThirdParty, "names a relative", "Dr Test", fixtures::now() - Duration::days(40))
            .unwrap(),
    );
    let mut issue = consultation(&pat, fixtures::now() - Duration::days(20), "");
    issue.body = EntryBody::MedicationIssue {
        drug: "Amlodipine 5mg tablets".into(),
        dosage: "One daily".into(),
        quantity: "28 tablets".into(),
        template: Some(amlodipine.id),
    };
    let all = [amlodipine.clone(), atorvastatin.clone(), acute.clone(), hidden.clone(), issue.clone()];
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &all).await.unwrap();
    let link = linked_app(&app, &tp, &pat).await.unwrap();
    let token = token_with(&app, &link, "patient/*.read patient/Task.write").await;
    let ods = tp.practice.ods_code.as_str().to_owned();
    let root = format!("/pfs/{ods}/FHIR/R4/prescriptions");
    // Every answer, checked as FHIR R4 at the end.
    let mut answers: Vec<Value> = Vec::new();

    // X-Request-ID is required (400 BAD_REQUEST) and answered back with X-Correlation-ID.
    let r = call(&app, "GET", &format!("{root}/Patient/{nhs}/MedicationStatement"), &token, None, false).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{}", r.body);
    assert_eq!(r.body["meta"]["profile"][0], "https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome");
    answers.push(r.body.clone());
    let r = get(&app, &format!("{root}/Patient/{nhs}/MedicationStatement"), &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["x-request-id"], REQUEST_ID);
    assert_eq!(r.headers["x-correlation-id"], CORRELATION_ID);
    assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/fhir+json"));

    // MedicationStatement: each course the patient may see, based on its plan, named as the
    // specification names it; never the hidden one.
    assert_eq!(r.body["type"], "searchset");
    let statements = r.resources("MedicationStatement");
    answers.push(r.body.clone());
    assert_eq!(statements.len(), 3, "{}", r.body);
    assert!(!r.body.to_string().contains("SECRET-RX"), "a hidden medicine reached the app");
    let of = |id: &EntryId| statements.iter().find(|s| s["id"] == id.to_string()).cloned().unwrap();
    let s = of(&amlodipine.id);
    assert_eq!(s["meta"]["profile"][0], "https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationStatement");
    assert_eq!(s["basedOn"][0]["reference"], format!("MedicationRequest/{}", amlodipine.id));
    assert_eq!(s["basedOn"][0]["display"], "Repeat prescription request for Amlodipine 5mg tablets");
    assert_eq!(of(&acute.id)["basedOn"][0]["display"], "Acute prescription request for Amoxicillin 250mg capsules");
    assert_eq!(s["subject"]["identifier"]["value"], nhs.as_str());
    assert_eq!(s["subject"]["identifier"]["system"], "https://fhir.nhs.uk/Id/nhs-number");
    // `effective` narrows by the course's start; a bad date is INVALID_PARAMETER.
    let since = (fixtures::today() - Duration::days(15)).to_string();
    let r = get(&app, &format!("{root}/Patient/{nhs}/MedicationStatement?effective=ge{since}"), &token).await;
    assert_eq!(r.resources("MedicationStatement").len(), 1, "only the acute course started since");
    let r = get(&app, &format!("{root}/Patient/{nhs}/MedicationStatement?effective=ge2024-13-01"), &token).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "INVALID_PARAMETER"));
    // Another patient's NHS number, or an invalid one.
    let other = adult(&app, tp.practice.id).await.unwrap();
    let r = get(&app, &format!("{root}/Patient/{}/MedicationStatement", other.nhs_number.as_str()), &token).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"));
    let r = get(&app, &format!("{root}/Patient/1234567890/MedicationStatement"), &token).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "INVALID_NHS_NUMBER"));

    // MedicationRequest: courses are `plan`, issues `order` based on their plan.
    let r = get(&app, &format!("{root}/Patient/{nhs}/MedicationRequest?intent=plan"), &token).await;
    let plans = r.resources("MedicationRequest");
    answers.push(r.body.clone());
    assert_eq!(plans.len(), 3, "{}", r.body);
    assert!(plans.iter().all(|p| p["intent"] == "plan"));
    assert!(!r.body.to_string().contains("SECRET-RX"));
    let r = get(&app, &format!("{root}/Patient/{nhs}/MedicationRequest?intent=order"), &token).await;
    let orders = r.resources("MedicationRequest");
    answers.push(r.body.clone());
    assert_eq!(orders.len(), 1, "{}", r.body);
    assert_eq!(orders[0]["basedOn"][0]["reference"], format!("MedicationRequest/{}", amlodipine.id));
    let r = get(&app, &format!("{root}/Patient/{nhs}/MedicationRequest?intent=proposal"), &token).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "INVALID_PARAMETER"));
    let tomorrow = (fixtures::today() + Duration::days(1)).to_string();
    let r = get(&app, &format!("{root}/Patient/{nhs}/MedicationRequest?authoredon=ge{tomorrow}"), &token).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "INVALID_PARAMETER"), "a date in the future");
    // One by id; a hidden one answers as an unknown one.
    let r = get(&app, &format!("{root}/MedicationRequest/{}", amlodipine.id), &token).await;
    answers.push(r.body.clone());
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!((r.body["intent"].as_str(), r.body["status"].as_str()), (Some("plan"), Some("active")));
    assert_eq!(r.body["meta"]["profile"][0], "https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest");
    for unknown in [hidden.id.to_string(), EntryId::from_uuid(uuid::Uuid::now_v7()).to_string()] {
        let r = get(&app, &format!("{root}/MedicationRequest/{unknown}"), &token).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"));
        assert!(!r.body.to_string().contains("SECRET-RX"));
    }
    let r = get(&app, &format!("{root}/MedicationRequest/not-an-id"), &token).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "INVALID_PARAMETER"));
    // Who prescribed, when the course names them.
    if let Some(role) = r_requester(&app, &root, &token, &amlodipine).await {
        let r = get(&app, &format!("{root}/{role}"), &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["organization"]["identifier"]["value"], ods.as_str());
    }
    let r = get(&app, &format!("{root}/PractitionerRole/{}", tp.clinician.staff), &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["resourceType"], "PractitionerRole");
    answers.push(r.body.clone());
    assert_eq!(r.body["organization"]["identifier"]["value"], ods.as_str());

    // Ordering: the specification's example, for a current repeat.
    let task_path = format!("{root}/Task");
    let made = call(
        &app,
        "POST",
        &task_path,
        &token,
        Some(("application/fhir+json", order_body(&nhs, &amlodipine.id.to_string()))),
        true,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["status"], "requested");
    answers.push(made.body.clone());
    assert_eq!(made.body["intent"], "order");
    assert_eq!(made.body["for"]["identifier"]["value"], nhs.as_str());
    assert_eq!(made.body["focus"]["reference"], format!("MedicationRequest/{}", amlodipine.id));
    let task_id = made.body["id"].as_str().unwrap().to_owned();
    assert_eq!(open_orders(&app, &tp, &pat).await, 1, "the order is a task for a clinician");
    // The same medicine again while it waits: DUPLICATE_REJECTED, no second order.
    let again = call(
        &app,
        "POST",
        &task_path,
        &token,
        Some(("application/fhir+json", order_body(&nhs, &amlodipine.id.to_string()))),
        true,
    )
    .await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "DUPLICATE_REJECTED"), "{}", again.body);
    assert_eq!(open_orders(&app, &tp, &pat).await, 1);
    // Refused, each writing nothing: the hidden repeat (as if unknown), no focus, another
    // patient, a one-off pharmacy (not offered online), a body that is not JSON.
    let mut no_focus = order_body(&nhs, "x");
    no_focus.as_object_mut().unwrap().remove("focus");
    let mut one_off = order_body(&nhs, &atorvastatin.id.to_string());
    one_off["input"] = json!([{ "type": { "coding": [{ "system": "https://fhir.hl7.org.uk/GPConnect-PrescriptionOrderingParameters", "code": "preferred-performer" }] },
        "valueIdentifier": { "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "FLM49" } }]);
    let cases = [
        ("hidden", order_body(&nhs, &hidden.id.to_string()), 422, "REFERENCE_NOT_FOUND"),
        ("no focus", no_focus, 422, "INVALID_RESOURCE"),
        (
            "another patient",
            order_body(other.nhs_number.as_str(), &atorvastatin.id.to_string()),
            422,
            "REFERENCE_NOT_FOUND",
        ),
        ("one-off pharmacy", one_off, 422, "INVALID_RESOURCE"),
    ];
    for (what, body, status, code) in cases {
        let r = call(&app, "POST", &task_path, &token, Some(("application/fhir+json", body)), true).await;
        assert_eq!((r.status.as_u16(), r.code()), (status, code), "{what}: {}", r.body);
        assert!(!r.body.to_string().contains("SECRET-RX"), "{what}");
    }
    assert_eq!(open_orders(&app, &tp, &pat).await, 1, "no refused order was made");
    // Reading only: ordering needs patient/Task.write.
    let reader = token_with(&app, &link, "patient/*.read").await;
    let r = call(
        &app,
        "POST",
        &task_path,
        &reader,
        Some(("application/fhir+json", order_body(&nhs, &atorvastatin.id.to_string()))),
        true,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"));

    // Following the orders, with the medicines they are for.
    let r = get(&app, &format!("{task_path}?patient={nhs}&_include=Task:focus:MedicationRequest"), &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tasks = r.resources("Task");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], task_id.as_str());
    let included = r.resources("MedicationRequest");
    answers.push(r.body.clone());
    assert_eq!(included.len(), 1);
    assert_eq!(included[0]["id"], amlodipine.id.to_string());
    let r = get(&app, &format!("{task_path}?id={task_id}"), &token).await;
    assert_eq!(r.resources("Task").len(), 1);
    let r = get(&app, &task_path, &token).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "INVALID_PARAMETER"), "patient or id is needed");
    let r = get(&app, &format!("{task_path}?patient={}", other.nhs_number.as_str()), &token).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ACCESS_DENIED"));

    // Cancelling: the specification's JSON Patch, as application/json-patch+json.
    let patch = json!({ "op": "replace", "path": "/status", "value": "cancelled" });
    let cancel_path = format!("{task_path}?id={task_id}");
    let r = call(&app, "PATCH", &cancel_path, &token, Some(("application/fhir+json", patch.clone())), true).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let wrong = json!([{ "op": "replace", "path": "/status", "value": "completed" }]);
    let r = call(&app, "PATCH", &cancel_path, &token, Some(("application/json-patch+json", wrong)), true).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "INVALID_RESOURCE"));
    assert_eq!(open_orders(&app, &tp, &pat).await, 1, "nothing changed");
    let r = call(&app, "PATCH", &cancel_path, &token, Some(("application/json-patch+json", patch.clone())), true).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    answers.push(r.body.clone());
    assert_eq!(open_orders(&app, &tp, &pat).await, 0);
    // Already cancelled: RESOURCE_NOT_FOUND, as the specification says.
    let r = call(&app, "PATCH", &cancel_path, &token, Some(("application/json-patch+json", patch)), true).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND"));
    // Cancelled, the medicine may be ordered again.
    let r = call(
        &app,
        "POST",
        &task_path,
        &token,
        Some(("application/fhir+json", order_body(&nhs, &amlodipine.id.to_string()))),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // Two taps at once (or a retried request) of a medicine not yet ordered: one order.
    let mut runs = Vec::new();
    for _ in 0..5 {
        let (app, path, token, body) =
            (app.clone(), task_path.clone(), token.clone(), order_body(&nhs, &atorvastatin.id.to_string()));
        runs.push(tokio::spawn(async move {
            call(&app, "POST", &path, &token, Some(("application/fhir+json", body)), true).await.status
        }));
    }
    let mut made = 0;
    for r in runs {
        match r.await.unwrap() {
            StatusCode::CREATED => made += 1,
            StatusCode::CONFLICT => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(made, 1, "parallel orders of one medicine make one order");
    assert_eq!(open_orders(&app, &tp, &pat).await, 2);
    validate_r4(&answers);
}

/// The course's requester as a PractitionerRole reference, when it names one.
async fn r_requester(app: &App, root: &str, token: &str, course: &Entry) -> Option<String> {
    let r = get(app, &format!("{root}/MedicationRequest/{}", course.id), token).await;
    r.body["requester"]["reference"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pfs_prescriptions_on_sqlite() {
    a_patients_app_manages_their_prescriptions(&test_support::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pfs_prescriptions_on_postgres() {
    a_patients_app_manages_their_prescriptions(&test_support::postgres().await.unwrap()).await;
}
