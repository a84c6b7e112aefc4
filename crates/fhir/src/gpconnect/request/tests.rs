//! Each case is a request as the GP Connect specification's examples write it, changed in the one
//! way the specification's error table names, and the Spine code the table gives.

use super::*;
use serde_json::json;

const NOW: i64 = 1_780_000_000;
const ROOT: &str = "/gpconnect/A81001/STU3/1/structured";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 6).unwrap()
}

/// The specification's example claims, issued at `NOW`.
fn claims() -> Value {
    json!({
        "iss": "https://consumersupplier.thirdparty.nhs.uk/",
        "sub": "10019",
        "aud": "https://provider.example.nhs.uk/gpconnect/A81001/STU3/1/structured",
        "exp": NOW + 300,
        "iat": NOW,
        "reason_for_request": "directcare",
        "requested_scope": "patient/*.read",
        "requesting_device": {"resourceType": "Device", "identifier": [{"system": "https://consumersupplier.com/Id/device-identifier", "value": "CONS-APP-4"}], "model": "Consumer product name", "version": "5.3.0"},
        "requesting_organization": {"resourceType": "Organization", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A1001"}], "name": "Test Hospital"},
        "requesting_practitioner": {"resourceType": "Practitioner", "id": "10019",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "111222333444"}, {"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "444555666777"}, {"system": "https://consumersupplier.com/Id/user-guid", "value": "98ed4f78-814d-4266-8d5b-cde742f3093c"}],
            "name": [{"family": "Jones", "given": ["Claire"], "prefix": ["Dr"]}]}
    })
}

fn jwt(claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    format!("Bearer {head}.{body}.")
}

fn read(c: &Value) -> Result<Claims, GpcError> {
    read_claims(Some(&jwt(c)), NOW + 10, "patient/*.read", ROOT)
}

fn code_of<T: std::fmt::Debug>(r: Result<T, GpcError>) -> SpineCode {
    r.expect_err("refused").code
}

#[test]
fn the_specifications_example_claims_are_read() {
    let c = read(&claims()).unwrap();
    assert_eq!(c.organisation_ods, "A1001");
    assert_eq!(c.organisation_name, "Test Hospital");
    assert_eq!(c.sds_user_id, "111222333444");
    assert_eq!(c.sds_role_profile_id.as_deref(), Some("444555666777"));
    assert_eq!(c.practitioner_name, "Dr Claire Jones");
    assert_eq!(c.device, "Consumer product name 5.3.0");
    // conf/N is the default confidentiality scope and may be sent.
    let mut c = claims();
    c["requested_scope"] = json!("patient/*.read conf/N");
    assert!(read(&c).is_ok());
}

#[test]
fn every_claim_is_required() {
    // The specification's list of claims, each one left out in turn.
    assert_eq!(REQUIRED_CLAIMS.len(), claims().as_object().unwrap().len());
    for name in REQUIRED_CLAIMS {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        let e = read(&c).expect_err(name);
        assert_eq!(e.code, SpineCode::BadRequest, "{name}");
        assert!(e.diagnostics.contains(name), "{name}: {}", e.diagnostics);
    }
}

#[test]
fn the_token_lives_exactly_five_minutes_and_not_after() {
    let mut c = claims();
    c["exp"] = json!(NOW + 301);
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    c["exp"] = json!(NOW + 299);
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    c["exp"] = json!(NOW - 1);
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    // Expired: issued more than five minutes ago.
    let e = read_claims(Some(&jwt(&claims())), NOW + 300, "patient/*.read", ROOT).unwrap_err();
    assert!(e.diagnostics.contains("expired"), "{}", e.diagnostics);
    // A clock a little behind the consumer's is tolerated; a token from far ahead is not.
    let mut c = claims();
    c["iat"] = json!(NOW + 200);
    c["exp"] = json!(NOW + 500);
    assert!(read(&c).is_ok());
    c["iat"] = json!(NOW + 3600);
    c["exp"] = json!(NOW + 3900);
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
}

#[test]
fn reason_scope_and_audience_must_fit_the_request() {
    let mut c = claims();
    c["reason_for_request"] = json!("secondaryuses");
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    let mut c = claims();
    c["requested_scope"] = json!("organization/*.read");
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    let mut c = claims();
    c["requested_scope"] = json!("patient/*.read conf/R");
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    // aud is the service root, exactly: an https URL with a host, the root's path, nothing more.
    for aud in [
        "https://provider.example.nhs.uk/gpconnect/B82002/STU3/1/structured",
        "http://provider.example.nhs.uk/gpconnect/A81001/STU3/1/structured",
        "/gpconnect/A81001/STU3/1/structured",
        "javascript:alert(1)//gpconnect/A81001/STU3/1/structured",
        "https:///gpconnect/A81001/STU3/1/structured",
        "https://evil.example/x/gpconnect/A81001/STU3/1/structured",
        "https://provider.example.nhs.uk/gpconnect/A81001/STU3/1/structured?x=1",
    ] {
        let mut c = claims();
        c["aud"] = json!(aud);
        assert_eq!(code_of(read(&c)), SpineCode::BadRequest, "{aud}");
    }
    let mut c = claims();
    c["aud"] = json!("https://provider.example.nhs.uk:8443/gpconnect/A81001/STU3/1/structured/");
    assert!(read(&c).is_ok(), "a port and a trailing slash are fine");
}

#[test]
fn the_token_is_unsigned_as_gp_connect_sends_it() {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    for head in [r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"typ":"JWT"}"#] {
        let h = format!("Bearer {}.{body}.", URL_SAFE_NO_PAD.encode(head));
        assert_eq!(code_of(read_claims(Some(&h), NOW + 10, "patient/*.read", ROOT)), SpineCode::BadRequest, "{head}");
    }
    let h = format!("Bearer {}.{body}.c2lnbmF0dXJl", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    assert_eq!(code_of(read_claims(Some(&h), NOW + 10, "patient/*.read", ROOT)), SpineCode::BadRequest);
}

#[test]
fn what_the_claims_say_of_people_is_checked_and_made_safe_to_show() {
    let mut c = claims();
    c["requesting_organization"]["identifier"][0]["value"] = json!("RXX02<b>");
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest, "an ODS code is letters and digits");
    let mut c = claims();
    c["requesting_practitioner"]["name"][0]["family"] = json!("Jones\u{202E}evil\nFAKE LOG LINE\u{0000}");
    c["requesting_organization"]["name"] = json!("x".repeat(5000));
    let read_back = read(&c).unwrap();
    assert_eq!(read_back.practitioner_name, "Dr Claire Jonesevil FAKE LOG LINE", "a line break is a space");
    assert_eq!(read_back.organisation_name.chars().count(), 200);
}

