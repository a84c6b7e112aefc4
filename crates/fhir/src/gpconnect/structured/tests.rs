//! The structured Bundle read as a consumer reads it: by List title and by reference.

use super::*;
use crate::gpconnect::request::{read_parameters, StructuredRequest};
use caldicott_core::entry::*;
use caldicott_core::gpconnect::release;
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::practice::*;
use caldicott_core::snomed::{Coding, ConceptId};
use chrono::{TimeZone, Utc};

fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, dd).unwrap()
}

fn practice() -> Practice {
    Practice {
        id: PracticeId::from_uuid(uuid::Uuid::from_u128(7)),
        ods_code: OdsCode::parse("A81001").unwrap(),
        name: "Test Surgery".into(),
        telephone: "01632 960000".into(),
        address: PostalAddress { lines: vec!["1 Test Street".into()], postcode: "TE1 1ST".into() },
        online: OnlineServicesSettings::default(),
    }
}

fn patient(p: &Practice) -> Patient {
    Patient {
        id: PatientId::from_uuid(uuid::Uuid::from_u128(8)),
        practice: p.id,
        nhs_number: caldicott_core::NhsNumber::parse("9434765919").unwrap(),
        name: PersonName { title: Some("Mrs".into()), given: "Ann".into(), family: "Example".into() },
        date_of_birth: d(1960, 4, 1),
        sex: Sex::Female,
        contact: ContactDetails::default(),
        preferred_contact: PreferredContactMethod::Unknown,
        registrations: vec![Registration::since(d(2000, 1, 1))],
        date_of_death: None,
    }
}

fn entry(n: u128, day: NaiveDate, body: EntryBody) -> Entry {
    Entry {
        id: EntryId::from_uuid(uuid::Uuid::from_u128(n)),
        patient: PatientId::from_uuid(uuid::Uuid::from_u128(8)),
        event_date: day,
        entered_at: Utc.from_utc_datetime(&day.and_hms_opt(10, 0, 0).unwrap()),
        author: Author { staff: Some(StaffId::from_uuid(uuid::Uuid::from_u128(99))), name: "Dr Ada Jones".into() },
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

fn request(extra: serde_json::Value) -> StructuredRequest {
    let mut parameter = vec![
        json!({"name": "patientNHSNumber", "valueIdentifier": {"system": NHS_NUMBER_SYSTEM, "value": "9434765919"}}),
    ];
    parameter.extend(extra.as_array().cloned().unwrap_or_default());
    read_parameters(
        &serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": parameter})).unwrap(),
        d(2026, 12, 6),
    )
    .unwrap()
}

fn bundle(entries: &[Entry], req: &StructuredRequest) -> Value {
    let (pr, pa) = (practice(), patient(&practice()));
    let rec = StructuredRecord {
        practice: &pr,
        patient: &pa,
        include: &req.include,
        entries: entries.iter().map(|e| (e, release(e))).collect(),
        today: d(2026, 12, 6),
        sds_user_ids: &sds_user_ids(),
    };
    structured_bundle(&rec)
}

/// The SDS user ids the practice recorded: the author of the entries here has one.
fn sds_user_ids() -> std::collections::HashMap<String, String> {
    [(StaffId::from_uuid(uuid::Uuid::from_u128(99)).to_string(), "G13579135".to_owned())].into_iter().collect()
}

fn resources(b: &Value) -> Vec<&Value> {
    b["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect()
}

fn list<'a>(b: &'a Value, title: &str) -> &'a Value {
    resources(b)
        .into_iter()
        .find(|r| r["resourceType"] == "List" && r["title"] == title)
        .unwrap_or_else(|| panic!("no {title} list"))
}

fn by_ref<'a>(b: &'a Value, reference: &str) -> Option<&'a Value> {
    let (t, id) = reference.split_once('/').unwrap();
    resources(b).into_iter().find(|r| r["resourceType"] == t && r["id"] == id)
}

fn warning_codes(l: &Value) -> Vec<String> {
    l["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["url"].as_str().unwrap().ends_with("ListWarningCode-1"))
        .map(|x| x["valueCode"].as_str().unwrap().to_owned())
        .collect()
}

fn nopat(r: &Value) -> bool {
    r["meta"]["security"].as_array().is_some_and(|s| s.iter().any(|c| c["code"] == "NOPAT"))
}

fn allergies() -> serde_json::Value {
    json!([{"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": false}]}])
}

