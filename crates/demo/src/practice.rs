//! The demo practice: a realistic practice built deterministically from a seed. The same seed
//! and the same `as_of` date always give the same practice, patients, records and passwords.
//!
//! NHS numbers come only from the 999 test range, names from lists of common UK names, and
//! mobile numbers from Ofcom's drama range, so nothing in it can reach a real person.

use crate::data::*;
use caldicott_app::setup::{create_practice, create_staff, NewPractice};
use caldicott_app::{App, AppResult};
use caldicott_core::access::*;
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::{OdsCode, OnlineServicesSettings, PostalAddress, Practice};
use caldicott_core::snomed::{Coding, ConceptId, ENHANCED_REVIEW_INDICATED, ENHANCED_REVIEW_NOT_INDICATED};
use caldicott_core::staff::Role;
use caldicott_core::NhsNumber;
use caldicott_store::PatientImport;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

pub const DEMO_ODS: &str = "Y90210";
/// The demo practice's ASID on the Spine.
pub const DEMO_ASID: &str = "918999198738";

pub const DEMO_PRACTICE: &str = "Riverside Medical Practice";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub patients: u32,
    pub seed: u64,
    pub as_of: NaiveDate,
    /// Adds one patient with a record of exactly this many entries (for benchmarks).
    pub long_record: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct DemoStaff {
    pub username: String,
    pub name: String,
    pub role: Role,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct DemoReport {
    pub practice: Practice,
    pub staff: Vec<DemoStaff>,
    pub patients: i64,
    /// False when the demo practice was already in the database and was left as it was.
    pub built: bool,
    /// The NHS number of the long record, when one was asked for.
    pub long_record: Option<NhsNumber>,
    /// Patient logins for the patient services at `/my`.
    pub patient_logins: Vec<crate::services::DemoLogin>,
    /// The demo pharmacy's credentials for posting Update Record messages: (ODS, client id,
    /// secret).
    pub pharmacy: (String, String, String),
    /// The demo practice's FHIR integration: its client id and private key (PEM).
    pub integration: Option<(String, String)>,
}

const STAFF: &[(&str, &str, Role)] = &[
    ("dr.okafor", "Dr Chidi Okafor", Role::Clinician),
    ("dr.hughes", "Dr Siân Hughes", Role::Clinician),
    ("nurse.patel", "Priya Patel", Role::Clinician),
    ("j.baker", "Jordan Baker", Role::Receptionist),
    ("m.clarke", "Morgan Clarke", Role::PracticeManager),
    ("s.lee", "Sam Lee", Role::Administrator),
    ("icb.analyst", "Robin Shaw", Role::IcbAnalyst),
];

const WORDS: &[&str] = &[
    "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron", "inlet", "juniper", "kestrel", "lumen",
    "maple", "north", "otter", "pebble", "quartz", "raven", "sorrel", "thistle", "umber", "valley", "willow", "yarrow",
];

/// The demo staff passwords for a seed: the same seed gives the same passwords.
pub fn demo_passwords(seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_cafe);
    STAFF
        .iter()
        .map(|_| {
            let w: Vec<&str> = (0..3).map(|_| *WORDS.choose(&mut rng).unwrap_or(&"river")).collect();
            format!("{}-{}-{}-{}", w[0], w[1], w[2], rng.gen_range(10..100))
        })
        .collect()
}

fn system() -> Actor {
    Actor { kind: ActorKind::System, id: "demo".into(), role: "system".into() }
}

