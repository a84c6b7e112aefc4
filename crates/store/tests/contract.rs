#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The store contract: every case runs against SQLite and against PostgreSQL.

use caldicott_core::access::*;
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::*;
use caldicott_core::snomed::{Coding, ConceptId, ENHANCED_REVIEW_INDICATED};
use caldicott_core::staff::*;
use caldicott_core::NhsNumber;
use caldicott_store::test_support::{self, TestStore};
use caldicott_store::*;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use std::sync::Arc;
use uuid::Uuid;

fn id() -> Uuid {
    Uuid::now_v7()
}
fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}
fn t(y: i32, m: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, day, 9, 30, 0).unwrap()
}

fn audit(action: Action, patient: Option<PatientId>) -> AuditRecord {
    AuditRecord::new(
        AuditEventId::from_uuid(id()),
        Utc::now(),
        Actor { kind: ActorKind::Staff, id: "tester".into(), role: "clinician".into() },
        patient,
        action,
        "test",
        Outcome::Success,
        "",
    )
}

fn unique_ods() -> OdsCode {
    let n = id().as_u128() % 100_000;
    OdsCode::parse(&format!("T{n:05}{}", id().simple().to_string().chars().last().unwrap_or('0'))).unwrap()
}

async fn practice(store: &dyn Store) -> Practice {
    let p = Practice {
        id: PracticeId::from_uuid(id()),
        ods_code: unique_ods(),
        name: "Riverside Surgery".into(),
        telephone: "01632 960000".into(),
        address: PostalAddress { lines: vec!["1 High Street".into(), "Exampleton".into()], postcode: "EX1 1AA".into() },
        online: OnlineServicesSettings { prospective_switch_on: Some(d(2023, 10, 31)), ..Default::default() },
    };
    store.create_practice(&p, &audit(Action::PracticeCreate, None)).await.unwrap();
    p
}

fn nhs(n: u32) -> NhsNumber {
    (n..).find_map(|k| NhsNumber::from_first_nine(999_000_000 + k % 1_000_000)).unwrap()
}

fn patient(practice: &Practice, n: u32) -> Patient {
    Patient {
        id: PatientId::from_uuid(id()),
        practice: practice.id,
        nhs_number: nhs(n),
        name: PersonName { title: Some("Ms".into()), given: "Ada".into(), family: "Lovelace".into() },
        date_of_birth: d(1985, 12, 10),
        sex: Sex::Female,
        contact: ContactDetails {
            email: Some("ada@example.org".into()),
            mobile: Some("07700 900123".into()),
            address: PostalAddress { lines: vec!["2 Mill Lane".into()], postcode: "EX1 2BB".into() },
        },
        preferred_contact: PreferredContactMethod::Sms,
        registrations: vec![
            Registration {
                kind: RegistrationKind::Registered,
                started: d(1990, 1, 1),
                ended: Some(d(2010, 1, 1)),
                previous_practice: None,
            },
            Registration {
                kind: RegistrationKind::TransferredIn,
                started: d(2015, 3, 1),
                ended: None,
                previous_practice: Some("B82002".into()),
            },
        ],
        date_of_death: None,
    }
}

