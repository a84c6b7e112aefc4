#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Staff instant messages (R43): kept for good, deletion recorded, linked to patients.

use caldicott_app::chat::{Compose, Sent};
use caldicott_app::fixtures::{self, adult};
use caldicott_app::{auth, App, AppError};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock())
}

async fn messages_are_kept_deleted_ones_too_and_linked_to_patients(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let doctor = tp.clinician.clone();
    let to_doctor = format!("staff:{}", doctor.staff);
    // Bad input is named.
    let bad = app
        .send_staff_message(&reception, &Compose { to: "staff:nope".into(), body: " ".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(bad.unwrap_err().iter().map(|p| p.field).collect::<Vec<_>>(), vec!["body", "to"]);
    // A message naming a patient's NHS number asks whether to link it first.
    let body = format!("Mrs Patient ({}) rang about her results, can you call her?", pat.nhs_number.as_str());
    let c = Compose { to: to_doctor.clone(), body: body.clone(), ..Default::default() };
    let Sent::AskToLink(named) = app.send_staff_message(&reception, &c).await.unwrap().unwrap() else {
        panic!("not asked")
    };
    assert_eq!(named.id, pat.id);
    let linked = Compose { link: Some(true), patient: pat.nhs_number.as_str().into(), ..c.clone() };
    let Sent::Sent(m) = app.send_staff_message(&reception, &linked).await.unwrap().unwrap() else { panic!("not sent") };
    assert_eq!(m.patient, Some(pat.id));
    // R8: staff messages about a patient never reach the patient's online view.
    let online = app
        .online_view(&doctor, pat.nhs_number.as_str(), caldicott_app::record::ViewAs::Patient, &Default::default())
        .await
        .unwrap();
    let json = serde_json::to_string(&online).unwrap();
    assert!(!json.contains("rang about her results") && !json.contains(&m.id.to_string()));
    // A plain message to the clinicians' team goes without asking.
    let team = Compose { to: "team:clinician".into(), body: "Coffee in the staff room".into(), ..Default::default() };
    let Sent::Sent(plain) = app.send_staff_message(&reception, &team).await.unwrap().unwrap() else { panic!() };
    assert_eq!(plain.patient, None);
    // The clinician has two unread; reading one marks it read and audits the look.
    assert_eq!(app.unread_staff_messages(&doctor).await.unwrap(), 2);
    let (read, about) = app.staff_message(&doctor, m.id).await.unwrap();
    assert_eq!((read.body.as_str(), about.map(|p| p.id)), (body.as_str(), Some(pat.id)));
    assert_eq!(app.unread_staff_messages(&doctor).await.unwrap(), 1);
    assert_eq!(app.staff_inbox(&doctor, "results").await.unwrap().len(), 1, "search");
    // Another receptionist's team message is not the manager's to read.
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    assert!(matches!(app.staff_message(&manager, plain.id).await, Err(AppError::NotFound(_))));
    // Deleting hides it from both, but keeps it with who and when, on the patient's tab.
    app.delete_staff_message(&doctor, m.id).await.unwrap();
    assert!(app.staff_inbox(&reception, "").await.unwrap().iter().all(|(x, _)| x.id != m.id));
    assert!(matches!(app.staff_message(&reception, m.id).await, Err(AppError::NotFound(_))));
    let about = app.staff_messages_about(&manager, &pat).await.unwrap();
    assert_eq!(about.len(), 1);
    assert_eq!(about[0].deleted_by.as_deref(), Some(doctor.name.as_str()));
    assert!(about[0].deleted_at.is_some());
    assert!(matches!(app.delete_staff_message(&doctor, m.id).await, Err(AppError::Conflict(_))));
    let actions: Vec<String> = fixtures::audit_actions(&app, tp.practice.id).await;
    for a in ["staff_message.send", "staff_message.view", "staff_message.delete"] {
        assert!(actions.contains(&a.to_owned()), "{a}");
    }
    // Administrators and ICB analysts are not part of it.
    let analyst = auth::authenticate(&app, &tp.analyst_token).await.unwrap();
    assert!(matches!(app.staff_inbox(&analyst, "").await, Err(AppError::Forbidden(_))));
}

both!(messages_are_kept_deleted_ones_too_and_linked_to_patients);
