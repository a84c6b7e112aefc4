//! GP Connect Appointment Management, as NHS 111 or an urgent treatment centre uses it through the
//! Spine: find the patient, search the free slots the practice offers to other care settings,
//! book one, read and list the patient's appointments, change what they wrote, cancel. Requests
//! are built as the specification's examples build them (Ssp headers, unsigned JWT claims,
//! `Appointment` bodies); answers are read as a consumer reads them and validated as STU3.
//! Every case runs on SQLite and PostgreSQL.

use crate::gp_connect::{jwt_at, validate_gp_connect};
use caldicott_app::appointments::NewClinic;
use caldicott_app::fixtures::{self, adult, FIXTURE_ASID};
use caldicott_app::gp_connect::{appointments_root, GpcCall};
use caldicott_app::gp_connect_appointments::Versioned;
use caldicott_app::App;
use caldicott_core::appointments::Slot;
use caldicott_fhir::gpconnect::appointments::{self as gpc, instant};
use caldicott_fhir::gpconnect::request::SspHeaders;
use caldicott_fhir::gpconnect::{GpcError, SpineCode};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use serde_json::{json, Value};

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), fixtures::test_clock())
}

/// Who asks: an urgent treatment centre, or another organisation.
#[derive(Clone, Copy)]
struct Consumer {
    ods: &'static str,
    name: &'static str,
}

const UTC: Consumer = Consumer { ods: "RR8", name: "Leeds Urgent Treatment Centre" };
const OTHER: Consumer = Consumer { ods: "NHS111", name: "NHS 111 Yorkshire" };

struct Ask<'a> {
    app: &'a App,
    ods: String,
    who: Consumer,
}

impl Ask<'_> {
    fn auth(&self, scope: &str) -> String {
        jwt_at(&appointments_root(&self.ods), scope, self.who.ods, self.who.name, self.app.now())
    }

    fn call<'c>(
        &'c self,
        interaction: &'c str,
        auth: &'c str,
        q: &'c [(String, String)],
        body: &'c [u8],
    ) -> GpcCall<'c> {
        GpcCall {
            ods: &self.ods,
            ssp: SspHeaders {
                trace_id: Some("7c8b2f0e-3f1a-4e8e-9d39-6f1b2a3c4d5e"),
                from: Some("200000000115"),
                to: Some(FIXTURE_ASID),
                interaction_id: Some(interaction),
            },
            authorization: Some(auth),
            body,
            query: q,
        }
    }

    async fn metadata(&self, scope: &str) -> Result<Value, GpcError> {
        let auth = self.auth(scope);
        self.app.gp_connect_appointments_metadata(self.call(gpc::METADATA_INTERACTION, &auth, &[], &[])).await
    }

    async fn find(&self, nhs: &str) -> Result<Value, GpcError> {
        let auth = self.auth("patient/*.read");
        let q = query(&[("identifier", &format!("https://fhir.nhs.uk/Id/nhs-number|{nhs}"))]);
        self.app.gp_connect_appointments_find_patient(self.call(gpc::PATIENT_SEARCH_INTERACTION, &auth, &q, &[])).await
    }

    async fn slots(&self, pairs: &[(&str, &str)]) -> Result<Value, GpcError> {
        let auth = self.auth("organization/*.read");
        let q = query(pairs);
        self.app.gp_connect_slots(self.call(gpc::SLOT_SEARCH_INTERACTION, &auth, &q, &[])).await
    }

    async fn book(&self, body: &Value) -> Result<Versioned, GpcError> {
        let auth = self.auth("patient/*.write");
        let bytes = body.to_string().into_bytes();
        self.app.gp_connect_book(self.call(gpc::BOOK_INTERACTION, &auth, &[], &bytes)).await
    }

    async fn read(&self, id: &str) -> Result<Versioned, GpcError> {
        let auth = self.auth("patient/*.read");
        self.app.gp_connect_read_appointment(self.call(gpc::READ_INTERACTION, &auth, &[], &[]), id).await
    }

    async fn list(&self, patient: &str, from: &str, to: &str) -> Result<Value, GpcError> {
        let auth = self.auth("patient/*.read");
        let q = query(&[("start", &format!("ge{from}")), ("start", &format!("le{to}"))]);
        self.app
            .gp_connect_patient_appointments(self.call(gpc::PATIENT_APPOINTMENTS_INTERACTION, &auth, &q, &[]), patient)
            .await
    }

    async fn change(
        &self,
        id: &str,
        body: &Value,
        cancel: bool,
        if_match: Option<&str>,
    ) -> Result<Versioned, GpcError> {
        let auth = self.auth("patient/*.write");
        let bytes = body.to_string().into_bytes();
        let interaction = if cancel { gpc::CANCEL_INTERACTION } else { gpc::AMEND_INTERACTION };
        self.app.gp_connect_change_appointment(self.call(interaction, &auth, &[], &bytes), id, if_match).await
    }
}

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A clinic in `days` days, 09:00–10:00 in 15-minute slots, offered to patients online and to
/// other care settings as given; its slots.
async fn clinic(app: &App, tp: &fixtures::TestPractice, days: i64, online: bool, others: bool) -> Vec<Slot> {
    let day = fixtures::today() + Duration::days(days);
    let hours = if others { ("09:00", "10:00") } else { ("11:00", "12:00") };
    let f = NewClinic {
        others_bookable: others,
        ..fixtures::clinic_form(tp, day, hours, 15, if online { "100" } else { "0" })
    };
    let (clinic, _) = app.create_clinic(&tp.clinician, &f).await.unwrap().unwrap();
    app.appointment_book(&tp.clinician, clinic.date, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.slot)
        .filter(|s| s.clinic == clinic.id)
        .collect()
}

