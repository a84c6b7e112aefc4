#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Use-case tests. Every case runs against SQLite and against PostgreSQL.

use caldicott_app::fixtures::{self, adult, consultation, date, time, withheld_entries};
use caldicott_app::record::{PageRequest, ViewAs};
use caldicott_app::{audit_log, auth, App, AppError};
use caldicott_core::access::*;
use caldicott_core::audit::{Action, ChainHead};
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_store::both;
use caldicott_store::test_support::{self, TestStore};
use caldicott_store::Backend;
use chrono::Duration;
use std::sync::Arc;

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock())
}

async fn online_view_shows_only_what_the_patient_may_see(t: &TestStore) {
    // R8, T1
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let visible: Vec<Entry> =
        (0..5).map(|i| consultation(&pat, time(2024, 3, 1) + Duration::days(i), &format!("visible {i}"))).collect();
    let before_switch_on = consultation(&pat, time(2023, 1, 1), "SECRET before switch-on");
    let mut all = visible.clone();
    all.push(before_switch_on.clone());
    all.extend(withheld_entries(&pat, time(2024, 3, 2), "SECRET"));
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &all).await.unwrap();

    let page = app
        .online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    let ids: Vec<EntryId> = page.entries.iter().map(|e| e.id).collect();
    let mut expected: Vec<EntryId> = visible.iter().rev().map(|e| e.id).collect();
    expected.sort_by_key(|id| std::cmp::Reverse(visible.iter().position(|e| e.id == *id)));
    assert_eq!(ids, expected);
    let json = serde_json::to_string(&page).unwrap();
    assert!(!json.contains("SECRET"), "a withheld entry leaked: {json}");
    for e in all.iter().filter(|e| !visible.contains(e)) {
        assert!(!json.contains(&e.id.to_string()), "withheld id leaked");
    }
    // The staff view shows everything, each marked with the rule that withholds it.
    let staff = app
        .staff_record(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(staff.entries.len(), all.len());
    let rule_of = |id: EntryId| {
        staff.entries.iter().find(|e| e.entry.id == id).and_then(|e| e.online.withheld.as_ref()).map(|r| r.rule)
    };
    assert_eq!(rule_of(before_switch_on.id), Some("R4"));
    assert_eq!(rule_of(visible[0].id), None);
}

async fn hidden_entries_change_nothing_in_the_online_view(t: &TestStore) {
    // T2: byte-for-byte the same page, cursor included, with or without hidden entries.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let visible: Vec<Entry> =
        (0..7).map(|i| consultation(&pat, time(2024, 5, 1) + Duration::days(i * 2), &format!("v{i}"))).collect();
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &visible).await.unwrap();
    let req = PageRequest { limit: Some(3), ..Default::default() };
    let before = serde_json::to_string(
        &app.online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &req).await.unwrap(),
    )
    .unwrap();
    for day in [1, 4, 8, 20] {
        let extra = withheld_entries(&pat, time(2024, 5, 1) + Duration::days(day), "X");
        fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &extra).await.unwrap();
    }
    let after = serde_json::to_string(
        &app.online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &req).await.unwrap(),
    )
    .unwrap();
    assert_eq!(before, after);
}

async fn paging_visits_every_visible_entry_once(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let mut all = Vec::new();
    for i in 0..40 {
        all.push(consultation(&pat, time(2024, 1, 1) + Duration::hours(i * 13), &format!("v{i}")));
        if i % 3 == 0 {
            all.extend(withheld_entries(&pat, time(2024, 1, 1) + Duration::hours(i * 13 + 1), "H"));
        }
    }
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &all).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let req = PageRequest { limit: Some(7), cursor: cursor.clone(), section: None };
        let page = app.online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &req).await.unwrap();
        seen.extend(page.entries.iter().map(|e| e.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 40);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 40);
}

async fn a_proxy_sees_only_their_scope(t: &TestStore) {
    // R15, R16
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let child = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - Duration::days(365 * 6));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let granted = caldicott_app::fixtures::today() - Duration::days(100);
    let link = ProxyLink {
        id: ProxyLinkId::from_uuid(caldicott_app::new_id()),
        patient: child.id,
        proxy: parent.id,
        relationship: "Father".into(),
        basis: ProxyBasis::ChildNotCompetent,
        scope: ProxyScope {
            appointments: true,
            prescriptions: true,
            demographics: true,
            record: AccessLevel::Summary,
            record_from: RecordFrom::Date(granted),
        },
        granted_on: granted,
        decided_by: "Dr Test".into(),
        ends_on: None,
        status: ProxyStatus::Active,
    };
    app.store_for_tests()
        .create_proxy_link(tp.practice.id, &link, &fixtures::audit(Action::ProxyLinkCreate, Some(child.id)))
        .await
        .unwrap();
    let recent = caldicott_app::fixtures::now() - Duration::days(10);
    let consult = consultation(&child, recent, "SECRET consultation text");
    let mut med = consultation(&child, recent, "");
    med.body = EntryBody::Medication {
        drug: "Amoxicillin".into(),
        dosage: "5ml".into(),
        quantity: "100ml".into(),
        course: MedicationCourse::Acute,
    };
    let old_med = EntryBody::Allergy { substance: "SECRET before grant".into(), reaction: "rash".into() };
    let mut old = consultation(&child, caldicott_app::fixtures::now() - Duration::days(400), "");
    old.body = old_med;
    fixtures::add_entries(&app, tp.practice.id, Some(child.id), &[consult, med.clone(), old]).await.unwrap();

    let page = app
        .online_view(&tp.clinician, child.nhs_number.as_str(), ViewAs::Proxy(link.id), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.entries.iter().map(|e| e.id).collect::<Vec<_>>(), vec![med.id]);
    assert!(!serde_json::to_string(&page).unwrap().contains("SECRET"));
    // The child (6) has no access of their own, and nobody else's link answers for them.
    let own = app
        .online_view(&tp.clinician, child.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(own.entries.is_empty());
    assert_eq!(own.access.no_record_access.as_ref().map(|r| r.rule), Some("R1"));
    let wrong = app
        .online_view(&tp.clinician, parent.nhs_number.as_str(), ViewAs::Proxy(link.id), &PageRequest::default())
        .await;
    assert!(matches!(wrong, Err(AppError::NotFound(_))));
}

async fn every_read_is_audited_before_it_returns(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let head = app.store_for_tests().audit_head(tp.practice.id).await.unwrap();
    app.staff_record(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default()).await.unwrap();
    app.online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default()).await.unwrap();
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 10).await.unwrap();
    assert_eq!(app.store_for_tests().audit_head(tp.practice.id).await.unwrap().count, head.count + 2);
    assert_eq!(trail[0].action, "record.preview_online");
    assert_eq!(trail[1].action, "record.view_staff");
    assert_eq!(trail[0].actor_id, tp.clinician.staff.to_string());
    assert_eq!(trail[0].actor_role, "clinician");
    // Look-ups that fail are audited too, without a patient.
    let other = fixtures::practice(&app).await.unwrap();
    let err = app
        .staff_record(&other.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::NotFound(ref m) if m.contains(&other.practice.name)), "{err}");
    let last = app.store_for_tests().audit_events(other.practice.id, 0, 1000).await.unwrap().pop().unwrap();
    assert_eq!((last.action.as_str(), last.outcome.as_str()), ("record.view_staff", "not_found"));
    // A malformed NHS number is refused before anything is looked up.
    let err =
        app.staff_record(&tp.clinician, "123 456 7890", ViewAs::Patient, &PageRequest::default()).await.unwrap_err();
    assert!(matches!(err, AppError::BadRequest(ref m) if m.contains("check digit")), "{err}");
    assert_eq!(
        audit_log::verify_chain(app.store_for_tests().as_ref(), tp.practice.id, &[]).await.unwrap().unwrap().count,
        head.count + 2
    );
}

async fn administrators_cannot_open_records_and_the_refusal_is_audited(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let err =
        app.staff_record(&admin, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default()).await.unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)));
    let last = app.store_for_tests().audit_events(tp.practice.id, 0, 1000).await.unwrap().pop().unwrap();
    assert_eq!(last.outcome, "denied");
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    assert!(app
        .staff_record(&reception, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .is_ok());
}

async fn tokens_authenticate_only_while_valid(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let who = auth::authenticate(&app, &tp.clinician_token).await.unwrap();
    assert_eq!(who, tp.clinician);
    let mut tampered = tp.clinician_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [tampered.as_str(), "", "cal_", "Bearer x", &tp.clinician_token[..70]] {
        assert!(matches!(auth::authenticate(&app, bad).await, Err(AppError::Unauthenticated(_))), "{bad}");
    }
    // An expired token stops working.
    let later = App::new(t.store.clone(), Arc::new(|| caldicott_app::fixtures::now() + Duration::days(2)));
    assert!(matches!(auth::authenticate(&later, &tp.clinician_token).await, Err(AppError::Unauthenticated(_))));
    // A revoked one too, on the very next request.
    let issued = auth::issue_token(&app, tp.practice.ods_code.as_str(), "clinician", "revoke me", Duration::days(1))
        .await
        .unwrap();
    assert!(auth::authenticate(&app, &issued.secret).await.is_ok());
    app.store_for_tests()
        .revoke_api_token(
            tp.practice.id,
            issued.token.id,
            caldicott_app::fixtures::now(),
            &fixtures::audit(Action::TokenRevoke, None),
        )
        .await
        .unwrap();
    assert!(matches!(auth::authenticate(&app, &issued.secret).await, Err(AppError::Unauthenticated(_))));
    // Bad requests for tokens get clear errors.
    assert!(matches!(
        auth::issue_token(&app, "no such", "clinician", "x", Duration::days(1)).await,
        Err(AppError::BadRequest(_))
    ));
    assert!(matches!(
        auth::issue_token(&app, tp.practice.ods_code.as_str(), "nobody", "x", Duration::days(1)).await,
        Err(AppError::NotFound(_))
    ));
    assert!(matches!(
        auth::issue_token(&app, tp.practice.ods_code.as_str(), "clinician", "x", Duration::days(400)).await,
        Err(AppError::BadRequest(_))
    ));
}

async fn reads_fail_closed_when_the_audit_log_cannot_be_written(t: &TestStore) {
    // T15
    use sqlx::Connection;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[consultation(&pat, time(2024, 6, 1), "PATIENT DATA")])
        .await
        .unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    match t.store.backend() {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", t.url)).await.unwrap();
            sqlx::raw_sql(
                "CREATE TRIGGER disk_full BEFORE INSERT ON audit_event BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .execute(&mut c)
            .await
            .unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&t.url).await.unwrap();
            sqlx::raw_sql(
                "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END; $$;
                 CREATE TRIGGER disk_full BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION disk_full();",
            )
            .execute(&mut c)
            .await
            .unwrap();
        }
    }
    let res = app.online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default()).await;
    assert!(matches!(res, Err(AppError::Unavailable(_))), "{res:?}");
    let res = app.staff_record(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default()).await;
    assert!(matches!(res, Err(AppError::Unavailable(_))));
    // The patient's own page comes through the one reader, which hands nothing over unaudited.
    let res = app.my_record(&me, None, &PageRequest::default()).await;
    assert!(matches!(res, Err(AppError::Unavailable(_))), "{:?}", res.map(|p| p.entries.len()));
}

