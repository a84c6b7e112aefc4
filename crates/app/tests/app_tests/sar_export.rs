#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The subject access export (R33, R43, T37, T38): collecting everything, the review gate,
//! withholding with reasons, and the PDF and FHIR Bundle made from the same reviewed items.
//! Both databases. The files are read back with `pdftotext`/`pdfinfo` and validated as FHIR R4
//! with fhirclient's R4 models (installed by scripts/test.sh).

use caldicott_app::chat::{Compose, Sent};
use caldicott_app::fixtures::{self, adult, consultation};
use caldicott_app::sar::NewSar;
use caldicott_app::sar_export::{DecisionInput, ProgressFn, ScopeInput};
use caldicott_app::{auth, App, AppError};
use caldicott_core::entry::{DocumentReview, EntryBody, Filing, HiddenReason, OnlineVisibility, Redaction};
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::{Datelike, Duration};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

fn app(t: &TestStore) -> App {
    App::new(t.store.clone(), caldicott_app::fixtures::test_clock())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("caldicott-sar-{}-{name}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The PDF's text, as a screen reader or a search would get it.
pub fn pdf_text(pdf: &[u8]) -> (String, String) {
    let dir = scratch("pdf");
    let path = dir.join("export.pdf");
    std::fs::write(&path, pdf).unwrap();
    let text = Command::new("pdftotext").arg(&path).arg("-").output().expect("pdftotext (poppler-utils) is needed");
    let info = Command::new("pdfinfo").arg(&path).output().expect("pdfinfo (poppler-utils) is needed");
    assert!(text.status.success() && info.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    std::fs::remove_dir_all(&dir).ok();
    (String::from_utf8(text.stdout).unwrap(), String::from_utf8(info.stdout).unwrap())
}

/// Validates FHIR R4 JSON with fhirclient (strict). Fails if the validator is not installed.
pub fn validate_fhir(json: &[u8]) -> String {
    let python = std::env::var("CALDICOTT_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/caldicott/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let dir = scratch("fhir");
    let path = dir.join("bundle.json");
    std::fs::write(&path, json).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/validate-fhir.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}; run scripts/test.sh, which installs the FHIR validator"));
    std::fs::remove_dir_all(&dir).ok();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    said
}

fn typed(nhs: &str, d: chrono::NaiveDate, relationship: &str) -> NewSar {
    NewSar {
        nhs_number: nhs.into(),
        requester: "Alex Example".into(),
        relationship: relationship.into(),
        day: d.day().to_string(),
        month: d.month().to_string(),
        year: d.year().to_string(),
        waiting_for: String::new(),
        notes: String::new(),
    }
}

fn quiet() -> ProgressFn {
    Arc::new(|_| {})
}

async fn a_request_is_answered_with_everything_but_what_was_withheld(t: &TestStore) {
    let app = app(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let other = adult(&app, tp.practice.id).await.unwrap();
    let reception = auth::authenticate(&app, &tp.receptionist_token).await.unwrap();
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let doctor = tp.clinician.clone();
    let now = app.now();
    // The record: an ordinary consultation, a third-party letter hidden online, an old entry.
    let seen = consultation(&pat, now - Duration::days(30), "ORDINARY-VISIT chest clear");
    let mut letter = consultation(&pat, now - Duration::days(20), "");
    letter.body = EntryBody::Document {
        title: "Letter from social services".into(),
        summary: "THIRD-PARTY-LETTER about the patient's partner".into(),
        filing: Filing::Filed,
        review: DocumentReview::Reviewed,
    };
    letter.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::ThirdParty, "about the partner", "Dr Test", now).unwrap(),
    );
    let mut old = consultation(&pat, now - Duration::days(4000), "OLD-ENTRY from long ago");
    old.event_date = (now - Duration::days(4000)).date_naive();
    let elsewhere = consultation(&other, now - Duration::days(5), "OTHER-PATIENT entry");
    let audit = fixtures::audit(caldicott_core::audit::Action::EntryCreate, None);
    app.store_for_tests()
        .add_entries(tp.practice.id, &[seen.clone(), letter.clone(), old.clone()], &audit)
        .await
        .unwrap();
    app.store_for_tests().add_entries(tp.practice.id, &[elsewhere], &audit).await.unwrap();
    // Two staff talk about the patient; the clinician deletes the message.
    let body = format!("STAFF-CHAT: {} called about her letter", pat.nhs_number.as_str());
    let c = Compose {
        to: format!("staff:{}", doctor.staff),
        body,
        link: Some(true),
        patient: pat.nhs_number.as_str().into(),
        ..Default::default()
    };
    let Sent::Sent(m) = app.send_staff_message(&reception, &c).await.unwrap().unwrap() else { panic!() };
    app.delete_staff_message(&doctor, m.id).await.unwrap();
    // A message that names the patient without being linked is found too.
    let named = Compose {
        to: "team:clinician".into(),
        body: format!("NAMED-ONLY: {} {} is in the waiting room", pat.name.given, pat.name.family),
        link: Some(false),
        ..Default::default()
    };
    let Sent::Sent(_) = app.send_staff_message(&reception, &named).await.unwrap().unwrap() else { panic!() };

    let sar = app.log_sar(&reception, &typed(pat.nhs_number.as_str(), app.today(), "")).await.unwrap().unwrap();
    let review = app.sar_review(&reception, sar.id).await.unwrap();
    let keys: Vec<&str> = review.items.iter().map(|i| i.key.as_str()).collect();
    // R33/R43: the record (hidden entries too), the deleted staff message and the named one.
    assert!(keys.contains(&format!("entry/{}", seen.id).as_str()));
    assert!(keys.contains(&format!("entry/{}", letter.id).as_str()));
    assert!(keys.contains(&format!("staff_message/{}", m.id).as_str()));
    assert_eq!(review.items.iter().filter(|i| i.key.starts_with("staff_message/")).count(), 2);
    assert!(review.items.iter().any(|i| i.key.starts_with("audit/")), "the access log");
    // Scoped by practice and patient: nothing of anyone else's.
    let everything = serde_json::to_string(&review.items).unwrap();
    assert!(!everything.contains("OTHER-PATIENT"));
    // The hidden letter and the staff messages are flagged; the ordinary visit is not.
    let flagged = |key: String| review.items.iter().find(|i| i.key == key).unwrap().flagged();
    assert!(flagged(format!("entry/{}", letter.id)));
    assert!(flagged(format!("staff_message/{}", m.id)));
    assert!(!flagged(format!("entry/{}", seen.id)));
    assert!(review.undecided >= 3);

    // T37: nothing is released while flagged items wait for a decision.
    match app.export_sar(&manager, sar.id, quiet()).await {
        Err(AppError::Conflict(why)) => assert!(why.contains("still need"), "{why}"),
        other => panic!("released too early: {other:?}"),
    }
    // Receptionists do not decide; a withholding needs a ground and a reason; serious harm is
    // a clinician's judgement.
    let letter_key = format!("entry/{}", letter.id);
    let withhold = DecisionInput {
        keys: vec![letter_key.clone()],
        decision: "withhold".into(),
        ground: "third_party".into(),
        reason: "Information about the partner, who has not consented".into(),
    };
    assert!(matches!(app.decide_sar_items(&reception, sar.id, &withhold).await, Err(AppError::Forbidden(_))));
    let no_reason = DecisionInput { reason: " ".into(), ..withhold.clone() };
    assert_eq!(app.decide_sar_items(&manager, sar.id, &no_reason).await.unwrap().unwrap_err()[0].field, "reason");
    let harm = DecisionInput { ground: "serious_harm".into(), ..withhold.clone() };
    assert_eq!(app.decide_sar_items(&manager, sar.id, &harm).await.unwrap().unwrap_err()[0].field, "ground");
    let stranger = DecisionInput { keys: vec!["entry/nope".into()], ..withhold.clone() };
    assert!(matches!(app.decide_sar_items(&manager, sar.id, &stranger).await, Err(AppError::NotFound(_))));
    assert_eq!(app.decide_sar_items(&manager, sar.id, &withhold).await.unwrap().unwrap(), 1);
    let rest: Vec<String> = app
        .sar_review(&manager, sar.id)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|i| i.flagged() && i.key != letter_key)
        .map(|i| i.key.clone())
        .collect();
    let release = DecisionInput { keys: rest, decision: "release".into(), ..Default::default() };
    app.decide_sar_items(&doctor, sar.id, &release).await.unwrap().unwrap();
    let review = app.sar_review(&manager, sar.id).await.unwrap();
    assert!(review.blockers.is_empty(), "{:?}", review.blockers);
    // The reason stays in the review record, with who decided.
    let kept = &review.decisions[&letter_key];
    assert_eq!((kept.ground.as_deref(), kept.decided_by.as_str()), (Some("third_party"), manager.name.as_str()));

    // The release: both files, from the same items.
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen_progress = progress.clone();
    let files =
        app.export_sar(&manager, sar.id, Arc::new(move |p| seen_progress.lock().unwrap().push(p.stage))).await.unwrap();
    let stages = progress.lock().unwrap().clone();
    assert!(stages.contains(&"Writing the PDF".to_owned()) && stages.last().map(String::as_str) == Some("Ready"));
    let (text, info) = pdf_text(&files.pdf);
    assert!(info.contains("Tagged:          yes"), "{info}");
    assert!(text.contains("ORDINARY-VISIT"));
    assert!(text.contains("STAFF-CHAT"), "the deleted message is disclosed");
    assert!(text.contains(&format!("Deleted from the inbox by {}", doctor.name)), "{text}");
    assert!(text.contains("NAMED-ONLY"));
    assert!(!text.contains("THIRD-PARTY-LETTER"), "withheld");
    assert!(text.contains("We have withheld 1 item"));
    assert!(text.contains("ico.org.uk") && text.contains("Page 1 of"));
    assert!(text.contains(&tp.practice.name), "letterhead");
    let bundle = String::from_utf8(files.bundle.clone()).unwrap();
    assert!(bundle.contains("ORDINARY-VISIT") && bundle.contains("STAFF-CHAT"));
    assert!(!bundle.contains("THIRD-PARTY-LETTER") && !bundle.contains(&letter.id.to_string()));
    assert!(!bundle.contains("OTHER-PATIENT"));
    let said = validate_fhir(&files.bundle);
    assert!(said.contains("valid FHIR R4 Bundle"), "{said}");
    // Every release is recorded and audited, with the file's hash; the same review gives the
    // same bytes (T37).
    let again = app.export_sar(&manager, sar.id, quiet()).await.unwrap();
    assert_eq!(
        (again.pdf_sha256.as_str(), again.bundle_sha256.as_str()),
        (files.pdf_sha256.as_str(), files.bundle_sha256.as_str())
    );
    let releases = app.store_for_tests().sar_releases(tp.practice.id, sar.id).await.unwrap();
    assert_eq!(releases.len(), 4);
    assert!(releases.iter().any(|r| r.sha256 == files.pdf_sha256 && r.items_withheld == 1));
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "sar.export" && e.detail.contains(&files.bundle_sha256)));
    assert!(events.iter().any(|e| e.action == "sar.decide" && e.entity.ends_with(&letter_key)));

    // T37: a period limits the export; nothing outside it.
    let d = (now - Duration::days(365)).date_naive();
    let scope =
        ScopeInput { from: (d.day().to_string(), d.month().to_string(), d.year().to_string()), ..Default::default() };
    app.set_sar_scope(&reception, sar.id, &scope).await.unwrap().unwrap();
    let scoped = app.export_sar(&manager, sar.id, quiet()).await.unwrap();
    assert!(!pdf_text(&scoped.pdf).0.contains("OLD-ENTRY"));
    assert!(text.contains("OLD-ENTRY"), "the unscoped export had it");

    // A requester who is not the patient needs recorded authority first (the Regal Chambers case).
    let solicitor =
        app.log_sar(&reception, &typed(pat.nhs_number.as_str(), app.today(), "solicitor")).await.unwrap().unwrap();
    let r = app.sar_review(&manager, solicitor.id).await.unwrap();
    assert!(r.blockers.iter().any(|b| b.contains("authority")), "{:?}", r.blockers);
    let with_authority = ScopeInput { authority: "Signed patient consent dated today".into(), ..Default::default() };
    app.set_sar_scope(&reception, solicitor.id, &with_authority).await.unwrap().unwrap();
    let r = app.sar_review(&manager, solicitor.id).await.unwrap();
    assert!(!r.blockers.iter().any(|b| b.contains("authority")));
    // Re-authentication: a wrong password is refused and audited.
    assert!(matches!(
        app.confirm_password(&manager, "wrong", "sar/x", &caldicott_app::auth::Client::default()).await,
        Err(AppError::Unauthenticated(_))
    ));
    app.confirm_password(&manager, "a long test password", "sar/x", &caldicott_app::auth::Client::default())
        .await
        .unwrap();
    // Administrators and ICB analysts have no part in it.
    let analyst = auth::authenticate(&app, &tp.analyst_token).await.unwrap();
    assert!(matches!(app.sar_review(&analyst, sar.id).await, Err(AppError::Forbidden(_))));
}

