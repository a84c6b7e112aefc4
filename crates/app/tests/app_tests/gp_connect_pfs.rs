//! GP Connect Patient Facing Services Appointments, as a patient's app (the NHS App, or another
//! app the patient linked) uses them: search the slots offered to patients online, book with a
//! reason, list and read the patient's appointments, cancel before the practice's cut-off. The
//! same rules as the patient's own pages (R22: P5 or more to book; R15: a proxy needs the
//! appointments permission), in GP Connect's STU3 shapes. Both databases.

use crate::gp_connect::validate_gp_connect;
use caldicott_app::appointments::NewClinic;
use caldicott_app::fhir_api::{PfsCall, TokenRequest};
use caldicott_app::fixtures::{self, adult, linked_app};
use caldicott_app::App;
use caldicott_fhir::gpconnect::appointments::instant;
use caldicott_fhir::gpconnect::{GpcError, SpineCode};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use serde_json::{json, Value};

fn app_at(t: &TestStore, ahead: Duration) -> App {
    App::new(t.store.clone(), std::sync::Arc::new(move || fixtures::now() + ahead))
}

async fn token(app: &App, (client, secret, link): &(String, String, String), scope: &str) -> String {
    app.fhir_token(&TokenRequest::app(client, secret, link, scope)).await.unwrap().access_token
}

fn call<'a>(ods: &'a str, token: &'a str, q: &'a [(String, String)], body: &'a [u8]) -> PfsCall<'a> {
    PfsCall { ods, token: Some(token), query: q, body }
}

fn query(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn day(days: i64) -> String {
    (fixtures::today() + Duration::days(days)).to_string()
}

fn code<T: std::fmt::Debug>(r: Result<T, GpcError>) -> SpineCode {
    r.map(|v| panic!("expected a refusal, got {v:?}")).unwrap_or_else(|e| e.code)
}

fn entries<'a>(b: &'a Value, kind: &str) -> Vec<&'a Value> {
    b["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| &e["resource"]).filter(|r| r["resourceType"] == kind).collect())
        .unwrap_or_default()
}

fn booking(slot: &Value, patient: &str, location: &str) -> Vec<u8> {
    json!({
        "resourceType": "Appointment",
        "status": "booked",
        "description": "Sore throat for two weeks",
        "start": slot["start"], "end": slot["end"],
        "slot": [{ "reference": format!("Slot/{}", slot["id"].as_str().unwrap()) }],
        "created": instant(fixtures::now()),
        "participant": [
            { "actor": { "reference": format!("Patient/{patient}") }, "status": "accepted" },
            { "actor": { "reference": format!("Location/{location}") }, "status": "accepted" }
        ]
    })
    .to_string()
    .into_bytes()
}

