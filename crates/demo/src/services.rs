//! The demo practice's patient services: a family who use them (a mother with a local login
//! who acts for her son, whose proxy access is reviewed at 11 in a few weeks), a patient whose
//! identity was not fully checked (P5: appointments, no record), clinics of bookable slots for
//! the next two weeks, repeat medicines and a nominated pharmacy.

use crate::practice::DemoOptions;
use caldicott_app::patient_services::SignUp;
use caldicott_app::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::*;
use caldicott_core::audit::Action;
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::{PostalAddress, Practice};
use caldicott_core::staff::Role;
use caldicott_core::NhsNumber;
use chrono::{Datelike, Duration, NaiveDate, Utc};

/// A patient login the demo prints.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub username: String,
    pub password: String,
    pub about: String,
    pub nhs_number: String,
    pub birth_date: NaiveDate,
}

/// The demo's patient logins for a seed: the same seed gives the same passwords.
pub fn demo_logins(seed: u64) -> Vec<DemoLogin> {
    let passwords = crate::practice::demo_passwords(seed ^ 0x7061_7469);
    [
        ("hannah.rivers", "P9: her record, appointments and repeats; acts for her son Leo", HANNAH),
        ("omar.haddad", "P5: appointments and messages, no record", OMAR),
    ]
    .into_iter()
    .zip(passwords)
    .map(|((u, about, (first_nine, born)), password)| DemoLogin {
        username: u.into(),
        password,
        about: about.into(),
        nhs_number: nhs(first_nine).map(|n| n.as_str().to_owned()).unwrap_or_default(),
        birth_date: NaiveDate::from_ymd_opt(born.0, born.1, born.2).unwrap_or_default(),
    })
    .collect()
}

/// The demo patients with logins: the first nine digits their NHS number starts from, and their
/// date of birth.
const HANNAH: (u32, (i32, u32, u32)) = (999_099_600, (1987, 3, 14));
const OMAR: (u32, (i32, u32, u32)) = (999_099_700, (1979, 9, 2));
/// Held back for enhanced review (an active 104), whatever the demo's date and seed.
const GRACE: (u32, (i32, u32, u32)) = (999_099_800, (1992, 6, 23));

fn nhs(first_nine: u32) -> AppResult<NhsNumber> {
    (first_nine..first_nine + 50)
        .find_map(NhsNumber::from_first_nine)
        .ok_or_else(|| AppError::Internal("no valid demo NHS number".into()))
}

fn person(practice: &Practice, nhs: NhsNumber, given: &str, family: &str, dob: NaiveDate, sex: Sex) -> Patient {
    Patient {
        id: PatientId::from_uuid(new_id()),
        practice: practice.id,
        nhs_number: nhs,
        name: PersonName { title: None, given: given.into(), family: family.into() },
        date_of_birth: dob,
        sex,
        contact: ContactDetails {
            email: Some(format!("{}.{}@example.com", given.to_lowercase(), family.to_lowercase())),
            mobile: Some("07700 900777".into()),
            address: PostalAddress { lines: vec!["7 Mill Lane".into(), "Riverton".into()], postcode: "RV2 7ML".into() },
        },
        preferred_contact: PreferredContactMethod::Email,
        registrations: vec![Registration::since(dob.max(NaiveDate::from_ymd_opt(2015, 4, 1).unwrap_or(dob)))],
        date_of_death: None,
    }
}

fn entry(p: &Patient, days_ago: i64, author: &StaffPrincipal, body: EntryBody) -> Entry {
    let at = Utc::now() - Duration::days(days_ago);
    Entry {
        id: EntryId::from_uuid(new_id()),
        patient: p.id,
        event_date: at.date_naive(),
        entered_at: at,
        author: Author { staff: Some(author.staff), name: author.name.clone() },
        origin: Origin::Native,
        code: None,
        body,
        visibility: OnlineVisibility::Visible,
        nopat: false,
        safeguarding: false,
        confidential: false,
        superseded: None,
    }
}

