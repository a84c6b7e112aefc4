//! GP Connect Access Record: Structured over HTTP, as the Spine Secure Proxy sends it: the
//! specification's headers and examples, every refusal a GPConnect-OperationOutcome-1 with the
//! status the specification gives, and none of it on the main router. Both databases.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_app::fixtures::{self, adult, consultation, FIXTURE_ASID};
use caldicott_app::gp_connect::service_root;
use caldicott_app::App;
use caldicott_fhir::gpconnect::{STRUCTURED_INTERACTION, STRUCTURED_METADATA_INTERACTION};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    headers: axum::http::HeaderMap,
    pub(crate) json: Value,
}

pub(crate) fn jwt(ods: &str, scope: &str) -> String {
    jwt_at(&service_root(ods), scope)
}

fn uuid_like() -> String {
    caldicott_app::new_id().to_string()
}

fn jwt_at(root: &str, scope: &str) -> String {
    let now = fixtures::now().timestamp();
    let claims = json!({
        "iss": "https://consumersupplier.thirdparty.nhs.uk/", "sub": "10019",
        "aud": format!("https://provider.example.nhs.uk{root}"),
        "exp": now + 300, "iat": now, "reason_for_request": "directcare", "requested_scope": scope,
        "requesting_device": {"resourceType": "Device", "model": "Consumer product name", "version": "5.3.0"},
        "requesting_organization": {"resourceType": "Organization", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A1001"}], "name": "Test Hospital"},
        "requesting_practitioner": {"resourceType": "Practitioner", "id": "10019",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "111222333444"}],
            "name": [{"family": "Jones", "given": ["Claire"], "prefix": ["Dr"]}]}
    });
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    format!("Bearer {head}.{}.", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()))
}

/// A request as the Spine delivers it, with `change` applied to its headers.
pub(crate) fn spine_request(
    method: &str,
    path: &str,
    interaction: &str,
    auth: &str,
    body: Vec<u8>,
    change: impl FnOnce(&mut axum::http::HeaderMap),
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path).body(Body::from(body)).unwrap();
    let h = req.headers_mut();
    h.insert("Ssp-TraceID", "09a01679-2564-0fb4-5129-aecc81ea2706".parse().unwrap());
    h.insert("Ssp-From", "200000000359".parse().unwrap());
    h.insert("Ssp-To", FIXTURE_ASID.parse().unwrap());
    h.insert("Ssp-InteractionID", interaction.parse().unwrap());
    h.insert(header::AUTHORIZATION, auth.parse().unwrap());
    h.insert(header::ACCEPT, "application/fhir+json".parse().unwrap());
    if method == "POST" || method == "PUT" {
        h.insert(header::CONTENT_TYPE, "application/fhir+json;charset=utf-8".parse().unwrap());
    }
    change(h);
    req
}

pub(crate) async fn send(router: axum::Router, req: Request<Body>) -> Reply {
    let res = router.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, json }
}

pub(crate) fn parameters(nhs: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}},
        {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": true}]},
        {"name": "includeMedication", "part": [{"name": "includePrescriptionIssues", "valueBoolean": true}]},
        {"name": "includeConsultations", "part": [{"name": "includeNumberOfMostRecent", "valuePositiveInt": 3}]}
    ]}))
    .unwrap()
}

pub(crate) fn spine_code(r: &Reply) -> &str {
    r.json["issue"][0]["details"]["coding"][0]["code"].as_str().unwrap_or_default()
}

