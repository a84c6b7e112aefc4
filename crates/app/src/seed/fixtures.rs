//! Small, explicit test practices for the app, web and CLI test suites (both backends).

use crate::auth::issue_token;
use crate::setup::{create_practice, create_staff, NewPractice};
use crate::{new_id, App, AppResult, StaffPrincipal};
use caldicott_core::access::*;
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::{OnlineServicesSettings, PostalAddress, Practice};
use caldicott_core::staff::Role;
use caldicott_core::NhsNumber;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(1);

fn actor() -> Actor {
    Actor { kind: ActorKind::System, id: "fixture".into(), role: "system".into() }
}

/// A practice with one member of staff per role and a token for each.
pub struct TestPractice {
    pub practice: Practice,
    pub clinician: StaffPrincipal,
    pub clinician_token: String,
    pub admin_token: String,
    pub receptionist_token: String,
    pub manager_token: String,
    /// An ICB analyst whose account this practice holds.
    pub analyst_token: String,
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

pub fn time(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).single().unwrap_or_default()
}

/// How far the test clock stands from the system clock: `CALDICOTT_TEST_NOW` (an RFC 3339
/// instant, such as `2027-03-28T00:03:00Z`) moves every test's "now" there, and time then runs
/// on from it. CI runs the date-sensitive suites with it set just after and just before UK
/// midnight and on both British Summer Time change days, so no test depends on the hour it runs.
fn test_clock_offset() -> Duration {
    static OFFSET: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("CALDICOTT_TEST_NOW")
            .ok()
            .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
            .map_or_else(Duration::zero, |t| t.with_timezone(&Utc) - Utc::now())
    })
}

/// "Now" for tests: the system clock, moved by `CALDICOTT_TEST_NOW` when it is set.
pub fn now() -> DateTime<Utc> {
    Utc::now() + test_clock_offset()
}

/// The ASID of every test practice's GP Connect endpoint.
pub const FIXTURE_ASID: &str = "200000000359";

/// Today's UK date on the test clock.
pub fn today() -> NaiveDate {
    caldicott_core::uk::uk_date(now())
}

/// The clock for an `App` under test (see [`now`]).
pub fn test_clock() -> crate::Clock {
    std::sync::Arc::new(now)
}

fn unique() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed) + (new_id().as_u128() % 100_000) as u32 * 100
}

pub async fn practice(app: &App) -> AppResult<TestPractice> {
    let n = unique();
    let practice = create_practice(
        app,
        NewPractice {
            ods_code: format!("T{:07}", n % 10_000_000),
            name: format!("Test Surgery {n}"),
            telephone: "01632 960000".into(),
            address: PostalAddress { lines: vec!["1 Test Street".into()], postcode: "TE1 1ST".into() },
            online: OnlineServicesSettings {
                prospective_switch_on: Some(date(2023, 10, 31)),
                gp_connect_asid: caldicott_core::practice::Asid::parse(FIXTURE_ASID).ok(),
                ..Default::default()
            },
        },
        actor(),
    )
    .await?;
    let mut clinician = None;
    let mut issued = Vec::new();
    for (user, role) in [
        ("clinician", Role::Clinician),
        ("admin", Role::Administrator),
        ("reception", Role::Receptionist),
        ("manager", Role::PracticeManager),
        ("analyst", Role::IcbAnalyst),
    ] {
        let s = create_staff(app, practice.id, user, &format!("Test {user}"), role, "a long test password", actor())
            .await?;
        if role == Role::Clinician {
            clinician = Some(StaffPrincipal { practice: practice.id, staff: s.id, name: s.display_name.clone(), role });
        }
        issued.push(issue_token(app, practice.ods_code.as_str(), user, "test", Duration::days(1)).await?.secret);
    }
    let clinician = clinician.ok_or_else(|| crate::AppError::Internal("no clinician".into()))?;
    let [clinician_token, admin_token, receptionist_token, manager_token, analyst_token]: [String; 5] =
        issued.try_into().map_err(|_| crate::AppError::Internal("a token was not issued".into()))?;
    Ok(TestPractice {
        practice,
        clinician,
        clinician_token,
        admin_token,
        receptionist_token,
        manager_token,
        analyst_token,
    })
}

