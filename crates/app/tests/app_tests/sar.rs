#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The subject access request register (R31, R32, R34). Both databases.

use caldicott_app::fixtures::{self, adult};
use caldicott_app::sar::{due_of, NewSar, SarChange};
use caldicott_app::{auth, App, AppError};
use caldicott_core::sar::due_date;
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::{Datelike, Duration};

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock())
}

fn typed(nhs: &str, d: chrono::NaiveDate, waiting: &str) -> NewSar {
    NewSar {
        nhs_number: nhs.into(),
        requester: "The patient".into(),
        relationship: String::new(),
        day: d.day().to_string(),
        month: d.month().to_string(),
        year: d.year().to_string(),
        waiting_for: waiting.into(),
        notes: String::new(),
    }
}

async fn the_register_keeps_the_statutory_clock(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let nhs = pat.nhs_number.as_str();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let today = app.today();
    // Every bad field is named; nothing is logged.
    let bad = app
        .log_sar(&reception, &NewSar { requester: " ".into(), ..typed("123", today + Duration::days(1), "x") })
        .await
        .unwrap();
    let fields: Vec<&str> = bad.unwrap_err().iter().map(|p| p.field).collect();
    assert_eq!(fields, vec!["nhs_number", "requester", "received", "waiting_for"]);
    // R31: due one calendar month on, on a working day.
    let sar = app.log_sar(&reception, &typed(nhs, today, "")).await.unwrap().unwrap();
    assert_eq!(due_of(&sar), Some(due_date(today, false)));
    // Waiting for identity stops the clock; verification restarts it from that day.
    let waiting = app.log_sar(&reception, &typed(nhs, today - Duration::days(10), "identity")).await.unwrap().unwrap();
    assert_eq!(due_of(&waiting), None);
    let verified = app
        .change_sar(&reception, waiting.id, &SarChange::IdentityVerified(today - Duration::days(2)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(due_of(&verified), Some(due_date(today - Duration::days(2), false)));
    // R32: receptionists do not extend; an extension needs a reason and notice, before the due date.
    let extend =
        SarChange::Extend { reason: "Twenty years of records and many letters".into(), notified_on: Some(today) };
    assert!(matches!(app.change_sar(&reception, sar.id, &extend).await, Err(AppError::Forbidden(_))));
    let no_notice = SarChange::Extend { reason: "Complex".into(), notified_on: None };
    assert_eq!(app.change_sar(&manager, sar.id, &no_notice).await.unwrap().unwrap_err()[0].field, "reason");
    let extended = app.change_sar(&manager, sar.id, &extend).await.unwrap().unwrap();
    assert_eq!(extended.status, "extended");
    assert_eq!(due_of(&extended), Some(due_date(today, true)));
    let twice = app.change_sar(&manager, sar.id, &extend).await.unwrap().unwrap_err();
    assert!(twice[0].message.contains("already been extended"));
    // A request whose due date has passed cannot be extended (R32).
    let old = app.log_sar(&reception, &typed(nhs, today - Duration::days(60), "")).await.unwrap().unwrap();
    let late = app.change_sar(&manager, old.id, &extend).await.unwrap().unwrap_err();
    assert!(late[0].message.contains("before the original due date"), "{late:?}");
    // The register puts the overdue one first.
    let register = app.sar_register(&reception).await.unwrap();
    assert_eq!(register[0].sar.id, old.id);
    assert!(register[0].days_left.unwrap() < 0);
    // Refusing needs a reason; releasing closes it.
    let refuse = SarChange::Close { status: "refused".into(), note: " ".into() };
    assert_eq!(app.change_sar(&manager, old.id, &refuse).await.unwrap().unwrap_err()[0].field, "note");
    let closed = app
        .change_sar(&manager, old.id, &SarChange::Close { status: "released".into(), note: String::new() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((closed.status.as_str(), closed.closed_on), ("released", Some(today)));
    assert!(matches!(
        app.change_sar(&manager, old.id, &SarChange::WaitFor("identity".into())).await,
        Err(AppError::Conflict(_))
    ));
    // Every change is audited; ICB analysts and administrators see nothing.
    let actions: Vec<String> = fixtures::audit_actions(&app, tp.practice.id).await;
    assert_eq!(actions.iter().filter(|a| *a == "sar.log").count(), 3);
    assert!(actions.iter().filter(|a| *a == "sar.update").count() >= 3);
    let analyst = auth::authenticate(&app, &tp.analyst_token).await.unwrap();
    assert!(matches!(app.sar_register(&analyst).await, Err(AppError::Forbidden(_))));
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    assert!(matches!(app.sar_view(&admin, sar.id).await, Err(AppError::Forbidden(_))));
}

async fn a_fee_only_for_a_manifestly_unfounded_request(t: &TestStore) {
    // R34: no fee, unless the request is marked manifestly unfounded or excessive.
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let today = app.today();
    let sar =
        app.log_sar(&manager, &typed(pat.nhs_number.as_str(), today - Duration::days(5), "")).await.unwrap().unwrap();
    let before = due_of(&sar);
    let marked = app
        .change_sar(
            &manager,
            sar.id,
            &SarChange::Unfounded { fee_received: Some(today), note: "Fifth identical request this month".into() },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(marked.manifestly_unfounded);
    assert_eq!(due_of(&marked), Some(due_date(today, false)), "the clock runs from the fee");
    assert_ne!(due_of(&marked), before);
    let empty = SarChange::Unfounded { fee_received: None, note: String::new() };
    assert_eq!(app.change_sar(&manager, sar.id, &empty).await.unwrap().unwrap_err()[0].field, "note");
}

both!(the_register_keeps_the_statutory_clock, a_fee_only_for_a_manifestly_unfounded_request);
