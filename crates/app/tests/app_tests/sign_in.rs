#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Sign-in that holds under attack (ASVS 2.2.1, 2.5.2, 2.8.4), written from what an attacker
//! does: many tries at once, many tries from many places, the same code twice, a wrong password
//! that must not shut the clinician out. Every case runs on SQLite and on PostgreSQL, with
//! parallel clients where the rule is about counting.

use caldicott_app::auth::{AccountTries, Client};
use caldicott_app::fixtures::{self, TestPractice};
use caldicott_app::session::{current_code, SecondFactor, WRONG_CODE, WRONG_CREDENTIALS};
use caldicott_app::{App, AppError};
use caldicott_core::credentials::FREE_TRIES;
use caldicott_store::both;
use caldicott_store::test_support::TestStore;
use chrono::Duration;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const PASSWORD: &str = "a long test password";

/// An app whose clock stands still until the test moves it, so that a wait passes only when
/// the test says so (however slowly the machine hashes).
fn app_with_clock(t: &TestStore) -> (App, Arc<AtomicI64>) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = offset.clone();
    let start = fixtures::now();
    let app = App::new(t.store.clone(), Arc::new(move || start + Duration::seconds(clock.load(Ordering::SeqCst))));
    (app, offset)
}

fn at(last: u8) -> Client {
    Client::at(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

/// How many times a credential was actually checked and found wrong (each is audited).
async fn checked_and_wrong(app: &App, tp: &TestPractice, what: &str) -> usize {
    app.store_for_tests()
        .audit_events(tp.practice.id, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action.ends_with("sign_in_failed") && e.detail.starts_with(what))
        .count()
}

async fn fifty_parallel_wrong_passwords_are_not_all_checked(t: &TestStore) {
    // ASVS 2.2.1: forty simultaneous wrong passwords, then the right one, got in before. Each try
    // is claimed before the password is checked, so parallel tries share one count.
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let attacker = at(1);
    let tries: Vec<_> = (0..50)
        .map(|i| {
            let (app, ods) = (app.clone(), ods.clone());
            tokio::spawn(async move { app.sign_in(Some(&ods), "clinician", &format!("guess {i}"), &attacker).await })
        })
        .collect();
    for t in tries {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(e.to_string(), WRONG_CREDENTIALS, "every refusal says the same");
    }
    let checked = checked_and_wrong(&app, &tp, "wrong password").await;
    eprintln!("50 parallel wrong passwords from one address: {checked} checked");
    assert!(checked >= 1, "at least one try was checked");
    assert!(
        checked <= usize::try_from(FREE_TRIES + 1).unwrap(),
        "{checked} of 50 parallel wrong passwords were checked; at most the free tries and one more may be"
    );
    // The right password straight after is refused unchecked, in the same words.
    let right_now = app.sign_in(Some(&ods), "clinician", PASSWORD, &attacker).await.unwrap_err();
    assert_eq!(right_now.to_string(), WRONG_CREDENTIALS);
    let refused = checked_and_wrong(&app, &tp, "try refused unchecked").await;
    assert!(refused >= 46, "the refused tries are audited ({refused})");
}

async fn a_wrong_password_never_locks_the_clinician_out(t: &TestStore) {
    // No denial by lock-out: an attacker's wrong passwords slow only the attacker's address,
    // and only for a while.
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = Some(tp.practice.ods_code.as_str());
    let (attacker, clinician) = (at(1), at(2));
    for _ in 0..6 {
        let e = app.sign_in(ods, "clinician", "not the password", &attacker).await.unwrap_err();
        assert!(matches!(e, AppError::Unauthenticated(_)), "{e}");
    }
    // The clinician, at their own desk, gets in at once.
    let start = app.sign_in(ods, "clinician", PASSWORD, &clinician).await.unwrap();
    assert!(matches!(start.next, SecondFactor::Enrol { .. }));
    // The attacker's address waits; once the wait is over the right password works there too.
    assert!(app.sign_in(ods, "clinician", PASSWORD, &attacker).await.is_err());
    clock.store(61, Ordering::SeqCst);
    assert!(app.sign_in(ods, "clinician", PASSWORD, &attacker).await.is_ok());
}

async fn locked_unknown_and_wrong_are_answered_alike(t: &TestStore) {
    // ASVS 2.2.1 / 3.2: an answer must not tell an attacker which usernames exist or which
    // accounts are being slowed.
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = Some(tp.practice.ods_code.as_str());
    let from = at(3);
    let unknown = app.sign_in(ods, "nobody", PASSWORD, &from).await.unwrap_err();
    let wrong = app.sign_in(ods, "reception", "not it", &from).await.unwrap_err();
    for _ in 0..5 {
        let _ = app.sign_in(ods, "clinician", "not it", &from).await;
    }
    let waiting = app.sign_in(ods, "clinician", PASSWORD, &from).await.unwrap_err();
    let unknown_practice = app.sign_in(Some("ZZZ999"), "clinician", PASSWORD, &from).await.unwrap_err();
    for e in [&unknown, &wrong, &waiting, &unknown_practice] {
        assert!(matches!(e, AppError::Unauthenticated(_)), "{e:?}");
        assert_eq!(e.to_string(), WRONG_CREDENTIALS);
    }
    // Passwords beyond 128 characters are refused the same way, before any hashing.
    let long = app.sign_in(ods, "clinician", &"x".repeat(129), &at(4)).await.unwrap_err();
    assert_eq!(long.to_string(), WRONG_CREDENTIALS);
}

async fn tries_from_many_addresses_are_capped_per_account(t: &TestStore) {
    // Per account: spreading tries over many addresses does not buy more guesses than the
    // account's rate.
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let began = std::time::Instant::now();
    let tries: Vec<_> = (0..50u8)
        .map(|i| {
            let (app, ods) = (app.clone(), ods.clone());
            tokio::spawn(async move { app.sign_in(Some(&ods), "reception", "guess", &at(100 + i)).await })
        })
        .collect();
    for t in tries {
        assert!(t.await.unwrap().is_err());
    }
    let refills = began.elapsed().as_secs() / AccountTries::EVERY.as_secs();
    let checked = checked_and_wrong(&app, &tp, "wrong password").await;
    let most = usize::try_from(u64::from(AccountTries::BURST) + refills).unwrap();
    eprintln!("50 parallel wrong passwords from 50 addresses: {checked} checked (at most {most})");
    assert!(checked <= most, "{checked} guesses from 50 addresses were checked; at most {most} may be");
}

async fn fifty_parallel_wrong_codes_are_not_all_checked_and_a_code_works_once(t: &TestStore) {
    // 200 wrong authenticator codes in under a second were all tried before; and a code must be
    // accepted once only (RFC 6238 5.2).
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let desk = at(5);
    // Enrol, and sign in once.
    let start = app.sign_in(Some(&ods), "clinician", PASSWORD, &desk).await.unwrap();
    let SecondFactor::Enrol { secret, .. } = start.next else { panic!("expected enrolment") };
    let code = current_code(&secret, app.now()).unwrap();
    app.second_factor(&start.cookie, &code, &desk).await.unwrap();
    // The same code again, within its 30 seconds: refused, in the same words as a wrong one.
    let again = app.sign_in(Some(&ods), "clinician", PASSWORD, &desk).await.unwrap();
    let reused = app.second_factor(&again.cookie, &code, &desk).await.unwrap_err();
    assert_eq!(reused.to_string(), WRONG_CODE);
    assert_eq!(checked_and_wrong(&app, &tp, "code used before").await, 1);
    // Fifty wrong codes at once.
    let right = current_code(&secret, app.now()).unwrap();
    let tries: Vec<_> = (0..50)
        .map(|i| {
            let (app, cookie) = (app.clone(), again.cookie.clone());
            let guess = format!("{:06}", (i * 7919 + 13) % 1_000_000);
            let guess = if guess == right { "000000".to_owned() } else { guess };
            tokio::spawn(async move { app.second_factor(&cookie, &guess, &desk).await })
        })
        .collect();
    for t in tries {
        assert_eq!(t.await.unwrap().unwrap_err().to_string(), WRONG_CODE);
    }
    let checked = checked_and_wrong(&app, &tp, "wrong code").await;
    eprintln!("50 parallel wrong codes: {checked} checked");
    assert!(checked <= usize::try_from(FREE_TRIES + 1).unwrap(), "{checked} of 50 parallel wrong codes were checked");
    // Thirty seconds on there is a new code, and the wait has passed: it is accepted.
    clock.store(31, Ordering::SeqCst);
    let next = current_code(&secret, app.now()).unwrap();
    assert!(app.second_factor(&again.cookie, &next, &desk).await.is_ok());
}

async fn a_patient_account_holds_the_same_way(t: &TestStore) {
    // The same attack on a patient's login: parallel wrong passwords share one count, the
    // answers are alike, and the patient elsewhere is not shut out.
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let patient = fixtures::adult(&app, tp.practice.id).await.unwrap();
    let (username, password, _) = fixtures::patient_account(&app, &tp.clinician, &patient, "P9").await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    // The patient signs in at home, as they have before.
    let home = at(9);
    assert!(app.patient_sign_in(Some(&ods), &username, &password, &home).await.is_ok());
    let attacker = at(7);
    let tries: Vec<_> = (0..50)
        .map(|i| {
            let (app, ods, username) = (app.clone(), ods.clone(), username.clone());
            tokio::spawn(
                async move { app.patient_sign_in(Some(&ods), &username, &format!("guess {i}"), &attacker).await },
            )
        })
        .collect();
    let mut answers = std::collections::BTreeSet::new();
    for t in tries {
        answers.insert(t.await.unwrap().map(|_| ()).expect_err("no guess gets in").to_string());
    }
    assert_eq!(answers.len(), 1, "every refusal says the same: {answers:?}");
    let checked = checked_and_wrong(&app, &tp, "wrong password").await;
    assert!(checked <= usize::try_from(FREE_TRIES + 1).unwrap(), "{checked} of 50 were checked");
    assert!(app.patient_sign_in(Some(&ods), &username, &password, &attacker).await.is_err());
    let unknown = app.patient_sign_in(Some(&ods), "nobody.here", &password, &at(8)).await.unwrap_err();
    assert_eq!(Some(&unknown.to_string()), answers.iter().next());
    // Fifty more from fifty addresses spend the account's rate; the patient at home still gets in.
    let spread: Vec<_> = (0..50u8)
        .map(|i| {
            let (app, ods, username) = (app.clone(), ods.clone(), username.clone());
            tokio::spawn(async move { app.patient_sign_in(Some(&ods), &username, "guess", &at(150 + i)).await })
        })
        .collect();
    for t in spread {
        assert!(t.await.unwrap().is_err());
    }
    assert!(app.patient_sign_in(Some(&ods), &username, &password, &home).await.is_ok());
    clock.store(61, Ordering::SeqCst);
    assert!(app.patient_sign_in(Some(&ods), &username, &password, &attacker).await.is_ok());
}

async fn the_password_recheck_before_a_release_is_throttled(t: &TestStore) {
    // The re-check before a subject access release is a try like a sign-in's.
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let (from, desk) = (at(10), at(11));
    app.confirm_password(&tp.clinician, PASSWORD, "sar/x", &desk).await.unwrap();
    let tries: Vec<_> = (0..20)
        .map(|i| {
            let (app, who) = (app.clone(), tp.clinician.clone());
            tokio::spawn(async move { app.confirm_password(&who, &format!("guess {i}"), "sar/x", &from).await })
        })
        .collect();
    for t in tries {
        assert!(matches!(t.await.unwrap(), Err(AppError::Unauthenticated(_))));
    }
    assert!(app.confirm_password(&tp.clinician, PASSWORD, "sar/x", &from).await.is_err(), "refused while waiting");
    assert!(
        app.confirm_password(&tp.clinician, PASSWORD, "sar/x", &desk).await.is_ok(),
        "the clinician's desk is not held"
    );
}

async fn authenticator_secrets_are_sealed_and_a_rotation_keeps_them_usable(t: &TestStore) {
    // ASVS 2.8.3: the authenticator secret is not in the database in the clear; the key is a
    // file apart from it, and `secrets rotate` seals everything again under a new key.
    use caldicott_app::secrets::{rotate, Keyring};
    let dir = std::env::temp_dir().join(format!("caldicott-keys-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("secret.key");
    let (keyring, created) = Keyring::from_file(&key).unwrap();
    assert!(created);
    let (app, clock) = app_with_clock(t);
    let app = app.with_secrets(keyring);
    let tp = fixtures::practice(&app).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let desk = at(20);
    let start = app.sign_in(Some(&ods), "clinician", PASSWORD, &desk).await.unwrap();
    let SecondFactor::Enrol { secret, .. } = start.next else { panic!("expected enrolment") };
    let stored = app.store_for_tests().staff_member(tp.practice.id, tp.clinician.staff).await.unwrap().unwrap();
    let sealed = stored.sign_in.totp_secret.clone().unwrap();
    assert!(sealed.starts_with("enc1:") && !sealed.contains(&secret), "stored in the clear: {sealed}");
    app.second_factor(&start.cookie, &current_code(&secret, app.now()).unwrap(), &desk).await.unwrap();
    // A secret stored before sealing existed (the reception's) is sealed by the rotation too.
    let reception = app.store_for_tests().staff_by_username(tp.practice.id, "reception").await.unwrap().unwrap();
    let mut legacy = reception.sign_in.clone();
    legacy.totp_secret = Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into());
    legacy.totp_confirmed = true;
    let audit = fixtures::audit(caldicott_core::audit::Action::SecondFactorEnrolled, None);
    app.store_for_tests().set_sign_in_state(tp.practice.id, reception.id, &legacy, &audit).await.unwrap();
    let done = rotate(app.store_for_tests().as_ref(), &key).await.unwrap();
    assert!(done.resealed >= 2, "{done:?}");
    assert!(done.old_key.exists());
    let after = app.store_for_tests().staff_member(tp.practice.id, tp.clinician.staff).await.unwrap().unwrap();
    let resealed = after.sign_in.totp_secret.clone().unwrap();
    assert_ne!(resealed, sealed);
    let legacy_after = app.store_for_tests().staff_member(tp.practice.id, reception.id).await.unwrap().unwrap();
    assert!(legacy_after.sign_in.totp_secret.unwrap().starts_with("enc1:"));
    // The server started with the new key file signs the clinician in; the old key alone cannot
    // open the new seal.
    let (new_ring, created) = Keyring::from_file(&key).unwrap();
    assert!(!created);
    assert_eq!(new_ring.open(&resealed).unwrap(), secret);
    let old_only = Keyring::from_file(&done.old_key).unwrap().0;
    assert!(old_only.open(&resealed).is_err());
    let app = app.with_secrets(new_ring);
    clock.store(30, Ordering::SeqCst);
    let again = app.sign_in(Some(&ods), "clinician", PASSWORD, &desk).await.unwrap();
    assert!(app.second_factor(&again.cookie, &current_code(&secret, app.now()).unwrap(), &desk).await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Passwords (ASVS 2.1, 2.5) -------------------------------------------------------------

/// Signs `user` in fully (password, then a fresh authenticator code: the clock moves on a step
/// so that no code is used twice) and returns the session cookie.
async fn staff_session(
    app: &App,
    clock: &AtomicI64,
    tp: &TestPractice,
    user: &str,
    password: &str,
    from: &Client,
) -> String {
    // The authenticator's secret as enrolment showed it (the database keeps it sealed).
    static ENROLLED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let who = format!("{}/{user}", tp.practice.id);
    let start = app.sign_in(Some(tp.practice.ods_code.as_str()), user, password, from).await.unwrap();
    let secret = match start.next {
        SecondFactor::Enrol { secret, .. } => {
            ENROLLED.lock().unwrap().push((who, secret.clone()));
            secret
        }
        SecondFactor::EnterCode => {
            ENROLLED.lock().unwrap().iter().find(|(w, _)| *w == who).map(|(_, s)| s.clone()).expect("enrolled here")
        }
    };
    clock.fetch_add(30, Ordering::SeqCst);
    app.second_factor(&start.cookie, &current_code(&secret, app.now()).unwrap(), from).await.unwrap()
}

fn fields(problems: &[caldicott_app::settings::FieldProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.field).collect()
}

async fn a_wrong_current_password_changes_nothing_and_counts_as_a_failed_try(t: &TestStore) {
    // ASVS 2.5.x / 2.2.1: the current password is a credential like sign-in's. A wrong one
    // changes nothing, is audited, and counts towards the same waits.
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let (desk, attacker) = (at(20), at(21));
    let mine = staff_session(&app, &clock, &tp, "clinician", PASSWORD, &desk).await;
    let other = staff_session(&app, &clock, &tp, "clinician", PASSWORD, &at(22)).await;
    let me = app.signed_in(&mine).await.unwrap();
    let new = "a brand new long password";
    for _ in 0..4 {
        let problems = app
            .change_staff_password(&me.who, Some(me.session), "not my password", new, new, &attacker)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(fields(&problems), ["current_password"]);
        assert_eq!(problems[0].message, caldicott_app::passwords::WRONG_CURRENT);
    }
    // The four wrong tries hold that address back, for sign-in too: the right password is
    // refused there unchecked while the wait runs.
    assert!(app.sign_in(Some(tp.practice.ods_code.as_str()), "clinician", PASSWORD, &attacker).await.is_err());
    let refused =
        app.change_staff_password(&me.who, Some(me.session), PASSWORD, new, new, &attacker).await.unwrap().unwrap_err();
    assert_eq!(refused[0].message, caldicott_app::passwords::WRONG_CURRENT);
    // Nothing changed: the old password works, both sessions are live, and each try is audited.
    assert!(app.sign_in(Some(tp.practice.ods_code.as_str()), "clinician", PASSWORD, &desk).await.is_ok());
    assert!(app.signed_in(&mine).await.is_ok() && app.signed_in(&other).await.is_ok());
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 10_000).await.unwrap();
    let denied = |what: &str| {
        events
            .iter()
            .filter(|e| e.action == "staff.password_change" && e.outcome == "denied" && e.detail.starts_with(what))
            .count()
    };
    assert_eq!(denied("wrong current password"), 4);
    assert!(denied("try refused unchecked") >= 1);
    // From the desk, the change goes through: the old password stops working, this session
    // carries on and the other one has ended.
    app.change_staff_password(&me.who, Some(me.session), PASSWORD, new, new, &desk).await.unwrap().unwrap();
    let ods = Some(tp.practice.ods_code.as_str());
    assert_eq!(app.sign_in(ods, "clinician", PASSWORD, &desk).await.unwrap_err().to_string(), WRONG_CREDENTIALS);
    assert!(app.sign_in(ods, "clinician", new, &desk).await.is_ok());
    assert!(app.signed_in(&mine).await.is_ok(), "the session that made the change carries on");
    assert!(app.signed_in(&other).await.is_err(), "every other session has ended");
    assert!(events.len() < app.store_for_tests().audit_events(tp.practice.id, 0, 10_000).await.unwrap().len());
    assert!(app
        .store_for_tests()
        .audit_events(tp.practice.id, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .any(|e| e.action == "staff.password_change" && e.outcome == "success"));
}

async fn new_password_rules_give_a_clear_error_and_lose_nothing(t: &TestStore) {
    // ASVS 2.1.1, 2.1.2, 2.1.7: 12 to 128 characters, not a common or breached password, typed
    // the same twice. A refused new password changes nothing and costs no try.
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let desk = at(23);
    let cookie = staff_session(&app, &clock, &tp, "reception", PASSWORD, &desk).await;
    let me = app.signed_in(&cookie).await.unwrap();
    let cases = [
        ("too short", "too short", "new_password", "at least 12"),
        (&"x".repeat(129)[..], &"x".repeat(129)[..], "new_password", "at most 128"),
        ("a long new password", "a long new passwort", "new_password_again", "same new password"),
        ("Password123!", "Password123!", "new_password", "harder to guess"),
        ("qwertyuiop123", "qwertyuiop123", "new_password", "harder to guess"),
    ];
    for (new, again, field, words) in cases {
        for _ in 0..5 {
            let p = app
                .change_staff_password(&me.who, Some(me.session), PASSWORD, new, again, &desk)
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(fields(&p), [field]);
            assert!(p[0].message.contains(words), "{}", p[0].message);
        }
    }
    let p = app
        .change_staff_password(&me.who, Some(me.session), PASSWORD, PASSWORD, PASSWORD, &desk)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(fields(&p), ["new_password"], "the same password again is not a change");
    // Twenty-five refusals later, the old password still works at once and the session is live.
    assert!(app.sign_in(Some(tp.practice.ods_code.as_str()), "reception", PASSWORD, &desk).await.is_ok());
    assert!(app.signed_in(&cookie).await.is_ok());
    let exactly_twelve = "twelve chars";
    app.change_staff_password(&me.who, Some(me.session), PASSWORD, exactly_twelve, exactly_twelve, &desk)
        .await
        .unwrap()
        .unwrap();
}

fn reset(tp: &TestPractice, user: &str, code: &str, new: &str) -> caldicott_app::passwords::StaffReset {
    caldicott_app::passwords::StaffReset {
        ods: tp.practice.ods_code.as_str().to_owned(),
        username: user.to_owned(),
        code: code.to_owned(),
        new_password: new.to_owned(),
        new_password_again: new.to_owned(),
    }
}

async fn a_reset_code_works_once_and_expires(t: &TestStore) {
    // ASVS 2.5.1, 2.5.4: an administrator's one-time code is random, shown once, kept as a hash,
    // used once, valid 24 hours; the old password stops working when it is made; the second
    // factor stays as it was.
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    let desk = at(30);
    let ods = Some(tp.practice.ods_code.as_str());
    let session = staff_session(&app, &clock, &tp, "clinician", PASSWORD, &desk).await;
    let made = app.reset_staff_password(&admin, tp.clinician.staff).await.unwrap();
    let typed: String = made.code.chars().filter(|c| *c != '-').collect();
    assert_eq!(typed.len(), 12);
    assert!(typed.chars().all(|c| "ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(c)), "{typed}");
    let other = app.reset_staff_password(&admin, tp.clinician.staff).await.unwrap();
    assert_ne!(made.code, other.code, "each code is new, and replaces the last");
    let held = app.store_for_tests().password_reset(tp.practice.id, tp.clinician.staff).await.unwrap().unwrap();
    assert_ne!(&held.code_hash[..], other.code.as_bytes(), "only a hash is kept");
    // At once: the old password fails and the member's session has ended.
    assert_eq!(app.sign_in(ods, "clinician", PASSWORD, &desk).await.unwrap_err().to_string(), WRONG_CREDENTIALS);
    assert!(app.signed_in(&session).await.is_err());
    // The replaced code does not work; the new one works once.
    let new = "the password after the reset";
    let refused =
        app.reset_password_with_code(&reset(&tp, "clinician", &made.code, new), &desk).await.unwrap().unwrap_err();
    assert_eq!(refused[0].message, caldicott_app::passwords::WRONG_RESET_CODE);
    app.reset_password_with_code(&reset(&tp, "clinician", &other.code.to_lowercase(), new), &desk)
        .await
        .unwrap()
        .unwrap();
    let again = app
        .reset_password_with_code(&reset(&tp, "clinician", &other.code, "yet another password"), &desk)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(again[0].message, caldicott_app::passwords::WRONG_RESET_CODE, "a code works once");
    // The new password signs in, to the authenticator already set up.
    let start = app.sign_in(ods, "clinician", new, &desk).await.unwrap();
    assert!(matches!(start.next, SecondFactor::EnterCode), "the second factor stays as it was");
    // A code older than 24 hours does not work.
    let late = app.reset_staff_password(&admin, tp.clinician.staff).await.unwrap();
    clock.fetch_add(24 * 3600, Ordering::SeqCst);
    let expired =
        app.reset_password_with_code(&reset(&tp, "clinician", &late.code, new), &at(31)).await.unwrap().unwrap_err();
    assert_eq!(expired[0].message, caldicott_app::passwords::WRONG_RESET_CODE);
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 10_000).await.unwrap();
    let count =
        |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(count("staff.password_reset", "success"), 3);
    assert_eq!(count("staff.password_reset_use", "success"), 1);
    assert_eq!(count("staff.password_reset_use", "denied"), 3);
    assert!(events
        .iter()
        .any(|e| e.action == "staff.password_reset_use" && e.detail.starts_with("one-time code expired")));
    assert!(!events.iter().any(|e| e.detail.contains(&typed)), "the code is never written down");
}

async fn a_reset_code_for_one_practice_or_member_works_for_no_other(t: &TestStore) {
    // An attacker holding a code (or guessing) gets nothing for another member or practice,
    // and guesses are tries like sign-in's.
    let (app, clock) = app_with_clock(t);
    let a = fixtures::practice(&app).await.unwrap();
    // The clinician has an authenticator (a password reset needs one: see below).
    staff_session(&app, &clock, &a, "clinician", PASSWORD, &at(41)).await;
    let b = fixtures::practice(&app).await.unwrap();
    let admin_a = caldicott_app::auth::authenticate(&app, &a.admin_token).await.unwrap();
    let admin_b = caldicott_app::auth::authenticate(&app, &b.admin_token).await.unwrap();
    // Another practice's administrator cannot reset this practice's clinician.
    assert!(matches!(app.reset_staff_password(&admin_b, a.clinician.staff).await, Err(AppError::NotFound(_))));
    // Nor can anyone but an administrator, nor anyone their own.
    assert!(matches!(app.reset_staff_password(&a.clinician, a.clinician.staff).await, Err(AppError::Forbidden(_))));
    assert!(matches!(app.reset_staff_password(&admin_a, admin_a.staff).await, Err(AppError::BadRequest(_))));
    let code = app.reset_staff_password(&admin_a, a.clinician.staff).await.unwrap().code;
    let new = "a password for the wrong place";
    let from = at(40);
    for r in [reset(&b, "clinician", &code, new), reset(&a, "reception", &code, new), reset(&a, "nobody", &code, new)] {
        let p = app.reset_password_with_code(&r, &from).await.unwrap().unwrap_err();
        assert_eq!(p[0].message, caldicott_app::passwords::WRONG_RESET_CODE, "every refusal says the same");
    }
    // The receptionist of practice A and the clinician of practice B keep their passwords.
    assert!(app.sign_in(Some(a.practice.ods_code.as_str()), "reception", PASSWORD, &at(41)).await.is_ok());
    assert!(app.sign_in(Some(b.practice.ods_code.as_str()), "clinician", PASSWORD, &at(41)).await.is_ok());
    // Guessing codes is slowed like guessing passwords: after the free tries, even the right
    // code is refused from that address while the wait runs.
    for i in 0..4 {
        let _ = app.reset_password_with_code(&reset(&a, "clinician", &format!("WRONGCODE{i:03}"), new), &from).await;
    }
    let waiting = app.reset_password_with_code(&reset(&a, "clinician", &code, new), &from).await.unwrap().unwrap_err();
    assert_eq!(waiting[0].message, caldicott_app::passwords::WRONG_RESET_CODE);
    app.reset_password_with_code(&reset(&a, "clinician", &code, new), &at(42)).await.unwrap().unwrap();
}

async fn a_patient_changes_their_password_and_their_other_sessions_end(t: &TestStore) {
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let patient = fixtures::adult(&app, tp.practice.id).await.unwrap();
    let (username, password, first) = fixtures::patient_account(&app, &tp.clinician, &patient, "P9").await.unwrap();
    let ods = Some(tp.practice.ods_code.as_str());
    let home = at(50);
    let second = app.patient_sign_in(ods, &username, &password, &home).await.unwrap().cookie;
    let me = app.patient_signed_in(&second).await.unwrap();
    let new = "my new patient password";
    let wrong = app.change_patient_password(&me.who, me.session, "not it", new, new, &home).await.unwrap().unwrap_err();
    assert_eq!(fields(&wrong), ["current_password"]);
    let short = app
        .change_patient_password(&me.who, me.session, &password, "short", "short", &home)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(fields(&short), ["new_password"]);
    assert!(app.patient_signed_in(&first).await.is_ok(), "nothing changed yet");
    app.change_patient_password(&me.who, me.session, &password, new, new, &home).await.unwrap().unwrap();
    assert!(app.patient_signed_in(&second).await.is_ok(), "this session carries on");
    assert!(app.patient_signed_in(&first).await.is_err(), "the other session has ended");
    assert!(app.patient_sign_in(ods, &username, &password, &home).await.is_err());
    assert!(app.patient_sign_in(ods, &username, new, &home).await.is_ok());
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 10_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "patient.password_change" && e.outcome == "denied"));
    assert!(events.iter().any(|e| e.action == "patient.password_change" && e.outcome == "success"));
}

fn patient_reset(
    letter: &caldicott_app::patient_services::LinkageLetter,
    patient: &caldicott_core::patient::Patient,
    new: &str,
) -> caldicott_app::passwords::PatientReset {
    caldicott_app::passwords::PatientReset {
        ods_code: letter.ods_code.clone(),
        account_id: letter.account_id.clone(),
        linkage_key: letter.linkage_key.clone(),
        family: patient.name.family.clone(),
        birth_day: patient.date_of_birth.format("%d").to_string(),
        birth_month: patient.date_of_birth.format("%m").to_string(),
        birth_year: patient.date_of_birth.format("%Y").to_string(),
        new_password: new.to_owned(),
        new_password_again: new.to_owned(),
    }
}

async fn a_patient_who_forgot_their_password_sets_a_new_one_with_a_letter(t: &TestStore) {
    // ASVS 2.5: recovery through the practice, after an identity check, with a letter that
    // works once and only with the patient's last name and date of birth.
    let (app, _) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let patient = fixtures::adult(&app, tp.practice.id).await.unwrap();
    let (username, password, session) = fixtures::patient_account(&app, &tp.clinician, &patient, "P9").await.unwrap();
    let ods = Some(tp.practice.ods_code.as_str());
    // A patient with no local account gets a sign-up letter instead.
    let newcomer = fixtures::adult(&app, tp.practice.id).await.unwrap();
    assert!(matches!(
        app.issue_password_letter(&tp.clinician, newcomer.nhs_number.as_str()).await,
        Err(AppError::Conflict(_))
    ));
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    assert!(matches!(
        app.issue_password_letter(&admin, patient.nhs_number.as_str()).await,
        Err(AppError::Forbidden(_))
    ));
    let letter = app.issue_password_letter(&tp.clinician, patient.nhs_number.as_str()).await.unwrap();
    assert_eq!(letter.username.as_deref(), Some(username.as_str()), "the username is kept");
    let new = "a new password from my letter";
    // It does not make a second account.
    let sign_up = caldicott_app::patient_services::SignUp {
        ods_code: letter.ods_code.clone(),
        account_id: letter.account_id.clone(),
        linkage_key: letter.linkage_key.clone(),
        family: patient.name.family.clone(),
        birth_day: patient.date_of_birth.format("%d").to_string(),
        birth_month: patient.date_of_birth.format("%m").to_string(),
        birth_year: patient.date_of_birth.format("%Y").to_string(),
        username: "someone.else".into(),
        password: new.into(),
    };
    assert!(app.patient_sign_up(&sign_up).await.unwrap().is_err());
    // Wrong date of birth, another person's last name, new passwords that differ: nothing changes.
    let mut wrong = patient_reset(&letter, &patient, new);
    wrong.birth_year = "1901".into();
    assert_eq!(fields(&app.patient_password_reset(&wrong).await.unwrap().unwrap_err()), ["account_id"]);
    let mut wrong = patient_reset(&letter, &patient, new);
    wrong.family = "Someone".into();
    assert_eq!(fields(&app.patient_password_reset(&wrong).await.unwrap().unwrap_err()), ["account_id"]);
    let mut wrong = patient_reset(&letter, &patient, new);
    wrong.new_password_again = "a new password from my lettr".into();
    assert_eq!(fields(&app.patient_password_reset(&wrong).await.unwrap().unwrap_err()), ["new_password_again"]);
    assert!(app.patient_signed_in(&session).await.is_ok());
    assert!(app.patient_sign_in(ods, &username, &password, &at(60)).await.is_ok());
    // The right details set the new password and end every session.
    let other = app.patient_sign_in(ods, &username, &password, &at(60)).await.unwrap().cookie;
    app.patient_password_reset(&patient_reset(&letter, &patient, new)).await.unwrap().unwrap();
    assert!(app.patient_signed_in(&session).await.is_err() && app.patient_signed_in(&other).await.is_err());
    assert!(app.patient_sign_in(ods, &username, &password, &at(60)).await.is_err());
    assert!(app.patient_sign_in(ods, &username, new, &at(60)).await.is_ok());
    // The letter works once; a sign-up letter does not reset a password.
    let twice = app.patient_password_reset(&patient_reset(&letter, &patient, "and one more password")).await.unwrap();
    assert!(twice.is_err());
    let sign_up_letter = app.issue_linkage(&tp.clinician, patient.nhs_number.as_str(), "P9").await.unwrap();
    assert!(app
        .patient_password_reset(&patient_reset(&sign_up_letter, &patient, "and one more password"))
        .await
        .unwrap()
        .is_err());
    let events = app.store_for_tests().audit_events(tp.practice.id, 0, 10_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "account.password_letter_issue" && e.outcome == "success"));
    assert!(events.iter().any(|e| e.action == "patient.password_reset" && e.outcome == "success"));
    assert!(events.iter().filter(|e| e.action == "patient.password_reset" && e.outcome == "denied").count() >= 2);
}

async fn an_administrator_never_holds_both_factors_of_a_member(t: &TestStore) {
    // Tried as an attacker who is the practice's administrator: reset a clinician's password
    // (seeing the code) and their authenticator, then sign in as them and open records. The
    // administrator must never hold both factors of another member.
    use caldicott_app::staff_admin::AccountChange;
    let (app, clock) = app_with_clock(t);
    let tp = fixtures::practice(&app).await.unwrap();
    let admin = caldicott_app::auth::authenticate(&app, &tp.admin_token).await.unwrap();
    // A member with no authenticator set up: a reset code alone would sign in as them.
    let none_yet = app.reset_staff_password(&admin, tp.clinician.staff).await;
    assert!(matches!(none_yet, Err(AppError::Conflict(ref m)) if m.contains("no authenticator")), "{none_yet:?}");
    // Once they have one, the password may be reset...
    staff_session(&app, &clock, &tp, "clinician", PASSWORD, &at(50)).await;
    app.reset_staff_password(&admin, tp.clinician.staff).await.unwrap();
    // ...but then not the authenticator, for a week.
    let both = app.change_staff_account(&admin, tp.clinician.staff, AccountChange::ResetSecondFactor).await;
    assert!(matches!(both, Err(AppError::Conflict(ref m)) if m.contains("never holds both")), "{both:?}");
    let member = app.store_for_tests().staff_member(tp.practice.id, tp.clinician.staff).await.unwrap().unwrap();
    assert!(member.sign_in.totp_confirmed, "the authenticator is untouched");
    clock.fetch_add(8 * 24 * 3600, Ordering::SeqCst);
    app.change_staff_account(&admin, tp.clinician.staff, AccountChange::ResetSecondFactor).await.unwrap();
    // The other way round: with the authenticator reset, the password cannot be.
    let after = app.reset_staff_password(&admin, tp.clinician.staff).await;
    assert!(matches!(after, Err(AppError::Conflict(_))), "{after:?}");
    // An ICB analyst's account belongs to the service operator: no practice administrator
    // resets or deactivates it.
    let analyst = caldicott_app::setup::create_staff(
        &app,
        tp.practice.id,
        "icb.analyst",
        "ICB Analyst",
        caldicott_core::staff::Role::IcbAnalyst,
        PASSWORD,
        caldicott_core::audit::Actor {
            kind: caldicott_core::audit::ActorKind::System,
            id: "test".into(),
            role: "operator".into(),
        },
    )
    .await
    .unwrap();
    for change in [AccountChange::ResetSecondFactor, AccountChange::Deactivate] {
        let r = app.change_staff_account(&admin, analyst.id, change).await;
        assert!(matches!(r, Err(AppError::Forbidden(_))), "{r:?}");
    }
}

/// Issue 24: the account-wide rate is kept in the database, so two servers on one database
/// (each with its own connections, as two processes behind a load balancer) share it: tries
/// spread over both servers and many addresses get one burst between them, and the rate refills
/// one try per interval on the application's clock, never more.
async fn tries_spread_over_two_servers_are_capped_per_account(t: &TestStore) {
    let (one, offset) = app_with_clock(t);
    let clock = offset.clone();
    let start = fixtures::now();
    let two = App::new(
        caldicott_store::open(&t.url).await.unwrap(),
        Arc::new(move || start + Duration::seconds(clock.load(Ordering::SeqCst))),
    );
    let tp = fixtures::practice(&one).await.unwrap();
    let ods = tp.practice.ods_code.as_str().to_owned();
    let spread = |first: u8, n: u8| {
        let tries: Vec<_> = (0..n)
            .map(|i| {
                let app = if i % 2 == 0 { one.clone() } else { two.clone() };
                let ods = ods.clone();
                tokio::spawn(async move { app.sign_in(Some(&ods), "reception", "guess", &at(first + i)).await })
            })
            .collect();
        async move {
            for t in tries {
                assert!(t.await.unwrap().is_err());
            }
        }
    };
    spread(10, 40).await;
    let burst = usize::try_from(AccountTries::BURST).unwrap();
    assert_eq!(checked_and_wrong(&one, &tp, "wrong password").await, burst, "one burst between both servers");
    // One interval later, one more try is checked, whichever server it reaches.
    offset.fetch_add(i64::try_from(AccountTries::EVERY.as_secs()).unwrap(), Ordering::SeqCst);
    spread(60, 6).await;
    assert_eq!(checked_and_wrong(&one, &tp, "wrong password").await, burst + 1);
}

both!(
    workers = 4;
    tries_spread_over_two_servers_are_capped_per_account,
    fifty_parallel_wrong_passwords_are_not_all_checked,
    a_wrong_password_never_locks_the_clinician_out,
    locked_unknown_and_wrong_are_answered_alike,
    tries_from_many_addresses_are_capped_per_account,
    fifty_parallel_wrong_codes_are_not_all_checked_and_a_code_works_once,
    a_patient_account_holds_the_same_way,
    the_password_recheck_before_a_release_is_throttled,
    authenticator_secrets_are_sealed_and_a_rotation_keeps_them_usable,
    a_wrong_current_password_changes_nothing_and_counts_as_a_failed_try,
    new_password_rules_give_a_clear_error_and_lose_nothing,
    a_reset_code_works_once_and_expires,
    a_reset_code_for_one_practice_or_member_works_for_no_other,
    a_patient_changes_their_password_and_their_other_sessions_end,
    a_patient_who_forgot_their_password_sets_a_new_one_with_a_letter,
    an_administrator_never_holds_both_factors_of_a_member,
);