/// An adult registered since 2000 with a P9 NHS login account (so automatic access applies).
pub async fn adult(app: &App, practice: PracticeId) -> AppResult<Patient> {
    let p = person(practice, date(1980, 5, 17));
    app.store.create_patient(practice, &p, &audit(Action::PatientCreate, Some(p.id))).await?;
    let account = OnlineAccount {
        id: AccountId::from_uuid(new_id()),
        holder: p.id,
        kind: AccountKind::NhsLogin,
        identity: IdentityLevel::P9,
        created_at: time(2024, 1, 1),
    };
    app.store.create_online_account(practice, &account, &audit(Action::OnlineAccountCreate, Some(p.id))).await?;
    Ok(p)
}

pub fn person(practice: PracticeId, dob: NaiveDate) -> Patient {
    let nhs = (unique()..)
        .find_map(|k| NhsNumber::from_first_nine(999_000_000 + k % 1_000_000))
        .unwrap_or_else(unreachable_nhs);
    Patient {
        id: PatientId::from_uuid(new_id()),
        practice,
        nhs_number: nhs,
        name: PersonName { title: None, given: "Test".into(), family: "Patient".into() },
        date_of_birth: dob,
        sex: Sex::Unknown,
        contact: ContactDetails::default(),
        preferred_contact: PreferredContactMethod::Unknown,
        registrations: vec![Registration::since(date(2000, 1, 1))],
        date_of_death: None,
    }
}

fn unreachable_nhs() -> NhsNumber {
    NhsNumber::from_first_nine(999_000_001)
        .unwrap_or_else(|| NhsNumber::parse("9990000018").unwrap_or_else(|_| std::process::abort()))
}

pub fn audit(action: Action, patient: Option<PatientId>) -> AuditRecord {
    AuditRecord::new(
        AuditEventId::from_uuid(new_id()),
        now(),
        actor(),
        patient,
        action,
        "fixture",
        Outcome::Success,
        "",
    )
}

/// Writes `entries` into the practice's record store as the fixture does: one `EntryCreate`
/// audit event, naming `patient` or no patient.
pub async fn add_entries(
    app: &App,
    practice: PracticeId,
    patient: Option<PatientId>,
    entries: &[Entry],
) -> AppResult<()> {
    Ok(app.store_for_tests().add_entries(practice, entries, &audit(Action::EntryCreate, patient)).await?)
}

/// A final consultation entered at `entered`, visible online.
pub fn consultation(patient: &Patient, entered: DateTime<Utc>, text: &str) -> Entry {
    Entry {
        id: EntryId::from_uuid(new_id()),
        patient: patient.id,
        event_date: entered.date_naive(),
        entered_at: entered,
        author: Author { staff: None, name: "Dr Test".into() },
        origin: Origin::Native,
        code: None,
        body: EntryBody::Consultation { text: text.into(), status: ConsultationStatus::Final },
        visibility: OnlineVisibility::Visible,
        nopat: false,
        safeguarding: false,
        confidential: false,
        superseded: None,
    }
}

/// Entries that must never reach an online viewer, one of each way of being withheld (R8),
/// all entered after the switch-on date; their texts contain `marker`.
pub fn withheld_entries(patient: &Patient, around: DateTime<Utc>, marker: &str) -> Vec<Entry> {
    let mut hidden = consultation(patient, around, &format!("{marker} hidden third-party text"));
    hidden.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::ThirdParty, "names a relative", "Dr Test", around)
            .unwrap_or_else(|_| std::process::abort()),
    );
    let mut draft = consultation(patient, around + Duration::minutes(1), &format!("{marker} draft"));
    draft.body = EntryBody::Consultation { text: format!("{marker} draft"), status: ConsultationStatus::Draft };
    let mut nopat = consultation(patient, around + Duration::minutes(2), &format!("{marker} nopat"));
    nopat.nopat = true;
    let mut safeguarding = consultation(patient, around + Duration::minutes(3), &format!("{marker} safeguarding"));
    safeguarding.safeguarding = true;
    let mut unfiled = consultation(patient, around + Duration::minutes(4), "");
    unfiled.body = EntryBody::TestResult {
        test: format!("{marker} PSA"),
        value: "9.1".into(),
        unit: "ug/L".into(),
        range: "<4".into(),
        abnormal: true,
        filing: Filing::Unfiled,
    };
    let mut unreviewed = consultation(patient, around + Duration::minutes(5), "");
    unreviewed.body = EntryBody::Document {
        title: format!("{marker} letter"),
        summary: String::new(),
        filing: Filing::Filed,
        review: DocumentReview::Unreviewed,
    };
    let mut admin = consultation(patient, around + Duration::minutes(6), "");
    admin.body = EntryBody::AdminMessage {
        subject: format!("{marker} admin"),
        text: String::new(),
        channel: AdminChannel::Email,
    };
    let mut diary = consultation(patient, around + Duration::minutes(7), "");
    diary.body = EntryBody::Diary { text: format!("{marker} diary"), due: date(2030, 1, 1) };
    vec![hidden, draft, nopat, safeguarding, unfiled, unreviewed, admin, diary]
}

