//! Care plans the patient helps write (issue 26): a clinician records a plan (goals, actions,
//! preferences, decisions, contacts, a review date); the patient, and a proxy whose scope
//! allows it, read it online within the visibility rules (a plan or a part of it can be hidden
//! with a reason, R8/R11); what they add (goals, notes, home readings) is marked as theirs, never
//! changes the clinician's words, and becomes a task for the care team, in one transaction; home
//! readings appear on the result charts, marked. Every change audited. Both databases.

use caldicott_app::care_plans::NewCarePlan;
use caldicott_app::fixtures::{self, adult};
use caldicott_app::my_care_plans::PlanAddition;
use caldicott_app::redaction::VisibilityChange;
use caldicott_app::{App, AppError};
use caldicott_core::access::AccessLevel;
use caldicott_core::audit::Action;
use caldicott_core::entry::*;
use caldicott_core::ids::EntryId;
use caldicott_core::tasks::{TaskKind, TaskStatus};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), fixtures::test_clock())
}

fn plan_form() -> NewCarePlan {
    NewCarePlan {
        condition: "Type 2 diabetes".into(),
        code: "44054006".into(),
        review: (fixtures::today() + Duration::days(90)).to_string(),
        goals: "HbA1c below 48\n\n  Walk daily  ".into(),
        actions: "Nurse: review every 6 months\nGP: discuss SECRET-REFERRAL".into(),
        preferences: "Appointments after 4pm".into(),
        decisions: String::new(),
        contacts: "Call 999 with chest pain".into(),
    }
}

fn add(kind: &str, text: &str, measure: &str, value: &str) -> PlanAddition {
    PlanAddition { kind: kind.into(), text: text.into(), measure: measure.into(), value: value.into() }
}

fn texts(plan: &caldicott_app::my_care_plans::MyPlan) -> Vec<String> {
    plan.parts
        .iter()
        .map(|p| match &p.body {
            EntryBody::CarePlanPart { text, .. } => text.clone(),
            other => other.headline(),
        })
        .collect()
}

async fn a_patient_reads_their_care_plan_and_adds_to_it_without_changing_the_clinicians(t: &TestStore) {
    // Issue 26, R8, R11: a hidden part never reaches the patient; what they add is theirs.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let plan = app.record_care_plan(&tp.clinician, &nhs, &plan_form()).await.unwrap().unwrap();
    let staff = app.staff_care_plans(&tp.clinician, &nhs).await.unwrap();
    assert_eq!(staff.plans.len(), 1);
    assert_eq!(staff.plans[0].parts.len(), 6, "one part a non-empty line");
    let referral = staff.plans[0]
        .parts
        .iter()
        .find(|(e, _)| e.body.headline().contains("SECRET-REFERRAL"))
        .map(|(e, _)| e.id)
        .unwrap();
    let hide = VisibilityChange::Hide { reason: HiddenReason::PotentiallyHarmful, note: "discuss first".into() };
    app.change_visibility(&tp.clinician, &nhs, referral, &hide, false).await.unwrap();

    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let seen = app.my_care_plans(&me, None).await.unwrap();
    assert_eq!(seen.plans.len(), 1);
    let before = texts(&seen.plans[0]);
    assert_eq!(
        before,
        [
            "HbA1c below 48",
            "Walk daily",
            "Nurse: review every 6 months",
            "Appointments after 4pm",
            "Call 999 with chest pain"
        ],
        "goals first, the hidden action absent"
    );
    assert!(!format!("{seen:?}").contains("SECRET-REFERRAL"));

    // The patient adds a goal and a home reading: new entries, marked as theirs, each a task.
    let goal =
        app.add_to_my_care_plan(&me, None, plan, &add("goal", "  Swim on Saturdays ", "", "")).await.unwrap().unwrap();
    assert_eq!(goal.origin, Origin::PatientEntered);
    assert_eq!(goal.author.staff, None);
    assert!(goal.author.name.contains("(patient)"));
    let reading = app
        .add_to_my_care_plan(&me, None, plan, &add("reading", "", "blood-pressure", "150/95"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reading.body, EntryBody::Coded { value: Some("150/95 mmHg".into()) });
    let seen = app.my_care_plans(&me, None).await.unwrap();
    let after = texts(&seen.plans[0]);
    assert_eq!(after.len(), before.len() + 1, "the reading is a result, not a part of the plan");
    assert!(after.contains(&"Swim on Saturdays".to_owned()));
    for t in &before {
        assert!(after.contains(t), "the clinician's words are unchanged: {t}");
    }
    let results = app.my_results(&me, None, Some("blood-pressure")).await.unwrap();
    let r = &results.series[0].readings[0];
    assert!(r.patient_entered && r.values == [150.0, 95.0], "{r:?}");

    let tasks = app.store_for_tests().tasks_for_patient(tp.practice.id, pat.id).await.unwrap();
    let mine: Vec<_> = tasks.iter().filter(|t| t.kind == TaskKind::CarePlanAddition).collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|t| t.status == TaskStatus::Open && t.requested_by == "the patient, online"));
    assert!(format!("{:?}", mine[0].body).contains("Type 2 diabetes"));
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    assert_eq!(
        trail.iter().filter(|e| e.action == Action::EntryCreate.as_str() && e.actor_kind == "patient").count(),
        2,
        "each addition audited as the patient"
    );
    // Staff see the patient's additions, marked, with the hidden part marked not shown.
    let staff = app.staff_care_plans(&tp.clinician, &nhs).await.unwrap();
    let parts = &staff.plans[0].parts;
    assert!(parts.iter().any(|(e, _)| e.origin == Origin::PatientEntered && e.body.headline().contains("Swim")));
    assert!(parts.iter().any(|(e, s)| e.id == referral && !s.visible));
}