/// A booking body as the specification's example builds it.
fn booking(slot: &Slot, patient: &str, location: &str, who: Consumer) -> Value {
    json!({
        "resourceType": "Appointment",
        "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-Appointment-1"] },
        "extension": [{
            "url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-BookingOrganisation-1",
            "valueReference": { "reference": "#1" }
        }],
        "contained": [{
            "resourceType": "Organization", "id": "1",
            "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Organization-1"] },
            "identifier": [{ "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": who.ods }],
            "name": who.name,
            "telecom": [{ "system": "phone", "value": "0113 496 0000", "use": "work" }]
        }],
        "status": "booked",
        "description": "Review of ankle sprain seen today",
        "comment": "Please check swelling has gone down",
        "start": instant(slot.starts_at),
        "end": instant(slot.starts_at + Duration::minutes(i64::from(slot.minutes))),
        "slot": [{ "reference": format!("Slot/{}", slot.id) }],
        "created": instant(fixtures::now()),
        "participant": [
            { "actor": { "reference": format!("Patient/{patient}") }, "status": "accepted" },
            { "actor": { "reference": format!("Location/{location}") }, "status": "accepted" }
        ]
    })
}

fn resources<'a>(b: &'a Value, kind: &str) -> Vec<&'a Value> {
    b["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| &e["resource"]).filter(|r| r["resourceType"] == kind).collect())
        .unwrap_or_default()
}

fn day(days: i64) -> String {
    (fixtures::today() + Duration::days(days)).to_string()
}

fn code(r: Result<impl std::fmt::Debug, GpcError>) -> SpineCode {
    r.map(|v| panic!("expected a refusal, got {v:?}")).unwrap_or_else(|e| e.code)
}

fn cancelled(current: &Value, reason: &str) -> Value {
    let mut v = current.clone();
    v["status"] = json!("cancelled");
    v["extension"].as_array_mut().unwrap().push(json!({
        "url": "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-AppointmentCancellationReason-1",
        "valueString": reason
    }));
    v
}

async fn urgent_care_books_a_slot_offered_to_it_changes_and_cancels_its_booking(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let offered = clinic(&app, &tp, 3, false, true).await;
    let online_only = clinic(&app, &tp, 3, true, false).await;
    let ask = Ask { app: &app, ods: tp.practice.ods_code.as_str().to_owned(), who: UTC };

    // Find the patient: their logical id is what a booking names.
    let found = ask.find(pat.nhs_number.as_str()).await.unwrap();
    validate_gp_connect(&found);
    let patient_id = resources(&found, "Patient")[0]["id"].as_str().unwrap().to_owned();

    // Free slots over three days: only those offered to other care settings, with their
    // schedule, clinician, premises and practice.
    let everything = [
        ("start", format!("ge{}", day(2))),
        ("end", format!("le{}", day(4))),
        ("status", "free".into()),
        ("_include", "Slot:schedule".into()),
        ("_include:recurse", "Schedule:actor:Practitioner".into()),
        ("_include:recurse", "Schedule:actor:Location".into()),
        ("_include:recurse", "Location:managingOrganization".into()),
        ("searchFilter", format!("https://fhir.nhs.uk/Id/ods-organization-code|{}", UTC.ods)),
        ("searchFilter", "https://fhir.nhs.uk/STU3/CodeSystem/GPConnect-OrganisationType-1|urgent-care".into()),
    ];
    let pairs: Vec<(&str, &str)> = everything.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let search = ask.slots(&pairs).await.unwrap();
    validate_gp_connect(&search);
    let ids: Vec<&str> = resources(&search, "Slot").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids.len(), offered.len(), "{ids:?}");
    assert!(offered.iter().all(|s| ids.contains(&s.id.to_string().as_str())));
    assert!(
        online_only.iter().all(|s| !ids.contains(&s.id.to_string().as_str())),
        "patient-only slots are not offered"
    );
    assert_eq!(resources(&search, "Schedule").len(), 1);
    assert_eq!(resources(&search, "Practitioner").len(), 1);
    let location = resources(&search, "Location")[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(resources(&search, "Organization")[0]["identifier"][0]["value"], tp.practice.ods_code.as_str());

    // Book the first: 201-worthy, version 1, as stored.
    let slot = &offered[0];
    let booked = ask.book(&booking(slot, &patient_id, &location, UTC)).await.unwrap();
    validate_gp_connect(&booked.resource);
    assert_eq!(booked.version, 1);
    assert_eq!(booked.resource["status"], "booked");
    assert_eq!(booked.resource["description"], "Review of ankle sprain seen today");
    assert_eq!(booked.resource["contained"][0]["identifier"][0]["value"], UTC.ods);

    // The slot is gone from the next search, and a second booking of it is a duplicate.
    let again = ask.slots(&pairs).await.unwrap();
    assert_eq!(resources(&again, "Slot").len(), offered.len() - 1);
    assert_eq!(code(ask.book(&booking(slot, &patient_id, &location, UTC)).await), SpineCode::DuplicateRejected);
    // A slot kept for patients online is not there to other care settings.
    let not_offered = booking(&online_only[0], &patient_id, &location, UTC);
    assert_eq!(code(ask.book(&not_offered).await), SpineCode::ReferenceNotFound);

    // The practice sees who booked it, from where, and why, in its appointment book.
    let book = app.appointment_book(&tp.clinician, fixtures::today() + Duration::days(3), 1).await.unwrap();
    let line = book.iter().find(|l| l.slot.id == slot.id).unwrap();
    let (a, _) = line.booking.as_ref().expect("booked");
    assert!(a.booked_by.contains("Dr Claire Jones at Leeds Urgent Treatment Centre (RR8)"), "{}", a.booked_by);
    assert_eq!(a.description.as_deref(), Some("Review of ankle sprain seen today"));
    assert_eq!(a.booked_through.as_ref().and_then(|o| o.telephone.as_deref()), Some("0113 496 0000"));
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    let e = events.iter().rev().find(|e| e.action == "appointment.book").unwrap();
    assert_eq!((e.actor_kind.as_str(), e.actor_id.as_str()), ("gp_connect", "RR8"));
    assert_eq!(e.patient.as_deref(), Some(pat.id.to_string().as_str()));

    // Everything the appointment references can be read (Foundations), and validates.
    for p in booked.resource["participant"].as_array().unwrap() {
        let reference = p["actor"]["reference"].as_str().unwrap();
        let (kind, id) = reference.split_once('/').unwrap();
        let scope = if kind == "Patient" { "patient/*.read" } else { "organization/*.read" };
        let auth = ask.auth(scope);
        let interaction = match kind {
            "Patient" => gpc::READ_PATIENT_INTERACTION,
            "Practitioner" => gpc::READ_PRACTITIONER_INTERACTION,
            _ => gpc::READ_LOCATION_INTERACTION,
        };
        let got = app.gp_connect_foundation(ask.call(interaction, &auth, &[], &[]), kind, id).await.unwrap();
        validate_gp_connect(&got.resource);
        assert_eq!(got.resource["resourceType"], kind);
    }
    let auth = ask.auth("organization/*.read");
    let org = tp.practice.id.to_string();
    let got =
        app.gp_connect_foundation(ask.call(gpc::READ_ORGANIZATION_INTERACTION, &auth, &[], &[]), "Organization", &org);
    validate_gp_connect(&got.await.unwrap().resource);
    // Foundations: the consumer finds the practice by its ODS code (any case); another code finds
    // nothing, and that is not an error.
    for (code, n) in [(tp.practice.ods_code.as_str().to_lowercase(), 1), ("Y99999".to_owned(), 0)] {
        let q = query(&[("identifier", &format!("https://fhir.nhs.uk/Id/ods-organization-code|{code}"))]);
        let call = ask.call(gpc::ORGANIZATION_SEARCH_INTERACTION, &auth, &q, &[]);
        let found = app.gp_connect_find_organization(call).await.unwrap();
        validate_gp_connect(&found);
        assert_eq!((found["total"].as_u64(), resources(&found, "Organization").len()), (Some(n), n as usize), "{code}");
        if n == 1 {
            assert_eq!(found["entry"][0]["resource"]["id"], org.as_str());
            let root = appointments_root(tp.practice.ods_code.as_str());
            let full = found["entry"][0]["fullUrl"].as_str().unwrap();
            assert!(full.ends_with(&format!("{root}/Organization/{org}")), "{full}");
        }
    }

    // Read it and list the patient's appointments from today.
    let read = ask.read(&booked.id).await.unwrap();
    assert_eq!(read.resource, booked.resource);
    let listed = ask.list(&patient_id, &day(0), &day(13)).await.unwrap();
    validate_gp_connect(&listed);
    assert_eq!(resources(&listed, "Appointment").len(), 1);
    assert_eq!(ask.list(&patient_id, &day(4), &day(13)).await.map(|b| resources(&b, "Appointment").len()), Ok(0));

    // Amend what was written: version 2; a change from a stale read is refused.
    let mut amended = read.resource.clone();
    amended["description"] = json!("Ankle sprain and wrist pain");
    let v2 = ask.change(&booked.id, &amended, false, Some("W/\"1\"")).await.unwrap();
    assert_eq!((v2.version, v2.resource["description"].as_str()), (2, Some("Ankle sprain and wrist pain")));
    assert_eq!(
        code(ask.change(&booked.id, &amended, false, Some("W/\"1\"")).await),
        SpineCode::FhirConstraintViolation
    );
    // Moving it is not an amendment.
    let mut moved = v2.resource.clone();
    moved["start"] = json!(instant(offered[1].starts_at));
    assert_eq!(code(ask.change(&booked.id, &moved, false, None).await), SpineCode::InvalidResource);

    // Another organisation may read it but not cancel what it did not book.
    let other = Ask { app: &app, ods: ask.ods.clone(), who: OTHER };
    assert!(other.read(&booked.id).await.is_ok());
    let cancel = cancelled(&v2.resource, "Patient feels better");
    assert_eq!(code(other.change(&booked.id, &cancel, true, None).await), SpineCode::InvalidResource);

    // The booker cancels it: version 3, the reason kept, the slot free again.
    let v3 = ask.change(&booked.id, &cancel, true, Some("W/\"2\"")).await.unwrap();
    validate_gp_connect(&v3.resource);
    assert_eq!((v3.version, v3.resource["status"].as_str()), (3, Some("cancelled")));
    assert_eq!(code(ask.change(&booked.id, &cancel, true, None).await), SpineCode::InvalidResource, "cancelled once");
    let free_again = ask.slots(&pairs).await.unwrap();
    assert_eq!(resources(&free_again, "Slot").len(), offered.len());
    let listed = ask.list(&patient_id, &day(0), &day(13)).await.unwrap();
    assert_eq!(resources(&listed, "Appointment")[0]["status"], "cancelled", "cancelled appointments are listed");

    // The patient sees that another service looked at their appointments.
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let lines = app.my_record_activity(&me).await.unwrap();
    let line = lines.iter().find(|l| l.what.contains("appointments")).expect("the appointments read is listed");
    assert_eq!(line.who, "Dr Claire Jones at Leeds Urgent Treatment Centre (RR8)");
}