/// A FHIR R4 Bundle carrying a record from another practice, as GP2GP-to-FHIR converters write
/// it: one resource of each kind caldicott imports, some labelled shareable, some `NOPAT`, some
/// with no label at all. Every clinical text holds `marker` so that tests can look for leaks;
/// the hidden ones also hold "HIDDEN".
pub fn transfer_bundle(
    nhs: &str,
    birth_date: &str,
    given: &str,
    family: &str,
    from_ods: &str,
    marker: &str,
) -> serde_json::Value {
    use serde_json::json;
    let shareable =
        json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]});
    let nopat = json!({"security": [{"system": caldicott_fhir::read::ACT_CODE_SYSTEM, "code": "NOPAT", "display": "no disclosure to patient, family or caregivers without attending provider's authorization"}]});
    let sct = |code: &str, display: &str| json!({"coding": [{"system": caldicott_fhir::read::SNOMED_SYSTEM, "code": code, "display": display}], "text": display});
    let entry =
        |id: &str, resource: serde_json::Value| json!({"fullUrl": format!("urn:uuid:{id}"), "resource": resource});
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Bundle"]},
        "entry": [
            entry("0b6c3c7e-0000-4000-8000-000000000001", json!({
                "resourceType": "Patient", "id": "patient",
                "identifier": [{"system": caldicott_fhir::read::NHS_NUMBER_SYSTEM, "value": nhs}],
                "name": [{"use": "official", "family": family, "given": [given]}],
                "gender": "female", "birthDate": birth_date,
                "address": [{"use": "home", "line": ["4 Orchard Way"], "city": "Riverton", "postalCode": "RV2 4OW"}],
                "telecom": [{"system": "phone", "use": "mobile", "value": "07700 900456"}, {"system": "email", "value": "transfer@example.com"}],
                "generalPractitioner": [{"reference": "urn:uuid:0b6c3c7e-0000-4000-8000-000000000002"}]
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000002", json!({
                "resourceType": "Organization", "id": "sender",
                "identifier": [{"system": caldicott_fhir::read::ODS_SYSTEM, "value": from_ods}],
                "name": "Hillside Medical Centre"
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000003", json!({
                "resourceType": "Practitioner", "id": "gp",
                "name": [{"family": "Okafor", "given": ["Ada"], "prefix": ["Dr"]}]
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000010", json!({
                "resourceType": "Encounter", "id": "c1", "meta": shareable, "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "period": {"start": "2019-05-03T10:15:00+01:00"},
                "participant": [{"individual": {"reference": "urn:uuid:0b6c3c7e-0000-4000-8000-000000000003"}}],
                "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Sore throat for 3 days &amp; mild fever. {marker} consultation.</p></div>")}
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000011", json!({
                "resourceType": "Encounter", "id": "c2", "meta": nopat, "status": "finished",
                "period": {"start": "2020-02-11T09:00:00Z"},
                "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>HIDDEN {marker}: partner's history discussed.</p></div>")}
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000012", json!({
                "resourceType": "Condition", "id": "p1", "clinicalStatus": {"coding": [{"code": "active"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
                "code": sct("195967001", &format!("Asthma HIDDEN {marker}")),
                "onsetDateTime": "2015-06", "recordedDate": "2015-06-20"
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000013", json!({
                "resourceType": "Observation", "id": "r1", "meta": shareable, "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": sct("1022431000000105", &format!("Haemoglobin {marker}")),
                "effectiveDateTime": "2021-09-14", "issued": "2021-09-15T08:00:00Z",
                "valueQuantity": {"value": 128, "unit": "g/L"},
                "referenceRange": [{"low": {"value": 115}, "high": {"value": 165}}]
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000014", json!({
                "resourceType": "MedicationRequest", "id": "m1", "meta": shareable, "status": "active", "intent": "plan",
                "courseOfTherapyType": {"coding": [{"code": "continuous"}]},
                "medicationCodeableConcept": {"text": format!("Salbutamol 100micrograms/dose inhaler {marker}")},
                "authoredOn": "2020-03-01", "dosageInstruction": [{"text": "Two puffs when required"}],
                "dispenseRequest": {"quantity": {"value": 1, "unit": "inhaler"}}
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000015", json!({
                "resourceType": "MedicationRequest", "id": "m2", "meta": shareable, "status": "completed", "intent": "order",
                "basedOn": [{"reference": "urn:uuid:0b6c3c7e-0000-4000-8000-000000000014"}],
                "medicationCodeableConcept": {"text": format!("Salbutamol 100micrograms/dose inhaler {marker}")},
                "authoredOn": "2021-01-10", "dosageInstruction": [{"text": "Two puffs when required"}],
                "dispenseRequest": {"quantity": {"value": 1, "unit": "inhaler"}}
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000016", json!({
                "resourceType": "AllergyIntolerance", "id": "a1", "meta": shareable,
                "code": sct("91936005", &format!("Penicillin {marker}")),
                "reaction": [{"manifestation": [sct("271807003", "Rash")]}],
                "recordedDate": "2012-04-02"
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000017", json!({
                "resourceType": "Immunization", "id": "i1", "status": "completed",
                "vaccineCode": {"text": format!("Influenza vaccine HIDDEN {marker}")},
                "occurrenceDateTime": "2022-10-05"
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000018", json!({
                "resourceType": "DocumentReference", "id": "d1", "meta": nopat, "status": "current",
                "type": {"text": "Letter"}, "date": "2022-11-30T12:00:00Z",
                "description": format!("HIDDEN {marker} letter from social services"),
                "content": [{"attachment": {"contentType": "application/pdf", "title": "Strategy meeting minutes"}}]
            })),
            entry("0b6c3c7e-0000-4000-8000-000000000019", json!({
                "resourceType": "Provenance", "id": "prov", "recorded": "2026-11-01T00:00:00Z"
            }))
        ]
    })
}