fn repeat(drug: &str, dosage: &str, quantity: &str) -> EntryBody {
    EntryBody::Medication {
        drug: drug.into(),
        dosage: dosage.into(),
        quantity: quantity.into(),
        course: MedicationCourse::RepeatTemplate,
    }
}

fn coded_as(concept: &str, term: &str, e: Entry) -> AppResult<Entry> {
    let concept = caldicott_core::snomed::ConceptId::parse(concept).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(Entry { code: Some(caldicott_core::snomed::Coding { concept, term: term.into() }), ..e })
}

/// Hannah's diabetes and high blood pressure, followed for two and a half years: the problems,
/// metformin, and the readings her charts show (HbA1c, blood pressure, eGFR, cholesterol,
/// weight, BMI). Her latest eGFR is held back online until it has been discussed with her.
fn long_term_conditions(hannah: &Patient, doctor: &StaffPrincipal) -> AppResult<Vec<Entry>> {
    let from_lab = |e: Entry| Entry { author: Author { staff: None, name: "Riverside Pathology".into() }, ..e };
    let result = |days: i64, code: &str, test: &str, value: &str, unit: &str, range: &str, abnormal: bool| {
        let body = EntryBody::TestResult {
            test: test.into(),
            value: value.into(),
            unit: unit.into(),
            range: range.into(),
            abnormal,
            filing: Filing::Filed,
        };
        coded_as(code, test, from_lab(entry(hannah, days, doctor, body)))
    };
    let measured = |days: i64, code: &str, term: &str, value: &str| {
        coded_as(code, term, entry(hannah, days, doctor, EntryBody::Coded { value: Some(value.into()) }))
    };
    let mut out = vec![
        coded_as(
            "44054006",
            "Type 2 diabetes mellitus",
            entry(hannah, 920, doctor, EntryBody::Problem { title: "Type 2 diabetes mellitus".into(), active: true }),
        )?,
        coded_as(
            "59621000",
            "Essential hypertension",
            entry(hannah, 930, doctor, EntryBody::Problem { title: "Essential hypertension".into(), active: true }),
        )?,
        entry(hannah, 910, doctor, repeat("Metformin 500mg tablets", "One twice a day with food", "112 tablets")),
    ];
    for (days, value) in [(915, "64"), (735, "59"), (555, "56"), (375, "53"), (195, "50"), (25, "47")] {
        out.push(result(days, "1019431000000105", "HbA1c level", value, "mmol/mol", "20-41", true)?);
    }
    let pressures = ["152/94", "148/92", "144/90", "141/88", "138/86", "136/84", "134/82", "128/82"];
    for (i, bp) in pressures.iter().enumerate() {
        let days = 940 - 120 * i as i64;
        out.push(measured(days, "75367002", "Blood pressure", &format!("{bp} mmHg"))?);
    }
    for (days, weight, bmi) in [
        (915, "92.4", "32.7"),
        (735, "90.1", "31.9"),
        (555, "88.7", "31.4"),
        (375, "87.9", "31.1"),
        (195, "86.2", "30.5"),
    ] {
        out.push(measured(days, "27113001", "Body weight", &format!("{weight} kg"))?);
        out.push(measured(days, "60621009", "Body mass index", &format!("{bmi} kg/m2"))?);
    }
    for (days, value, abnormal) in [(915, "5.8", true), (555, "4.9", false), (195, "4.4", false)] {
        out.push(result(days, "1005671000000105", "Serum cholesterol level", value, "mmol/L", "<5.0", abnormal)?);
    }
    for (days, value) in [(915, "86"), (555, "83"), (195, "79")] {
        out.push(result(days, "1011481000000105", "eGFR", value, "mL/min/1.73m2", ">60", false)?);
    }
    let mut held = result(25, "1011481000000105", "eGFR", "52", "mL/min/1.73m2", ">60", true)?;
    held.visibility = OnlineVisibility::Hidden(
        Redaction::new(
            HiddenReason::PotentiallyHarmful,
            "Lower than before: held back online until the GP has discussed it with Hannah at her diabetes review.",
            &doctor.name,
            held.entered_at,
        )
        .map_err(|e| AppError::Internal(e.to_string()))?,
    );
    out.push(held);
    Ok(out)
}