async fn the_chain_holds_under_concurrent_requests(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let head = app.store_for_tests().audit_head(tp.practice.id).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (app, who, nhs) = (app.clone(), tp.clinician.clone(), pat.nhs_number.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                app.online_view(&who, nhs.as_str(), ViewAs::Patient, &PageRequest::default()).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let verified =
        audit_log::verify_chain(app.store_for_tests().as_ref(), tp.practice.id, &[head]).await.unwrap().unwrap();
    assert_eq!(verified, ChainHead { count: head.count + 120, ..verified });
}

/// An app whose clock the test moves.
fn app_with_clock(t: &TestStore) -> (App, Arc<std::sync::atomic::AtomicI64>) {
    let offset = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let o = offset.clone();
    let app = App::new(
        t.store.clone(),
        Arc::new(move || {
            caldicott_app::fixtures::now() + Duration::seconds(o.load(std::sync::atomic::Ordering::SeqCst))
        }),
    );
    (app, offset)
}

async fn staff_sign_in_with_password_and_totp(t: &TestStore) {
    use caldicott_app::session::{current_code, SecondFactor};
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = Some(tp.practice.ods_code.as_str());
    // First sign-in: the password, then enrolment of an authenticator.
    let start =
        app.sign_in(ods, "clinician", "a long test password", &caldicott_app::auth::Client::default()).await.unwrap();
    let SecondFactor::Enrol { secret, otpauth_uri } = start.next.clone() else { panic!("expected enrolment") };
    assert!(otpauth_uri.starts_with("otpauth://totp/caldicott:clinician%40") && otpauth_uri.contains(&secret));
    assert_eq!(app.second_factor_step(&start.cookie).await.unwrap(), start.next);
    // A pending session is not a signed-in one.
    assert!(matches!(app.signed_in(&start.cookie).await, Err(AppError::Unauthenticated(_))));
    let wrong = app.second_factor(&start.cookie, "000000", &caldicott_app::auth::Client::default()).await.unwrap_err();
    assert!(matches!(wrong, AppError::Unauthenticated(ref m) if m.contains("security code")), "{wrong}");
    let cookie = app
        .second_factor(
            &start.cookie,
            &current_code(&secret, app.now()).unwrap(),
            &caldicott_app::auth::Client::default(),
        )
        .await
        .unwrap();
    assert_ne!(cookie, start.cookie, "the session changes at sign-in");
    assert!(app.signed_in(&start.cookie).await.is_err(), "the pending cookie is dead");
    let me = app.signed_in(&cookie).await.unwrap();
    assert_eq!(me.who, tp.clinician);
    assert_eq!(me.practice_name, tp.practice.name);
    // The next sign-in asks for a code only; the same secret still works.
    let again =
        app.sign_in(ods, "CLINICIAN", "a long test password", &caldicott_app::auth::Client::default()).await.unwrap();
    assert_eq!(again.next, SecondFactor::EnterCode);
    // Idle for 30 minutes: the session is over.
    clock.store(31 * 60, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(app.signed_in(&cookie).await, Err(AppError::Unauthenticated(_))));
    // Thirty seconds on: a new code (the first one was used, and a code works once).
    clock.store(30, std::sync::atomic::Ordering::SeqCst);
    // Sign-out ends it at once.
    let second = app
        .second_factor(
            &again.cookie,
            &current_code(&secret, app.now()).unwrap(),
            &caldicott_app::auth::Client::default(),
        )
        .await
        .unwrap();
    assert!(app.signed_in(&second).await.is_ok());
    app.sign_out(&second).await.unwrap();
    assert!(app.signed_in(&second).await.is_err());
    let actions: Vec<String> = fixtures::audit_actions(&app, tp.practice.id).await;
    for a in ["staff.totp_enrolled", "staff.sign_in", "staff.sign_in_failed", "staff.sign_out"] {
        assert!(actions.iter().any(|x| x == a), "{a} not audited");
    }
}

async fn clinicians_hide_and_show_entries_with_a_note(t: &TestStore) {
    // R9, R11, R12
    use caldicott_app::redaction::VisibilityChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let consult = consultation(&pat, time(2024, 4, 1), "Partner present; disclosed worries");
    let mut template = consultation(&pat, time(2024, 4, 2), "");
    template.body = EntryBody::Medication {
        drug: "Sertraline 50mg".into(),
        dosage: "1 daily".into(),
        quantity: "28".into(),
        course: MedicationCourse::RepeatTemplate,
    };
    let mut issue = consultation(&pat, time(2024, 5, 2), "");
    issue.body = EntryBody::MedicationIssue {
        drug: "Sertraline 50mg".into(),
        dosage: "1 daily".into(),
        quantity: "28".into(),
        template: Some(template.id),
    };
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[consult.clone(), template.clone(), issue.clone()])
        .await
        .unwrap();
    let nhs = pat.nhs_number.as_str();
    let who = tp.clinician.clone();
    let visible = |app: App| {
        let who = who.clone();
        async move {
            app.online_view(&who, nhs, ViewAs::Patient, &PageRequest::default())
                .await
                .unwrap()
                .entries
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(visible(app.clone()).await.len(), 3);

    // A note is required, and nothing changes without one.
    let no_note = VisibilityChange::Hide { reason: HiddenReason::ThirdParty, note: "  ".into() };
    assert!(matches!(
        app.change_visibility(&tp.clinician, nhs, consult.id, &no_note, false).await,
        Err(AppError::BadRequest(_))
    ));
    assert_eq!(visible(app.clone()).await.len(), 3);
    // Only clinicians may hide.
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let hide = VisibilityChange::Hide { reason: HiddenReason::ThirdParty, note: "Names the partner".into() };
    assert!(matches!(
        app.change_visibility(&reception, nhs, consult.id, &hide, false).await,
        Err(AppError::Forbidden(_))
    ));
    // Hidden: gone from the online view; the staff view says why.
    assert_eq!(app.change_visibility(&tp.clinician, nhs, consult.id, &hide, false).await.unwrap(), 1);
    assert!(!visible(app.clone()).await.contains(&consult.id));
    let rec = app.staff_record(&tp.clinician, nhs, ViewAs::Patient, &PageRequest::default()).await.unwrap();
    let why = rec.entries.iter().find(|e| e.entry.id == consult.id).and_then(|e| e.online.withheld.clone()).unwrap();
    assert_eq!(why.rule, "R8");
    assert!(why.reason.contains("Third-party"));
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 5).await.unwrap();
    assert_eq!(trail[0].action, "record.view_staff", "the staff view is itself audited");
    let change = trail.iter().find(|e| e.action == "entry.visibility_change").unwrap();
    assert_eq!(change.entity, format!("entry/{}", consult.id));
    assert!(
        change.detail.contains("from=visible to=hidden:third_party") && change.detail.contains("Names the partner")
    );

    // R12: hiding a repeat template leaves its issues visible unless asked.
    let target = app.entry_to_change(&tp.clinician, nhs, template.id).await.unwrap();
    assert_eq!(target.issues.iter().map(|e| e.id).collect::<Vec<_>>(), vec![issue.id]);
    let harmful = VisibilityChange::Hide { reason: HiddenReason::PotentiallyHarmful, note: "Discuss first".into() };
    app.change_visibility(&tp.clinician, nhs, template.id, &harmful, false).await.unwrap();
    assert_eq!(visible(app.clone()).await, vec![issue.id]);
    assert_eq!(
        app.change_visibility(&tp.clinician, nhs, template.id, &harmful, true).await.unwrap(),
        1,
        "only the issue still needed changing"
    );
    assert!(visible(app.clone()).await.is_empty());
    // Shown again, with a note.
    let show = VisibilityChange::Show { note: "Discussed with the patient".into() };
    assert_eq!(app.change_visibility(&tp.clinician, nhs, template.id, &show, true).await.unwrap(), 2);
    assert_eq!(visible(app.clone()).await.len(), 2);
    // Another practice's clinician cannot reach the entry.
    let other = fixtures::practice(&app).await.unwrap();
    assert!(matches!(
        app.change_visibility(&other.clinician, nhs, consult.id, &show, false).await,
        Err(AppError::NotFound(_))
    ));
}

async fn recording_104_withholds_automatic_access_and_106_restores_it(t: &TestStore) {
    // R2, R3
    use caldicott_app::redaction::EnhancedReviewCode;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[consultation(&pat, time(2024, 6, 1), "Seen")])
        .await
        .unwrap();
    let nhs = pat.nhs_number.as_str();
    let seen = |app: App, who: caldicott_app::StaffPrincipal| async move {
        app.online_view(&who, nhs, ViewAs::Patient, &PageRequest::default()).await.unwrap()
    };
    assert_eq!(seen(app.clone(), tp.clinician.clone()).await.entries.len(), 1);
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    assert!(matches!(
        app.add_enhanced_review_code(&reception, nhs, EnhancedReviewCode::Indicated).await,
        Err(AppError::Forbidden(_))
    ));
    let out = app.add_enhanced_review_code(&tp.clinician, nhs, EnhancedReviewCode::Indicated).await.unwrap();
    assert!(!out.before.is_active() && out.after.is_active());
    assert!(out.manual_grants_remain.is_empty());
    let view = seen(app.clone(), tp.clinician.clone()).await;
    assert!(view.entries.is_empty());
    assert_eq!(view.access.no_record_access.as_ref().map(|r| r.rule), Some("R2"));
    // A manual grant carries on under a 104, and the outcome says so (R3).
    let grant = LevelGrant {
        level: AccessLevel::Full,
        from: RecordFrom::Beginning,
        granted_on: caldicott_app::fixtures::today(),
        granted_by: "Dr Test".into(),
    };
    let settings = OnlineAccessSettings {
        grants: vec![grant.clone()],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    app.store_for_tests()
        .set_access_settings(
            tp.practice.id,
            pat.id,
            &settings,
            &fixtures::audit(Action::AccessSettingsChange, Some(pat.id)),
        )
        .await
        .unwrap();
    assert_eq!(
        seen(app.clone(), tp.clinician.clone()).await.entries.len(),
        2,
        "the consultation and the 104 code itself"
    );
    let again = app.add_enhanced_review_code(&tp.clinician, nhs, EnhancedReviewCode::Indicated).await.unwrap();
    assert_eq!(again.manual_grants_remain, vec![grant]);
    let lifted = app.add_enhanced_review_code(&tp.clinician, nhs, EnhancedReviewCode::NotIndicated).await.unwrap();
    assert!(!lifted.after.is_active());
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 20).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "entry.create" && e.detail.contains("code=1364751000000106")));
}

async fn the_practice_manager_changes_online_services_settings(t: &TestStore) {
    // R1, D9
    use caldicott_app::settings::SettingsInput;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[consultation(&pat, time(2024, 6, 1), "Seen")])
        .await
        .unwrap();
    let input = SettingsInput {
        switch_on_day: "31".into(),
        switch_on_month: "10".into(),
        switch_on_year: "2023".into(),
        paused: true,
        pause_reason: String::new(),
        default_level: "full".into(),
        proxy_review_age: "12".into(),
        visible_online_by_default: true,
        show_staff_names_to_patients: false,
        cancel_cutoff_hours: "24".into(),
        accept_update_record: true,
        gp_connect_structured: true,
        gp_connect_documents: true,
        gp_connect_asid: String::new(),
    };
    assert!(matches!(app.change_practice_settings(&tp.clinician, &input).await, Err(AppError::Forbidden(_))));
    // Pausing needs the reason and who asked for it (the data controller).
    let problems = app.change_practice_settings(&manager, &input).await.unwrap().unwrap_err();
    assert_eq!(problems[0].field, "pause_reason");
    let input = SettingsInput { pause_reason: "Data controller (Dr Patel): DPIA under review".into(), ..input };
    let saved = app.change_practice_settings(&manager, &input).await.unwrap().unwrap();
    assert!(saved.online.paused);
    assert_eq!(saved.online.pause_reason, "Data controller (Dr Patel): DPIA under review");
    assert_eq!(
        app.store_for_tests().practice(tp.practice.id).await.unwrap().unwrap().online.pause_reason,
        saved.online.pause_reason
    );
    assert_eq!(saved.online.proxy_review_age.years(), 12);
    // Paused: the patient's automatic access stops at once (D9).
    let view = app
        .online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(view.entries.is_empty());
    let last = app
        .store_for_tests()
        .audit_events(tp.practice.id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.action == "practice.settings_change")
        .unwrap();
    assert!(
        last.detail.contains("old: switch_on=2023-10-31 paused=false")
            && last.detail.contains("new: switch_on=2023-10-31 paused=true"),
        "{}",
        last.detail
    );
    // A bad form changes nothing.
    let bad = SettingsInput { switch_on_month: "13".into(), paused: false, ..input };
    assert!(app.change_practice_settings(&manager, &bad).await.unwrap().is_err());
    assert!(app.practice_settings(&manager).await.unwrap().online.paused);
}

async fn staff_grant_and_remove_access_by_hand(t: &TestStore) {
    // R1, R13, R44
    use caldicott_app::access_panel::AccessChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let old_entry = consultation(&pat, time(2015, 6, 1), "Before the switch-on");
    let new_entry = consultation(&pat, time(2024, 6, 1), "After the switch-on");
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[old_entry.clone(), new_entry.clone()]).await.unwrap();
    let nhs = pat.nhs_number.as_str();
    let who = tp.clinician.clone();
    let seen = |app: App| {
        let who = who.clone();
        async move {
            app.online_view(&who, nhs, ViewAs::Patient, &PageRequest::default())
                .await
                .unwrap()
                .entries
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(seen(app.clone()).await, vec![new_entry.id]);
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let historic =
        AccessChange::SetLevel { level: AccessLevel::Full, from: RecordFrom::Beginning, historic_confirmed: true };
    let unconfirmed =
        AccessChange::SetLevel { level: AccessLevel::Full, from: RecordFrom::Beginning, historic_confirmed: false };
    assert!(
        matches!(app.change_access(&tp.clinician, nhs, &unconfirmed).await, Err(AppError::BadRequest(_))),
        "the whole record is never given without its own confirmation"
    );
    assert!(matches!(app.change_access(&reception, nhs, &historic).await, Err(AppError::Forbidden(_))));
    let settings = app.change_access(&tp.clinician, nhs, &historic).await.unwrap();
    assert_eq!(settings.grants.len(), 1);
    assert_eq!(seen(app.clone()).await, vec![new_entry.id, old_entry.id], "historic access shows the older entry");
    let future = AccessChange::SetLevel {
        level: AccessLevel::Summary,
        from: RecordFrom::Date(app.today() + Duration::days(3)),
        historic_confirmed: false,
    };
    assert!(matches!(app.change_access(&tp.clinician, nhs, &future).await, Err(AppError::BadRequest(_))));
    app.change_access(&tp.clinician, nhs, &AccessChange::Remove { level: AccessLevel::Full }).await.unwrap();
    assert_eq!(seen(app.clone()).await, vec![new_entry.id]);
    assert!(matches!(
        app.change_access(&tp.clinician, nhs, &AccessChange::Remove { level: AccessLevel::Full }).await,
        Err(AppError::NotFound(_))
    ));
    app.change_access(&tp.clinician, nhs, &AccessChange::OptOut(true)).await.unwrap();
    assert!(seen(app.clone()).await.is_empty(), "opted out of automatic access");
    let last = app
        .store_for_tests()
        .audit_for_patient(tp.practice.id, pat.id, 50)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "access.settings_change")
        .unwrap();
    assert_eq!(
        last.detail,
        "old: level=automatic grants=[] opted_out=false new: level=automatic grants=[] opted_out=true"
    );
}