async fn the_spine_is_answered_as_the_specification_says(t: &TestStore) {
    let app = App::new(t.store.clone(), fixtures::test_clock());
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let mut hidden = consultation(&pat, fixtures::now() - Duration::days(3), "SPINE-HIDDEN-NOTE");
    hidden.visibility = caldicott_core::entry::OnlineVisibility::Hidden(
        caldicott_core::entry::Redaction::new(
            caldicott_core::entry::HiddenReason::ThirdParty,
            "names a relative",
            "Dr Test",
            fixtures::now(),
        )
        .unwrap(),
    );
    let mut private = consultation(&pat, fixtures::now() - Duration::days(2), "SPINE-PRIVATE-NOTE");
    private.confidential = true;
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[hidden, private]).await.unwrap();
    let spine = || caldicott_web::spine_router(app.clone());
    let root = service_root(&ods);
    let op = format!("{root}/Patient/$gpc.getstructuredrecord");
    let auth = jwt(&ods, "patient/*.read");
    let nhs = pat.nhs_number.as_str().to_owned();

    // The specification's request: 200, the structured Bundle, FHIR JSON, never cached.
    let ok = send(spine(), spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, parameters(&nhs), |_| {})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    assert_eq!(ok.headers[header::CONTENT_TYPE], "application/fhir+json;charset=utf-8");
    assert_eq!(ok.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        ok.json["meta"]["profile"][0],
        "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1"
    );
    let text = ok.json.to_string();
    assert!(text.contains("SPINE-HIDDEN-NOTE"), "hidden online is for clinicians, labelled");
    assert!(!text.contains("SPINE-PRIVATE-NOTE"), "private stays at the practice");

    // Each refusal: the status and Spine code of the specification's error table.
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "no Ssp-TraceID",
            spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, parameters(&nhs), |h| {
                h.remove("Ssp-TraceID");
            }),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            "the metadata interaction on the operation",
            spine_request("POST", &op, STRUCTURED_METADATA_INTERACTION, &auth, parameters(&nhs), |_| {}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            "no JWT",
            spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, parameters(&nhs), |h| {
                h.remove(header::AUTHORIZATION);
            }),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            "an NHS number that fails its check digit",
            spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, parameters("9434765918"), |_| {}),
            StatusCode::BAD_REQUEST,
            "INVALID_NHS_NUMBER",
        ),
        (
            "nobody with that NHS number",
            spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, parameters("9990002312"), |_| {}),
            StatusCode::NOT_FOUND,
            "PATIENT_NOT_FOUND",
        ),
        (
            "a body that is not Parameters",
            spine_request(
                "POST",
                &op,
                STRUCTURED_INTERACTION,
                &auth,
                br#"{"resourceType":"Patient"}"#.to_vec(),
                |_| {},
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_RESOURCE",
        ),
        (
            "XML asked for",
            spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, parameters(&nhs), |h| {
                h.insert(header::ACCEPT, "application/fhir+xml".parse().unwrap());
            }),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_REQUEST",
        ),
        (
            "XML sent",
            spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, parameters(&nhs), |h| {
                h.insert(header::CONTENT_TYPE, "application/fhir+xml".parse().unwrap());
            }),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_REQUEST",
        ),
        (
            "a GET of the operation",
            spine_request("GET", &op, STRUCTURED_INTERACTION, &auth, Vec::new(), |_| {}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            "an operation not offered",
            spine_request("GET", &format!("{root}/Patient/1"), STRUCTURED_INTERACTION, &auth, Vec::new(), |_| {}),
            StatusCode::NOT_IMPLEMENTED,
            "NOT_IMPLEMENTED",
        ),
        (
            "a body far larger than Parameters needs",
            spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, vec![b' '; 70 * 1024], |_| {}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
    ];
    for (what, req, status, code) in cases {
        let r = send(spine(), req).await;
        assert_eq!(r.status, status, "{what}: {}", r.json);
        assert_eq!(r.json["resourceType"], "OperationOutcome", "{what}");
        assert_eq!(spine_code(&r), code, "{what}: {}", r.json);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/fhir+json;charset=utf-8", "{what}");
        assert!(!r.json.to_string().contains("SPINE-"), "{what}: no record in an error");
    }

    // The capability statement, with the organisation scope.
    let meta = send(
        spine(),
        spine_request(
            "GET",
            &format!("{root}/metadata"),
            STRUCTURED_METADATA_INTERACTION,
            &jwt(&ods, "organization/*.read"),
            Vec::new(),
            |_| {},
        ),
    )
    .await;
    assert_eq!(meta.status, StatusCode::OK, "{}", meta.json);
    assert_eq!(meta.json["resourceType"], "CapabilityStatement");

    // Access Document: the patient found by NHS number (the pipe percent-encoded, as consumers
    // send it), then their documents searched; a search without its includes refused.
    let docs = caldicott_app::gp_connect::documents_root(&ods);
    let doc_auth = jwt_at(&docs, "patient/*.read");
    let find = send(
        spine(),
        spine_request(
            "GET",
            &format!("{docs}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C{nhs}"),
            caldicott_fhir::gpconnect::documents::PATIENT_SEARCH_INTERACTION,
            &doc_auth,
            Vec::new(),
            |_| {},
        ),
    )
    .await;
    assert_eq!(find.status, StatusCode::OK, "{}", find.json);
    assert_eq!(find.json["total"], 1);
    let pid = find.json["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    let includes = "_include=DocumentReference%3Asubject%3APatient&_include=DocumentReference%3Acustodian%3AOrganization&_include=DocumentReference%3Aauthor%3AOrganization&_include=DocumentReference%3Aauthor%3APractitioner&_revinclude%3Arecurse=PractitionerRole%3Apractitioner";
    let search = send(
        spine(),
        spine_request(
            "GET",
            &format!("{docs}/Patient/{pid}/DocumentReference?{includes}"),
            caldicott_fhir::gpconnect::documents::DOCUMENT_SEARCH_INTERACTION,
            &doc_auth,
            Vec::new(),
            |_| {},
        ),
    )
    .await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.json);
    assert_eq!(search.json["type"], "searchset");
    let bare = send(
        spine(),
        spine_request(
            "GET",
            &format!("{docs}/Patient/{pid}/DocumentReference"),
            caldicott_fhir::gpconnect::documents::DOCUMENT_SEARCH_INTERACTION,
            &doc_auth,
            Vec::new(),
            |_| {},
        ),
    )
    .await;
    assert_eq!((bare.status, spine_code(&bare)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PARAMETER"));
    let missing = send(
        spine(),
        spine_request(
            "GET",
            &format!("{docs}/Binary/{}", uuid_like()),
            caldicott_fhir::gpconnect::documents::BINARY_INTERACTION,
            &doc_auth,
            Vec::new(),
            |_| {},
        ),
    )
    .await;
    assert_eq!((missing.status, spine_code(&missing)), (StatusCode::NOT_FOUND, "NO_RECORD_FOUND"));

    // The main router, which patients, staff and apps reach, serves none of it.
    let main = send(
        caldicott_web::router(app.clone()),
        spine_request("POST", &op, STRUCTURED_INTERACTION, &auth, parameters(&nhs), |_| {}),
    )
    .await;
    assert_eq!(main.status, StatusCode::NOT_FOUND);
    assert!(!main.json.to_string().contains("SPINE-"));
}

async fn appointments_are_booked_changed_and_cancelled_over_http(t: &TestStore) {
    use caldicott_fhir::gpconnect::appointments as gpc;
    let app = App::new(t.store.clone(), fixtures::test_clock());
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let day = fixtures::today() + Duration::days(2);
    let clinic = caldicott_app::appointments::NewClinic {
        slot_type: "gp_telephone".into(),
        location: "Phone".into(),
        ..fixtures::clinic_form(&tp, day, ("10:00", "10:30"), 15, "0")
    };
    app.create_clinic(&tp.clinician, &clinic).await.unwrap().unwrap();
    let spine = || caldicott_web::spine_router(app.clone());
    let root = caldicott_app::gp_connect::appointments_root(&ods);
    let write = jwt_at(&root, "patient/*.write");
    let read = jwt_at(&root, "patient/*.read");

    let search = send(
        spine(),
        spine_request(
            "GET",
            &format!("{root}/Slot?start=ge{day}&end=le{day}&status=free&_include=Slot:schedule"),
            gpc::SLOT_SEARCH_INTERACTION,
            &jwt_at(&root, "organization/*.read"),
            Vec::new(),
            |_| {},
        ),
    )
    .await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.json);
    let slot = search.json["entry"][0]["resource"].clone();
    assert_eq!(slot["resourceType"], "Slot");
    assert_eq!(slot["extension"][0]["valueCode"], "Telephone");
    let body = json!({
        "resourceType": "Appointment",
        "extension": [{"url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-BookingOrganisation-1", "valueReference": {"reference": "#1"}}],
        "contained": [{"resourceType": "Organization", "id": "1", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A1001"}], "name": "Test Hospital", "telecom": [{"system": "phone", "value": "0300 000 0000"}]}],
        "status": "booked", "description": "Follow-up call about discharge",
        "start": slot["start"], "end": slot["end"], "slot": [{"reference": format!("Slot/{}", slot["id"].as_str().unwrap())}],
        "created": gpc::instant(fixtures::now()),
        "participant": [{"actor": {"reference": format!("Patient/{}", pat.id)}, "status": "accepted"},
                        {"actor": {"reference": format!("Location/{}", tp.practice.id)}, "status": "accepted"}]
    });
    let bytes = |v: &Value| serde_json::to_vec(v).unwrap();

    // Booked: 201, where it is, and its version.
    let booked = send(
        spine(),
        spine_request("POST", &format!("{root}/Appointment"), gpc::BOOK_INTERACTION, &write, bytes(&body), |_| {}),
    )
    .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.json);
    let id = booked.json["id"].as_str().unwrap().to_owned();
    assert_eq!(booked.headers[header::LOCATION], format!("{root}/Appointment/{id}").as_str());
    assert_eq!(booked.headers[header::ETAG], "W/\"1\"");
    assert_eq!(booked.headers[header::CACHE_CONTROL], "no-store");
    let twice = send(
        spine(),
        spine_request("POST", &format!("{root}/Appointment"), gpc::BOOK_INTERACTION, &write, bytes(&body), |_| {}),
    )
    .await;
    assert_eq!((twice.status, spine_code(&twice)), (StatusCode::CONFLICT, "DUPLICATE_REJECTED"));

    // What the appointment references resolves (Foundations reads).
    for (kind, interaction, scope) in [
        ("Patient", gpc::READ_PATIENT_INTERACTION, "patient/*.read"),
        ("Practitioner", gpc::READ_PRACTITIONER_INTERACTION, "organization/*.read"),
        ("Location", gpc::READ_LOCATION_INTERACTION, "organization/*.read"),
    ] {
        let reference = booked.json["participant"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["actor"]["reference"].as_str())
            .find(|r| r.starts_with(kind))
            .unwrap()
            .to_owned();
        let got = send(
            spine(),
            spine_request(
                "GET",
                &format!("{root}/{reference}"),
                interaction,
                &jwt_at(&root, scope),
                Vec::new(),
                |_| {},
            ),
        )
        .await;
        assert_eq!(
            (got.status, got.json["resourceType"].as_str()),
            (StatusCode::OK, Some(kind)),
            "{reference}: {}",
            got.json
        );
    }
    let org = send(
        spine(),
        spine_request(
            "GET",
            &format!("{root}/Organization/{}", tp.practice.id),
            gpc::READ_ORGANIZATION_INTERACTION,
            &jwt_at(&root, "organization/*.read"),
            Vec::new(),
            |_| {},
        ),
    )
    .await;
    assert_eq!(org.json["identifier"][0]["value"], ods.as_str());
    // Foundations: find the organisation by its ODS code; an identifier system this server does
    // not know is refused as the specification says, with nothing found for another code.
    let find_org = |identifier: &str| {
        spine_request(
            "GET",
            &format!("{root}/Organization?identifier={}", identifier.replace('|', "%7C").replace(':', "%3A")),
            gpc::ORGANIZATION_SEARCH_INTERACTION,
            &jwt_at(&root, "organization/*.read"),
            Vec::new(),
            |_| {},
        )
    };
    let found = send(spine(), find_org(&format!("https://fhir.nhs.uk/Id/ods-organization-code|{ods}"))).await;
    assert_eq!((found.status, found.json["total"].as_u64()), (StatusCode::OK, Some(1)), "{}", found.json);
    assert_eq!(found.json["entry"][0]["resource"]["identifier"][0]["value"], ods.as_str());
    let none = send(spine(), find_org("https://fhir.nhs.uk/Id/ods-organization-code|Y99999")).await;
    assert_eq!((none.status, none.json["total"].as_u64()), (StatusCode::OK, Some(0)));
    let wrong = send(spine(), find_org(&format!("https://fhir.nhs.uk/Id/sds-user-id|{ods}"))).await;
    assert_eq!((wrong.status, spine_code(&wrong)), (StatusCode::BAD_REQUEST, "INVALID_IDENTIFIER_SYSTEM"));
    // Foundations: find the clinician by the SDS user id the practice recorded.
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    app.set_staff_sds_user_id(&admin, tp.clinician.staff, "555021935107").await.unwrap();
    let find_gp = |id: &str| {
        spine_request(
            "GET",
            &format!("{root}/Practitioner?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fsds-user-id%7C{id}"),
            gpc::PRACTITIONER_SEARCH_INTERACTION,
            &jwt_at(&root, "organization/*.read"),
            Vec::new(),
            |_| {},
        )
    };
    let gp = send(spine(), find_gp("555021935107")).await;
    assert_eq!((gp.status, gp.json["total"].as_u64()), (StatusCode::OK, Some(1)), "{}", gp.json);
    assert_eq!(gp.json["entry"][0]["resource"]["id"], tp.clinician.staff.to_string().as_str());
    assert_eq!(gp.json["entry"][0]["resource"]["identifier"][0]["value"], "555021935107");
    let nobody = send(spine(), find_gp("999999999999")).await;
    assert_eq!((nobody.status, nobody.json["total"].as_u64()), (StatusCode::OK, Some(0)));
    let malformed = send(spine(), find_gp("55")).await;
    assert_eq!((malformed.status, spine_code(&malformed)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PARAMETER"));
    let nobody = send(
        spine(),
        spine_request(
            "GET",
            &format!("{root}/Practitioner/{}", pat.id),
            gpc::READ_PRACTITIONER_INTERACTION,
            &jwt_at(&root, "organization/*.read"),
            Vec::new(),
            |_| {},
        ),
    )
    .await;
    assert_eq!(
        (nobody.status, spine_code(&nobody)),
        (StatusCode::NOT_FOUND, "NO_RECORD_FOUND"),
        "a patient's id is no practitioner"
    );

    // Read: the same version in the ETag.
    let path = format!("{root}/Appointment/{id}");
    let got = send(spine(), spine_request("GET", &path, gpc::READ_INTERACTION, &read, Vec::new(), |_| {})).await;
    assert_eq!((got.status, &got.headers[header::ETAG]), (StatusCode::OK, &"W/\"1\"".parse().unwrap()));

    // Amend with If-Match, then a stale If-Match is a conflict.
    let mut amended = got.json.clone();
    amended["comment"] = json!("Patient prefers the afternoon");
    let if_match = |v: &'static str| {
        move |h: &mut axum::http::HeaderMap| {
            h.insert(header::IF_MATCH, v.parse().unwrap());
        }
    };
    let ok = send(
        spine(),
        spine_request("PUT", &path, gpc::AMEND_INTERACTION, &write, bytes(&amended), if_match("W/\"1\"")),
    )
    .await;
    assert_eq!((ok.status, &ok.headers[header::ETAG]), (StatusCode::OK, &"W/\"2\"".parse().unwrap()), "{}", ok.json);
    let stale = send(
        spine(),
        spine_request("PUT", &path, gpc::AMEND_INTERACTION, &write, bytes(&amended), if_match("W/\"1\"")),
    )
    .await;
    assert_eq!((stale.status, spine_code(&stale)), (StatusCode::CONFLICT, "FHIR_CONSTRAINT_VIOLATION"));
    // Asking for a minimal answer does not hide a refusal: it keeps its OperationOutcome.
    let minimal = |h: &mut axum::http::HeaderMap| {
        h.insert(header::IF_MATCH, "W/\"1\"".parse().unwrap());
        h.insert("prefer", "return=minimal".parse().unwrap());
    };
    let stale =
        send(spine(), spine_request("PUT", &path, gpc::AMEND_INTERACTION, &write, bytes(&amended), minimal)).await;
    assert_eq!((stale.status, spine_code(&stale)), (StatusCode::CONFLICT, "FHIR_CONSTRAINT_VIOLATION"));

    // Cancel: the same address, the cancel interaction.
    let mut cancel = ok.json.clone();
    cancel["status"] = json!("cancelled");
    cancel["extension"].as_array_mut().unwrap().push(json!({"url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-AppointmentCancellationReason-1", "valueString": "Discharge delayed"}));
    // With `Prefer: return=minimal` the answer is the status and the new version, without a body.
    let done = send(
        spine(),
        spine_request("PUT", &path, gpc::CANCEL_INTERACTION, &write, bytes(&cancel), |h| {
            h.insert("prefer", "return=minimal".parse().unwrap());
        }),
    )
    .await;
    assert_eq!((done.status, &done.json), (StatusCode::OK, &Value::Null));
    assert_eq!(done.headers[header::ETAG], "W/\"3\"");
    assert!(done.headers.get(header::CONTENT_TYPE).is_none());
    let got = send(spine(), spine_request("GET", &path, gpc::READ_INTERACTION, &read, Vec::new(), |_| {})).await;
    assert_eq!(got.json["status"], "cancelled");

    // A body that is not JSON is refused as a media type; DELETE is not how GP Connect cancels.
    let xml = send(
        spine(),
        spine_request("PUT", &path, gpc::CANCEL_INTERACTION, &write, bytes(&cancel), |h| {
            h.insert(header::CONTENT_TYPE, "application/fhir+xml".parse().unwrap());
        }),
    )
    .await;
    assert_eq!(xml.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let delete =
        send(spine(), spine_request("DELETE", &path, gpc::CANCEL_INTERACTION, &write, Vec::new(), |_| {})).await;
    assert_eq!((delete.status, spine_code(&delete)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));

    // The main router serves none of it.
    let main = send(
        caldicott_web::router(app.clone()),
        spine_request("GET", &path, gpc::READ_INTERACTION, &read, Vec::new(), |_| {}),
    )
    .await;
    assert_eq!(main.status, StatusCode::NOT_FOUND);
}

async fn a_patients_app_books_through_patient_facing_services_on_the_main_address(t: &TestStore) {
    let app = App::new(t.store.clone(), fixtures::test_clock());
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    fixtures::online_clinic(&app, &tp, 4, ("10:00", "10:15"), 15).await.unwrap();
    let (client, secret, link) = fixtures::linked_app(&app, &tp, &pat).await.unwrap();
    let request =
        caldicott_app::fhir_api::TokenRequest::app(&client, &secret, &link, "patient/*.read patient/Appointment.write");
    let token = format!("Bearer {}", app.fhir_token(&request).await.unwrap().access_token);
    let root = caldicott_app::fhir_api::pfs_root(&ods);
    let day = fixtures::today() + Duration::days(4);
    let get = |path: String, auth: Option<&str>| {
        let mut b = Request::builder().uri(path).header(header::ACCEPT, "application/fhir+json");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::empty()).unwrap()
    };
    let slots_path = format!("{root}/Slot?start=ge{day}&end=le{day}&status=free&_include=Slot:schedule");
    let main = || caldicott_web::router(app.clone());
    let anonymous = send(main(), get(slots_path.clone(), None)).await;
    assert_eq!((anonymous.status, spine_code(&anonymous)), (StatusCode::FORBIDDEN, "ACCESS_DENIED"));
    let slots = send(main(), get(slots_path.clone(), Some(&token))).await;
    assert_eq!(slots.status, StatusCode::OK, "{}", slots.json);
    let slot = slots.json["entry"][0]["resource"].clone();
    let body = json!({
        "resourceType": "Appointment", "status": "booked", "description": "Repeat blood test",
        "start": slot["start"], "end": slot["end"], "slot": [{"reference": format!("Slot/{}", slot["id"].as_str().unwrap())}],
        "created": caldicott_fhir::gpconnect::appointments::instant(fixtures::now()),
        "participant": [{"actor": {"reference": format!("Patient/{}", pat.id)}, "status": "accepted"},
                        {"actor": {"reference": format!("Location/{}", tp.practice.id)}, "status": "accepted"}]
    });
    let post = Request::builder()
        .method("POST")
        .uri(format!("{root}/Appointment"))
        .header(header::AUTHORIZATION, &token)
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(Body::from(body.to_string()))
        .unwrap();
    let booked = send(main(), post).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.json);
    assert_eq!(booked.headers[header::ETAG], "W/\"1\"");
    assert!(booked.headers[header::LOCATION].to_str().unwrap().starts_with(&format!("{root}/Appointment/")));
    // The app asked for a minimal answer: where the booking is, not the booking itself.
    assert_eq!(booked.json, Value::Null);
    // Patient Facing Services are not on the Spine listener.
    let spine = send(caldicott_web::spine_router(app.clone()), get(slots_path, Some(&token))).await;
    assert_eq!(spine.status, StatusCode::NOT_IMPLEMENTED);
}

both!(
    the_spine_is_answered_as_the_specification_says,
    appointments_are_booked_changed_and_cancelled_over_http,
    a_patients_app_books_through_patient_facing_services_on_the_main_address
);
