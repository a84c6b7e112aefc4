//! Table tests name the rule they pin (`// R4`); the proptest invariants at the end are T1, T2 and
//! the monotonicity of access levels.

use super::*;
use crate::access::{LevelGrant, OwnLevel, ProxyBasis, ProxyScope};
use crate::entry::*;
use crate::ids::*;
use crate::nhs_number::NhsNumber;
use crate::patient::*;
use crate::practice::{OnlineServicesSettings, ProxyReviewAge};
use crate::snomed::{enhanced_review, Coding, ConceptId, ENHANCED_REVIEW_INDICATED, ENHANCED_REVIEW_NOT_INDICATED};
use chrono::{Duration, TimeZone};
use proptest::prelude::*;
use uuid::Uuid;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}
fn at(y: i32, m: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, day, 10, 0, 0).unwrap()
}
fn now() -> DateTime<Utc> {
    at(2026, 11, 22)
}

fn practice() -> OnlineServicesSettings {
    OnlineServicesSettings { prospective_switch_on: Some(d(2023, 10, 31)), ..Default::default() }
}

fn patient(dob: NaiveDate, registered: NaiveDate) -> Patient {
    Patient {
        id: PatientId::from_uuid(Uuid::from_u128(1)),
        practice: PracticeId::from_uuid(Uuid::from_u128(2)),
        nhs_number: NhsNumber::parse("9434765919").unwrap(),
        name: PersonName { title: None, given: "Ada".into(), family: "Lovelace".into() },
        date_of_birth: dob,
        sex: Sex::Female,
        contact: ContactDetails::default(),
        preferred_contact: PreferredContactMethod::Unknown,
        registrations: vec![Registration::since(registered)],
        date_of_death: None,
    }
}

fn adult() -> Patient {
    patient(d(1980, 5, 1), d(2000, 1, 1))
}

fn entry(n: u128, body: EntryBody, entered: DateTime<Utc>) -> Entry {
    Entry {
        id: EntryId::from_uuid(Uuid::from_u128(n)),
        patient: PatientId::from_uuid(Uuid::from_u128(1)),
        event_date: entered.date_naive(),
        entered_at: entered,
        author: Author { staff: None, name: "Dr Who".into() },
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

fn consultation(n: u128, entered: DateTime<Utc>) -> Entry {
    entry(n, EntryBody::Consultation { text: "Seen today.".into(), status: ConsultationStatus::Final }, entered)
}

fn coded(n: u128, concept: &str, entered: DateTime<Utc>) -> Entry {
    let mut e = entry(n, EntryBody::Coded { value: None }, entered);
    e.code = Some(Coding { concept: ConceptId::parse(concept).unwrap(), term: "term".into() });
    e
}

fn facts<'a>(
    p: &'a OnlineServicesSettings,
    pat: &'a Patient,
    acc: &'a OnlineAccessSettings,
    entries: &[Entry],
) -> RecordFacts<'a> {
    let er = enhanced_review(
        entries.iter().filter_map(|e| e.code.as_ref().map(|c| (c.concept.as_str(), e.entered_at))).collect::<Vec<_>>(),
    );
    RecordFacts { practice: p, patient: pat, access: acc, enhanced_review: er, transferred_in: None }
}

const P9: Viewer<'static> = Viewer::Patient { identity: Some(IdentityLevel::P9) };

fn decide_one(
    viewer: Viewer<'_>,
    p: &OnlineServicesSettings,
    pat: &Patient,
    acc: &OnlineAccessSettings,
    all: &[Entry],
    e: &Entry,
) -> Decision {
    AccessPolicy::new(viewer, facts(p, pat, acc, all), now()).decide(e)
}

fn withheld_rule(dec: Decision) -> &'static str {
    match dec {
        Decision::Shown => "shown",
        Decision::Withheld(w) => w.rule(),
    }
}

#[test]
fn a_superseded_entry_is_never_online() {
    // R28: retired by a replacement, kept for audit only, whatever else it carries.
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let mut e = consultation(10, at(2024, 3, 1));
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &e), Decision::Shown);
    e.superseded = Some(crate::entry::Superseded { at: at(2024, 3, 2), note: "a later message".into() });
    assert_eq!(entry_online_level(&e), Err(Withheld::Superseded));
    assert_eq!(withheld_rule(decide_one(P9, &p, &pat, &acc, &[], &e)), "R28");
}

#[test]
fn an_adult_with_an_account_sees_new_entries() {
    // R1
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let e = consultation(10, at(2024, 3, 1));
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &e), Decision::Shown);
}

#[test]
fn automatic_access_needs_age_sixteen_an_account_and_a_switched_on_practice() {
    // R1
    let acc = OnlineAccessSettings::default();
    let e = consultation(10, at(2026, 1, 1));
    let child = patient(d(2011, 1, 1), d(2011, 1, 1));
    let dec = decide_one(P9, &practice(), &child, &acc, &[], &e);
    assert_eq!(withheld_rule(dec), "R1");
    assert!(matches!(
        dec,
        Decision::Withheld(Withheld::NoRecordAccess { automatic: AutomaticBlock::UnderSixteen { .. } })
    ));

    let turns_sixteen_today = patient(d(2010, 11, 22), d(2010, 11, 22));
    assert_eq!(decide_one(P9, &practice(), &turns_sixteen_today, &acc, &[], &e), Decision::Shown);

    let no_account = Viewer::Patient { identity: None };
    assert_eq!(
        decide_one(no_account, &practice(), &adult(), &acc, &[], &e),
        Decision::Withheld(Withheld::NoOnlineAccount)
    );

    let off = OnlineServicesSettings { prospective_switch_on: None, ..practice() };
    assert_eq!(withheld_rule(decide_one(P9, &off, &adult(), &acc, &[], &e)), "R1");
    let later = OnlineServicesSettings { prospective_switch_on: Some(d(2027, 1, 1)), ..practice() };
    assert!(matches!(
        decide_one(P9, &later, &adult(), &acc, &[], &e),
        Decision::Withheld(Withheld::NoRecordAccess { automatic: AutomaticBlock::SwitchOnScheduled { .. } })
    ));

    let opted_out = OnlineAccessSettings { opted_out: true, ..Default::default() };
    assert!(matches!(
        decide_one(P9, &practice(), &adult(), &opted_out, &[], &e),
        Decision::Withheld(Withheld::NoRecordAccess { automatic: AutomaticBlock::OptedOut })
    ));
}

#[test]
fn a_paused_practice_grants_no_automatic_access_but_manual_grants_stay() {
    // R1, D9
    let paused = OnlineServicesSettings { paused: true, ..practice() };
    let e = consultation(10, at(2026, 1, 1));
    let none = OnlineAccessSettings::default();
    assert!(matches!(
        decide_one(P9, &paused, &adult(), &none, &[], &e),
        Decision::Withheld(Withheld::NoRecordAccess { automatic: AutomaticBlock::Paused })
    ));
    let manual = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Beginning, d(2020, 1, 1))],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    assert_eq!(decide_one(P9, &paused, &adult(), &manual, &[], &e), Decision::Shown);
}