async fn two_care_settings_booking_one_slot_at_once_leave_exactly_one_booking(t: &TestStore) {
    // T46: one slot never holds two live bookings, however the requests interleave.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let offered = clinic(&app, &tp, 2, false, true).await;
    let ods = tp.practice.ods_code.as_str().to_owned();
    let mut people = Vec::new();
    for _ in 0..8 {
        people.push(adult(&app, tp.practice.id).await.unwrap());
    }
    let tries = people.iter().map(|p| {
        let (app, ods, slot) = (app.clone(), ods.clone(), offered[0].clone());
        let patient = p.id.to_string();
        let location = tp.practice.id.to_string();
        tokio::spawn(async move {
            let ask = Ask { app: &app, ods, who: UTC };
            ask.book(&booking(&slot, &patient, &location, UTC)).await.map(|_| ()).map_err(|e| e.code)
        })
    });
    let results = crate::app::futures_join(tries).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(SpineCode::DuplicateRejected))), "{results:?}");
    let book = app.appointment_book(&tp.clinician, fixtures::today() + Duration::days(2), 1).await.unwrap();
    assert_eq!(book.iter().filter(|l| l.booking.is_some()).count(), 1);
}

async fn what_is_not_bookable_or_not_here_is_refused_and_changes_nothing(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let elsewhere = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let stranger = adult(&app, elsewhere.practice.id).await.unwrap();
    let offered = clinic(&app, &tp, 2, false, true).await;
    let ask = Ask { app: &app, ods: tp.practice.ods_code.as_str().to_owned(), who: UTC };
    let location = tp.practice.id.to_string();
    let before = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap().len();

    // The capability statement: what is offered, for an organisation-level caller only.
    let cs = ask.metadata("organization/*.read").await.unwrap();
    validate_gp_connect(&cs);
    assert_eq!((cs["version"].as_str(), cs["fhirVersion"].as_str()), (Some("1.2.7"), Some("3.0.1")));
    let slot = cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Slot").unwrap();
    assert!(slot["searchInclude"].as_array().unwrap().iter().any(|i| i == "Location:managingOrganization"));
    assert_eq!(code(ask.metadata("patient/*.read").await), SpineCode::BadRequest);

    // Another practice's patient, and a patient who is not registered, cannot be booked for.
    let body = booking(&offered[0], &stranger.id.to_string(), &location, UTC);
    assert_eq!(code(ask.book(&body).await), SpineCode::ReferenceNotFound);
    let found = ask.find(stranger.nhs_number.as_str()).await.unwrap();
    assert!(resources(&found, "Patient").is_empty(), "another practice's patient is not found here");
    // Booking at another location, or with the slot's times wrong, or with a reading scope.
    let body = booking(&offered[0], &pat.id.to_string(), &elsewhere.practice.id.to_string(), UTC);
    assert_eq!(code(ask.book(&body).await), SpineCode::ReferenceNotFound);
    let mut body = booking(&offered[0], &pat.id.to_string(), &location, UTC);
    body["start"] = json!(instant(offered[1].starts_at));
    body["end"] = json!(instant(offered[1].starts_at + Duration::minutes(15)));
    assert_eq!(code(ask.book(&body).await), SpineCode::InvalidResource);
    // A practitioner who is not the slot's.
    let mut body = booking(&offered[0], &pat.id.to_string(), &location, UTC);
    body["participant"].as_array_mut().unwrap().push(json!({
        "actor": { "reference": format!("Practitioner/{}", caldicott_app::new_id()) }, "status": "accepted"
    }));
    assert_eq!(code(ask.book(&body).await), SpineCode::ReferenceNotFound);
    let body = booking(&offered[0], &pat.id.to_string(), &location, UTC);
    let auth = ask.auth("patient/*.read");
    let bytes = body.to_string().into_bytes();
    let read_scope = app.gp_connect_book(ask.call(gpc::BOOK_INTERACTION, &auth, &[], &bytes)).await;
    assert_eq!(code(read_scope), SpineCode::BadRequest);
    // Addressed as a slot search: the interaction must be the booking's.
    let wrong =
        app.gp_connect_book(ask.call(gpc::SLOT_SEARCH_INTERACTION, &ask.auth("patient/*.write"), &[], &bytes)).await;
    assert_eq!(code(wrong), SpineCode::BadRequest);
    let book = app.appointment_book(&tp.clinician, fixtures::today() + Duration::days(2), 1).await.unwrap();
    assert!(book.iter().all(|l| l.booking.is_none()), "nothing was booked");

    // Searches the specification refuses.
    let q = |s: String, e: String| {
        [("start", s), ("end", e), ("status", "free".to_owned()), ("_include", "Slot:schedule".to_owned())]
    };
    let too_long = q(format!("ge{}", day(0)), format!("le{}", day(15)));
    let pairs: Vec<(&str, &str)> = too_long.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(code(ask.slots(&pairs).await), SpineCode::InvalidParameter);
    assert_eq!(code(ask.list(&pat.id.to_string(), &day(-1), &day(3)).await), SpineCode::InvalidParameter);
    assert_eq!(code(ask.list(&stranger.id.to_string(), &day(0), &day(3)).await), SpineCode::PatientNotFound);
    assert_eq!(code(ask.read("not-an-id").await), SpineCode::NoRecordFound);

    // An appointment booked by the patient online is another organisation's to them: readable,
    // not cancellable; and one of another practice is not found.
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let online = clinic(&app, &tp, 5, true, false).await;
    let (mine, _) = app.book_online(&me, None, online[0].id).await.unwrap();
    let read = ask.read(&mine.id.to_string()).await.unwrap();
    assert!(read.resource.get("contained").is_none(), "booked by the patient, no booking organisation");
    let cancel = cancelled(&read.resource, "Not needed");
    assert_eq!(code(ask.change(&mine.id.to_string(), &cancel, true, None).await), SpineCode::InvalidResource);
    let (upcoming, _) = app.my_appointments(&me, None).await.unwrap();
    assert!(upcoming.iter().any(|a| a.id == mine.id && !a.cancelled), "still booked");
    let away = Ask { app: &app, ods: elsewhere.practice.ods_code.as_str().to_owned(), who: UTC };
    assert_eq!(code(away.read(&mine.id.to_string()).await), SpineCode::NoRecordFound);

    // Every refusal about a patient or an appointment was audited; nothing was lost.
    let after = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    assert!(after.len() > before);
    assert!(after.iter().any(|e| e.action == "appointment.gp_connect_read" && e.outcome == "not_found"));
}

