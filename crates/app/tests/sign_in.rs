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
use caldicott_store::test_support::{self, TestStore};
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
    app.store
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
    let stored = app.store.staff_member(tp.practice.id, tp.clinician.staff).await.unwrap().unwrap();
    let sealed = stored.sign_in.totp_secret.clone().unwrap();
    assert!(sealed.starts_with("enc1:") && !sealed.contains(&secret), "stored in the clear: {sealed}");
    app.second_factor(&start.cookie, &current_code(&secret, app.now()).unwrap(), &desk).await.unwrap();
    // A secret stored before sealing existed (the reception's) is sealed by the rotation too.
    let reception = app.store.staff_by_username(tp.practice.id, "reception").await.unwrap().unwrap();
    let mut legacy = reception.sign_in.clone();
    legacy.totp_secret = Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into());
    legacy.totp_confirmed = true;
    let audit = fixtures::audit(caldicott_core::audit::Action::SecondFactorEnrolled, None);
    app.store.set_sign_in_state(tp.practice.id, reception.id, &legacy, &audit).await.unwrap();
    let done = rotate(app.store.as_ref(), &key).await.unwrap();
    assert!(done.resealed >= 2, "{done:?}");
    assert!(done.old_key.exists());
    let after = app.store.staff_member(tp.practice.id, tp.clinician.staff).await.unwrap().unwrap();
    let resealed = after.sign_in.totp_secret.clone().unwrap();
    assert_ne!(resealed, sealed);
    let legacy_after = app.store.staff_member(tp.practice.id, reception.id).await.unwrap().unwrap();
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

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(&super::test_support::sqlite().await.unwrap()).await; })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(&super::test_support::postgres().await.unwrap()).await; })* }
    };
}

both!(
    fifty_parallel_wrong_passwords_are_not_all_checked,
    a_wrong_password_never_locks_the_clinician_out,
    locked_unknown_and_wrong_are_answered_alike,
    tries_from_many_addresses_are_capped_per_account,
    fifty_parallel_wrong_codes_are_not_all_checked_and_a_code_works_once,
    a_patient_account_holds_the_same_way,
    the_password_recheck_before_a_release_is_throttled,
    authenticator_secrets_are_sealed_and_a_rotation_keeps_them_usable,
);