/// Hannah's care plan for her diabetes and blood pressure, written by her GP, with one action
/// held back online until it is discussed; then what Hannah added herself online (a goal, a
/// note, a home blood pressure reading and her weight), each a task for the care team.
async fn seed_care_plan(app: &App, hannah: &Patient, doctor: &StaffPrincipal, session: &str) -> AppResult<()> {
    use caldicott_app::care_plans::NewCarePlan;
    use caldicott_app::my_care_plans::PlanAddition;
    let review = (app.today() + Duration::days(120)).to_string();
    let plan = NewCarePlan {
        condition: "Type 2 diabetes and high blood pressure".into(),
        code: "44054006".into(),
        review,
        goals: "HbA1c below 48 mmol/mol\nBlood pressure below 140/90 at the surgery (135/85 at home)\nLose 5 kg over the year".into(),
        actions: "Practice nurse: diabetes review every 6 months, with feet and kidney checks\nHannah: take metformin with food twice a day, and amlodipine each morning\nGP: discuss the latest kidney result and a referral to the kidney clinic at the next review\nHannah: check blood pressure at home twice a week and add the readings here".into(),
        preferences: "Appointments after 4pm, because of work\nContact by email first".into(),
        decisions: String::new(),
        contacts: "If blood pressure at home is over 180/120, or with chest pain or a severe headache: call 999\nFor advice about diabetes between reviews: the practice nurse, on the practice number".into(),
    };
    let made = app.record_care_plan(doctor, hannah.nhs_number.as_str(), &plan).await?;
    let plan_id = made.map_err(|p| AppError::Internal(format!("demo care plan: {p:?}")))?;
    // The referral is for the GP to raise with her first.
    let plans = app.staff_care_plans(doctor, hannah.nhs_number.as_str()).await?;
    let held = plans
        .plans
        .iter()
        .flat_map(|p| p.parts.iter())
        .find(|(e, _)| matches!(&e.body, EntryBody::CarePlanPart { text, .. } if text.contains("kidney clinic")))
        .map(|(e, _)| e.id)
        .ok_or_else(|| AppError::Internal("demo care plan: the referral part".into()))?;
    let hide = caldicott_app::redaction::VisibilityChange::Hide {
        reason: HiddenReason::PotentiallyHarmful,
        note: "The GP will discuss the kidney result and the referral with Hannah at her review first.".into(),
    };
    app.change_visibility(doctor, hannah.nhs_number.as_str(), held, &hide, false).await?;
    let me = app.patient_signed_in(session).await?.who;
    for (kind, text, measure, value) in [
        ("goal", "Walk to work three days a week", "", ""),
        ("note", "My home monitor reads a little higher in the mornings.", "", ""),
        ("reading", "", "blood-pressure", "136/86"),
        ("reading", "", "weight", "85.6"),
    ] {
        let a = PlanAddition { kind: kind.into(), text: text.into(), measure: measure.into(), value: value.into() };
        if let Err(p) = app.add_to_my_care_plan(&me, None, plan_id, &a).await? {
            return Err(AppError::Internal(format!("demo care plan addition: {p:?}")));
        }
    }
    Ok(())
}

/// The SDS user id the demo records for its first GP (docs/gp-connect.md).
pub const DEMO_SDS_USER_ID: &str = "555021935107";

