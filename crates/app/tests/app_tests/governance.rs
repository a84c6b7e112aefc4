#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Governance use cases (R35–R37): exclusion figures, the monthly return, bulk 104/106, the
//! enhanced review and the ICB's counts. Every case runs against SQLite and PostgreSQL.

use caldicott_app::fixtures::{self, adult, consultation, date, person, time};
use caldicott_app::governance::{ActionPlanInput, BulkInput, DecisionInput};
use caldicott_app::record::{PageRequest, ViewAs};
use caldicott_app::{auth, App, AppError, StaffPrincipal};
use caldicott_core::audit::Action;
use caldicott_core::entry::Entry;
use caldicott_core::ids::PracticeId;
use caldicott_core::patient::{Patient, Registration, RegistrationKind};
use caldicott_core::snomed::{Coding, ConceptId, ENHANCED_REVIEW_INDICATED, ENHANCED_REVIEW_NOT_INDICATED};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::{DateTime, Duration, Utc};

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock())
}

async fn who(app: &App, token: &str) -> StaffPrincipal {
    auth::authenticate(app, token).await.unwrap()
}

fn code(p: &Patient, concept: &str, at: DateTime<Utc>) -> Entry {
    let mut e = consultation(p, at, "");
    e.code = Some(Coding { concept: ConceptId::parse(concept).unwrap(), term: "enhanced review".into() });
    e.body = caldicott_core::entry::EntryBody::Coded { value: None };
    e
}

async fn add(app: &App, practice: PracticeId, entries: &[Entry]) {
    fixtures::add_entries(app, practice, None, entries).await.unwrap();
}

async fn patient(app: &App, practice: PracticeId, p: Patient) -> Patient {
    app.store_for_tests()
        .create_patient(practice, &p, &fixtures::audit(Action::PatientCreate, Some(p.id)))
        .await
        .unwrap();
    p
}