#[test]
fn an_active_104_withholds_automatic_access_and_a_later_106_restores_it() {
    // R2
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let e = consultation(10, at(2025, 1, 1));
    let with_104 = vec![coded(1, ENHANCED_REVIEW_INDICATED, at(2024, 1, 1)), e.clone()];
    let dec = decide_one(P9, &p, &pat, &acc, &with_104, &e);
    assert_eq!(withheld_rule(dec), "R2");
    let with_106 = vec![
        coded(1, ENHANCED_REVIEW_INDICATED, at(2024, 1, 1)),
        coded(2, ENHANCED_REVIEW_NOT_INDICATED, at(2024, 2, 1)),
        e.clone(),
    ];
    assert_eq!(decide_one(P9, &p, &pat, &acc, &with_106, &e), Decision::Shown);
    // The patient can see the 104 and 106 codes themselves (they are part of the record).
    assert_eq!(decide_one(P9, &p, &pat, &acc, &with_106, &with_106[0]), Decision::Shown);
}

fn grant(level: AccessLevel, from: RecordFrom, granted_on: NaiveDate) -> LevelGrant {
    LevelGrant { level, from, granted_on, granted_by: "Dr Who".into() }
}

#[test]
fn a_104_does_not_change_access_granted_by_hand() {
    // R3
    let p = practice();
    let pat = adult();
    let acc = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Beginning, d(2015, 1, 1))],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    let old = consultation(10, at(2010, 1, 1));
    let all = vec![coded(1, ENHANCED_REVIEW_INDICATED, at(2024, 1, 1)), old.clone()];
    let policy = AccessPolicy::new(P9, facts(&p, &pat, &acc, &all), now());
    assert_eq!(policy.automatic(), Err(AutomaticBlock::EnhancedReview));
    assert_eq!(policy.decide(&old), Decision::Shown);
}

#[test]
fn prospective_start_is_the_later_of_switch_on_and_registration() {
    // R4
    let (p, acc) = (practice(), OnlineAccessSettings::default());
    let before_switch_on = consultation(10, at(2023, 10, 30));
    let on_switch_on = consultation(11, Utc.with_ymd_and_hms(2023, 10, 31, 0, 0, 0).unwrap());
    let pat = adult();
    let dec = decide_one(P9, &p, &pat, &acc, &[], &before_switch_on);
    assert_eq!(dec, Decision::Withheld(Withheld::BeforeStart { start: d(2023, 10, 31), by: GrantSource::Automatic }));
    assert_eq!(withheld_rule(dec), "R4");
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &on_switch_on), Decision::Shown);

    let newcomer = patient(d(1990, 1, 1), d(2025, 6, 1));
    let before_registration = consultation(12, at(2025, 5, 31));
    let dec = decide_one(P9, &p, &newcomer, &acc, &[], &before_registration);
    assert_eq!(dec, Decision::Withheld(Withheld::BeforeStart { start: d(2025, 6, 1), by: GrantSource::Automatic }));
    assert_eq!(decide_one(P9, &p, &newcomer, &acc, &[], &consultation(13, at(2025, 6, 1))), Decision::Shown);
}

#[test]
fn prospective_access_is_decided_on_the_entered_date_not_the_event_date() {
    // R4, D2
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let mut backdated = consultation(10, at(2024, 1, 1));
    backdated.event_date = d(2019, 1, 1);
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &backdated), Decision::Shown);
    let mut old_entered = consultation(11, at(2022, 1, 1));
    old_entered.event_date = d(2024, 1, 1);
    assert_eq!(withheld_rule(decide_one(P9, &p, &pat, &acc, &[], &old_entered)), "R4");
}

#[test]
fn opening_an_account_late_does_not_move_the_start_date() {
    // R5: the account's creation date is not an input to the engine at all; a patient who opens an
    // account today sees everything from the R4 date.
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let e = consultation(10, at(2023, 11, 1));
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &e), Decision::Shown);
}

#[test]
fn deregistration_and_death_end_all_online_access_including_proxies() {
    // R6
    let (p, acc) = (practice(), OnlineAccessSettings::default());
    let mut left = adult();
    left.registrations[0].ended = Some(d(2026, 1, 1));
    let e = consultation(10, at(2025, 1, 1));
    assert_eq!(decide_one(P9, &p, &left, &acc, &[], &e), Decision::Withheld(Withheld::NotRegistered));
    let link = proxy_link(d(2024, 1, 1), AccessLevel::Full);
    let proxy = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    assert_eq!(decide_one(proxy, &p, &left, &acc, &[], &e), Decision::Withheld(Withheld::NotRegistered));
    let mut died = adult();
    died.date_of_death = Some(d(2026, 2, 1));
    assert_eq!(decide_one(P9, &p, &died, &acc, &[], &e), Decision::Withheld(Withheld::Deceased));
    assert_eq!(withheld_rule(decide_one(proxy, &p, &died, &acc, &[], &e)), "R6");
}

#[test]
fn after_transfer_in_old_entries_and_old_grants_do_not_show() {
    // R7, D3
    let p = practice();
    let mut pat = adult();
    pat.registrations = vec![
        Registration {
            kind: RegistrationKind::Registered,
            started: d(2000, 1, 1),
            ended: Some(d(2024, 1, 1)),
            previous_practice: None,
        },
        Registration {
            kind: RegistrationKind::TransferredIn,
            started: d(2025, 3, 1),
            ended: None,
            previous_practice: Some("B82002".into()),
        },
    ];
    // A historic grant from the first registration does not carry over.
    let acc = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Beginning, d(2020, 1, 1))],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    let mut transferred = consultation(10, at(2024, 6, 1));
    transferred.origin = Origin::TransferredIn { from_ods: "B82002".into() };
    assert_eq!(withheld_rule(decide_one(P9, &p, &pat, &acc, &[], &transferred)), "R4");
    // A fresh historic grant after re-registration does show it, but redaction flags still apply.
    let regrant = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Beginning, d(2025, 4, 1))],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    assert_eq!(decide_one(P9, &p, &pat, &regrant, &[], &transferred), Decision::Shown);
    transferred.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::ThirdParty, "GP2GP flag", "B82002", at(2024, 6, 1)).unwrap(),
    );
    assert_eq!(withheld_rule(decide_one(P9, &p, &pat, &regrant, &[], &transferred)), "R8");
}

fn full_historic() -> OnlineAccessSettings {
    OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Beginning, d(2020, 1, 1))],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    }
}