async fn an_appointment_that_has_passed_is_not_changed(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let offered = clinic(&app, &tp, 1, false, true).await;
    let ask = Ask { app: &app, ods: tp.practice.ods_code.as_str().to_owned(), who: UTC };
    let booked = ask.book(&booking(&offered[0], &pat.id.to_string(), &tp.practice.id.to_string(), UTC)).await.unwrap();
    // Two days after it, the appointment has passed (a day later by the calendar, whatever the
    // hour the test runs).
    let after = offered[0].starts_at + Duration::days(2);
    let later = App::new(t.store.clone(), std::sync::Arc::new(move || after));
    let ask_later = Ask { app: &later, ods: ask.ods.clone(), who: UTC };
    let cancel = cancelled(&booked.resource, "Too late");
    assert_eq!(code(ask_later.change(&booked.id, &cancel, true, None).await), SpineCode::InvalidResource);
    assert_eq!(code(ask_later.read(&booked.id).await), SpineCode::NoRecordFound, "served from today on");
    assert_eq!(ask.read(&booked.id).await.map(|v| v.version), Ok(1), "unchanged");
}

/// A one-slot clinic in 3 days at `start` (UK time), offered to other care settings and kept for
/// the kinds of organisation and the ODS codes given (none: every care setting).
async fn kept_clinic(
    app: &App,
    tp: &fixtures::TestPractice,
    start: &str,
    end: &str,
    types: &[&str],
    ods: &str,
) -> Slot {
    let f = NewClinic {
        others_types: types.iter().map(|t| (*t).to_owned()).collect(),
        others_ods: ods.into(),
        others_limit: String::new(),
        others_release_hours: String::new(),
        ..fixtures::clinic_form(tp, fixtures::today() + Duration::days(3), (start, end), 15, "0")
    };
    let (clinic, n) = app.create_clinic(&tp.clinician, &f).await.unwrap().unwrap();
    assert_eq!(n, 1);
    let book = app.appointment_book(&tp.clinician, clinic.date, 1).await.unwrap();
    book.into_iter().map(|l| l.slot).find(|s| s.clinic == clinic.id).unwrap()
}