async fn a_level_set_by_hand_restricts_as_well_as_widens(t: &TestStore) {
    // R13, D10: a per-patient level replaces automatic Full access in both directions; staff see
    // what it changes, for the patient and each proxy, before it is saved; None means nothing.
    use caldicott_app::access_panel::{AccessChange, OnlineChange};
    use caldicott_app::redaction::EnhancedReviewCode;
    use caldicott_core::entry::Section;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let text = consultation(&pat, time(2024, 6, 1), "Free text after the switch-on");
    let mut med = consultation(&pat, time(2024, 6, 2), "");
    med.body = EntryBody::Medication {
        drug: "Ramipril 5mg capsules".into(),
        dosage: "One daily".into(),
        quantity: "28 capsule".into(),
        course: MedicationCourse::Acute,
    };
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[text.clone(), med.clone()]).await.unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    fixtures::proxy_link(&app, tp.practice.id, &pat, &parent, AccessLevel::Full, time(2024, 1, 1).date_naive())
        .await
        .unwrap();
    let nhs = pat.nhs_number.as_str();
    let who = tp.clinician.clone();
    let seen = |app: App| {
        let who = who.clone();
        async move {
            let mut ids: Vec<_> = app
                .online_view(&who, nhs, ViewAs::Patient, &PageRequest::default())
                .await
                .unwrap()
                .entries
                .into_iter()
                .map(|e| e.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![text.id, med.id];
    both.sort();
    assert_eq!(seen(app.clone()).await, both, "automatic Full shows both");

    let summary = AccessChange::SetLevel {
        level: AccessLevel::Summary,
        from: RecordFrom::Date(date(2023, 10, 31)),
        historic_confirmed: false,
    };
    // The preview says what goes, changes nothing, and leaves the proxy's view alone.
    let preview = app.preview_online_change(&who, nhs, &OnlineChange::Access(summary.clone())).await.unwrap();
    assert_eq!(preview.patient.before.level, AccessLevel::Full);
    assert_eq!(preview.patient.after.level, AccessLevel::Summary);
    assert_eq!(preview.patient.changes.len(), 1);
    let c = &preview.patient.changes[0];
    assert_eq!((c.section, c.count, c.earliest, c.now_visible), (Section::Consultations, 1, date(2024, 6, 1), false));
    assert_eq!(preview.proxies.len(), 1);
    assert!(preview.proxies[0].changes.is_empty(), "the patient's own level is not the proxy's scope");
    assert_eq!(seen(app.clone()).await, both, "a preview saves nothing");

    app.change_access(&who, nhs, &summary).await.unwrap();
    assert_eq!(seen(app.clone()).await, vec![med.id], "Summary: medicines only, no consultations");
    let view = app.online_view(&who, nhs, ViewAs::Patient, &PageRequest::default()).await.unwrap();
    assert_eq!(view.access.own_level.map(|(l, _)| l), Some(AccessLevel::Summary));

    // A 104 does not change a level set by hand (R3), and its preview says so.
    let p104 = app
        .preview_online_change(&who, nhs, &OnlineChange::EnhancedReview(EnhancedReviewCode::Indicated))
        .await
        .unwrap();
    assert!(p104.patient.changes.is_empty());
    assert_eq!(p104.patient.after.level, AccessLevel::Summary);

    let none =
        AccessChange::SetLevel { level: AccessLevel::None, from: RecordFrom::Beginning, historic_confirmed: false };
    app.change_access(&who, nhs, &none).await.unwrap();
    let view = app.online_view(&who, nhs, ViewAs::Patient, &PageRequest::default()).await.unwrap();
    assert!(view.entries.is_empty());
    assert_eq!(view.access.no_record_access.as_ref().map(|r| r.rule), Some("R13"));

    app.change_access(&who, nhs, &AccessChange::UsePracticeDefault).await.unwrap();
    assert_eq!(seen(app.clone()).await, both, "back to automatic Full");
    // Every change is audited with the old and new values (R44).
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    let changes: Vec<_> = trail.iter().filter(|e| e.action == "access.settings_change").collect();
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().any(|e| e.detail.contains("new: level=summary@")));
    assert!(changes.iter().any(|e| e.detail.contains("new: level=none@")));
}

async fn clinicians_file_results_visible_or_hidden(t: &TestStore) {
    // R8
    use caldicott_app::redaction::VisibilityChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let waiting = withheld_entries(&pat, time(2024, 7, 1), "W");
    let (result, letter) = (waiting[4].clone(), waiting[5].clone());
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[result.clone(), letter.clone()]).await.unwrap();
    let nhs = pat.nhs_number.as_str();
    let online = |app: App, who: caldicott_app::StaffPrincipal| async move {
        app.online_view(&who, nhs, ViewAs::Patient, &PageRequest::default())
            .await
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    assert!(online(app.clone(), tp.clinician.clone()).await.is_empty(), "waiting items are never online");
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    assert!(matches!(app.filing_queue(&reception).await, Err(AppError::Forbidden(_))));
    let queue = app.filing_queue(&tp.clinician).await.unwrap();
    assert_eq!(queue.iter().map(|(e, _)| e.id).collect::<Vec<_>>(), vec![result.id, letter.id]);
    app.file(&tp.clinician, result.id, &VisibilityChange::Show { note: String::new() }, false).await.unwrap();
    let hide = VisibilityChange::Hide { reason: HiddenReason::PotentiallyHarmful, note: "Ask before release".into() };
    app.file(&tp.clinician, letter.id, &hide, false).await.unwrap();
    assert!(app.filing_queue(&tp.clinician).await.unwrap().is_empty());
    assert_eq!(
        online(app.clone(), tp.clinician.clone()).await,
        vec![result.id],
        "filed visible shows; filed hidden does not"
    );
    assert!(
        matches!(app.file(&tp.clinician, result.id, &hide, false).await, Err(AppError::NotFound(_))),
        "filed already"
    );
    let other = fixtures::practice(&app).await.unwrap();
    assert!(matches!(app.item_to_file(&other.clinician, letter.id).await, Err(AppError::NotFound(_))));
}

async fn clinicians_record_consultations_with_codes(t: &TestStore) {
    // R2, R8, R11
    use caldicott_app::consultation::NewConsultation;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str();
    let who = tp.clinician.clone();
    let seen = |app: App| {
        let who = who.clone();
        async move { app.online_view(&who, nhs, ViewAs::Patient, &PageRequest::default()).await.unwrap().entries }
    };
    let (_, visible_default) = app.consultation_form(&tp.clinician, nhs).await.unwrap();
    assert!(visible_default, "practice policy: visible by default");
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let visit = NewConsultation {
        text: "Blood pressure review.".into(),
        visible_online: true,
        codes: vec![("75367002".into(), String::new())],
        ..Default::default()
    };
    assert!(matches!(app.add_consultation(&reception, nhs, &visit).await, Err(AppError::Forbidden(_))));
    assert_eq!(app.add_consultation(&tp.clinician, nhs, &visit).await.unwrap().unwrap(), 2);
    let view = seen(app.clone()).await;
    assert_eq!(view.len(), 2);
    assert!(
        view.iter().any(|e| e.code.as_ref().is_some_and(|c| c.term == "Blood pressure")),
        "the picklist term is filled in"
    );
    // A draft is never online.
    let draft = NewConsultation {
        text: "Thinking about referral.".into(),
        draft: true,
        visible_online: true,
        ..Default::default()
    };
    app.add_consultation(&tp.clinician, nhs, &draft).await.unwrap().unwrap();
    assert_eq!(seen(app.clone()).await.len(), 2);
    // Unticking "visible online" needs a reason and a note; nothing is written without them.
    let count = app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap();
    let hidden =
        NewConsultation { text: "Discussed a relative's illness.".into(), visible_online: false, ..Default::default() };
    let problems = app.add_consultation(&tp.clinician, nhs, &hidden).await.unwrap().unwrap_err();
    assert_eq!(problems.iter().map(|p| p.field).collect::<Vec<_>>(), vec!["reason"]);
    let no_note = NewConsultation { hidden_reason: Some(HiddenReason::ThirdParty), ..hidden.clone() };
    assert_eq!(app.add_consultation(&tp.clinician, nhs, &no_note).await.unwrap().unwrap_err()[0].field, "note");
    let bad_code = NewConsultation {
        codes: vec![("12ab".into(), "x".into()), ("123456789".into(), String::new())],
        ..visit.clone()
    };
    let problems = app.add_consultation(&tp.clinician, nhs, &bad_code).await.unwrap().unwrap_err();
    assert_eq!(problems.iter().map(|p| p.field).collect::<Vec<_>>(), vec!["code_0", "code_1"]);
    assert_eq!(app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap(), count);
    let ok = NewConsultation { note: "Names a relative".into(), ..no_note };
    app.add_consultation(&tp.clinician, nhs, &ok).await.unwrap().unwrap();
    assert_eq!(seen(app.clone()).await.len(), 2, "hidden online");
    // A 104 from the picklist withholds automatic access (R2).
    let review = NewConsultation {
        codes: vec![(caldicott_core::snomed::ENHANCED_REVIEW_INDICATED.into(), String::new())],
        visible_online: true,
        ..Default::default()
    };
    app.add_consultation(&tp.clinician, nhs, &review).await.unwrap().unwrap();
    assert!(seen(app.clone()).await.is_empty());
}

async fn the_assistant_warns_at_entry_time_and_never_blocks(t: &TestStore) {
    // The guidance: redact as information is entered, before it becomes visible. Saving a
    // consultation or filing a letter visible online runs the redaction assistant; it says who
    // will see it (the patient, each proxy by name); the save is never blocked; what was shown
    // and chosen is audited with the save.
    use caldicott_app::consultation::NewConsultation;
    use caldicott_app::redaction::VisibilityChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let mut carer = fixtures::person(tp.practice.id, fixtures::date(1975, 3, 3));
    carer.name.given = "Grace".into();
    carer.name.family = "Okoro".into();
    app.store_for_tests()
        .create_patient(tp.practice.id, &carer, &fixtures::audit(Action::PatientCreate, Some(carer.id)))
        .await
        .unwrap();
    fixtures::proxy_link(&app, tp.practice.id, &pat, &carer, AccessLevel::Full, caldicott_app::fixtures::today())
        .await
        .unwrap();
    let nhs = pat.nhs_number.as_str();
    let plain =
        NewConsultation { text: "Blood pressure review, all well.".into(), visible_online: true, ..Default::default() };
    assert_eq!(app.check_consultation(&tp.clinician, nhs, &plain).await.unwrap().unwrap(), None);
    let naming = NewConsultation {
        text: "Her daughter Mrs Jones was diagnosed with HIV last month; discussed support.".into(),
        visible_online: true,
        ..Default::default()
    };
    let before = app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap();
    let check = app.check_consultation(&tp.clinician, nhs, &naming).await.unwrap().unwrap().unwrap();
    assert!(check.highlights.iter().any(|h| h.contains("daughter")), "{:?}", check.highlights);
    assert_eq!(check.onlookers.len(), 2, "the patient and the proxy");
    assert!(check.onlookers[0].who.ends_with("(the patient)") && check.onlookers[0].not_shown.is_none());
    assert!(check.onlookers[1].who.starts_with("Grace Okoro"), "{:?}", check.onlookers[1]);
    assert_eq!(
        app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap(),
        before,
        "a check writes nothing"
    );
    // Saved as it is after the check: it is saved, and the audit says what was shown and chosen.
    let saved = NewConsultation { checked: true, ..naming.clone() };
    app.add_consultation(&tp.clinician, nhs, &saved).await.unwrap().unwrap();
    // Hidden after the check, with a reason: saved hidden, and the audit says so.
    let hidden = NewConsultation {
        visible_online: false,
        hidden_reason: Some(HiddenReason::ThirdParty),
        note: "Names the daughter".into(),
        checked: true,
        ..naming.clone()
    };
    app.add_consultation(&tp.clinician, nhs, &hidden).await.unwrap().unwrap();
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    let details: Vec<&str> = trail.iter().filter(|e| e.action == "entry.create").map(|e| e.detail.as_str()).collect();
    assert!(
        details.iter().any(|d| d.contains("entry_check=[") && d.ends_with("shown=yes chosen=visible")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("entry_check=[") && d.ends_with("shown=yes chosen=hidden")),
        "{details:?}"
    );
    assert!(
        !details.iter().any(|d| d.contains("entry_check") && d.contains("HIV last month")),
        "no record text in audit"
    );
    // Filing a letter about someone else visible online is checked the same way.
    let mut letter = withheld_entries(&pat, time(2025, 7, 1), "W")[5].clone();
    if let EntryBody::Document { title, .. } = &mut letter.body {
        *title = "Letter from social services about Mr Patel".into();
    }
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), std::slice::from_ref(&letter)).await.unwrap();
    let check = app.check_filing(&tp.clinician, letter.id).await.unwrap().unwrap();
    assert!(check.highlights.iter().any(|h| h.contains("third-party")), "{:?}", check.highlights);
    app.file(&tp.clinician, letter.id, &VisibilityChange::Show { note: String::new() }, true).await.unwrap();
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "entry.file"
        && e.detail.contains("entry_check=[")
        && e.detail.ends_with("shown=yes chosen=visible")));
}

async fn administrators_manage_staff_accounts(t: &TestStore) {
    use caldicott_app::staff_admin::AccountChange;
    use caldicott_core::staff::Role;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    assert!(matches!(app.staff_accounts(&tp.clinician).await, Err(AppError::Forbidden(_))));
    assert_eq!(app.staff_accounts(&admin).await.unwrap().len(), 5);
    let new =
        app.add_staff_account(&admin, "a.nurse", "Alex Nurse", Role::Clinician, "a long first password").await.unwrap();
    assert!(matches!(
        app.add_staff_account(&admin, "a.nurse", "Again", Role::Clinician, "a long first password").await,
        Err(AppError::Conflict(_))
    ));
    assert!(matches!(
        app.add_staff_account(&admin, "b.nurse", "Short", Role::Clinician, "short").await,
        Err(AppError::BadRequest(_))
    ));
    // Deactivating signs the member out at once: their token stops working.
    assert!(auth::authenticate(&app, &tp.clinician_token).await.is_ok());
    app.change_staff_account(&admin, tp.clinician.staff, AccountChange::Deactivate).await.unwrap();
    assert!(matches!(auth::authenticate(&app, &tp.clinician_token).await, Err(AppError::Unauthenticated(_))));
    app.change_staff_account(&admin, tp.clinician.staff, AccountChange::Reactivate).await.unwrap();
    assert!(auth::authenticate(&app, &tp.clinician_token).await.is_ok());
    assert!(matches!(
        app.change_staff_account(&admin, admin.staff, AccountChange::Deactivate).await,
        Err(AppError::BadRequest(_))
    ));
    // Resetting a member's second factor makes them enrol again at their next sign-in.
    let ods = Some(tp.practice.ods_code.as_str());
    app.change_staff_account(&admin, new.id, AccountChange::ResetSecondFactor).await.unwrap();
    let start =
        app.sign_in(ods, "a.nurse", "a long first password", &caldicott_app::auth::Client::default()).await.unwrap();
    assert!(matches!(start.next, caldicott_app::session::SecondFactor::Enrol { .. }));
    let other = fixtures::practice(&app).await.unwrap();
    let other_admin = auth::authenticate(&app, &other.admin_token).await.unwrap();
    assert!(matches!(
        app.change_staff_account(&other_admin, new.id, AccountChange::Deactivate).await,
        Err(AppError::NotFound(_))
    ));
}