#[test]
fn entries_that_are_never_shown_online() {
    // R8
    let (p, pat, acc) = (practice(), adult(), full_historic());
    let t = at(2025, 1, 1);
    let cases: Vec<(Entry, Withheld)> = vec![
        (
            entry(1, EntryBody::Consultation { text: "x".into(), status: ConsultationStatus::Draft }, t),
            Withheld::DraftConsultation,
        ),
        (
            entry(
                2,
                EntryBody::TestResult {
                    test: "HbA1c".into(),
                    value: "48".into(),
                    unit: "mmol/mol".into(),
                    range: "20-41".into(),
                    abnormal: true,
                    filing: Filing::Unfiled,
                },
                t,
            ),
            Withheld::Unfiled,
        ),
        (
            entry(
                3,
                EntryBody::Document {
                    title: "Letter".into(),
                    summary: String::new(),
                    filing: Filing::Unfiled,
                    review: DocumentReview::Unreviewed,
                },
                t,
            ),
            Withheld::Unfiled,
        ),
        (
            entry(
                4,
                EntryBody::Document {
                    title: "Letter".into(),
                    summary: String::new(),
                    filing: Filing::Filed,
                    review: DocumentReview::Unreviewed,
                },
                t,
            ),
            Withheld::UnreviewedDocument,
        ),
        (
            entry(5, EntryBody::Diary { text: "Recall".into(), due: d(2025, 2, 1) }, t),
            Withheld::NeverOnline { kind: EntryKind::Diary },
        ),
        (
            entry(
                6,
                EntryBody::AdminMessage {
                    subject: "re patient".into(),
                    text: "x".into(),
                    channel: AdminChannel::Email,
                },
                t,
            ),
            Withheld::NeverOnline { kind: EntryKind::AdminMessage },
        ),
        (
            entry(7, EntryBody::OnlineConsultation { text: "x".into() }, t),
            Withheld::NeverOnline { kind: EntryKind::OnlineConsultation },
        ),
        (entry(8, EntryBody::SystemSms { text: "x".into() }, t), Withheld::NeverOnline { kind: EntryKind::SystemSms }),
        (
            {
                let mut e = consultation(9, t);
                e.nopat = true;
                e
            },
            Withheld::Nopat,
        ),
        (
            {
                let mut e = consultation(10, t);
                e.safeguarding = true;
                e
            },
            Withheld::Safeguarding,
        ),
        (
            {
                let mut e = consultation(11, t);
                e.visibility = OnlineVisibility::Hidden(
                    Redaction::new(HiddenReason::PotentiallyHarmful, "not yet discussed", "Dr A", t).unwrap(),
                );
                e
            },
            Withheld::Hidden { reason: HiddenReason::PotentiallyHarmful },
        ),
    ];
    for (e, expected) in cases {
        assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &e), Decision::Withheld(expected), "{:?}", e.body);
        let rule = expected.rule();
        assert!(rule == "R8" || rule == "R29", "{expected:?} -> {rule}");
    }
    // Filed, reviewed and final versions of the same entries are shown.
    for e in [
        entry(
            20,
            EntryBody::TestResult {
                test: "HbA1c".into(),
                value: "48".into(),
                unit: "mmol/mol".into(),
                range: "20-41".into(),
                abnormal: true,
                filing: Filing::Filed,
            },
            t,
        ),
        entry(
            21,
            EntryBody::Document {
                title: "Letter".into(),
                summary: String::new(),
                filing: Filing::Filed,
                review: DocumentReview::Reviewed,
            },
            t,
        ),
        consultation(22, t),
    ] {
        assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &e), Decision::Shown);
    }
}

#[test]
fn a_split_consultation_can_be_hidden_in_part_but_each_part_is_whole() {
    // R9
    let t = at(2025, 1, 1);
    let e = entry(
        1,
        EntryBody::Consultation {
            text: "Knee pain. Partner controlling, worried.".into(),
            status: ConsultationStatus::Final,
        },
        t,
    );
    let ids = [EntryId::from_uuid(Uuid::from_u128(50)), EntryId::from_uuid(Uuid::from_u128(51))];
    let mut parts = split_consultation(&e, &["Knee pain.", "Partner controlling, worried."], &ids).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].entered_at, e.entered_at);
    parts[1].visibility =
        OnlineVisibility::Hidden(Redaction::new(HiddenReason::ThirdParty, "about partner", "Dr A", t).unwrap());
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &parts[0]), Decision::Shown);
    assert_eq!(withheld_rule(decide_one(P9, &p, &pat, &acc, &[], &parts[1])), "R8");
    // A split may not drop or change text, and only consultations split.
    assert_eq!(split_consultation(&e, &["Knee pain.", "Partner"], &ids), Err(SplitError::TextChanged));
    assert_eq!(
        split_consultation(&e, &["Knee pain. Partner controlling, worried."], &ids),
        Err(SplitError::TooFewParts)
    );
    assert_eq!(split_consultation(&coded(3, "271649006", t), &["a", "b"], &ids), Err(SplitError::NotAConsultation));
}

#[test]
fn a_private_entry_is_not_hidden_online() {
    // R10
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let mut e = consultation(10, at(2025, 1, 1));
    e.confidential = true;
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &e), Decision::Shown);
}

#[test]
fn hiding_needs_a_note_and_takes_effect_for_every_viewer() {
    // R11
    let t = at(2025, 1, 1);
    assert_eq!(Redaction::new(HiddenReason::Other, "   ", "Dr A", t), Err(RedactionError::NoteRequired));
    assert!(matches!(
        Redaction::new(HiddenReason::Other, &"x".repeat(2001), "Dr A", t),
        Err(RedactionError::NoteTooLong(2001))
    ));
    let mut e = consultation(10, t);
    e.visibility = OnlineVisibility::Hidden(Redaction::new(HiddenReason::Other, "reason", "Dr A", t).unwrap());
    let link = proxy_link(d(2020, 1, 1), AccessLevel::Full);
    let (p, pat, acc) = (practice(), adult(), full_historic());
    for viewer in [P9, Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) }] {
        assert_eq!(withheld_rule(decide_one(viewer, &p, &pat, &acc, &[], &e)), "R8");
    }
}

#[test]
fn hiding_a_repeat_template_does_not_hide_its_issues() {
    // R12
    let t = at(2025, 1, 1);
    let mut template = entry(
        1,
        EntryBody::Medication {
            drug: "Sertraline 50mg".into(),
            dosage: "1 daily".into(),
            quantity: "28".into(),
            course: MedicationCourse::RepeatTemplate,
        },
        t,
    );
    template.visibility =
        OnlineVisibility::Hidden(Redaction::new(HiddenReason::PotentiallyHarmful, "x", "Dr A", t).unwrap());
    let issue = entry(
        2,
        EntryBody::MedicationIssue {
            drug: "Sertraline 50mg".into(),
            dosage: "1 daily".into(),
            quantity: "28".into(),
            template: Some(template.id),
        },
        at(2025, 2, 1),
    );
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let all = [template.clone(), issue.clone()];
    let view = online_view(P9, facts(&p, &pat, &acc, &all), &all, now());
    assert_eq!(
        view.decisions,
        vec![Decision::Withheld(Withheld::Hidden { reason: HiddenReason::PotentiallyHarmful }), Decision::Shown]
    );
}

#[test]
fn access_levels_are_ordered_and_each_has_its_own_start_date() {
    // R13
    assert!(AccessLevel::None < AccessLevel::Summary);
    assert!(AccessLevel::Summary < AccessLevel::Detailed);
    assert!(AccessLevel::Detailed < AccessLevel::Documents);
    assert!(AccessLevel::Documents < AccessLevel::Full);
    // Detailed from 2010, Full from 2024: coded data from 2010, free text from 2024.
    let p = OnlineServicesSettings { prospective_switch_on: None, ..practice() };
    let pat = adult();
    let acc = OnlineAccessSettings {
        grants: vec![
            grant(AccessLevel::Detailed, RecordFrom::Date(d(2010, 1, 1)), d(2020, 1, 1)),
            grant(AccessLevel::Full, RecordFrom::Date(d(2024, 1, 1)), d(2024, 1, 1)),
        ],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    let old_code = coded(1, "271649006", at(2015, 1, 1));
    let old_text = consultation(2, at(2015, 1, 1));
    let new_text = consultation(3, at(2024, 2, 1));
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &old_code), Decision::Shown);
    let dec = decide_one(P9, &p, &pat, &acc, &[], &old_text);
    assert_eq!(dec, Decision::Withheld(Withheld::BeforeStart { start: d(2024, 1, 1), by: GrantSource::Manual }));
    assert_eq!(withheld_rule(dec), "R13");
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &new_text), Decision::Shown);
    // A summary-only patient cannot see a consultation at all.
    let summary = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Summary, RecordFrom::Beginning, d(2020, 1, 1))],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    let dec = decide_one(P9, &p, &pat, &summary, &[], &new_text);
    assert_eq!(
        dec,
        Decision::Withheld(Withheld::LevelTooLow {
            needed: AccessLevel::Full,
            granted: AccessLevel::Summary,
            by: GrantSource::Manual
        })
    );
    assert_eq!(withheld_rule(dec), "R13");
    // The per-patient setting overrides a lower practice default.
    let low_default = OnlineServicesSettings { default_level: AccessLevel::Summary, ..practice() };
    let full_from_2024 = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Date(d(2024, 1, 1)), d(2024, 1, 1))],
        opted_out: false,
        own_level: None,
        transfer_review_pending: None,
    };
    assert_eq!(decide_one(P9, &low_default, &pat, &full_from_2024, &[], &new_text), Decision::Shown);
    assert_eq!(
        withheld_rule(decide_one(P9, &low_default, &pat, &OnlineAccessSettings::default(), &[], &new_text)),
        "R13"
    );
}

