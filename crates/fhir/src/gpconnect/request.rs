//! A GP Connect request as the Spine Secure Proxy delivers it: the `Ssp-*` headers, the JWT of
//! audit claims in `Authorization`, and the `Parameters` of `$gpc.getstructuredrecord`.
//!
//! The JWT is unsigned (`alg: none`) by design: the caller is authenticated by mutual TLS with the
//! Spine, and the claims say who is asking and why, for the audit trail. They are checked for
//! shape and time as the specification and its provider tests ask, never trusted for more.

use super::{GpcError, SpineCode};
use crate::{NHS_NUMBER_SYSTEM, ODS_SYSTEM};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::NhsNumber;
use chrono::NaiveDate;
use serde_json::{Map, Value};

pub const SDS_USER_SYSTEM: &str = "https://fhir.nhs.uk/Id/sds-user-id";
pub const SDS_ROLE_PROFILE_SYSTEM: &str = "https://fhir.nhs.uk/Id/sds-role-profile-id";

/// The largest `Authorization` header and body read (the claims and `Parameters` are small).
pub const MAX_BODY: usize = 64 * 1024;

/// The Spine Secure Proxy's headers, as received (absent headers are `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SspHeaders<'a> {
    pub trace_id: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub interaction_id: Option<&'a str>,
}

/// The checked headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssp {
    pub trace_id: String,
    /// The consumer system's ASID.
    pub from: String,
    /// The ASID the request is addressed to (this practice's).
    pub to: String,
}

fn bad(diagnostics: impl Into<String>) -> GpcError {
    GpcError::new(SpineCode::BadRequest, diagnostics)
}

fn is_asid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks that every `Ssp-*` header is there and that the interaction is the one this endpoint
/// serves (400 `BAD_REQUEST` otherwise, naming the header).
pub fn read_ssp(h: &SspHeaders<'_>, interaction: &str) -> Result<Ssp, GpcError> {
    let need = |v: Option<&str>, name: &str| -> Result<String, GpcError> {
        let v = v.map(str::trim).unwrap_or_default();
        if v.is_empty() {
            return Err(bad(format!("the {name} header is missing")));
        }
        if v.len() > 200 {
            return Err(bad(format!("the {name} header is too long")));
        }
        Ok(v.to_owned())
    };
    let trace_id = need(h.trace_id, "Ssp-TraceID")?;
    let from = need(h.from, "Ssp-From")?;
    let to = need(h.to, "Ssp-To")?;
    let got = need(h.interaction_id, "Ssp-InteractionID")?;
    if !is_asid(&from) {
        return Err(bad("the Ssp-From header is not an ASID"));
    }
    if !is_asid(&to) {
        return Err(bad("the Ssp-To header is not an ASID"));
    }
    if got != interaction {
        return Err(bad(format!("the Ssp-InteractionID header does not match the request (expected {interaction})")));
    }
    Ok(Ssp { trace_id, from, to })
}

/// Who is asking and why, from the JWT's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub issuer: String,
    pub audience: String,
    pub issued_at: i64,
    pub reason_for_request: String,
    pub requested_scope: String,
    /// The requesting organisation's ODS code and name.
    pub organisation_ods: String,
    pub organisation_name: String,
    /// The requesting practitioner's id at the consumer (`sub`), SDS user id (or `UNK`), SDS role
    /// profile id where sent, and name as written.
    pub practitioner_id: String,
    pub sds_user_id: String,
    pub sds_role_profile_id: Option<String>,
    pub practitioner_name: String,
    /// The requesting system, as "model version".
    pub device: String,
}

/// The claims every GP Connect JWT carries.
pub const REQUIRED_CLAIMS: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "reason_for_request",
    "requested_scope",
    "requesting_device",
    "requesting_organization",
    "requesting_practitioner",
];

/// How far ahead of this server's clock a token's `iat` may be.
pub const CLOCK_SKEW_SECONDS: i64 = 300;

