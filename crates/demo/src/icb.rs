//! A whole service of practices for the ICB view and its benchmark: `demo --practices N`.
//! Each practice is lean (patients, registrations and their 104/106 codes only) so that a
//! service of millions of patients can be generated on a small machine. Deterministic by seed.

use caldicott_app::setup::{create_practice, create_staff, NewPractice};
use caldicott_app::{new_id, App, AppResult};
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::entry::{Author, Entry, EntryBody, OnlineVisibility, Origin};
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::{OdsCode, OnlineServicesSettings, PostalAddress};
use caldicott_core::snomed::{Coding, ConceptId, ENHANCED_REVIEW_INDICATED, ENHANCED_REVIEW_NOT_INDICATED};
use caldicott_core::staff::Role;
use caldicott_core::NhsNumber;
use chrono::{Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The practice manager of every generated practice, for the reports and the benchmark.
pub const SERVICE_MANAGER: &str = "manager";

/// The ODS code of the `n`th generated practice (from 1).
pub fn service_ods(n: u32) -> String {
    format!("Y{n:05}")
}

fn system() -> Actor {
    Actor { kind: ActorKind::System, id: "demo".into(), role: "system".into() }
}

fn code(concept: &str, term: &str) -> Option<Coding> {
    ConceptId::parse(concept).ok().map(|concept| Coding { concept, term: term.to_owned() })
}

/// Builds practices `Y00001`… up to `practices`, each with `patients` patients, skipping any
/// already built; every tenth practice excludes about 60% of its patients (over the 50% line),
/// the others 2–15%. `progress` is told after each practice. Returns how many it built.
pub async fn build_service(
    app: &App,
    practices: u32,
    patients: u32,
    seed: u64,
    as_of: NaiveDate,
    manager_password: &str,
    progress: &(dyn Fn(u32) + Send + Sync),
) -> AppResult<u32> {
    let mut built = 0;
    for n in 1..=practices {
        let ods = service_ods(n);
        let parsed = OdsCode::parse(&ods).map_err(|e| caldicott_app::AppError::Internal(e.to_string()))?;
        if let Some(existing) = app.practice_by_ods(&parsed).await? {
            // Built before: make sure it has its manager and all its patients.
            if app.seeding().staff_by_username(existing.id, SERVICE_MANAGER).await?.is_none() {
                create_staff(
                    app,
                    existing.id,
                    SERVICE_MANAGER,
                    "Practice Manager",
                    Role::PracticeManager,
                    manager_password,
                    system(),
                )
                .await?;
            }
            if app.seeding().patient_count(existing.id).await? >= i64::from(patients) {
                progress(n);
                continue;
            }
            return Err(caldicott_app::AppError::Conflict(format!(
                "practice {ods} was left half-built by an interrupted run; start again on a fresh database"
            )));
        }
        let practice = create_practice(
            app,
            NewPractice {
                ods_code: ods.clone(),
                name: format!("Service Practice {n}"),
                telephone: "01632 960000".into(),
                address: PostalAddress { lines: vec![format!("{n} Service Road")], postcode: "RV9 9ZZ".into() },
                online: OnlineServicesSettings {
                    prospective_switch_on: NaiveDate::from_ymd_opt(2023, 10, 31),
                    ..Default::default()
                },
            },
            system(),
        )
        .await?;
        let pm = create_staff(
            app,
            practice.id,
            SERVICE_MANAGER,
            "Practice Manager",
            Role::PracticeManager,
            manager_password,
            system(),
        )
        .await?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(n) << 20));
        let share = if n % 10 == 0 { 0.6 } else { 0.02 + 0.13 * rng.gen::<f64>() };
        let mut batch = Vec::with_capacity(5000);
        let mut codes = Vec::new();
        for i in 0..patients {
            let age_days = rng.gen_range(0..95 * 365);
            let dob = as_of - Duration::days(age_days);
            let registered = (as_of - Duration::days(rng.gen_range(0..25 * 365))).max(dob);
            let nhs = (0..)
                .find_map(|k: u32| {
                    NhsNumber::from_first_nine(400_000_000 + (n % 500) * 1_000_000 + (i * 7 + k) % 1_000_000)
                })
                .ok_or_else(|| caldicott_app::AppError::Internal("no NHS number".into()))?;
            let patient = Patient {
                id: PatientId::from_uuid(new_id()),
                practice: practice.id,
                nhs_number: nhs,
                name: PersonName { title: None, given: format!("Person{i}"), family: format!("Service{n}") },
                date_of_birth: dob,
                sex: if i % 2 == 0 { Sex::Female } else { Sex::Male },
                contact: ContactDetails::default(),
                preferred_contact: PreferredContactMethod::Unknown,
                registrations: vec![Registration::since(registered)],
                date_of_death: None,
            };
            let mut entries = Vec::new();
            if age_days >= 16 * 365 && rng.gen_bool(share) {
                let when =
                    (as_of - Duration::days(rng.gen_range(31..730))).and_hms_opt(9, 0, 0).unwrap_or_default().and_utc();
                let entry = |concept: &str, term: &str, at| Entry {
                    id: EntryId::from_uuid(new_id()),
                    patient: patient.id,
                    event_date: as_of,
                    entered_at: at,
                    author: Author { staff: Some(pm.id), name: "Practice Manager".into() },
                    origin: Origin::Native,
                    code: code(concept, term),
                    body: EntryBody::Coded { value: None },
                    visibility: OnlineVisibility::Visible,
                    nopat: false,
                    safeguarding: false,
                    confidential: false,
                    superseded: None,
                };
                entries.push(entry(ENHANCED_REVIEW_INDICATED, "Enhanced review indicated", when));
                if rng.gen_bool(0.1) {
                    entries.push(entry(
                        ENHANCED_REVIEW_NOT_INDICATED,
                        "Enhanced review not indicated",
                        when + Duration::days(30),
                    ));
                }
            }
            batch.push(patient);
            codes.extend(entries);
            if batch.len() == 5000 || i + 1 == patients {
                let audit = AuditRecord::new(
                    AuditEventId::from_uuid(new_id()),
                    app.now(),
                    system(),
                    None,
                    Action::DemoBuild,
                    format!("practice/{}", practice.id),
                    Outcome::Success,
                    format!("patients={}", batch.len()),
                );
                app.seeding().seed_patients(practice.id, &batch, &codes, &audit).await?;
                batch.clear();
                codes.clear();
            }
        }
        built += 1;
        progress(n);
    }
    Ok(built)
}