#[test]
fn record_access_needs_identity_level_p9() {
    // R22
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let e = consultation(10, at(2025, 1, 1));
    let p5 = Viewer::Patient { identity: Some(IdentityLevel::P5) };
    assert_eq!(
        decide_one(p5, &p, &pat, &acc, &[], &e),
        Decision::Withheld(Withheld::IdentityNotVerified { level: IdentityLevel::P5 })
    );
}

fn proxy_link(granted_on: NaiveDate, record: AccessLevel) -> ProxyLink {
    ProxyLink {
        id: ProxyLinkId::from_uuid(Uuid::from_u128(77)),
        patient: PatientId::from_uuid(Uuid::from_u128(1)),
        proxy: PatientId::from_uuid(Uuid::from_u128(78)),
        relationship: "Mother".into(),
        basis: ProxyBasis::ChildNotCompetent,
        scope: ProxyScope {
            appointments: true,
            prescriptions: true,
            demographics: true,
            record,
            record_from: RecordFrom::Date(granted_on),
        },
        granted_on,
        decided_by: "Dr Who".into(),
        ends_on: None,
        status: ProxyStatus::Active,
    }
}

#[test]
fn a_parent_proxy_sees_a_young_childs_record_from_the_grant_date() {
    // R15
    let p = practice();
    let child = patient(d(2020, 3, 1), d(2020, 3, 1));
    let acc = OnlineAccessSettings::default();
    let link = proxy_link(d(2024, 1, 1), AccessLevel::Full);
    let viewer = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    assert_eq!(decide_one(viewer, &p, &child, &acc, &[], &consultation(1, at(2025, 1, 1))), Decision::Shown);
    let before = decide_one(viewer, &p, &child, &acc, &[], &consultation(2, at(2023, 1, 1)));
    assert_eq!(before, Decision::Withheld(Withheld::BeforeStart { start: d(2024, 1, 1), by: GrantSource::Proxy }));
    assert_eq!(withheld_rule(before), "R15");
    // The child's own (age-barred) automatic access does not limit the proxy.
    let summary_link = proxy_link(d(2024, 1, 1), AccessLevel::Summary);
    let viewer = Viewer::Proxy { link: &summary_link, identity: Some(IdentityLevel::P9) };
    let dec = decide_one(viewer, &p, &child, &acc, &[], &consultation(3, at(2025, 1, 1)));
    assert_eq!(withheld_rule(dec), "R15");
    let mut ended = proxy_link(d(2024, 1, 1), AccessLevel::Full);
    ended.ends_on = Some(d(2026, 6, 30));
    let viewer = Viewer::Proxy { link: &ended, identity: Some(IdentityLevel::P9) };
    assert_eq!(
        decide_one(viewer, &p, &child, &acc, &[], &consultation(4, at(2025, 1, 1))),
        Decision::Withheld(Withheld::ProxyEnded { on: d(2026, 6, 30) })
    );
}

#[test]
fn proxy_links_are_suspended_at_the_review_age_and_at_sixteen() {
    // R16, D7
    let acc = OnlineAccessSettings::default();
    let e = consultation(1, at(2022, 6, 1));
    let link = proxy_link(d(2016, 1, 1), AccessLevel::Full);
    let viewer = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    let eleven_today = patient(d(2015, 11, 22), d(2015, 11, 22));
    let dec = decide_one(viewer, &practice(), &eleven_today, &acc, &[], &e);
    assert_eq!(dec, Decision::Withheld(Withheld::ProxySuspendedForReview { age: 11, on: d(2026, 11, 22) }));
    assert_eq!(withheld_rule(dec), "R16");
    let ten_yesterday = patient(d(2015, 11, 23), d(2015, 11, 23));
    assert_eq!(decide_one(viewer, &practice(), &ten_yesterday, &acc, &[], &e), Decision::Shown);
    // A practice that reviews at 13 keeps an 11-year-old's proxy active.
    let at13 = OnlineServicesSettings { proxy_review_age: ProxyReviewAge::new(13).unwrap(), ..practice() };
    assert_eq!(decide_one(viewer, &at13, &eleven_today, &acc, &[], &e), Decision::Shown);
    // A proxy link reviewed and re-granted after the review age carries on until 16.
    let regranted = proxy_link(d(2026, 11, 22), AccessLevel::Full);
    let mut regranted = regranted;
    regranted.scope.record_from = RecordFrom::Beginning;
    let viewer = Viewer::Proxy { link: &regranted, identity: Some(IdentityLevel::P9) };
    assert_eq!(decide_one(viewer, &practice(), &eleven_today, &acc, &[], &e), Decision::Shown);
    let sixteen_today = patient(d(2010, 11, 22), d(2010, 11, 22));
    let link = proxy_link(d(2023, 1, 1), AccessLevel::Full);
    let viewer = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    let dec = decide_one(viewer, &practice(), &sixteen_today, &acc, &[], &e);
    assert_eq!(dec, Decision::Withheld(Withheld::ProxySuspendedAtSixteen { on: d(2026, 11, 22) }));
}

#[test]
fn a_104_does_not_change_proxy_access() {
    // D6
    let p = practice();
    let pat = adult();
    let acc = OnlineAccessSettings::default();
    let mut link = proxy_link(d(2024, 1, 1), AccessLevel::Full);
    link.basis = ProxyBasis::LastingPowerOfAttorney;
    let e = consultation(2, at(2025, 1, 1));
    let all = vec![coded(1, ENHANCED_REVIEW_INDICATED, at(2024, 6, 1)), e.clone()];
    let viewer = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    assert_eq!(decide_one(viewer, &p, &pat, &acc, &all, &e), Decision::Shown);
}

#[test]
fn revoked_and_suspended_proxies_see_nothing() {
    // R16, R20
    let (p, pat, acc) = (practice(), adult(), OnlineAccessSettings::default());
    let e = consultation(2, at(2025, 1, 1));
    let mut link = proxy_link(d(2024, 1, 1), AccessLevel::Full);
    link.status = ProxyStatus::Revoked { on: d(2026, 1, 1), reason: "patient asked".into() };
    let viewer = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    assert_eq!(withheld_rule(decide_one(viewer, &p, &pat, &acc, &[], &e)), "R20");
    link.status = ProxyStatus::Suspended { since: d(2026, 1, 1), reason: "review".into() };
    let viewer = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    assert_eq!(withheld_rule(decide_one(viewer, &p, &pat, &acc, &[], &e)), "R16");
}

// ---- Property tests -------------------------------------------------------------------------

