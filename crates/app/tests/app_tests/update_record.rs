#![allow(clippy::unwrap_used, clippy::expect_used)]
//! GP Connect Update Record (R24–R30, T34, T35) with the sample messages in
//! docs/examples/update-record/. Every case runs against SQLite and PostgreSQL.

use caldicott_app::fixtures::{self, date, person};
use caldicott_app::record::{PageRequest, ViewAs};
use caldicott_app::update_record::Amend;
use caldicott_app::{auth, App, AppError, StaffPrincipal};
use caldicott_core::access::{AccessLevel, AccountKind, IdentityLevel, OnlineAccount};
use caldicott_core::audit::Action;
use caldicott_core::entry::{HiddenReason, Origin};
use caldicott_core::ids::{AccountId, PracticeId};
use caldicott_core::patient::Patient;
use caldicott_core::tasks::{TaskKind, TaskStatus};
use caldicott_core::update_record::ItkCode;
use caldicott_core::NhsNumber;
use caldicott_store::both;
use caldicott_store::inbound::InboundStatus;
use caldicott_store::test_support::{self, TestStore};

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock())
}

fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../docs/examples/update-record/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

struct Setup {
    app: App,
    practice: PracticeId,
    clinician: StaffPrincipal,
    manager: StaffPrincipal,
    admin: StaffPrincipal,
    client_id: String,
    secret: String,
    hannah: Patient,
}

/// A practice with the sample messages' patient (Hannah Rivers, 9990996008, born 1987-03-14,
/// with a P9 account) and the pharmacy FA123 registered as a sender.
async fn setup(t: &TestStore) -> Setup {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let p = tp.practice.id;
    let mut hannah = person(p, date(1987, 3, 14));
    hannah.nhs_number = NhsNumber::parse("9990996008").unwrap();
    hannah.name.given = "Hannah".into();
    hannah.name.family = "Rivers".into();
    app.store_for_tests()
        .create_patient(p, &hannah, &fixtures::audit(Action::PatientCreate, Some(hannah.id)))
        .await
        .unwrap();
    let account = OnlineAccount {
        id: AccountId::from_uuid(caldicott_app::new_id()),
        holder: hannah.id,
        kind: AccountKind::NhsLogin,
        identity: IdentityLevel::P9,
        created_at: fixtures::time(2024, 1, 1),
    };
    app.store_for_tests()
        .create_online_account(p, &account, &fixtures::audit(Action::OnlineAccountCreate, Some(hannah.id)))
        .await
        .unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let (sender, secret) = app.register_sender(&admin, "FA123", "Quayside Pharmacy").await.unwrap();
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    Setup { app, practice: p, clinician: tp.clinician, manager, admin, client_id: sender.client_id, secret, hannah }
}

