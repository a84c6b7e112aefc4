//! Cancelling an order of repeat prescriptions (issue 25, Patient Facing Services
//! Prescriptions): the patient, or the app acting for them, cancels an order the practice has
//! not started on; once a clinician has decided any of it, it stands. Orders cancelled and
//! decided at the same moment end one way only, and two medicines of one order decided at the
//! same moment are both kept (H29). Both databases.

use caldicott_app::fhir_api::{FhirCaller, TokenRequest};
use caldicott_app::fixtures::{self, adult, consultation, linked_app};
use caldicott_app::record::{PageRequest, ViewAs};
use caldicott_app::{App, AppError};
use caldicott_core::entry::*;
use caldicott_core::ids::EntryId;
use caldicott_core::patient::Patient;
use caldicott_core::tasks::{ItemDecision, Task, TaskBody, TaskStatus};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use serde_json::json;

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), fixtures::test_clock())
}

/// Two current repeat templates of `pat`, in their record.
async fn repeats(app: &App, tp: &fixtures::TestPractice, pat: &Patient) -> (Entry, Entry) {
    let med = |drug: &str| {
        let mut e = consultation(pat, fixtures::now() - Duration::days(30), "");
        e.body = EntryBody::Medication {
            drug: drug.into(),
            dosage: "One daily".into(),
            quantity: "28 tablets".into(),
            course: MedicationCourse::RepeatTemplate,
        };
        e
    };
    let (a, b) = (med("Amlodipine 5mg tablets"), med("Atorvastatin 20mg tablets"));
    fixtures::add_entries(app, tp.practice.id, Some(pat.id), &[a.clone(), b.clone()]).await.unwrap();
    (a, b)
}

/// A practice, a patient with two current repeats, signed in at P9.
struct Setting {
    app: App,
    tp: fixtures::TestPractice,
    pat: Patient,
    a: Entry,
    b: Entry,
    me: caldicott_app::patient_services::PatientPrincipal,
}

async fn setting(t: &TestStore) -> Setting {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (a, b) = repeats(&app, &tp, &pat).await;
    let (_, _, cookie) = fixtures::patient_account(&app, &tp.clinician, &pat, "P9").await.unwrap();
    let me = app.patient_signed_in(&cookie).await.unwrap().who;
    Setting { app, tp, pat, a, b, me }
}

/// How many medication issues of `template` the record holds.
async fn issues_of(app: &App, tp: &fixtures::TestPractice, pat: &Patient, template: EntryId) -> usize {
    let page = PageRequest { limit: Some(200), ..PageRequest::default() };
    let record = app.staff_record(&tp.clinician, pat.nhs_number.as_str(), ViewAs::Patient, &page).await.unwrap();
    record
        .entries
        .iter()
        .filter(|e| matches!(e.entry.body, EntryBody::MedicationIssue { template: Some(t), .. } if t == template))
        .count()
}

async fn held(app: &App, tp: &fixtures::TestPractice, task: &Task) -> Task {
    app.open_task(&tp.clinician, task.id).await.unwrap().0
}

fn decisions(t: &Task) -> Vec<ItemDecision> {
    let TaskBody::Repeat { items, .. } = &t.body else { panic!("an order") };
    items.iter().map(|i| i.decision.clone()).collect()
}

/// Ends a round of a loop: any medicine of the order still waiting is turned down, so that the
/// next round may order it again (a medicine waiting for a decision is not ordered twice).
async fn settle(app: &App, tp: &fixtures::TestPractice, order: &Task) {
    let stored = held(app, tp, order).await;
    let TaskBody::Repeat { items, .. } = &stored.body else { panic!("an order") };
    if stored.status == TaskStatus::Open {
        for i in items.iter().filter(|i| i.decision == ItemDecision::Pending) {
            app.decide_repeat_item(&tp.clinician, order.id, i.template, false, "Round over").await.unwrap();
        }
    }
}

/// The decision on one medicine of an order.
fn decision_on(t: &Task, template: EntryId) -> ItemDecision {
    let TaskBody::Repeat { items, .. } = &t.body else { panic!("an order") };
    items.iter().find(|i| i.template == template).map(|i| i.decision.clone()).expect("the medicine is in the order")
}

