#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Throughput of the visibility engine over a 5,000-entry record (BENCHMARKS.md).

use caldicott_core::access::{IdentityLevel, OnlineAccessSettings, Viewer};
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::OnlineServicesSettings;
use caldicott_core::snomed::EnhancedReview;
use caldicott_core::visibility::{online_view, AccessPolicy, RecordFacts};
use caldicott_core::NhsNumber;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use uuid::Uuid;

fn record(n: usize) -> Vec<Entry> {
    let start = Utc.with_ymd_and_hms(2015, 1, 1, 9, 0, 0).single().unwrap_or_default();
    (0..n)
        .map(|i| {
            let body = match i % 6 {
                0 => EntryBody::Consultation { text: "Reviewed.".into(), status: ConsultationStatus::Final },
                1 => EntryBody::Coded { value: None },
                2 => EntryBody::MedicationIssue {
                    drug: "d".into(),
                    dosage: "x".into(),
                    quantity: "28".into(),
                    template: None,
                },
                3 => EntryBody::TestResult {
                    test: "t".into(),
                    value: "1".into(),
                    unit: "u".into(),
                    range: String::new(),
                    abnormal: false,
                    filing: Filing::Filed,
                },
                4 => EntryBody::Document {
                    title: "Letter".into(),
                    summary: String::new(),
                    filing: Filing::Filed,
                    review: DocumentReview::Reviewed,
                },
                _ => EntryBody::Diary { text: "recall".into(), due: NaiveDate::MIN },
            };
            let entered = start + Duration::hours(i as i64 * 7);
            Entry {
                id: EntryId::from_uuid(Uuid::from_u128(i as u128)),
                patient: PatientId::from_uuid(Uuid::from_u128(1)),
                event_date: entered.date_naive(),
                entered_at: entered,
                author: Author { staff: None, name: "Dr A".into() },
                origin: Origin::Native,
                code: None,
                body,
                visibility: OnlineVisibility::Visible,
                nopat: false,
                safeguarding: i % 97 == 0,
                confidential: false,
                superseded: None,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let practice =
        OnlineServicesSettings { prospective_switch_on: NaiveDate::from_ymd_opt(2016, 1, 1), ..Default::default() };
    let patient = Patient {
        id: PatientId::from_uuid(Uuid::from_u128(1)),
        practice: PracticeId::from_uuid(Uuid::from_u128(2)),
        nhs_number: NhsNumber::from_first_nine(999_000_001).unwrap_or_else(|| unreachable!()),
        name: PersonName { title: None, given: "A".into(), family: "B".into() },
        date_of_birth: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default(),
        sex: Sex::Female,
        contact: ContactDetails::default(),
        preferred_contact: PreferredContactMethod::Unknown,
        registrations: vec![Registration::since(NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default())],
        date_of_death: None,
    };
    let access = OnlineAccessSettings::default();
    let facts = RecordFacts {
        practice: &practice,
        patient: &patient,
        access: &access,
        enhanced_review: EnhancedReview::NotIndicated,
        transferred_in: None,
    };
    let entries = record(5000);
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).single().unwrap_or_default();
    let viewer = Viewer::Patient { identity: Some(IdentityLevel::P9) };

    let mut g = c.benchmark_group("visibility");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("online_view_5000_entries", |b| {
        b.iter(|| online_view(black_box(viewer), black_box(facts), black_box(&entries), now))
    });
    let policy = AccessPolicy::new(viewer, facts, now);
    g.bench_function("decide_5000_entries_count_shown", |b| {
        b.iter(|| black_box(&entries).iter().filter(|e| policy.decide(e).is_shown()).count())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