/// Adds the patient-services part of the demo, and returns the patient logins to print.
pub async fn seed_patient_services(app: &App, practice: &Practice, opts: &DemoOptions) -> AppResult<Vec<DemoLogin>> {
    let staff = app.seeding().staff_members(practice.id).await?;
    let as_principal = |role: Role| {
        staff.iter().find(|s| s.role == role).map(|s| StaffPrincipal {
            practice: practice.id,
            staff: s.id,
            name: s.display_name.clone(),
            role: s.role,
        })
    };
    let (Some(doctor), Some(reception)) = (as_principal(Role::Clinician), as_principal(Role::Receptionist)) else {
        return Err(AppError::Internal("the demo needs a clinician and a receptionist".into()));
    };
    // The first GP's SDS user id, as on a smartcard: GP Connect's practitioner search finds them.
    if let Some(admin) = as_principal(Role::Administrator) {
        app.set_staff_sds_user_id(&admin, doctor.staff, DEMO_SDS_USER_ID).await?;
    }
    let today = app.now().date_naive();
    // Leo turns 11 in three weeks: his mother's proxy access shows the review notice.
    let leo_birth = (today + Duration::days(21)).with_year(today.year() - 11).unwrap_or(today);
    let born = |b: (i32, u32, u32)| NaiveDate::from_ymd_opt(b.0, b.1, b.2).unwrap_or(today);
    let hannah = person(practice, nhs(HANNAH.0)?, "Hannah", "Rivers", born(HANNAH.1), Sex::Female);
    let leo = person(practice, nhs(999_099_650)?, "Leo", "Rivers", leo_birth, Sex::Male);
    let omar = person(practice, nhs(OMAR.0)?, "Omar", "Haddad", born(OMAR.1), Sex::Male);
    let grace = person(practice, nhs(GRACE.0)?, "Grace", "Okonkwo", born(GRACE.1), Sex::Female);
    for p in [&hannah, &leo, &omar, &grace] {
        let audit = app.seeding().audit(
            &reception,
            Some(p.id),
            Action::PatientCreate,
            format!("patient/{}", p.id),
            "demo patient services",
        );
        app.seeding().create_patient(practice.id, p, &audit).await?;
    }
    let entries = vec![
        entry(
            &hannah,
            40,
            &doctor,
            EntryBody::Consultation {
                text: "Reviewed blood pressure: 128/82. Continue amlodipine. Recheck in 6 months.".into(),
                status: ConsultationStatus::Final,
            },
        ),
        entry(&hannah, 200, &doctor, repeat("Amlodipine 5mg tablets", "One each morning", "28 tablets")),
        entry(&hannah, 200, &doctor, repeat("Cetirizine 10mg tablets", "One daily when needed", "30 tablets")),
        entry(&hannah, 300, &doctor, EntryBody::Allergy { substance: "Penicillin".into(), reaction: "Rash".into() }),
        entry(&leo, 30, &doctor, EntryBody::Immunisation { vaccine: "Influenza (nasal spray)".into() }),
        entry(&leo, 90, &doctor, repeat("Salbutamol 100micrograms inhaler", "Two puffs when needed", "1 inhaler")),
        entry(
            &leo,
            90,
            &doctor,
            EntryBody::Consultation {
                text: "Wheeze after colds. Inhaler technique checked with mum.".into(),
                status: ConsultationStatus::Final,
            },
        ),
        entry(
            &omar,
            20,
            &doctor,
            EntryBody::Consultation {
                text: "Back pain after lifting. Advice and simple analgesia.".into(),
                status: ConsultationStatus::Final,
            },
        ),
        entry(
            &grace,
            60,
            &doctor,
            EntryBody::Consultation {
                text: "Low mood and poor sleep. Partner came in for part of the consultation and answered for her. \
                       Seen alone afterwards: said she feels watched at home and that he checks her phone. \
                       Safety plan discussed; domestic abuse service details given."
                    .into(),
                status: ConsultationStatus::Final,
            },
        ),
        Entry {
            code: Some(caldicott_core::snomed::Coding {
                concept: caldicott_core::snomed::ConceptId::parse(caldicott_core::snomed::ENHANCED_REVIEW_INDICATED)
                    .map_err(|e| AppError::Internal(e.to_string()))?,
                term: "Enhanced review indicated before granting access to own health record".into(),
            }),
            ..entry(&grace, 10, &doctor, EntryBody::Coded { value: None })
        },
    ];
    let mut entries = entries;
    entries.extend(long_term_conditions(&hannah, &doctor)?);
    let audit = app.seeding().audit(
        &doctor,
        None,
        Action::EntryCreate,
        "demo/patient-services",
        format!("entries={}", entries.len()),
    );
    app.seeding().add_entries(practice.id, &entries, &audit).await?;
    let link = ProxyLink {
        id: ProxyLinkId::from_uuid(new_id()),
        patient: leo.id,
        proxy: hannah.id,
        relationship: "Mother".into(),
        basis: ProxyBasis::ChildNotCompetent,
        scope: ProxyScope {
            appointments: true,
            prescriptions: true,
            demographics: true,
            record: AccessLevel::Summary,
            record_from: RecordFrom::Beginning,
        },
        granted_on: today - Duration::days(400),
        decided_by: doctor.name.clone(),
        ends_on: None,
        status: ProxyStatus::Active,
    };
    let audit =
        app.seeding().audit(&doctor, Some(leo.id), Action::ProxyLinkCreate, format!("proxy/{}", link.id), "demo");
    app.seeding().create_proxy_link(practice.id, &link, &audit).await?;
    app.nominate_pharmacy(&reception, hannah.nhs_number.as_str(), "FQ560", "Riverside Pharmacy").await?;

    let logins = demo_logins(opts.seed);
    let mut sessions = Vec::new();
    for ((p, identity), login) in [(&hannah, "P9"), (&omar, "P5")].into_iter().zip(&logins) {
        let letter = app.issue_linkage(&reception, p.nhs_number.as_str(), identity).await?;
        let (username, password) = (login.username.clone(), login.password.clone());
        let made = app
            .patient_sign_up(&SignUp {
                ods_code: letter.ods_code,
                account_id: letter.account_id,
                linkage_key: letter.linkage_key,
                family: p.name.family.clone(),
                birth_day: p.date_of_birth.day().to_string(),
                birth_month: p.date_of_birth.month().to_string(),
                birth_year: p.date_of_birth.year().to_string(),
                username,
                password,
            })
            .await?;
        match made {
            Ok(cookie) => sessions.push(cookie),
            Err(problems) => return Err(AppError::Internal(format!("demo sign-up: {problems:?}"))),
        }
    }
    seed_care_plan(app, &hannah, &doctor, &sessions[0]).await?;

    seed_sar(app, practice, &omar, &doctor, &reception).await?;
    seed_clinic_letter(app, practice, &hannah, &doctor, &reception).await?;
    seed_integration(app, practice, opts.seed).await?;

    // Four weeks of past clinics with their bookings and attendance, and two weeks ahead.
    let named = [hannah.id, leo.id, omar.id, grace.id];
    let patients: Vec<PatientId> =
        app.seeding().registered_patients(practice.id).await?.into_iter().filter(|p| !named.contains(p)).collect();
    crate::appointments::seed_appointments(app, practice.id, &staff, &reception, &patients, opts.seed).await?;
    Ok(logins)
}