async fn a_patients_app_books_lists_and_cancels_in_gp_connect_shapes(t: &TestStore) {
    let app = app_at(t, Duration::zero());
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let location = tp.practice.id.to_string();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    fixtures::online_clinic(&app, &tp, 5, ("09:00", "09:30"), 15).await.unwrap();
    // A clinic kept for other care settings is not offered to patients.
    let d = fixtures::today() + Duration::days(5);
    let kept = NewClinic {
        slot_type: "gp_telephone".into(),
        location: "Phone".into(),
        ..fixtures::clinic_form(&tp, d, ("14:00", "14:30"), 15, "0")
    };
    app.create_clinic(&tp.clinician, &kept).await.unwrap().unwrap();
    let linked = linked_app(&app, &tp, &pat).await.unwrap();
    let reader = token(&app, &linked, "patient/*.read").await;
    let booker = token(&app, &linked, "patient/*.read patient/Appointment.write").await;

    let search = query(&[
        ("start", format!("ge{}", day(4))),
        ("end", format!("le{}", day(6))),
        ("status", "free".into()),
        ("_include", "Slot:schedule".into()),
        ("_include:recurse", "Schedule:actor:Location".into()),
    ]);
    let cs = app.pfs_metadata(&ods).await.unwrap();
    validate_gp_connect(&cs);
    assert_eq!(code(app.pfs_metadata("NOPE1").await), SpineCode::BadRequest);
    let slots = app.pfs_slots(call(&ods, &booker, &search, &[])).await.unwrap();
    validate_gp_connect(&slots);
    let offered = entries(&slots, "Slot");
    assert_eq!(offered.len(), 2, "the two online slots, not the two kept for other care settings");
    let first = offered[0].clone();

    // Booking needs the write scope, and is for the app's own patient only.
    let body = booking(&first, &pat.id.to_string(), &location);
    assert_eq!(code(app.pfs_book(call(&ods, &reader, &[], &body)).await), SpineCode::AccessDenied);
    let other = adult(&app, tp.practice.id).await.unwrap();
    let theirs = booking(&first, &other.id.to_string(), &location);
    assert_eq!(code(app.pfs_book(call(&ods, &booker, &[], &theirs)).await), SpineCode::NoRelationship);
    // Another practice's address is not this token's.
    let elsewhere = fixtures::practice(&app).await.unwrap();
    let away = elsewhere.practice.ods_code.as_str().to_owned();
    assert_eq!(code(app.pfs_book(call(&away, &booker, &[], &body)).await), SpineCode::AccessDenied);

    let booked = app.pfs_book(call(&ods, &booker, &[], &body)).await.unwrap();
    validate_gp_connect(&booked.resource);
    assert_eq!(booked.resource["description"], "Sore throat for two weeks");
    assert_eq!(code(app.pfs_book(call(&ods, &booker, &[], &body)).await), SpineCode::DuplicateRejected);
    let book = app.appointment_book(&tp.clinician, d, 1).await.unwrap();
    let (a, _) = book.iter().find_map(|l| l.booking.as_ref().filter(|(a, _)| a.id.to_string() == booked.id)).unwrap();
    assert_eq!(
        (a.booked_by.as_str(), a.description.as_deref()),
        ("online through Health Wallet", Some("Sore throat for two weeks"))
    );

    // Read and list: the patient's own only.
    let read = app.pfs_read(call(&ods, &reader, &[], &[]), &booked.id).await.unwrap();
    assert_eq!(read.resource, booked.resource);
    let window = query(&[("start", format!("ge{}", day(0))), ("start", format!("le{}", day(10)))]);
    let listed = app.pfs_appointments(call(&ods, &reader, &window, &[]), &pat.id.to_string()).await.unwrap();
    validate_gp_connect(&listed);
    assert_eq!(entries(&listed, "Appointment").len(), 1);
    // Another patient, or an id that is nobody's, alike: the app has no relationship with them.
    let others = app.pfs_appointments(call(&ods, &reader, &window, &[]), &other.id.to_string()).await;
    assert_eq!(code(others), SpineCode::NoRelationship);
    let nobody = app.pfs_appointments(call(&ods, &reader, &window, &[]), &caldicott_app::new_id().to_string()).await;
    assert_eq!(code(nobody), SpineCode::NoRelationship);
    let slots_after = app.pfs_slots(call(&ods, &booker, &search, &[])).await.unwrap();
    assert_eq!(entries(&slots_after, "Slot").len(), 1, "a booked slot is not offered");

    // What NHS 111 wrote when it booked for the patient is the practice's, not for whoever holds
    // the patient's phone: the app sees the appointment, described by its kind only.
    let kept_slot = app
        .appointment_book(&tp.clinician, d, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.slot)
        .find(|s| !s.online_bookable && s.others_bookable)
        .unwrap();
    let root = caldicott_app::gp_connect::appointments_root(&ods);
    let auth = crate::gp_connect::jwt_at(&root, "patient/*.write", "RR8", "Urgent Treatment Centre", app.now());
    let from_111 = json!({
        "resourceType": "Appointment",
        "extension": [{ "url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-BookingOrganisation-1", "valueReference": { "reference": "#1" } }],
        "contained": [{ "resourceType": "Organization", "id": "1", "name": "PFS-ORG-NAME",
            "identifier": [{ "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8" }],
            "telecom": [{ "system": "phone", "value": "0113 496 0000" }] }],
        "status": "booked", "description": "PFS-BOOKER-REASON bruising", "comment": "PFS-BOOKER-COMMENT",
        "start": instant(kept_slot.starts_at), "end": instant(kept_slot.starts_at + Duration::minutes(15)),
        "slot": [{ "reference": format!("Slot/{}", kept_slot.id) }], "created": instant(fixtures::now()),
        "participant": [{ "actor": { "reference": format!("Patient/{}", pat.id) }, "status": "accepted" },
                        { "actor": { "reference": format!("Location/{location}") }, "status": "accepted" }]
    })
    .to_string()
    .into_bytes();
    let spine = caldicott_app::gp_connect::GpcCall {
        ods: &ods,
        ssp: caldicott_fhir::gpconnect::request::SspHeaders {
            trace_id: Some("4b1c6d1e-8f3a-4c2b-9e7d-1a2b3c4d5e6f"),
            from: Some("200000000115"),
            to: Some(fixtures::FIXTURE_ASID),
            interaction_id: Some(caldicott_fhir::gpconnect::appointments::BOOK_INTERACTION),
        },
        authorization: Some(&auth),
        body: &from_111,
        query: &[],
    };
    let by_111 = app.gp_connect_book(spine).await.unwrap();
    let listed = app.pfs_appointments(call(&ods, &reader, &window, &[]), &pat.id.to_string()).await.unwrap();
    assert_eq!(entries(&listed, "Appointment").len(), 2);
    let read_111 = app.pfs_read(call(&ods, &reader, &[], &[]), &by_111.id).await.unwrap();
    for text in [listed.to_string(), read_111.resource.to_string()] {
        for never in ["PFS-BOOKER-REASON", "PFS-BOOKER-COMMENT", "PFS-ORG-NAME"] {
            assert!(!text.contains(never), "{never} reached the patient's app");
        }
    }
    assert_eq!(read_111.resource["description"], "GP telephone appointment", "described by its kind");

    let mut cancel = read.resource.clone();
    cancel["status"] = json!("cancelled");
    cancel["extension"].as_array_mut().unwrap().push(json!({
        "url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-AppointmentCancellationReason-1",
        "valueString": "Feeling better"
    }));
    let cancel = cancel.to_string().into_bytes();
    // Before the practice's cut-off it is cancelled; the reason is kept and the slot offered again.
    assert_eq!(code(app.pfs_cancel(call(&ods, &reader, &[], &cancel), &booked.id).await), SpineCode::AccessDenied);
    let done = app.pfs_cancel(call(&ods, &booker, &[], &cancel), &booked.id).await.unwrap();
    assert_eq!((done.resource["status"].as_str(), done.version), (Some("cancelled"), 2));
    let free_again = app.pfs_slots(call(&ods, &booker, &search, &[])).await.unwrap();
    assert_eq!(entries(&free_again, "Slot").len(), 2);
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "appointment.cancel" && e.actor_kind == "app"));
    assert!(events.iter().any(|e| e.action == "appointment.book" && e.actor_kind == "app"));
    // Inside the practice's cut-off (24 hours) an appointment is not cancelled online.
    let second = entries(&free_again, "Slot")[1].clone();
    let again =
        app.pfs_book(call(&ods, &booker, &[], &booking(&second, &pat.id.to_string(), &location))).await.unwrap();
    let mut cancel = again.resource.clone();
    cancel["status"] = json!("cancelled");
    cancel["extension"].as_array_mut().unwrap().push(json!({
        "url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-AppointmentCancellationReason-1",
        "valueString": "Too late"
    }));
    let starts = chrono::DateTime::parse_from_rfc3339(second["start"].as_str().unwrap()).unwrap();
    let late = app_at(t, starts.with_timezone(&chrono::Utc) - fixtures::now() - Duration::hours(2));
    let late_token = token(&late, &linked, "patient/*.read patient/Appointment.write").await;
    let refused = late.pfs_cancel(call(&ods, &late_token, &[], &cancel.to_string().into_bytes()), &again.id).await;
    assert_eq!(code(refused), SpineCode::InvalidResource);
    // The patient's own pages show what the app did.
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let (upcoming, _) = app.my_appointments(&me, None).await.unwrap();
    assert!(upcoming.iter().any(|u| u.id.to_string() == booked.id && u.cancelled), "shown, cancelled");
}