async fn a_patient_cancels_an_order_the_practice_has_not_started_on(t: &TestStore) {
    let Setting { app, tp, pat, a, b, me } = setting(t).await;

    // Ordered, then cancelled: done, nothing decided, the patient told who cancelled it.
    let order = app.request_repeats(&me, None, &[a.id, b.id], "").await.unwrap().unwrap();
    let page = app.repeat_page(&me, None).await.unwrap();
    assert!(page.requests.iter().any(|r| r.id == order.id && r.can_cancel_order()));
    let cancelled = app.cancel_repeat_order(&me, None, order.id).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Done);
    let stored = held(&app, &tp, &order).await;
    assert_eq!(stored.status, TaskStatus::Done);
    assert_eq!(stored.outcome.as_deref(), Some("Cancelled by the patient, online"));
    assert!(decisions(&stored).iter().all(|d| *d == ItemDecision::Pending));
    // The practice no longer has it to do, and cannot issue from it.
    let open = app.task_list(&tp.clinician, false).await.unwrap();
    assert!(open.iter().all(|(t, _)| t.id != order.id), "not in the open list");
    assert!(matches!(
        app.decide_repeat_item(&tp.clinician, order.id, a.id, true, "").await,
        Err(AppError::Conflict(_))
    ));
    assert_eq!(issues_of(&app, &tp, &pat, a.id).await, 0, "nothing issued");
    assert!(matches!(app.cancel_repeat_order(&me, None, order.id).await, Err(AppError::Conflict(_))), "once");
    // The cancellation is in the record's audit trail, by the patient.
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    assert!(trail
        .iter()
        .any(|e| e.action == "task.update" && e.actor_kind == "patient" && e.entity == format!("task/{}", order.id)));

    // Once a clinician has decided one medicine, the order stands.
    let started = app.request_repeats(&me, None, &[a.id, b.id], "").await.unwrap().unwrap();
    app.decide_repeat_item(&tp.clinician, started.id, a.id, true, "").await.unwrap();
    assert!(!app
        .repeat_page(&me, None)
        .await
        .unwrap()
        .requests
        .iter()
        .any(|r| r.id == started.id && r.can_cancel_order()));
    match app.cancel_repeat_order(&me, None, started.id).await {
        Err(AppError::Conflict(m)) => assert!(m.contains("contact the practice"), "{m}"),
        other => panic!("an order the practice started on was cancelled: {other:?}"),
    }
    let stored = held(&app, &tp, &started).await;
    assert_eq!(stored.status, TaskStatus::Open, "nothing changed");
    assert!(matches!(decision_on(&stored, a.id), ItemDecision::Approved { .. }));

    // Another patient's order is not there to them; nor is a message.
    let other = adult(&app, tp.practice.id).await.unwrap();
    let (oa, _) = repeats(&app, &tp, &other).await;
    let (_, _, cookie2) = fixtures::patient_account(&app, &tp.clinician, &other, "P9").await.unwrap();
    let them = app.patient_signed_in(&cookie2).await.unwrap().who;
    let theirs = app.request_repeats(&them, None, &[oa.id], "").await.unwrap().unwrap();
    assert!(matches!(app.cancel_repeat_order(&me, None, theirs.id).await, Err(AppError::NotFound(_))));
    assert_eq!(held(&app, &tp, &theirs).await.status, TaskStatus::Open);
    let message = app.send_request(&me, "medication_query", "Can I take it with food?").await.unwrap().unwrap();
    assert!(matches!(app.cancel_repeat_order(&me, None, message.id).await, Err(AppError::NotFound(_))));
}

/// A clinician approves a medicine just as the patient cancels the order: it ends one way,
/// never both (an issue in the record for an order the patient was told is cancelled).
async fn an_order_cancelled_as_it_is_decided_ends_one_way_only(t: &TestStore) {
    let Setting { app, tp, pat, a, b, me } = setting(t).await;
    let mut approved = 0;
    for _ in 0..8 {
        let order = app.request_repeats(&me, None, &[a.id, b.id], "").await.unwrap().unwrap();
        let (app1, app2, me, clinician, id) = (app.clone(), app.clone(), me.clone(), tp.clinician.clone(), order.id);
        let template = a.id;
        let cancel = tokio::spawn(async move { app1.cancel_repeat_order(&me, None, id).await.map(drop) });
        let decide =
            tokio::spawn(async move { app2.decide_repeat_item(&clinician, id, template, true, "").await.map(drop) });
        let (cancel, decide) = (cancel.await.unwrap(), decide.await.unwrap());
        assert!(cancel.is_ok() != decide.is_ok(), "exactly one: cancel {cancel:?}, decide {decide:?}");
        assert!(
            matches!(cancel, Ok(()) | Err(AppError::Conflict(_)))
                && matches!(decide, Ok(()) | Err(AppError::Conflict(_)))
        );
        let stored = held(&app, &tp, &order).await;
        if decide.is_ok() {
            approved += 1;
            assert_eq!(stored.status, TaskStatus::Open);
            assert!(matches!(decision_on(&stored, a.id), ItemDecision::Approved { .. }));
        } else {
            assert_eq!(stored.outcome.as_deref(), Some("Cancelled by the patient, online"));
            assert!(decisions(&stored).iter().all(|d| *d == ItemDecision::Pending));
        }
        settle(&app, &tp, &order).await;
    }
    assert_eq!(issues_of(&app, &tp, &pat, a.id).await, approved, "an issue for each approval that stood, no other");
}