fn arb_level() -> impl Strategy<Value = AccessLevel> {
    prop::sample::select(AccessLevel::ALL.to_vec())
}

fn arb_date() -> impl Strategy<Value = NaiveDate> {
    (0i64..365 * 40).prop_map(|n| d(1990, 1, 1) + Duration::days(n))
}

fn arb_body() -> impl Strategy<Value = EntryBody> {
    let filing = prop::sample::select(vec![Filing::Filed, Filing::Unfiled]);
    let review = prop::sample::select(vec![DocumentReview::Reviewed, DocumentReview::Unreviewed]);
    let status = prop::sample::select(vec![ConsultationStatus::Final, ConsultationStatus::Draft]);
    prop_oneof![
        Just(EntryBody::Coded { value: None }),
        status.prop_map(|status| EntryBody::Consultation { text: "t".into(), status }),
        Just(EntryBody::Medication {
            drug: "d".into(),
            dosage: "x".into(),
            quantity: "1".into(),
            course: MedicationCourse::RepeatTemplate
        }),
        Just(EntryBody::MedicationIssue { drug: "d".into(), dosage: "x".into(), quantity: "1".into(), template: None }),
        filing.clone().prop_map(|filing| EntryBody::TestResult {
            test: "t".into(),
            value: "1".into(),
            unit: "u".into(),
            range: String::new(),
            abnormal: false,
            filing
        }),
        (filing, review).prop_map(|(filing, review)| EntryBody::Document {
            title: "t".into(),
            summary: String::new(),
            filing,
            review
        }),
        Just(EntryBody::Allergy { substance: "s".into(), reaction: "r".into() }),
        Just(EntryBody::Immunisation { vaccine: "v".into() }),
        Just(EntryBody::Problem { title: "p".into(), active: true }),
        Just(EntryBody::AdminMessage { subject: "s".into(), text: "t".into(), channel: AdminChannel::Note }),
        Just(EntryBody::OnlineConsultation { text: "t".into() }),
        Just(EntryBody::SystemSms { text: "t".into() }),
        Just(EntryBody::Diary { text: "t".into(), due: d(2030, 1, 1) }),
    ]
}

fn arb_entry(n: u128, hidden: bool) -> impl Strategy<Value = Entry> {
    (
        arb_body(),
        arb_date(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(HiddenReason::ALL.to_vec()),
    )
        .prop_map(move |(body, date, nopat, safeguarding, confidential, reason)| {
            let mut e = entry(n, body, start_of(date) + Duration::hours(9));
            if hidden {
                e.visibility = OnlineVisibility::Hidden(
                    Redaction::new(reason, "n", "Dr A", e.entered_at).unwrap_or_else(|_| unreachable!()),
                );
            }
            e.nopat = nopat && n.is_multiple_of(7);
            e.safeguarding = safeguarding && n.is_multiple_of(11);
            e.confidential = confidential;
            e
        })
}

fn arb_record() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec((any::<bool>(), 0u8..10), 0..60).prop_flat_map(|flags| {
        flags.into_iter().enumerate().map(|(i, (_, h))| arb_entry(i as u128 + 100, h < 2)).collect::<Vec<_>>()
    })
}

#[derive(Debug, Clone)]
struct Scenario {
    practice: OnlineServicesSettings,
    patient: Patient,
    access: OnlineAccessSettings,
    review: EnhancedReview,
    link: ProxyLink,
    as_proxy: bool,
    identity: Option<IdentityLevel>,
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (
        (prop::option::of(arb_date()), any::<bool>(), arb_level(), 11u8..=13),
        (arb_date(), arb_date(), prop::option::of(arb_date())),
        prop::collection::vec((arb_level(), prop::option::of(arb_date()), arb_date()), 0..3),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (arb_level(), arb_date(), prop::option::of(arb_date()), any::<bool>()),
        prop::option::of(prop::sample::select(vec![
            IdentityLevel::P0,
            IdentityLevel::P5,
            IdentityLevel::P9,
            IdentityLevel::P9,
        ])),
        prop::option::of((arb_level(), arb_date())),
    )
        .prop_map(
            |(
                prac,
                (dob, reg, ended),
                grants,
                (opted_out, active_104, as_proxy),
                (plevel, pgrant, pfrom, _),
                identity,
                own,
            )| {
                let practice = OnlineServicesSettings {
                    prospective_switch_on: prac.0,
                    paused: prac.1,
                    pause_reason: String::new(),
                    default_level: prac.2,
                    proxy_review_age: ProxyReviewAge::new(prac.3).unwrap_or_default(),
                    visible_online_by_default: true,
                    show_staff_names_to_patients: false,
                    cancel_cutoff_hours: 24,
                    accept_update_record: true,
                    ..OnlineServicesSettings::default()
                };
                let mut patient = patient(dob, reg.max(dob));
                patient.registrations[0].ended = ended.filter(|e| *e > reg);
                let access = OnlineAccessSettings {
                    grants: grants
                        .into_iter()
                        .map(|(level, from, on)| grant(level, from.map_or(RecordFrom::Beginning, RecordFrom::Date), on))
                        .collect(),
                    opted_out,
                    own_level: own.map(|(level, set_on)| OwnLevel { level, set_on, set_by: "Dr Own".into() }),
                    transfer_review_pending: None,
                };
                let review = if active_104 {
                    EnhancedReview::Active { since: at(2024, 1, 1) }
                } else {
                    EnhancedReview::NotIndicated
                };
                let mut link = proxy_link(pgrant, plevel);
                link.scope.record_from = pfrom.map_or(RecordFrom::Beginning, RecordFrom::Date);
                Scenario { practice, patient, access, review, link, as_proxy, identity }
            },
        )
}

impl Scenario {
    fn viewer(&self) -> Viewer<'_> {
        if self.as_proxy {
            Viewer::Proxy { link: &self.link, identity: self.identity }
        } else {
            Viewer::Patient { identity: self.identity }
        }
    }
    fn facts(&self) -> RecordFacts<'_> {
        RecordFacts {
            practice: &self.practice,
            patient: &self.patient,
            access: &self.access,
            enhanced_review: self.review,
            transferred_in: None,
        }
    }
}