impl Setup {
    async fn send(&self, name: &str) -> caldicott_app::update_record::Receipt {
        self.app.receive_update_http(&self.client_id, &self.secret, &example(name)).await.unwrap()
    }
    async fn online_texts(&self) -> String {
        let page = self
            .app
            .online_view(&self.clinician, self.hannah.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
            .await
            .unwrap();
        serde_json::to_string(&page).unwrap()
    }
    /// What a new proxy with full access since yesterday sees of Hannah's record, as JSON.
    async fn proxy_texts(&self) -> String {
        let applicant = fixtures::adult(&self.app, self.practice).await.unwrap();
        let since = fixtures::today() - chrono::Duration::days(1);
        let link = fixtures::proxy_link(&self.app, self.practice, &self.hannah, &applicant, AccessLevel::Full, since)
            .await
            .unwrap();
        let view = ViewAs::Proxy(link.id);
        let page = self
            .app
            .online_view(&self.clinician, self.hannah.nhs_number.as_str(), view, &PageRequest::default())
            .await
            .unwrap();
        serde_json::to_string(&page).unwrap()
    }
    async fn actions(&self) -> Vec<String> {
        fixtures::audit_actions(&self.app, self.practice).await
    }
}

async fn a_pharmacy_first_summary_is_reviewed_amended_and_filed(t: &TestStore) {
    // R26, T35, D8
    let s = setup(t).await;
    let r = s.send("pharmacy-first.json").await;
    assert_eq!((r.code, r.outcome), (20013, ItkCode::Success));
    let id = r.id.unwrap();
    // Redelivered three times: the same answer, one message, one task (T35).
    for _ in 0..3 {
        let again = s.send("pharmacy-first.json").await;
        assert_eq!((again.code, again.id), (20007, Some(id)));
        // It says when the first copy came, as an ISO 8601 instant.
        let when = again.problems[0].rsplit(' ').next().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(when).is_ok(), "{:?}", again.problems);
    }
    let tasks: Vec<_> = s.app.task_list(&s.clinician, false).await.unwrap();
    assert_eq!(tasks.iter().filter(|(t, _)| t.kind == TaskKind::PharmacyUpdate).count(), 1);
    // Nothing is filed or shown before review.
    assert!(!s.online_texts().await.contains("Phenoxymethylpenicillin"));
    let (queue, unmatched) = s.app.inbound_queue(&s.clinician).await.unwrap();
    assert_eq!((queue.len(), unmatched.len()), (1, 0));
    assert_eq!(queue[0].service, "Community Pharmacy Pharmacy First Service");
    // The clinician recodes the condition and removes the impression.
    let bad = s
        .app
        .amend_inbound(&s.clinician, id, &Amend::Recode { item: 1, code: "12x".into(), term: "x".into() })
        .await
        .unwrap();
    assert_eq!(bad.unwrap_err()[0].field, "code");
    s.app
        .amend_inbound(
            &s.clinician,
            id,
            &Amend::Recode { item: 1, code: "267102003".into(), term: "Sore throat symptom".into() },
        )
        .await
        .unwrap()
        .unwrap();
    s.app.amend_inbound(&s.clinician, id, &Amend::Remove { item: 0 }).await.unwrap().unwrap();
    let view = s.app.inbound_view(&s.clinician, id).await.unwrap();
    assert_eq!(view.amendments.len(), 2);
    assert_eq!(view.message.items.len(), 2);
    assert_eq!(view.record.items.len(), 3, "the original is kept as it came");
    // Receptionists and practice managers cannot file.
    assert!(matches!(s.app.file_inbound(&s.manager, id).await, Err(AppError::Forbidden(_))));
    assert!(matches!(s.app.reject_inbound(&s.manager, id, "no").await, Err(AppError::Forbidden(_))));
    let made = s.app.file_inbound(&s.clinician, id).await.unwrap();
    assert_eq!(made.len(), 3, "a summary entry and the two items left");
    assert!(matches!(s.app.file_inbound(&s.clinician, id).await, Err(AppError::Conflict(_))));
    // Filed entries cite their source and follow the practice default (visible).
    let record = s
        .app
        .staff_record(&s.clinician, s.hannah.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    let filed: Vec<_> = record.entries.iter().filter(|e| made.contains(&e.entry.id)).collect();
    assert_eq!(filed.len(), 3);
    for e in &filed {
        assert_eq!(e.entry.origin, Origin::Inbound { sender_ods: "FA123".into() });
        assert!(e.entry.author.name.contains("Update Record message c1a4e5f0-0001"), "{}", e.entry.author.name);
        assert!(e.online.withheld.is_none());
    }
    let online = s.online_texts().await;
    assert!(online.contains("Phenoxymethylpenicillin"));
    assert!(online.contains("Sore throat symptom"));
    assert!(!online.contains("FeverPAIN"), "the removed impression was not filed");
    // The task is done, and every step is in the audit trail.
    let open: Vec<_> = s.app.task_list(&s.clinician, false).await.unwrap();
    assert!(open.iter().all(|(t, _)| t.kind != TaskKind::PharmacyUpdate || t.status == TaskStatus::Done));
    let actions = s.actions().await;
    for a in ["inbound.receive", "inbound.amend", "inbound.file", "inbound.view"] {
        assert!(actions.contains(&a.to_owned()), "{a} audited");
    }
}

async fn nopat_keeps_every_filed_entry_off_line(t: &TestStore) {
    // R29: for the patient and for proxies.
    let s = setup(t).await;
    let r = s.send("pharmacy-first-nopat.json").await;
    let made = s.app.file_inbound(&s.clinician, r.id.unwrap()).await.unwrap();
    assert!(!made.is_empty());
    let online = s.online_texts().await;
    assert!(!online.contains("Levonorgestrel") && !online.contains("emergency hormonal"));
    for id in &made {
        assert!(!online.contains(&id.to_string()));
    }
    let proxy_view = s.proxy_texts().await;
    assert!(!proxy_view.contains("Levonorgestrel"));
    let record = s
        .app
        .staff_record(&s.clinician, s.hannah.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(record
        .entries
        .iter()
        .filter(|e| made.contains(&e.entry.id))
        .all(|e| e.entry.nopat && e.online.withheld.is_some()));
}

async fn the_practice_default_for_inbound_data_can_keep_filed_entries_off_line(t: &TestStore) {
    // D8: without NOPAT, filed entries follow the practice's "visible online" default.
    let s = setup(t).await;
    let mut settings = s.app.store_for_tests().practice(s.practice).await.unwrap().unwrap().online;
    settings.visible_online_by_default = false;
    s.app
        .store_for_tests()
        .set_online_services(s.practice, &settings, &fixtures::audit(Action::PracticeSettingsChange, None))
        .await
        .unwrap();
    let id = s.send("contraception.json").await.id.unwrap();
    let made = s.app.file_inbound(&s.clinician, id).await.unwrap();
    let online = s.online_texts().await;
    assert!(!online.contains("Desogestrel"));
    for e in &made {
        assert!(!online.contains(&e.to_string()));
    }
    let record = s
        .app
        .staff_record(&s.clinician, s.hannah.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    assert!(record
        .entries
        .iter()
        .filter(|e| made.contains(&e.entry.id))
        .all(|e| e.online.withheld.is_some() && !e.entry.nopat));
}

async fn a_rejected_message_files_nothing(t: &TestStore) {
    // R27
    let s = setup(t).await;
    let id = s.send("blood-pressure-check.json").await.id.unwrap();
    assert_eq!(s.app.reject_inbound(&s.clinician, id, "  ").await.unwrap().unwrap_err()[0].field, "reason");
    s.app.reject_inbound(&s.clinician, id, "Not our patient's consultation: wrong person").await.unwrap().unwrap();
    let m = s.app.store_for_tests().inbound(s.practice, id).await.unwrap().unwrap();
    assert_eq!(m.status, InboundStatus::Rejected);
    assert!(s.app.store_for_tests().inbound_entries(s.practice, id).await.unwrap().is_empty());
    assert!(!s.online_texts().await.contains("152/94"));
    assert!(s.actions().await.contains(&"inbound.reject".to_owned()));
    assert!(matches!(s.app.file_inbound(&s.clinician, id).await, Err(AppError::Conflict(_))));
    // Redelivery after the rejection changes nothing.
    assert_eq!(s.send("blood-pressure-check.json").await.code, 20007);
}

async fn invalid_messages_are_refused_whole_with_their_reason(t: &TestStore) {
    // R25
    let s = setup(t).await;
    for (name, reason) in [
        ("invalid-iteration-2-allergy.json", "Iteration 2"),
        ("invalid-profile.json", "not an Iteration 1 profile"),
        ("invalid-service-code.json", "accepted services"),
        ("invalid-no-patient.json", "exactly one Patient"),
        ("invalid-nhs-number.json", "NHS number"),
        ("invalid-event.json", "ITK014M"),
    ] {
        let r = s.send(name).await;
        assert_eq!((r.code, r.outcome), (20009, ItkCode::PayloadInvalid), "{name}");
        assert!(r.problems.iter().any(|p| p.contains(reason)), "{name}: {:?}", r.problems);
        let m = s.app.store_for_tests().inbound(s.practice, r.id.unwrap()).await.unwrap().unwrap();
        assert_eq!(m.status, InboundStatus::Invalid);
        assert!(!m.payload.is_empty(), "the message is kept as it came");
    }
    let r = s.app.receive_update_http(&s.client_id, &s.secret, b"{not json").await.unwrap();
    assert_eq!(r.code, 20009);
    assert!(s
        .app
        .task_list(&s.clinician, false)
        .await
        .unwrap()
        .iter()
        .all(|(t, _)| t.kind != TaskKind::PharmacyUpdate));
    // Wrong credentials are refused before anything is read.
    assert!(matches!(
        s.app.receive_update_http(&s.client_id, "guess", &example("pharmacy-first.json")).await,
        Err(AppError::Unauthenticated(_))
    ));
}

async fn a_message_that_matches_no_registered_patient_waits_apart(t: &TestStore) {
    // T34: never onto the wrong record.
    let s = setup(t).await;
    // The same NHS number with another date of birth.
    let body = String::from_utf8(example("pharmacy-first.json")).unwrap().replace("1987-03-14", "1987-03-15");
    let r = s.app.receive_update_http(&s.client_id, &s.secret, body.as_bytes()).await.unwrap();
    assert_eq!(r.code, 20013);
    let (queue, unmatched) = s.app.inbound_queue(&s.clinician).await.unwrap();
    assert!(queue.is_empty());
    assert_eq!(unmatched.len(), 1);
    assert!(matches!(s.app.file_inbound(&s.clinician, r.id.unwrap()).await, Err(AppError::Conflict(_))));
    assert!(!s.online_texts().await.contains("Phenoxymethylpenicillin"));
    // An NHS number not registered here.
    let other = String::from_utf8(example("blood-pressure-check.json")).unwrap().replace("9990996008", "9990000018");
    let r = s.app.receive_update_http(&s.client_id, &s.secret, other.as_bytes()).await.unwrap();
    assert_eq!(
        s.app.store_for_tests().inbound(s.practice, r.id.unwrap()).await.unwrap().unwrap().status,
        InboundStatus::Unmatched
    );
}

async fn an_unmatched_message_is_matched_again_once_the_patient_is_registered(t: &TestStore) {
    // T34, R26: a summary for someone not yet registered is not lost: once they are, a clinician
    // matches it again by the same rule (NHS number and date of birth, registered today), and it
    // waits for review with one task, however many clinicians press the button at once. One that
    // still does not match stays apart with the reason; one not the practice's is closed.
    let s = setup(t).await;
    let pharmacy_tasks = |app: App, who: StaffPrincipal| async move {
        app.task_list(&who, false)
            .await
            .unwrap()
            .into_iter()
            .filter(|(t, _)| t.kind == TaskKind::PharmacyUpdate)
            .count()
    };
    let body = String::from_utf8(example("blood-pressure-check.json")).unwrap().replace("9990996008", "9990000018");
    let id = s.app.receive_update_http(&s.client_id, &s.secret, body.as_bytes()).await.unwrap().id.unwrap();
    assert_eq!(
        s.app.store_for_tests().inbound(s.practice, id).await.unwrap().unwrap().status,
        InboundStatus::Unmatched
    );
    // Only clinicians match; nobody is registered with that number yet, so nothing changes.
    assert!(matches!(s.app.match_inbound_again(&s.manager, id).await, Err(AppError::Forbidden(_))));
    let why = s.app.match_inbound_again(&s.clinician, id).await.unwrap().unwrap_err();
    assert!(why.contains("9990000018") && why.contains("registered here yet"), "{why}");
    assert_eq!(
        s.app.store_for_tests().inbound(s.practice, id).await.unwrap().unwrap().status,
        InboundStatus::Unmatched
    );
    assert_eq!(pharmacy_tasks(s.app.clone(), s.clinician.clone()).await, 0);
    // The patient registers (same NHS number and date of birth as sent).
    let mut sam = person(s.practice, date(1987, 3, 14));
    sam.nhs_number = NhsNumber::parse("9990000018").unwrap();
    s.app
        .store_for_tests()
        .create_patient(s.practice, &sam, &fixtures::audit(Action::PatientCreate, Some(sam.id)))
        .await
        .unwrap();
    // Two clinicians match it at the same moment: one matches, the other is told it is done.
    let (a, b) = tokio::join!(s.app.match_inbound_again(&s.clinician, id), s.app.match_inbound_again(&s.clinician, id));
    let matched: Vec<_> = [&a, &b].into_iter().filter(|r| matches!(r, Ok(Ok(p)) if *p == sam.id)).collect();
    assert_eq!(matched.len(), 1, "{a:?} {b:?}");
    assert!([&a, &b].into_iter().any(|r| matches!(r, Err(AppError::Conflict(_)))), "{a:?} {b:?}");
    let m = s.app.store_for_tests().inbound(s.practice, id).await.unwrap().unwrap();
    assert_eq!((m.status, m.patient), (InboundStatus::Pending, Some(sam.id)));
    assert_eq!(pharmacy_tasks(s.app.clone(), s.clinician.clone()).await, 1);
    assert!(s.actions().await.iter().any(|a| a == "inbound.match"));
    // It is reviewed and filed like any other, into that patient's record only.
    let filed = s.app.file_inbound(&s.clinician, id).await.unwrap();
    assert!(!filed.is_empty());
    for e in filed {
        assert_eq!(s.app.store_for_tests().entry(s.practice, e).await.unwrap().unwrap().patient, sam.id);
    }
    // A date of birth that differs stays apart, with the reason; then it is closed as not ours.
    let wrong_born = String::from_utf8(example("pharmacy-first.json")).unwrap().replace("1987-03-14", "1987-03-15");
    let other = s.app.receive_update_http(&s.client_id, &s.secret, wrong_born.as_bytes()).await.unwrap().id.unwrap();
    let why = s.app.match_inbound_again(&s.clinician, other).await.unwrap().unwrap_err();
    assert!(why.contains("born on 14 March 1987") && why.contains("15 March 1987"), "{why}");
    assert_eq!(
        s.app.store_for_tests().inbound(s.practice, other).await.unwrap().unwrap().status,
        InboundStatus::Unmatched
    );
    s.app
        .reject_inbound(&s.clinician, other, "Not our patient: returned to the pharmacy by phone")
        .await
        .unwrap()
        .unwrap();
    let closed = s.app.store_for_tests().inbound(s.practice, other).await.unwrap().unwrap();
    assert_eq!((closed.status, closed.patient), (InboundStatus::Rejected, None));
    assert!(!s.online_texts().await.contains("Phenoxymethylpenicillin"), "nothing reaches Hannah's record");
    assert!(matches!(s.app.match_inbound_again(&s.clinician, other).await, Err(AppError::Conflict(_))));
}

async fn a_replacement_supersedes_and_shows_what_changed(t: &TestStore) {
    // R28
    let s = setup(t).await;
    // Before filing: the earlier one is superseded and its task closed.
    let first = s.send("pharmacy-first.json").await.id.unwrap();
    let second = s.send("pharmacy-first-replacement.json").await.id.unwrap();
    let old = s.app.store_for_tests().inbound(s.practice, first).await.unwrap().unwrap();
    assert_eq!((old.status, old.superseded_by), (InboundStatus::Superseded, Some(second)));
    let (queue, _) = s.app.inbound_queue(&s.clinician).await.unwrap();
    assert_eq!(queue.iter().map(|m| m.id).collect::<Vec<_>>(), vec![second]);
    let open: Vec<_> = s.app.task_list(&s.clinician, false).await.unwrap();
    assert_eq!(
        open.iter().filter(|(t, _)| t.kind == TaskKind::PharmacyUpdate && t.status == TaskStatus::Open).count(),
        1
    );
    // After filing: the replacement's review shows the difference from what was filed.
    let t2 = test_support_fresh(t).await;
    let s2 = setup(&t2).await;
    let first = s2.send("pharmacy-first.json").await.id.unwrap();
    s2.app.file_inbound(&s2.clinician, first).await.unwrap();
    let second = s2.send("pharmacy-first-replacement.json").await.id.unwrap();
    let view = s2.app.inbound_view(&s2.clinician, second).await.unwrap();
    assert_eq!(view.changes_from_filed.len(), 2, "{:?}", view.changes_from_filed);
    assert!(view.changes_from_filed.iter().any(|c| c.starts_with("Added:") && c.contains("10 days")));
    assert_eq!(view.replaces.unwrap().status, InboundStatus::Filed);
}

async fn test_support_fresh(t: &TestStore) -> TestStore {
    match t.store.backend() {
        caldicott_store::Backend::Sqlite => test_support::sqlite().await.unwrap(),
        caldicott_store::Backend::Postgres => test_support::postgres().await.unwrap(),
    }
}

async fn the_practice_switch_refuses_and_logs(t: &TestStore) {
    // R30
    let s = setup(t).await;
    let ods = s.app.store_for_tests().practice(s.practice).await.unwrap().unwrap();
    let mut settings = ods.online.clone();
    settings.accept_update_record = false;
    s.app
        .store_for_tests()
        .set_online_services(s.practice, &settings, &fixtures::audit(Action::PracticeSettingsChange, None))
        .await
        .unwrap();
    let r = s.send("pharmacy-first.json").await;
    assert_eq!((r.code, r.outcome), (20010, ItkCode::Refused));
    let m = s.app.store_for_tests().inbound(s.practice, r.id.unwrap()).await.unwrap().unwrap();
    assert_eq!(m.status, InboundStatus::Refused, "refused, and kept: never silently dropped");
    assert!(s
        .app
        .task_list(&s.clinician, false)
        .await
        .unwrap()
        .iter()
        .all(|(t, _)| t.kind != TaskKind::PharmacyUpdate));
    settings.accept_update_record = true;
    s.app
        .store_for_tests()
        .set_online_services(s.practice, &settings, &fixtures::audit(Action::PracticeSettingsChange, None))
        .await
        .unwrap();
    assert_eq!(s.send("blood-pressure-check.json").await.code, 20013);
}

impl Setup {
    async fn accept_update_record(&self, on: bool) {
        let mut settings = self.app.store_for_tests().practice(self.practice).await.unwrap().unwrap().online;
        settings.accept_update_record = on;
        self.app
            .store_for_tests()
            .set_online_services(self.practice, &settings, &fixtures::audit(Action::PracticeSettingsChange, None))
            .await
            .unwrap();
    }
    async fn open_pharmacy_tasks(&self) -> usize {
        let tasks = self.app.task_list(&self.clinician, false).await.unwrap();
        tasks.iter().filter(|(t, _)| t.kind == TaskKind::PharmacyUpdate && t.status == TaskStatus::Open).count()
    }
}

async fn a_message_refused_while_switched_off_is_taken_when_sent_again(t: &TestStore) {
    // R30, D13: the pharmacy was told 20010, so it sends the same message again once the
    // practice accepts; only an accepted message id is a duplicate (20007).
    let s = setup(t).await;
    s.accept_update_record(false).await;
    let refused = s.send("pharmacy-first.json").await;
    assert_eq!(refused.code, 20010);
    s.accept_update_record(true).await;
    let again = s.send("pharmacy-first.json").await;
    assert_eq!((again.code, again.outcome), (20013, ItkCode::Success), "{:?}", again.problems);
    assert_ne!(again.id, refused.id);
    assert_eq!(s.open_pharmacy_tasks().await, 1);
    let (queue, _) = s.app.inbound_queue(&s.clinician).await.unwrap();
    assert_eq!(queue.iter().map(|m| Some(m.id)).collect::<Vec<_>>(), vec![again.id]);
    // The refusal stays on record, and from now on the message is a duplicate of the accepted one.
    let refusal = s.app.store_for_tests().inbound(s.practice, refused.id.unwrap()).await.unwrap().unwrap();
    assert_eq!(refusal.status, InboundStatus::Refused);
    let third = s.send("pharmacy-first.json").await;
    assert_eq!((third.code, third.id), (20007, again.id));
    assert_eq!(s.open_pharmacy_tasks().await, 1);
}

async fn a_message_refused_as_invalid_is_taken_when_sent_again_corrected(t: &TestStore) {
    // R25, D13: a message refused 20009 was not delivered; corrected and sent again with the same
    // id, it is processed.
    let s = setup(t).await;
    let broken = String::from_utf8(example("pharmacy-first.json")).unwrap().replace("2129921000000100", "185317003");
    let refused = s.app.receive_update_http(&s.client_id, &s.secret, broken.as_bytes()).await.unwrap();
    assert_eq!(refused.code, 20009);
    let again = s.send("pharmacy-first.json").await;
    assert_eq!((again.code, again.outcome), (20013, ItkCode::Success), "{:?}", again.problems);
    assert_eq!(s.open_pharmacy_tasks().await, 1);
    // The same invalid message twice is refused twice, and both refusals are kept.
    let broken_again = s.app.receive_update_http(&s.client_id, &s.secret, broken.as_bytes()).await.unwrap();
    assert_eq!(broken_again.code, 20007, "after acceptance the id is taken: {:?}", broken_again.problems);
    let other = String::from_utf8(example("blood-pressure-check.json")).unwrap().replace("ITK014M", "ITK007C");
    for _ in 0..2 {
        let r = s.app.receive_update_http(&s.client_id, &s.secret, other.as_bytes()).await.unwrap();
        assert_eq!(r.code, 20009, "{:?}", r.problems);
    }
    let refusals = s.app.inbound_log(&s.clinician).await.unwrap();
    assert_eq!(refusals.iter().filter(|m| m.status == InboundStatus::Invalid).count(), 3);
}

async fn a_refused_message_sent_again_by_parallel_clients_is_taken_once(t: &TestStore) {
    // D13, T35: after a refusal (20010), sixteen clients resend the same message at once: one is
    // accepted, the others are told 20007, and there is one task.
    let s = setup(t).await;
    s.accept_update_record(false).await;
    assert_eq!(s.send("pharmacy-first.json").await.code, 20010);
    s.accept_update_record(true).await;
    let body = example("pharmacy-first.json");
    let mut handles = Vec::new();
    for _ in 0..16 {
        let (app, id, secret, body) = (s.app.clone(), s.client_id.clone(), s.secret.clone(), body.clone());
        handles.push(tokio::spawn(async move { app.receive_update_http(&id, &secret, &body).await.unwrap() }));
    }
    let mut receipts = Vec::new();
    for h in handles {
        receipts.push(h.await.unwrap());
    }
    let accepted: Vec<_> = receipts.iter().filter(|r| r.code == 20013).collect();
    assert_eq!(accepted.len(), 1, "{:?}", receipts.iter().map(|r| r.code).collect::<Vec<_>>());
    assert!(receipts.iter().filter(|r| r.code != 20013).all(|r| r.code == 20007 && r.id == accepted[0].id));
    assert_eq!(s.open_pharmacy_tasks().await, 1);
}

async fn an_oversize_message_is_answered_and_recorded_like_other_refusals(t: &TestStore) {
    // R25, D13: larger than 2 MB: refused whole with 20009 and the reason, and kept on record
    // like every refusal, so nothing is silently dropped.
    let s = setup(t).await;
    let mut body = example("pharmacy-first.json");
    body.resize(caldicott_core::update_record::MAX_MESSAGE_BYTES + 1, b' ');
    let r = s.app.receive_update_http(&s.client_id, &s.secret, &body).await.unwrap();
    assert_eq!((r.code, r.outcome), (20009, ItkCode::PayloadInvalid));
    assert!(r.problems.iter().any(|p| p.contains("larger than 2 MB")), "{:?}", r.problems);
    let m = s.app.store_for_tests().inbound(s.practice, r.id.unwrap()).await.unwrap().unwrap();
    assert_eq!((m.status, m.response_code), (InboundStatus::Invalid, 20009));
    assert!(s.actions().await.contains(&"inbound.receive".to_owned()));
    // Sent again within the limit, the same message is taken.
    assert_eq!(s.send("pharmacy-first.json").await.code, 20013);
}

async fn files_in_the_inbox_are_taken_once_and_acknowledged(t: &TestStore) {
    // R24 by a mailbox transport: the same rules as over HTTP.
    let s = setup(t).await;
    let ods = s.app.store_for_tests().practice(s.practice).await.unwrap().unwrap().ods_code;
    let inbox = std::env::temp_dir().join(format!("caldicott-inbox-{}", uuid::Uuid::now_v7().simple()));
    let mine = inbox.join(ods.as_str());
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("a.json"), example("pharmacy-first.json")).unwrap();
    std::fs::write(mine.join("b.json"), example("invalid-service-code.json")).unwrap();
    std::fs::write(mine.join("notes.txt"), "not a message").unwrap();
    std::fs::create_dir_all(inbox.join("Z99999")).unwrap();
    std::fs::write(inbox.join("Z99999").join("c.json"), example("pharmacy-first.json")).unwrap();
    let done = s.app.process_update_record_inbox(&inbox).await.unwrap();
    assert_eq!(done.len(), 3);
    let code = |name: &str| done.iter().find(|f| f.path.ends_with(name)).unwrap().receipt.clone();
    assert_eq!(code("a.json").unwrap().code, 20013);
    assert_eq!(code("b.json").unwrap().code, 20009);
    assert!(code("c.json").unwrap_err().contains("Z99999"));
    assert!(mine.join("processed/a.json").exists() && mine.join("processed/a.json.ack.json").exists());
    assert!(std::fs::read_to_string(mine.join("processed/a.json.ack.json")).unwrap().contains("20013"));
    assert!(inbox.join("Z99999/failed/c.json").exists());
    assert!(mine.join("notes.txt").exists(), "only messages are taken");
    // Read once: a second pass finds nothing new.
    assert!(s.app.process_update_record_inbox(&inbox).await.unwrap().is_empty());
    let (queue, _) = s.app.inbound_queue(&s.clinician).await.unwrap();
    assert_eq!(queue.len(), 1);
    let _ = std::fs::remove_dir_all(&inbox);
}

async fn the_inbox_never_follows_a_symbolic_link(t: &TestStore) {
    // ASVS V12.3: whoever can write into the inbox cannot make the server read a file outside
    // it (or another practice's folder): links are moved aside unread, never followed.
    let s = setup(t).await;
    let ods = s.app.store_for_tests().practice(s.practice).await.unwrap().unwrap().ods_code;
    let base = std::env::temp_dir().join(format!("caldicott-inbox-{}", uuid::Uuid::now_v7().simple()));
    let inbox = base.join("inbox");
    let mine = inbox.join(ods.as_str());
    std::fs::create_dir_all(&mine).unwrap();
    // A valid message outside the inbox, and a folder of messages outside it.
    let outside = base.join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.json"), example("pharmacy-first.json")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.json"), mine.join("link.json")).unwrap();
    std::os::unix::fs::symlink(&outside, inbox.join("Y12345")).unwrap();
    std::fs::create_dir_all(mine.join("folder.json")).unwrap();
    let done = s.app.process_update_record_inbox(&inbox).await.unwrap();
    let refused = |name: &str| done.iter().find(|f| f.path.ends_with(name)).unwrap().receipt.clone().unwrap_err();
    assert!(refused("link.json").contains("symbolic link"), "{done:?}");
    assert!(refused("folder.json").contains("not a regular file"), "{done:?}");
    assert_eq!(done.len(), 2, "the linked folder is not read: {done:?}");
    // The link itself was moved aside; what it pointed at is untouched and was never taken.
    let moved = mine.join("failed/link.json");
    assert!(std::fs::symlink_metadata(&moved).unwrap().file_type().is_symlink());
    assert!(outside.join("secret.json").exists());
    assert!(!outside.join("processed").exists() && !outside.join("failed").exists());
    let (queue, unmatched) = s.app.inbound_queue(&s.clinician).await.unwrap();
    assert!(queue.is_empty() && unmatched.is_empty(), "nothing was received");
    let _ = std::fs::remove_dir_all(&base);
}