async fn exclusion_figures_count_registered_patients_aged_16_and_over(t: &TestStore) {
    // R36, D5
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let p = tp.practice.id;
    let manager = who(&app, &tp.manager_token).await;
    let a = adult(&app, p).await.unwrap();
    let b = adult(&app, p).await.unwrap();
    let c = adult(&app, p).await.unwrap();
    let tie = adult(&app, p).await.unwrap();
    let today = app.today();
    let child = patient(&app, p, person(p, today - Duration::days(365 * 15))).await;
    let mut gone = person(p, date(1970, 1, 1));
    gone.registrations = vec![Registration {
        kind: RegistrationKind::Registered,
        started: date(2000, 1, 1),
        ended: Some(date(2020, 1, 1)),
        previous_practice: None,
    }];
    let gone = patient(&app, p, gone).await;
    let mut dead = person(p, date(1940, 1, 1));
    dead.date_of_death = Some(date(2024, 1, 1));
    let dead = patient(&app, p, dead).await;
    add(
        &app,
        p,
        &[
            code(&a, ENHANCED_REVIEW_INDICATED, time(2024, 1, 1)),
            code(&b, ENHANCED_REVIEW_INDICATED, time(2024, 1, 1)),
            code(&b, ENHANCED_REVIEW_NOT_INDICATED, time(2024, 2, 1)),
            // D5: on equal times 104 wins.
            code(&tie, ENHANCED_REVIEW_INDICATED, time(2024, 3, 1)),
            code(&tie, ENHANCED_REVIEW_NOT_INDICATED, time(2024, 3, 1)),
            code(&child, ENHANCED_REVIEW_INDICATED, time(2024, 1, 1)),
            code(&gone, ENHANCED_REVIEW_INDICATED, time(2019, 1, 1)),
            code(&dead, ENHANCED_REVIEW_INDICATED, time(2023, 1, 1)),
        ],
    )
    .await;
    let r = app.exclusion_report(&manager).await.unwrap();
    // Registered, living, 16+: a, b, c, tie. Active 104: a and tie.
    assert_eq!((r.figures.registered_16_plus, r.figures.active_104), (4, 2));
    assert_eq!(r.percent, "50.0%");
    assert!(!r.needs_action_plan, "exactly half is not more than 50%");
    add(&app, p, &[code(&c, ENHANCED_REVIEW_INDICATED, time(2024, 4, 1))]).await;
    let r = app.exclusion_report(&manager).await.unwrap();
    assert_eq!(r.figures.active_104, 3);
    assert!(r.needs_action_plan);
    // The action plan: the practice manager's, checked and audited.
    let bad = app
        .save_action_plan(
            &manager,
            &ActionPlanInput { owner: " ".into(), review_by: "2020-01-01".into(), ..Default::default() },
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(bad.iter().map(|p| p.field).collect::<Vec<_>>(), vec!["owner", "review_by", "below_half_by"]);
    let soon = (today + Duration::days(60)).to_string();
    let plan = ActionPlanInput {
        owner: "Dr Patel".into(),
        review_by: soon.clone(),
        below_half_by: soon,
        progress: "Started".into(),
    };
    app.save_action_plan(&manager, &plan).await.unwrap().unwrap();
    assert_eq!(app.exclusion_report(&manager).await.unwrap().action_plan.unwrap().owner, "Dr Patel");
    assert!(fixtures::audit_actions(&app, p).await.contains(&"practice.action_plan_change".to_owned()));
    assert!(matches!(app.save_action_plan(&tp.clinician, &plan).await, Err(AppError::Forbidden(_))));
    // The monthly return (R37): every active exclusion of a registered patient, with when and by whom.
    let (_, rows) = app.monthly_return(&manager).await.unwrap();
    let mut listed: Vec<&str> = rows.iter().map(|r| r.nhs_number.as_str()).collect();
    listed.sort_unstable();
    let mut expected =
        vec![a.nhs_number.as_str(), c.nhs_number.as_str(), tie.nhs_number.as_str(), child.nhs_number.as_str()];
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let row = rows.iter().find(|r| r.patient == c.id).unwrap();
    assert_eq!((row.added_at, row.added_by.as_str()), (time(2024, 4, 1), "Dr Test"));
    let csv = caldicott_app::governance::monthly_return_csv(&rows, today);
    assert!(csv.starts_with("nhs_number,family_name,given_name,date_of_birth,age,date_added,added_by\n"));
    assert!(csv.contains(&format!("{},Patient,Test,1980-05-17,", c.nhs_number.as_str())));
    assert!(
        fixtures::audit_actions(&app, p).await.contains(&"report.export".to_owned()),
        "the return names patients: audited"
    );
    // Receptionists do not see it.
    let reception = who(&app, &tp.receptionist_token).await;
    assert!(matches!(app.monthly_return(&reception).await, Err(AppError::Forbidden(_))));
}

async fn bulk_104_is_warned_confirmed_audited_and_undone(t: &TestStore) {
    // R35
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let p = tp.practice.id;
    let manager = who(&app, &tp.manager_token).await;
    let mut adults = Vec::new();
    for _ in 0..5 {
        adults.push(adult(&app, p).await.unwrap());
    }
    let already = &adults[4];
    add(&app, p, &[code(already, ENHANCED_REVIEW_INDICATED, time(2024, 1, 1))]).await;
    let outsider = person(p, date(1990, 1, 1)).nhs_number; // never registered here
    let csv = format!(
        "NHS number\n{}\n{}\n{}\n{}\n",
        adults[0].nhs_number.as_str(),
        adults[1].nhs_number.as_str(),
        already.nhs_number.as_str(),
        outsider.as_str()
    );
    let input = BulkInput { code: "104".into(), csv: csv.clone(), min_age: "16".into(), ..Default::default() };
    let preview = app.bulk_preview(&manager, &input).await.unwrap().unwrap();
    assert_eq!(preview.count, 2);
    assert_eq!(preview.unchanged, 1, "an active 104 is not coded twice");
    assert_eq!(preview.not_registered, vec![outsider.as_str().to_owned()]);
    assert_eq!(preview.with_online_account, 2);
    assert_eq!(preview.warnings.len(), 4, "NHS England's advice is shown (R35)");
    // A bad CSV names its lines and nothing is applied.
    let bad = BulkInput { csv: "9434765919\n12345\n".into(), ..input.clone() };
    let problems = app.bulk_preview(&manager, &bad).await.unwrap().unwrap_err();
    assert!(problems[0].message.starts_with("Line 2:"), "{problems:?}");
    // No cohort at all is refused for 104.
    let none = BulkInput { code: "104".into(), ..Default::default() };
    assert_eq!(app.bulk_preview(&manager, &none).await.unwrap().unwrap_err()[0].field, "cohort");
    // The wrong number typed changes nothing.
    let head = app.store_for_tests().audit_head(p).await.unwrap();
    let refused = app.bulk_apply(&manager, &input, "3").await.unwrap().unwrap_err();
    assert_eq!(refused[0].field, "confirm");
    assert_eq!(app.store_for_tests().audit_head(p).await.unwrap(), head);
    assert_eq!(app.exclusion_report(&manager).await.unwrap().figures.active_104, 1);
    // The right number applies it, one audit event per patient.
    let done = app.bulk_apply(&manager, &input, "2").await.unwrap().unwrap();
    assert_eq!(done.job.patients, 2);
    // R2: automatic access is held back for them at once.
    let new_entry = consultation(&adults[0], caldicott_app::fixtures::now(), "Seen after the bulk 104");
    add(&app, p, std::slice::from_ref(&new_entry)).await;
    let online = app
        .online_view(&tp.clinician, adults[0].nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(online.entries.is_empty(), "nothing shown while 104 is active");
    assert_eq!(app.exclusion_report(&manager).await.unwrap().figures.active_104, 3);
    let actions = fixtures::audit_actions(&app, p).await;
    assert_eq!(actions.iter().filter(|a| *a == "entry.bulk_code").count(), 2);
    assert_eq!(actions.iter().filter(|a| *a == "practice.bulk_code_job").count(), 1);
    // Undo: 106 for exactly the job's patients, confirmed by their number.
    let (_, undo) = app.bulk_undo_preview(&manager, done.job.id).await.unwrap();
    assert_eq!(undo.len(), 2);
    assert!(app.bulk_undo(&manager, done.job.id, "1").await.unwrap().is_err());
    let undone = app.bulk_undo(&manager, done.job.id, "2").await.unwrap().unwrap();
    assert_eq!(undone.job.undoes, Some(done.job.id));
    assert_eq!(app.exclusion_report(&manager).await.unwrap().figures.active_104, 1, "the earlier 104 stays");
    let online = app
        .online_view(&tp.clinician, adults[0].nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(online.entries.iter().any(|e| e.id == new_entry.id), "after the undo, access follows the rules again");
    assert!(matches!(app.bulk_undo(&manager, done.job.id, "2").await, Err(AppError::Conflict(_))));
    let jobs = app.bulk_jobs(&manager).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs.iter().find(|j| j.id == done.job.id).unwrap().undone_by, Some(undone.job.id));
    // Receptionists cannot bulk-code.
    let reception = who(&app, &tp.receptionist_token).await;
    assert!(matches!(app.bulk_preview(&reception, &input).await, Err(AppError::Forbidden(_))));
    // An age band picks by age on the day.
    let young = patient(&app, p, person(p, app.today() - Duration::days(365 * 20))).await;
    let band = BulkInput { code: "104".into(), min_age: "18".into(), max_age: "25".into(), ..Default::default() };
    let preview = app.bulk_preview(&manager, &band).await.unwrap().unwrap();
    assert_eq!(preview.count, 1);
    assert_eq!(preview.patients, vec![young.id]);
}

async fn an_enhanced_review_highlights_then_grants_or_withholds(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let p = tp.practice.id;
    let pat = adult(&app, p).await.unwrap();
    let coded = caldicott_app::fixtures::now() - Duration::days(30);
    let third_party =
        consultation(&pat, coded + Duration::days(1), "Mother reports the patient's father was aggressive at home.");
    let plain = consultation(&pat, coded + Duration::days(2), "Sore throat, fluids advised.");
    add(&app, p, &[code(&pat, ENHANCED_REVIEW_INDICATED, coded), third_party.clone(), plain.clone()]).await;
    // While 104 is active the patient sees nothing new.
    let online = app
        .online_view(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(online.entries.is_empty());
    let queue = app.review_queue(&tp.clinician).await.unwrap();
    assert_eq!(queue.len(), 1);
    assert!(queue[0].due);
    let page = app.review_page(&tp.clinician, pat.nhs_number.as_str()).await.unwrap();
    let ids: Vec<_> = page.to_check.iter().map(|e| e.entry.id).collect();
    assert!(ids.contains(&third_party.id), "the third-party consultation is highlighted");
    assert!(!ids.contains(&plain.id));
    assert!(
        page.to_check.iter().find(|e| e.entry.id == third_party.id).unwrap().withheld_after_grant.is_none(),
        "it would be shown once access is granted"
    );
    assert!(fixtures::audit_actions(&app, p).await.contains(&"record.view_enhanced_review".to_owned()));
    // Withholding needs a reason and a future date.
    let nhs = pat.nhs_number.as_str();
    let bad = app
        .decide_review(&tp.clinician, nhs, &DecisionInput { outcome: "withheld".into(), ..Default::default() })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(bad.iter().map(|p| p.field).collect::<Vec<_>>(), vec!["reason", "next_review"]);
    let next = app.today() + Duration::days(90);
    let withhold = DecisionInput {
        outcome: "withheld".into(),
        reason: "Risk of coercion discussed with safeguarding lead".into(),
        next_day: next.format("%d").to_string(),
        next_month: next.format("%m").to_string(),
        next_year: next.format("%Y").to_string(),
    };
    app.decide_review(&tp.clinician, nhs, &withhold).await.unwrap().unwrap();
    let queue = app.review_queue(&tp.clinician).await.unwrap();
    assert!(!queue[0].due, "withheld until the next review date");
    assert_eq!(queue[0].latest.as_ref().unwrap().next_review, Some(next));
    // Practice managers see the queue but clinicians decide.
    let manager = who(&app, &tp.manager_token).await;
    assert!(matches!(app.decide_review(&manager, nhs, &withhold).await, Err(AppError::Forbidden(_))));
    // Granting records 106: the patient sees the record by the rules again.
    let grant = DecisionInput { outcome: "granted".into(), ..Default::default() };
    let row = app.decide_review(&tp.clinician, nhs, &grant).await.unwrap().unwrap();
    assert_eq!(row.outcome, caldicott_core::governance::ReviewOutcome::Granted);
    assert!(app.review_queue(&tp.clinician).await.unwrap().is_empty());
    let online = app.online_view(&tp.clinician, nhs, ViewAs::Patient, &PageRequest::default()).await.unwrap();
    assert!(online.entries.iter().any(|e| e.id == plain.id));
    assert!(matches!(app.decide_review(&tp.clinician, nhs, &grant).await, Err(AppError::Conflict(_))));
    // The trend counts the 104, the withhold and the grant this month.
    let trend = app.exclusion_trend(&manager, 3).await.unwrap();
    assert_eq!(trend.len(), 3);
    let this_month = trend.last().unwrap();
    assert_eq!((this_month.granted, this_month.withheld), (1, 1));
    assert_eq!(trend.iter().map(|m| m.excluded).sum::<i64>(), 1);
}

async fn the_icb_sees_counts_across_practices_and_no_patient(t: &TestStore) {
    // R36 across a service; the ICB role never reaches a patient.
    let app = app(t);
    let one = fixtures::practice(&app).await.unwrap();
    let two = fixtures::practice(&app).await.unwrap();
    let a = adult(&app, one.practice.id).await.unwrap();
    add(&app, one.practice.id, &[code(&a, ENHANCED_REVIEW_INDICATED, time(2024, 1, 1))]).await;
    adult(&app, two.practice.id).await.unwrap();
    let analyst = who(&app, &one.analyst_token).await;
    let (_, rows) = app.icb_figures(&analyst).await.unwrap();
    let row = |tp: &fixtures::TestPractice| rows.iter().find(|r| r.practice == tp.practice.id).unwrap().clone();
    assert_eq!((row(&one).figures.registered_16_plus, row(&one).figures.active_104), (1, 1));
    assert!(row(&one).figures.needs_action_plan());
    assert_eq!((row(&two).figures.registered_16_plus, row(&two).figures.active_104), (1, 0));
    let json = serde_json::to_string(&rows).unwrap() + &caldicott_app::governance::icb_csv(&rows);
    assert!(!json.contains(a.nhs_number.as_str()));
    assert!(!json.contains(&a.id.to_string()));
    // Practice staff do not see the service-wide view.
    assert!(matches!(app.icb_figures(&one.clinician).await, Err(AppError::Forbidden(_))));
    let manager = who(&app, &one.manager_token).await;
    assert!(matches!(app.icb_figures(&manager).await, Err(AppError::Forbidden(_))));
    // The analyst reaches no patient-level use case.
    let nhs = a.nhs_number.as_str();
    assert!(matches!(app.review_queue(&analyst).await, Err(AppError::Forbidden(_))));
    assert!(matches!(app.review_page(&analyst, nhs).await, Err(AppError::Forbidden(_))));
    assert!(matches!(app.monthly_return(&analyst).await, Err(AppError::Forbidden(_))));
    assert!(matches!(app.exclusion_report(&analyst).await, Err(AppError::Forbidden(_))));
    assert!(matches!(
        app.staff_record(&analyst, nhs, ViewAs::Patient, &PageRequest::default()).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(matches!(app.search_patients(&analyst, nhs).await, Err(AppError::Forbidden(_))));
    assert!(matches!(app.task_list(&analyst, false).await, Err(AppError::Forbidden(_))));
    // And a practice administrator cannot make an analyst.
    let admin = who(&app, &one.admin_token).await;
    let made = app
        .add_staff_account(&admin, "icb2", "ICB Two", caldicott_core::staff::Role::IcbAnalyst, "a long test password")
        .await;
    assert!(matches!(made, Err(AppError::Forbidden(_))));
}

both!(
    exclusion_figures_count_registered_patients_aged_16_and_over,
    bulk_104_is_warned_confirmed_audited_and_undone,
    an_enhanced_review_highlights_then_grants_or_withholds,
    the_icb_sees_counts_across_practices_and_no_patient;
    // On Citus too: the practice and service-wide reports and a bulk change across a practice.
    citus: exclusion_figures_count_registered_patients_aged_16_and_over,
    bulk_104_is_warned_confirmed_audited_and_undone,
    the_icb_sees_counts_across_practices_and_no_patient,
);