/// The demo pharmacy that sends Update Record messages, and its credentials for a seed:
/// (ODS code, client id, secret).
pub fn demo_pharmacy(seed: u64) -> (String, String, String) {
    let secret = crate::practice::demo_passwords(seed ^ 0x7068_6172)[0].clone();
    ("FA123".into(), "upd_demo_fa123".into(), format!("pharmacy-{secret}"))
}

/// Registers the demo pharmacy with its known credentials, and receives one blood pressure
/// check summary for Hannah Rivers, waiting for review.
pub async fn seed_pharmacy(app: &App, practice: &Practice, seed: u64) -> AppResult<(String, String, String)> {
    let (ods, client_id, secret) = demo_pharmacy(seed);
    let sender = caldicott_store::inbound::Sender {
        id: caldicott_app::new_id(),
        ods_code: ods.clone(),
        name: "Quayside Pharmacy".into(),
        client_id: client_id.clone(),
        secret_hash: app.seeding().credential_hash(&secret),
        active: true,
        created_at: app.now(),
    };
    let audit = caldicott_core::audit::AuditRecord::new(
        caldicott_core::ids::AuditEventId::from_uuid(caldicott_app::new_id()),
        app.now(),
        caldicott_core::audit::Actor {
            kind: caldicott_core::audit::ActorKind::System,
            id: "demo".into(),
            role: "system".into(),
        },
        None,
        Action::SenderRegister,
        format!("sender/{}", sender.id),
        caldicott_core::audit::Outcome::Success,
        format!("ods={ods}"),
    );
    app.seeding().create_sender(practice.id, &sender, &audit).await?;
    let check = include_str!("../../../docs/examples/update-record/blood-pressure-check.json");
    app.receive_update_http(&client_id, &secret, check.as_bytes()).await?;
    Ok((ods, client_id, secret))
}