fn consultation(p: &Patient, entered: DateTime<Utc>, text: &str) -> Entry {
    Entry {
        id: EntryId::from_uuid(id()),
        patient: p.id,
        event_date: entered.date_naive(),
        entered_at: entered,
        author: Author { staff: None, name: "Dr Grace Hopper".into() },
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

// ---- The contract -------------------------------------------------------------------------

async fn practices_round_trip_and_start_an_audit_chain(store: &dyn Store) {
    let p = practice(store).await;
    assert_eq!(store.practice(p.id).await.unwrap().as_ref(), Some(&p));
    assert_eq!(store.practice_by_ods(&p.ods_code).await.unwrap().as_ref(), Some(&p));
    assert_eq!(store.audit_head(p.id).await.unwrap().count, 1);
    let dup = Practice { id: PracticeId::from_uuid(id()), ..p.clone() };
    assert!(matches!(
        store.create_practice(&dup, &audit(Action::PracticeCreate, None)).await,
        Err(StoreError::Conflict(Conflict::OdsCodeTaken))
    ));
    let settings = OnlineServicesSettings {
        paused: true,
        default_level: AccessLevel::Detailed,
        proxy_review_age: ProxyReviewAge::new(13).unwrap(),
        ..p.online.clone()
    };
    store.set_online_services(p.id, &settings, &audit(Action::PracticeSettingsChange, None)).await.unwrap();
    assert_eq!(store.practice(p.id).await.unwrap().unwrap().online, settings);
    assert_eq!(test_support::verified_chain(store, p.id).await.unwrap(), 2);
}

async fn patients_round_trip_and_stay_within_their_practice(store: &dyn Store) {
    let a = practice(store).await;
    let b = practice(store).await;
    let pat = patient(&a, 1);
    store.create_patient(a.id, &pat, &audit(Action::PatientCreate, Some(pat.id))).await.unwrap();
    assert_eq!(store.patient(a.id, pat.id).await.unwrap().as_ref(), Some(&pat));
    assert_eq!(store.patient_by_nhs_number(a.id, &pat.nhs_number).await.unwrap().as_ref(), Some(&pat));
    // Another practice cannot reach it by id or NHS number.
    assert_eq!(store.patient(b.id, pat.id).await.unwrap(), None);
    assert_eq!(store.patient_by_nhs_number(b.id, &pat.nhs_number).await.unwrap(), None);
    // The same NHS number may be registered at another practice, but not twice at one.
    let again = Patient { id: PatientId::from_uuid(id()), ..pat.clone() };
    let err = store.create_patient(a.id, &again, &audit(Action::PatientCreate, None)).await.unwrap_err();
    // The conflict is named by what it means, on both databases, and says so in plain words.
    assert!(matches!(err, StoreError::Conflict(Conflict::NhsNumberRegistered)), "{err:?}");
    assert_eq!(err.to_string(), "a patient with that NHS number is already registered at this practice");
    let elsewhere = Patient { id: PatientId::from_uuid(id()), practice: b.id, ..pat.clone() };
    store.create_patient(b.id, &elsewhere, &audit(Action::PatientCreate, None)).await.unwrap();
    // A patient row can't be written into another practice.
    let mismatched = Patient { id: PatientId::from_uuid(id()), nhs_number: nhs(2), ..pat.clone() };
    assert!(store.create_patient(b.id, &mismatched, &audit(Action::PatientCreate, None)).await.is_err());
    assert_eq!(store.patient_count(a.id).await.unwrap(), 1);
    assert_eq!(store.patient_count(b.id).await.unwrap(), 1);
}

async fn patient_search_matches_every_criterion_within_the_practice(store: &dyn Store) {
    let p = practice(store).await;
    let ada = patient(&p, 30);
    let mut grace = patient(&p, 31);
    grace.name = PersonName { title: None, given: "Grace".into(), family: "Hopper".into() };
    grace.date_of_birth = d(1906, 12, 9);
    grace.contact.address.postcode = "ab1 2cd".into();
    for x in [&ada, &grace] {
        store.create_patient(p.id, x, &audit(Action::PatientCreate, Some(x.id))).await.unwrap();
    }
    let find = |q: PatientSearch| async move {
        store.search_patients(p.id, &q, 50).await.unwrap().into_iter().map(|l| l.id).collect::<Vec<_>>()
    };
    assert_eq!(
        find(PatientSearch { nhs_number: Some(ada.nhs_number.clone()), ..Default::default() }).await,
        vec![ada.id]
    );
    assert_eq!(find(PatientSearch { names: vec!["hop".into()], ..Default::default() }).await, vec![grace.id]);
    assert_eq!(
        find(PatientSearch { names: vec!["grace".into(), "hopper".into()], ..Default::default() }).await,
        vec![grace.id]
    );
    assert_eq!(
        find(PatientSearch { names: vec!["%".into()], ..Default::default() }).await.len(),
        2,
        "wildcards are not special"
    );
    assert_eq!(find(PatientSearch { date_of_birth: Some(d(1906, 12, 9)), ..Default::default() }).await, vec![grace.id]);
    assert_eq!(find(PatientSearch { postcode: Some("AB12CD".into()), ..Default::default() }).await, vec![grace.id]);
    assert!(find(PatientSearch {
        names: vec!["grace".into()],
        date_of_birth: Some(d(2000, 1, 1)),
        ..Default::default()
    })
    .await
    .is_empty());
    let other = practice(store).await;
    assert!(store
        .search_patients(other.id, &PatientSearch { names: vec!["hopper".into()], ..Default::default() }, 50)
        .await
        .unwrap()
        .is_empty());
}

async fn recently_viewed_patients_come_from_the_audit_log(store: &dyn Store) {
    let p = practice(store).await;
    let (a, b) = (patient(&p, 50), patient(&p, 51));
    for x in [&a, &b] {
        store.create_patient(p.id, x, &audit(Action::PatientCreate, Some(x.id))).await.unwrap();
    }
    let me = StaffId::from_uuid(id());
    let view = |patient: PatientId, by: StaffId| {
        let mut r = audit(Action::RecordViewStaff, Some(patient));
        r.actor.id = by.to_string();
        (p.id, r)
    };
    let someone_else = StaffId::from_uuid(id());
    store.append_audit(&[view(a.id, me), view(b.id, me), view(a.id, me), view(b.id, someone_else)]).await.unwrap();
    let recent: Vec<PatientId> = store.recently_viewed(p.id, me, 10).await.unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(recent, vec![a.id, b.id], "newest first, each once");
    assert_eq!(store.recently_viewed(p.id, me, 1).await.unwrap().len(), 1);
    let other = practice(store).await;
    assert!(store.recently_viewed(other.id, me, 10).await.unwrap().is_empty());
}

async fn entries_page_newest_first_by_section_and_cursor(store: &dyn Store) {
    let p = practice(store).await;
    let pat = patient(&p, 3);
    store.create_patient(p.id, &pat, &audit(Action::PatientCreate, Some(pat.id))).await.unwrap();
    let mut entries: Vec<Entry> =
        (0..25).map(|i| consultation(&pat, t(2024, 1, 1) + Duration::days(i), &format!("visit {i}"))).collect();
    let mut allergy = consultation(&pat, t(2024, 6, 1), "");
    allergy.body = EntryBody::Allergy { substance: "Penicillin".into(), reaction: "Rash".into() };
    allergy.code =
        Some(Coding { concept: ConceptId::parse("91936005").unwrap(), term: "Allergy to penicillin".into() });
    entries.push(allergy.clone());
    store.add_entries(p.id, &entries, &audit(Action::EntryCreate, Some(pat.id))).await.unwrap();
    assert_eq!(store.entry_count(p.id, pat.id).await.unwrap(), 26);
    assert_eq!(store.entry(p.id, allergy.id).await.unwrap().as_ref(), Some(&allergy));

    let first = store.entries(p.id, pat.id, EntryQuery { section: None, after: None, limit: 10 }).await.unwrap();
    assert_eq!(first[0], allergy);
    assert_eq!(first[1].body, EntryBody::Consultation { text: "visit 24".into(), status: ConsultationStatus::Final });
    let mut seen: Vec<EntryId> = first.iter().map(|e| e.id).collect();
    let mut cursor = first.last().map(EntryCursor::of);
    while let Some(after) = cursor {
        let page =
            store.entries(p.id, pat.id, EntryQuery { section: None, after: Some(after), limit: 10 }).await.unwrap();
        seen.extend(page.iter().map(|e| e.id));
        cursor = if page.len() == 10 { page.last().map(EntryCursor::of) } else { None };
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 26, "paging visits every entry exactly once");

    let allergies = store
        .entries(p.id, pat.id, EntryQuery { section: Some(Section::Allergies), after: None, limit: 50 })
        .await
        .unwrap();
    assert_eq!(allergies, vec![allergy.clone()]);
    // Another practice sees none of it.
    let other = practice(store).await;
    assert_eq!(store.entry(other.id, allergy.id).await.unwrap(), None);
    assert!(store
        .entries(other.id, pat.id, EntryQuery { section: None, after: None, limit: 50 })
        .await
        .unwrap()
        .is_empty());
}

async fn hiding_an_entry_is_atomic_with_its_audit_event(store: &dyn Store) {
    // R11
    let p = practice(store).await;
    let pat = patient(&p, 4);
    store.create_patient(p.id, &pat, &audit(Action::PatientCreate, Some(pat.id))).await.unwrap();
    let e = consultation(&pat, t(2025, 1, 1), "Discussed partner's behaviour");
    store.add_entries(p.id, std::slice::from_ref(&e), &audit(Action::EntryCreate, Some(pat.id))).await.unwrap();
    let before = store.audit_head(p.id).await.unwrap();
    let hidden = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::ThirdParty, "Names partner", "Dr Hopper", t(2025, 1, 2)).unwrap(),
    );
    store
        .set_entries_visibility(p.id, &[(e.id, hidden.clone(), audit(Action::EntryVisibilityChange, Some(pat.id)))])
        .await
        .unwrap();
    assert_eq!(store.entry(p.id, e.id).await.unwrap().unwrap().visibility, hidden);
    assert_eq!(store.audit_head(p.id).await.unwrap().count, before.count + 1);
    let trail = store.audit_for_patient(p.id, pat.id, 10).await.unwrap();
    assert_eq!(trail[0].action, "entry.visibility_change");

    // An unknown entry (or one of another practice) changes nothing and logs nothing.
    let other = practice(store).await;
    let head = store.audit_head(p.id).await.unwrap();
    // A batch with one unknown entry changes none of them.
    let missing = store
        .set_entries_visibility(
            p.id,
            &[
                (e.id, OnlineVisibility::Visible, audit(Action::EntryVisibilityChange, None)),
                (EntryId::from_uuid(id()), hidden.clone(), audit(Action::EntryVisibilityChange, None)),
            ],
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
    let cross = store
        .set_entries_visibility(
            other.id,
            &[(e.id, OnlineVisibility::Visible, audit(Action::EntryVisibilityChange, None))],
        )
        .await;
    assert!(matches!(cross, Err(StoreError::NotFound(_))));
    assert_eq!(store.audit_head(p.id).await.unwrap(), head);
    assert_eq!(store.entry(p.id, e.id).await.unwrap().unwrap().visibility, hidden);
    store
        .set_entries_visibility(
            p.id,
            &[(e.id, OnlineVisibility::Visible, audit(Action::EntryVisibilityChange, Some(pat.id)))],
        )
        .await
        .unwrap();
    assert_eq!(store.entry(p.id, e.id).await.unwrap().unwrap().visibility, OnlineVisibility::Visible);
    assert_eq!(test_support::verified_chain(store, p.id).await.unwrap(), head.count + 1);
}

async fn results_and_documents_wait_in_the_filing_queue_until_filed(store: &dyn Store) {
    let p = practice(store).await;
    let pat = patient(&p, 40);
    store.create_patient(p.id, &pat, &audit(Action::PatientCreate, Some(pat.id))).await.unwrap();
    let mut result = consultation(&pat, t(2025, 3, 1), "");
    result.body = EntryBody::TestResult {
        test: "PSA".into(),
        value: "9.1".into(),
        unit: "ug/L".into(),
        range: "<4".into(),
        abnormal: true,
        filing: Filing::Unfiled,
    };
    let mut letter = consultation(&pat, t(2025, 3, 2), "");
    letter.body = EntryBody::Document {
        title: "Clinic letter".into(),
        summary: String::new(),
        filing: Filing::Filed,
        review: DocumentReview::Unreviewed,
    };
    let seen = consultation(&pat, t(2025, 3, 3), "Not for the queue");
    store
        .add_entries(p.id, &[result.clone(), letter.clone(), seen], &audit(Action::EntryCreate, Some(pat.id)))
        .await
        .unwrap();
    let queue = store.filing_queue(p.id, 50).await.unwrap();
    assert_eq!(queue.iter().map(|(e, _)| e.id).collect::<Vec<_>>(), vec![result.id, letter.id]);
    assert_eq!(queue[0].1.nhs_number, pat.nhs_number);
    let other = practice(store).await;
    assert!(store.filing_queue(other.id, 50).await.unwrap().is_empty());
    // Filing hidden ("ask before release"): out of the queue, filed, and hidden, in one go.
    let hidden = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::PotentiallyHarmful, "Discuss first", "Dr A", t(2025, 3, 4)).unwrap(),
    );
    let filed = Entry { body: result.filed(), visibility: hidden.clone(), ..result.clone() };
    store.file_entry(p.id, &filed, &audit(Action::EntryFile, Some(pat.id))).await.unwrap();
    let stored = store.entry(p.id, result.id).await.unwrap().unwrap();
    assert_eq!((stored.body.clone(), stored.visibility.clone()), (filed.body.clone(), hidden));
    assert_eq!(store.filing_queue(p.id, 50).await.unwrap().len(), 1);
    // Filing twice fails and changes nothing.
    let head = store.audit_head(p.id).await.unwrap();
    assert!(matches!(
        store.file_entry(p.id, &filed, &audit(Action::EntryFile, Some(pat.id))).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.audit_head(p.id).await.unwrap(), head);
}

