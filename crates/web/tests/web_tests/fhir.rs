#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The FHIR API over HTTP: OperationOutcome errors, the token endpoint's OAuth errors (apps and
//! practice integrations), hidden ids answering exactly as unknown ones, Binary as a download or
//! a resource, an authorization matrix of every FHIR route × kind of token × practice (T6), and a
//! real FHIR client (fhirclient, installed by scripts/test.sh) reading a patient through a linked
//! app's token against a running server. Both databases.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use caldicott_app::fixtures::{self, adult, consultation, linked_app, withheld_entries};
use caldicott_app::App;
use caldicott_core::audit::Action;
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
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

async fn send(app: &App, req: Request<Body>) -> Reply {
    let path = req.uri().path().to_owned();
    let res = caldicott_web::router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
    let reply = Reply { status, headers, body };
    // Every answer under the FHIR base that any test here gets is checked as a FHIR client takes
    // it: no empty arrays (FHIR leaves an empty element out), and every error an OperationOutcome
    // (the token endpoint answers OAuth errors, as OAuth says).
    if path.starts_with("/fhir/r4") {
        if let Ok(v) = serde_json::from_str::<Value>(&reply.body) {
            no_empty_arrays(&v);
        }
        if path != "/fhir/r4/token" && !reply.status.is_success() {
            assert_eq!(reply.headers[header::CONTENT_TYPE], "application/fhir+json", "{status} {path}: {}", reply.body);
            assert_eq!(reply.json()["resourceType"], "OperationOutcome", "{status} {path}: {}", reply.body);
        }
    }
    reply
}

use caldicott_app::fixtures::no_empty_arrays;

async fn get(app: &App, uri: &str, token: Option<&str>) -> Reply {
    let mut req = Request::get(uri).header(header::HOST, "test");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

async fn token_request(app: &App, client: &str, secret: &str, form: &str) -> Reply {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
    let req = Request::post("/fhir/r4/token")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    send(app, req).await
}

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock()).with_public_url("http://test").unwrap()
}