async fn the_same_message_delivered_at_once_is_taken_once(t: &TestStore) {
    // T35: sixteen deliveries at the same moment: one accepted, the rest duplicates, one task.
    let s = setup(t).await;
    let body = example("pharmacy-first.json");
    let mut handles = Vec::new();
    for _ in 0..16 {
        let (app, id, secret, body) = (s.app.clone(), s.client_id.clone(), s.secret.clone(), body.clone());
        handles.push(tokio::spawn(async move { app.receive_update_http(&id, &secret, &body).await.unwrap() }));
    }
    let mut codes = Vec::new();
    for h in handles {
        codes.push(h.await.unwrap().code);
    }
    assert_eq!(codes.iter().filter(|c| **c == 20013).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 20007).count(), 15, "{codes:?}");
    let tasks = s.app.task_list(&s.clinician, false).await.unwrap();
    assert_eq!(tasks.iter().filter(|(t, _)| t.kind == TaskKind::PharmacyUpdate).count(), 1);
}

/// The Pharmacy First sample with its medicine replaced: a name and a dosage that contain commas,
/// a dm+d code and a quantity of 15 capsule.
fn with_amoxicillin(id: &str) -> Vec<u8> {
    let mut m: serde_json::Value = serde_json::from_slice(&example("pharmacy-first.json")).unwrap();
    m["id"] = serde_json::json!(id);
    let doc = m["entry"][2]["resource"]["entry"].as_array_mut().unwrap();
    let med = doc.iter_mut().find(|e| e["resource"]["resourceType"] == "MedicationDispense").unwrap();
    med["resource"]["medicationCodeableConcept"] = serde_json::json!({
        "coding": [{"system": "https://dmd.nhs.uk", "code": "323509004", "display": "Amoxicillin 500mg capsules, sugar free"}],
        "text": "Amoxicillin 500mg capsules, sugar free"
    });
    med["resource"]["dosageInstruction"] =
        serde_json::json!([{"text": "1 capsule three times a day, for 5 days, with water"}]);
    med["resource"]["quantity"] = serde_json::json!({"value": 15, "unit": "capsule"});
    serde_json::to_vec(&m).unwrap()
}