async fn a_proxy_without_the_appointments_permission_is_refused(t: &TestStore) {
    // R15: a proxy manages appointments only when the practice granted it.
    let app = app_at(t, Duration::zero());
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let child = adult(&app, tp.practice.id).await.unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    fixtures::online_clinic(&app, &tp, 3, ("09:00", "09:30"), 15).await.unwrap();
    let mut link = fixtures::proxy_link(
        &app,
        tp.practice.id,
        &child,
        &parent,
        caldicott_core::access::AccessLevel::Full,
        fixtures::today() - Duration::days(30),
    )
    .await
    .unwrap();
    link.scope.appointments = false;
    app.store_for_tests()
        .update_proxy_link(
            tp.practice.id,
            &link,
            &fixtures::audit(caldicott_core::audit::Action::ProxyLinkUpdate, Some(child.id)),
        )
        .await
        .unwrap();
    let (client, secret, link_token) = linked_app(&app, &tp, &parent).await.unwrap();
    let mut request = TokenRequest::app(&client, &secret, &link_token, "patient/*.read patient/Appointment.write");
    request.patient = Some(child.id.to_string());
    let for_child = app.fhir_token(&request).await.unwrap().access_token;
    let search = query(&[
        ("start", format!("ge{}", day(2))),
        ("end", format!("le{}", day(4))),
        ("status", "free".into()),
        ("_include", "Slot:schedule".into()),
    ]);
    assert_eq!(code(app.pfs_slots(call(&ods, &for_child, &search, &[])).await), SpineCode::AccessDenied);
    // The parent's own token books for the parent.
    let own = app
        .fhir_token(&TokenRequest::app(&client, &secret, &link_token, "patient/*.read patient/Appointment.write"))
        .await
        .unwrap()
        .access_token;
    assert_eq!(app.pfs_slots(call(&ods, &own, &search, &[])).await.map(|b| entries(&b, "Slot").len()), Ok(2));
}

both!(
    a_patients_app_books_lists_and_cancels_in_gp_connect_shapes,
    a_proxy_without_the_appointments_permission_is_refused
);