async fn fhir_errors_are_operation_outcomes_and_hidden_ids_look_unknown(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let hidden = withheld_entries(&pat, caldicott_app::fixtures::now() - Duration::days(2), "SECRET-HTTP");
    fixtures::add_entries(&app, tp.practice.id, None, &hidden).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    // The CapabilityStatement needs no token and says what is served.
    let cap = get(&app, "/fhir/r4/metadata", None).await;
    assert_eq!(cap.status, StatusCode::OK);
    assert_eq!(cap.headers[header::CONTENT_TYPE], "application/fhir+json");
    assert_eq!(cap.json()["fhirVersion"], "4.0.1");
    // No token: 401 OperationOutcome with WWW-Authenticate.
    let none = get(&app, &format!("/fhir/r4/Patient/{}", pat.id), None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(none.json()["resourceType"], "OperationOutcome");
    assert_eq!(none.json()["issue"][0]["code"], "login");
    // The token endpoint speaks OAuth: errors by name, tokens never cached.
    let wrong = token_request(&app, &client, "nope", &format!("grant_type=refresh_token&refresh_token={link}")).await;
    // A wrong client secret is a failed client authentication (RFC 6749 §5.2).
    assert_eq!((wrong.status, wrong.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    let scope = token_request(
        &app,
        &client,
        &secret,
        &format!("grant_type=refresh_token&refresh_token={link}&scope=system/*.read"),
    )
    .await;
    assert_eq!(scope.json()["error"], "invalid_scope");
    let grant = token_request(&app, &client, &secret, "grant_type=password").await;
    assert_eq!(grant.json()["error"], "unsupported_grant_type");
    let ok = token_request(&app, &client, &secret, &format!("grant_type=refresh_token&refresh_token={link}")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.headers[header::CACHE_CONTROL], "no-store");
    let token = ok.json()["access_token"].as_str().unwrap().to_owned();
    // A hidden entry's id answers byte for byte as a made-up one (T2).
    for h in &hidden {
        let t = caldicott_fhir::write::resource_type(h.kind());
        let a = get(&app, &format!("/fhir/r4/{t}/{}", h.id), Some(&token)).await;
        let made_up = uuid::Uuid::now_v7();
        let b = get(&app, &format!("/fhir/r4/{t}/{made_up}"), Some(&token)).await;
        assert_eq!((a.status, b.status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
        assert_eq!(a.body.replace(&h.id.to_string(), "X"), b.body.replace(&made_up.to_string(), "X"));
        assert_eq!(a.json()["issue"][0]["code"], "not-found");
    }
    // Bad input is named.
    let bad = get(&app, "/fhir/r4/Encounter?_count=abc", Some(&token)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["issue"][0]["code"], "invalid");
    // A search parameter not served is ignored, unless the client asks for strict handling.
    let lenient = get(&app, "/fhir/r4/Encounter?code=http://snomed.info/sct|185317003", Some(&token)).await;
    assert_eq!(lenient.status, StatusCode::OK, "{}", lenient.body);
    let strict = send(
        &app,
        Request::get("/fhir/r4/Encounter?code=http://snomed.info/sct|185317003")
            .header(header::HOST, "test")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("prefer", "return=representation, handling=strict")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST, "{}", strict.body);
    assert!(strict.json()["issue"][0]["diagnostics"].as_str().unwrap().starts_with("code is not a search parameter"));
    // A modifier is never ignored (FHIR R4 search 3.1.1.5): code:not would otherwise include
    // what the client asked to leave out.
    for q in ["code:not=http://snomed.info/sct|1011481000000105", "date:missing=true", "code:text=eGFR"] {
        let r = get(&app, &format!("/fhir/r4/Observation?{q}"), Some(&token)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.body);
        assert!(r.json()["issue"][0]["diagnostics"].as_str().unwrap().contains("modifiers are not supported"));
    }
    let everything = get(&app, &format!("/fhir/r4/Patient/{}/$everything", pat.id), Some(&token)).await;
    assert_eq!(everything.status, StatusCode::OK);
    assert!(!everything.body.contains("SECRET-HTTP"));
    assert_eq!(everything.headers[header::CACHE_CONTROL], "no-store");
}

/// A practice integration's token, by the HTTP token endpoint with a signed client assertion.
async fn integration_token(app: &App, tp: &fixtures::TestPractice, scopes: &str) -> String {
    let admin = caldicott_app::auth::authenticate(app, &tp.admin_token).await.unwrap();
    let (private, public) = caldicott_app::fhir_api::new_key_pair().unwrap();
    let i = app
        .register_integration(
            &admin,
            &caldicott_app::fhir_api::NewIntegration {
                name: "Reporting".into(),
                public_key: public,
                scopes: scopes.into(),
            },
        )
        .await
        .unwrap();
    let assertion = caldicott_app::fhir_api::client_assertion(
        &i.client_id,
        &private,
        "http://test/fhir/r4/token",
        caldicott_app::fixtures::now(),
    )
    .unwrap();
    let form = format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
        caldicott_app::fhir_api::ASSERTION_TYPE.replace(':', "%3A")
    );
    let req = Request::post("/fhir/r4/token")
        .header(header::HOST, "test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let r = send(app, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// T6 for the FHIR routes: every route × no token, a forged token, this practice's app (bound
/// to patient A), an app of another practice, an app acting for someone else of this practice
/// (a parent's, for their child), this practice's integration, another practice's integration,
/// this practice's clinician, an administrator, and a clinician of another practice; asking
/// about patient A of this practice: reads and searches of every resource type served, the
/// practice's slots and directory, and the two writes (booking and cancelling).
async fn every_fhir_route_for_every_kind_of_token(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let other_tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let elsewhere = adult(&app, other_tp.practice.id).await.unwrap();
    let entry = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(1), "MATRIX visit");
    let mut course = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(2), "");
    course.body = caldicott_core::entry::EntryBody::Medication {
        drug: "MATRIX drug".into(),
        dosage: "One daily".into(),
        quantity: "28".into(),
        course: caldicott_core::entry::MedicationCourse::RepeatTemplate,
    };
    let mut letter = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(3), "");
    letter.body = caldicott_core::entry::EntryBody::Document {
        title: "MATRIX letter".into(),
        summary: "MATRIX summary".into(),
        filing: caldicott_core::entry::Filing::Filed,
        review: caldicott_core::entry::DocumentReview::Reviewed,
    };
    let mut problem = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(4), "");
    problem.body = caldicott_core::entry::EntryBody::Problem { title: "MATRIX asthma".into(), active: true };
    let mut result = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(5), "");
    result.body = caldicott_core::entry::EntryBody::TestResult {
        test: "MATRIX haemoglobin".into(),
        value: "140".into(),
        unit: "g/L".into(),
        range: "130-180".into(),
        abnormal: false,
        filing: caldicott_core::entry::Filing::Filed,
    };
    let mut allergy = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(6), "");
    allergy.body =
        caldicott_core::entry::EntryBody::Allergy { substance: "MATRIX penicillin".into(), reaction: "Rash".into() };
    let mut jab = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(7), "");
    jab.body = caldicott_core::entry::EntryBody::Immunisation { vaccine: "MATRIX influenza".into() };
    // Practice-facing only: never shown online (R8).
    let mut message = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(8), "");
    message.body = caldicott_core::entry::EntryBody::AdminMessage {
        subject: "MATRIX message".into(),
        text: "MATRIX note".into(),
        channel: caldicott_core::entry::AdminChannel::Note,
    };
    // A care plan (CarePlan) with a goal (Goal), issue 26.
    let mut plan = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(9), "");
    plan.body = caldicott_core::entry::EntryBody::CarePlan { condition: "MATRIX asthma".into(), review: None };
    let mut goal = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(9), "");
    goal.body = caldicott_core::entry::EntryBody::CarePlanPart {
        plan: plan.id,
        part: caldicott_core::entry::PlanPart::Goal,
        text: "MATRIX no night waking".into(),
    };
    fixtures::add_entries(
        &app,
        tp.practice.id,
        None,
        &[
            entry.clone(),
            course.clone(),
            letter.clone(),
            problem.clone(),
            result.clone(),
            allergy.clone(),
            jab.clone(),
            message.clone(),
            plan.clone(),
            goal.clone(),
        ],
    )
    .await
    .unwrap();
    // A parent of this practice who acts for their child.
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let child = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - Duration::days(365 * 6));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    fixtures::proxy_link(
        &app,
        tp.practice.id,
        &child,
        &parent,
        caldicott_core::access::AccessLevel::Full,
        caldicott_app::fixtures::today(),
    )
    .await
    .unwrap();
    let token_of = |client: String, secret: String, link: String, extra: String| {
        let app = app.clone();
        async move {
            let form = format!("grant_type=refresh_token&refresh_token={link}{extra}");
            let r = token_request(&app, &client, &secret, &form).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.json()["access_token"].as_str().unwrap().to_owned()
        }
    };
    // A clinic of this practice with two slots; patient A holds the first.
    fixtures::online_clinic(&app, &tp, 3, ("10:00", "10:20"), 10).await.unwrap();
    let slots: Vec<String> = app
        .store_for_tests()
        .slots_between(
            tp.practice.id,
            caldicott_app::fixtures::now(),
            caldicott_app::fixtures::now() + Duration::days(7),
        )
        .await
        .unwrap()
        .iter()
        .map(|(s, _)| s.id.to_string())
        .collect();
    assert_eq!(slots.len(), 2);
    // Every app may book (the strongest app token); reading alone is the narrower case, covered
    // in the app tests.
    let write = "&scope=patient%2F*.read%20patient%2FAppointment.write".to_owned();
    let (c, s, l) = linked_app(&app, &tp, &pat).await.unwrap();
    let app_a = token_of(c, s, l, write.clone()).await;
    let (c, s, l) = linked_app(&app, &other_tp, &elsewhere).await.unwrap();
    let app_b = token_of(c, s, l, write.clone()).await;
    let (c, s, l) = linked_app(&app, &tp, &parent).await.unwrap();
    let app_for_child = token_of(c, s, l, format!("{write}&patient={}", child.id)).await;
    // A booking of a slot for patient A, or (naming no one) for the app's own patient.
    let booking = |slot: &str, token: &str, for_a: bool| {
        let mut body = serde_json::json!({
            "resourceType": "Appointment",
            "status": "booked",
            "slot": [{ "reference": format!("Slot/{slot}") }],
        });
        if for_a {
            body["participant"] =
                serde_json::json!([{ "actor": { "reference": format!("Patient/{}", pat.id) }, "status": "accepted" }]);
        }
        let mut req = Request::post("/fhir/r4/Appointment")
            .header(header::HOST, "test")
            .header(header::CONTENT_TYPE, "application/fhir+json");
        if !token.is_empty() {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        req.body(Body::from(body.to_string())).unwrap()
    };
    let booked = send(&app, booking(&slots[0], &app_a, true)).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    let appointment = booked.json()["id"].as_str().unwrap().to_owned();
    let integration_a = integration_token(&app, &tp, "").await;
    let integration_b = integration_token(&app, &other_tp, "").await;
    let kinds: [(&str, Option<&str>); 10] = [
        ("none", None),
        ("forged", Some("fat_00000000000000000000000000000000forged")),
        ("app of this practice", Some(&app_a)),
        ("app of another practice", Some(&app_b)),
        ("app acting for someone else", Some(&app_for_child)),
        ("integration of this practice", Some(&integration_a)),
        ("integration of another practice", Some(&integration_b)),
        ("clinician", Some(&tp.clinician_token)),
        ("administrator", Some(&tp.admin_token)),
        ("clinician of another practice", Some(&other_tp.clinician_token)),
    ];
    /// Whose a route's answer is: patient A's record, this practice's (its slots and
    /// directory), or every practice's own (a search that each caller answers from its own
    /// practice).
    #[derive(Clone, Copy, PartialEq)]
    enum Owner {
        PatientA,
        ThisPractice,
        Own,
    }
    let p = pat.id;
    let tp_id = tp.practice.id;
    let mut routes: Vec<(String, Owner)> = vec![
        (format!("/fhir/r4/Patient/{p}"), Owner::PatientA),
        (format!("/fhir/r4/Patient?patient={p}"), Owner::PatientA),
        (
            format!("/fhir/r4/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{}", pat.nhs_number.as_str()),
            Owner::PatientA,
        ),
        (format!("/fhir/r4/Patient/{p}/$everything"), Owner::PatientA),
        (format!("/fhir/r4/Binary/{}", letter.id), Owner::PatientA),
        (format!("/fhir/r4/Appointment/{appointment}"), Owner::PatientA),
        (format!("/fhir/r4/Appointment?patient={p}&_include=Appointment:slot"), Owner::PatientA),
        (format!("/fhir/r4/Slot/{}", slots[0]), Owner::ThisPractice),
        (format!("/fhir/r4/Organization/{tp_id}"), Owner::ThisPractice),
        (format!("/fhir/r4/Practitioner/{}", tp.clinician.staff), Owner::ThisPractice),
        ("/fhir/r4/Slot".to_owned(), Owner::Own),
        ("/fhir/r4/Organization".to_owned(), Owner::Own),
        ("/fhir/r4/Practitioner".to_owned(), Owner::Own),
    ];
    // Every clinical type, read by id and searched with its patient's resources included.
    let of_kind = [
        ("Encounter", entry.id),
        ("MedicationStatement", course.id),
        ("MedicationRequest", course.id),
        ("DocumentReference", letter.id),
        ("Condition", problem.id),
        ("Observation", result.id),
        ("AllergyIntolerance", allergy.id),
        ("Immunization", jab.id),
        ("Communication", message.id),
        ("CarePlan", plan.id),
        ("Goal", goal.id),
    ];
    assert_eq!(of_kind.len(), caldicott_app::fhir_api::CLINICAL_TYPES.len());
    for (t, id) in of_kind {
        routes.push((format!("/fhir/r4/{t}/{id}"), Owner::PatientA));
        routes.push((format!("/fhir/r4/{t}?patient={p}&_include={t}:patient"), Owner::PatientA));
    }
    for (kind, token) in kinds {
        for (route, owner) in &routes {
            let r = get(&app, route, token).await;
            let by_number = route.contains("identifier=");
            let of_this_practice = matches!(
                kind,
                "app of this practice" | "clinician" | "integration of this practice" | "app acting for someone else"
            );
            // A message is the practice's: its own patient's app does not know its id (R8).
            let never_online = route.starts_with("/fhir/r4/Communication/");
            let expected = match (kind, owner) {
                ("none" | "forged", _) => StatusCode::UNAUTHORIZED,
                ("administrator", _) => StatusCode::FORBIDDEN,
                ("app of this practice", _) if never_online => StatusCode::NOT_FOUND,
                ("app of this practice" | "clinician" | "integration of this practice", _) => StatusCode::OK,
                (_, Owner::Own) => StatusCode::OK,
                (_, Owner::ThisPractice) if of_this_practice => StatusCode::OK,
                // A search by NHS number that finds no one is an empty Bundle.
                _ if by_number => StatusCode::OK,
                // Another practice's callers, and an app bound to someone else, cannot even learn
                // that the patient (or the practice's slot) exists.
                _ => StatusCode::NOT_FOUND,
            };
            assert_eq!(r.status, expected, "{kind} GET {route}: {}", r.body);
            let theirs = matches!(kind, "app of this practice" | "clinician" | "integration of this practice");
            if !theirs {
                assert!(!r.body.contains("MATRIX"), "{kind} {route}");
            }
            // Nor its words or id (a 404 names only the id that was asked for).
            if kind.starts_with("app") {
                let id = message.id.to_string();
                let asked = route.contains(&id);
                assert!(!r.body.contains("MATRIX message") && (asked || !r.body.contains(&id)), "{kind} {route}");
            }
            if !of_this_practice && *owner == Owner::Own {
                assert!(!slots.iter().any(|s| r.body.contains(s.as_str())), "{kind} {route}");
            }
            if expected != StatusCode::OK {
                assert_eq!(r.json()["resourceType"], "OperationOutcome");
            }
        }
    }
    // The writes: only patient A's own app books for A and cancels A's booking; the app of
    // this practice goes last, so every refusal is tried against a live booking.
    for (kind, token) in kinds.iter().rev() {
        let token = token.unwrap_or("");
        let book = send(&app, booking(&slots[1], token, true)).await;
        // Nor can an app book this practice's slot for a patient of its own elsewhere.
        if *kind == "app of another practice" {
            let own = send(&app, booking(&slots[1], token, false)).await;
            assert_eq!(own.status, StatusCode::NOT_FOUND, "{}", own.body);
        }
        let mut cancel = Request::put(format!("/fhir/r4/Appointment/{appointment}"))
            .header(header::HOST, "test")
            .header(header::CONTENT_TYPE, "application/fhir+json");
        if !token.is_empty() {
            cancel = cancel.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = serde_json::json!({ "resourceType": "Appointment", "status": "cancelled" }).to_string();
        let cancelled = send(&app, cancel.body(Body::from(body)).unwrap()).await;
        let (book_expected, cancel_expected) = match *kind {
            "none" | "forged" => (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED),
            "app of this practice" => (StatusCode::CREATED, StatusCode::OK),
            // Another practice's app, and the parent's app acting for the child, book only for
            // their own patient, and know nothing of A's booking.
            "app of another practice" | "app acting for someone else" => (StatusCode::FORBIDDEN, StatusCode::NOT_FOUND),
            _ => (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
        };
        assert_eq!(
            (book.status, cancelled.status),
            (book_expected, cancel_expected),
            "{kind}: {} / {}",
            book.body,
            cancelled.body
        );
        if *kind != "app of this practice" {
            assert_eq!(book.json()["resourceType"], "OperationOutcome", "{kind}");
            assert_eq!(cancelled.json()["resourceType"], "OperationOutcome", "{kind}");
        }
    }
}

/// Binary over HTTP: the file as a download, or a Binary resource for FHIR clients; a hidden
/// document's id answers byte for byte as an unknown one. The integration's token endpoint speaks
/// OAuth, and the SMART configuration says how.
async fn binaries_and_the_integration_token_endpoint_over_http(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let reception = caldicott_app::auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let doc = |title: &str| caldicott_app::documents::NewDocument {
        title: title.into(),
        day: "2".into(),
        month: "1".into(),
        year: "2025".into(),
        filename: "letter.png".into(),
        content: b"\x89PNG\r\n\x1a\nIMAGE".to_vec(),
        ..Default::default()
    };
    let shown = app.add_document(&reception, pat.nhs_number.as_str(), doc("Photo of a rash")).await.unwrap().unwrap();
    let hidden = app.add_document(&reception, pat.nhs_number.as_str(), doc("SECRET photo")).await.unwrap().unwrap();
    app.file(&tp.clinician, shown, &caldicott_app::redaction::VisibilityChange::Show { note: String::new() }, false)
        .await
        .unwrap();
    app.file(
        &tp.clinician,
        hidden,
        &caldicott_app::redaction::VisibilityChange::Hide {
            reason: caldicott_core::entry::HiddenReason::ThirdParty,
            note: "shows someone else".into(),
        },
        false,
    )
    .await
    .unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let ok = token_request(&app, &client, &secret, &format!("grant_type=refresh_token&refresh_token={link}")).await;
    let token = ok.json()["access_token"].as_str().unwrap().to_owned();
    let raw = get(&app, &format!("/fhir/r4/Binary/{shown}"), Some(&token)).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.headers[header::CONTENT_TYPE], "image/png");
    assert!(raw.headers[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
    assert_eq!(raw.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(raw.body.ends_with("IMAGE"));
    let req = Request::get(format!("/fhir/r4/Binary/{shown}"))
        .header(header::HOST, "test")
        .header(header::ACCEPT, "application/fhir+json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let as_fhir = send(&app, req).await;
    assert_eq!(as_fhir.headers[header::CONTENT_TYPE], "application/fhir+json");
    assert_eq!(as_fhir.json()["contentType"], "image/png");
    let a = get(&app, &format!("/fhir/r4/Binary/{hidden}"), Some(&token)).await;
    let made_up = uuid::Uuid::now_v7();
    let b = get(&app, &format!("/fhir/r4/Binary/{made_up}"), Some(&token)).await;
    assert_eq!((a.status, b.status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(a.body.replace(&hidden.to_string(), "X"), b.body.replace(&made_up.to_string(), "X"));
    // SMART discovery, open to all.
    let smart = get(&app, "/fhir/r4/.well-known/smart-configuration", None).await;
    assert_eq!(smart.json()["token_endpoint"], "http://test/fhir/r4/token");
    assert!(smart.json()["token_endpoint_auth_methods_supported"].to_string().contains("private_key_jwt"));
    // Every scope a route asks for is one an app can discover (ordering repeats needs Task.write).
    let scopes = smart.json()["scopes_supported"].to_string();
    for needed in ["patient/*.read", "patient/Appointment.write", "patient/Task.write", "system/*.read"] {
        assert!(scopes.contains(needed), "{needed} in {scopes}");
    }
    // A client assertion that is not one: 401 invalid_client.
    let req = Request::post("/fhir/r4/token")
        .header(header::HOST, "test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion=a.b.c",
            caldicott_app::fhir_api::ASSERTION_TYPE
        )))
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    // An integration reads the hidden document too: the practice's record.
    let system = integration_token(&app, &tp, "system/Binary.read").await;
    assert_eq!(get(&app, &format!("/fhir/r4/Binary/{hidden}"), Some(&system)).await.status, StatusCode::OK);
    assert_eq!(get(&app, &format!("/fhir/r4/Patient/{}", pat.id), Some(&system)).await.status, StatusCode::FORBIDDEN);
}

/// A real FHIR client reads a patient through a linked app's token: the CapabilityStatement,
/// the token endpoint, reads, every search and `$everything`, each resource parsed strictly as
/// FHIR R4 by fhirclient.
async fn a_real_fhir_client_reads_a_patient_through_a_linked_app(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = caldicott_app::fixtures::now();
    let mut entries: Vec<_> =
        (0..120).map(|i| consultation(&pat, now - Duration::hours(i + 1), &format!("CLIENT-{i}"))).collect();
    entries[3].body = caldicott_core::entry::EntryBody::TestResult {
        test: "Haemoglobin".into(),
        value: "132".into(),
        unit: "g/L".into(),
        range: "115-165".into(),
        abnormal: false,
        filing: caldicott_core::entry::Filing::Filed,
    };
    entries[4].body =
        caldicott_core::entry::EntryBody::Allergy { substance: "Penicillin".into(), reaction: "Rash".into() };
    entries[5].body = caldicott_core::entry::EntryBody::Immunisation { vaccine: "Influenza".into() };
    entries[6].body = caldicott_core::entry::EntryBody::Medication {
        drug: "Amlodipine 5mg tablets".into(),
        dosage: "One daily".into(),
        quantity: "28 tablets".into(),
        course: caldicott_core::entry::MedicationCourse::RepeatTemplate,
    };
    entries[7].body = caldicott_core::entry::EntryBody::Problem { title: "Hypertension".into(), active: true };
    entries[8].author =
        caldicott_core::entry::Author { staff: Some(tp.clinician.staff), name: tp.clinician.name.clone() };
    entries[9].body = caldicott_core::entry::EntryBody::Medication {
        drug: "Amoxicillin 500mg capsules".into(),
        dosage: "Three times a day".into(),
        quantity: "21 capsules".into(),
        course: caldicott_core::entry::MedicationCourse::Acute,
    };
    let hidden = withheld_entries(&pat, now - Duration::minutes(30), "SECRET-CLIENT");
    let audit = fixtures::audit(Action::EntryCreate, None);
    app.store_for_tests().add_entries(tp.practice.id, &entries, &audit).await.unwrap();
    app.store_for_tests().add_entries(tp.practice.id, &hidden, &audit).await.unwrap();
    let reception = caldicott_app::auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let letter = caldicott_app::documents::NewDocument {
        title: "Clinic letter".into(),
        day: "2".into(),
        month: "1".into(),
        year: "2025".into(),
        filename: "letter.pdf".into(),
        content: b"%PDF-1.7\n%%EOF\n".to_vec(),
        ..Default::default()
    };
    let letter = app.add_document(&reception, pat.nhs_number.as_str(), letter).await.unwrap().unwrap();
    app.file(&tp.clinician, letter, &caldicott_app::redaction::VisibilityChange::Show { note: String::new() }, false)
        .await
        .unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let (summary, said) = fhir_client(&app, &client, &secret, &link, None).await;
    assert_eq!(summary["patient"], pat.id.to_string());
    assert_eq!(summary["nhs_number"], pat.nhs_number.as_str());
    let everything: Vec<String> =
        summary["everything"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert!(summary["pages"].as_i64().unwrap() >= 2, "paged");
    for e in &entries {
        let t = caldicott_fhir::write::resource_type(e.kind());
        assert_eq!(everything.iter().filter(|x| **x == format!("{t}/{}", e.id)).count(), 1, "{t}/{} once", e.id);
        assert!(summary["search"][t].as_array().unwrap().iter().any(|x| x == &e.id.to_string()));
    }
    for h in &hidden {
        assert!(!said.contains(&h.id.to_string()), "a hidden entry reached the client");
    }
    // A course is a MedicationStatement too; the letter's Binary reads as one; _include brings
    // the clinician who wrote an entry.
    assert!(summary["search"]["MedicationStatement"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == &entries[9].id.to_string()));
    assert_eq!(summary["binaries"][letter.to_string()], "application/pdf");
    assert!(summary["included"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == &format!("Practitioner/{}", tp.clinician.staff)));
}

/// Runs fhirclient (`scripts/fhir-client-check.py`) against a live server for a linked app:
/// its JSON summary, and everything it printed.
async fn fhir_client(app: &App, client: &str, secret: &str, link: &str, acting_for: Option<String>) -> (Value, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Served as `caldicott serve` does: the public URL is the bound address.
    let served = app.clone().with_public_url(&format!("http://{addr}")).unwrap();
    let router = caldicott_web::router(served);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let python = std::env::var("CALDICOTT_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/caldicott/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/fhir-client-check.py");
    let mut args = vec![script.to_owned(), format!("http://{addr}/fhir/r4"), client.into(), secret.into(), link.into()];
    args.extend(acting_for);
    let run = python.clone();
    let out = tokio::task::spawn_blocking(move || std::process::Command::new(&run).args(&args).output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{python}: {e}; run scripts/test.sh, which installs fhirclient"));
    server.abort();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_str(&said).unwrap(), said)
}

/// The demo practice as a newcomer finds it: Hannah links an app with her linkage letter, and
/// fhirclient reads her record, then her son Leo's through her proxy link, each strictly as FHIR
/// R4. What it receives is exactly what the staff "view as patient / as proxy" marks visible:
/// every visible entry once, nothing that is hidden from that viewer.
async fn a_real_fhir_client_reads_the_demo_patients_through_a_linked_app(t: &TestStore) {
    use caldicott_app::record::ViewAs;
    use caldicott_demo::{build_demo, DemoOptions};
    let app = app(t);
    let opts = DemoOptions { patients: 20, seed: 3, as_of: caldicott_app::fixtures::today(), long_record: None };
    let report = build_demo(&app, &opts).await.unwrap();
    let ods = report.practice.ods_code.as_str().to_owned();
    let admin = caldicott_app::auth::principal_for(&app, &ods, "s.lee").await.unwrap();
    let reception = caldicott_app::auth::principal_for(&app, &ods, "j.baker").await.unwrap();
    let clinician = caldicott_app::auth::principal_for(&app, &ods, "dr.okafor").await.unwrap();
    let hannah_login = report.patient_logins.iter().find(|l| l.username == "hannah.rivers").unwrap();
    let hannah = app
        .store_for_tests()
        .patient_by_nhs_number(report.practice.id, &caldicott_core::NhsNumber::parse(&hannah_login.nhs_number).unwrap())
        .await
        .unwrap()
        .unwrap();
    let (registered, secret) = app.register_app(&admin, "Record Check", "Check Ltd", "").await.unwrap();
    let letter = app.issue_linkage(&reception, hannah.nhs_number.as_str(), "P9").await.unwrap();
    let request = caldicott_app::apps::LinkRequest {
        ods_code: letter.ods_code,
        account_id: letter.account_id,
        linkage_key: letter.linkage_key,
        family_name: hannah.name.family.clone(),
        birth_date: hannah.date_of_birth.to_string(),
    };
    let (_, link) = app.link_app(&registered.client_id, &secret, &request).await.unwrap();
    let leo_link = app
        .store_for_tests()
        .proxy_links_for_proxy(report.practice.id, hannah.id)
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("Hannah acts for her son");
    let leo = app.store_for_tests().patient(report.practice.id, leo_link.patient).await.unwrap().unwrap();
    for (whose, viewer, acting_for) in
        [(&hannah, ViewAs::Patient, None), (&leo, ViewAs::Proxy(leo_link.id), Some(leo.id.to_string()))]
    {
        // A clinician hides one entry the viewer would see (third-party information), as staff
        // do; then what staff see marked visible for this viewer is what the app must get.
        let (visible, _) = marked(&app, &clinician, whose, viewer).await;
        let target = visible
            .iter()
            .find(|e| {
                use caldicott_core::entry::EntryBody;
                !matches!(e.body, EntryBody::Medication { .. } | EntryBody::Document { .. })
            })
            .or(visible.first())
            .unwrap_or_else(|| panic!("{} sees nothing", whose.name.given));
        let hide = caldicott_app::redaction::VisibilityChange::Hide {
            reason: caldicott_core::entry::HiddenReason::ThirdParty,
            note: "Names a relative".into(),
        };
        app.change_visibility(&clinician, whose.nhs_number.as_str(), target.id, &hide, false).await.unwrap();
        let (visible, hidden) = marked(&app, &clinician, whose, viewer).await;
        assert!(hidden.contains(&target.id));
        let acting_for_someone = acting_for.is_some();
        let (summary, said) = fhir_client(&app, &registered.client_id, &secret, &link, acting_for).await;
        assert_eq!(summary["patient"], whose.id.to_string());
        assert_eq!(summary["nhs_number"], whose.nhs_number.as_str());
        let everything: Vec<&str> =
            summary["everything"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        // The entries: not the Patient, the practice or its clinicians, and a course once (its
        // MedicationStatement shares the MedicationRequest's id).
        let supporting = ["Patient/", "Organization/", "Practitioner/", "MedicationStatement/"];
        let mut ids: Vec<&str> = everything
            .iter()
            .filter(|r| !supporting.iter().any(|s| r.starts_with(s)))
            .map(|r| r.split('/').nth(1).unwrap())
            .collect();
        ids.sort_unstable();
        let mut expected: Vec<String> = visible.iter().map(|e| e.id.to_string()).collect();
        expected.sort_unstable();
        assert_eq!(ids, expected, "{}: $everything is exactly the online view, each entry once", whose.name.given);
        for h in &hidden {
            assert!(!said.contains(&h.to_string()), "{}: a hidden entry reached the client", whose.name.given);
        }
        if acting_for_someone {
            continue;
        }
        // Hannah's clinic letter, filed for her to see, opens as its PDF.
        assert!(
            summary["binaries"].as_object().unwrap().values().any(|t| t == "application/pdf"),
            "{}",
            summary["binaries"]
        );
    }
}

/// The entries staff see marked visible, and the ids of those marked hidden, for a viewer of a
/// patient's record (the staff record's "view as").
async fn marked(
    app: &App,
    clinician: &caldicott_app::StaffPrincipal,
    whose: &caldicott_core::patient::Patient,
    viewer: caldicott_app::record::ViewAs,
) -> (Vec<caldicott_core::entry::Entry>, Vec<caldicott_core::ids::EntryId>) {
    let (mut visible, mut hidden, mut cursor) = (Vec::new(), Vec::new(), None);
    loop {
        let page = caldicott_app::record::PageRequest { section: None, cursor: cursor.take(), limit: Some(200) };
        let rec = app.staff_record(clinician, whose.nhs_number.as_str(), viewer, &page).await.unwrap();
        for e in rec.entries {
            if e.online.visible {
                visible.push(e.entry);
            } else {
                hidden.push(e.entry.id);
            }
        }
        match rec.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (visible, hidden),
        }
    }
}

/// Whatever a client sends under the FHIR base, an error comes back as an OperationOutcome in
/// `application/fhir+json`: a method a route does not take (405, with `Allow`), a path that is
/// not served (404), an unknown resource type, with or without a token.
async fn every_fhir_error_is_an_operation_outcome(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let token = tp.clinician_token.clone();
    let outcome = |r: &Reply, status: StatusCode, code: &str, what: &str| {
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/fhir+json", "{what}");
        assert_eq!(r.json()["resourceType"], "OperationOutcome", "{what}");
        assert_eq!(r.json()["issue"][0]["severity"], "error", "{what}");
        assert_eq!(r.json()["issue"][0]["code"], code, "{what}: {}", r.body);
        assert!(!r.json()["issue"][0]["diagnostics"].as_str().unwrap_or("").is_empty(), "{what}");
    };
    let p = pat.id;
    let wrong_methods = [
        ("DELETE", format!("/fhir/r4/Patient/{p}")),
        ("PATCH", format!("/fhir/r4/Patient/{p}")),
        ("POST", "/fhir/r4/metadata".to_owned()),
        ("DELETE", "/fhir/r4/Observation".to_owned()),
        ("GET", "/fhir/r4/token".to_owned()),
        ("POST", format!("/fhir/r4/Patient/{p}/$everything")),
        ("PUT", "/fhir/r4/.well-known/smart-configuration".to_owned()),
    ];
    for (method, uri) in &wrong_methods {
        for auth in [None, Some(token.as_str())] {
            let mut req = Request::builder().method(*method).uri(uri.as_str()).header(header::HOST, "test");
            if let Some(t) = auth {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let r = send(&app, req.body(Body::empty()).unwrap()).await;
            outcome(&r, StatusCode::METHOD_NOT_ALLOWED, "not-supported", &format!("{method} {uri}"));
            assert!(r.headers.contains_key(header::ALLOW), "{method} {uri}: 405 says what is allowed");
        }
    }
    let unknown_paths = [
        "/fhir/r4".to_owned(),
        "/fhir/r4/".to_owned(),
        format!("/fhir/r4/Patient/{p}/_history/1"),
        "/fhir/r4/a/b/c/d".to_owned(),
        format!("/fhir/r4/Patient/{p}/$summary/x"),
    ];
    for uri in &unknown_paths {
        for auth in [None, Some(token.as_str())] {
            let r = get(&app, uri, auth).await;
            outcome(&r, StatusCode::NOT_FOUND, "not-found", uri);
        }
    }
    let r = get(&app, "/fhir/r4/Basic", Some(&token)).await;
    outcome(&r, StatusCode::NOT_FOUND, "not-found", "an unknown type");
    // Outside the FHIR base, the JSON API keeps its own error shape.
    let r = get(&app, "/api/v1/nothing-here", Some(&token)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].is_object(), "{}", r.body);
}

/// The authentication scheme is case-insensitive (RFC 9110 §11.1): `bearer`, `BEARER` and
/// `Bearer` are one scheme, on the FHIR routes and the staff JSON API alike; anything else is
/// no token.
async fn the_bearer_scheme_is_matched_in_any_case(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let ok = token_request(&app, &client, &secret, &format!("grant_type=refresh_token&refresh_token={link}")).await;
    let app_token = ok.json()["access_token"].as_str().unwrap().to_owned();
    let with = |uri: String, value: String| {
        let app = app.clone();
        async move {
            let req = Request::get(uri).header(header::HOST, "test").header(header::AUTHORIZATION, value);
            send(&app, req.body(Body::empty()).unwrap()).await
        }
    };
    let routes = [
        (format!("/fhir/r4/Patient/{}", pat.id), app_token.clone()),
        (format!("/fhir/r4/Patient/{}", pat.id), tp.clinician_token.clone()),
        (format!("/api/v1/patients/{}/record", pat.nhs_number.as_str()), tp.clinician_token.clone()),
        ("/api/apps/v1/link".to_owned(), link.clone()),
    ];
    for (uri, token) in &routes {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let r = with(uri.clone(), format!("{scheme} {token}")).await;
            assert_eq!(r.status, StatusCode::OK, "{scheme} on {uri}: {}", r.body);
        }
        for wrong in [format!("Basic {token}"), format!("Bearer{token}"), token.clone()] {
            let r = with(uri.clone(), wrong.clone()).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{wrong:?} on {uri}");
        }
    }
}

/// ASVS V5/V10 (Host header injection): the configured public URL is the one source of the FHIR
/// base, the SMART configuration and the token endpoint's audience. A forged Host or
/// X-Forwarded-* header changes none of them, and a client assertion made for another service's
/// token endpoint (or for one built from a forged Host) is refused, and the refusal audited.
async fn the_public_url_alone_makes_links_and_the_token_audience(t: &TestStore) {
    let app = App::new(t.store.clone(), caldicott_app::fixtures::test_clock())
        .with_public_url("https://gp.example.nhs.uk/")
        .unwrap();
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let forged = |req: axum::http::request::Builder| {
        req.header(header::HOST, "evil.example")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "http")
            .header("forwarded", "host=evil.example;proto=http")
    };
    let smart =
        send(&app, forged(Request::get("/fhir/r4/.well-known/smart-configuration")).body(Body::empty()).unwrap()).await;
    assert_eq!(smart.json()["token_endpoint"], "https://gp.example.nhs.uk/fhir/r4/token");
    assert_eq!(smart.json()["issuer"], "https://gp.example.nhs.uk/fhir/r4");
    let cap = send(&app, forged(Request::get("/fhir/r4/metadata")).body(Body::empty()).unwrap()).await;
    assert!(!cap.body.contains("evil.example"), "{}", cap.body);
    // An integration's token: the assertion's audience must be this service's public token URL.
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (private, public) = caldicott_app::fhir_api::new_key_pair().unwrap();
    let integration = app
        .register_integration(
            &admin,
            &caldicott_app::fhir_api::NewIntegration {
                name: "Reporting".into(),
                public_key: public,
                scopes: String::new(),
            },
        )
        .await
        .unwrap();
    let swap = |aud: &str| {
        let assertion = caldicott_app::fhir_api::client_assertion(
            &integration.client_id,
            &private,
            aud,
            caldicott_app::fixtures::now(),
        )
        .unwrap();
        let form = format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
            caldicott_app::fhir_api::ASSERTION_TYPE.replace(':', "%3A")
        );
        forged(Request::post("/fhir/r4/token"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap()
    };
    for aud in ["http://evil.example/fhir/r4/token", "https://other-service.example/fhir/r4/token"] {
        let before = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
        let r = send(&app, swap(aud)).await;
        assert_eq!((r.status, r.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{aud}");
        let events = app.store_for_tests().audit_events(tp.practice.id, before, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{aud}: one audit event for the refusal");
        let e = &events[0];
        assert_eq!((e.action.as_str(), e.outcome.as_str(), e.patient.as_deref()), ("fhir.token_issue", "denied", None));
        assert_eq!(e.actor_kind, "integration");
    }
    let r = send(&app, swap("https://gp.example.nhs.uk/fhir/r4/token")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    // The Bundle's links and fullUrls are the public URL's, whatever Host said.
    let req = forged(Request::get(format!(
        "/fhir/r4/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{}",
        pat.nhs_number.as_str()
    )))
    .header(header::AUTHORIZATION, format!("Bearer {token}"))
    .body(Body::empty())
    .unwrap();
    let bundle = send(&app, req).await;
    assert_eq!(bundle.status, StatusCode::OK, "{}", bundle.body);
    let b = bundle.json();
    assert!(b["link"][0]["url"].as_str().unwrap().starts_with("https://gp.example.nhs.uk/fhir/r4/Patient"), "{b}");
    assert!(
        b["entry"][0]["fullUrl"].as_str().unwrap().starts_with("https://gp.example.nhs.uk/fhir/r4/Patient/"),
        "{b}"
    );
    assert!(!bundle.body.contains("evil.example"));
}

both!(
    the_public_url_alone_makes_links_and_the_token_audience,
    fhir_errors_are_operation_outcomes_and_hidden_ids_look_unknown,
    every_fhir_route_for_every_kind_of_token,
    binaries_and_the_integration_token_endpoint_over_http,
    a_real_fhir_client_reads_a_patient_through_a_linked_app,
    a_real_fhir_client_reads_the_demo_patients_through_a_linked_app,
    every_fhir_error_is_an_operation_outcome,
    the_bearer_scheme_is_matched_in_any_case,
);