fn never_online(e: &Entry) -> bool {
    e.visibility.is_hidden()
        || e.nopat
        || e.safeguarding
        || e.kind().required_level().is_none()
        || matches!(
            e.body,
            EntryBody::Consultation { status: ConsultationStatus::Draft, .. }
                | EntryBody::TestResult { filing: Filing::Unfiled, .. }
                | EntryBody::Document { filing: Filing::Unfiled, .. }
                | EntryBody::Document { review: DocumentReview::Unreviewed, .. }
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// T1: no hidden (or never-online) entry is ever shown, whoever looks, whatever the settings.
    #[test]
    fn no_hidden_entry_is_ever_shown(s in arb_scenario(), record in arb_record(), days in 0i64..20000) {
        let now = at(1995, 1, 1) + Duration::days(days);
        let view = online_view(s.viewer(), s.facts(), &record, now);
        for i in view.shown() {
            prop_assert!(!never_online(&record[i]), "shown: {:?}", record[i]);
        }
    }

    /// The choke point: `Shown` is made for exactly the entries the engine shows, in order, and
    /// never for a hidden (or never-online) entry.
    #[test]
    fn shown_is_made_for_exactly_the_entries_decided_shown(s in arb_scenario(), record in arb_record(), days in 0i64..20000) {
        let now = at(1995, 1, 1) + Duration::days(days);
        let view = online_view(s.viewer(), s.facts(), &record, now);
        let expected: Vec<&Entry> = view.shown().map(|i| &record[i]).collect();
        let shown = view.policy.shown(record.iter());
        let got: Vec<&Entry> = shown.iter().map(|e| *e.get()).collect();
        prop_assert_eq!(expected, got);
        for e in &shown {
            prop_assert!(!never_online(e.get()), "shown: {:?}", e.get());
        }
        for e in &record {
            prop_assert_eq!(view.policy.show(e).is_some(), view.policy.decide(e).is_shown());
        }
    }

    /// T2: adding hidden entries to a record leaves the rest of its view exactly as it was.
    #[test]
    fn hidden_entries_change_nothing_else(s in arb_scenario(), record in arb_record(), extra in prop::collection::vec(arb_entry(9999, true), 0..20), seed in any::<u64>()) {
        let base = online_view(s.viewer(), s.facts(), &record, now());
        let mut mixed: Vec<(bool, Entry)> = record.iter().cloned().map(|e| (false, e)).collect();
        for (i, e) in extra.into_iter().enumerate() {
            let pos = (seed as usize).wrapping_add(i * 7919) % (mixed.len() + 1);
            mixed.insert(pos, (true, e));
        }
        let entries: Vec<Entry> = mixed.iter().map(|(_, e)| e.clone()).collect();
        let view = online_view(s.viewer(), s.facts(), &entries, now());
        let shown_base: Vec<&Entry> = base.shown().map(|i| &record[i]).collect();
        let shown_mixed: Vec<&Entry> = view.shown().map(|i| &entries[i]).collect();
        prop_assert_eq!(shown_base, shown_mixed);
        prop_assert_eq!(base.policy, view.policy);
    }

    /// T3: whatever the child's birthday, the grant date and the day, a proxy sees only entries
    /// that are online at all, within the proxy's level, entered on or after the scope's start,
    /// and nothing once the link's review age or the 16th birthday has passed since the grant.
    #[test]
    fn a_proxy_sees_only_within_their_scope(s in arb_scenario(), record in arb_record(), days in 0i64..20000) {
        let now = at(1995, 1, 1) + Duration::days(days);
        let today = crate::uk::uk_date(now);
        let view = online_view(Viewer::Proxy { link: &s.link, identity: s.identity }, s.facts(), &record, now);
        let dob = s.patient.date_of_birth;
        let review = crate::patient::birthday(dob, u32::from(s.practice.proxy_review_age.years()));
        let sixteen = crate::patient::birthday(dob, 16);
        let lapsed = (s.link.granted_on < review && today >= review) || (s.link.granted_on < sixteen && today >= sixteen);
        for i in view.shown() {
            let e = &record[i];
            prop_assert!(!never_online(e), "shown: {:?}", e);
            prop_assert!(e.kind().required_level().is_some_and(|l| l <= s.link.scope.record), "beyond the scope's level: {:?}", e);
            if let RecordFrom::Date(from) = s.link.scope.record_from {
                prop_assert!(crate::uk::uk_date(e.entered_at) >= from, "before the scope's start: {:?}", e);
            }
            prop_assert!(!lapsed, "shown after the link lapsed at the review age or 16");
            prop_assert!(s.link.granted_on <= today || s.link.scope.record_from == RecordFrom::Beginning || crate::uk::uk_date(e.entered_at) >= s.link.granted_on);
        }
    }

    /// Raising an access level (the practice default, a manual grant or a proxy's scope) never
    /// hides an entry that the lower level showed.
    #[test]
    fn raising_a_level_never_hides_an_entry(s in arb_scenario(), record in arb_record(), raise in 0usize..3, up in 1usize..5) {
        let low = online_view(s.viewer(), s.facts(), &record, now());
        let mut higher = s.clone();
        let bump = |l: AccessLevel| AccessLevel::ALL[(l as usize + up).min(4)];
        match raise {
            0 => higher.practice.default_level = bump(higher.practice.default_level),
            1 => {
                for g in &mut higher.access.grants { g.level = bump(g.level) }
                if let Some(own) = &mut higher.access.own_level { own.level = bump(own.level) }
            }
            _ => higher.link.scope.record = bump(higher.link.scope.record),
        }
        let high = online_view(higher.viewer(), higher.facts(), &record, now());
        for i in low.shown() {
            prop_assert!(high.decisions[i].is_shown(), "entry {} hidden after raising", i);
        }
    }
}

// ---- A patient's own level (R13, D10) --------------------------------------------------------

fn own(level: AccessLevel, set_on: NaiveDate) -> Option<OwnLevel> {
    Some(OwnLevel { level, set_on, set_by: "Dr Own".into() })
}

fn medication(n: u128, entered: DateTime<Utc>) -> Entry {
    entry(
        n,
        EntryBody::Medication {
            drug: "Ramipril 5mg capsules".into(),
            dosage: "One daily".into(),
            quantity: "28 capsule".into(),
            course: MedicationCourse::Acute,
        },
        entered,
    )
}

#[test]
fn a_lower_own_level_restricts_automatic_full_access() {
    // R13, D10: "setting a patient to Summary leaves consultations visible" must not happen.
    let (p, pat) = (practice(), adult());
    let acc = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Summary, RecordFrom::Date(d(2023, 10, 31)), d(2026, 1, 5))],
        opted_out: false,
        own_level: own(AccessLevel::Summary, d(2026, 1, 5)),
        transfer_review_pending: None,
    };
    let text = consultation(10, at(2025, 1, 1));
    let code = coded(11, "271649006", at(2025, 1, 1));
    let med = medication(12, at(2025, 1, 1));
    // Without the own level, automatic Full shows all three.
    let auto = OnlineAccessSettings::default();
    for e in [&text, &code, &med] {
        assert_eq!(decide_one(P9, &p, &pat, &auto, &[], e), Decision::Shown);
    }
    assert_eq!(
        decide_one(P9, &p, &pat, &acc, &[], &text),
        Decision::Withheld(Withheld::LevelTooLow {
            needed: AccessLevel::Full,
            granted: AccessLevel::Summary,
            by: GrantSource::Manual
        })
    );
    assert_eq!(withheld_rule(decide_one(P9, &p, &pat, &acc, &[], &code)), "R13");
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &med), Decision::Shown);
    let policy = AccessPolicy::new(P9, facts(&p, &pat, &acc, &[]), now());
    assert_eq!(policy.highest_level(), AccessLevel::Summary);
    assert_eq!(policy.own_level(), Some((AccessLevel::Summary, d(2026, 1, 5))));
    // Detailed keeps coded entries and drops free text and documents.
    let detailed = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Detailed, RecordFrom::Date(d(2023, 10, 31)), d(2026, 1, 5))],
        own_level: own(AccessLevel::Detailed, d(2026, 1, 5)),
        ..Default::default()
    };
    assert_eq!(decide_one(P9, &p, &pat, &detailed, &[], &code), Decision::Shown);
    assert_eq!(withheld_rule(decide_one(P9, &p, &pat, &detailed, &[], &text)), "R13");
}