#[test]
fn the_requesting_resources_must_be_what_they_say() {
    let mut c = claims();
    c["requesting_organization"]["resourceType"] = json!("InvalidResourceType");
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    let mut c = claims();
    c["requesting_practitioner"] = json!("Dr Jones");
    assert_eq!(code_of(read(&c)), SpineCode::InvalidResource);
    let mut c = claims();
    c["requesting_organization"]["identifier"] = json!([]);
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    let mut c = claims();
    c["requesting_practitioner"]["identifier"] =
        json!([{"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "1"}]);
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    let mut c = claims();
    c["requesting_practitioner"].as_object_mut().unwrap().remove("name");
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
    let mut c = claims();
    c["sub"] = json!("10020");
    assert_eq!(code_of(read(&c)), SpineCode::BadRequest);
}

#[test]
fn a_token_that_is_not_a_jwt_is_a_bad_request() {
    for h in ["", "Basic abc", "Bearer abc", "Bearer a.b", "Bearer !!!.???.", "Bearer e30.e30.x.y"] {
        let e = read_claims(Some(h), NOW, "patient/*.read", ROOT).unwrap_err();
        assert_eq!(e.code, SpineCode::BadRequest, "{h}");
    }
    assert_eq!(code_of(read_claims(None, NOW, "patient/*.read", ROOT)), SpineCode::BadRequest);
}

#[test]
fn every_ssp_header_is_required_and_the_interaction_must_match() {
    let full = SspHeaders {
        trace_id: Some("09a01679-2564-0fb4-5129-aecc81ea2706"),
        from: Some("200000000359"),
        to: Some("918999198738"),
        interaction_id: Some(crate::gpconnect::STRUCTURED_INTERACTION),
    };
    let ok = read_ssp(&full, crate::gpconnect::STRUCTURED_INTERACTION).unwrap();
    assert_eq!(ok.from, "200000000359");
    for (name, h) in [
        ("Ssp-TraceID", SspHeaders { trace_id: None, ..full }),
        ("Ssp-From", SspHeaders { from: Some(" "), ..full }),
        ("Ssp-To", SspHeaders { to: None, ..full }),
        ("Ssp-InteractionID", SspHeaders { interaction_id: None, ..full }),
    ] {
        let e = read_ssp(&h, crate::gpconnect::STRUCTURED_INTERACTION).unwrap_err();
        assert_eq!(e.code, SpineCode::BadRequest);
        assert!(e.diagnostics.contains(name), "{}", e.diagnostics);
    }
    let wrong = SspHeaders { interaction_id: Some(crate::gpconnect::STRUCTURED_METADATA_INTERACTION), ..full };
    assert_eq!(code_of(read_ssp(&wrong, crate::gpconnect::STRUCTURED_INTERACTION)), SpineCode::BadRequest);
    let not_asid = SspHeaders { to: Some("A81001"), ..full };
    assert_eq!(code_of(read_ssp(&not_asid, crate::gpconnect::STRUCTURED_INTERACTION)), SpineCode::BadRequest);
}

fn params(extra: Value) -> Vec<u8> {
    let mut parameter = vec![
        json!({"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}}),
    ];
    if let Value::Array(a) = extra {
        parameter.extend(a);
    }
    serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": parameter})).unwrap()
}

fn parse(extra: Value) -> Result<StructuredRequest, GpcError> {
    read_parameters(&params(extra), today())
}

#[test]
fn the_specifications_full_example_is_read() {
    // The 1.6 example, with dates moved to fit this test's today (diary on or after it).
    let r = parse(json!([
        {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": true}]},
        {"name": "includeMedication", "part": [{"name": "includePrescriptionIssues", "valueBoolean": true}]},
        {"name": "includeUncategorisedData", "part": [{"name": "uncategorisedDataSearchPeriod", "valuePeriod": {"start": "2016-12-25", "end": "2018-12-25"}}]},
        {"name": "includeInvestigations", "part": [{"name": "investigationSearchPeriod", "valuePeriod": {"start": "2017-01-02", "end": "2017-07-02"}}]},
        {"name": "includeReferrals"},
        {"name": "includeImmunisations"},
        {"name": "includeDiaryEntries"}
    ]))
    .unwrap();
    assert_eq!(r.nhs_number.as_str(), "9434765919");
    assert_eq!(r.include.allergies, Some(Allergies { include_resolved: true }));
    assert_eq!(r.include.medication, Some(Medication { include_issues: true, from: None }));
    let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd);
    assert_eq!(r.include.uncategorised, Some(Period { start: d(2016, 12, 25), end: d(2018, 12, 25) }));
    assert_eq!(r.include.investigations, Some(Period { start: d(2017, 1, 2), end: d(2017, 7, 2) }));
    assert_eq!(r.include.referrals, Some(Period::default()));
    assert_eq!(r.include.immunisations, Some(Immunisations { include_not_given: false, include_status: true }));
    assert_eq!(r.include.diary, Some(None));
    assert!(r.include.not_supported.is_empty());
    // Consultations with a number of most recent; problems repeated with their filters.
    let r = parse(json!([
        {"name": "includeConsultations", "part": [{"name": "includeNumberOfMostRecent", "valuePositiveInt": 3}]},
    ]))
    .unwrap();
    assert_eq!(r.include.consultations, Some(Consultations { period: None, most_recent: Some(3) }));
    let r = parse(json!([
        {"name": "includeProblems", "part": [{"name": "filterStatus", "valueCode": "active"}, {"name": "filterSignificance", "valueCode": "major"}]},
        {"name": "includeProblems", "part": [{"name": "filterStatus", "valueCode": "inactive"}]},
    ]))
    .unwrap();
    assert_eq!(r.include.problems.len(), 2);
    assert_eq!(r.include.problems[0], Problems { active: Some(true), significance: Some("major") });
}

#[test]
fn the_nhs_number_is_required_and_checked() {
    let body = serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": [{"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": false}]}]})).unwrap();
    assert_eq!(code_of(read_parameters(&body, today())), SpineCode::InvalidParameter);
    let body = serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": [{"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}}]})).unwrap();
    assert_eq!(code_of(read_parameters(&body, today())), SpineCode::InvalidNhsNumber);
    let body = serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": [{"name": "patientNHSNumber", "valueIdentifier": {"system": "https://example.org/local", "value": "9434765919"}}]})).unwrap();
    assert_eq!(code_of(read_parameters(&body, today())), SpineCode::InvalidIdentifierSystem);
}