async fn reception_registers_and_deregisters_patients(t: &TestStore) {
    // R6
    use caldicott_app::registration::NewRegistration;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let form = NewRegistration {
        nhs_number: "943 476 5919".into(),
        given: "Mary".into(),
        family: "Seacole".into(),
        birth_day: "23".into(),
        birth_month: "11".into(),
        birth_year: "1985".into(),
        sex: "female".into(),
        address_line: "1 Quay Street".into(),
        town: "Riverside".into(),
        postcode: "rv1 4qs".into(),
        mobile: "07700 900123".into(),
        email: String::new(),
    };
    assert!(matches!(app.register_patient(&admin, &form).await, Err(AppError::Forbidden(_))));
    let bad = NewRegistration {
        nhs_number: "943 476 5918".into(),
        birth_month: "13".into(),
        sex: String::new(),
        email: "nope".into(),
        ..form.clone()
    };
    let problems = app.register_patient(&reception, &bad).await.unwrap().unwrap_err();
    assert_eq!(problems.iter().map(|p| p.field).collect::<Vec<_>>(), vec!["nhs_number", "birth_day", "sex", "email"]);
    let p = app.register_patient(&reception, &form).await.unwrap().unwrap();
    assert_eq!(p.contact.address.postcode, "RV1 4QS");
    assert_eq!(
        app.register_patient(&reception, &form).await.unwrap().unwrap_err()[0].field,
        "nhs_number",
        "already registered"
    );
    // Give the patient an account and a visible entry, then deregister: online access ends (R6).
    let account = OnlineAccount {
        id: AccountId::from_uuid(caldicott_app::new_id()),
        holder: p.id,
        kind: AccountKind::NhsLogin,
        identity: IdentityLevel::P9,
        created_at: caldicott_app::fixtures::now(),
    };
    app.store_for_tests()
        .create_online_account(tp.practice.id, &account, &fixtures::audit(Action::OnlineAccountCreate, Some(p.id)))
        .await
        .unwrap();
    // Entered now, on the day of registration: an entry made a few minutes earlier would be on
    // the day before just after midnight, before the registration (R4).
    fixtures::add_entries(
        &app,
        tp.practice.id,
        Some(p.id),
        &[consultation(&p, caldicott_app::fixtures::now(), "Seen")],
    )
    .await
    .unwrap();
    let seen =
        app.online_view(&tp.clinician, p.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default()).await.unwrap();
    assert_eq!(seen.entries.len(), 1);
    assert!(matches!(
        app.deregister_patient(&reception, p.nhs_number.as_str(), " ").await,
        Err(AppError::BadRequest(_))
    ));
    app.deregister_patient(&reception, p.nhs_number.as_str(), "Moved away").await.unwrap();
    let after =
        app.online_view(&tp.clinician, p.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default()).await.unwrap();
    assert!(after.entries.is_empty());
    assert_eq!(after.access.no_record_access.as_ref().map(|r| r.rule), Some("R6"));
    assert!(matches!(
        app.deregister_patient(&reception, p.nhs_number.as_str(), "again").await,
        Err(AppError::Conflict(_))
    ));
}

async fn a_consultation_is_split_so_that_part_of_it_can_be_hidden(t: &TestStore) {
    // R9
    use caldicott_app::redaction::VisibilityChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let c = consultation(&pat, time(2024, 8, 1), "Knee pain, improving. Partner has been controlling about money.");
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), std::slice::from_ref(&c)).await.unwrap();
    let nhs = pat.nhs_number.as_str();
    let dropped = vec!["Knee pain, improving.".to_owned(), "Partner has been controlling.".to_owned()];
    assert!(
        matches!(app.split_entry(&tp.clinician, nhs, c.id, &dropped).await, Err(AppError::BadRequest(_))),
        "text may not be lost"
    );
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let parts = vec!["Knee pain, improving.".to_owned(), "Partner has been controlling about money.".to_owned()];
    assert!(matches!(app.split_entry(&reception, nhs, c.id, &parts).await, Err(AppError::Forbidden(_))));
    let made = app.split_entry(&tp.clinician, nhs, c.id, &parts).await.unwrap();
    assert_eq!(made.len(), 2);
    assert!(app.store_for_tests().entry(tp.practice.id, c.id).await.unwrap().is_none());
    let hide = VisibilityChange::Hide { reason: HiddenReason::ThirdParty, note: "About the partner".into() };
    app.change_visibility(&tp.clinician, nhs, made[1], &hide, false).await.unwrap();
    let view = app.online_view(&tp.clinician, nhs, ViewAs::Patient, &PageRequest::default()).await.unwrap();
    let json = serde_json::to_string(&view).unwrap();
    assert!(json.contains("Knee pain, improving.") && !json.contains("controlling"));
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 10).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "entry.split" && e.detail.contains(&made[0].to_string())));
}

both!(
    online_view_shows_only_what_the_patient_may_see,
    hidden_entries_change_nothing_in_the_online_view,
    paging_visits_every_visible_entry_once,
    a_proxy_sees_only_their_scope,
    every_read_is_audited_before_it_returns,
    administrators_cannot_open_records_and_the_refusal_is_audited,
    tokens_authenticate_only_while_valid,
    reads_fail_closed_when_the_audit_log_cannot_be_written,
    the_chain_holds_under_concurrent_requests,
    staff_sign_in_with_password_and_totp,
    clinicians_hide_and_show_entries_with_a_note,
    recording_104_withholds_automatic_access_and_106_restores_it,
    the_practice_manager_changes_online_services_settings,
    staff_grant_and_remove_access_by_hand,
    a_level_set_by_hand_restricts_as_well_as_widens,
    repeats_offered_online_go_through_the_engine_whole,
    the_assistant_warns_at_entry_time_and_never_blocks,
    clinicians_file_results_visible_or_hidden,
    clinicians_record_consultations_with_codes,
    administrators_manage_staff_accounts,
    reception_registers_and_deregisters_patients,
    a_consultation_is_split_so_that_part_of_it_can_be_hidden,
    a_transferred_in_record_keeps_its_dates_and_redactions,
    a_bad_or_mismatched_transfer_file_changes_nothing,
    patients_sign_up_with_a_letter_and_see_only_their_online_view,
    a_proxy_sees_the_record_they_act_for_within_scope,
    patients_see_who_looked_at_their_record_but_not_what_changed,
    patients_book_and_cancel_appointments_and_one_slot_never_holds_two,
    repeat_requests_become_tasks_a_clinician_decides_item_by_item,
    messages_to_the_practice_get_an_outcome,
    staff_record_grant_refuse_suspend_and_reactivate_proxy_access,
    a_parents_access_pauses_at_the_review_age_as_the_clock_passes_it,
    a_parents_access_ends_at_sixteen_as_the_clock_passes_it,
    nhs_login_matches_the_registered_patient_by_nhs_number_and_birth_date,
    an_app_links_with_the_letter_and_raises_a_safety_net_task,
    regenerating_the_linkage_key_cuts_off_every_app_at_once,
    staff_send_a_preset_by_the_patients_channel,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_deterministic_and_realistic() {
    use caldicott_demo::{build_demo, DemoOptions};
    let opts = DemoOptions { patients: 80, seed: 7, as_of: fixtures::date(2026, 11, 22), long_record: Some(300) };
    let mut summaries = Vec::new();
    for _ in 0..2 {
        let t = test_support::sqlite().await.unwrap();
        let app = app(&t);
        let report = build_demo(&app, &opts).await.unwrap();
        assert!(report.built);
        assert!(report.patients >= 80);
        let again = build_demo(&app, &opts).await.unwrap();
        assert!(!again.built, "a second run leaves the practice as it is");
        let p = report.practice.id;
        let long = app
            .store_for_tests()
            .patient_by_nhs_number(p, report.long_record.as_ref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(app.store_for_tests().entry_count(p, long.id).await.unwrap(), 300);
        let mut summary = Vec::new();
        let mut proxies = 0;
        for n in 0..400u32 {
            let Some(nhs) = caldicott_core::NhsNumber::from_first_nine(999_000_000 + 170_000 + n) else { continue };
            if let Some(pat) = app.store_for_tests().patient_by_nhs_number(p, &nhs).await.unwrap() {
                assert!(pat.nhs_number.is_test_number());
                proxies += app.store_for_tests().proxy_links_for_patient(p, pat.id).await.unwrap().len();
                summary.push((
                    pat.nhs_number.as_str().to_owned(),
                    pat.name.family.clone(),
                    pat.date_of_birth,
                    app.store_for_tests().entry_count(p, pat.id).await.unwrap(),
                ));
            }
        }
        assert!(summary.len() >= 80, "found {}", summary.len());
        assert!(proxies > 0, "children have parent proxies");
        assert!(audit_log::verify_chain(app.store_for_tests().as_ref(), p, &[]).await.unwrap().is_ok());
        summaries.push((summary, report.staff.iter().map(|s| s.password.clone()).collect::<Vec<_>>()));
    }
    assert_eq!(summaries[0], summaries[1]);
}

fn bundle_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

async fn a_transferred_in_record_keeps_its_dates_and_redactions(t: &TestStore) {
    // R7, D3, D4, T4
    use caldicott_app::access_panel::AccessChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();

    // A patient new to the practice is registered from the file, as transferred in.
    let nhs = caldicott_core::NhsNumber::from_first_nine(999_200_001).unwrap();
    let file = bundle_bytes(&fixtures::transfer_bundle(nhs.as_str(), "1990-02-01", "Ruth", "Ellis", "B82001", "MARK"));
    assert!(matches!(app.transfer_in(&reception, &file).await, Err(AppError::Forbidden(_))));
    let done = app.transfer_in(&manager, &file).await.unwrap().unwrap();
    assert!(done.registered);
    assert_eq!((done.entries, done.hidden_by_sender, done.pending_review), (9, 2, 2));
    assert_eq!(done.not_imported.get("Provenance"), Some(&1));
    let p = app.store_for_tests().patient_by_nhs_number(tp.practice.id, &nhs).await.unwrap().unwrap();
    assert_eq!((p.name.given.as_str(), p.date_of_birth), ("Ruth", fixtures::date(1990, 2, 1)));
    let reg = p.registration_on(caldicott_app::fixtures::today()).unwrap();
    assert_eq!(reg.kind, caldicott_core::patient::RegistrationKind::TransferredIn);
    assert_eq!(reg.previous_practice.as_deref(), Some("B82001"));
    assert_eq!(p.contact.address.postcode, "RV2 4OW");

    // Into a patient already registered here, who already has historic access granted by hand:
    // the entries join their record, and that grant does not reach them until the level is set
    // again after review (R7).
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let full =
        AccessChange::SetLevel { level: AccessLevel::Full, from: RecordFrom::Beginning, historic_confirmed: true };
    app.change_access(&tp.clinician, pat.nhs_number.as_str(), &full).await.unwrap();
    let file = bundle_bytes(&fixtures::transfer_bundle(
        pat.nhs_number.as_str(),
        &pat.date_of_birth.to_string(),
        "Test",
        "Patient",
        "B82001",
        "MARK",
    ));
    let done = app.transfer_in(&tp.clinician, &file).await.unwrap().unwrap();
    assert!(!done.registered);
    assert!(done.held_back.iter().any(|h| h.contains("whole record")), "{:?}", done.held_back);
    let online = app
        .online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(
        online.entries.iter().all(|e| !matches!(e.origin, Origin::TransferredIn { .. })),
        "historic access granted before the transfer shows nothing it brought"
    );
    let staff = app
        .staff_record(
            &tp.clinician,
            pat.nhs_number.as_str(),
            ViewAs::Patient,
            &PageRequest { limit: Some(50), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(staff.entries.len(), 9);
    for e in &staff.entries {
        assert_eq!(e.entry.origin, Origin::TransferredIn { from_ods: "B82001".into() });
        assert!(e.online.withheld.is_some(), "R7: nothing transferred in is shown under automatic access");
    }
    let find = |needle: &str| staff.entries.iter().find(|e| e.entry.body.headline().contains(needle)).unwrap();
    // D3: the date the sending practice entered it, never the import date.
    let sore = find("Sore throat");
    assert_eq!(sore.entry.entered_at, chrono::DateTime::parse_from_rfc3339("2019-05-03T09:15:00Z").unwrap());
    assert_eq!(sore.entry.author.name, "Dr Ada Okafor");
    assert!(matches!(sore.entry.body, EntryBody::Consultation { status: ConsultationStatus::Final, .. }));
    let hidden_reason = |needle: &str| match &find(needle).entry.visibility {
        OnlineVisibility::Hidden(r) => Some(r.reason()),
        OnlineVisibility::Visible => None,
    };
    assert_eq!(hidden_reason("partner's history"), Some(HiddenReason::Other), "NOPAT stays applied (R7)");
    assert_eq!(hidden_reason("social services"), Some(HiddenReason::Other));
    assert_eq!(hidden_reason("Asthma"), Some(HiddenReason::PendingReview), "no label: hidden pending review (D4)");
    assert_eq!(hidden_reason("Influenza"), Some(HiddenReason::PendingReview));
    assert_eq!(hidden_reason("Haemoglobin"), None);
    // The issue keeps its link to the repeat template (R12 can cascade).
    let template = staff
        .entries
        .iter()
        .find(|e| matches!(e.entry.body, EntryBody::Medication { course: MedicationCourse::RepeatTemplate, .. }))
        .unwrap();
    assert!(staff.entries.iter().any(
        |e| matches!(e.entry.body, EntryBody::MedicationIssue { template: Some(t), .. } if t == template.entry.id)
    ));

    let shared = staff.entries.iter().find(|e| e.entry.body.headline().contains("Sore throat")).unwrap();
    assert_eq!(shared.online.withheld.as_ref().map(|r| r.rule), Some("R7"));
    // Historic access, granted again after the review, shows what the sender shared, and
    // nothing hidden.
    app.change_access(&tp.clinician, pat.nhs_number.as_str(), &full).await.unwrap();
    let online = app
        .online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(online.entries.len(), 5);
    let json = serde_json::to_string(&online).unwrap();
    assert!(json.contains("MARK") && !json.contains("HIDDEN"), "a hidden transferred-in entry leaked: {json}");

    // The import is audited with the patient, and listed for the record.
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    let ev = trail.iter().find(|e| e.action == "record.transfer_in").unwrap();
    assert!(ev.detail.starts_with("9 entries from B82001"), "{}", ev.detail);
    assert!(!ev.detail.contains("MARK"), "no clinical content in the audit");
    let imports = app.record_imports(&tp.clinician, pat.nhs_number.as_str()).await.unwrap();
    assert_eq!(imports.len(), 1);
    assert_eq!(imports[0].pending_review, 2);
}

async fn a_bad_or_mismatched_transfer_file_changes_nothing(t: &TestStore) {
    // R7; every bad input gets a clear error and loses nothing
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str();
    let good = fixtures::transfer_bundle(nhs, &pat.date_of_birth.to_string(), "Test", "Patient", "B82001", "M");
    let head = app.store_for_tests().audit_head(tp.practice.id).await.unwrap();
    let refused = |v: &[u8]| {
        let app = app.clone();
        let who = tp.clinician.clone();
        let v = v.to_vec();
        async move { app.transfer_in(&who, &v).await.unwrap().unwrap_err().join(" | ") }
    };
    assert!(refused(b"{not json").await.contains("not valid JSON"));
    assert!(refused(b"   ").await.contains("Choose a FHIR Bundle"));
    assert!(refused(br#"{"resourceType":"Patient"}"#).await.contains("not a FHIR Bundle"));
    let mut wrong_dob = good.clone();
    wrong_dob["entry"][0]["resource"]["birthDate"] = "1999-01-01".into();
    assert!(refused(&bundle_bytes(&wrong_dob)).await.contains("does not match"));
    let mut bad_nhs = good.clone();
    bad_nhs["entry"][0]["resource"]["identifier"][0]["value"] = "9434765918".into();
    assert!(refused(&bundle_bytes(&bad_nhs)).await.contains("NHS number is not valid"));
    let mut no_sender = good.clone();
    no_sender["entry"][1]["resource"]["identifier"] = serde_json::json!([]);
    assert!(refused(&bundle_bytes(&no_sender)).await.contains("which practice it comes from"));
    let mut undated = good.clone();
    undated["entry"][4]["resource"].as_object_mut().unwrap().remove("period");
    let msg = refused(&bundle_bytes(&undated)).await;
    assert!(msg.contains("urn:uuid:0b6c3c7e-0000-4000-8000-000000000011") && msg.contains("needs a date"), "{msg}");
    let own =
        fixtures::transfer_bundle(nhs, &pat.date_of_birth.to_string(), "T", "P", tp.practice.ods_code.as_str(), "M");
    assert!(refused(&bundle_bytes(&own)).await.contains("comes from this practice"));
    assert_eq!(app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap(), 0);
    assert_eq!(app.store_for_tests().audit_head(tp.practice.id).await.unwrap(), head, "a refused file writes nothing");

    // The same file twice: the second is refused and adds nothing.
    app.transfer_in(&tp.clinician, &bundle_bytes(&good)).await.unwrap().unwrap();
    assert!(refused(&bundle_bytes(&good)).await.contains("already been imported"));
    assert_eq!(app.store_for_tests().entry_count(tp.practice.id, pat.id).await.unwrap(), 9);

    // A deregistered patient's record cannot be transferred in.
    let other = adult(&app, tp.practice.id).await.unwrap();
    app.deregister_patient(&tp.clinician, other.nhs_number.as_str(), "moved away").await.unwrap();
    let file =
        fixtures::transfer_bundle(other.nhs_number.as_str(), &other.date_of_birth.to_string(), "T", "P", "B82001", "M");
    assert!(refused(&bundle_bytes(&file)).await.contains("not registered at this practice now"));
}

/// The example file in docs/examples is the fixture, so that what the documentation shows is
/// what the tests import. `UPDATE_EXAMPLES=1 cargo test -p caldicott-app example` rewrites it.
#[test]
fn the_example_transfer_file_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/transfer-in.json");
    let nhs = caldicott_core::NhsNumber::from_first_nine(999_099_502).unwrap();
    let want = serde_json::to_string_pretty(&fixtures::transfer_bundle(
        nhs.as_str(),
        "1988-07-12",
        "Ruth",
        "Ellis",
        "B82001",
        "Transferred",
    ))
    .unwrap()
        + "\n";
    if std::env::var_os("UPDATE_EXAMPLES").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/examples/transfer-in.json is out of date: run UPDATE_EXAMPLES=1 cargo test -p caldicott-app example"
    );
    let read = caldicott_fhir::read::read_transfer_bundle(have.as_bytes()).unwrap();
    assert_eq!((read.patient.nhs_number, read.entries.len()), (nhs, 9));
}

async fn patients_sign_up_with_a_letter_and_see_only_their_online_view(t: &TestStore) {
    // R8, R22, T1: what the patient sees is exactly the online view
    use caldicott_app::patient_services::SignUp;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let recent = caldicott_app::fixtures::now() - Duration::days(3);
    let visible = consultation(&pat, recent, "visible to the patient");
    let mut all = vec![visible.clone()];
    all.extend(withheld_entries(&pat, recent, "SECRET"));
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &all).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    assert!(matches!(app.issue_linkage(&admin, pat.nhs_number.as_str(), "P9").await, Err(AppError::Forbidden(_))));
    assert!(matches!(
        app.issue_linkage(&tp.clinician, pat.nhs_number.as_str(), "P7").await,
        Err(AppError::BadRequest(_))
    ));
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let letter = app.issue_linkage(&reception, pat.nhs_number.as_str(), "P9").await.unwrap();
    assert_eq!(letter.account_id.len(), 10);
    let form = SignUp {
        ods_code: letter.ods_code.to_lowercase(),
        account_id: letter.account_id.to_lowercase(),
        linkage_key: letter.linkage_key.replace('-', " "),
        family: "Somebody-Else".into(),
        birth_day: "17".into(),
        birth_month: "5".into(),
        birth_year: "1980".into(),
        username: "Test.Patient".into(),
        password: "a patient password".into(),
    };
    let refused = app.patient_sign_up(&form).await.unwrap().unwrap_err();
    assert!(refused[0].message.contains("do not match"), "the wrong last name is refused without saying which field");
    let short = SignUp { password: "short".into(), ..form.clone() };
    assert_eq!(app.patient_sign_up(&short).await.unwrap().unwrap_err()[0].field, "password");
    let good = SignUp { family: "patient".into(), ..form.clone() };
    let cookie = app.patient_sign_up(&good).await.unwrap().unwrap();
    assert!(app.patient_sign_up(&good).await.unwrap().is_err(), "a letter works once");
    let me = app.patient_signed_in(&cookie).await.unwrap();
    assert_eq!(me.who.holder, pat.id);
    let page = app.my_record(&me.who, None, &PageRequest::default()).await.unwrap();
    assert_eq!(page.entries.iter().map(|e| e.id).collect::<Vec<_>>(), vec![visible.id]);
    assert!(page.no_record.is_none());
    assert!(!format!("{:?}", page.entries).contains("SECRET"));
    // The view is audited as the patient.
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 20).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "record.view_online" && e.actor_kind == "patient"));
    // Sign in again with the username, in any case (wrong tries: tests/sign_in.rs).
    let again = app
        .patient_sign_in(
            Some(&letter.ods_code),
            "TEST.patient",
            "a patient password",
            &caldicott_app::auth::Client::default(),
        )
        .await
        .unwrap()
        .cookie;
    assert!(app.patient_signed_in(&again).await.is_ok());
    app.patient_sign_out(&again).await.unwrap();
    assert!(matches!(app.patient_signed_in(&again).await, Err(AppError::Unauthenticated(_))));

    // P5: appointments and messages, but no record (R22).
    let other = adult(&app, tp.practice.id).await.unwrap();
    fixtures::add_entries(&app, tp.practice.id, Some(other.id), &[consultation(&other, recent, "P5 cannot see")])
        .await
        .unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &reception, &other, "P5").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap();
    let page = app.my_record(&me.who, None, &PageRequest::default()).await.unwrap();
    assert!(page.entries.is_empty());
    assert!(page.no_record.unwrap().contains("needs to check who you are in full"));
    // Deregistered: signed out of everything (R6).
    app.deregister_patient(&reception, other.nhs_number.as_str(), "moved away").await.unwrap();
    assert!(matches!(app.patient_signed_in(&cookie).await, Err(AppError::Unauthenticated(_))));
}