async fn bad_additions_are_refused_with_words_and_change_nothing(t: &TestStore) {
    // Every bad input gets a clear error and loses nothing; a plan not shown is not found.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let other = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let plan = app.record_care_plan(&tp.clinician, &nhs, &plan_form()).await.unwrap().unwrap();
    let theirs = app.record_care_plan(&tp.clinician, other.nhs_number.as_str(), &plan_form()).await.unwrap().unwrap();
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    let count = || async {
        let s = app.store_for_tests();
        (
            s.tasks_for_patient(tp.practice.id, pat.id).await.unwrap().len()
                + s.tasks_for_patient(tp.practice.id, other.id).await.unwrap().len(),
            app.staff_care_plans(&tp.clinician, &nhs).await.unwrap().plans[0].parts.len(),
        )
    };
    let start = count().await;
    for (bad, field) in [
        (add("goal", "   ", "", ""), "text"),
        (add("note", &"x".repeat(1001), "", ""), "text"),
        (add("reading", "", "blood-pressure", "84/132"), "value"),
        (add("reading", "", "hba1c", "48"), "value"),
        (add("reading", "", "", "80"), "measure"),
        (add("photo", "hello", "", ""), "kind"),
    ] {
        let problems = app.add_to_my_care_plan(&me, None, plan, &bad).await.unwrap().unwrap_err();
        assert_eq!(problems[0].field, field, "{bad:?}");
        assert!(!problems[0].message.is_empty());
    }
    // Another patient's plan, an id of nothing, and a part (not a plan) are all not found.
    let part = app.staff_care_plans(&tp.clinician, &nhs).await.unwrap().plans[0].parts[0].0.id;
    for id in [theirs, EntryId::from_uuid(caldicott_app::new_id()), part] {
        let r = app.add_to_my_care_plan(&me, None, id, &add("goal", "x", "", "")).await;
        assert!(matches!(r, Err(AppError::NotFound(_))), "{r:?}");
    }
    assert_eq!(count().await, start, "nothing was written");

    // Control characters, direction overrides and invisible characters are dropped; text of
    // nothing visible is nothing.
    let problems = app
        .add_to_my_care_plan(&me, None, plan, &add("goal", "\u{00A0}\u{200B}\u{202E}", "", ""))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(problems[0].field, "text");
    assert_eq!(count().await, start, "nothing was written");
    let kept = app
        .add_to_my_care_plan(&me, None, plan, &add("note", "bell\u{7}\u{1b}[31mred\u{202E}evil\u{0}", "", ""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.body, EntryBody::CarePlanPart { plan, part: PlanPart::Note, text: "bell[31mredevil".into() });

    // A plan hidden online takes its parts with it: nothing of it is shown or can be added to.
    let hide = VisibilityChange::Hide { reason: HiddenReason::ThirdParty, note: "names a relative".into() };
    app.change_visibility(&tp.clinician, &nhs, plan, &hide, false).await.unwrap();
    let staff = app.staff_care_plans(&tp.clinician, &nhs).await.unwrap();
    assert!(!staff.plans[0].online.visible && staff.plans[0].parts.iter().all(|(_, s)| !s.visible));
    assert!(app.my_care_plans(&me, None).await.unwrap().plans.is_empty());
    let r = app.add_to_my_care_plan(&me, None, plan, &add("goal", "x", "", "")).await;
    assert!(matches!(r, Err(AppError::NotFound(_))));
    // A part is never shown on its own while its plan is hidden: staff show the plan first.
    let show = VisibilityChange::Show { note: "discussed".into() };
    let r = app.change_visibility(&tp.clinician, &nhs, part, &show, false).await;
    assert!(matches!(r, Err(AppError::Conflict(_))), "{r:?}");
    assert!(app.staff_care_plans(&tp.clinician, &nhs).await.unwrap().plans[0].parts.iter().all(|(_, s)| !s.visible));
    app.change_visibility(&tp.clinician, &nhs, plan, &show, false).await.unwrap();
    app.change_visibility(&tp.clinician, &nhs, part, &show, false).await.unwrap();
    let seen = app.my_care_plans(&me, None).await.unwrap();
    assert_eq!(seen.plans[0].parts.len(), 1, "the plan and the one part shown again");
    // Bad staff forms are refused field by field, and write nothing.
    let bad =
        NewCarePlan { condition: " ".into(), code: "12".into(), review: "2001-01-01".into(), ..NewCarePlan::default() };
    let problems = app.record_care_plan(&tp.clinician, &nhs, &bad).await.unwrap().unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
    assert_eq!(fields, ["condition", "code", "review", "goals"]);
    assert_eq!(app.staff_care_plans(&tp.clinician, &nhs).await.unwrap().plans.len(), 1);
    // Only clinicians write care plans.
    let reception = caldicott_app::auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    assert!(matches!(app.record_care_plan(&reception, &nhs, &plan_form()).await, Err(AppError::Forbidden(_))));
}

async fn a_proxy_reads_and_adds_only_within_their_scope(t: &TestStore) {
    // R15, R19: care plans are part of the detailed record; what a proxy adds is marked as theirs.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let child = fixtures::person(tp.practice.id, fixtures::today() - Duration::days(365 * 12));
    app.store_for_tests()
        .create_patient(tp.practice.id, &child, &fixtures::audit(Action::PatientCreate, Some(child.id)))
        .await
        .unwrap();
    let summary_parent = adult(&app, tp.practice.id).await.unwrap();
    let detailed_parent = adult(&app, tp.practice.id).await.unwrap();
    let granted = fixtures::today() - Duration::days(30);
    let summary = fixtures::proxy_link(&app, tp.practice.id, &child, &summary_parent, AccessLevel::Summary, granted)
        .await
        .unwrap();
    let detailed = fixtures::proxy_link(&app, tp.practice.id, &child, &detailed_parent, AccessLevel::Detailed, granted)
        .await
        .unwrap();
    let plan = app.record_care_plan(&tp.clinician, child.nhs_number.as_str(), &plan_form()).await.unwrap().unwrap();

    let (_, _, c1) = fixtures::patient_account(&app, &tp.clinician, &summary_parent, "P9").await.unwrap();
    let s = app.patient_signed_in(&c1).await.unwrap().who;
    assert!(app.my_care_plans(&s, Some(summary.id)).await.unwrap().plans.is_empty());
    let r = app.add_to_my_care_plan(&s, Some(summary.id), plan, &add("note", "hi", "", "")).await;
    assert!(matches!(r, Err(AppError::NotFound(_))), "beyond a summary proxy's scope");

    let (_, _, c2) = fixtures::patient_account(&app, &tp.clinician, &detailed_parent, "P9").await.unwrap();
    let d = app.patient_signed_in(&c2).await.unwrap().who;
    assert_eq!(app.my_care_plans(&d, Some(detailed.id)).await.unwrap().plans.len(), 1);
    let added = app
        .add_to_my_care_plan(&d, Some(detailed.id), plan, &add("note", "Sleeps badly", "", ""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(added.patient, child.id);
    assert!(added.author.name.contains("Mother, for the patient"), "{}", added.author.name);
    let tasks = app.store_for_tests().tasks_for_patient(tp.practice.id, child.id).await.unwrap();
    assert!(tasks.iter().any(|t| t.kind == TaskKind::CarePlanAddition && t.requested_by.contains("(Mother), online")));
    // Another person's link is not theirs to use.
    assert!(matches!(app.my_care_plans(&s, Some(detailed.id)).await, Err(AppError::NotFound(_))));
}

async fn an_app_reads_care_plans_and_goals_within_the_visibility_rules(t: &TestStore) {
    // Issue 26 (FHIR: CarePlan and Goal for linked apps), R8, T2: a hidden part is absent; a
    // part of a hidden plan is absent too, and no reference names a plan the app is not shown.
    use caldicott_app::fhir_api::{Search, TokenRequest};
    let app = App::new(t.store.clone(), fixtures::test_clock()).with_public_url("http://test").unwrap();
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str().to_owned();
    let plan = app.record_care_plan(&tp.clinician, &nhs, &plan_form()).await.unwrap().unwrap();
    let staff = app.staff_care_plans(&tp.clinician, &nhs).await.unwrap();
    let referral = staff.plans[0].parts.iter().find(|(e, _)| e.body.headline().contains("SECRET")).unwrap().0.id;
    let hide = VisibilityChange::Hide { reason: HiddenReason::PotentiallyHarmful, note: "discuss first".into() };
    app.change_visibility(&tp.clinician, &nhs, referral, &hide, false).await.unwrap();
    let (client, secret, link) = fixtures::linked_app(&app, &tp, &pat).await.unwrap();
    let token = app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await.unwrap();
    let who = app.fhir_caller(&token.access_token).await.unwrap();
    let base = "http://test/fhir/r4";
    let found = |b: serde_json::Value| -> Vec<serde_json::Value> {
        b["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
    };
    let goals = found(app.fhir_search(&who, "Goal", base, &Search::default()).await.unwrap());
    let words: Vec<&str> = goals.iter().map(|g| g["description"]["text"].as_str().unwrap()).collect();
    assert_eq!(words.len(), 2, "{words:?}");
    assert!(words.contains(&"HbA1c below 48") && words.contains(&"Walk daily"));
    let plans = found(app.fhir_search(&who, "CarePlan", base, &Search::default()).await.unwrap());
    let text = serde_json::to_string(&plans).unwrap();
    assert!(!text.contains("SECRET") && !text.contains(&referral.to_string()));
    assert_eq!(plans.len(), 4, "the plan, an action, a preference and a contact: {text}");
    let parts: Vec<&serde_json::Value> = plans.iter().filter(|p| p["id"] != plan.to_string()).collect();
    assert!(parts.iter().all(|p| p["partOf"][0]["reference"] == format!("CarePlan/{plan}")));
    assert!(app.fhir_read(&who, "CarePlan", &referral.to_string()).await.is_err());

    // What the patient adds is theirs in FHIR too.
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    app.add_to_my_care_plan(&me, None, plan, &add("goal", "Swim on Saturdays", "", "")).await.unwrap().unwrap();
    // (A new account's letter regenerated the linkage key: the app links again.)
    let (client, secret, link) = fixtures::linked_app(&app, &tp, &pat).await.unwrap();
    let token = app.fhir_token(&TokenRequest::app(&client, &secret, &link, "")).await.unwrap();
    let who = app.fhir_caller(&token.access_token).await.unwrap();
    let goals = found(app.fhir_search(&who, "Goal", base, &Search::default()).await.unwrap());
    let swim = goals.iter().find(|g| g["description"]["text"] == "Swim on Saturdays").unwrap();
    assert_eq!(swim["expressedBy"]["reference"], format!("Patient/{}", pat.id));

    // The plan hidden: none of it reaches the app, by search or by id.
    let hide = VisibilityChange::Hide { reason: HiddenReason::ThirdParty, note: "names a relative".into() };
    app.change_visibility(&tp.clinician, &nhs, plan, &hide, false).await.unwrap();
    assert!(found(app.fhir_search(&who, "CarePlan", base, &Search::default()).await.unwrap()).is_empty());
    assert!(found(app.fhir_search(&who, "Goal", base, &Search::default()).await.unwrap()).is_empty());
    assert!(app.fhir_read(&who, "Goal", swim["id"].as_str().unwrap()).await.is_err());
}

both!(
    a_patient_reads_their_care_plan_and_adds_to_it_without_changing_the_clinicians,
    bad_additions_are_refused_with_words_and_change_nothing,
    a_proxy_reads_and_adds_only_within_their_scope,
    an_app_reads_care_plans_and_goals_within_the_visibility_rules
);