async fn a_summary_naming_someone_is_checked_and_can_be_filed_hidden(t: &TestStore) {
    // Redact as information is entered: a pharmacy summary that would be visible online is read
    // by the redaction assistant on the review page, which says who will see it; the clinician
    // may file it hidden with a reason; what was found and chosen is audited with the filing.
    let s = setup(t).await;
    let mut m: serde_json::Value = serde_json::from_slice(&example("pharmacy-first.json")).unwrap();
    m["id"] = serde_json::json!("5b0e8f3c-7a2d-4c1e-9f00-00000000c0de");
    let doc = m["entry"][2]["resource"]["entry"].as_array_mut().unwrap();
    let ci = doc.iter_mut().find(|e| e["resource"]["resourceType"] == "ClinicalImpression").unwrap();
    ci["resource"]["description"] = serde_json::json!("Sore throat; says her partner hit her last week");
    let r = s.app.receive_update_http(&s.client_id, &s.secret, &serde_json::to_vec(&m).unwrap()).await.unwrap();
    let id = r.id.unwrap();
    let view = s.app.inbound_view(&s.clinician, id).await.unwrap();
    let check = view.entry_check.expect("the assistant reads what filing would make visible");
    assert!(check.highlights.iter().any(|h| h.contains("partner")), "{:?}", check.highlights);
    assert!(check.onlookers[0].who.starts_with("Hannah Rivers") && check.onlookers[0].not_shown.is_none());
    let hide = Some((HiddenReason::ThirdParty, "Names her partner".to_owned()));
    s.app.file_inbound_as(&s.clinician, id, hide).await.unwrap();
    assert!(!s.online_texts().await.contains("partner"), "filed hidden");
    let trail = s.app.store_for_tests().audit_events(s.practice, 0, 1_000_000).await.unwrap();
    let filed = trail.iter().find(|e| e.action == "inbound.file" && e.entity == format!("inbound/{id}")).unwrap();
    assert!(filed.detail.contains("entry_check=[") && filed.detail.ends_with("chosen=hidden"), "{}", filed.detail);
}