#[test]
fn the_bundle_holds_the_patient_the_practice_and_a_list_per_area_asked_for() {
    let b = bundle(&[], &request(json!([{"name": "includeMedication"}, {"name": "includeReferrals"}])));
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "collection");
    assert_eq!(b["meta"]["profile"][0], BUNDLE_PROFILE);
    let p = resources(&b).into_iter().find(|r| r["resourceType"] == "Patient").unwrap();
    assert_eq!(p["identifier"][0]["value"], "9434765919");
    assert_eq!(p["identifier"][0]["system"], NHS_NUMBER_SYSTEM);
    let org = by_ref(&b, p["generalPractitioner"][0]["reference"].as_str().unwrap()).unwrap();
    assert_eq!(org["identifier"][0]["value"], "A81001");
    // Empty lists say so, as the specification shapes it.
    let meds = list(&b, "Medications and medical devices");
    assert_eq!(meds["code"]["coding"][0]["code"], "933361000000108");
    assert_eq!(meds["emptyReason"]["coding"][0]["code"], "no-content-recorded");
    assert_eq!(meds["note"][0]["text"], "Information not available");
    assert!(meds.get("entry").is_none());
    assert_eq!(list(&b, "Outbound referral")["code"]["coding"][0]["code"], "792931000000107");
    // Nothing else asked, nothing else there.
    assert!(resources(&b)
        .iter()
        .all(|r| r["resourceType"] != "List" || r["title"] != "Allergies and adverse reactions"));
    // No List and no Bundle ever carries NOPAT (the specification forbids it).
    assert!(!nopat(&b) && !nopat(meds));
}