/// A proxy link: `proxy` acts for `patient` with appointments, prescriptions and record access
/// at `record` from `granted`.
pub async fn proxy_link(
    app: &App,
    practice: PracticeId,
    patient: &Patient,
    proxy: &Patient,
    record: AccessLevel,
    granted: NaiveDate,
) -> AppResult<ProxyLink> {
    let link = ProxyLink {
        id: ProxyLinkId::from_uuid(new_id()),
        patient: patient.id,
        proxy: proxy.id,
        relationship: "Mother".into(),
        basis: ProxyBasis::ChildNotCompetent,
        scope: ProxyScope {
            appointments: true,
            prescriptions: true,
            demographics: true,
            record,
            record_from: RecordFrom::Date(granted),
        },
        granted_on: granted,
        decided_by: "Dr Test".into(),
        ends_on: None,
        status: ProxyStatus::Active,
    };
    app.store.create_proxy_link(practice, &link, &audit(Action::ProxyLinkCreate, Some(patient.id))).await?;
    Ok(link)
}

/// A local patient account made the way a patient makes one: staff issue a letter at
/// `identity`, the patient signs up with it. Returns the username, the password and the session
/// cookie of the sign-up.
pub async fn patient_account(
    app: &App,
    staff: &StaffPrincipal,
    patient: &Patient,
    identity: &str,
) -> AppResult<(String, String, String)> {
    let letter = app.issue_linkage(staff, patient.nhs_number.as_str(), identity).await?;
    let username = format!("p{}", unique());
    let password = "a patient password".to_owned();
    let cookie = app
        .patient_sign_up(&crate::patient_services::SignUp {
            ods_code: letter.ods_code,
            account_id: letter.account_id,
            linkage_key: letter.linkage_key,
            family: patient.name.family.clone(),
            birth_day: patient.date_of_birth.format("%d").to_string(),
            birth_month: patient.date_of_birth.format("%m").to_string(),
            birth_year: patient.date_of_birth.format("%Y").to_string(),
            username: username.clone(),
            password: password.clone(),
        })
        .await?
        .map_err(|p| crate::AppError::BadRequest(format!("{p:?}")))?;
    Ok((username, password, cookie))
}