async fn a_filed_medicine_keeps_exactly_what_was_sent(t: &TestStore) {
    // R26: what the pharmacist supplied reaches the record as sent: the medicine and its dm+d
    // code, the dosage instruction and the quantity, whatever punctuation they contain.
    use caldicott_core::entry::EntryBody;
    let s = setup(t).await;
    let r = s.app.receive_update_http(&s.client_id, &s.secret, &with_amoxicillin("amox-0001")).await.unwrap();
    assert_eq!(r.code, 20013, "{:?}", r.problems);
    let id = r.id.unwrap();
    let expected = EntryBody::MedicationIssue {
        drug: "Amoxicillin 500mg capsules, sugar free".into(),
        dosage: "1 capsule three times a day, for 5 days, with water".into(),
        quantity: "15 capsule".into(),
        template: None,
    };
    // The review shows exactly the entries that filing will write.
    let view = s.app.inbound_view(&s.clinician, id).await.unwrap();
    let planned: Vec<_> = view.to_file.iter().map(|(code, body)| (code.clone(), body.clone())).collect();
    let medicine = planned.iter().find(|(_, b)| matches!(b, EntryBody::MedicationIssue { .. })).unwrap();
    assert_eq!(medicine.1, expected);
    assert_eq!(medicine.0.as_ref().map(|c| c.concept.as_str()), Some("323509004"), "the dm+d code is kept");
    let made = s.app.file_inbound(&s.clinician, id).await.unwrap();
    let record = s
        .app
        .staff_record(&s.clinician, s.hannah.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    let mut filed: Vec<_> = record
        .entries
        .iter()
        .filter(|e| made.contains(&e.entry.id))
        .map(|e| (made.iter().position(|m| *m == e.entry.id).unwrap(), e.entry.code.clone(), e.entry.body.clone()))
        .collect();
    filed.sort_by_key(|(i, _, _)| *i);
    let filed: Vec<_> = filed.into_iter().map(|(_, code, body)| (code, body)).collect();
    assert_eq!(filed, planned, "what was reviewed is what was filed");
    assert!(filed.iter().any(|(_, b)| *b == expected));
}

/// A sample message given its own message id, Composition identifier and document Bundle
/// identifier, and, for a replacement, the identifier of the payload it replaces (R28).
fn identified(name: &str, message_id: &str, composition: &str, document: &str, replaces: Option<&str>) -> Vec<u8> {
    let mut m: serde_json::Value = serde_json::from_slice(&example(name)).unwrap();
    m["id"] = serde_json::json!(message_id);
    let doc = &mut m["entry"][2]["resource"];
    doc["identifier"] = serde_json::json!({"system": "https://tools.ietf.org/html/rfc4122", "value": document});
    let comp = doc["entry"].as_array_mut().unwrap().iter_mut().find(|e| e["resource"]["resourceType"] == "Composition");
    let comp = &mut comp.unwrap()["resource"];
    comp["identifier"] = serde_json::json!({"system": "https://tools.ietf.org/html/rfc4122", "value": composition});
    match replaces {
        Some(target) => {
            comp["relatesTo"] = serde_json::json!([{"code": "replaces", "targetIdentifier": {"value": target}}]);
            comp["meta"]["versionId"] = serde_json::json!("2");
        }
        None => {
            comp.as_object_mut().unwrap().remove("relatesTo");
        }
    }
    serde_json::to_vec(&m).unwrap()
}

impl Setup {
    async fn send_bytes(&self, body: &[u8]) -> caldicott_app::update_record::Receipt {
        self.app.receive_update_http(&self.client_id, &self.secret, body).await.unwrap()
    }
}

async fn a_replacement_may_name_the_earlier_payload_by_any_of_its_identifiers(t: &TestStore) {
    // R28: senders fill targetIdentifier with the earlier Composition's identifier, the document
    // Bundle's identifier or the message Bundle's id; each names the same payload, so the
    // replacement supersedes it and there is one live task per consultation.
    let s = setup(t).await;
    for (n, pick) in ["composition", "document", "message"].into_iter().enumerate() {
        let (mid, comp, doc) = (format!("earlier-{n}"), format!("comp-{n}"), format!("doc-{n}"));
        let earlier = s.send_bytes(&identified("pharmacy-first.json", &mid, &comp, &doc, None)).await;
        assert_eq!(earlier.code, 20013);
        let target = match pick {
            "composition" => &comp,
            "document" => &doc,
            _ => &mid,
        };
        let body = identified(
            "pharmacy-first-replacement.json",
            &format!("later-{n}"),
            &format!("comp-{n}-v2"),
            &format!("doc-{n}-v2"),
            Some(target),
        );
        let later = s.send_bytes(&body).await;
        assert_eq!(later.code, 20013, "{pick}: {:?}", later.problems);
        let old = s.app.store_for_tests().inbound(s.practice, earlier.id.unwrap()).await.unwrap().unwrap();
        assert_eq!((old.status, old.superseded_by), (InboundStatus::Superseded, later.id), "{pick}");
        let new = s.app.store_for_tests().inbound(s.practice, later.id.unwrap()).await.unwrap().unwrap();
        assert_eq!(new.replaces, earlier.id, "{pick}");
        assert_eq!(s.open_pharmacy_tasks().await, n + 1, "{pick}: one live task per consultation");
    }
}

async fn only_the_sender_may_replace_its_payload_and_only_for_the_same_patient(t: &TestStore) {
    // R28: another pharmacy, or the same pharmacy about another patient, cannot replace a
    // payload: refused with 20009 and the reason, and nothing changes.
    let s = setup(t).await;
    let (other, other_secret) = s.app.register_sender(&s.admin, "FB456", "Harbour Pharmacy").await.unwrap();
    let earlier = s.send_bytes(&identified("pharmacy-first.json", "mine-1", "mine-comp-1", "mine-doc-1", None)).await;
    let id = earlier.id.unwrap();
    let stranger = fixtures::adult(&s.app, s.practice).await.unwrap();
    // Another pharmacy, about its own patient, names this payload.
    let theirs = String::from_utf8(identified(
        "pharmacy-first-replacement.json",
        "theirs-1",
        "theirs-comp-1",
        "theirs-doc-1",
        Some("mine-comp-1"),
    ))
    .unwrap()
    .replace("FA123", "FB456")
    .replace("9990996008", stranger.nhs_number.as_str())
    .replace("1987-03-14", &stranger.date_of_birth.to_string());
    let r = s.app.receive_update_http(&other.client_id, &other_secret, theirs.as_bytes()).await.unwrap();
    assert_eq!((r.code, r.outcome), (20009, ItkCode::PayloadInvalid));
    assert!(r.problems.iter().any(|p| p.contains("only the pharmacy that sent")), "{:?}", r.problems);
    // The same pharmacy, about another patient.
    let wrong_patient = String::from_utf8(identified(
        "pharmacy-first-replacement.json",
        "mine-2",
        "mine-comp-2",
        "mine-doc-2",
        Some("mine-1"),
    ))
    .unwrap()
    .replace("9990996008", stranger.nhs_number.as_str())
    .replace("1987-03-14", &stranger.date_of_birth.to_string());
    let r = s.send_bytes(wrong_patient.as_bytes()).await;
    assert_eq!(r.code, 20009);
    assert!(r.problems.iter().any(|p| p.contains("another patient")), "{:?}", r.problems);
    // Nothing changed: the earlier one still waits with its open task, and no task was made.
    let old = s.app.store_for_tests().inbound(s.practice, id).await.unwrap().unwrap();
    assert_eq!((old.status, old.superseded_by), (InboundStatus::Pending, None));
    assert_eq!(s.open_pharmacy_tasks().await, 1);
    let (queue, unmatched) = s.app.inbound_queue(&s.clinician).await.unwrap();
    assert_eq!((queue.len(), unmatched.len()), (1, 0));
    s.app.file_inbound(&s.clinician, id).await.unwrap();
}

async fn filing_a_replacement_retires_what_the_earlier_payload_filed(t: &TestStore) {
    // R28: the earlier payload was filed; the replacement's task shows the difference, and filing
    // it retires the earlier entries: kept for audit, marked superseded, not current, never
    // online; the change of each is audited with the filing.
    use caldicott_core::entry::EntryBody;
    let s = setup(t).await;
    let first = s.send_bytes(&identified("pharmacy-first.json", "v1", "comp-v1", "doc-v1", None)).await.id.unwrap();
    let filed_first = s.app.file_inbound(&s.clinician, first).await.unwrap();
    assert!(s.online_texts().await.contains("for 5 days"));
    let second =
        s.send_bytes(&identified("pharmacy-first-replacement.json", "v2", "comp-v2", "doc-v2", Some("comp-v1"))).await;
    assert_eq!(second.code, 20013, "{:?}", second.problems);
    let second = second.id.unwrap();
    assert_eq!(s.open_pharmacy_tasks().await, 1);
    let view = s.app.inbound_view(&s.clinician, second).await.unwrap();
    assert!(view.changes_from_filed.iter().any(|c| c.starts_with("Removed:") && c.contains("5 days")));
    assert!(view.changes_from_filed.iter().any(|c| c.starts_with("Added:") && c.contains("10 days")));
    let filed_second = s.app.file_inbound(&s.clinician, second).await.unwrap();
    let record = s
        .app
        .staff_record(&s.clinician, s.hannah.nhs_number.as_str(), ViewAs::Patient, &PageRequest::default())
        .await
        .unwrap();
    // Kept for audit, marked superseded, and withheld online.
    let retired: Vec<_> = record.entries.iter().filter(|e| filed_first.contains(&e.entry.id)).collect();
    assert_eq!(retired.len(), filed_first.len(), "nothing is deleted");
    for e in &retired {
        let mark = e.entry.superseded.as_ref().expect("marked superseded");
        assert!(mark.note.contains("v2"), "{}", mark.note);
        assert!(e.online.withheld.is_some());
    }
    // Only one version is current: one active problem, one issue of the supply.
    let current: Vec<_> = record.entries.iter().filter(|e| e.entry.superseded.is_none()).collect();
    let problems = current
        .iter()
        .filter(|e| matches!(e.entry.body, EntryBody::Problem { active: true, .. }))
        .filter(|e| e.entry.code.as_ref().is_some_and(|c| c.concept.as_str() == "43878008"))
        .count();
    assert_eq!(problems, 1);
    let issues: Vec<_> = current.iter().filter(|e| matches!(e.entry.body, EntryBody::MedicationIssue { .. })).collect();
    assert_eq!(issues.len(), 1);
    assert!(filed_second.contains(&issues[0].entry.id));
    // Not shown online, to the patient or to a proxy; the replacement is.
    let online = s.online_texts().await;
    assert!(!online.contains("for 5 days") && online.contains("for 10 days"));
    for id in &filed_first {
        assert!(!online.contains(&id.to_string()));
    }
    let proxy = s.proxy_texts().await;
    assert!(!proxy.contains("for 5 days"));
    // Each retired entry's change is audited.
    let events = s.app.store_for_tests().audit_events(s.practice, 0, 1_000_000).await.unwrap();
    for id in &filed_first {
        assert!(
            events.iter().any(|e| e.action == "entry.supersede" && e.entity == format!("entry/{id}")),
            "entry/{id} retired without an audit event"
        );
    }
}

async fn a_replacement_that_cannot_be_processed_voids_both_and_tells_the_sender(t: &TestStore) {
    // R28 (the guide: when the new payload cannot be processed, the original and the replacement
    // are marked void and the sender is told with an ITK3 answer).
    let s = setup(t).await;
    let first = s.send_bytes(&identified("pharmacy-first.json", "w1", "comp-w1", "doc-w1", None)).await.id.unwrap();
    let mut bad: serde_json::Value = serde_json::from_slice(&identified(
        "pharmacy-first-replacement.json",
        "w2",
        "comp-w2",
        "doc-w2",
        Some("comp-w1"),
    ))
    .unwrap();
    bad["entry"][2]["resource"]["entry"].as_array_mut().unwrap().push(serde_json::json!({"resource": {
        "resourceType": "AllergyIntolerance", "id": "alg-1", "patient": {"reference": "Patient/pat-1"}
    }}));
    let r = s.send_bytes(&serde_json::to_vec(&bad).unwrap()).await;
    assert_eq!((r.code, r.outcome), (20009, ItkCode::PayloadInvalid));
    assert!(r.problems.iter().any(|p| p.contains("Iteration 2")), "{:?}", r.problems);
    assert!(r.problems.iter().any(|p| p.contains("void")), "the sender is told both are void: {:?}", r.problems);
    let old = s.app.store_for_tests().inbound(s.practice, first).await.unwrap().unwrap();
    assert_eq!(old.status, InboundStatus::Void);
    let new = s.app.store_for_tests().inbound(s.practice, r.id.unwrap()).await.unwrap().unwrap();
    assert_eq!((new.status, new.response_code), (InboundStatus::Void, 20009));
    assert_eq!(s.open_pharmacy_tasks().await, 0, "the earlier one's task is closed");
    assert!(matches!(s.app.file_inbound(&s.clinician, first).await, Err(AppError::Conflict(_))));
    // Corrected and sent again, the replacement is processed.
    let again =
        s.send_bytes(&identified("pharmacy-first-replacement.json", "w2", "comp-w2", "doc-w2", Some("comp-w1"))).await;
    assert_eq!(again.code, 20013, "{:?}", again.problems);
    assert_eq!(s.open_pharmacy_tasks().await, 1);
}

both!(
    the_inbox_never_follows_a_symbolic_link,
    a_pharmacy_first_summary_is_reviewed_amended_and_filed,
    nopat_keeps_every_filed_entry_off_line,
    a_rejected_message_files_nothing,
    invalid_messages_are_refused_whole_with_their_reason,
    a_message_that_matches_no_registered_patient_waits_apart,
    an_unmatched_message_is_matched_again_once_the_patient_is_registered,
    a_replacement_supersedes_and_shows_what_changed,
    the_practice_switch_refuses_and_logs,
    files_in_the_inbox_are_taken_once_and_acknowledged,
    the_same_message_delivered_at_once_is_taken_once,
    the_practice_default_for_inbound_data_can_keep_filed_entries_off_line,
    a_message_refused_while_switched_off_is_taken_when_sent_again,
    a_message_refused_as_invalid_is_taken_when_sent_again_corrected,
    a_refused_message_sent_again_by_parallel_clients_is_taken_once,
    an_oversize_message_is_answered_and_recorded_like_other_refusals,
    a_filed_medicine_keeps_exactly_what_was_sent,
    a_summary_naming_someone_is_checked_and_can_be_filed_hidden,
    a_replacement_may_name_the_earlier_payload_by_any_of_its_identifiers,
    only_the_sender_may_replace_its_payload_and_only_for_the_same_patient,
    filing_a_replacement_retires_what_the_earlier_payload_filed,
    a_replacement_that_cannot_be_processed_voids_both_and_tells_the_sender,
);