async fn a_failed_write_leaves_the_database_as_it_was(store: &dyn Store) {
    let p = practice(store).await;
    let pat = patient(&p, 5);
    store.create_patient(p.id, &pat, &audit(Action::PatientCreate, Some(pat.id))).await.unwrap();
    let head = store.audit_head(p.id).await.unwrap();
    let good = consultation(&pat, t(2025, 1, 1), "fine");
    let ghost = Patient { id: PatientId::from_uuid(id()), ..pat.clone() };
    let orphan = consultation(&ghost, t(2025, 1, 2), "no such patient");
    let err =
        store.add_entries(p.id, &[good.clone(), orphan], &audit(Action::EntryCreate, Some(pat.id))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(Conflict::MissingReference)), "{err:?}");
    assert_eq!(store.entry(p.id, good.id).await.unwrap(), None);
    assert_eq!(store.audit_head(p.id).await.unwrap(), head);
}

async fn the_service_wide_figures_count_each_practice_and_no_patient(store: &dyn Store) {
    // The two queries that span practices (the ICB's exclusion figures and online appointment
    // totals) count each practice's own rows; a practice with none shows noughts.
    use caldicott_core::appointments::*;
    let today = d(2026, 12, 7);
    let (a, b, empty) = (practice(store).await, practice(store).await, practice(store).await);
    let mut held_back = None;
    for (p, n) in [(&a, 40), (&a, 41), (&a, 42), (&b, 43)] {
        let pat = patient(p, n);
        store.create_patient(p.id, &pat, &audit(Action::PatientCreate, Some(pat.id))).await.unwrap();
        held_back.get_or_insert((p.id, pat.clone()));
    }
    let (_, first) = held_back.unwrap();
    let mut code = consultation(&first, t(2025, 2, 1), "");
    code.body = EntryBody::Coded { value: None };
    code.code = Some(Coding {
        concept: ConceptId::parse(ENHANCED_REVIEW_INDICATED).unwrap(),
        term: "Enhanced review indicated".into(),
    });
    store.add_entries(a.id, std::slice::from_ref(&code), &audit(Action::EntryCreate, Some(first.id))).await.unwrap();
    let plan = caldicott_store::governance::ActionPlan {
        owner: "Practice manager".into(),
        review_by: d(2027, 1, 31),
        below_half_by: d(2027, 3, 31),
        progress: String::new(),
        updated_at: t(2026, 12, 1),
        updated_by: "M Clarke".into(),
    };
    store.save_action_plan(b.id, &plan, &audit(Action::ActionPlanChange, None)).await.unwrap();
    let figures = store.service_exclusion_figures(today).await.unwrap();
    let of = |p: &Practice| figures.iter().find(|f| f.practice == p.id).cloned().unwrap();
    assert_eq!((of(&a).figures.registered_16_plus, of(&a).figures.active_104, of(&a).has_action_plan), (3, 1, false));
    assert_eq!((of(&b).figures.registered_16_plus, of(&b).figures.active_104, of(&b).has_action_plan), (1, 0, true));
    assert_eq!((of(&empty).figures.registered_16_plus, of(&empty).figures.active_104), (0, 0));

    // One clinic at practice a: two slots, one online, one booked online and not attended.
    let staff = StaffMember {
        id: StaffId::from_uuid(id()),
        practice: a.id,
        username: "dr.a".into(),
        display_name: "Dr A".into(),
        role: Role::Clinician,
        password_hash: "$argon2id$x".into(),
        active: true,
        sds_user_id: None,
        sign_in: SignInState::default(),
    };
    store.create_staff(a.id, &staff, &audit(Action::StaffCreate, None)).await.unwrap();
    let clinic = Clinic {
        id: ClinicId::from_uuid(id()),
        clinician: staff.id,
        clinician_name: staff.display_name.clone(),
        date: d(2026, 12, 1),
        start: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
        end: chrono::NaiveTime::from_hms_opt(9, 30, 0).unwrap(),
        slot_minutes: 15,
        slot_type: SlotType::GpFaceToFace,
        online_share: 50,
        others_bookable: false,
        others_bookable_by: Default::default(),
        location: "Room 1".into(),
    };
    let slots = clinic.slots(|| SlotId::from_uuid(id())).unwrap();
    store.create_clinic(a.id, &clinic, &slots, &audit(Action::ClinicCreate, None)).await.unwrap();
    let online = slots.iter().find(|s| s.online_bookable).unwrap();
    let mut booking = Appointment::new(
        AppointmentId::from_uuid(id()),
        online.id,
        first.id,
        t(2026, 11, 28),
        "online".into(),
        BookingChannel::Online,
    );
    booking.attendance = Some(Attendance::DidNotAttend);
    store.book_slot(a.id, &booking, &audit(Action::AppointmentBook, Some(first.id))).await.unwrap();
    let (from, to) = (t(2026, 11, 30), t(2026, 12, 7));
    let totals = store.service_capacity(from, to, t(2026, 12, 7)).await.unwrap();
    let at = |p: &Practice| totals.iter().find(|r| r.practice == p.id).map(|r| r.counts).unwrap();
    let mine = at(&a);
    assert_eq!((mine.offered, mine.offered_online, mine.booked_online, mine.did_not_attend_online), (2, 1, 1, 1));
    assert_eq!(at(&b), caldicott_core::capacity::Counts::default());
    let facts = store.capacity_facts(a.id, from, to).await.unwrap();
    assert_eq!(caldicott_core::capacity::count_all(&facts, t(2026, 12, 7)), mine, "one rule, two queries");
    assert!(store.capacity_facts(b.id, from, to).await.unwrap().is_empty(), "within the practice");
}