async fn a_proxy_sees_the_record_they_act_for_within_scope(t: &TestStore) {
    // R15, R19, T3
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let child = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - Duration::days(365 * 6));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let stranger = adult(&app, tp.practice.id).await.unwrap();
    let link = fixtures::proxy_link(
        &app,
        tp.practice.id,
        &child,
        &parent,
        AccessLevel::Summary,
        caldicott_app::fixtures::today() - Duration::days(100),
    )
    .await
    .unwrap();
    let recent = caldicott_app::fixtures::now() - Duration::days(10);
    let consult = consultation(&child, recent, "SECRET consultation beyond the proxy's level");
    let mut med = consultation(&child, recent, "");
    med.body = EntryBody::Medication {
        drug: "Amoxicillin".into(),
        dosage: "5ml".into(),
        quantity: "100ml".into(),
        course: MedicationCourse::Acute,
    };
    fixtures::add_entries(&app, tp.practice.id, Some(child.id), &[consult, med.clone()]).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &parent, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let services = app.my_services(&me).await.unwrap();
    assert_eq!(services.len(), 2);
    assert_eq!(services[1].link, Some(link.id));
    assert!(services[1].scope.iter().any(|s| s.contains("Appointments")));
    let page = app.my_record(&me, Some(link.id), &PageRequest::default()).await.unwrap();
    assert_eq!(page.entries.iter().map(|e| e.id).collect::<Vec<_>>(), vec![med.id]);
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, child.id, 20).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "record.view_online" && e.actor_kind == "proxy"), "audited as the proxy");
    // Someone else's link does not answer for this account.
    let (_, _, theirs) = fixtures::patient_account(&app, &tp.clinician, &stranger, "P9").await.unwrap();
    let them = app.patient_signed_in(&theirs).await.unwrap().who;
    assert!(matches!(app.my_record(&them, Some(link.id), &PageRequest::default()).await, Err(AppError::NotFound(_))));
    assert_eq!(app.my_services(&them).await.unwrap().len(), 1);
    // A suspended link shows nothing of the record, and says so without a clinical reason.
    let mut suspended = link.clone();
    suspended.id = ProxyLinkId::from_uuid(caldicott_app::new_id());
    suspended.status = ProxyStatus::Suspended { since: caldicott_app::fixtures::today(), reason: "review".into() };
    app.store_for_tests()
        .create_proxy_link(tp.practice.id, &suspended, &fixtures::audit(Action::ProxyLinkCreate, Some(child.id)))
        .await
        .unwrap();
    let page = app.my_record(&me, Some(suspended.id), &PageRequest::default()).await.unwrap();
    assert!(page.entries.is_empty());
    assert!(page.no_record.unwrap().contains("do not have online access to this person's"));
}

async fn patients_see_who_looked_at_their_record_but_not_what_changed(t: &TestStore) {
    // T2: nothing in "who viewed my record" hints at a hidden entry
    use caldicott_app::redaction::VisibilityChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let entry = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(2), "to be hidden");
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), std::slice::from_ref(&entry)).await.unwrap();
    app.staff_record(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default()).await.unwrap();
    let hide = VisibilityChange::Hide { reason: HiddenReason::ThirdParty, note: "names a neighbour".into() };
    app.change_visibility(&tp.clinician, pat.nhs_number.as_str(), entry.id, &hide, false).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    app.my_record(&me, None, &PageRequest::default()).await.unwrap();
    let lines = app.my_record_activity(&me).await.unwrap();
    assert!(lines.iter().any(|l| l.who == "You" && l.what == "Viewed your record online"));
    let staff_line = lines.iter().find(|l| l.what == "Opened your record at the practice").unwrap();
    assert_eq!(staff_line.who, format!("Clinician, {}", tp.practice.name), "staff names are hidden by default");
    assert!(lines.iter().all(|l| !l.what.contains("hid") && !l.what.contains("visib")));
    // The practice may choose to name its staff.
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let input = caldicott_app::settings::SettingsInput {
        switch_on_day: "31".into(),
        switch_on_month: "10".into(),
        switch_on_year: "2023".into(),
        paused: false,
        pause_reason: String::new(),
        default_level: "full".into(),
        proxy_review_age: "11".into(),
        visible_online_by_default: true,
        show_staff_names_to_patients: true,
        cancel_cutoff_hours: "24".into(),
        accept_update_record: true,
        gp_connect_structured: true,
        gp_connect_documents: true,
        gp_connect_asid: String::new(),
    };
    app.change_practice_settings(&manager, &input).await.unwrap().unwrap();
    let lines = app.my_record_activity(&me).await.unwrap();
    let staff_line = lines.iter().find(|l| l.what == "Opened your record at the practice").unwrap();
    assert!(staff_line.who.starts_with(&format!("{}, Clinician", tp.clinician.name)), "{}", staff_line.who);
}

async fn clinic_tomorrow(
    app: &App,
    tp: &fixtures::TestPractice,
    online: bool,
) -> Vec<caldicott_core::appointments::Slot> {
    use caldicott_app::appointments::NewClinic;
    let day = caldicott_app::fixtures::today() + Duration::days(3);
    let f = NewClinic {
        others_bookable: false,
        ..caldicott_app::fixtures::clinic_form(tp, day, ("09:00", "10:00"), 15, if online { "100" } else { "0" })
    };
    let (clinic, n) = app.create_clinic(&tp.clinician, &f).await.unwrap().unwrap();
    assert_eq!(n, 4);
    app.appointment_book(&tp.clinician, clinic.date, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.slot)
        .filter(|s| s.clinic == clinic.id)
        .collect()
}