/// A subject access request from Omar, waiting for review: his record holds a letter about his
/// brother (hidden online as third-party information), and two members of staff talked about
/// him in a message the clinician then deleted. The export shows both waiting for a decision.
async fn seed_sar(
    app: &App,
    practice: &Practice,
    omar: &Patient,
    doctor: &StaffPrincipal,
    reception: &StaffPrincipal,
) -> AppResult<()> {
    let mut letter = entry(
        omar,
        60,
        doctor,
        EntryBody::Document {
            title: "Letter from the community mental health team".into(),
            summary: "About Mr Haddad's brother, who lives with him and is under the team's care.".into(),
            filing: Filing::Filed,
            review: DocumentReview::Reviewed,
        },
    );
    letter.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::ThirdParty, "Information about his brother", &doctor.name, app.now())
            .map_err(|e| AppError::Internal(e.to_string()))?,
    );
    let audit = app.seeding().audit(doctor, Some(omar.id), Action::EntryCreate, "demo/sar", "entries=1");
    app.seeding().add_entries(practice.id, &[letter], &audit).await?;
    let compose = caldicott_app::chat::Compose {
        to: format!("staff:{}", doctor.staff),
        body: format!(
            "Omar Haddad ({}) rang about his back pain again. His brother answered first and asked what it was about.",
            omar.nhs_number
        ),
        patient: omar.nhs_number.as_str().to_owned(),
        link: Some(true),
        on_screen: String::new(),
    };
    if let Ok(caldicott_app::chat::Sent::Sent(m)) = app.send_staff_message(reception, &compose).await? {
        app.delete_staff_message(doctor, m.id).await?;
    }
    let received = app.today() - Duration::days(10);
    let request = caldicott_app::sar::NewSar {
        nhs_number: omar.nhs_number.as_str().to_owned(),
        requester: "Omar Haddad".into(),
        relationship: String::new(),
        day: received.day().to_string(),
        month: received.month().to_string(),
        year: received.year().to_string(),
        waiting_for: String::new(),
        notes: "Asked at the front desk for a copy of everything we hold.".into(),
    };
    if let Err(problems) = app.log_sar(reception, &request).await? {
        return Err(AppError::Internal(format!("demo SAR: {problems:?}")));
    }
    Ok(())
}