/// GP Connect Appointment Management, slot availability management: "Provider systems SHALL …
/// enable end-users to specify which appointment schedules/slots can be booked by an individual
/// organisation and/or group of organisations, and/or booking organisation type", and search
/// answers by the specification's matching table: a slot is returned when it has no organisation
/// type restriction or one matching the consumer's searchFilter type, and no organisation code
/// restriction or one matching its code; a consumer sending no filter sees only unrestricted
/// slots. Booking applies the same rule to the booking organisation.
async fn slots_kept_for_some_care_settings_are_offered_to_and_booked_by_them_only(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let open = kept_clinic(&app, &tp, "09:00", "09:15", &[], "").await;
    let urgent = kept_clinic(&app, &tp, "10:00", "10:15", &["urgent-care"], "").await;
    let rr8 = kept_clinic(&app, &tp, "11:00", "11:15", &[], "rr8").await;
    let both = kept_clinic(&app, &tp, "12:00", "12:15", &["urgent-care"], "RR8, A1001").await;
    assert_eq!(rr8.others_bookable_by.ods, vec!["RR8".to_owned()], "codes kept upper case");
    assert_eq!(both.others_bookable_by.describe().as_deref(), Some("Only urgent care, and only ODS RR8, A1001"));
    let ask = Ask { app: &app, ods: tp.practice.ods_code.as_str().to_owned(), who: UTC };
    let (from, to) = (format!("ge{}", day(2)), format!("le{}", day(4)));
    let offered = |filters: &'static [&'static str]| {
        let (ask, from, to) = (&ask, from.clone(), to.clone());
        async move {
            let mut pairs =
                vec![("start", from.as_str()), ("end", to.as_str()), ("status", "free"), ("_include", "Slot:schedule")];
            pairs.extend(filters.iter().map(|f| ("searchFilter", *f)));
            let b = ask.slots(&pairs).await.unwrap();
            validate_gp_connect(&b);
            let mut ids: Vec<String> =
                resources(&b, "Slot").iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect();
            ids.sort();
            ids
        }
    };
    let ids = |slots: &[&Slot]| {
        let mut v: Vec<String> = slots.iter().map(|s| s.id.to_string()).collect();
        v.sort();
        v
    };
    const URGENT: &str = "https://fhir.nhs.uk/STU3/CodeSystem/GPConnect-OrganisationType-1|urgent-care";
    const URGENT_OLD_FORM: &str = "https://fhir.nhs.uk/STU3/ValueSet/GPConnect-OrganisationType-1|Urgent Care";
    const GP: &str = "https://fhir.nhs.uk/STU3/CodeSystem/GPConnect-OrganisationType-1|gp-practice";
    const RR8: &str = "https://fhir.nhs.uk/Id/ods-organization-code|RR8";
    const NHS111: &str = "https://fhir.nhs.uk/Id/ods-organization-code|NHS111";
    // (no search filter): unrestricted slots only.
    assert_eq!(offered(&[]).await, ids(&[&open]));
    // Organisation type: unrestricted, and those kept for that type without a code restriction.
    assert_eq!(offered(&[URGENT]).await, ids(&[&open, &urgent]));
    assert_eq!(offered(&[URGENT_OLD_FORM]).await, ids(&[&open, &urgent]), "the code system's first form");
    assert_eq!(offered(&[GP]).await, ids(&[&open]));
    // Organisation code: unrestricted, and those kept for that code without a type restriction.
    assert_eq!(offered(&[RR8]).await, ids(&[&open, &rr8]));
    // Both: each restriction must match.
    assert_eq!(offered(&[RR8, URGENT]).await, ids(&[&open, &urgent, &rr8, &both]));
    assert_eq!(offered(&[NHS111, URGENT]).await, ids(&[&open, &urgent]));
    assert_eq!(offered(&[RR8, GP]).await, ids(&[&open, &rr8]));

    // Booking: the booking organisation (its contained Organization's code and type) must be one
    // the slot is kept for; otherwise the slot is, to it, not there, and nothing is booked.
    let found = ask.find(pat.nhs_number.as_str()).await.unwrap();
    let patient_id = resources(&found, "Patient")[0]["id"].as_str().unwrap().to_owned();
    let location = tp.practice.id.to_string();
    let typed = |slot: &Slot, who: Consumer, kind: Option<&str>| {
        let mut b = booking(slot, &patient_id, &location, who);
        if let Some(k) = kind {
            b["contained"][0]["type"] = json!([{ "coding": [{
                "system": "https://fhir.nhs.uk/STU3/CodeSystem/GPConnect-OrganisationType-1", "code": k }] }]);
        }
        b
    };
    let other = Ask { app: &app, ods: ask.ods.clone(), who: OTHER };
    assert_eq!(code(other.book(&typed(&rr8, OTHER, Some("urgent-care"))).await), SpineCode::ReferenceNotFound);
    assert_eq!(code(ask.book(&typed(&both, UTC, None)).await), SpineCode::ReferenceNotFound, "the type is needed");
    assert_eq!(code(ask.book(&typed(&both, UTC, Some("gp-practice"))).await), SpineCode::ReferenceNotFound);
    assert_eq!(code(ask.book(&typed(&urgent, UTC, None)).await), SpineCode::ReferenceNotFound);
    let book = app.appointment_book(&tp.clinician, fixtures::today() + Duration::days(3), 1).await.unwrap();
    assert!(book.iter().all(|l| l.booking.is_none()), "no refused booking was made");
    let made = other.book(&typed(&urgent, OTHER, Some("urgent-care"))).await.unwrap();
    validate_gp_connect(&made.resource);
    assert!(ask.book(&typed(&both, UTC, Some("urgent-care"))).await.is_ok());
    assert!(ask.book(&typed(&rr8, UTC, None)).await.is_ok());
    assert!(other.book(&typed(&open, OTHER, None)).await.is_ok());
}