async fn patients_book_and_cancel_appointments_and_one_slot_never_holds_two(t: &TestStore) {
    // T46, R22 (P5 may book), R15 (a proxy needs the appointments permission)
    use caldicott_app::appointments::NewClinic;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    assert!(matches!(app.create_clinic(&admin, &NewClinic::default()).await, Err(AppError::Forbidden(_))));
    let bad = app.create_clinic(&tp.clinician, &NewClinic { start: "9am".into(), ..Default::default() }).await.unwrap();
    let fields: Vec<&str> = bad.unwrap_err().iter().map(|p| p.field).collect();
    assert!(fields.contains(&"clinician") && fields.contains(&"start") && fields.contains(&"day"), "{fields:?}");
    let slots = clinic_tomorrow(&app, &tp, true).await;
    let offline = clinic_tomorrow(&app, &tp, false).await;

    // Sixteen patients try for the same slot at once: exactly one gets it.
    let mut people = Vec::new();
    for _ in 0..16 {
        let p = adult(&app, tp.practice.id).await.unwrap();
        let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &p, "P5").await.unwrap();
        people.push(app.patient_signed_in(&cookie).await.unwrap().who);
    }
    let target = slots[0].id;
    let tries = people.iter().map(|me| {
        let app = app.clone();
        let me = me.clone();
        tokio::spawn(async move { app.book_online(&me, None, target).await })
    });
    let results: Vec<_> = futures_join(tries).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "one slot, one booking: {results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(AppError::Conflict(_)))));
    let book = app.appointment_book(&tp.clinician, slots[0].starts_at.date_naive(), 1).await.unwrap();
    assert_eq!(book.iter().filter(|l| l.slot.id == target && l.booking.is_some()).count(), 1);

    let me = &people[0];
    let free = app.bookable_slots(me, None).await.unwrap();
    assert!(!free.iter().any(|s| s.id == target), "a booked slot is not offered");
    assert!(!free.iter().any(|s| offline.iter().any(|o| o.id == s.id)), "a slot not bookable online is not offered");
    assert!(matches!(app.book_online(me, None, offline[0].id).await, Err(AppError::NotFound(_))));
    let (appt, _) = app.book_online(me, None, slots[1].id).await.unwrap();
    let (upcoming, _) = app.my_appointments(me, None).await.unwrap();
    assert!(upcoming.iter().any(|a| a.id == appt.id && a.can_cancel));
    // Someone else cannot cancel it.
    assert!(matches!(app.cancel_online(&people[1], None, appt.id).await, Err(AppError::NotFound(_))));
    app.cancel_online(me, None, appt.id).await.unwrap();
    assert!(app.bookable_slots(me, None).await.unwrap().iter().any(|s| s.id == slots[1].id), "free again");
    // Within the cut-off, cancelling online is refused.
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let strict = caldicott_app::settings::SettingsInput {
        switch_on_day: "31".into(),
        switch_on_month: "10".into(),
        switch_on_year: "2023".into(),
        default_level: "full".into(),
        proxy_review_age: "11".into(),
        visible_online_by_default: true,
        cancel_cutoff_hours: "96".into(),
        ..Default::default()
    };
    app.change_practice_settings(&manager, &strict).await.unwrap().unwrap();
    let (late, _) = app.book_online(me, None, slots[2].id).await.unwrap();
    assert!(matches!(app.cancel_online(me, None, late.id).await, Err(AppError::Conflict(_))));
    // Bookings are audited against the patient.
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, me.holder, 20).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "appointment.cancel" && e.actor_kind == "patient"));

    // A proxy without the appointments permission cannot book for the patient.
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let child = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - Duration::days(365 * 5));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let mut link = fixtures::proxy_link(
        &app,
        tp.practice.id,
        &child,
        &parent,
        AccessLevel::None,
        caldicott_app::fixtures::today(),
    )
    .await
    .unwrap();
    link.id = ProxyLinkId::from_uuid(caldicott_app::new_id());
    link.scope.appointments = false;
    app.store_for_tests()
        .create_proxy_link(tp.practice.id, &link, &fixtures::audit(Action::ProxyLinkCreate, Some(child.id)))
        .await
        .unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &parent, "P9").await.unwrap();
    let parent_me = app.patient_signed_in(&cookie).await.unwrap().who;
    assert!(matches!(app.book_online(&parent_me, Some(link.id), slots[3].id).await, Err(AppError::Forbidden(_))));
}

pub(crate) async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

async fn repeat_requests_become_tasks_a_clinician_decides_item_by_item(t: &TestStore) {
    // R12 (issues link to their template), R19, T1 (a hidden template is never offered)
    use caldicott_app::redaction::VisibilityChange;
    use caldicott_core::tasks::{ItemDecision, TaskBody, TaskStatus};
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let med = |drug: &str| {
        let mut e = consultation(&pat, caldicott_app::fixtures::now() - Duration::days(30), "");
        e.body = EntryBody::Medication {
            drug: drug.into(),
            dosage: "One daily".into(),
            quantity: "28 tablets".into(),
            course: MedicationCourse::RepeatTemplate,
        };
        e
    };
    let (a, b, hidden) = (med("Amlodipine 5mg"), med("Atorvastatin 20mg"), med("SECRET-DRUG"));
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &[a.clone(), b.clone(), hidden.clone()]).await.unwrap();
    let hide = VisibilityChange::Hide { reason: HiddenReason::PotentiallyHarmful, note: "not yet discussed".into() };
    app.change_visibility(&tp.clinician, pat.nhs_number.as_str(), hidden.id, &hide, false).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    app.nominate_pharmacy(&reception, pat.nhs_number.as_str(), "fa123", "Riverside Pharmacy").await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let page = app.repeat_page(&me, None).await.unwrap();
    assert_eq!(page.orderable.iter().map(|o| o.drug.as_str()).collect::<Vec<_>>().len(), 2);
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 20).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "record.view_online" && e.detail.starts_with("repeat prescriptions")));
    assert!(page.orderable.iter().all(|o| o.drug != "SECRET-DRUG"), "a hidden template is never offered");
    assert_eq!(page.pharmacy, Some(("FA123".into(), "Riverside Pharmacy".into())));
    let refused = app.request_repeats(&me, None, &[hidden.id], "").await.unwrap().unwrap_err();
    assert_eq!(refused[0].field, "items");
    assert!(app.request_repeats(&me, None, &[], "").await.unwrap().is_err());
    let task = app.request_repeats(&me, None, &[a.id, b.id], "Going on holiday").await.unwrap().unwrap();
    let open = app.task_list(&reception, false).await.unwrap();
    assert!(open.iter().any(|(t, p)| t.id == task.id && p.id == pat.id));
    app.view_task(&reception, task.id).await.unwrap();
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 20).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "task.view" && e.actor_kind == "staff"));
    assert!(matches!(app.decide_repeat_item(&reception, task.id, a.id, true, "").await, Err(AppError::Forbidden(_))));
    assert!(matches!(
        app.decide_repeat_item(&tp.clinician, task.id, b.id, false, " ").await,
        Err(AppError::BadRequest(_))
    ));
    app.decide_repeat_item(&tp.clinician, task.id, a.id, true, "").await.unwrap();
    let done = app.decide_repeat_item(&tp.clinician, task.id, b.id, false, "Blood test due first").await.unwrap();
    assert_eq!(done.status, TaskStatus::Done);
    assert!(matches!(app.decide_repeat_item(&tp.clinician, task.id, b.id, true, "").await, Err(AppError::Conflict(_))));
    // The approved item is issued from its template.
    let staff = app
        .staff_record(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(staff
        .entries
        .iter()
        .any(|e| matches!(e.entry.body, EntryBody::MedicationIssue { template: Some(t), .. } if t == a.id)));
    // The patient sees each decision and the reason.
    let page = app.repeat_page(&me, None).await.unwrap();
    let TaskBody::Repeat { items, .. } = &page.requests[0].body else { panic!("a repeat") };
    let item_b = items.iter().find(|i| i.template == b.id).unwrap();
    assert!(matches!(&item_b.decision, ItemDecision::Rejected { reason, .. } if reason == "Blood test due first"));
}

async fn repeats_offered_online_go_through_the_engine_whole(t: &TestStore) {
    // R8, R13: the repeat list is decided per viewer by the visibility engine, with no cap: a
    // long-standing template behind more than a thousand newer medicine entries is still offered,
    // and a patient whose own level is None is offered nothing.
    use caldicott_app::access_panel::AccessChange;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let now = app.now();
    let mut template = consultation(&pat, now - Duration::days(3000), "");
    template.body = EntryBody::Medication {
        drug: "Levothyroxine 100 microgram tablets".into(),
        dosage: "One each morning".into(),
        quantity: "28 tablet".into(),
        course: MedicationCourse::RepeatTemplate,
    };
    template.event_date = caldicott_core::uk::uk_date(now - Duration::days(3000));
    // The template was started before automatic access began: it is still a current medicine.
    let issues: Vec<Entry> = (0..1005)
        .map(|i| {
            let mut e = consultation(&pat, now - Duration::days(1000) + Duration::minutes(i), "");
            e.body = EntryBody::MedicationIssue {
                drug: format!("Paracetamol 500mg tablets, batch {i}"),
                dosage: "Two when needed".into(),
                quantity: "32 tablet".into(),
                template: None,
            };
            e
        })
        .collect();
    let mut all = vec![template.clone()];
    all.extend(issues);
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &all).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let page = app.repeat_page(&me, None).await.unwrap();
    assert_eq!(page.orderable.iter().map(|o| o.template).collect::<Vec<_>>(), vec![template.id]);
    let none =
        AccessChange::SetLevel { level: AccessLevel::None, from: RecordFrom::Beginning, historic_confirmed: false };
    app.change_access(&tp.clinician, pat.nhs_number.as_str(), &none).await.unwrap();
    let page = app.repeat_page(&me, None).await.unwrap();
    assert!(page.orderable.is_empty(), "no record access: no medicine from the record is listed");
    let refused = app.request_repeats(&me, None, &[template.id], "").await.unwrap().unwrap_err();
    assert_eq!(refused[0].field, "items");
}

async fn messages_to_the_practice_get_an_outcome(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let bad = app.send_request(&me, "repeat_request", "").await.unwrap().unwrap_err();
    assert_eq!(bad.iter().map(|p| p.field).collect::<Vec<_>>(), vec!["kind", "text"]);
    let task = app.send_request(&me, "record_disagreement", "The allergy to nuts is wrong").await.unwrap().unwrap();
    assert!(matches!(app.close_request(&tp.clinician, task.id, " ").await, Err(AppError::BadRequest(_))));
    app.close_request(&tp.clinician, task.id, "Removed after checking with the hospital").await.unwrap();
    let mine = app.my_requests(&me).await.unwrap();
    assert_eq!(mine[0].outcome.as_deref(), Some("Removed after checking with the hospital"));
    assert!(matches!(app.close_request(&tp.clinician, task.id, "again").await, Err(AppError::Conflict(_))));
}

async fn staff_record_grant_refuse_suspend_and_reactivate_proxy_access(t: &TestStore) {
    // R14–R20
    use caldicott_app::proxies::{ProxyChange, ProxyRequest};
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let child = fixtures::person(tp.practice.id, caldicott_app::fixtures::today() - Duration::days(365 * 6));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let stranger = adult(&app, tp.practice.id).await.unwrap();
    let nhs = child.nhs_number.as_str();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let req = ProxyRequest {
        applicant_nhs: parent.nhs_number.as_str().into(),
        relationship: "Mother".into(),
        basis: "child_not_competent".into(),
        appointments: true,
        prescriptions: true,
        record_level: "summary".into(),
        record_from: "grant".into(),
        outcome: "grant".into(),
        ..Default::default()
    };
    assert!(matches!(app.record_proxy_request(&reception, nhs, &req).await, Err(AppError::Forbidden(_))));
    let bad = ProxyRequest { applicant_nhs: nhs.into(), basis: "whim".into(), outcome: String::new(), ..req.clone() };
    let fields: Vec<&str> = app
        .record_proxy_request(&tp.clinician, nhs, &bad)
        .await
        .unwrap()
        .unwrap_err()
        .iter()
        .map(|p| p.field)
        .collect();
    assert_eq!(fields, vec!["applicant_nhs", "basis", "outcome"]);
    let link = app.record_proxy_request(&tp.clinician, nhs, &req).await.unwrap().unwrap();
    assert_eq!(link.status, ProxyStatus::Active);
    let dup = app.record_proxy_request(&tp.clinician, nhs, &req).await.unwrap().unwrap_err();
    assert!(dup[0].message.contains("already has proxy access"));
    // A refusal is kept on record (R17) and gives nothing.
    let refuse = ProxyRequest {
        applicant_nhs: stranger.nhs_number.as_str().into(),
        relationship: "Neighbour".into(),
        basis: "best_interests".into(),
        outcome: "refuse".into(),
        refusal_reason: "No evidence of a caring role".into(),
        ..req.clone()
    };
    let refused = app.record_proxy_request(&tp.clinician, nhs, &refuse).await.unwrap().unwrap();
    assert!(matches!(refused.status, ProxyStatus::Refused { .. }));
    let (_, rows) = app.proxy_overview(&reception, nhs).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r.lapse.as_deref().is_some_and(|l| l.contains("refused"))));
    // Suspend, reactivate, change scope, end; each audited with old and new.
    let suspend = ProxyChange::Suspend { reason: "Concern raised".into() };
    assert!(matches!(
        app.change_proxy(&tp.clinician, nhs, link.id, &ProxyChange::Suspend { reason: " ".into() }).await,
        Err(AppError::BadRequest(_))
    ));
    app.change_proxy(&tp.clinician, nhs, link.id, &suspend).await.unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &parent, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    assert!(
        matches!(app.bookable_slots(&me, Some(link.id)).await, Err(AppError::Forbidden(_))),
        "a suspended link stops every service"
    );
    app.change_proxy(&tp.clinician, nhs, link.id, &ProxyChange::Reactivate).await.unwrap();
    assert!(app.bookable_slots(&me, Some(link.id)).await.is_ok());
    let scope = ProxyChange::Scope { appointments: false, prescriptions: true, record: AccessLevel::Summary };
    app.change_proxy(&tp.clinician, nhs, link.id, &scope).await.unwrap();
    assert!(matches!(app.bookable_slots(&me, Some(link.id)).await, Err(AppError::Forbidden(_))));
    app.change_proxy(&tp.clinician, nhs, link.id, &ProxyChange::End { reason: "Family moved".into() }).await.unwrap();
    assert!(matches!(
        app.change_proxy(&tp.clinician, nhs, link.id, &ProxyChange::Reactivate).await,
        Err(AppError::Conflict(_))
    ));
    assert_eq!(app.my_services(&me).await.unwrap().len(), 1, "an ended link is gone from the proxy's services");
    assert!(app.patient_signed_in(&cookie).await.is_ok(), "ending a link keeps the proxy's own account (R20)");
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, child.id, 50).await.unwrap();
    assert_eq!(trail.iter().filter(|e| e.action == "proxy.link_update").count(), 4);

    // R18: a link granted six years ago and never used is flagged; one used last month is not.
    let adult_patient = adult(&app, tp.practice.id).await.unwrap();
    let long_ago = caldicott_app::fixtures::today() - Duration::days(365 * 6);
    let idle_proxy = adult(&app, tp.practice.id).await.unwrap();
    let busy_proxy = adult(&app, tp.practice.id).await.unwrap();
    let idle = fixtures::proxy_link(&app, tp.practice.id, &adult_patient, &idle_proxy, AccessLevel::Summary, long_ago)
        .await
        .unwrap();
    let busy = fixtures::proxy_link(&app, tp.practice.id, &adult_patient, &busy_proxy, AccessLevel::Summary, long_ago)
        .await
        .unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &busy_proxy, "P9").await.unwrap();
    let busy_me = app.patient_signed_in(&cookie).await.unwrap().who;
    app.my_record(&busy_me, Some(busy.id), &PageRequest::default()).await.unwrap();
    let (_, rows) = app.proxy_overview(&tp.clinician, adult_patient.nhs_number.as_str()).await.unwrap();
    let flag = |id: ProxyLinkId| rows.iter().find(|r| r.link.id == id).map(|r| (r.unused, r.last_used.is_some()));
    assert_eq!(flag(idle.id), Some((true, false)));
    assert_eq!(flag(busy.id), Some((false, true)));
}