/// Two clinicians decide the two medicines of one order at the same moment: both decisions are
/// kept, or the second is refused and can be made again; never one kept and the other's issue
/// in the record without its decision.
async fn two_medicines_of_one_order_decided_at_once_are_both_kept(t: &TestStore) {
    let Setting { app, tp, pat, a, b, me } = setting(t).await;
    let mut approved = [0, 0];
    for _ in 0..8 {
        let order = app.request_repeats(&me, None, &[a.id, b.id], "").await.unwrap().unwrap();
        let tries = [a.id, b.id].map(|template| {
            let (app, who, id) = (app.clone(), tp.clinician.clone(), order.id);
            tokio::spawn(async move { app.decide_repeat_item(&who, id, template, true, "").await.map(drop) })
        });
        let mut results = Vec::new();
        for t in tries {
            results.push(t.await.unwrap());
        }
        assert!(results.iter().any(Result::is_ok), "{results:?}");
        assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(AppError::Conflict(_)))), "{results:?}");
        let stored = held(&app, &tp, &order).await;
        for (n, (ok, template)) in results.iter().zip([a.id, b.id]).enumerate() {
            let d = decision_on(&stored, template);
            assert_eq!(
                ok.is_ok(),
                matches!(d, ItemDecision::Approved { .. }),
                "each decision made is kept: {d:?} {results:?}"
            );
            approved[n] += usize::from(ok.is_ok());
        }
        settle(&app, &tp, &order).await;
    }
    // An issue in the record for each approval kept, and no other.
    assert_eq!(issues_of(&app, &tp, &pat, a.id).await, approved[0]);
    assert_eq!(issues_of(&app, &tp, &pat, b.id).await, approved[1]);
}

async fn app_token(app: &App, client: &str, secret: &str, link: &str, scope: &str) -> FhirCaller {
    let t = app.fhir_token(&TokenRequest::app(client, secret, link, scope)).await.unwrap();
    app.fhir_caller(&t.access_token).await.unwrap()
}

/// An app cancels the order it made: `PUT Task/<id>` with status `cancelled`.
async fn a_linked_app_cancels_an_order_it_made(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let (a, _) = repeats(&app, &tp, &pat).await;
    let (client, secret, link) = linked_app(&app, &tp, &pat).await.unwrap();
    let reader = app_token(&app, &client, &secret, &link, "patient/*.read").await;
    let orderer = app_token(&app, &client, &secret, &link, "patient/*.read patient/Task.write").await;
    let order = json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "103742009" }] },
        "focus": { "reference": format!("MedicationRequest/{}", a.id) },
        "for": { "reference": format!("Patient/{}", pat.id) },
    });
    let made = app.fhir_create(&orderer, "Task", &order).await.unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let mut cancel = made.clone();
    cancel["status"] = json!("cancelled");
    // Reading is not cancelling; only cancelling is offered; only a Task of this order.
    assert!(matches!(app.fhir_update(&reader, "Task", &id, &cancel).await, Err(AppError::Forbidden(_))));
    let mut completed = made.clone();
    completed["status"] = json!("completed");
    assert!(matches!(app.fhir_update(&orderer, "Task", &id, &completed).await, Err(AppError::BadRequest(_))));
    let (order_id, _) = id.rsplit_once('-').unwrap();
    assert!(app.fhir_update(&orderer, "Task", &format!("{order_id}-7"), &cancel).await.is_err());
    assert_eq!(app.fhir_read(&reader, "Task", &id).await.unwrap()["status"], "requested", "nothing changed");
    // Another patient's app cannot cancel it.
    let other = adult(&app, tp.practice.id).await.unwrap();
    let (c2, s2, l2) = linked_app(&app, &tp, &other).await.unwrap();
    let stranger = app_token(&app, &c2, &s2, &l2, "patient/*.read patient/Task.write").await;
    assert!(app.fhir_update(&stranger, "Task", &id, &cancel).await.is_err());
    assert_eq!(app.fhir_read(&reader, "Task", &id).await.unwrap()["status"], "requested");

    let done = app.fhir_update(&orderer, "Task", &id, &cancel).await.unwrap();
    assert_eq!(done["status"], "cancelled");
    assert!(done["statusReason"]["text"].as_str().unwrap().contains("Health Wallet"), "{done}");
    crate::sar_export::validate_fhir(&serde_json::to_vec(&done).unwrap());
    assert_eq!(app.fhir_read(&reader, "Task", &id).await.unwrap()["status"], "cancelled");
    assert!(matches!(app.fhir_update(&orderer, "Task", &id, &cancel).await, Err(AppError::Conflict(_))));
    let trail = app.store_for_tests().audit_for_patient(tp.practice.id, pat.id, 50).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "task.update" && e.actor_kind == "app"));
}