/// The clinic form: a kind of organisation not in the value set, or a code that is not an ODS
/// code, is refused at its field and no clinic is made; a restriction on a clinic not offered to
/// other care settings means nothing and is not kept.
async fn the_clinic_form_checks_whom_slots_are_kept_for(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let day = fixtures::today() + Duration::days(5);
    let form = |types: Vec<String>, ods: &str, others: bool| NewClinic {
        others_bookable: others,
        others_types: types,
        others_ods: ods.into(),
        others_limit: String::new(),
        others_release_hours: String::new(),
        ..fixtures::clinic_form(&tp, day, ("14:00", "14:30"), 15, "0")
    };
    let refused = app.create_clinic(&tp.clinician, &form(vec!["hospital".into()], "", true)).await.unwrap();
    assert_eq!(refused.unwrap_err()[0].field, "others_types");
    let refused = app.create_clinic(&tp.clinician, &form(vec![], "RR8, R*8", true)).await.unwrap();
    let problems = refused.unwrap_err();
    assert_eq!(problems[0].field, "others_ods");
    assert!(problems[0].message.contains("R*8"), "{}", problems[0].message);
    assert!(app.appointment_book(&tp.clinician, day, 1).await.unwrap().is_empty(), "no clinic was made");
    let (c, _) =
        app.create_clinic(&tp.clinician, &form(vec!["urgent-care".into()], "RR8", false)).await.unwrap().unwrap();
    assert!(c.others_bookable_by.is_open(), "not offered to other care settings: nothing to narrow");
}

/// GP Connect Appointment Management, slot availability management: "Provider systems SHALL …
/// enable end-users to limit the number of slots which can be booked by this organisation access
/// profile". A clinic limited to two: however many care settings book at the same moment, two
/// hold its slots; then it is offered to none of them, until one of theirs is cancelled. The
/// practice's own bookings are not theirs and are not limited.
async fn a_clinic_limited_for_other_care_settings_takes_no_more_bookings_than_its_limit(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let day3 = fixtures::today() + Duration::days(3);
    let form = |limit: &str| NewClinic {
        others_limit: limit.into(),
        others_release_hours: String::new(),
        ..fixtures::clinic_form(&tp, day3, ("09:00", "10:30"), 15, "0")
    };
    for bad in ["0", "two", "501", "-1", "1.5"] {
        let problems = app.create_clinic(&tp.clinician, &form(bad)).await.unwrap().unwrap_err();
        assert_eq!(problems[0].field, "others_limit", "{bad}");
    }
    assert!(app.appointment_book(&tp.clinician, day3, 1).await.unwrap().is_empty(), "no clinic was made");
    let (limited, n) = app.create_clinic(&tp.clinician, &form(" 2 ")).await.unwrap().unwrap();
    assert_eq!((n, limited.others_bookable_by.limit), (6, Some(2)));
    assert_eq!(limited.others_bookable_by.describe().as_deref(), Some("At most 2 slots booked by other care settings"));
    let open = kept_clinic(&app, &tp, "14:00", "14:15", &[], "").await;
    let slots: Vec<Slot> = app
        .appointment_book(&tp.clinician, day3, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.slot)
        .filter(|s| s.clinic == limited.id)
        .collect();
    assert!(slots.iter().all(|s| s.others_bookable_by.limit == Some(2)), "each slot carries its clinic's limit");
    let ods = tp.practice.ods_code.as_str().to_owned();
    let ask = Ask { app: &app, ods: ods.clone(), who: UTC };
    let (from, to) = (format!("ge{}", day(2)), format!("le{}", day(4)));
    let pairs = [("start", from.as_str()), ("end", to.as_str()), ("status", "free"), ("_include", "Slot:schedule")];
    let offered = || async {
        let b = ask.slots(&pairs).await.unwrap();
        validate_gp_connect(&b);
        resources(&b, "Slot").iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect::<Vec<_>>()
    };
    assert_eq!(offered().await.len(), 7, "the six limited slots and the open one");

    // Six care settings' bookings of its six slots at the same moment: two are made.
    let mut people = Vec::new();
    for _ in 0..8 {
        people.push(adult(&app, tp.practice.id).await.unwrap());
    }
    let location = tp.practice.id.to_string();
    let tries = slots.iter().zip(&people).enumerate().map(|(i, (slot, p))| {
        let (app, ods, slot, location) = (app.clone(), ods.clone(), slot.clone(), location.clone());
        let patient = p.id.to_string();
        let who = if i % 2 == 0 { UTC } else { OTHER };
        tokio::spawn(async move {
            let ask = Ask { app: &app, ods, who };
            ask.book(&booking(&slot, &patient, &location, who)).await.map(|v| v.resource).map_err(|e| e.code)
        })
    });
    let results = crate::app::futures_join(tries).await;
    let made: Vec<(usize, Value)> =
        results.iter().enumerate().filter_map(|(i, r)| r.as_ref().ok().map(|v| (i, v.clone()))).collect();
    let outcomes: Vec<_> = results.iter().map(|r| r.as_ref().map(|_| "booked")).collect();
    assert_eq!(made.len(), 2, "{outcomes:?}");
    assert!(results.iter().all(|r| r.is_ok() || r == &Err(SpineCode::DuplicateRejected)), "{outcomes:?}");
    let held = |book: &[caldicott_app::appointments::BookLine]| {
        book.iter().filter(|l| l.slot.clinic == limited.id && l.booking.is_some()).count()
    };
    assert_eq!(held(&app.appointment_book(&tp.clinician, day3, 1).await.unwrap()), 2);

    // Full: its free slots are offered to no care setting, and a booking is refused.
    assert_eq!(offered().await, vec![open.id.to_string()], "only the unlimited clinic's slot");
    let free: Vec<&Slot> =
        slots.iter().enumerate().filter(|(i, _)| !made.iter().any(|(m, _)| m == i)).map(|(_, s)| s).collect();
    let patient7 = people[6].id.to_string();
    let refused = ask.book(&booking(free[0], &patient7, &location, UTC)).await;
    assert_eq!(code(refused), SpineCode::DuplicateRejected);
    assert_eq!(held(&app.appointment_book(&tp.clinician, day3, 1).await.unwrap()), 2, "nothing booked");

    // The practice books one for a patient who phoned: not a booking from another care setting.
    let (_, _, _) = app.staff_book(&tp.clinician, free[1].id, people[7].nhs_number.as_str()).await.unwrap().unwrap();
    assert_eq!(held(&app.appointment_book(&tp.clinician, day3, 1).await.unwrap()), 3);

    // One of theirs is cancelled: the clinic takes one more from another care setting.
    let (i, resource) = &made[0];
    let who = if i % 2 == 0 { UTC } else { OTHER };
    let booker = Ask { app: &app, ods: ods.clone(), who };
    let id = resource["id"].as_str().unwrap();
    booker.change(id, &cancelled(resource, "Seen elsewhere"), true, None).await.unwrap();
    // The cancelled slot and the three never booked; the practice's booking is not offered.
    assert_eq!(offered().await.len(), 1 + 4);
    ask.book(&booking(free[2], &patient7, &location, UTC)).await.unwrap();
    assert_eq!(offered().await, vec![open.id.to_string()]);
    assert_eq!(
        code(ask.book(&booking(free[3], &people[0].id.to_string(), &location, UTC)).await),
        SpineCode::DuplicateRejected
    );
}