#[test]
fn own_level_none_means_no_record_access() {
    // R13: None < Summary: nothing of the record, whatever automatic access would give.
    let (p, pat) = (practice(), adult());
    let acc = OnlineAccessSettings { own_level: own(AccessLevel::None, d(2026, 2, 1)), ..Default::default() };
    let med = medication(12, at(2025, 1, 1));
    let dec = decide_one(P9, &p, &pat, &acc, &[], &med);
    assert_eq!(dec, Decision::Withheld(Withheld::LevelSetToNone { on: d(2026, 2, 1) }));
    assert_eq!(withheld_rule(dec), "R13");
    // Grants left over do not leak through a None level.
    let with_grant = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Beginning, d(2024, 1, 1))],
        ..acc.clone()
    };
    assert_eq!(decide_one(P9, &p, &pat, &with_grant, &[], &med), dec);
}

#[test]
fn a_higher_own_level_widens_a_low_practice_default_from_its_own_start() {
    // R13: the per-patient setting overrides the practice default, upwards too, with its own date.
    let low = OnlineServicesSettings { default_level: AccessLevel::Summary, ..practice() };
    let pat = adult();
    let acc = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Date(d(2025, 6, 1)), d(2025, 6, 1))],
        own_level: own(AccessLevel::Full, d(2025, 6, 1)),
        ..Default::default()
    };
    assert_eq!(decide_one(P9, &low, &pat, &acc, &[], &consultation(1, at(2025, 6, 2))), Decision::Shown);
    let dec = decide_one(P9, &low, &pat, &acc, &[], &consultation(2, at(2025, 5, 31)));
    assert_eq!(dec, Decision::Withheld(Withheld::BeforeStart { start: d(2025, 6, 1), by: GrantSource::Manual }));
    // The automatic start (switch-on, 31 October 2023) no longer reaches summary entries either:
    // the own level says from when.
    assert_eq!(withheld_rule(decide_one(P9, &low, &pat, &acc, &[], &medication(3, at(2024, 1, 1)))), "R13");
}

#[test]
fn own_level_holds_through_104_pause_and_opt_out_and_lapses_with_registration() {
    // R3, D9: a level set by hand is not changed by 104, a pause or the opt-out.
    let pat = adult();
    let acc = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Detailed, RecordFrom::Date(d(2024, 1, 1)), d(2024, 1, 1))],
        own_level: own(AccessLevel::Detailed, d(2024, 1, 1)),
        opted_out: true,
        transfer_review_pending: None,
    };
    let code = coded(5, "271649006", at(2025, 1, 1));
    let with_104 = vec![coded(1, ENHANCED_REVIEW_INDICATED, at(2025, 2, 1)), code.clone()];
    assert_eq!(decide_one(P9, &practice(), &pat, &acc, &with_104, &code), Decision::Shown);
    let paused = OnlineServicesSettings { paused: true, ..practice() };
    assert_eq!(decide_one(P9, &paused, &pat, &acc, &[], &code), Decision::Shown);
    // R7: set during an earlier registration, it is void; automatic access applies again.
    let mut back = adult();
    back.registrations = vec![
        Registration {
            kind: RegistrationKind::Registered,
            started: d(2000, 1, 1),
            ended: Some(d(2024, 6, 1)),
            previous_practice: None,
        },
        Registration {
            kind: RegistrationKind::Registered,
            started: d(2025, 1, 1),
            ended: None,
            previous_practice: None,
        },
    ];
    let none_before = OnlineAccessSettings { own_level: own(AccessLevel::None, d(2024, 2, 1)), ..Default::default() };
    assert_eq!(
        decide_one(P9, &practice(), &back, &none_before, &[], &consultation(7, at(2025, 3, 1))),
        Decision::Shown
    );
}

#[test]
fn an_own_level_never_changes_what_a_proxy_sees() {
    // R15, D6: a proxy's access is its own scope.
    let (p, pat) = (practice(), adult());
    let link = proxy_link(d(2024, 1, 1), AccessLevel::Full);
    let proxy = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    let e = consultation(9, at(2025, 1, 1));
    let none = OnlineAccessSettings { own_level: own(AccessLevel::None, d(2025, 1, 1)), ..Default::default() };
    assert_eq!(
        decide_one(proxy, &p, &pat, &none, &[], &e),
        decide_one(proxy, &p, &pat, &OnlineAccessSettings::default(), &[], &e)
    );
}

#[test]
fn start_dates_are_uk_dates() {
    // R4 with UK dates: the switch-on day in British Summer Time begins at 23:00 UTC the day
    // before, so an entry made at 00:30 UK time on that day is on or after the start date.
    let p = OnlineServicesSettings { prospective_switch_on: Some(d(2024, 6, 1)), ..Default::default() };
    let pat = adult();
    let acc = OnlineAccessSettings::default();
    let half_past_midnight_bst = Utc.with_ymd_and_hms(2024, 5, 31, 23, 30, 0).unwrap();
    assert_eq!(decide_one(P9, &p, &pat, &acc, &[], &consultation(1, half_past_midnight_bst)), Decision::Shown);
    let late_on_the_day_before = Utc.with_ymd_and_hms(2024, 5, 31, 22, 30, 0).unwrap();
    assert_eq!(withheld_rule(decide_one(P9, &p, &pat, &acc, &[], &consultation(2, late_on_the_day_before))), "R4");
    // A patient turns 16 at midnight UK time: at 23:30 UTC on the day before a summer birthday.
    let teen = patient(d(2010, 6, 1), d(2015, 1, 1));
    let e = consultation(3, at(2026, 5, 1));
    let before =
        AccessPolicy::new(P9, facts(&p, &teen, &acc, &[]), Utc.with_ymd_and_hms(2026, 5, 31, 22, 30, 0).unwrap());
    assert!(matches!(
        before.decide(&e),
        Decision::Withheld(Withheld::NoRecordAccess { automatic: AutomaticBlock::UnderSixteen { .. } })
    ));
    let after =
        AccessPolicy::new(P9, facts(&p, &teen, &acc, &[]), Utc.with_ymd_and_hms(2026, 5, 31, 23, 30, 0).unwrap());
    assert_eq!(after.decide(&e), Decision::Shown);
}

/// The rule's answer, written from R1, R2, R4, R7, R8, R13 and D10 as a list of the ways access
/// can reach an entry, independent of the engine's threshold table.
fn rule_shows(s: &Scenario, e: &Entry, now: DateTime<Utc>) -> bool {
    let today = crate::uk::uk_date(now);
    let Some(reg) = s.patient.registration_on(today) else { return false };
    if s.patient.is_deceased_on(today) || s.identity != Some(IdentityLevel::P9) || never_online(e) {
        return false;
    }
    let needed = e.kind().required_level().unwrap_or(AccessLevel::Full);
    let entered = crate::uk::uk_date(e.entered_at);
    let reaches = |level: AccessLevel, from: RecordFrom| {
        needed <= level && matches!(from, RecordFrom::Beginning)
            || matches!(from, RecordFrom::Date(d) if needed <= level && entered >= d)
    };
    let current = |on: NaiveDate| on >= reg.started && on <= today;
    let grants = s.access.grants.iter().filter(|g| current(g.granted_on));
    if let Some(own) = s.access.own_level.as_ref().filter(|o| current(o.set_on)) {
        // The patient's own level, and nothing above it, from each grant's own start.
        let mut ways: Vec<(AccessLevel, RecordFrom)> =
            grants.filter(|g| g.level <= own.level).map(|g| (g.level, g.from)).collect();
        // The own level itself reaches from the day it was set.
        ways.push((own.level, RecordFrom::Date(own.set_on)));
        return own.level != AccessLevel::None && ways.into_iter().any(|(l, f)| reaches(l, f));
    }
    let p = &s.practice;
    let automatic = p.prospective_switch_on.is_some_and(|on| on <= today)
        && !p.paused
        && today >= crate::patient::birthday(s.patient.date_of_birth, 16)
        && !s.review.is_active()
        && !s.access.opted_out;
    let auto_from = p.prospective_switch_on.map(|on| on.max(reg.started));
    (automatic && auto_from.is_some_and(|f| reaches(p.default_level, RecordFrom::Date(f))))
        || grants.into_iter().any(|g| reaches(g.level, g.from))
}