/// An app registered by the practice's administrator and linked to `patient` with a P9 letter:
/// (client id, client secret, the link's token).
pub async fn linked_app(app: &App, tp: &TestPractice, patient: &Patient) -> AppResult<(String, String, String)> {
    let admin = crate::auth::authenticate(app, &tp.admin_token).await?;
    let reception = crate::auth::authenticate(app, &tp.receptionist_token).await?;
    let (registered, secret) = app.register_app(&admin, "Health Wallet", "Wallet Ltd", "").await?;
    let letter = app.issue_linkage(&reception, patient.nhs_number.as_str(), "P9").await?;
    let request = crate::apps::LinkRequest {
        ods_code: letter.ods_code,
        account_id: letter.account_id,
        linkage_key: letter.linkage_key,
        family_name: patient.name.family.clone(),
        birth_date: patient.date_of_birth.to_string(),
    };
    let (_, token) = app.link_app(&registered.client_id, &secret, &request).await?;
    Ok((registered.client_id, secret, token))
}

/// The clinic form as a receptionist fills it in: the practice's clinician on `day`, from
/// `start` to `end` ("HH:MM") in GP face-to-face slots of `minutes`, with this online share (in
/// percent, as typed), offered to other care settings too.
pub fn clinic_form(
    tp: &TestPractice,
    day: NaiveDate,
    (start, end): (&str, &str),
    minutes: u16,
    share: &str,
) -> crate::appointments::NewClinic {
    use chrono::Datelike;
    crate::appointments::NewClinic {
        clinician: tp.clinician.staff.to_string(),
        day: day.day().to_string(),
        month: day.month().to_string(),
        year: day.year().to_string(),
        start: start.into(),
        end: end.into(),
        slot_minutes: minutes.to_string(),
        slot_type: "gp_face_to_face".into(),
        online_share: share.into(),
        others_bookable: true,
        others_types: Vec::new(),
        others_ods: String::new(),
        others_limit: String::new(),
        others_release_hours: String::new(),
        location: "Room 1".into(),
    }
}

/// A clinic of the practice's clinician, `days` from today, from `start` to `end` ("HH:MM") in
/// slots of `minutes`, bookable online; made by its receptionist, as on the appointment book.
pub async fn online_clinic(
    app: &App,
    tp: &TestPractice,
    days: i64,
    hours: (&str, &str),
    minutes: u16,
) -> AppResult<()> {
    let reception = crate::auth::authenticate(app, &tp.receptionist_token).await?;
    // `days` UK days from today (not 24-hour periods from now, which near midnight on the day
    // the clocks change lands on another date).
    let day = caldicott_core::uk::uk_date(now()) + Duration::days(days);
    app.create_clinic(&reception, &clinic_form(tp, day, hours, minutes, "100"))
        .await?
        .map(|_| ())
        .map_err(|problems| crate::AppError::BadRequest(format!("{problems:?}")))
}

/// Every audit action recorded at a practice so far, oldest first ("record.view_online", …).
pub async fn audit_actions(app: &App, practice: PracticeId) -> Vec<String> {
    app.store
        .audit_events(practice, 0, 1_000_000)
        .await
        .map(|events| events.into_iter().map(|e| e.action).collect())
        .unwrap_or_default()
}

/// FHIR forbids empty arrays, objects and strings: an element with nothing in it is left out.
/// Walks a whole answer and stops the test at the first empty one, naming where it is.
pub fn no_empty_arrays(v: &serde_json::Value) {
    use serde_json::Value;
    fn walk(v: &Value, at: &str, whole: &Value) {
        match v {
            Value::Array(a) => {
                assert!(!a.is_empty(), "an empty array at {at}: {whole}");
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{at}[{i}]"), whole);
                }
            }
            Value::Object(o) => {
                assert!(!o.is_empty(), "an empty object at {at}: {whole}");
                for (k, x) in o {
                    walk(x, &format!("{at}.{k}"), whole);
                }
            }
            Value::String(s) => assert!(!s.is_empty(), "an empty string at {at}: {whole}"),
            _ => {}
        }
    }
    walk(v, "", v);
}