/// Slot availability management, booking window/embargo: the practice controls how far in
/// advance other care settings may book. Two clinics three days ahead: one offered from five days
/// before each slot starts (so now), one from a day before (not yet): only the first is found,
/// and the second cannot be booked until its window opens.
async fn a_slot_is_offered_to_other_care_settings_only_once_its_window_opens(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let day3 = fixtures::today() + Duration::days(3);
    let form = |(start, end): (&str, &str), hours: &str| NewClinic {
        others_release_hours: hours.into(),
        ..fixtures::clinic_form(&tp, day3, (start, end), 15, "0")
    };
    for bad in ["0", "2161", "a day", "-4"] {
        let problems = app.create_clinic(&tp.clinician, &form(("09:00", "09:15"), bad)).await.unwrap().unwrap_err();
        assert_eq!(problems[0].field, "others_release_hours", "{bad}");
    }
    let (open_now, _) = app.create_clinic(&tp.clinician, &form(("09:00", "09:15"), "120")).await.unwrap().unwrap();
    let (later, _) = app.create_clinic(&tp.clinician, &form(("11:00", "11:15"), " 24 ")).await.unwrap().unwrap();
    assert_eq!(later.others_bookable_by.release_hours, Some(24));
    let book = app.appointment_book(&tp.clinician, day3, 1).await.unwrap();
    let slot_of =
        |c: &caldicott_core::appointments::Clinic| book.iter().find(|l| l.slot.clinic == c.id).unwrap().slot.clone();
    let (now_slot, later_slot) = (slot_of(&open_now), slot_of(&later));
    assert_eq!(
        later_slot.others_bookable_by.describe().as_deref(),
        Some("Each offered to other care settings from 24 hours before it starts")
    );
    let ask = Ask { app: &app, ods: tp.practice.ods_code.as_str().to_owned(), who: UTC };
    let (from, to) = (format!("ge{}", day(2)), format!("le{}", day(4)));
    let found =
        ask.slots(&[("start", &from), ("end", &to), ("status", "free"), ("_include", "Slot:schedule")]).await.unwrap();
    validate_gp_connect(&found);
    let ids: Vec<&str> = resources(&found, "Slot").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, vec![now_slot.id.to_string().as_str()], "only the slot whose window is open");
    let found = ask.find(pat.nhs_number.as_str()).await.unwrap();
    let patient_id = resources(&found, "Patient")[0]["id"].as_str().unwrap().to_owned();
    let location = tp.practice.id.to_string();
    assert_eq!(
        code(ask.book(&booking(&later_slot, &patient_id, &location, UTC)).await),
        SpineCode::ReferenceNotFound,
        "not yet offered"
    );
    let held = app.appointment_book(&tp.clinician, day3, 1).await.unwrap();
    assert!(held.iter().all(|l| l.booking.is_none()), "nothing booked");
    ask.book(&booking(&now_slot, &patient_id, &location, UTC)).await.unwrap();
    // The practice books either at any time: the window is for other care settings.
    let other = adult(&app, tp.practice.id).await.unwrap();
    app.staff_book(&tp.clinician, later_slot.id, other.nhs_number.as_str()).await.unwrap().unwrap();
}