/// Builds the demo practice unless it already exists, and reports how to sign in.
pub async fn build_demo(app: &App, opts: &DemoOptions) -> AppResult<DemoReport> {
    let passwords = demo_passwords(opts.seed);
    let staff: Vec<DemoStaff> = STAFF
        .iter()
        .zip(&passwords)
        .map(|((u, n, r), p)| DemoStaff { username: (*u).into(), name: (*n).into(), role: *r, password: p.clone() })
        .collect();
    let ods = OdsCode::parse(DEMO_ODS).map_err(|e| caldicott_app::AppError::Internal(e.to_string()))?;
    if let Some(practice) = app.practice_by_ods(&ods).await? {
        let patients = app.seeding().patient_count(practice.id).await?;
        let patient_logins = crate::services::demo_logins(opts.seed);
        let pharmacy = crate::services::demo_pharmacy(opts.seed);
        let integration = crate::services::demo_integration(app, &practice, opts.seed).await?;
        return Ok(DemoReport {
            practice,
            staff,
            patients,
            built: false,
            long_record: None,
            patient_logins,
            pharmacy,
            integration,
        });
    }

    let practice = create_practice(
        app,
        NewPractice {
            ods_code: DEMO_ODS.into(),
            name: DEMO_PRACTICE.into(),
            telephone: "01632 960123".into(),
            address: PostalAddress {
                lines: vec!["Riverside Health Centre".into(), "12 Quay Street".into(), TOWN.into()],
                postcode: "RV1 4QS".into(),
            },
            online: OnlineServicesSettings {
                prospective_switch_on: NaiveDate::from_ymd_opt(2023, 10, 31),
                // An ASID of the form the Spine's test environments use, so that GP Connect can
                // be tried against the demo (docs/gp-connect.md).
                gp_connect_asid: caldicott_core::practice::Asid::parse(DEMO_ASID).ok(),
                ..Default::default()
            },
        },
        system(),
    )
    .await?;
    let mut staff_ids = Vec::new();
    for s in &staff {
        let m = create_staff(app, practice.id, &s.username, &s.name, s.role, &s.password, system()).await?;
        staff_ids.push((m.id, m.display_name, m.role));
    }
    let clinicians: Vec<(StaffId, String)> =
        staff_ids.iter().filter(|(_, _, r)| *r == Role::Clinician).map(|(i, n, _)| (*i, n.clone())).collect();

    let mut gen = Generator::new(opts, practice.id, clinicians);
    let mut made = 0u32;
    let mut batch: Vec<PatientImport> = Vec::new();
    let mut long_record = None;
    if let Some(n) = opts.long_record {
        let item = gen.long_record(n);
        long_record = Some(item.patient.nhs_number.clone());
        batch.push(item);
        made += 1;
    }
    while made < opts.patients {
        let household = gen.household((opts.patients - made) as usize);
        made += household.len() as u32;
        batch.extend(household);
        if batch.len() >= 150 {
            flush(app, practice.id, &mut batch).await?;
        }
    }
    flush(app, practice.id, &mut batch).await?;
    let patient_logins = crate::services::seed_patient_services(app, &practice, opts).await?;
    let patients = app.seeding().patient_count(practice.id).await?;
    let pharmacy = crate::services::seed_pharmacy(app, &practice, opts.seed).await?;
    let integration = crate::services::demo_integration(app, &practice, opts.seed).await?;
    Ok(DemoReport { practice, staff, patients, built: true, long_record, patient_logins, pharmacy, integration })
}

async fn flush(app: &App, practice: PracticeId, batch: &mut Vec<PatientImport>) -> AppResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let audits: Vec<AuditRecord> = batch
        .iter()
        .map(|i| {
            AuditRecord::new(
                AuditEventId::from_uuid(caldicott_app::new_id()),
                app.now(),
                system(),
                Some(i.patient.id),
                Action::DemoBuild,
                format!("patient/{}", i.patient.id),
                Outcome::Success,
                format!("entries={} proxies={}", i.entries.len(), i.proxies.len()),
            )
        })
        .collect();
    app.seeding().import_patients(practice, batch, &audits).await?;
    batch.clear();
    Ok(())
}

struct Generator {
    rng: ChaCha8Rng,
    practice: PracticeId,
    as_of: NaiveDate,
    switch_on: NaiveDate,
    clinicians: Vec<(StaffId, String)>,
    next_nhs: u32,
}

fn at(date: NaiveDate, minutes: i64) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc() + Duration::minutes(8 * 60 + minutes)
}

fn coding(concept: &str, term: &str) -> Option<Coding> {
    ConceptId::parse(concept).ok().map(|concept| Coding { concept, term: term.to_owned() })
}