/// An app on a clock that tests move by hours, a practice, a child who reaches `age` in ten
/// days, and their parent's proxy link at `level` from the beginning of the record, granted
/// `granted_days_ago`: (app, clock offset, practice, child, parent, link).
async fn child_reaching(
    t: &TestStore,
    age: u32,
    level: AccessLevel,
    granted_days_ago: i64,
) -> (
    App,
    Arc<std::sync::atomic::AtomicI64>,
    fixtures::TestPractice,
    caldicott_core::patient::Patient,
    caldicott_core::patient::Patient,
    ProxyLink,
) {
    use std::sync::atomic::{AtomicI64, Ordering};
    let offset = Arc::new(AtomicI64::new(0));
    let clock_offset = offset.clone();
    let app = App::new(
        t.store.clone(),
        Arc::new(move || caldicott_app::fixtures::now() + Duration::hours(clock_offset.load(Ordering::SeqCst))),
    );
    let tp = fixtures::practice(&app).await.unwrap();
    let today = caldicott_app::fixtures::today();
    let dob = caldicott_core::patient::birthday(today + Duration::days(10), 0) - chrono::Months::new(12 * age);
    let child = fixtures::person(tp.practice.id, dob);
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let parent = adult(&app, tp.practice.id).await.unwrap();
    let mut link =
        fixtures::proxy_link(&app, tp.practice.id, &child, &parent, level, today - Duration::days(granted_days_ago))
            .await
            .unwrap();
    link.id = ProxyLinkId::from_uuid(caldicott_app::new_id());
    link.scope.record_from = RecordFrom::Beginning;
    app.store_for_tests()
        .create_proxy_link(tp.practice.id, &link, &fixtures::audit(Action::ProxyLinkCreate, Some(child.id)))
        .await
        .unwrap();
    (app, offset, tp, child, parent, link)
}

async fn a_parents_access_ends_at_sixteen_as_the_clock_passes_it(t: &TestStore) {
    // R16, T3, H38: on the child's 16th birthday a parent's access ends by itself, whatever it
    // was granted: the next request after the birthday sees nothing and every service stops,
    // with notice before it.
    use std::sync::atomic::Ordering;
    // The child turns 16 in ten days; the link was granted at 14, after the review age, with
    // full access from the beginning.
    let (app, offset, tp, child, parent, link) = child_reaching(t, 16, AccessLevel::Full, 700).await;
    let visit = consultation(&child, caldicott_app::fixtures::now() - Duration::days(30), "SIXTEEN-VISIT");
    fixtures::add_entries(&app, tp.practice.id, Some(child.id), std::slice::from_ref(&visit)).await.unwrap();
    let (username, password, cookie) = fixtures::patient_account(&app, &tp.clinician, &parent, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    assert_eq!(app.my_record(&me, Some(link.id), &PageRequest::default()).await.unwrap().entries.len(), 1);
    let services = app.my_services(&me).await.unwrap();
    let notice = services.iter().find(|s| s.link == Some(link.id)).unwrap().notice.clone().unwrap();
    assert!(notice.contains("turns 16"), "{notice}");
    // Noon (UK) on the day before the birthday, whatever the hour the test starts at: still
    // there. (Nine days of hours would reach the birthday itself when the test starts just
    // before midnight; the clock suite found that.)
    let day_before_noon =
        caldicott_core::uk::uk_start_of(caldicott_app::fixtures::today() + Duration::days(9)) + Duration::hours(12);
    offset.store((day_before_noon - caldicott_app::fixtures::now()).num_hours(), Ordering::SeqCst);
    let ods = tp.practice.ods_code.as_str();
    let sign_in = |app: App, username: String, password: String| async move {
        let cookie = app
            .patient_sign_in(Some(ods), &username, &password, &caldicott_app::auth::Client::default())
            .await
            .unwrap()
            .cookie;
        app.patient_signed_in(&cookie).await.unwrap().who
    };
    let me = sign_in(app.clone(), username.clone(), password.clone()).await;
    assert_eq!(app.my_record(&me, Some(link.id), &PageRequest::default()).await.unwrap().entries.len(), 1);
    // On the birthday: nothing, and every service stops.
    offset.store(10 * 24 + 2, Ordering::SeqCst);
    let me = sign_in(app.clone(), username, password).await;
    let page = app.my_record(&me, Some(link.id), &PageRequest::default()).await.unwrap();
    assert!(page.entries.is_empty(), "a parent sees nothing of a 16-year-old's record");
    assert!(matches!(app.bookable_slots(&me, Some(link.id)).await, Err(AppError::Forbidden(_))));
    let services = app.my_services(&me).await.unwrap();
    let why = services.iter().find(|s| s.link == Some(link.id)).unwrap().unavailable.clone().unwrap();
    assert!(why.contains("turned 16"), "{why}");
}

async fn a_parents_access_pauses_at_the_review_age_as_the_clock_passes_it(t: &TestStore) {
    // R16, T3: the next request after the review birthday is refused, with notice before it
    use std::sync::atomic::Ordering;
    // The child turns 11 in ten days.
    let (app, offset, tp, child, parent, link) = child_reaching(t, 11, AccessLevel::Summary, 400).await;
    let mut med = consultation(&child, caldicott_app::fixtures::now() - Duration::days(30), "");
    med.body = EntryBody::Medication {
        drug: "Salbutamol".into(),
        dosage: "2 puffs".into(),
        quantity: "1".into(),
        course: MedicationCourse::Acute,
    };
    fixtures::add_entries(&app, tp.practice.id, Some(child.id), std::slice::from_ref(&med)).await.unwrap();
    let (username, password, cookie) = fixtures::patient_account(&app, &tp.clinician, &parent, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let page = app.my_record(&me, Some(link.id), &PageRequest::default()).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    let services = app.my_services(&me).await.unwrap();
    let notice = services.iter().find(|s| s.link == Some(link.id)).unwrap().notice.clone().unwrap();
    assert!(notice.contains("will be paused for review") && notice.contains("turns 11"), "{notice}");
    // Ten days and two hours on, the child is 11 (two hours more than ten days of 24 hours, so
    // that the UK date has moved ten days even across the autumn clock change): the very next
    // request sees nothing, and every service stops.
    offset.store(10 * 24 + 2, Ordering::SeqCst);
    assert!(app.patient_signed_in(&cookie).await.is_err(), "the old session has long expired");
    let ods = tp.practice.ods_code.as_str();
    let cookie = app
        .patient_sign_in(Some(ods), &username, &password, &caldicott_app::auth::Client::default())
        .await
        .unwrap()
        .cookie;
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let page = app.my_record(&me, Some(link.id), &PageRequest::default()).await.unwrap();
    assert!(page.entries.is_empty());
    assert!(matches!(app.bookable_slots(&me, Some(link.id)).await, Err(AppError::Forbidden(_))));
    let services = app.my_services(&me).await.unwrap();
    assert!(services
        .iter()
        .find(|s| s.link == Some(link.id))
        .unwrap()
        .unavailable
        .as_deref()
        .unwrap()
        .contains("turned 11"));
    // After review, staff reactivate it: a re-grant from today carries on until 16.
    app.change_proxy(
        &tp.clinician,
        child.nhs_number.as_str(),
        link.id,
        &caldicott_app::proxies::ProxyChange::Reactivate,
    )
    .await
    .unwrap();
    assert_eq!(app.my_record(&me, Some(link.id), &PageRequest::default()).await.unwrap().entries.len(), 1);
    // A link with an end date lapses after it; reactivating it starts it again without one.
    let carer = adult(&app, tp.practice.id).await.unwrap();
    let end = caldicott_core::uk::uk_date(caldicott_app::fixtures::now() + Duration::days(12));
    let req = caldicott_app::proxies::ProxyRequest {
        applicant_nhs: carer.nhs_number.as_str().into(),
        relationship: "Grandmother".into(),
        basis: "child_not_competent".into(),
        appointments: true,
        record_level: "summary".into(),
        record_from: "beginning".into(),
        end_day: end.format("%d").to_string(),
        end_month: end.format("%m").to_string(),
        end_year: end.format("%Y").to_string(),
        outcome: "grant".into(),
        ..Default::default()
    };
    let granny = app.record_proxy_request(&tp.clinician, child.nhs_number.as_str(), &req).await.unwrap().unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &carer, "P9").await.unwrap();
    let her = app.patient_signed_in(&cookie).await.unwrap().who;
    assert_eq!(app.my_record(&her, Some(granny.id), &PageRequest::default()).await.unwrap().entries.len(), 1);
    offset.store(13 * 24 + 2, Ordering::SeqCst);
    assert!(app.my_record(&her, Some(granny.id), &PageRequest::default()).await.unwrap().entries.is_empty());
    assert!(matches!(app.bookable_slots(&her, Some(granny.id)).await, Err(AppError::Forbidden(_))));
    let again = app
        .change_proxy(
            &tp.clinician,
            child.nhs_number.as_str(),
            granny.id,
            &caldicott_app::proxies::ProxyChange::Reactivate,
        )
        .await
        .unwrap();
    assert_eq!(again.ends_on, None);
    assert_eq!(app.my_record(&her, Some(granny.id), &PageRequest::default()).await.unwrap().entries.len(), 1);
}

async fn nhs_login_matches_the_registered_patient_by_nhs_number_and_birth_date(t: &TestStore) {
    // R22: P9 sees the record, P5 does not; a mismatch is refused and audited
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    fixtures::add_entries(
        &app,
        tp.practice.id,
        Some(pat.id),
        &[consultation(&pat, caldicott_app::fixtures::now() - Duration::days(2), "seen")],
    )
    .await
    .unwrap();
    let iss = "https://auth.example.nhs";
    let dob = pat.date_of_birth;
    let wrong = app.nhs_login_sign_in(iss, "sub-1", IdentityLevel::P9, &pat.nhs_number, dob + Duration::days(1)).await;
    assert!(matches!(wrong, Err(AppError::Forbidden(m)) if m.contains("date of birth")));
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 10).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "patient.sign_in_failed"));
    let unknown = caldicott_core::NhsNumber::from_first_nine(999_099_900)
        .or_else(|| caldicott_core::NhsNumber::from_first_nine(999_099_901))
        .unwrap();
    assert!(matches!(
        app.nhs_login_sign_in(iss, "sub-2", IdentityLevel::P9, &unknown, dob).await,
        Err(AppError::Forbidden(_))
    ));
    let cookie = app.nhs_login_sign_in(iss, "sub-1", IdentityLevel::P9, &pat.nhs_number, dob).await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    assert_eq!(me.identity, IdentityLevel::P9);
    assert_eq!(app.my_record(&me, None, &PageRequest::default()).await.unwrap().entries.len(), 1);
    // The same subject again: the same account, now at P5 (no record, R22).
    let cookie = app.nhs_login_sign_in(iss, "sub-1", IdentityLevel::P5, &pat.nhs_number, dob).await.unwrap();
    let again = app.patient_signed_in(&cookie).await.unwrap().who;
    assert_eq!(again.account, me.account);
    let page = app.my_record(&again, None, &PageRequest::default()).await.unwrap();
    assert!(page.entries.is_empty() && page.no_record.is_some());
    // Another subject cannot take over the patient's NHS login account.
    let other = app.nhs_login_sign_in(iss, "sub-3", IdentityLevel::P9, &pat.nhs_number, dob).await.unwrap();
    assert_ne!(app.patient_signed_in(&other).await.unwrap().who.account, me.account);
}