async fn access_facts_hold_settings_grants_and_104_codes(store: &dyn Store) {
    let p = practice(store).await;
    let pat = patient(&p, 6);
    store.create_patient(p.id, &pat, &audit(Action::PatientCreate, Some(pat.id))).await.unwrap();
    assert_eq!(store.access_facts(p.id, pat.id).await.unwrap(), AccessFacts::default());
    let settings = OnlineAccessSettings {
        grants: vec![
            LevelGrant {
                level: AccessLevel::Detailed,
                from: RecordFrom::Beginning,
                granted_on: d(2020, 1, 1),
                granted_by: "Dr A".into(),
            },
            LevelGrant {
                level: AccessLevel::Full,
                from: RecordFrom::Date(d(2024, 1, 1)),
                granted_on: d(2024, 1, 1),
                granted_by: "Dr B".into(),
            },
        ],
        opted_out: true,
        own_level: Some(OwnLevel { level: AccessLevel::Full, set_on: d(2024, 1, 1), set_by: "Dr B".into() }),
        transfer_review_pending: Some(d(2024, 2, 1)),
    };
    store
        .set_access_settings(p.id, pat.id, &settings, &audit(Action::AccessSettingsChange, Some(pat.id)))
        .await
        .unwrap();
    let mut code = consultation(&pat, t(2025, 2, 1), "");
    code.body = EntryBody::Coded { value: None };
    code.code = Some(Coding {
        concept: ConceptId::parse(ENHANCED_REVIEW_INDICATED).unwrap(),
        term: "Enhanced review indicated".into(),
    });
    store.add_entries(p.id, std::slice::from_ref(&code), &audit(Action::EntryCreate, Some(pat.id))).await.unwrap();
    let facts = store.access_facts(p.id, pat.id).await.unwrap();
    assert_eq!(facts.settings, settings);
    assert_eq!(facts.enhanced_review_codes, vec![(ENHANCED_REVIEW_INDICATED.to_owned(), code.entered_at)]);
    assert!(facts.account_identities.is_empty());
    let account = OnlineAccount {
        id: AccountId::from_uuid(id()),
        holder: pat.id,
        kind: AccountKind::LinkedApp,
        identity: IdentityLevel::P5,
        created_at: t(2025, 3, 1),
    };
    store.create_online_account(p.id, &account, &audit(Action::OnlineAccountCreate, Some(pat.id))).await.unwrap();
    assert_eq!(store.access_facts(p.id, pat.id).await.unwrap().account_identities, vec![IdentityLevel::P5]);
    assert!(matches!(store.access_facts(p.id, PatientId::from_uuid(id())).await, Err(StoreError::NotFound(_))));
    // Two grants at one level are refused whole: the earlier settings stay.
    let twice = OnlineAccessSettings {
        grants: vec![settings.grants[0].clone(), settings.grants[0].clone()],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    assert!(store
        .set_access_settings(p.id, pat.id, &twice, &audit(Action::AccessSettingsChange, Some(pat.id)))
        .await
        .is_err());
    assert_eq!(store.access_facts(p.id, pat.id).await.unwrap().settings, settings);
    // R13: an own level of None (no record access) round-trips, and clearing it returns the
    // patient to automatic access.
    let none = OnlineAccessSettings {
        grants: vec![],
        opted_out: false,
        own_level: Some(OwnLevel { level: AccessLevel::None, set_on: d(2025, 1, 1), set_by: "Dr C".into() }),
        transfer_review_pending: None,
    };
    store.set_access_settings(p.id, pat.id, &none, &audit(Action::AccessSettingsChange, Some(pat.id))).await.unwrap();
    assert_eq!(store.access_facts(p.id, pat.id).await.unwrap().settings, none);
    let cleared = OnlineAccessSettings::default();
    store
        .set_access_settings(p.id, pat.id, &cleared, &audit(Action::AccessSettingsChange, Some(pat.id)))
        .await
        .unwrap();
    assert_eq!(store.access_facts(p.id, pat.id).await.unwrap().settings, cleared);
}

async fn accounts_and_proxy_links_round_trip(store: &dyn Store) {
    let p = practice(store).await;
    let child = Patient { date_of_birth: d(2019, 4, 1), ..patient(&p, 7) };
    let parent = patient(&p, 8);
    for x in [&child, &parent] {
        store.create_patient(p.id, x, &audit(Action::PatientCreate, Some(x.id))).await.unwrap();
    }
    let account = OnlineAccount {
        id: AccountId::from_uuid(id()),
        holder: parent.id,
        kind: AccountKind::NhsLogin,
        identity: IdentityLevel::P9,
        created_at: t(2024, 5, 1),
    };
    store.create_online_account(p.id, &account, &audit(Action::OnlineAccountCreate, Some(parent.id))).await.unwrap();
    assert_eq!(store.online_accounts(p.id, parent.id).await.unwrap(), vec![account]);
    let link = ProxyLink {
        id: ProxyLinkId::from_uuid(id()),
        patient: child.id,
        proxy: parent.id,
        relationship: "Mother".into(),
        basis: ProxyBasis::ChildNotCompetent,
        scope: ProxyScope {
            appointments: true,
            prescriptions: true,
            demographics: true,
            record: AccessLevel::Full,
            record_from: RecordFrom::Date(d(2024, 5, 1)),
        },
        granted_on: d(2024, 5, 1),
        decided_by: "Dr A".into(),
        ends_on: Some(d(2030, 4, 1)),
        status: ProxyStatus::Suspended { since: d(2026, 1, 1), reason: "review".into() },
    };
    store.create_proxy_link(p.id, &link, &audit(Action::ProxyLinkCreate, Some(child.id))).await.unwrap();
    assert_eq!(store.proxy_link(p.id, link.id).await.unwrap().as_ref(), Some(&link));
    assert_eq!(store.proxy_links_for_patient(p.id, child.id).await.unwrap(), vec![link.clone()]);
    let other = practice(store).await;
    assert_eq!(store.proxy_link(other.id, link.id).await.unwrap(), None);
    let own = ProxyLink { id: ProxyLinkId::from_uuid(id()), proxy: child.id, ..link };
    assert!(matches!(
        store.create_proxy_link(p.id, &own, &audit(Action::ProxyLinkCreate, None)).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn staff_and_tokens_round_trip(store: &dyn Store) {
    let p = practice(store).await;
    let s = StaffMember {
        id: StaffId::from_uuid(id()),
        practice: p.id,
        username: "g.hopper".into(),
        display_name: "Dr Grace Hopper".into(),
        role: Role::Clinician,
        password_hash: "$argon2id$x".into(),
        active: true,
        sds_user_id: None,
        sign_in: SignInState::default(),
    };
    store.create_staff(p.id, &s, &audit(Action::StaffCreate, None)).await.unwrap();
    assert_eq!(store.staff_by_username(p.id, "g.hopper").await.unwrap().as_ref(), Some(&s));
    assert_eq!(store.staff_member(p.id, s.id).await.unwrap().as_ref(), Some(&s));
    let dup = StaffMember { id: StaffId::from_uuid(id()), ..s.clone() };
    assert!(matches!(
        store.create_staff(p.id, &dup, &audit(Action::StaffCreate, None)).await,
        Err(StoreError::Conflict(Conflict::UsernameTaken))
    ));
    // The same record written twice is named as such, not as a taken username.
    assert!(matches!(
        store
            .create_staff(
                p.id,
                &StaffMember { username: "someone.else".into(), ..s.clone() },
                &audit(Action::StaffCreate, None)
            )
            .await,
        Err(StoreError::Conflict(Conflict::AlreadyExists))
    ));
    // An SDS user id: recorded with its audit event, one member per id in a practice, cleared.
    let head = store.audit_head(p.id).await.unwrap().count;
    store
        .set_staff_sds_user_id(p.id, s.id, (None, Some("555021935107")), &audit(Action::StaffUpdate, None))
        .await
        .unwrap();
    assert_eq!(store.audit_head(p.id).await.unwrap().count, head + 1);
    // A change made from a stale read (someone else changed it meanwhile) is refused and writes
    // nothing: the audit would name the wrong value replaced.
    assert!(matches!(
        store.set_staff_sds_user_id(p.id, s.id, (None, Some("G13579135")), &audit(Action::StaffUpdate, None)).await,
        Err(StoreError::Conflict(Conflict::Refused(_)))
    ));
    assert_eq!(store.audit_head(p.id).await.unwrap().count, head + 1);
    let kept = store.staff_member(p.id, s.id).await.unwrap().unwrap();
    assert_eq!(kept.sds_user_id.as_deref(), Some("555021935107"));
    let second = StaffMember { id: StaffId::from_uuid(id()), username: "k.johnson".into(), ..s.clone() };
    store.create_staff(p.id, &second, &audit(Action::StaffCreate, None)).await.unwrap();
    let head = store.audit_head(p.id).await.unwrap().count;
    assert!(matches!(
        store
            .set_staff_sds_user_id(p.id, second.id, (None, Some("555021935107")), &audit(Action::StaffUpdate, None))
            .await,
        Err(StoreError::Conflict(Conflict::SdsUserIdTaken))
    ));
    assert_eq!(store.audit_head(p.id).await.unwrap().count, head, "a refused change writes no audit event");
    let elsewhere = practice(store).await;
    assert!(matches!(
        store.set_staff_sds_user_id(elsewhere.id, s.id, (None, None), &audit(Action::StaffUpdate, None)).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .set_staff_sds_user_id(p.id, s.id, (Some("555021935107"), None), &audit(Action::StaffUpdate, None))
        .await
        .unwrap();
    store
        .set_staff_sds_user_id(p.id, second.id, (None, Some("555021935107")), &audit(Action::StaffUpdate, None))
        .await
        .unwrap();
    assert_eq!(store.staff_member(p.id, s.id).await.unwrap().unwrap().sds_user_id, None);
    let token = ApiToken {
        id: TokenId::from_uuid(id()),
        practice: p.id,
        staff: s.id,
        label: "test".into(),
        secret_hash: [7; 32],
        created_at: t(2026, 1, 1),
        expires_at: t(2026, 2, 1),
        revoked_at: None,
    };
    store.create_api_token(p.id, &token, &audit(Action::TokenCreate, None)).await.unwrap();
    assert_eq!(store.api_token(p.id, token.id).await.unwrap().as_ref(), Some(&token));
    let other = practice(store).await;
    assert_eq!(store.api_token(other.id, token.id).await.unwrap(), None);
    store.revoke_api_token(p.id, token.id, t(2026, 1, 5), &audit(Action::TokenRevoke, None)).await.unwrap();
    assert_eq!(store.api_token(p.id, token.id).await.unwrap().unwrap().revoked_at, Some(t(2026, 1, 5)));
    assert!(matches!(
        store.revoke_api_token(p.id, token.id, t(2026, 1, 6), &audit(Action::TokenRevoke, None)).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn sessions_and_sign_in_state_round_trip(store: &dyn Store) {
    let p = practice(store).await;
    let s = StaffMember {
        id: StaffId::from_uuid(id()),
        practice: p.id,
        username: "a.lovelace".into(),
        display_name: "Ada Lovelace".into(),
        role: Role::PracticeManager,
        password_hash: "$argon2id$x".into(),
        active: true,
        sds_user_id: None,
        sign_in: SignInState::default(),
    };
    store.create_staff(p.id, &s, &audit(Action::StaffCreate, None)).await.unwrap();
    let locked = SignInState {
        totp_secret: Some("JBSWY3DPEHPK3PXP".into()),
        totp_confirmed: true,
        failed: 0,
        locked_until: Some(t(2026, 1, 1)),
    };
    store.set_sign_in_state(p.id, s.id, &locked, &audit(Action::SignInFailed, None)).await.unwrap();
    assert_eq!(store.staff_member(p.id, s.id).await.unwrap().unwrap().sign_in, locked);
    let session = StaffSession {
        id: SessionId::from_uuid(id()),
        practice: p.id,
        staff: s.id,
        secret_hash: [3; 32],
        csrf_token: "csrf".into(),
        stage: SessionStage::SecondFactor,
        created_at: t(2026, 1, 1),
        last_seen_at: t(2026, 1, 1),
        expires_at: t(2026, 1, 2),
        ended_at: None,
    };
    store.create_session(p.id, &session, &audit(Action::SignIn, None)).await.unwrap();
    let (found, member) = store.session(p.id, session.id).await.unwrap().unwrap();
    assert_eq!((found.clone(), member.id), (session.clone(), s.id));
    let other = practice(store).await;
    assert!(store.session(other.id, session.id).await.unwrap().is_none());
    store.touch_session(p.id, session.id, t(2026, 1, 1) + Duration::minutes(5)).await.unwrap();
    assert_eq!(
        store.session(p.id, session.id).await.unwrap().unwrap().0.last_seen_at,
        t(2026, 1, 1) + Duration::minutes(5)
    );
    // At sign-in the session is replaced by a new one; the old one can never be used again.
    let signed_in = StaffSession {
        id: SessionId::from_uuid(id()),
        stage: SessionStage::SignedIn,
        secret_hash: [4; 32],
        ..session.clone()
    };
    store.replace_session(p.id, session.id, &signed_in, &audit(Action::SignIn, None)).await.unwrap();
    assert!(store.session(p.id, session.id).await.unwrap().unwrap().0.ended_at.is_some());
    assert!(matches!(
        store.replace_session(p.id, session.id, &signed_in, &audit(Action::SignIn, None)).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .end_session(p.id, signed_in.id, t(2026, 1, 1) + Duration::hours(1), &audit(Action::SignOut, None))
        .await
        .unwrap();
    assert_eq!(
        store.session(p.id, signed_in.id).await.unwrap().unwrap().0.ended_at,
        Some(t(2026, 1, 1) + Duration::hours(1))
    );
}

async fn imports_whole_records_in_one_transaction(store: &dyn Store) {
    let p = practice(store).await;
    let pats: Vec<Patient> = (10..13).map(|n| patient(&p, n)).collect();
    let batch: Vec<PatientImport> = pats
        .iter()
        .map(|x| PatientImport {
            patient: x.clone(),
            access: OnlineAccessSettings {
                grants: vec![],
                opted_out: false,
                own_level: None,
                transfer_review_pending: None,
            },
            accounts: vec![],
            entries: vec![consultation(x, t(2024, 3, 1), "imported")],
            proxies: vec![],
        })
        .collect();
    let audits: Vec<AuditRecord> = pats.iter().map(|x| audit(Action::PatientCreate, Some(x.id))).collect();
    store.import_patients(p.id, &batch, &audits).await.unwrap();
    assert_eq!(store.patient_count(p.id).await.unwrap(), 3);
    assert_eq!(test_support::verified_chain(store, p.id).await.unwrap(), 4);
    // A batch with a duplicate NHS number imports nothing.
    let dup = vec![
        PatientImport { patient: Patient { id: PatientId::from_uuid(id()), ..patient(&p, 20) }, ..batch[0].clone() },
        batch[0].clone(),
    ];
    assert!(store.import_patients(p.id, &dup, &audits[..1]).await.is_err());
    assert_eq!(store.patient_count(p.id).await.unwrap(), 3);
}

async fn concurrent_audit_appends_keep_one_unbroken_chain(store: Arc<dyn Store>) {
    let a = practice(&*store).await;
    let b = practice(&*store).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let (pa, pb) = (a.id, b.id);
        tasks.push(tokio::spawn(async move {
            for j in 0..10 {
                let batch =
                    vec![(pa, audit(Action::RecordViewStaff, None)), (pb, audit(Action::RecordViewOnline, None))];
                let batch = if (i + j) % 2 == 0 { batch } else { batch.into_iter().rev().collect() };
                store.append_audit(&batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(test_support::verified_chain(&*store, a.id).await.unwrap(), 161);
    assert_eq!(test_support::verified_chain(&*store, b.id).await.unwrap(), 161);
}

async fn audit_rows_cannot_be_updated_or_deleted(t: &TestStore) {
    // T16
    use sqlx::Connection;
    let p = practice(&*t.store).await;
    let pid = p.id.as_uuid();
    match t.store.backend() {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", t.url)).await.unwrap();
            let upd = sqlx::query("UPDATE audit_event SET detail = 'x' WHERE practice_id = $1")
                .bind(pid)
                .execute(&mut c)
                .await;
            assert!(upd.unwrap_err().to_string().contains("append-only"));
            let del = sqlx::query("DELETE FROM audit_event WHERE practice_id = $1").bind(pid).execute(&mut c).await;
            assert!(del.unwrap_err().to_string().contains("append-only"));
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&t.url).await.unwrap();
            let upd = sqlx::query("UPDATE audit_event SET detail = 'x' WHERE practice_id = $1")
                .bind(pid)
                .execute(&mut c)
                .await;
            assert!(upd.unwrap_err().to_string().contains("append-only"));
            let del = sqlx::query("DELETE FROM audit_event WHERE practice_id = $1").bind(pid).execute(&mut c).await;
            assert!(del.unwrap_err().to_string().contains("append-only"));
            let trunc = sqlx::query("TRUNCATE audit_event").execute(&mut c).await;
            assert!(trunc.unwrap_err().to_string().contains("append-only"));
        }
    }
    assert_eq!(test_support::verified_chain(&*t.store, p.id).await.unwrap(), 1);
}

/// The account-wide rate (ASVS 2.2.1) in the database: a burst, then one try per interval on
/// the clock given, and a row whose rate has refilled is removed when another starts afresh, so
/// tries at made-up usernames do not pile up.
async fn the_account_wide_rate_refills_on_time_and_forgets_refilled_accounts(t: &TestStore) {
    use caldicott_core::credentials::Subject;
    use sqlx::Connection;
    let p = practice(&*t.store).await;
    let (a, b) = (Subject::staff("made.up.one"), Subject::staff("made.up.two"));
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let every = chrono::Duration::seconds(30);
    let take = |s: &Subject, at| {
        let (store, s) = (t.store.clone(), s.clone());
        async move { store.take_account_try(p.id, &s, at, every, 3).await.unwrap() }
    };
    assert!(take(&a, t0).await && take(&a, t0).await && take(&a, t0).await, "a burst of three");
    assert!(!take(&a, t0).await, "then the rate is spent");
    assert!(!take(&a, t0 + chrono::Duration::seconds(29)).await, "not before the interval");
    assert!(take(&a, t0 + every).await, "one more after it");
    assert!(!take(&a, t0 + every).await);
    let rows = || async {
        let sql = "SELECT COUNT(*) FROM account_tries";
        match t.store.backend() {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", t.url)).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await.unwrap()
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&t.url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await.unwrap()
            }
        }
    };
    assert_eq!(rows().await, 1);
    // A day later another account starts afresh: the first's row, long refilled, goes.
    assert!(take(&b, t0 + chrono::Duration::days(1)).await);
    assert_eq!(rows().await, 1);
    assert!(take(&a, t0 + chrono::Duration::days(1)).await, "and the first has its full burst again");
}

/// Issue 24: a server is ready only on the schema its build expects. A migration row this
/// build does not know (a newer build ran first) makes the schema not current.
async fn a_schema_another_build_wrote_is_not_current(t: &TestStore) {
    use sqlx::Connection;
    assert!(t.store.schema_current().await.unwrap(), "a freshly opened database is current");
    let newer = "INSERT INTO schema_migration (version, name, checksum, applied_at) VALUES (9999, 'from a newer build', 'x', '2026-12-06T00:00:00Z')";
    match t.store.backend() {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", t.url)).await.unwrap();
            sqlx::query(newer).execute(&mut c).await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&t.url).await.unwrap();
            sqlx::query(newer).execute(&mut c).await.unwrap();
        }
    }
    assert!(!t.store.schema_current().await.unwrap(), "a schema with a migration this build does not know");
}

async fn reopening_a_database_keeps_its_data_and_schema(t: &TestStore) {
    let p = practice(&*t.store).await;
    let again = caldicott_store::open(&t.url).await.unwrap();
    assert_eq!(again.practice(p.id).await.unwrap().map(|x| x.name), Some(p.name));
}

// ---- The outbox worker finds the practices with work (issue 27) ----------------------------------

fn queued_message(p: &Patient, at: DateTime<Utc>) -> caldicott_core::messages::OutboundMessage {
    use caldicott_core::messages::*;
    let mid = MessageId::from_uuid(id());
    OutboundMessage {
        id: mid,
        patient: p.id,
        purpose: "manual".into(),
        channel: Channel::Sms,
        recipient: "07700 900123".into(),
        subject: String::new(),
        body: "Please call the surgery.".into(),
        idempotency_key: mid.to_string(),
        status: MessageStatus::Queued,
        attempts: 0,
        next_attempt_at: at,
        last_error: None,
        provider_id: None,
        fragments: 1,
        cost_hundredths: 0,
        created_at: at,
        sent_at: None,
        task: None,
        tries: 0,
        email_message_id: None,
    }
}

async fn claimed_ids(store: &dyn Store, now: DateTime<Utc>) -> Vec<MessageId> {
    let lease = now + Duration::minutes(5);
    store.claim_due_messages(now, lease, 50).await.unwrap().into_iter().map(|(_, m)| m.id).collect()
}

/// T30 (a), R41: the worker's poll finds every message that is due, in whichever practice, and
/// again when a claim runs out (a worker that stopped after claiming), when a try is to be
/// repeated, when staff send a failed message again and when the provider reports a temporary
/// failure; and nothing that is not due.
async fn the_outbox_worker_finds_every_due_message_in_every_practice(store: &dyn Store) {
    let now = t(2031, 3, 3);
    let (a, b) = (practice(store).await, practice(store).await);
    let (pa, pb) = (patient(&a, 1), patient(&b, 2));
    store.create_patient(a.id, &pa, &audit(Action::PatientCreate, Some(pa.id))).await.unwrap();
    store.create_patient(b.id, &pb, &audit(Action::PatientCreate, Some(pb.id))).await.unwrap();
    assert!(claimed_ids(store, now).await.is_empty(), "nothing is queued yet");
    let (ma, mb) = (queued_message(&pa, now), queued_message(&pb, now + Duration::minutes(1)));
    store.enqueue_message(a.id, &ma, &audit(Action::MessageQueue, Some(pa.id))).await.unwrap();
    store.enqueue_message(b.id, &mb, &audit(Action::MessageQueue, Some(pb.id))).await.unwrap();
    assert_eq!(claimed_ids(store, now).await, vec![ma.id], "only the message due now");
    assert!(claimed_ids(store, now).await.is_empty(), "a claimed message is not claimed again while claimed");
    let later = now + Duration::minutes(1);
    assert_eq!(claimed_ids(store, later).await, vec![mb.id], "the other practice's message when it is due");
    let delivered = DeliveryOutcome::Delivered { provider_id: format!("log-{}", id()) };
    store.finish_message(b.id, mb.id, &delivered, later).await.unwrap();

    // The worker that claimed A's message stopped: once its claim runs out, it is found again,
    // with no other write in between.
    assert!(claimed_ids(store, now + Duration::minutes(4)).await.is_empty());
    let expired = now + Duration::minutes(5) + Duration::seconds(1);
    assert_eq!(claimed_ids(store, expired).await, vec![ma.id]);

    // A try to be repeated in a minute (sooner than the claim would have run out): not before,
    // then found.
    let retry_at = expired + Duration::minutes(1);
    let outcome = DeliveryOutcome::Retry { error: "busy".into(), next: retry_at };
    store.finish_message(a.id, ma.id, &outcome, expired).await.unwrap();
    assert!(claimed_ids(store, retry_at - Duration::seconds(1)).await.iter().all(|m| *m != ma.id));
    assert_eq!(claimed_ids(store, retry_at).await, vec![ma.id]);

    // Failed for good, then sent again by staff: found at once.
    store.finish_message(a.id, ma.id, &DeliveryOutcome::Failed { error: "no".into() }, retry_at).await.unwrap();
    let resend = retry_at + Duration::days(2);
    assert!(claimed_ids(store, resend).await.iter().all(|m| *m != ma.id), "a failed message waits for staff");
    store.retry_message(a.id, ma.id, resend, &audit(Action::MessageQueue, Some(pa.id))).await.unwrap();
    assert_eq!(claimed_ids(store, resend).await, vec![ma.id]);

    // Sent; then the provider reports a temporary failure: tried again an hour later.
    let sent = DeliveryOutcome::Sent { provider_id: format!("notify-{}", id()) };
    store.finish_message(a.id, ma.id, &sent, resend).await.unwrap();
    let DeliveryOutcome::Sent { provider_id } = sent else { unreachable!() };
    assert!(store.apply_delivery_report(&provider_id, "temporary-failure", resend).await.unwrap());
    assert!(claimed_ids(store, resend + Duration::minutes(59)).await.iter().all(|m| *m != ma.id));
    assert_eq!(claimed_ids(store, resend + Duration::hours(1)).await, vec![ma.id]);
}

/// T30: messages written while the worker claims are all found, each claimed once: a write that
/// lands while the worker sets a practice's next time is never left waiting with no wake-up.
async fn messages_written_during_claims_are_each_claimed_once(store: Arc<dyn Store>) {
    let now = t(2031, 3, 4);
    let a = practice(&*store).await;
    let pa = patient(&a, 3);
    store.create_patient(a.id, &pa, &audit(Action::PatientCreate, Some(pa.id))).await.unwrap();
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (store, pa) = (store.clone(), pa.clone());
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..10 {
                let m = queued_message(&pa, now);
                store.enqueue_message(pa.practice, &m, &audit(Action::MessageQueue, Some(pa.id))).await.unwrap();
                ids.push(m.id);
            }
            ids
        }));
    }
    let claimer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..200 {
                got.extend(claimed_ids(&*store, now).await);
                tokio::task::yield_now().await;
            }
            got
        })
    };
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let mut claimed = claimer.await.unwrap();
    // What the claimer had not reached yet is found by the next poll, with no write in between.
    claimed.extend(claimed_ids(&*store, now).await);
    let unique: std::collections::BTreeSet<_> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "a message was claimed twice while claimed");
    let mut want = written.clone();
    want.sort();
    let mut got = claimed.clone();
    got.sort();
    assert_eq!(got, want, "every message written is claimed, once");
}

macro_rules! contract {
    (shared: $($name:ident),* ; arc: $($arc:ident),* ; raw: $($raw:ident),*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let t = super::test_support::sqlite().await.unwrap(); super::$name(&*t.store).await; })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $arc() { let t = super::test_support::sqlite().await.unwrap(); super::$arc(t.store.clone()).await; })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $raw() { let t = super::test_support::sqlite().await.unwrap(); super::$raw(&t).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let t = super::test_support::postgres().await.unwrap(); super::$name(&*t.store).await; })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $arc() { let t = super::test_support::postgres().await.unwrap(); super::$arc(t.store.clone()).await; })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $raw() { let t = super::test_support::postgres().await.unwrap(); super::$raw(&t).await; })*
        }
        #[cfg(feature = "citus")]
        mod citus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let t = super::test_support::citus().await.unwrap(); super::$name(&*t.store).await; })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $arc() { let t = super::test_support::citus().await.unwrap(); super::$arc(t.store.clone()).await; })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $raw() { let t = super::test_support::citus().await.unwrap(); super::$raw(&t).await; })*
        }
    };
}

