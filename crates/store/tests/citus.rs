#![allow(clippy::unwrap_used, clippy::expect_used)]
//! On a real Citus cluster (scripts/citus-tests.sh): the migrated schema is placed as the design
//! says (every practice table distributed by `practice_id` in one colocation group, the shared
//! tables copied to every node, the same foreign keys as plain PostgreSQL), and a worker can be
//! drained and added back, its shards moved, while the store keeps writing and reading: nothing
//! is lost and every practice's audit chain is intact.

use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::*;
use caldicott_store::test_support::{self, TestStore};
use caldicott_store::*;
use chrono::{NaiveDate, Utc};
use sqlx::{Connection, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use uuid::Uuid;

fn audit(action: Action, patient: Option<PatientId>) -> AuditRecord {
    AuditRecord::new(
        AuditEventId::from_uuid(Uuid::now_v7()),
        Utc::now(),
        Actor { kind: ActorKind::Staff, id: "tester".into(), role: "clinician".into() },
        patient,
        action,
        "test",
        Outcome::Success,
        "",
    )
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn practice(store: &dyn Store, n: u32) -> Practice {
    let id = Uuid::now_v7();
    let p = Practice {
        id: PracticeId::from_uuid(id),
        ods_code: OdsCode::parse(&format!("C{:05}", (id.as_u128() % 90_000) as u32 + n)).unwrap(),
        name: format!("Practice {n}"),
        telephone: "01632 960000".into(),
        address: PostalAddress { lines: vec!["1 High Street".into()], postcode: "EX1 1AA".into() },
        online: OnlineServicesSettings::default(),
    };
    store.create_practice(&p, &audit(Action::PracticeCreate, None)).await.unwrap();
    p
}

fn patient(p: &Practice, n: u32) -> Patient {
    Patient {
        id: PatientId::from_uuid(Uuid::now_v7()),
        practice: p.id,
        nhs_number: (n..).find_map(|k| caldicott_core::NhsNumber::from_first_nine(999_200_000 + k % 100_000)).unwrap(),
        name: PersonName { title: None, given: "Ada".into(), family: "Lovelace".into() },
        date_of_birth: day(1985, 12, 10),
        sex: Sex::Female,
        contact: ContactDetails::default(),
        preferred_contact: PreferredContactMethod::Unknown,
        registrations: vec![Registration {
            kind: RegistrationKind::Registered,
            started: day(2015, 3, 1),
            ended: None,
            previous_practice: None,
        }],
        date_of_death: None,
    }
}

/// The schema's tables: name -> (Citus partition method, colocation group).
async fn placement(url: &str) -> BTreeMap<String, (String, i64)> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "SELECT c.relname::text AS name, d.partmethod::text AS method, d.colocationid::bigint AS colocation \
         FROM pg_class c LEFT JOIN pg_dist_partition d ON d.logicalrelid = c.oid \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let method: Option<String> = r.get("method");
        let colocation: Option<i64> = r.get("colocation");
        (r.get("name"), (method.unwrap_or_else(|| "local".into()), colocation.unwrap_or(-1)))
    })
    .collect()
}

/// The schema's foreign keys, as PostgreSQL writes them: (table, definition).
async fn foreign_keys(url: &str) -> BTreeSet<(String, String)> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "SELECT c.relname::text AS owner, pg_get_constraintdef(k.oid) AS def FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("owner"), r.get("def")))
    .collect()
}

