#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Update Record speed (`cargo bench -p caldicott-app --bench update_record`): filing a
//! 50-item consultation summary, and listing a review queue of 200 messages, on SQLite with
//! the durable settings the server uses. Target: each under 20 ms.

use caldicott_app::fixtures::{self, date, person};
use caldicott_app::{auth, App};
use caldicott_core::audit::Action;
use caldicott_core::NhsNumber;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../../../docs/examples/update-record/pharmacy-first.json");

/// The sample with 47 more observations (50 items) and its own message id.
fn message(n: usize) -> Vec<u8> {
    let mut m: Value = serde_json::from_str(SAMPLE).expect("sample");
    m["id"] = json!(format!("bench-{n}"));
    let doc = m["entry"][2]["resource"]["entry"].as_array_mut().expect("document");
    for i in 0..47 {
        doc.push(json!({"resource": {
            "resourceType": "Observation", "id": format!("obs-{i}"),
            "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Observation-1"]},
            "status": "final",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "75367002", "display": "Blood pressure"}]},
            "component": [
                {"valueQuantity": {"value": 120 + i, "unit": "mmHg"}},
                {"valueQuantity": {"value": 80, "unit": "mmHg"}}
            ]
        }}));
    }
    serde_json::to_vec(&m).expect("json")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (app, clinician, client_id, secret) = rt.block_on(async {
        let t = caldicott_store::test_support::sqlite().await.expect("store");
        let app = App::new(t.store.clone(), caldicott_app::system_clock());
        std::mem::forget(t);
        let tp = fixtures::practice(&app).await.expect("practice");
        let mut hannah = person(tp.practice.id, date(1987, 3, 14));
        hannah.nhs_number = NhsNumber::parse("9990996008").expect("nhs");
        app.store_for_tests()
            .create_patient(tp.practice.id, &hannah, &fixtures::audit(Action::PatientCreate, Some(hannah.id)))
            .await
            .expect("patient");
        let admin = auth::authenticate(&app, &tp.admin_token).await.expect("admin");
        let (sender, secret) = app.register_sender(&admin, "FA123", "Quayside Pharmacy").await.expect("sender");
        (app, tp.clinician, sender.client_id, secret)
    });
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    assert_eq!(caldicott_fhir::update_record::parse(&message(0)).expect("valid").items.len(), 50);
    c.bench_function("file a 50-item Update Record message (SQLite)", |b| {
        b.iter_batched(
            || {
                rt.block_on(app.receive_update_http(&client_id, &secret, &message(next())))
                    .expect("receive")
                    .id
                    .expect("id")
            },
            |id| rt.block_on(app.file_inbound(&clinician, id)).expect("file"),
            BatchSize::PerIteration,
        )
    });
    for _ in 0..200 {
        rt.block_on(app.receive_update_http(&client_id, &secret, &message(next()))).expect("receive");
    }
    c.bench_function("list a review queue of 200 messages (SQLite)", |b| {
        b.iter(|| rt.block_on(app.inbound_queue(&clinician)).expect("queue"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