fn link_request(
    letter: &caldicott_app::patient_services::LinkageLetter,
    family: &str,
    born: chrono::NaiveDate,
) -> caldicott_app::apps::LinkRequest {
    caldicott_app::apps::LinkRequest {
        ods_code: letter.ods_code.clone(),
        account_id: letter.account_id.clone(),
        linkage_key: letter.linkage_key.clone(),
        family_name: family.into(),
        birth_date: born.to_string(),
    }
}

async fn an_app_links_with_the_letter_and_raises_a_safety_net_task(t: &TestStore) {
    // R21, R23, R38-R40, T8
    use caldicott_app::apps::AlertOutcome;
    use caldicott_core::messages::{Channel, NO_PREFERENCE};
    use caldicott_core::tasks::{TaskKind, TaskStatus};
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    assert!(matches!(app.register_app(&reception, "x", "y", "").await, Err(AppError::Forbidden(_))));
    let (registered, secret) = app.register_app(&admin, "Health Wallet", "Wallet Ltd", "").await.unwrap();
    // A patient with an email address but no recorded preference, and hidden entries.
    let mut pat = fixtures::person(tp.practice.id, fixtures::date(1980, 5, 17));
    pat.contact.email = Some("pat@example.com".into());
    app.store_for_tests()
        .create_patient(tp.practice.id, &pat, &fixtures::audit(Action::PatientCreate, Some(pat.id)))
        .await
        .unwrap();
    let hidden = withheld_entries(&pat, caldicott_app::fixtures::now() - Duration::days(1), "SECRET");
    fixtures::add_entries(&app, tp.practice.id, Some(pat.id), &hidden).await.unwrap();
    let letter = app.issue_linkage(&reception, pat.nhs_number.as_str(), "P9").await.unwrap();
    // The patient makes their own account with the letter; an app may still link with it.
    let cookie = app
        .patient_sign_up(&caldicott_app::patient_services::SignUp {
            ods_code: letter.ods_code.clone(),
            account_id: letter.account_id.clone(),
            linkage_key: letter.linkage_key.clone(),
            family: "Patient".into(),
            birth_day: "17".into(),
            birth_month: "5".into(),
            birth_year: "1980".into(),
            username: format!("apps.{}", pat.id),
            password: "a patient password".into(),
        })
        .await
        .unwrap()
        .unwrap();
    let good = link_request(&letter, "Patient", pat.date_of_birth);
    assert!(matches!(app.link_app(&registered.client_id, "wrong", &good).await, Err(AppError::Unauthenticated(_))));
    let wrong_name = link_request(&letter, "Someone", pat.date_of_birth);
    assert!(matches!(app.link_app(&registered.client_id, &secret, &wrong_name).await, Err(AppError::Forbidden(_))));
    let (link, token) = app.link_app(&registered.client_id, &secret, &good).await.unwrap();
    let (_, found, _) = app.app_link_of_token(&token).await.unwrap();
    assert_eq!(found.id, link.id);
    // The task appears; with no preference, actioning it says to contact the patient by hand.
    let tasks = app.task_list(&reception, false).await.unwrap();
    let (task, _) =
        tasks.iter().find(|(t, p)| p.id == pat.id && t.kind == TaskKind::OnlineServicesLinked).unwrap().clone();
    assert_eq!(app.action_alert(&reception, task.id, false).await.unwrap(), AlertOutcome::Manual(NO_PREFERENCE.into()));
    assert_eq!(app.open_task(&reception, task.id).await.unwrap().0.status, TaskStatus::Open);
    // Sent anyway by email, audited as the member of staff's choice.
    assert_eq!(app.action_alert(&reception, task.id, true).await.unwrap(), AlertOutcome::Sent(Channel::Email));
    assert!(matches!(app.action_alert(&reception, task.id, true).await, Err(AppError::Conflict(_))));
    let messages = app.store_for_tests().messages_for_patient(tp.practice.id, pat.id).await.unwrap();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(
        (m.channel, m.recipient.as_str(), m.purpose.as_str()),
        (Channel::Email, "pat@example.com", "safety_net")
    );
    assert!(m.body.starts_with("T.P., your GP record at Test Surgery"), "{}", m.body);
    // T8: nothing hidden, and nothing personal in the reference (the message id).
    for text in [&m.body, &m.subject, &m.idempotency_key] {
        assert!(!text.contains("SECRET"), "hidden content in a message: {text}");
    }
    for personal in [pat.nhs_number.as_str(), "Patient", "pat@example.com"] {
        assert!(!m.idempotency_key.contains(personal) && !m.id.to_string().contains(personal));
    }
    // SMS preferred, but the latest SMS consent code is a dissent: no automatic SMS (R40).
    let mut texter = fixtures::person(tp.practice.id, fixtures::date(1975, 1, 2));
    texter.contact.mobile = Some("07700 900111".into());
    texter.contact.address = caldicott_core::practice::PostalAddress {
        lines: vec!["2 Test Road".into(), "Testville".into()],
        postcode: "TE1 2TR".into(),
    };
    texter.preferred_contact = caldicott_core::patient::PreferredContactMethod::Sms;
    app.store_for_tests()
        .create_patient(tp.practice.id, &texter, &fixtures::audit(Action::PatientCreate, Some(texter.id)))
        .await
        .unwrap();
    let mut dissent = consultation(&texter, caldicott_app::fixtures::now() - Duration::days(3), "");
    dissent.body = EntryBody::Coded { value: None };
    dissent.code = Some(caldicott_core::snomed::Coding {
        concept: caldicott_core::snomed::ConceptId::parse(caldicott_core::snomed::SMS_DISSENT).unwrap(),
        term: "Dissent from SMS".into(),
    });
    fixtures::add_entries(&app, tp.practice.id, Some(texter.id), &[dissent]).await.unwrap();
    let letter = app.issue_linkage(&reception, texter.nhs_number.as_str(), "P9").await.unwrap();
    app.link_app(&registered.client_id, &secret, &link_request(&letter, "Patient", texter.date_of_birth))
        .await
        .unwrap();
    let (task, _) =
        app.task_list(&reception, false).await.unwrap().into_iter().find(|(_, p)| p.id == texter.id).unwrap();
    assert!(matches!(app.action_alert(&reception, task.id, false).await.unwrap(), AlertOutcome::Manual(_)));
    assert!(
        matches!(app.action_alert(&reception, task.id, true).await.unwrap(), AlertOutcome::Manual(m) if m.contains("No email"))
    );
    // By letter instead: the practice prints and posts it; the message waits until it is posted.
    use caldicott_core::messages::MessageStatus;
    assert_eq!(app.letter_alert(&reception, task.id).await.unwrap(), AlertOutcome::Sent(Channel::Letter));
    let letter = app.store_for_tests().messages_for_patient(tp.practice.id, texter.id).await.unwrap().remove(0);
    assert_eq!((letter.channel, letter.status), (Channel::Letter, MessageStatus::Printing));
    let courier: Arc<dyn caldicott_app::outbox::Courier> = Arc::new(caldicott_app::outbox::LogCourier);
    app.deliver_due(&courier, 10).await.unwrap();
    let still = app.store_for_tests().messages_for_patient(tp.practice.id, texter.id).await.unwrap().remove(0);
    assert_eq!(still.status, MessageStatus::Printing, "a letter to post is not the worker's");
    let (post, _) = app
        .task_list(&reception, false)
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.kind == TaskKind::PostLetter)
        .unwrap();
    let caldicott_core::tasks::TaskBody::Letter { text, .. } = &post.body else { panic!("a letter") };
    assert!(text.contains("Dear Test Patient") && text.contains("T.P., your GP record at") && !text.contains("SECRET"));
    app.letter_posted(&reception, post.id).await.unwrap();
    assert!(matches!(app.letter_posted(&reception, post.id).await, Err(AppError::Conflict(_))));
    let letter = app.store_for_tests().messages_for_patient(tp.practice.id, texter.id).await.unwrap().remove(0);
    assert_eq!(letter.status, MessageStatus::Sent);
    // The patient's own messages never include the practice's internal tasks.
    let (_, _, texter_cookie) = fixtures::patient_account(&app, &tp.clinician, &texter, "P9").await.unwrap();
    let texter_me = app.patient_signed_in(&texter_cookie).await.unwrap().who;
    assert!(app.my_requests(&texter_me).await.unwrap().is_empty());
    // The patient sees the app and cuts it off.
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    assert_eq!(app.my_apps(&me).await.unwrap().len(), 1);
    app.revoke_my_app(&me, link.id).await.unwrap();
    assert!(matches!(app.app_link_of_token(&token).await, Err(AppError::Unauthenticated(_))));
    assert!(matches!(app.revoke_my_app(&me, link.id).await, Err(AppError::NotFound(_))));
}

async fn regenerating_the_linkage_key_cuts_off_every_app_at_once(t: &TestStore) {
    // R21
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (a1, s1) = app.register_app(&admin, "App One", "One Ltd", "").await.unwrap();
    let (a2, s2) = app.register_app(&admin, "App Two", "Two Ltd", "").await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let letter = app.issue_linkage(&tp.clinician, pat.nhs_number.as_str(), "P9").await.unwrap();
    let req = link_request(&letter, "Patient", pat.date_of_birth);
    let (_, t1) = app.link_app(&a1.client_id, &s1, &req).await.unwrap();
    let (_, t2) = app.link_app(&a2.client_id, &s2, &req).await.unwrap();
    assert!(app.app_link_of_token(&t1).await.is_ok() && app.app_link_of_token(&t2).await.is_ok());
    let fresh = app.issue_linkage(&tp.clinician, pat.nhs_number.as_str(), "P9").await.unwrap();
    assert!(app.app_link_of_token(&t1).await.is_err(), "the first app is cut off at once");
    assert!(app.app_link_of_token(&t2).await.is_err(), "and the second");
    assert!(app.link_app(&a1.client_id, &s1, &req).await.is_err(), "the old key links nothing");
    let (_, t3) = app.link_app(&a1.client_id, &s1, &link_request(&fresh, "Patient", pat.date_of_birth)).await.unwrap();
    assert_eq!(app.reset_app_links(&tp.clinician, pat.nhs_number.as_str()).await.unwrap(), 1);
    assert!(app.app_link_of_token(&t3).await.is_err(), "reset third-party links revokes all");
    let links = app.patient_apps(&tp.clinician, pat.nhs_number.as_str()).await.unwrap();
    assert_eq!(links.len(), 3);
    assert!(links.iter().all(|(l, _)| l.revoked_at.is_some()));
    // Overdue alerts show on the dashboard after a day.
    let later = App::new(t.store.clone(), Arc::new(|| caldicott_app::fixtures::now() + Duration::hours(25)));
    assert_eq!(later.overdue_alerts(&tp.clinician).await.unwrap(), 3);
    assert_eq!(app.overdue_alerts(&tp.clinician).await.unwrap(), 0);
}

async fn staff_send_a_preset_by_the_patients_channel(t: &TestStore) {
    // R38, R42: the channel follows the preference; text messages show fragments and cost
    use caldicott_core::messages::{Channel, MessageStatus, SAFETY_NET_NAME};
    use caldicott_core::patient::PreferredContactMethod;
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let mut by_post = fixtures::person(tp.practice.id, fixtures::date(1950, 1, 1));
    by_post.preferred_contact = PreferredContactMethod::Letter;
    by_post.contact.email = Some("has@example.com".into());
    by_post.contact.address =
        caldicott_core::practice::PostalAddress { lines: vec!["1 Lane".into()], postcode: "TE1 1AA".into() };
    let mut by_text = fixtures::person(tp.practice.id, fixtures::date(1990, 1, 1));
    by_text.preferred_contact = PreferredContactMethod::Sms;
    by_text.contact.mobile = Some("07700 900222".into());
    let nothing = fixtures::person(tp.practice.id, fixtures::date(1991, 1, 1));
    for p in [&by_post, &by_text, &nothing] {
        app.store_for_tests()
            .create_patient(tp.practice.id, p, &fixtures::audit(Action::PatientCreate, Some(p.id)))
            .await
            .unwrap();
    }
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    assert!(matches!(
        app.compose(&reception, by_post.nhs_number.as_str(), "no such preset").await,
        Err(AppError::BadRequest(_))
    ));
    let letter = app.compose(&reception, by_post.nhs_number.as_str(), SAFETY_NET_NAME).await.unwrap();
    assert_eq!(
        (letter.channel, letter.fragments),
        (Some(Channel::Letter), 0),
        "a letter preference wins over an email address"
    );
    app.send_preset(&reception, by_post.nhs_number.as_str(), SAFETY_NET_NAME, &uuid::Uuid::now_v7().to_string())
        .await
        .unwrap();
    let m = app.store_for_tests().messages_for_patient(tp.practice.id, by_post.id).await.unwrap().remove(0);
    assert_eq!((m.channel, m.status), (Channel::Letter, MessageStatus::Printing));
    let text = app.compose(&reception, by_text.nhs_number.as_str(), SAFETY_NET_NAME).await.unwrap();
    assert_eq!(text.channel, Some(Channel::Sms));
    assert_eq!((text.fragments, text.cost_hundredths), (2, 454));
    app.send_preset(&reception, by_text.nhs_number.as_str(), SAFETY_NET_NAME, &uuid::Uuid::now_v7().to_string())
        .await
        .unwrap();
    let m = app.store_for_tests().messages_for_patient(tp.practice.id, by_text.id).await.unwrap().remove(0);
    assert_eq!((m.channel, m.status, m.fragments), (Channel::Sms, MessageStatus::Queued, 2));
    let none = app.compose(&reception, nothing.nhs_number.as_str(), SAFETY_NET_NAME).await.unwrap();
    assert_eq!(none.channel, None);
    assert!(matches!(
        app.send_preset(&reception, nothing.nhs_number.as_str(), SAFETY_NET_NAME, &uuid::Uuid::now_v7().to_string())
            .await,
        Err(AppError::Conflict(_))
    ));
    assert!(app.store_for_tests().messages_for_patient(tp.practice.id, nothing.id).await.unwrap().is_empty());
}