contract!(
    shared:
        practices_round_trip_and_start_an_audit_chain,
        the_service_wide_figures_count_each_practice_and_no_patient,
        patients_round_trip_and_stay_within_their_practice,
        patient_search_matches_every_criterion_within_the_practice,
        recently_viewed_patients_come_from_the_audit_log,
        entries_page_newest_first_by_section_and_cursor,
        hiding_an_entry_is_atomic_with_its_audit_event,
        a_failed_write_leaves_the_database_as_it_was,
        results_and_documents_wait_in_the_filing_queue_until_filed,
        access_facts_hold_settings_grants_and_104_codes,
        accounts_and_proxy_links_round_trip,
        staff_and_tokens_round_trip,
        sessions_and_sign_in_state_round_trip,
        imports_whole_records_in_one_transaction,
        the_outbox_worker_finds_every_due_message_in_every_practice;
    arc: concurrent_audit_appends_keep_one_unbroken_chain, messages_written_during_claims_are_each_claimed_once;
    raw: audit_rows_cannot_be_updated_or_deleted, reopening_a_database_keeps_its_data_and_schema,
        a_schema_another_build_wrote_is_not_current, the_account_wide_rate_refills_on_time_and_forgets_refilled_accounts
);

// ---- Schema parity (issue 22): one schema, written twice ---------------------------------------