/// Issue 24: an export is kept in the database, not in one server's memory. Only the member of
/// staff who released it sees it; an export whose server stopped (its heartbeat lost) is shown as
/// failed, not as running for ever; none is kept past 15 minutes.
async fn an_export_is_its_releasers_and_neither_outlives_its_server_nor_fifteen_minutes(t: &TestStore) {
    use caldicott_app::sar_export::{ExportFile, ExportJob};
    use std::sync::atomic::{AtomicI64, Ordering};
    let offset = Arc::new(AtomicI64::new(0));
    let clock = offset.clone();
    let app = App::new(
        t.store.clone(),
        Arc::new(move || caldicott_app::fixtures::now() + Duration::seconds(clock.load(Ordering::SeqCst))),
    );
    let tp = fixtures::practice(&app).await.unwrap();
    let pat = adult(&app, tp.practice.id).await.unwrap();
    let manager = auth::authenticate(&app, &tp.manager_token).await.unwrap();
    let admin = auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let today = app.today();
    let sar = app.log_sar(&manager, &typed(pat.nhs_number.as_str(), today, "")).await.unwrap().unwrap();
    // An export whose server stopped half-way: begun, its heartbeat a few minutes old.
    let now = app.now();
    let stalled = ExportJob {
        stage: "Collecting".into(),
        done: 3,
        total: 10,
        ..ExportJob::begun(uuid::Uuid::now_v7(), sar.id, manager.staff, now)
    };
    app.store_for_tests().create_export_job(tp.practice.id, &stalled).await.unwrap();
    let v = app.sar_export_job(&manager, sar.id, stalled.id).await.unwrap();
    assert!(v.running && v.failure.is_none(), "fresh: still running");
    offset.store(3 * 60, Ordering::SeqCst);
    let v = app.sar_export_job(&manager, sar.id, stalled.id).await.unwrap();
    assert!(!v.running, "a lost heartbeat is not shown as running");
    assert!(v.failure.unwrap().contains("stopped before it was finished"));
    assert!(app.collect_sar_export_file(&manager, sar.id, stalled.id, ExportFile::Pdf).await.unwrap().is_none());
    // A real one, made on this server: its releaser sees it; another member of staff does not.
    let job = app.start_sar_export(&manager, sar.id).await.unwrap();
    let mut ready = None;
    for _ in 0..400 {
        let v = app.sar_export_job(&manager, sar.id, job).await.unwrap();
        if !v.running {
            ready = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let ready = ready.expect("the export finished");
    assert!(ready.failure.is_none(), "{:?}", ready.failure);
    assert!(ready.job.pdf.is_some() && ready.job.bundle.is_some());
    assert!(app.sar_export_job(&admin, sar.id, job).await.is_err());
    assert!(app.collect_sar_export_file(&admin, sar.id, job, ExportFile::Pdf).await.unwrap_or(None).is_none());
    // Sixteen minutes on, it is gone, files and all, and the next export clears it away.
    offset.fetch_add(16 * 60, Ordering::SeqCst);
    assert!(matches!(app.sar_export_job(&manager, sar.id, job).await, Err(AppError::NotFound(_))));
    assert!(app.collect_sar_export_file(&manager, sar.id, job, ExportFile::Bundle).await.unwrap().is_none());
    // The sweep `serve` runs every minute removes them without anyone looking.
    assert_eq!(app.drop_expired_sar_exports().await.unwrap(), 2);
    assert!(app.store_for_tests().export_job(tp.practice.id, job).await.unwrap().is_none());
    app.start_sar_export(&manager, sar.id).await.unwrap();
    assert!(app.store_for_tests().export_job(tp.practice.id, job).await.unwrap().is_none());
    assert!(app.store_for_tests().export_job(tp.practice.id, stalled.id).await.unwrap().is_none());
}

both!(
    a_request_is_answered_with_everything_but_what_was_withheld,
    an_export_is_its_releasers_and_neither_outlives_its_server_nor_fifteen_minutes
);