#[test]
fn a_body_that_is_not_parameters_is_refused() {
    assert_eq!(code_of(read_parameters(b"not json", today())), SpineCode::BadRequest);
    assert_eq!(code_of(read_parameters(br#"{"resourceType":"Patient"}"#, today())), SpineCode::InvalidResource);
    assert_eq!(code_of(read_parameters(br#"{"resourceType":"Parameters"}"#, today())), SpineCode::InvalidParameter);
    // A 0..1 parameter given twice does not conform to the operation, nor a part given twice.
    let twice = json!([{"name": "includeMedication"}, {"name": "includeMedication"}]);
    assert_eq!(code_of(parse(twice)), SpineCode::InvalidResource);
    let part_twice = json!([{"name": "includeConsultations", "part": [
        {"name": "includeNumberOfMostRecent", "valuePositiveInt": 1}, {"name": "includeNumberOfMostRecent", "valuePositiveInt": 3}]}]);
    assert_eq!(code_of(parse(part_twice)), SpineCode::InvalidResource);
    // An NHS number that is not text.
    let number = serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": [{"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": 9434765919u64}}]})).unwrap();
    assert_eq!(code_of(read_parameters(&number, today())), SpineCode::InvalidNhsNumber);
}

#[test]
fn the_error_table_of_the_specification() {
    let cases: Vec<(&str, Value, SpineCode)> = vec![
        (
            "allergies without includeResolvedAllergies",
            json!([{"name": "includeAllergies"}]),
            SpineCode::InvalidParameter,
        ),
        (
            "medicationSearchFromDate partial",
            json!([{"name": "includeMedication", "part": [{"name": "medicationSearchFromDate", "valueDate": "2017-06"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "medicationSearchFromDate with a time",
            json!([{"name": "includeMedication", "part": [{"name": "medicationSearchFromDate", "valueDate": "2017-06-04T10:00:00+00:00"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "medicationSearchFromDate in the future",
            json!([{"name": "includeMedication", "part": [{"name": "medicationSearchFromDate", "valueDate": "2026-12-07"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "consultation period start in the future",
            json!([{"name": "includeConsultations", "part": [{"name": "consultationSearchPeriod", "valuePeriod": {"start": "2026-12-07"}}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "consultation period end in the future",
            json!([{"name": "includeConsultations", "part": [{"name": "consultationSearchPeriod", "valuePeriod": {"start": "2026-01-01", "end": "2027-01-01"}}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "consultation period start after end",
            json!([{"name": "includeConsultations", "part": [{"name": "consultationSearchPeriod", "valuePeriod": {"start": "2026-02-01", "end": "2026-01-01"}}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "consultation period and most recent",
            json!([{"name": "includeConsultations", "part": [{"name": "consultationSearchPeriod", "valuePeriod": {"start": "2026-01-01"}}, {"name": "includeNumberOfMostRecent", "valuePositiveInt": 3}]}]),
            SpineCode::InvalidResource,
        ),
        (
            "most recent of nought",
            json!([{"name": "includeConsultations", "part": [{"name": "includeNumberOfMostRecent", "valuePositiveInt": 0}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "uncategorised period end in the future",
            json!([{"name": "includeUncategorisedData", "part": [{"name": "uncategorisedDataSearchPeriod", "valuePeriod": {"end": "2027-01-01"}}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "filterStatus not active or inactive",
            json!([{"name": "includeProblems", "part": [{"name": "filterStatus", "valueCode": "resolved"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "filterSignificance not major or minor",
            json!([{"name": "includeProblems", "part": [{"name": "filterSignificance", "valueCode": "severe"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "investigation period partial",
            json!([{"name": "includeInvestigations", "part": [{"name": "investigationSearchPeriod", "valuePeriod": {"start": "2017"}}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "referral period in the future",
            json!([{"name": "includeReferrals", "part": [{"name": "referralSearchPeriod", "valuePeriod": {"start": "2027-01-01"}}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "diary search date in the past",
            json!([{"name": "includeDiaryEntries", "part": [{"name": "diaryEntriesSearchDate", "valueDate": "2026-12-05"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "a part without a value",
            json!([{"name": "includeMedication", "part": [{"name": "includePrescriptionIssues"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "medication date with consultations",
            json!([{"name": "includeConsultations"}, {"name": "includeMedication", "part": [{"name": "medicationSearchFromDate", "valueDate": "2026-01-01"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "problem filter with consultations",
            json!([{"name": "includeConsultations"}, {"name": "includeProblems", "part": [{"name": "filterStatus", "valueCode": "active"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "diary date with problems",
            json!([{"name": "includeProblems"}, {"name": "includeDiaryEntries", "part": [{"name": "diaryEntriesSearchDate", "valueDate": "2026-12-06"}]}]),
            SpineCode::InvalidParameter,
        ),
        (
            "immunisation status with problems",
            json!([{"name": "includeProblems"}, {"name": "includeImmunisations", "part": [{"name": "includeStatus", "valueBoolean": false}]}]),
            SpineCode::InvalidParameter,
        ),
    ];
    for (what, extra, code) in cases {
        let e = parse(extra).expect_err(what);
        assert_eq!(e.code, code, "{what}: {}", e.diagnostics);
        assert!(!e.diagnostics.is_empty(), "{what}: the diagnostics name the parameter");
    }
    // The boundaries: today is allowed where "not after today" is the rule, and so is a diary date of today.
    assert!(parse(json!([{"name": "includeMedication", "part": [{"name": "medicationSearchFromDate", "valueDate": "2026-12-06"}]}])).is_ok());
    assert!(parse(json!([{"name": "includeDiaryEntries", "part": [{"name": "diaryEntriesSearchDate", "valueDate": "2026-12-06"}]}])).is_ok());
    // Problem filters with problems are fine; top-level areas combine freely.
    assert!(parse(json!([{"name": "includeProblems", "part": [{"name": "filterStatus", "valueCode": "active"}]}, {"name": "includeConsultations"}, {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": false}]}])).is_err());
    assert!(parse(
        json!([{"name": "includeProblems"}, {"name": "includeConsultations"}, {"name": "includeMedication"}])
    )
    .is_ok());
}

#[test]
fn unknown_parameters_and_parts_are_warnings_not_errors() {
    let r = parse(json!([
        {"name": "includeSomethingNew"},
        {"name": "includeMedication", "part": [{"name": "filterPrescriptionType", "valueCode": "acute"}]}
    ]))
    .unwrap();
    assert_eq!(
        r.include.not_supported,
        vec![
            ("includeSomethingNew".to_owned(), "includeSomethingNew is an unrecognised parameter".to_owned()),
            (
                "includeMedication.filterPrescriptionType".to_owned(),
                "includeMedication.filterPrescriptionType is an unrecognised parameter".to_owned()
            ),
        ]
    );
    assert!(r.include.medication.is_some());
}