/// A schema as the database describes it: per table, its columns, primary key, unique and plain
/// indexes (by the columns they cover) and foreign keys. Column types are left out: the two
/// databases name them differently.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    tables: std::collections::BTreeMap<String, TableShape>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct TableShape {
    columns: std::collections::BTreeSet<String>,
    primary_key: Vec<String>,
    /// (unique, columns in order)
    indexes: std::collections::BTreeSet<(bool, Vec<String>)>,
    /// (columns, referenced table, referenced columns)
    foreign_keys: std::collections::BTreeSet<(Vec<String>, String, Vec<String>)>,
}

async fn sqlite_shape(path: &str) -> Shape {
    use sqlx::{Connection, Row};
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await.unwrap();
    let tables: Vec<String> =
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
    let mut shape = Shape::default();
    for t in tables {
        let mut ts = TableShape::default();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for r in sqlx::query("SELECT name, pk FROM pragma_table_info(?)").bind(&t).fetch_all(&mut c).await.unwrap() {
            let name: String = r.get(0);
            let at: i64 = r.get(1);
            if at > 0 {
                pk.push((at, name.clone()));
            }
            ts.columns.insert(name);
        }
        pk.sort();
        ts.primary_key = pk.into_iter().map(|(_, n)| n).collect();
        let indexes = sqlx::query("SELECT name, \"unique\", origin FROM pragma_index_list(?)")
            .bind(&t)
            .fetch_all(&mut c)
            .await
            .unwrap();
        for r in indexes {
            let (name, unique, origin): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
            let cols: Vec<String> = sqlx::query("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                .bind(&name)
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
            if origin != "pk" && cols != ts.primary_key {
                ts.indexes.insert((unique != 0, cols));
            }
        }
        let fks =
            sqlx::query("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq")
                .bind(&t)
                .fetch_all(&mut c)
                .await
                .unwrap();
        let mut by_id: std::collections::BTreeMap<i64, (Vec<String>, String, Vec<String>)> = Default::default();
        for r in fks {
            let e = by_id.entry(r.get(0)).or_insert_with(|| (Vec::new(), r.get(1), Vec::new()));
            e.0.push(r.get(2));
            e.2.push(r.get(3));
        }
        ts.foreign_keys = by_id.into_values().collect();
        shape.tables.insert(t, ts);
    }
    shape
}

async fn postgres_shape(url: &str) -> Shape {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let mut shape = Shape::default();
    let columns = sqlx::query(
        "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c \
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    for r in columns {
        shape.tables.entry(r.get(0)).or_default().columns.insert(r.get(1));
    }
    // Every index, with its columns in order (an expression in an index shows as its text).
    let indexes = sqlx::query(
        "SELECT t.relname::text, ix.indisunique, ix.indisprimary, \
                array_agg(COALESCE(a.attname::text, pg_get_indexdef(ix.indexrelid, k.ord::int, true)) ORDER BY k.ord) \
         FROM pg_index ix \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) \
         LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE n.nspname = current_schema() \
         GROUP BY ix.indexrelid, t.relname, ix.indisunique, ix.indisprimary",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    for r in indexes {
        let (table, unique, primary, cols): (String, bool, bool, Vec<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let ts = shape.tables.entry(table).or_default();
        if primary {
            ts.primary_key = cols;
        } else {
            ts.indexes.insert((unique, cols));
        }
    }
    let fks = sqlx::query(
        "SELECT t.relname::text, f.relname::text, \
                array_agg(a.attname::text ORDER BY k.ord), array_agg(fa.attname::text ORDER BY k.ord) \
         FROM pg_constraint co \
         JOIN pg_class t ON t.oid = co.conrelid \
         JOIN pg_class f ON f.oid = co.confrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         CROSS JOIN LATERAL unnest(co.conkey, co.confkey) WITH ORDINALITY AS k(attnum, fattnum, ord) \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         JOIN pg_attribute fa ON fa.attrelid = f.oid AND fa.attnum = k.fattnum \
         WHERE co.contype = 'f' AND n.nspname = current_schema() \
         GROUP BY co.oid, t.relname, f.relname",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    for r in fks {
        let (table, to, from_cols, to_cols): (String, String, Vec<String>, Vec<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        shape.tables.entry(table).or_default().foreign_keys.insert((from_cols, to, to_cols));
    }
    // A unique index on the primary key's columns is the primary key itself.
    for ts in shape.tables.values_mut() {
        let pk = ts.primary_key.clone();
        ts.indexes.remove(&(true, pk));
    }
    shape
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_and_postgres_schemas_have_the_same_shape() {
    // Issue 22: the two sets of migrations describe one schema: the same tables and columns,
    // primary keys, unique and plain indexes and foreign keys, so that a query or a constraint
    // the code relies on cannot exist on one database and not the other.
    let lite = test_support::sqlite().await.unwrap();
    let pg = test_support::postgres().await.unwrap();
    let (a, b) = (sqlite_shape(&lite.url).await, postgres_shape(&pg.url).await);
    // Each side is read whole (a query that read nothing would make two empty shapes agree).
    for (db, shape) in [("SQLite", &a), ("PostgreSQL", &b)] {
        let indexes: usize = shape.tables.values().map(|t| t.indexes.len()).sum();
        let unique = shape.tables.values().flat_map(|t| &t.indexes).filter(|(u, _)| *u).count();
        let keys: usize = shape.tables.values().map(|t| t.foreign_keys.len()).sum();
        let pks = shape.tables.values().filter(|t| !t.primary_key.is_empty()).count();
        assert!(
            shape.tables.len() > 30 && indexes > 10 && unique > 5 && keys > 20 && pks > 30,
            "{db}: {} tables, {pks} primary keys, {indexes} indexes ({unique} unique), {keys} foreign keys",
            shape.tables.len()
        );
    }
    let mut differences = Vec::new();
    let names: std::collections::BTreeSet<&String> = a.tables.keys().chain(b.tables.keys()).collect();
    for name in names {
        match (a.tables.get(name), b.tables.get(name)) {
            (Some(x), Some(y)) => {
                if x.columns != y.columns {
                    differences.push(format!(
                        "{name}: columns only in SQLite {:?}, only in PostgreSQL {:?}",
                        x.columns.difference(&y.columns).collect::<Vec<_>>(),
                        y.columns.difference(&x.columns).collect::<Vec<_>>()
                    ));
                }
                if x.primary_key != y.primary_key {
                    differences.push(format!(
                        "{name}: primary key {:?} in SQLite, {:?} in PostgreSQL",
                        x.primary_key, y.primary_key
                    ));
                }
                if x.indexes != y.indexes {
                    differences.push(format!(
                        "{name}: indexes only in SQLite {:?}, only in PostgreSQL {:?}",
                        x.indexes.difference(&y.indexes).collect::<Vec<_>>(),
                        y.indexes.difference(&x.indexes).collect::<Vec<_>>()
                    ));
                }
                if x.foreign_keys != y.foreign_keys {
                    differences.push(format!(
                        "{name}: foreign keys only in SQLite {:?}, only in PostgreSQL {:?}",
                        x.foreign_keys.difference(&y.foreign_keys).collect::<Vec<_>>(),
                        y.foreign_keys.difference(&x.foreign_keys).collect::<Vec<_>>()
                    ));
                }
            }
            (Some(_), None) => differences.push(format!("{name}: only in SQLite")),
            (None, Some(_)) => differences.push(format!("{name}: only in PostgreSQL")),
            (None, None) => {}
        }
    }
    assert!(differences.is_empty(), "the schemas differ:\n  {}", differences.join("\n  "));
}