fn arb_times() -> impl Strategy<Value = (i64, u32)> {
    // Days from 1995 and a minute of the day, including the hours around UK midnight.
    (0i64..20000, prop::sample::select(vec![0u32, 30, 59, 60, 61, 120, 600, 1380, 1410, 1439]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// R13, D10 and the automatic rules: over (automatic state, practice default, own level,
    /// grants and their start dates, 104, opt-out, today), the patient sees an entry exactly when
    /// the rule says so; a proxy sees exactly what its own scope gives, whatever the patient's
    /// own settings.
    #[test]
    fn the_effective_level_is_the_rules_answer(
        s in arb_scenario(),
        record in arb_record(),
        (days, minute) in arb_times(),
        entry_minutes in prop::collection::vec(0i64..1440, 60),
    ) {
        let now = at(1995, 1, 1) + Duration::days(days) + Duration::minutes(i64::from(minute));
        let record: Vec<Entry> = record
            .into_iter()
            .zip(entry_minutes)
            .map(|(mut e, m)| {
                e.entered_at = crate::uk::uk_start_of(crate::uk::uk_date(e.entered_at)) + Duration::minutes(m);
                e
            })
            .collect();
        let patient = Scenario { as_proxy: false, ..s.clone() };
        let view = online_view(patient.viewer(), patient.facts(), &record, now);
        for (i, e) in record.iter().enumerate() {
            prop_assert_eq!(view.decisions[i].is_shown(), rule_shows(&patient, e, now), "entry {:?} decided {:?}", e, view.decisions[i]);
        }
        // A proxy's view does not move with the patient's own level, grants, opt-out or 104.
        let proxy = Scenario { as_proxy: true, ..s.clone() };
        let bare = Scenario { access: OnlineAccessSettings::default(), review: EnhancedReview::NotIndicated, ..proxy.clone() };
        let a = online_view(proxy.viewer(), proxy.facts(), &record, now);
        let b = online_view(bare.viewer(), bare.facts(), &record, now);
        prop_assert_eq!(a.decisions, b.decisions);
    }
}

#[test]
fn repeat_templates_are_offered_by_the_engine_per_viewer() {
    // R8, R13, R15, R22: what may be ordered online.
    let (p, pat) = (practice(), adult());
    let mut template = medication(20, at(2015, 1, 1));
    template.body = EntryBody::Medication {
        drug: "Salbutamol 100micrograms/dose inhaler".into(),
        dosage: "Two puffs when needed".into(),
        quantity: "1 inhaler".into(),
        course: MedicationCourse::RepeatTemplate,
    };
    let auto = OnlineAccessSettings::default();
    let offer = |viewer: Viewer<'_>, acc: &OnlineAccessSettings, e: &Entry| {
        AccessPolicy::new(viewer, facts(&p, &pat, acc, &[]), now()).repeat_offer(e)
    };
    // Started before automatic access began, it is still a current medicine to order.
    assert_eq!(offer(P9, &auto, &template), Decision::Shown);
    // Hidden: never offered.
    let mut hidden = template.clone();
    hidden.visibility =
        OnlineVisibility::Hidden(Redaction::new(HiddenReason::ThirdParty, "n", "Dr A", at(2015, 1, 1)).unwrap());
    assert_eq!(withheld_rule(offer(P9, &auto, &hidden)), "R8");
    // P5 sees no personal data (R22); a patient set to None sees no medicines.
    let p5 = Viewer::Patient { identity: Some(IdentityLevel::P5) };
    assert!(!offer(p5, &auto, &template).is_shown());
    let none = OnlineAccessSettings { own_level: own(AccessLevel::None, d(2026, 1, 1)), ..Default::default() };
    assert_eq!(withheld_rule(offer(P9, &none, &template)), "R13");
    // A prescriptions-only proxy (no record access) is offered the template; a lapsed one is not.
    let link = proxy_link(d(2026, 1, 1), AccessLevel::None);
    let proxy = Viewer::Proxy { link: &link, identity: Some(IdentityLevel::P9) };
    assert_eq!(offer(proxy, &auto, &template), Decision::Shown);
    let mut ended = proxy_link(d(2026, 1, 1), AccessLevel::None);
    ended.ends_on = Some(d(2026, 2, 1));
    let proxy = Viewer::Proxy { link: &ended, identity: Some(IdentityLevel::P9) };
    assert!(!offer(proxy, &auto, &template).is_shown());
}

#[test]
fn grants_made_before_a_transfer_in_do_not_reach_what_it_brought() {
    // R7: historic access granted by hand, or a proxy link from the beginning, made before the
    // record was transferred in, does not show the transferred entries until a new grant.
    let (p, pat) = (practice(), adult());
    let held = OnlineAccessSettings {
        grants: vec![grant(AccessLevel::Full, RecordFrom::Beginning, d(2026, 6, 1))],
        transfer_review_pending: Some(d(2026, 6, 1)),
        ..Default::default()
    };
    let mut transferred = consultation(30, at(2019, 1, 1));
    transferred.origin = Origin::TransferredIn { from_ods: "B82002".into() };
    let native_old = consultation(31, at(2019, 1, 1));
    let imported = Some(d(2026, 6, 1));
    let with = |acc: &OnlineAccessSettings, viewer: Viewer<'_>, e: &Entry| {
        let f = RecordFacts { transferred_in: imported, ..facts(&p, &pat, acc, &[]) };
        AccessPolicy::new(viewer, f, now()).decide(e)
    };
    let dec = with(&held, P9, &transferred);
    assert_eq!(dec, Decision::Withheld(Withheld::TransferredAwaitingReview { on: d(2026, 6, 1) }));
    assert_eq!(withheld_rule(dec), "R7");
    // The practice's own older entries are unaffected by the hold.
    assert_eq!(with(&held, P9, &native_old), Decision::Shown);
    // Once staff set the level again (after review), the hold is gone and the grant reaches.
    let reviewed = OnlineAccessSettings { transfer_review_pending: None, ..held.clone() };
    assert_eq!(with(&reviewed, P9, &transferred), Decision::Shown);
    // A proxy link "from the beginning" granted on or before the day of the transfer is held
    // back; one granted after it reaches.
    let child = patient(d(2018, 1, 1), d(2018, 1, 1));
    let mut link = proxy_link(d(2024, 1, 1), AccessLevel::Full);
    link.scope.record_from = RecordFrom::Beginning;
    let decide_proxy = |link: &ProxyLink| {
        let proxy = Viewer::Proxy { link, identity: Some(IdentityLevel::P9) };
        let f = RecordFacts { transferred_in: imported, ..facts(&p, &child, &reviewed, &[]) };
        AccessPolicy::new(proxy, f, now()).decide(&transferred)
    };
    assert!(!decide_proxy(&link).is_shown());
    link.granted_on = d(2026, 6, 1);
    assert!(!decide_proxy(&link).is_shown(), "granted on the day of the transfer: held");
    link.granted_on = d(2026, 6, 2);
    assert_eq!(decide_proxy(&link), Decision::Shown);
}