/// An order sent twice from the patient's page (a second tap, the page sent again) makes one
/// order: a medicine waiting for the practice's decision is not ordered again, also when both
/// arrive at once; once it is decided (or the order cancelled) it may be ordered again.
async fn a_medicine_waiting_for_a_decision_is_ordered_once(t: &TestStore) {
    let Setting { app, tp, pat, a, b, me } = setting(t).await;
    let tries: Vec<_> = (0..4)
        .map(|_| {
            let (app, me, a) = (app.clone(), me.clone(), a.id);
            tokio::spawn(async move { app.request_repeats(&me, None, &[a], "").await.unwrap() })
        })
        .collect();
    let mut made = Vec::new();
    for t in tries {
        match t.await.unwrap() {
            Ok(order) => made.push(order),
            Err(problems) => assert!(problems[0].message.contains("already ordered"), "{problems:?}"),
        }
    }
    assert_eq!(made.len(), 1, "one order of the medicine");
    // With another medicine it waits for, the order is refused whole; the other alone is fine.
    assert!(app.request_repeats(&me, None, &[a.id, b.id], "").await.unwrap().is_err());
    let other = app.request_repeats(&me, None, &[b.id], "").await.unwrap().unwrap();
    let open = app.store_for_tests().tasks_for_patient(tp.practice.id, pat.id).await.unwrap();
    assert_eq!(open.iter().filter(|t| t.status == TaskStatus::Open).count(), 2);
    // Decided, it may be ordered again.
    app.decide_repeat_item(&tp.clinician, made[0].id, a.id, true, "").await.unwrap();
    assert!(app.request_repeats(&me, None, &[a.id], "").await.unwrap().is_ok());
    settle(&app, &tp, &other).await;
}

/// R11, R12: a medicine hidden after it was ordered leaves the patient's list of orders with its
/// name; an order of it and another medicine keeps the other.
async fn a_medicine_hidden_after_it_was_ordered_leaves_the_list_of_orders(t: &TestStore) {
    let Setting { app, tp, pat, a, b, me } = setting(t).await;
    app.request_repeats(&me, None, &[a.id], "").await.unwrap().unwrap();
    app.request_repeats(&me, None, &[b.id], "").await.unwrap().unwrap();
    let names = |page: &caldicott_app::requests::RepeatPage| -> Vec<String> {
        page.requests
            .iter()
            .flat_map(|t| match &t.body {
                TaskBody::Repeat { items, .. } => items.iter().map(|i| i.drug.clone()).collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect()
    };
    let page = app.repeat_page(&me, None).await.unwrap();
    assert_eq!(page.requests.len(), 2);
    app.change_visibility(
        &tp.clinician,
        pat.nhs_number.as_str(),
        a.id,
        &caldicott_app::redaction::VisibilityChange::Hide {
            reason: HiddenReason::ThirdParty,
            note: "names a relative".into(),
        },
        false,
    )
    .await
    .unwrap();
    let page = app.repeat_page(&me, None).await.unwrap();
    assert_eq!(names(&page), vec!["Atorvastatin 20mg tablets".to_owned()], "the hidden medicine is not named");
    assert_eq!(page.requests.len(), 1);
}

both!(
    a_medicine_hidden_after_it_was_ordered_leaves_the_list_of_orders,
    a_medicine_waiting_for_a_decision_is_ordered_once,
    a_patient_cancels_an_order_the_practice_has_not_started_on,
    an_order_cancelled_as_it_is_decided_ends_one_way_only,
    two_medicines_of_one_order_decided_at_once_are_both_kept,
    a_linked_app_cancels_an_order_it_made,
);