/// Reads and checks the JWT in `authorization` (`Bearer <jwt>`) at `now` (UNIX seconds), for a
/// request that needs `scope` (`patient/*.read`, `organization/*.read`), addressed to a service
/// root whose URL ends with `service_root_path`.
pub fn read_claims(
    authorization: Option<&str>,
    now: i64,
    scope: &str,
    service_root_path: &str,
) -> Result<Claims, GpcError> {
    let header = authorization.map(str::trim).unwrap_or_default();
    if header.is_empty() {
        return Err(bad("the Authorization header is missing"));
    }
    let token = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .ok_or_else(|| bad("the Authorization header must be a Bearer token"))?;
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("the bearer token is not a JWT (three parts separated by dots)"));
    };
    let decode = |part: &str, what: &str| -> Result<Map<String, Value>, GpcError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| bad(format!("the JWT {what} is not base64url")))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(bad(format!("the JWT {what} is not a JSON object"))),
        }
    };
    let head = decode(head, "header")?;
    // GP Connect's JWT is unsigned: `alg` none and an empty signature. A signed token is not
    // what the specification sends, and its signature would not be checked: refused.
    if head.get("alg").and_then(Value::as_str) != Some("none") || !signature.is_empty() {
        return Err(bad("the JWT must be unsigned (alg none, an empty signature), as GP Connect sends it"));
    }
    let c = decode(body, "claims")?;
    for name in REQUIRED_CLAIMS {
        if c.get(name).is_none_or(Value::is_null) {
            return Err(bad(format!("the JWT claim {name} is missing")));
        }
    }
    let text = |name: &str| -> Result<String, GpcError> {
        match c.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            _ => Err(bad(format!("the JWT claim {name} must be a string"))),
        }
    };
    let number = |name: &str| -> Result<i64, GpcError> {
        c.get(name).and_then(Value::as_i64).ok_or_else(|| bad(format!("the JWT claim {name} must be a whole number")))
    };
    let issuer = text("iss")?;
    let sub = text("sub")?;
    let audience = text("aud")?;
    let (iat, exp) = (number("iat")?, number("exp")?);
    if exp - iat != 300 {
        return Err(bad("the JWT's exp must be exactly 300 seconds after its iat"));
    }
    if exp <= now {
        return Err(bad("the JWT has expired"));
    }
    if iat > now + CLOCK_SKEW_SECONDS {
        return Err(bad("the JWT's iat is in the future"));
    }
    if !is_service_root(&audience, service_root_path) {
        return Err(bad(format!(
            "the JWT's aud must be this endpoint's service root: https://<the provider's address>{}",
            service_root_path.trim_end_matches('/')
        )));
    }
    let reason_for_request = text("reason_for_request")?;
    if reason_for_request != "directcare" {
        return Err(bad("the JWT's reason_for_request must be directcare"));
    }
    let requested_scope = text("requested_scope")?;
    let mut scopes = requested_scope.split_whitespace();
    if scopes.next() != Some(scope) {
        return Err(bad(format!("the JWT's requested_scope must be {scope} for this request")));
    }
    for extra in scopes {
        match extra {
            "conf/N" => {}
            "conf/R" => return Err(bad("restricted (conf/R) access is for record migration, which is not offered")),
            other => return Err(bad(format!("the JWT's requested_scope holds an unknown scope {other}"))),
        }
    }

    let resource = |name: &str, kind: &str| -> Result<&Map<String, Value>, GpcError> {
        let Some(Value::Object(r)) = c.get(name) else {
            return Err(GpcError::new(
                SpineCode::InvalidResource,
                format!("the JWT claim {name} is not a FHIR resource"),
            ));
        };
        if r.get("resourceType").and_then(Value::as_str) != Some(kind) {
            return Err(bad(format!("the JWT claim {name} must be a {kind}")));
        }
        Ok(r)
    };
    let identifier = |r: &Map<String, Value>, system: &str| -> Option<String> {
        r.get("identifier")?.as_array()?.iter().find_map(|i| {
            (i.get("system")?.as_str()? == system).then(|| i.get("value")?.as_str().map(|v| v.trim().to_owned()))?
        })
    };

    let device = resource("requesting_device", "Device")?;
    let device = [device.get("model"), device.get("version")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");

    let org = resource("requesting_organization", "Organization")?;
    let organisation_ods = identifier(org, ODS_SYSTEM)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("the JWT's requesting_organization has no ODS code identifier"))?;
    let organisation_ods = caldicott_core::practice::OdsCode::parse(&organisation_ods)
        .map_err(|_| bad("the JWT's requesting_organization's ODS code is not an ODS code"))?
        .as_str()
        .to_owned();
    let organisation_name = shown_text(org.get("name").and_then(Value::as_str).unwrap_or_default());

    let who = resource("requesting_practitioner", "Practitioner")?;
    let practitioner_id = who.get("id").and_then(Value::as_str).unwrap_or_default();
    if practitioner_id != sub {
        return Err(bad("the JWT's sub must be the requesting_practitioner's id"));
    }
    let sds_user_id = identifier(who, SDS_USER_SYSTEM)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("the JWT's requesting_practitioner has no SDS user id identifier"))?;
    let sds_role_profile_id = identifier(who, SDS_ROLE_PROFILE_SYSTEM).filter(|v| !v.is_empty() && v != "UNK");
    let practitioner_name = who
        .get("name")
        .and_then(Value::as_array)
        .and_then(|n| n.first())
        .map(|n| {
            let words = |k: &str| -> Vec<String> {
                n.get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default()
            };
            let mut all = words("prefix");
            all.extend(words("given"));
            all.extend(n.get("family").and_then(Value::as_str).map(str::to_owned));
            shown_text(&all.join(" "))
        })
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad("the JWT's requesting_practitioner has no name"))?;

    Ok(Claims {
        issuer,
        audience,
        issued_at: iat,
        reason_for_request,
        requested_scope,
        organisation_ods,
        organisation_name,
        practitioner_id: sub,
        sds_user_id,
        sds_role_profile_id,
        practitioner_name,
        device,
    })
}