#[test]
fn an_author_is_named_with_the_sds_user_id_the_practice_recorded() {
    let shown = entry(1, d(2026, 1, 1), EntryBody::Allergy { substance: "Penicillin".into(), reaction: "Rash".into() });
    let b = bundle(&[shown], &request(allergies()));
    let allergy = resources(&b).into_iter().find(|r| r["resourceType"] == "AllergyIntolerance").unwrap();
    let author = by_ref(&b, allergy["recorder"]["reference"].as_str().unwrap()).unwrap();
    assert_eq!(
        author["name"][0],
        json!({"text": "Dr Ada Jones", "family": "Jones", "given": ["Ada"], "prefix": ["Dr"]})
    );
    assert_eq!(author["identifier"][0], json!({"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "G13579135"}));
}

#[test]
fn hidden_online_means_nopat_and_private_or_safeguarding_means_withheld_with_a_warning() {
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let shown = entry(1, d(2026, 1, 1), EntryBody::Allergy { substance: "Penicillin".into(), reaction: "Rash".into() });
    let mut hidden =
        entry(2, d(2026, 1, 2), EntryBody::Allergy { substance: "Aspirin".into(), reaction: "Wheeze".into() });
    hidden.visibility = OnlineVisibility::Hidden(
        Redaction::new(HiddenReason::PotentiallyHarmful, "discuss first", "Dr A", at).unwrap(),
    );
    let mut private =
        entry(3, d(2026, 1, 3), EntryBody::Allergy { substance: "Codeine".into(), reaction: "Nausea".into() });
    private.confidential = true;
    let mut safeguarding =
        entry(4, d(2026, 1, 4), EntryBody::Allergy { substance: "Ibuprofen".into(), reaction: "Rash".into() });
    safeguarding.safeguarding = true;
    let b = bundle(&[shown, hidden, private, safeguarding], &request(allergies()));
    let l = list(&b, "Allergies and adverse reactions");
    let items: Vec<&str> =
        l["entry"].as_array().unwrap().iter().map(|e| e["item"]["reference"].as_str().unwrap()).collect();
    assert_eq!(items.len(), 2, "the private and safeguarding allergies are not released");
    let text = b.to_string();
    assert!(!text.contains("Codeine") && !text.contains("Ibuprofen"), "nothing of a withheld entry is in the answer");
    assert_eq!(warning_codes(l), vec!["confidential-items"]);
    assert_eq!(l["note"][0]["text"], Warning::ConfidentialItems.note());
    let shown = by_ref(&b, items[0]).unwrap();
    let hidden = by_ref(&b, items[1]).unwrap();
    assert!(!nopat(shown), "shown online: no label");
    assert!(nopat(hidden), "hidden online: NOPAT");
    assert_eq!(hidden["meta"]["security"][0]["system"], STU3_ACT_CODE_SYSTEM);
    assert_eq!(hidden["clinicalStatus"], "active");
    assert_eq!(hidden["verificationStatus"], "unconfirmed");
}

#[test]
fn only_withheld_entries_leave_an_empty_list_with_the_warning() {
    let mut private =
        entry(3, d(2026, 1, 3), EntryBody::Allergy { substance: "Codeine".into(), reaction: "Nausea".into() });
    private.confidential = true;
    let b = bundle(&[private], &request(allergies()));
    let l = list(&b, "Allergies and adverse reactions");
    assert!(l.get("entry").is_none());
    assert_eq!(l["emptyReason"]["coding"][0]["code"], "no-content-recorded");
    assert_eq!(warning_codes(l), vec!["confidential-items"]);
    assert_eq!(l["note"][0]["text"], Warning::ConfidentialItems.note());
}

#[test]
fn an_unfiled_result_waits_with_data_awaiting_filing() {
    let result = |n, filing| {
        entry(
            n,
            d(2026, 6, 1),
            EntryBody::TestResult {
                test: "HbA1c".into(),
                value: "48".into(),
                unit: "mmol/mol".into(),
                range: "20-41".into(),
                abnormal: true,
                filing,
            },
        )
    };
    let b = bundle(
        &[result(1, Filing::Filed), result(2, Filing::Unfiled)],
        &request(json!([{"name": "includeInvestigations"}])),
    );
    let l = list(&b, "Investigations and results");
    assert_eq!(l["entry"].as_array().unwrap().len(), 1);
    assert_eq!(warning_codes(l), vec!["data-awaiting-filing"]);
    let report = by_ref(&b, l["entry"][0]["item"]["reference"].as_str().unwrap()).unwrap();
    let obs = by_ref(&b, report["result"][0]["reference"].as_str().unwrap()).unwrap();
    assert_eq!(obs["valueQuantity"]["value"], 48.0);
    assert_eq!(obs["valueQuantity"]["code"], "mmol/mol");
    assert_eq!(obs["referenceRange"][0]["text"], "20-41");
    assert_eq!(obs["interpretation"]["text"], "Abnormal");
}

#[test]
fn medication_statement_plan_issues_and_quantities_as_written() {
    let template = entry(
        10,
        d(2025, 1, 10),
        EntryBody::Medication {
            drug: "Ramipril 5mg capsules".into(),
            dosage: "One daily".into(),
            quantity: "28 capsule(s)".into(),
            course: MedicationCourse::RepeatTemplate,
        },
    );
    let issue = |n, day| {
        entry(
            n,
            day,
            EntryBody::MedicationIssue {
                drug: "Ramipril 5mg capsules".into(),
                dosage: "One daily".into(),
                quantity: "28 capsule(s)".into(),
                template: Some(template.id),
            },
        )
    };
    let acute = entry(
        20,
        d(2026, 2, 1),
        EntryBody::Medication {
            drug: "Amoxicillin 500mg capsules".into(),
            dosage: "One three times a day".into(),
            quantity: "21, to finish the course".into(),
            course: MedicationCourse::Acute,
        },
    );
    let old_acute = entry(
        21,
        d(2020, 2, 1),
        EntryBody::Medication {
            drug: "Trimethoprim".into(),
            dosage: "".into(),
            quantity: "as directed".into(),
            course: MedicationCourse::Acute,
        },
    );
    let all = [template.clone(), issue(11, d(2025, 1, 10)), issue(12, d(2026, 3, 1)), acute, old_acute];
    let b = bundle(&all, &request(json!([{"name": "includeMedication"}])));
    let l = list(&b, "Medications and medical devices");
    assert_eq!(l["entry"].as_array().unwrap().len(), 3, "three statements: the repeat and two acutes");
    let st = by_ref(&b, &format!("MedicationStatement/{}", template.id)).unwrap();
    assert_eq!(st["status"], "active");
    let plan = by_ref(&b, st["basedOn"][0]["reference"].as_str().unwrap()).unwrap();
    assert_eq!(plan["intent"], "plan");
    assert_eq!(plan["extension"][0]["valueCodeableConcept"]["coding"][0]["code"], "repeat");
    assert_eq!(plan["extension"][1]["extension"][0]["valueUnsignedInt"], 2);
    assert_eq!(st["extension"][1]["valueDateTime"], "2026-03-01", "last issue date");
    let orders: Vec<&Value> = resources(&b)
        .into_iter()
        .filter(|r| r["resourceType"] == "MedicationRequest" && r["intent"] == "order")
        .collect();
    assert_eq!(orders.len(), 2);
    assert!(orders
        .iter()
        .all(|o| o["basedOn"][0]["reference"] == json!(format!("MedicationRequest/{}-plan", template.id))));
    assert!(by_ref(&b, st["medicationReference"]["reference"].as_str().unwrap()).is_some());
    // Quantities: the number where there is one, and every word kept.
    assert_eq!(plan["dispenseRequest"]["quantity"]["value"], 28.0);
    assert_eq!(plan["dispenseRequest"]["quantity"]["extension"][0]["valueString"], "capsule(s)");
    let acute_plan =
        by_ref(&b, &format!("MedicationRequest/{}-plan", EntryId::from_uuid(uuid::Uuid::from_u128(20)))).unwrap();
    assert_eq!(acute_plan["dispenseRequest"]["quantity"]["value"], 21.0);
    assert_eq!(acute_plan["dispenseRequest"]["quantity"]["extension"][0]["valueString"], ", to finish the course");
    let old_plan =
        by_ref(&b, &format!("MedicationRequest/{}-plan", EntryId::from_uuid(uuid::Uuid::from_u128(21)))).unwrap();
    assert_eq!(old_plan["dispenseRequest"]["quantity"]["extension"][0]["valueString"], "as directed");
    assert_eq!(old_plan["dosageInstruction"][0]["text"], "No information available");

    // From a date: the old acute goes, the repeat stays (ongoing), issues before the date go.
    let b = bundle(
        &all,
        &request(
            json!([{"name": "includeMedication", "part": [{"name": "medicationSearchFromDate", "valueDate": "2026-01-01"}]}]),
        ),
    );
    assert_eq!(list(&b, "Medications and medical devices")["entry"].as_array().unwrap().len(), 2);
    let orders = resources(&b).into_iter().filter(|r| r["intent"] == "order").count();
    assert_eq!(orders, 1);
    // Without issues.
    let b = bundle(
        &all,
        &request(
            json!([{"name": "includeMedication", "part": [{"name": "includePrescriptionIssues", "valueBoolean": false}]}]),
        ),
    );
    assert_eq!(resources(&b).into_iter().filter(|r| r["intent"] == "order").count(), 0);
}

#[test]
fn consultations_newest_first_and_the_most_recent_n() {
    let c = |n, day, text: &str| {
        entry(n, day, EntryBody::Consultation { text: text.into(), status: ConsultationStatus::Final })
    };
    let draft = entry(
        9,
        d(2026, 11, 1),
        EntryBody::Consultation { text: "unfinished".into(), status: ConsultationStatus::Draft },
    );
    let all = [c(1, d(2026, 1, 1), "first"), c(2, d(2026, 3, 1), "second"), c(3, d(2026, 5, 1), "third"), draft];
    let b = bundle(
        &all,
        &request(
            json!([{"name": "includeConsultations", "part": [{"name": "includeNumberOfMostRecent", "valuePositiveInt": 2}]}]),
        ),
    );
    let l = list(&b, "List of consultations");
    let items: Vec<&str> =
        l["entry"].as_array().unwrap().iter().map(|e| e["item"]["reference"].as_str().unwrap()).collect();
    assert_eq!(items.len(), 2);
    let enc = by_ref(&b, items[0]).unwrap();
    assert_eq!(enc["period"]["start"], "2026-05-01");
    assert_eq!(warning_codes(l), vec!["data-awaiting-filing"], "the draft waits");
    assert!(!b.to_string().contains("unfinished"));
    // The consultation's text is reached through its consultation and topic lists.
    let text = b.to_string();
    assert!(text.contains("third") && text.contains("second") && !text.contains("\"first\""));
    let b = bundle(
        &all,
        &request(
            json!([{"name": "includeConsultations", "part": [{"name": "consultationSearchPeriod", "valuePeriod": {"start": "2026-02-01", "end": "2026-04-01"}}]}]),
        ),
    );
    assert_eq!(list(&b, "List of consultations")["entry"].as_array().unwrap().len(), 1);
}

#[test]
fn problems_by_status_and_the_significance_filter_answered_with_a_warning() {
    let p = |n, active| entry(n, d(2024, 1, 1), EntryBody::Problem { title: format!("Problem {n}"), active });
    let all = [p(1, true), p(2, false)];
    let b = bundle(
        &all,
        &request(json!([{"name": "includeProblems", "part": [{"name": "filterStatus", "valueCode": "active"}]}])),
    );
    let l = list(&b, "Problems");
    assert_eq!(l["entry"].as_array().unwrap().len(), 1);
    let c = by_ref(&b, l["entry"][0]["item"]["reference"].as_str().unwrap()).unwrap();
    assert_eq!(c["clinicalStatus"], "active");
    assert_eq!(c["category"][0]["coding"][0]["code"], "problem-list-item");
    let b = bundle(
        &all,
        &request(json!([{"name": "includeProblems", "part": [{"name": "filterSignificance", "valueCode": "minor"}]}])),
    );
    assert_eq!(list(&b, "Problems")["entry"].as_array().unwrap().len(), 2, "every problem, never fewer");
    let oo = resources(&b).into_iter().find(|r| r["resourceType"] == "OperationOutcome").unwrap();
    assert_eq!(oo["issue"][0]["severity"], "warning");
    assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "NOT_IMPLEMENTED");
    assert_eq!(oo["issue"][0]["diagnostics"], "includeProblems.filterSignificance");
}

#[test]
fn unknown_parameters_come_back_as_one_warning_outcome() {
    let b = bundle(&[], &request(json!([{"name": "includeSomethingNew"}, {"name": "includeMedication"}])));
    let oo: Vec<&Value> = resources(&b).into_iter().filter(|r| r["resourceType"] == "OperationOutcome").collect();
    assert_eq!(oo.len(), 1);
    assert_eq!(oo[0]["issue"][0]["details"]["text"], "includeSomethingNew is an unrecognised parameter");
}

#[test]
fn diary_entries_due_by_the_date_and_coded_data_in_the_period() {
    let diary = |n, due| entry(n, d(2026, 1, 1), EntryBody::Diary { text: format!("Recall {n}"), due });
    let mut coded = entry(5, d(2026, 6, 1), EntryBody::Coded { value: Some("Non-smoker".into()) });
    coded.code = Some(Coding { concept: ConceptId::parse("8392000").unwrap(), term: "Non-smoker".into() });
    let all = [diary(1, d(2026, 12, 20)), diary(2, d(2027, 6, 1)), coded];
    let b = bundle(
        &all,
        &request(json!([
            {"name": "includeDiaryEntries", "part": [{"name": "diaryEntriesSearchDate", "valueDate": "2026-12-31"}]},
            {"name": "includeUncategorisedData", "part": [{"name": "uncategorisedDataSearchPeriod", "valuePeriod": {"start": "2026-01-01"}}]}
        ])),
    );
    let l = list(&b, "Patient recall administration");
    assert_eq!(l["entry"].as_array().unwrap().len(), 1);
    let pr = by_ref(&b, l["entry"][0]["item"]["reference"].as_str().unwrap()).unwrap();
    assert!(nopat(pr), "diary entries are never for the patient (R8)");
    let l = list(&b, "Uncategorised data");
    let obs = by_ref(&b, l["entry"][0]["item"]["reference"].as_str().unwrap()).unwrap();
    assert_eq!(obs["code"]["coding"][0]["code"], "8392000");
    assert_eq!(obs["valueString"], "Non-smoker");
}

mod generated {
    //! Over generated records: what must stay at the practice never appears in the answer, and
    //! whatever is not for the patient appears only labelled.
    use super::*;
    use proptest::prelude::*;

    fn body(kind: u8, n: u128, marker: &str, flag: bool) -> EntryBody {
        match kind % 9 {
            0 => EntryBody::Allergy { substance: format!("{marker} substance"), reaction: "rash".into() },
            1 => EntryBody::Medication {
                drug: format!("{marker} drug"),
                dosage: "one daily".into(),
                quantity: "28".into(),
                course: if flag { MedicationCourse::RepeatTemplate } else { MedicationCourse::Acute },
            },
            2 => EntryBody::Consultation {
                text: format!("{marker} consultation"),
                status: if flag { ConsultationStatus::Final } else { ConsultationStatus::Draft },
            },
            3 => EntryBody::Problem { title: format!("{marker} problem"), active: flag },
            4 => EntryBody::Immunisation { vaccine: format!("{marker} vaccine") },
            5 => EntryBody::Coded { value: Some(format!("{marker} value")) },
            6 => EntryBody::TestResult {
                test: format!("{marker} test"),
                value: "5".into(),
                unit: "mmol/L".into(),
                range: "".into(),
                abnormal: false,
                filing: if flag { Filing::Filed } else { Filing::Unfiled },
            },
            7 => EntryBody::Diary { text: format!("{marker} diary"), due: d(2026, 12, 1 + (n % 20) as u32) },
            _ => EntryBody::AdminMessage {
                subject: format!("{marker} admin"),
                text: String::new(),
                channel: AdminChannel::Note,
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
        #[test]
        fn nothing_withheld_leaves_and_nothing_for_clinicians_only_goes_unlabelled(
            spec in proptest::collection::vec((0u8..9, any::<bool>(), 0u8..6), 1..30),
        ) {
            let at = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
            let entries: Vec<Entry> = spec.iter().enumerate().map(|(i, (kind, flag, mark))| {
                let n = i as u128 + 100;
                let marker = format!("MARK{n:04}");
                let mut e = entry(n, d(2026, 1, 1 + (i % 28) as u32), body(*kind, n, &marker, *flag));
                match mark {
                    1 => e.confidential = true,
                    2 => e.safeguarding = true,
                    3 => e.nopat = true,
                    4 => e.visibility = OnlineVisibility::Hidden(Redaction::new(HiddenReason::ThirdParty, "x", "Dr A", at).unwrap()),
                    5 => e.superseded = Some(Superseded { at, note: "replaced".into() }),
                    _ => {}
                }
                e
            }).collect();
            let b = bundle(&entries, &request(json!([
                {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": true}]},
                {"name": "includeMedication"}, {"name": "includeConsultations"}, {"name": "includeProblems"},
                {"name": "includeImmunisations"}, {"name": "includeUncategorisedData"},
                {"name": "includeInvestigations"}, {"name": "includeDiaryEntries"}])));
            let found = resources(&b);
            for (i, e) in entries.iter().enumerate() {
                let marker = format!("MARK{:04}", i as u128 + 100);
                let holders: Vec<&&Value> = found.iter().filter(|r| r.to_string().contains(&marker)).collect();
                match release(e) {
                    Release::Include { nopat: must_label } => {
                        prop_assert!(!holders.is_empty(), "{marker} released");
                        for r in &holders {
                            prop_assert_eq!(nopat(r), must_label, "{} label", marker);
                        }
                        // The rule itself: labelled exactly when the patient would not see it online.
                        let never_online = e.nopat || e.visibility.is_hidden() || matches!(e.body, EntryBody::Diary { .. });
                        prop_assert_eq!(must_label, never_online);
                    }
                    Release::Withhold(_) | Release::Skip => {
                        prop_assert!(holders.is_empty(), "{marker} must not leave: {:?}", e);
                        // Private and safeguarding entries are withheld with the warning (unless
                        // not part of the record's areas at all).
                        let confidential_warned = matches!(release(e), Release::Withhold(Warning::ConfidentialItems));
                        let outside_areas = e.superseded.is_some() || matches!(e.body, EntryBody::AdminMessage { .. });
                        prop_assert!(!(e.confidential || e.safeguarding) || confidential_warned || outside_areas);
                    }
                }
            }
            // No List and no Bundle carries NOPAT.
            prop_assert!(!nopat(&b));
            prop_assert!(found.iter().filter(|r| r["resourceType"] == "List").all(|l| !nopat(l)));
        }
    }
}