async fn other_care_settings_find_a_clinician_by_the_sds_user_id_the_practice_recorded(t: &TestStore) {
    // GP Connect Foundations, find a practitioner by SDS user id; the id is what the practice's
    // administrator records from the clinician's smartcard.
    use caldicott_core::staff::Role;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let reception = caldicott_app::auth::authenticate(&app, &tp.receptionist_token).await.unwrap().staff;
    let gp = tp.clinician.staff;
    // Only an administrator records it; a malformed id is refused and changes nothing.
    let refused = app.set_staff_sds_user_id(&tp.clinician, gp, "555021935107").await;
    assert!(matches!(refused, Err(caldicott_app::AppError::Forbidden(_))), "{refused:?}");
    for bad in ["55", "5550-2193-5107", "5550219351075550219351"] {
        let r = app.set_staff_sds_user_id(&admin, gp, bad).await;
        assert!(matches!(r, Err(caldicott_app::AppError::BadRequest(_))), "{bad}: {r:?}");
    }
    let member = |id| {
        let app = app.clone();
        let admin = admin.clone();
        async move { app.staff_accounts(&admin).await.unwrap().into_iter().find(|m| m.id == id).unwrap() }
    };
    assert_eq!(member(gp).await.sds_user_id, None);
    // Typed with spaces and in lower case, kept as one upper-case id.
    let saved = app.set_staff_sds_user_id(&admin, gp, " 5550 2193 5107 ").await.unwrap();
    assert_eq!((saved.kept.as_deref(), saved.changed), (Some("555021935107"), true));
    assert_eq!(member(gp).await.sds_user_id.as_deref(), Some("555021935107"));
    // The same id again changes nothing and writes nothing.
    let head = app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count;
    assert!(!app.set_staff_sds_user_id(&admin, gp, "555021935107").await.unwrap().changed);
    assert_eq!(app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count, head);
    // One member of the practice per id, even when two administrators save it at once.
    let nurse =
        app.add_staff_account(&admin, "a.nurse", "Alex Nurse", Role::Clinician, "a long first password").await.unwrap();
    let (a, b) = tokio::join!(
        app.set_staff_sds_user_id(&admin, nurse.id, "G13579135"),
        app.set_staff_sds_user_id(&admin, reception, "g13579135"),
    );
    assert_eq!([&a, &b].iter().filter(|r| r.is_ok()).count(), 1, "{a:?} {b:?}");
    assert!([&a, &b].iter().any(|r| matches!(r, Err(caldicott_app::AppError::Conflict(_)))), "{a:?} {b:?}");
    let taken = app.set_staff_sds_user_id(&admin, nurse.id, "555021935107").await;
    assert!(matches!(taken, Err(caldicott_app::AppError::Conflict(_))), "{taken:?}");
    assert_eq!(member(gp).await.sds_user_id.as_deref(), Some("555021935107"));
    // Another practice's member may hold the same id: it is the practice's own record.
    let other = fixtures::practice(&app).await.unwrap();
    let other_admin = caldicott_app::auth::authenticate(&app, &other.admin_token).await.unwrap();
    app.set_staff_sds_user_id(&other_admin, other.clinician.staff, "555021935107").await.unwrap();
    // Each change is audited with the value it replaced.
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 1_000_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "staff.update"
        && e.entity == format!("staff/{gp}")
        && e.detail.contains("sds_user_id none -> 555021935107")));

    // Other care settings find the clinician by it, in any case; nobody else, and nothing for
    // an id nobody here holds (not an error).
    app.set_staff_sds_user_id(&admin, reception, "R24680246").await.unwrap();
    let ask = Ask { app: &app, ods: tp.practice.ods_code.as_str().to_owned(), who: UTC };
    let auth = ask.auth("organization/*.read");
    let find = |id: &'static str| {
        let q = query(&[("identifier", &format!("https://fhir.nhs.uk/Id/sds-user-id|{id}"))]);
        (q, id)
    };
    for ((q, id), expected) in
        [(find("555021935107"), Some(gp)), (find("R24680246"), None), (find("999999999999"), None)]
    {
        let call = ask.call(gpc::PRACTITIONER_SEARCH_INTERACTION, &auth, &q, &[]);
        let found = app.gp_connect_find_practitioner(call).await.unwrap();
        validate_gp_connect(&found);
        let ids: Vec<&str> = resources(&found, "Practitioner").iter().filter_map(|p| p["id"].as_str()).collect();
        assert_eq!(ids, expected.map(|s| s.to_string()).iter().map(String::as_str).collect::<Vec<_>>(), "{id}");
        if expected.is_some() {
            let p = resources(&found, "Practitioner")[0];
            assert_eq!(p["identifier"][0], json!({"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": id}));
        }
    }
    let wrong = query(&[("identifier", "https://fhir.nhs.uk/Id/ods-organization-code|555021935107")]);
    let call = ask.call(gpc::PRACTITIONER_SEARCH_INTERACTION, &auth, &wrong, &[]);
    assert_eq!(code(app.gp_connect_find_practitioner(call).await), SpineCode::InvalidIdentifierSystem);
    // The clinician read by id, and as a slot search includes them, carries it too.
    let read = app
        .gp_connect_foundation(
            ask.call(gpc::READ_PRACTITIONER_INTERACTION, &auth, &[], &[]),
            "Practitioner",
            &gp.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(read.resource["identifier"][0]["value"], "555021935107");
    clinic(&app, &tp, 3, false, true).await;
    let search = ask
        .slots(&[
            ("start", format!("ge{}", day(2)).as_str()),
            ("end", format!("le{}", day(4)).as_str()),
            ("status", "free"),
            ("_include", "Slot:schedule"),
            ("_include:recurse", "Schedule:actor:Practitioner"),
        ])
        .await
        .unwrap();
    validate_gp_connect(&search);
    assert_eq!(resources(&search, "Practitioner")[0]["identifier"][0]["value"], "555021935107");
    // A clinician who has left (deactivated) is found no more, though references still read.
    app.set_staff_sds_user_id(&admin, nurse.id, "N11223344").await.unwrap();
    let (q, _) = find("N11223344");
    let call = ask.call(gpc::PRACTITIONER_SEARCH_INTERACTION, &auth, &q, &[]);
    assert_eq!(resources(&app.gp_connect_find_practitioner(call).await.unwrap(), "Practitioner").len(), 1);
    let leave = caldicott_app::staff_admin::AccountChange::Deactivate;
    app.change_staff_account(&admin, nurse.id, leave).await.unwrap();
    let call = ask.call(gpc::PRACTITIONER_SEARCH_INTERACTION, &auth, &q, &[]);
    assert!(resources(&app.gp_connect_find_practitioner(call).await.unwrap(), "Practitioner").is_empty());
    let read = ask.call(gpc::READ_PRACTITIONER_INTERACTION, &auth, &[], &[]);
    assert!(app.gp_connect_foundation(read, "Practitioner", &nurse.id.to_string()).await.is_ok());
    // Cleared, the clinician is found no more.
    assert_eq!(app.set_staff_sds_user_id(&admin, gp, "").await.unwrap().kept, None);
    let (q, _) = find("555021935107");
    let call = ask.call(gpc::PRACTITIONER_SEARCH_INTERACTION, &auth, &q, &[]);
    assert!(resources(&app.gp_connect_find_practitioner(call).await.unwrap(), "Practitioner").is_empty());
}

both!(
    a_slot_is_offered_to_other_care_settings_only_once_its_window_opens,
    a_clinic_limited_for_other_care_settings_takes_no_more_bookings_than_its_limit,
    slots_kept_for_some_care_settings_are_offered_to_and_booked_by_them_only,
    the_clinic_form_checks_whom_slots_are_kept_for,
    urgent_care_books_a_slot_offered_to_it_changes_and_cancels_its_booking,
    two_care_settings_booking_one_slot_at_once_leave_exactly_one_booking,
    what_is_not_bookable_or_not_here_is_refused_and_changes_nothing,
    an_appointment_that_has_passed_is_not_changed,
    other_care_settings_find_a_clinician_by_the_sds_user_id_the_practice_recorded,
);