/// Whether `aud` names the service root: an absolute `https` URL, with a host, whose path is the
/// service root's exactly, and nothing after it. (The host is the consumer's knowledge of the
/// provider's address, which the Spine checked against SDS; it is not checked here.)
fn is_service_root(aud: &str, root: &str) -> bool {
    let Some(rest) = aud.strip_prefix("https://") else { return false };
    let Some((host, path)) = rest.split_once('/') else { return false };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    let path = format!("/{}", path.trim_end_matches('/'));
    host_ok && path == root.trim_end_matches('/')
}

/// Text from a claim as it may be shown and recorded: [`clean_text`], cut to 200 characters.
pub fn shown_text(s: &str) -> String {
    clean_text(s).chars().take(200).collect::<String>().trim().to_owned()
}

/// Free text as it may be kept, shown and recorded: line breaks and tabs become spaces (so
/// "120\n80" stays two numbers, and no line of a log is forged), other control characters and
/// the Unicode direction marks and overrides that could make it read as something else are
/// dropped; trimmed.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c.is_whitespace() { ' ' } else { c })
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A search period of whole dates; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

impl Period {
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start.is_none_or(|s| s <= d) && self.end.is_none_or(|e| d <= e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allergies {
    pub include_resolved: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Medication {
    pub include_issues: bool,
    pub from: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consultations {
    pub period: Option<Period>,
    pub most_recent: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Problems {
    /// `Some(true)`: active only; `Some(false)`: inactive only.
    pub active: Option<bool>,
    /// `major` or `minor`, as asked (see the structured writer for how it is answered).
    pub significance: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Immunisations {
    pub include_not_given: bool,
    pub include_status: bool,
}

/// One `$gpc.getstructuredrecord` request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredRequest {
    pub nhs_number: NhsNumber,
    pub include: Include,
}

/// What a request asks for beside the patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Include {
    pub allergies: Option<Allergies>,
    pub medication: Option<Medication>,
    pub consultations: Option<Consultations>,
    /// One per repetition of `includeProblems` (each a status and significance pair).
    pub problems: Vec<Problems>,
    pub immunisations: Option<Immunisations>,
    pub uncategorised: Option<Period>,
    pub investigations: Option<Period>,
    pub referrals: Option<Period>,
    /// `Some(None)`: every diary entry; `Some(Some(d))`: those due on or before `d`.
    pub diary: Option<Option<NaiveDate>>,
    /// Parameters and parts not recognised: `(name, text)` for the warning OperationOutcome.
    pub not_supported: Vec<(String, String)>,
}

impl Include {
    /// The clinical areas asked for, by their parameter names (for the audit trail).
    pub fn areas(&self) -> Vec<&'static str> {
        let mut a = Vec::new();
        let mut add = |on: bool, name| {
            if on {
                a.push(name)
            }
        };
        add(self.allergies.is_some(), "allergies");
        add(self.medication.is_some(), "medication");
        add(self.consultations.is_some(), "consultations");
        add(!self.problems.is_empty(), "problems");
        add(self.immunisations.is_some(), "immunisations");
        add(self.uncategorised.is_some(), "uncategorised");
        add(self.investigations.is_some(), "investigations");
        add(self.referrals.is_some(), "referrals");
        add(self.diary.is_some(), "diary");
        a
    }
}

fn invalid_parameter(diagnostics: impl Into<String>) -> GpcError {
    GpcError::new(SpineCode::InvalidParameter, diagnostics)
}

fn invalid_resource(diagnostics: impl Into<String>) -> GpcError {
    GpcError::new(SpineCode::InvalidResource, diagnostics)
}

/// A whole FHIR date (`YYYY-MM-DD`, nothing more nor less).
fn whole_date(v: &Value, name: &str) -> Result<NaiveDate, GpcError> {
    let s = v.as_str().ok_or_else(|| invalid_parameter(format!("{name} must be a date")))?;
    if s.len() != 10 {
        return Err(invalid_parameter(format!("{name} must be a whole date (YYYY-MM-DD), not {s}")));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| invalid_parameter(format!("{name} is not a valid date: {s}")))
}

/// A `Period` of whole dates, neither after `today`, start not after end.
fn past_period(v: &Value, name: &str, today: NaiveDate) -> Result<Period, GpcError> {
    let Some(o) = v.as_object() else {
        return Err(invalid_parameter(format!("{name} must be a Period")));
    };
    let start = o.get("start").map(|s| whole_date(s, &format!("{name}.start"))).transpose()?;
    let end = o.get("end").map(|e| whole_date(e, &format!("{name}.end"))).transpose()?;
    if start.is_none() && end.is_none() {
        return Err(invalid_parameter(format!("{name} has neither a start nor an end")));
    }
    if start.is_some_and(|s| s > today) {
        return Err(invalid_parameter(format!("{name}.start is in the future")));
    }
    if end.is_some_and(|e| e > today) {
        return Err(invalid_parameter(format!("{name}.end is in the future")));
    }
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(invalid_parameter(format!("{name}.start is after its end")));
        }
    }
    Ok(Period { start, end })
}

/// The value of a part: the one `value[x]` of the type asked for.
fn part_value<'v>(part: &'v Map<String, Value>, key: &str, name: &str) -> Result<&'v Value, GpcError> {
    match part.get(key) {
        Some(v) if !v.is_null() => Ok(v),
        _ => Err(invalid_parameter(format!("{name} has no {key}"))),
    }
}