impl Generator {
    fn new(opts: &DemoOptions, practice: PracticeId, clinicians: Vec<(StaffId, String)>) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            practice,
            as_of: opts.as_of,
            switch_on: NaiveDate::from_ymd_opt(2023, 10, 31).unwrap_or(opts.as_of),
            clinicians,
            next_nhs: 100_000 + u32::try_from(opts.seed % 1000).unwrap_or(0) * 10_000,
        }
    }

    fn id(&mut self, when: DateTime<Utc>) -> Uuid {
        let mut bytes = [0u8; 10];
        self.rng.fill(&mut bytes);
        let millis = u64::try_from(when.timestamp_millis()).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.gen_range(0..items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    fn date_between(&mut self, from: NaiveDate, to: NaiveDate) -> NaiveDate {
        let days = (to - from).num_days().max(0);
        from + Duration::days(self.rng.gen_range(0..=days))
    }

    fn nhs_number(&mut self) -> NhsNumber {
        loop {
            self.next_nhs += 1;
            if let Some(n) = NhsNumber::from_first_nine(999_000_000 + self.next_nhs % 1_000_000) {
                return n;
            }
        }
    }

    fn clinician(&mut self) -> Author {
        let i = self.rng.gen_range(0..self.clinicians.len().max(1));
        match self.clinicians.get(i) {
            Some((id, name)) => Author { staff: Some(*id), name: name.clone() },
            None => Author { staff: None, name: "Dr Locum".into() },
        }
    }

    fn address(&mut self) -> PostalAddress {
        let n = self.rng.gen_range(1..180);
        let street = *self.pick(STREETS);
        let district = self.rng.gen_range(1..9);
        let sector = self.rng.gen_range(1..9);
        let unit: String = (0..2).map(|_| char::from(b'A' + self.rng.gen_range(0..26u8))).collect();
        PostalAddress {
            lines: vec![format!("{n} {street}"), TOWN.into()],
            postcode: format!("{POSTCODE_AREA}{district} {sector}{unit}"),
        }
    }

    /// One household: adults sharing a surname and address, and sometimes their children.
    fn household(&mut self, room: usize) -> Vec<PatientImport> {
        let family = *self.pick(FAMILY);
        let address = self.address();
        let roll: f64 = self.rng.gen();
        let (adults, children) = if roll < 0.35 {
            (1, 0)
        } else if roll < 0.65 {
            (2, 0)
        } else {
            (self.rng.gen_range(1..=2), self.rng.gen_range(1..=3))
        };
        let elderly = children == 0 && self.chance(0.3);
        let mut people = Vec::new();
        for i in 0..adults.min(room) {
            let age = if elderly {
                self.rng.gen_range(66..101)
            } else if children > 0 {
                self.rng.gen_range(24..52)
            } else {
                self.rng.gen_range(18..80)
            };
            people.push(self.person(family, &address, age, i == 1));
        }
        for _ in 0..children.min(room.saturating_sub(people.len())) {
            let age = self.rng.gen_range(0..18);
            people.push(self.person(family, &address, age, false));
        }
        self.link_proxies(&mut people);
        people
    }

    fn person(&mut self, family: &str, address: &PostalAddress, age: i64, partner: bool) -> PatientImport {
        let female = if partner { self.chance(0.6) } else { self.chance(0.52) };
        let given = if female { *self.pick(GIVEN_FEMALE) } else { *self.pick(GIVEN_MALE) };
        let dob = self.as_of - Duration::days(age * 365 + self.rng.gen_range(0..365));
        let adult = age >= 16;
        let title = match (adult, female) {
            (false, _) => None,
            (true, true) => Some(if self.chance(0.5) { "Ms" } else { "Mrs" }.to_owned()),
            (true, false) => Some("Mr".to_owned()),
        };
        let transferred = self.chance(0.08);
        let earliest = dob.max(self.as_of - Duration::days(365 * 40));
        let started = if transferred {
            self.date_between((self.as_of - Duration::days(3 * 365)).max(dob), self.as_of - Duration::days(20))
        } else if age < 2 {
            dob + Duration::days(self.rng.gen_range(7..40))
        } else {
            self.date_between(earliest, self.as_of - Duration::days(60))
        };
        let started = started.min(self.as_of);
        let mut registrations = vec![Registration {
            kind: if transferred { RegistrationKind::TransferredIn } else { RegistrationKind::Registered },
            started,
            ended: None,
            previous_practice: transferred.then(|| format!("B8{:04}", self.rng.gen_range(1000..9999))),
        }];
        let mut date_of_death = None;
        if age > 80 && self.chance(0.05) {
            date_of_death = Some(self.date_between(self.as_of - Duration::days(600), self.as_of - Duration::days(1)));
        } else if self.chance(0.02) {
            registrations[0].ended = Some(self.date_between(started.max(self.as_of - Duration::days(700)), self.as_of));
        }
        let mobile = (adult && self.chance(0.85)).then(|| format!("07700 900{:03}", self.rng.gen_range(0..1000)));
        let email = (adult && self.chance(0.6))
            .then(|| format!("{}.{}@example.com", given.to_lowercase(), family.to_lowercase()));
        let preferred = if !adult {
            PreferredContactMethod::Unknown
        } else {
            let r: f64 = self.rng.gen();
            match r {
                r if r < 0.45 && mobile.is_some() => PreferredContactMethod::Sms,
                r if r < 0.60 && email.is_some() => PreferredContactMethod::Email,
                r if r < 0.70 => PreferredContactMethod::Letter,
                r if r < 0.80 => PreferredContactMethod::Telephone,
                _ => PreferredContactMethod::Unknown,
            }
        };
        let created = at(started, 0);
        let patient = Patient {
            id: PatientId::from_uuid(self.id(created)),
            practice: self.practice,
            nhs_number: self.nhs_number(),
            name: PersonName { title, given: given.into(), family: family.into() },
            date_of_birth: dob,
            sex: if female { Sex::Female } else { Sex::Male },
            contact: ContactDetails { email, mobile, address: address.clone() },
            preferred_contact: preferred,
            registrations,
            date_of_death,
        };
        let entries = self.record(&patient, age, transferred);
        let (access, accounts) = self.online(&patient, &entries);
        PatientImport { patient, access, accounts, entries, proxies: vec![] }
    }

    /// Online access settings and accounts for one patient (accounts only for those 16 and over;
    /// younger people are reached through proxies).
    fn online(&mut self, p: &Patient, _entries: &[Entry]) -> (OnlineAccessSettings, Vec<OnlineAccount>) {
        let age = p.age_on(self.as_of);
        let mut access = OnlineAccessSettings::default();
        let mut accounts = Vec::new();
        if age >= 16 && self.chance(0.7) {
            let identity = if self.chance(0.93) { IdentityLevel::P9 } else { IdentityLevel::P5 };
            let created_on =
                self.date_between(p.registrations[0].started.max(self.as_of - Duration::days(5 * 365)), self.as_of);
            let kind = if self.chance(0.85) { AccountKind::NhsLogin } else { AccountKind::LinkedApp };
            accounts.push(OnlineAccount {
                id: AccountId::from_uuid(self.id(at(created_on, 0))),
                holder: p.id,
                kind,
                identity,
                created_at: at(created_on, 3),
            });
            let granted_on = created_on.max(p.registrations[0].started);
            let r: f64 = self.rng.gen();
            if r < 0.12 {
                access.grants.push(LevelGrant {
                    level: AccessLevel::Summary,
                    from: RecordFrom::Beginning,
                    granted_on,
                    granted_by: self.clinician().name,
                });
            } else if r < 0.16 {
                access.grants.push(LevelGrant {
                    level: AccessLevel::Full,
                    from: RecordFrom::Beginning,
                    granted_on,
                    granted_by: self.clinician().name,
                });
            } else if r < 0.19 {
                access.grants.push(LevelGrant {
                    level: AccessLevel::Detailed,
                    from: RecordFrom::Date(granted_on),
                    granted_on,
                    granted_by: self.clinician().name,
                });
            }
        }
        access.opted_out = age >= 16 && self.chance(0.01);
        (access, accounts)
    }

    fn entry(
        &mut self,
        p: &Patient,
        date: NaiveDate,
        minute: i64,
        body: EntryBody,
        code: Option<Coding>,
        author: &Author,
    ) -> Entry {
        let entered = at(date, minute);
        Entry {
            id: EntryId::from_uuid(self.id(entered)),
            patient: p.id,
            event_date: date,
            entered_at: entered,
            author: author.clone(),
            origin: Origin::Native,
            code,
            body,
            visibility: OnlineVisibility::Visible,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        }
    }

    fn hide(&mut self, e: &mut Entry, reason: HiddenReason, note: &str, by: &Author) {
        if let Ok(r) = Redaction::new(reason, note, &by.name, e.entered_at + Duration::minutes(5)) {
            e.visibility = OnlineVisibility::Hidden(r);
        }
    }

    /// A whole record: visits with consultations, codes, medicines, results, letters and more.
    fn record(&mut self, p: &Patient, age: i64, transferred: bool) -> Vec<Entry> {
        let mut out = Vec::new();
        let registered = p.registrations[0].started;
        let end = p.registrations[0].ended.or(p.date_of_death).unwrap_or(self.as_of).min(self.as_of);
        // Long-term conditions grow with age.
        let n_conditions =
            if age < 18 { usize::from(self.chance(0.1)) } else { self.rng.gen_range(0..=(age / 25).min(4) as usize) };
        let mut conditions: Vec<&(&str, &str, &str, &str)> =
            CONDITIONS.choose_multiple(&mut self.rng, n_conditions).collect();
        if age < 18 {
            conditions.retain(|c| c.0 == "195967001");
        }
        let visits = 2 + (age / 4) as usize + self.rng.gen_range(0..10);
        let first = registered.max(self.as_of - Duration::days(365 * 12));
        let mut dates: Vec<NaiveDate> = (0..visits).map(|_| self.date_between(first, end)).collect();
        dates.sort();
        for (i, c) in conditions.iter().enumerate() {
            let author = self.clinician();
            let on = dates.first().copied().unwrap_or(first);
            out.push(self.entry(
                p,
                on,
                10 + i as i64,
                EntryBody::Problem { title: c.1.into(), active: true },
                coding(c.0, c.1),
                &author,
            ));
            let template = self.entry(
                p,
                on,
                20 + i as i64,
                EntryBody::Medication {
                    drug: c.2.into(),
                    dosage: c.3.into(),
                    quantity: "56".into(),
                    course: MedicationCourse::RepeatTemplate,
                },
                None,
                &author,
            );
            let hide_template = c.0 == "35489007" && self.chance(0.15);
            let template_id = template.id;
            let mut template = template;
            if hide_template {
                self.hide(
                    &mut template,
                    HiddenReason::PotentiallyHarmful,
                    "Patient asked for antidepressant to be kept off the app for now",
                    &author,
                );
            }
            out.push(template);
            let mut issue = on;
            for _ in 0..self.rng.gen_range(2..10) {
                issue += Duration::days(56);
                if issue > end {
                    break;
                }
                let by = self.clinician();
                out.push(self.entry(
                    p,
                    issue,
                    30,
                    EntryBody::MedicationIssue {
                        drug: c.2.into(),
                        dosage: c.3.into(),
                        quantity: "56".into(),
                        template: Some(template_id),
                    },
                    None,
                    &by,
                ));
            }
        }
        for (i, date) in dates.iter().enumerate() {
            let author = self.clinician();
            let sensitive = self.chance(0.04);
            let (text, reason) = if sensitive {
                let (t, r) = *self.pick(SENSITIVE);
                (t.to_owned(), HiddenReason::parse(r))
            } else {
                let (a, b) = *self.pick(PRESENTING);
                (format!("{a} {b}"), None)
            };
            let recent = (self.as_of - *date).num_days() < 3;
            let status = if recent && self.chance(0.3) { ConsultationStatus::Draft } else { ConsultationStatus::Final };
            let mut c =
                self.entry(p, *date, 60 + i as i64 % 300, EntryBody::Consultation { text, status }, None, &author);
            if let Some(r) = reason {
                let note = if r == HiddenReason::ThirdParty {
                    "Contains information about another person"
                } else {
                    "To be discussed with the patient first"
                };
                self.hide(&mut c, r, note, &author);
            } else if self.chance(0.004) {
                c.safeguarding = true;
            }
            c.confidential = self.chance(0.02);
            out.push(c);
            if age >= 16 && self.chance(0.5) {
                let (code, term, values) = *self.pick(OBSERVATIONS);
                let value = values.choose(&mut self.rng).map(|v| (*v).to_owned());
                out.push(self.entry(
                    p,
                    *date,
                    61 + i as i64 % 300,
                    EntryBody::Coded { value },
                    coding(code, term),
                    &author,
                ));
            }
            if self.chance(0.15) {
                let (drug, dosage, qty) = *self.pick(ACUTE_MEDS);
                out.push(self.entry(
                    p,
                    *date,
                    62,
                    EntryBody::Medication {
                        drug: drug.into(),
                        dosage: dosage.into(),
                        quantity: qty.into(),
                        course: MedicationCourse::Acute,
                    },
                    None,
                    &author,
                ));
            }
            if age >= 16 && self.chance(0.25) {
                let (code, test, unit, range, value, normal) = *self.pick(RESULTS);
                let result_day = (*date + Duration::days(3)).min(end);
                let fresh = (self.as_of - result_day).num_days() < 14;
                let filing = if fresh && self.chance(0.5) { Filing::Unfiled } else { Filing::Filed };
                let abnormal = self.chance(0.3);
                let v = if abnormal { value } else { normal }.to_owned();
                let lab = Author { staff: None, name: "Riverside Pathology".into() };
                out.push(self.entry(
                    p,
                    result_day,
                    10,
                    EntryBody::TestResult {
                        test: test.into(),
                        value: v,
                        unit: unit.into(),
                        range: range.into(),
                        abnormal,
                        filing,
                    },
                    coding(code, test),
                    &lab,
                ));
            }
            if self.chance(0.12) {
                let title = *self.pick(LETTERS);
                let day = (*date + Duration::days(self.rng.gen_range(5..40))).min(end);
                let fresh = (self.as_of - day).num_days() < 21;
                let (filing, review) = match (fresh, self.rng.gen_range(0..3)) {
                    (true, 0) => (Filing::Unfiled, DocumentReview::Unreviewed),
                    (true, 1) => (Filing::Filed, DocumentReview::Unreviewed),
                    _ => (Filing::Filed, DocumentReview::Reviewed),
                };
                let sender = Author { staff: None, name: "Document workflow".into() };
                out.push(self.entry(
                    p,
                    day,
                    20,
                    EntryBody::Document {
                        title: title.into(),
                        summary: format!("{title}: see scanned document."),
                        filing,
                        review,
                    },
                    None,
                    &sender,
                ));
            }
        }
        if self.chance(0.15) {
            let (code, term, reaction) = *self.pick(ALLERGIES);
            let author = self.clinician();
            let on = dates.first().copied().unwrap_or(first);
            out.push(self.entry(
                p,
                on,
                5,
                EntryBody::Allergy {
                    substance: term.trim_start_matches("Allergy to ").into(),
                    reaction: reaction.into(),
                },
                coding(code, term),
                &author,
            ));
        }
        let jabs = if age < 16 { self.rng.gen_range(1..4) } else { self.rng.gen_range(0..3) };
        for _ in 0..jabs {
            let (code, term) = *self.pick(VACCINES);
            let nurse = self.clinician();
            let on = self.date_between(first, end);
            out.push(self.entry(
                p,
                on,
                15,
                EntryBody::Immunisation { vaccine: term.into() },
                coding(code, term),
                &nurse,
            ));
        }
        // Communications that never go online.
        let admin = Author { staff: None, name: "Reception".into() };
        if self.chance(0.2) {
            let on = self.date_between(first, end);
            out.push(self.entry(
                p,
                on,
                200,
                EntryBody::AdminMessage {
                    subject: "Change of address confirmed".into(),
                    text: "Address updated from registration form.".into(),
                    channel: AdminChannel::Note,
                },
                None,
                &admin,
            ));
        }
        if self.chance(0.15) {
            let on = self.date_between(first, end);
            out.push(self.entry(
                p,
                on,
                210,
                EntryBody::SystemSms {
                    text: "Reminder: you have an appointment at Riverside Medical Practice tomorrow.".into(),
                },
                None,
                &admin,
            ));
        }
        if self.chance(0.1) {
            let on = self.date_between(first, end);
            out.push(self.entry(
                p,
                on,
                220,
                EntryBody::OnlineConsultation {
                    text: "Online request: repeat fit note and advice about back pain.".into(),
                },
                None,
                &admin,
            ));
        }
        if !conditions.is_empty() && self.chance(0.4) {
            let author = self.clinician();
            let due = self.as_of + Duration::days(self.rng.gen_range(10..200));
            let on = self.date_between(first, end);
            out.push(self.entry(p, on, 230, EntryBody::Diary { text: "Annual review due".into(), due }, None, &author));
        }
        // 104, and for some a later 106 after review.
        if age >= 16 && self.chance(0.03) {
            let author = self.clinician();
            let on = self.date_between(self.switch_on - Duration::days(30), end);
            out.push(self.entry(
                p,
                on,
                300,
                EntryBody::Coded { value: None },
                coding(
                    ENHANCED_REVIEW_INDICATED,
                    "Enhanced review indicated before granting access to own health record",
                ),
                &author,
            ));
            if self.chance(0.4) {
                let later =
                    self.date_between(on + Duration::days(1), (on + Duration::days(120)).max(on + Duration::days(1)));
                if later <= self.as_of {
                    out.push(self.entry(
                        p,
                        later,
                        310,
                        EntryBody::Coded { value: None },
                        coding(
                            ENHANCED_REVIEW_NOT_INDICATED,
                            "Enhanced review not indicated before granting access to own health record",
                        ),
                        &author,
                    ));
                }
            }
        }
        if transferred {
            self.transferred_history(p, &mut out);
        }
        out
    }

    /// Entries that came by GP2GP: they keep their original entered date (D3), some carry the old
    /// practice's redaction flag, and some arrived without redaction information (D4).
    fn transferred_history(&mut self, p: &Patient, out: &mut Vec<Entry>) {
        let registered = p.registrations[0].started;
        let from_ods = p.registrations[0].previous_practice.clone().unwrap_or_else(|| "B80000".into());
        let old = Author { staff: None, name: format!("Previous practice ({from_ods})") };
        let start = p.date_of_birth.max(registered - Duration::days(365 * 8));
        for i in 0..self.rng.gen_range(3..15) {
            let date = self.date_between(start, registered - Duration::days(1));
            let (a, b) = *self.pick(PRESENTING);
            let mut e = self.entry(
                p,
                date,
                i,
                EntryBody::Consultation { text: format!("{a} {b}"), status: ConsultationStatus::Final },
                None,
                &old,
            );
            e.origin = Origin::TransferredIn { from_ods: from_ods.clone() };
            let r: f64 = self.rng.gen();
            if r < 0.1 {
                self.hide(&mut e, HiddenReason::ThirdParty, "Redaction flag received by GP2GP", &old);
            } else if r < 0.25 {
                self.hide(&mut e, HiddenReason::PendingReview, "Imported without redaction information", &old);
            }
            out.push(e);
        }
    }

    /// Parents act for their children; some older people have a relative with lasting power of
    /// attorney.
    fn link_proxies(&mut self, people: &mut [PatientImport]) {
        let adults: Vec<usize> = (0..people.len()).filter(|&i| people[i].patient.age_on(self.as_of) >= 18).collect();
        let Some(&first_adult) = adults.first() else { return };
        let mut needs_account = Vec::new();
        for i in 0..people.len() {
            let p = people[i].patient.clone();
            let age = p.age_on(self.as_of);
            let registered = p.registrations[0].started;
            let subjects: Vec<usize> = if age < 16 {
                adults.iter().copied().filter(|_| self.chance(0.8)).collect()
            } else if age >= 75 && adults.len() > 1 && self.chance(0.15) {
                adults.iter().copied().filter(|&a| a != i).take(1).collect()
            } else {
                vec![]
            };
            for proxy in subjects {
                let review_age = birthday(p.date_of_birth, 11);
                // Some children's links were re-granted after their 11th-birthday review.
                let regranted = (11..16).contains(&age) && self.chance(0.5);
                let granted_on = if regranted {
                    self.date_between(review_age, self.as_of)
                } else {
                    self.date_between(registered, registered + Duration::days(400)).min(self.as_of)
                };
                let (basis, relationship, record) = if age >= 16 {
                    (ProxyBasis::LastingPowerOfAttorney, "Relative with lasting power of attorney", AccessLevel::Full)
                } else if regranted {
                    (ProxyBasis::Consent, "Parent", AccessLevel::Summary)
                } else {
                    (ProxyBasis::ChildNotCompetent, "Parent", AccessLevel::Full)
                };
                let decided = self.clinician().name;
                let link = ProxyLink {
                    id: ProxyLinkId::from_uuid(self.id(at(granted_on, 0))),
                    patient: p.id,
                    proxy: people[proxy].patient.id,
                    relationship: relationship.into(),
                    basis,
                    scope: ProxyScope {
                        appointments: true,
                        prescriptions: true,
                        demographics: true,
                        record,
                        record_from: RecordFrom::Date(granted_on),
                    },
                    granted_on,
                    decided_by: decided,
                    ends_on: None,
                    status: ProxyStatus::Active,
                };
                people[i].proxies.push(link);
                needs_account.push(proxy);
            }
        }
        // R14: every proxy has an online account of their own.
        needs_account.push(first_adult);
        needs_account.sort_unstable();
        needs_account.dedup();
        for i in needs_account {
            if people[i].accounts.is_empty() {
                let holder = people[i].patient.id;
                let on = self.date_between(self.as_of - Duration::days(900), self.as_of);
                people[i].accounts.push(OnlineAccount {
                    id: AccountId::from_uuid(self.id(at(on, 0))),
                    holder,
                    kind: AccountKind::NhsLogin,
                    identity: IdentityLevel::P9,
                    created_at: at(on, 1),
                });
            }
        }
    }

    /// One elderly patient with a very long record (benchmarks and paging).
    fn long_record(&mut self, n: u32) -> PatientImport {
        let address = self.address();
        let mut item = self.person("Pendleton", &address, 84, false);
        item.patient.name = PersonName { title: Some("Mr".into()), given: "Arthur".into(), family: "Pendleton".into() };
        item.patient.registrations[0].kind = RegistrationKind::Registered;
        item.patient.registrations[0].started = self.as_of - Duration::days(365 * 30);
        item.patient.registrations[0].ended = None;
        item.patient.registrations[0].previous_practice = None;
        item.patient.date_of_death = None;
        let p = item.patient.clone();
        let mut entries = Vec::with_capacity(n as usize);
        let span = (self.as_of - (self.as_of - Duration::days(365 * 12))).num_days().max(1);
        for i in 0..n.saturating_sub(2) {
            let day = self.as_of - Duration::days(span - i64::from(i) * span / i64::from(n.max(1)));
            let author = self.clinician();
            let body = match i % 5 {
                0 | 1 => {
                    let (a, b) = *self.pick(PRESENTING);
                    EntryBody::Consultation { text: format!("{a} {b}"), status: ConsultationStatus::Final }
                }
                2 => EntryBody::MedicationIssue {
                    drug: "Amlodipine 5mg tablets".into(),
                    dosage: "One tablet once a day".into(),
                    quantity: "56".into(),
                    template: None,
                },
                3 => EntryBody::Coded { value: Some("134/84 mmHg".into()) },
                _ => EntryBody::TestResult {
                    test: "eGFR".into(),
                    value: "58".into(),
                    unit: "mL/min/1.73m2".into(),
                    range: ">90".into(),
                    abnormal: true,
                    filing: Filing::Filed,
                },
            };
            let code = if i % 5 == 3 { coding("75367002", "Blood pressure") } else { None };
            let mut e = self.entry(&p, day, i64::from(i % 600), body, code, &author);
            if i % 25 == 7 {
                self.hide(&mut e, HiddenReason::ThirdParty, "Mentions a family member", &author);
            }
            entries.push(e);
        }
        // The newest two wait in the filing queue: a result and a letter from last week.
        let lab = Author { staff: None, name: "Riverside Pathology".into() };
        let week_ago = self.as_of - Duration::days(7);
        entries.push(self.entry(
            &p,
            week_ago,
            30,
            EntryBody::TestResult {
                test: "Serum potassium".into(),
                value: "6.1".into(),
                unit: "mmol/L".into(),
                range: "3.5-5.3".into(),
                abnormal: true,
                filing: Filing::Unfiled,
            },
            coding("1000651000000109", "Serum potassium level"),
            &lab,
        ));
        let post = Author { staff: None, name: "Document workflow".into() };
        entries.push(self.entry(
            &p,
            week_ago,
            40,
            EntryBody::Document {
                title: "Outpatient letter, cardiology".into(),
                summary: "Outpatient letter, cardiology: see scanned document.".into(),
                filing: Filing::Filed,
                review: DocumentReview::Unreviewed,
            },
            None,
            &post,
        ));
        item.entries = entries;
        if item.accounts.is_empty() {
            item.accounts.push(OnlineAccount {
                id: AccountId::from_uuid(self.id(at(self.as_of, 0))),
                holder: p.id,
                kind: AccountKind::NhsLogin,
                identity: IdentityLevel::P9,
                created_at: at(self.as_of - Duration::days(400), 0),
            });
        }
        item.access = OnlineAccessSettings {
            grants: vec![LevelGrant {
                level: AccessLevel::Full,
                from: RecordFrom::Beginning,
                granted_on: self.as_of - Duration::days(400),
                granted_by: "Dr Chidi Okafor".into(),
            }],
            opted_out: false,
            own_level: None,
            transfer_review_pending: None,
        };
        item
    }
}