async fn schema_is_placed(t: &TestStore) {
    let placed = placement(&t.url).await;
    assert!(placed.len() > 40, "{placed:?}");
    let mut groups = BTreeSet::new();
    for (name, (method, colocation)) in &placed {
        // Shared across the service: practices, the apps and pharmacies found by client id, the
        // delivery callbacks found by provider id, and the outbox worker's wake-up list.
        let shared = ["practice", "patient_app", "update_record_sender", "outbox_callback", "outbox_wake"]
            .contains(&name.as_str());
        match name.as_str() {
            "schema_migration" => assert_eq!(method, "local", "the migrations' own record stays on the coordinator"),
            _ if shared => assert_eq!(method, "n", "{name} is a reference table"),
            _ => {
                assert_eq!(method, "h", "{name} is distributed by practice");
                groups.insert(*colocation);
            }
        }
    }
    assert_eq!(groups.len(), 1, "every practice table in one colocation group: {placed:?}");
    // The keys are back, the same as on plain PostgreSQL.
    let plain = test_support::postgres().await.unwrap();
    let (here, there) = (foreign_keys(&t.url).await, foreign_keys(&plain.url).await);
    assert!(!there.is_empty());
    assert_eq!(here, there, "the same foreign keys as plain PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn citus_places_the_schema_by_practice_and_moves_shards_while_the_store_answers() {
    let t = test_support::citus_on("CALDICOTT_TEST_CITUS_MOVES").await.unwrap();
    schema_is_placed(&t).await;
    let store = t.store.clone();

    // Eight practices (spread over both workers), each with a patient.
    let mut practices = Vec::new();
    for n in 0..8 {
        let p = practice(store.as_ref(), n).await;
        let pat = patient(&p, n);
        store.create_patient(p.id, &pat, &audit(Action::PatientCreate, Some(pat.id))).await.unwrap();
        practices.push((p, pat));
    }
    let admin_url = std::env::var("CALDICOTT_TEST_CITUS_MOVES").unwrap();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let on_worker = |port: i32| {
        format!(
            "SELECT COUNT(*) FROM pg_dist_shard_placement WHERE nodeport = {port} AND shardid IN \
             (SELECT shardid FROM pg_dist_shard WHERE logicalrelid::text LIKE '%entry')"
        )
    };
    let before: i64 = sqlx::query_scalar(&on_worker(9702)).fetch_one(&mut admin).await.unwrap();
    assert!(before > 0, "the second worker holds shards before it is drained");

    // While the shards move: every practice keeps writing (an audited look a time) and reading.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (p, pat) in practices.clone() {
        let (store, stop) = (store.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut written = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let look = audit(Action::RecordViewStaff, Some(pat.id));
                store.append_audit(&[(p.id, look)]).await.unwrap();
                written += 1;
                assert_eq!(store.patient(p.id, pat.id).await.unwrap().map(|x| x.id), Some(pat.id));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            written
        }));
    }
    // Drain the second worker (its shards move to the first), take it out, add it back and
    // rebalance: the cluster grows by a worker while the store answers.
    sqlx::query("SELECT citus_drain_node('127.0.0.1', 9702, shard_transfer_mode => 'block_writes')")
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(sqlx::query_scalar::<_, i64>(&on_worker(9702)).fetch_one(&mut admin).await.unwrap(), 0);
    // The drain leaves the old placements on the worker to be dropped later (deferred while
    // anything still holds them). They are cleaned up before the worker is removed: left there,
    // they stand in the way of every later move back onto it ("orphaned shard … could not be
    // cleaned up"), and the rebalance below never ends.
    let cleaned = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            sqlx::query("CALL citus_cleanup_orphaned_resources()").execute(&mut admin).await.unwrap();
            let left: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM pg_dist_cleanup").fetch_one(&mut admin).await.unwrap();
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(cleaned.is_ok(), "the drained worker's old placements are cleaned up within 2 minutes");
    sqlx::query("SELECT citus_remove_node('127.0.0.1', 9702)").execute(&mut admin).await.unwrap();
    sqlx::query("SELECT citus_add_node('127.0.0.1', 9702)").execute(&mut admin).await.unwrap();
    sqlx::query("SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')")
        .execute(&mut admin)
        .await
        .unwrap();
    // The moves run as Citus background tasks, which need free background workers on the
    // coordinator (max_worker_processes): a rebalance that never starts fails here, not hangs.
    let waited = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        sqlx::query("SELECT citus_rebalance_wait()").execute(&mut admin),
    )
    .await;
    if waited.is_err() {
        // Say why: the tasks' states and messages, and the background workers in use.
        let mut look = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        let tasks: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status::text, message FROM pg_dist_background_task ORDER BY task_id")
                .fetch_all(&mut look)
                .await
                .unwrap();
        let (used, max): (i64, String) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type NOT IN \
             ('client backend', 'autovacuum launcher', 'background writer', 'checkpointer', 'walwriter')), \
             current_setting('max_worker_processes')",
        )
        .fetch_one(&mut look)
        .await
        .unwrap();
        panic!("the rebalance did not finish within 5 minutes; tasks {tasks:?}; background workers {used} of {max}");
    }
    waited.unwrap().unwrap();
    let after: i64 = sqlx::query_scalar(&on_worker(9702)).fetch_one(&mut admin).await.unwrap();
    assert!(after > 0, "the worker added back holds shards again");
    stop.store(true, Ordering::SeqCst);
    let mut written = Vec::new();
    for w in workers {
        written.push(w.await.unwrap());
    }
    // Nothing lost: each practice's chain holds its creation, its patient and every look, intact.
    for ((p, _), looks) in practices.iter().zip(written) {
        assert!(looks > 0);
        assert_eq!(test_support::verified_chain(store.as_ref(), p.id).await.unwrap(), 2 + looks, "{}", p.ods_code);
    }
}