fn boolean(part: &Map<String, Value>, name: &str) -> Result<bool, GpcError> {
    part_value(part, "valueBoolean", name)?
        .as_bool()
        .ok_or_else(|| invalid_parameter(format!("{name} must be true or false")))
}

/// Reads a `$gpc.getstructuredrecord` body on `today` (a UK date).
pub fn read_parameters(body: &[u8], today: NaiveDate) -> Result<StructuredRequest, GpcError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("the request body is not JSON"))?;
    if v.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(invalid_resource("the request body must be a Parameters resource"));
    }
    let Some(params) = v.get("parameter").and_then(Value::as_array) else {
        return Err(invalid_parameter("the Parameters resource holds no parameter"));
    };
    let mut nhs: Option<NhsNumber> = None;
    let mut r = Include::default();
    // Parts that may not be combined with includeConsultations or includeProblems.
    let mut filters: Vec<&'static str> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for p in params {
        let Some(p) = p.as_object() else {
            return Err(invalid_resource("each parameter must be an object"));
        };
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            return Err(invalid_resource("a parameter has no name"));
        };
        if name != "includeProblems" && seen.iter().any(|s| s == name) {
            return Err(invalid_resource(format!("{name} is given more than once")));
        }
        seen.push(name.to_owned());
        let parts: Vec<&Map<String, Value>> = match p.get("part") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_object().ok_or_else(|| invalid_resource(format!("{name} has a part that is not an object")))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid_resource(format!("{name}.part must be a list"))),
        };
        let part_name = |part: &Map<String, Value>| -> Result<String, GpcError> {
            part.get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| invalid_resource(format!("a part of {name} has no name")))
        };
        // A part given twice (each is 0..1 within its parameter) does not conform.
        let mut part_names: Vec<&str> = parts.iter().filter_map(|x| x.get("name").and_then(Value::as_str)).collect();
        part_names.sort_unstable();
        if let Some(w) = part_names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid_resource(format!("{name}.{} is given more than once", w[0])));
        }
        let unknown_part = |r: &mut Include, part: &str| {
            let full = format!("{name}.{part}");
            r.not_supported.push((full.clone(), format!("{full} is an unrecognised parameter")));
        };
        match name {
            "patientNHSNumber" => {
                let Some(id) = p.get("valueIdentifier").and_then(Value::as_object) else {
                    return Err(invalid_parameter("patientNHSNumber must be an Identifier"));
                };
                if id.get("system").and_then(Value::as_str) != Some(NHS_NUMBER_SYSTEM) {
                    return Err(GpcError::new(
                        SpineCode::InvalidIdentifierSystem,
                        format!("patientNHSNumber's system must be {NHS_NUMBER_SYSTEM}"),
                    ));
                }
                let Some(value) = id.get("value").and_then(Value::as_str) else {
                    return Err(GpcError::new(
                        SpineCode::InvalidNhsNumber,
                        "patientNHSNumber's value must be the NHS number as text",
                    ));
                };
                nhs = Some(
                    NhsNumber::parse(value).map_err(|e| GpcError::new(SpineCode::InvalidNhsNumber, e.to_string()))?,
                );
            }
            "includeAllergies" => {
                let mut resolved = None;
                for part in parts {
                    match part_name(part)?.as_str() {
                        "includeResolvedAllergies" => {
                            resolved = Some(boolean(part, "includeAllergies.includeResolvedAllergies")?)
                        }
                        other => unknown_part(&mut r, other),
                    }
                }
                let include_resolved = resolved
                    .ok_or_else(|| invalid_parameter("includeAllergies must have its includeResolvedAllergies part"))?;
                r.allergies = Some(Allergies { include_resolved });
            }
            "includeMedication" => {
                let mut m = Medication { include_issues: true, from: None };
                for part in parts {
                    match part_name(part)?.as_str() {
                        "includePrescriptionIssues" => {
                            m.include_issues = boolean(part, "includeMedication.includePrescriptionIssues")?
                        }
                        "medicationSearchFromDate" => {
                            let n = "includeMedication.medicationSearchFromDate";
                            let d = whole_date(part_value(part, "valueDate", n)?, n)?;
                            if d > today {
                                return Err(invalid_parameter(format!("{n} is in the future")));
                            }
                            m.from = Some(d);
                            filters.push("includeMedication.medicationSearchFromDate");
                        }
                        other => unknown_part(&mut r, other),
                    }
                }
                r.medication = Some(m);
            }
            "includeConsultations" => {
                let mut c = Consultations::default();
                for part in parts {
                    match part_name(part)?.as_str() {
                        "consultationSearchPeriod" => {
                            let n = "includeConsultations.consultationSearchPeriod";
                            c.period = Some(past_period(part_value(part, "valuePeriod", n)?, n, today)?);
                        }
                        "includeNumberOfMostRecent" => {
                            let n = "includeConsultations.includeNumberOfMostRecent";
                            let v = part
                                .get("valuePositiveInt")
                                .or_else(|| part.get("valueInteger"))
                                .ok_or_else(|| invalid_parameter(format!("{n} has no valuePositiveInt")))?;
                            let count = v
                                .as_u64()
                                .filter(|c| *c >= 1)
                                .ok_or_else(|| invalid_parameter(format!("{n} must be a whole number of 1 or more")))?;
                            c.most_recent = Some(usize::try_from(count).unwrap_or(usize::MAX));
                        }
                        other => unknown_part(&mut r, other),
                    }
                }
                if c.period.is_some() && c.most_recent.is_some() {
                    return Err(invalid_resource(
                        "includeConsultations may have a consultationSearchPeriod or an includeNumberOfMostRecent, not both",
                    ));
                }
                r.consultations = Some(c);
            }
            "includeProblems" => {
                let mut pr = Problems::default();
                for part in parts {
                    match part_name(part)?.as_str() {
                        "filterStatus" => {
                            let n = "includeProblems.filterStatus";
                            pr.active = Some(match part_value(part, "valueCode", n)?.as_str() {
                                Some("active") => true,
                                Some("inactive") => false,
                                _ => return Err(invalid_parameter(format!("{n} must be active or inactive"))),
                            });
                            filters.push("includeProblems.filterStatus");
                        }
                        "filterSignificance" => {
                            let n = "includeProblems.filterSignificance";
                            pr.significance = Some(match part_value(part, "valueCode", n)?.as_str() {
                                Some("major") => "major",
                                Some("minor") => "minor",
                                _ => return Err(invalid_parameter(format!("{n} must be major or minor"))),
                            });
                            filters.push("includeProblems.filterSignificance");
                        }
                        other => unknown_part(&mut r, other),
                    }
                }
                r.problems.push(pr);
            }
            "includeImmunisations" => {
                let mut i = Immunisations { include_not_given: false, include_status: true };
                for part in parts {
                    match part_name(part)?.as_str() {
                        "includeNotGiven" => {
                            i.include_not_given = boolean(part, "includeImmunisations.includeNotGiven")?;
                            filters.push("includeImmunisations.includeNotGiven");
                        }
                        "includeStatus" => {
                            i.include_status = boolean(part, "includeImmunisations.includeStatus")?;
                            filters.push("includeImmunisations.includeStatus");
                        }
                        other => unknown_part(&mut r, other),
                    }
                }
                r.immunisations = Some(i);
            }
            "includeUncategorisedData" | "includeInvestigations" | "includeReferrals" => {
                let wanted = match name {
                    "includeUncategorisedData" => "uncategorisedDataSearchPeriod",
                    "includeInvestigations" => "investigationSearchPeriod",
                    _ => "referralSearchPeriod",
                };
                let mut period = Period::default();
                for part in parts {
                    let pn = part_name(part)?;
                    if pn == wanted {
                        let n = format!("{name}.{wanted}");
                        period = past_period(part_value(part, "valuePeriod", &n)?, &n, today)?;
                        match name {
                            "includeUncategorisedData" => {
                                filters.push("includeUncategorisedData.uncategorisedDataSearchPeriod")
                            }
                            "includeReferrals" => filters.push("includeReferrals.referralSearchPeriod"),
                            _ => {}
                        }
                    } else {
                        unknown_part(&mut r, &pn);
                    }
                }
                match name {
                    "includeUncategorisedData" => r.uncategorised = Some(period),
                    "includeInvestigations" => r.investigations = Some(period),
                    _ => r.referrals = Some(period),
                }
            }
            "includeDiaryEntries" => {
                let mut until = None;
                for part in parts {
                    match part_name(part)?.as_str() {
                        "diaryEntriesSearchDate" => {
                            let n = "includeDiaryEntries.diaryEntriesSearchDate";
                            let d = whole_date(part_value(part, "valueDate", n)?, n)?;
                            if d < today {
                                return Err(invalid_parameter(format!("{n} must be today or later")));
                            }
                            until = Some(d);
                            filters.push("includeDiaryEntries.diaryEntriesSearchDate");
                        }
                        other => unknown_part(&mut r, other),
                    }
                }
                r.diary = Some(until);
            }
            other => r.not_supported.push((other.to_owned(), format!("{other} is an unrecognised parameter"))),
        }
    }
    let nhs_number = nhs.ok_or_else(|| invalid_parameter("patientNHSNumber is missing"))?;
    let problem_filters = ["includeProblems.filterStatus", "includeProblems.filterSignificance"];
    if r.consultations.is_some() {
        if let Some(f) = filters.first() {
            return Err(invalid_parameter(format!("{f} may not be sent with includeConsultations")));
        }
    }
    if !r.problems.is_empty() {
        if let Some(f) = filters.iter().find(|f| !problem_filters.contains(f)) {
            return Err(invalid_parameter(format!("{f} may not be sent with includeProblems")));
        }
    }
    Ok(StructuredRequest { nhs_number, include: r })
}

#[cfg(test)]
mod tests;