/// Hannah's letter from the hypertension clinic, as a PDF, scanned in and filed visible: her
/// record, her app (DocumentReference and Binary) and the SAR export all carry it.
async fn seed_clinic_letter(
    app: &App,
    practice: &Practice,
    hannah: &Patient,
    doctor: &StaffPrincipal,
    reception: &StaffPrincipal,
) -> AppResult<()> {
    use caldicott_pdf::{Block, PdfDocument};
    let on = app.now().date_naive() - Duration::days(35);
    let letter = PdfDocument {
        title: "Hypertension clinic letter".into(),
        author: "Riverside Hospital cardiology".into(),
        letterhead: vec![
            "Riverside Hospital".into(),
            "Cardiology outpatients".into(),
            on.format("%-d %B %Y").to_string(),
        ],
        running_header: "Hypertension clinic letter".into(),
        blocks: vec![
            Block::Heading(1, "Hypertension clinic".into()),
            Block::Para(format!("Dear {},", practice.name)),
            Block::Para(
                "Re: Hannah Rivers. I saw Mrs Rivers in clinic today. Her home readings average 131/84. \
                 Please continue amlodipine 5mg each morning and recheck her blood pressure in six months."
                    .into(),
            ),
            Block::Para("Yours sincerely,\nDr A. Mensah, consultant cardiologist".into()),
        ],
    };
    let pdf = caldicott_pdf::render(&letter, |_, _| {}).map_err(|e| AppError::Internal(e.to_string()))?;
    let doc = caldicott_app::documents::NewDocument {
        title: "Letter from the hypertension clinic".into(),
        summary: "Home readings average 131/84; continue amlodipine, recheck in 6 months".into(),
        day: on.day().to_string(),
        month: on.month().to_string(),
        year: on.year().to_string(),
        filename: "hypertension-clinic-letter.pdf".into(),
        content: pdf,
    };
    let added = app.add_document(reception, hannah.nhs_number.as_str(), doc).await?;
    let id = added.map_err(|p| AppError::Internal(format!("demo letter: {p:?}")))?;
    app.file(doctor, id, &caldicott_app::redaction::VisibilityChange::Show { note: String::new() }, false).await
}

/// The demo practice's reporting system: an integration with a key made from the seed (the
/// same seed, the same key), so the demo can print how to get a `system/` token.
pub const DEMO_INTEGRATION: &str = "Riverside reporting (demo)";

/// The demo integration's private key (PKCS#8 PEM) and public key (SPKI PEM) for a seed.
pub fn demo_integration_key(seed: u64) -> AppResult<(String, String)> {
    use p384::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x696e_7465);
    let secret = p384::SecretKey::random(&mut rng);
    let private = secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| AppError::Internal(e.to_string()))?;
    let public =
        secret.public_key().to_public_key_pem(LineEnding::LF).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((private.to_string(), public))
}

async fn seed_integration(app: &App, practice: &Practice, seed: u64) -> AppResult<()> {
    let staff = app.seeding().staff_members(practice.id).await?;
    let admin = staff
        .iter()
        .find(|s| s.role == Role::Administrator)
        .map(|s| StaffPrincipal { practice: practice.id, staff: s.id, name: s.display_name.clone(), role: s.role })
        .ok_or_else(|| AppError::Internal("the demo needs an administrator".into()))?;
    let (_, public) = demo_integration_key(seed)?;
    let new = caldicott_app::fhir_api::NewIntegration {
        name: DEMO_INTEGRATION.into(),
        public_key: public,
        scopes: String::new(),
    };
    app.register_integration(&admin, &new).await?;
    Ok(())
}

/// The demo integration's client id, and its private key, once the demo practice exists.
pub async fn demo_integration(app: &App, practice: &Practice, seed: u64) -> AppResult<Option<(String, String)>> {
    let Some(i) = app.seeding().integrations(practice.id).await?.into_iter().find(|i| i.name == DEMO_INTEGRATION)
    else {
        return Ok(None);
    };
    Ok(Some((i.client_id, demo_integration_key(seed)?.0)))
}
