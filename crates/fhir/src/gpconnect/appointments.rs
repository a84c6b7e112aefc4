//! GP Connect Appointment Management (STU3, specification 1.2): other care settings (NHS 111,
//! urgent care, hospitals) search the practice's free slots, book one for a patient registered
//! here, read and list the patient's appointments, amend what they wrote on their own booking,
//! and cancel it.
//!
//! This module reads the requests (search parameters, `Appointment` bodies) and writes the
//! answers (`GPConnect-Slot-1`, `GPConnect-Schedule-1`, `GPConnect-Appointment-1` and the
//! CareConnect-GPC Practitioner, Location and Organization they reference). Which slots may be
//! offered, and whether a change is allowed, is the caller's decision.

use super::request::{clean_text, SDS_USER_SYSTEM};
use super::structured::{organization_resource, patient_resource};
use super::{GpcError, SpineCode};
use crate::ODS_SYSTEM;
use caldicott_core::appointments::{
    uk_instant, uk_time, Appointment, BookingOrganisation, OrganisationType, Slot, SlotType,
};
use caldicott_core::patient::Patient;
use caldicott_core::practice::{OdsCode, Practice};
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const METADATA_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:read:metadata-1";
pub const PATIENT_SEARCH_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:search:patient-1";
pub const SLOT_SEARCH_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:search:slot-1";
pub const BOOK_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:create:appointment-1";
pub const READ_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:read:appointment-1";
pub const PATIENT_APPOINTMENTS_INTERACTION: &str =
    "urn:nhs:names:services:gpconnect:fhir:rest:search:patient_appointments-1";
pub const AMEND_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:update:appointment-1";
pub const CANCEL_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:cancel:appointment-1";
/// Foundations: reading what an appointment references, by id.
pub const READ_PATIENT_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:read:patient-1";
pub const READ_PRACTITIONER_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:read:practitioner-1";
pub const READ_ORGANIZATION_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:read:organization-1";
pub const READ_LOCATION_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:read:location-1";
/// Foundations: finding the organisation by its ODS code.
pub const ORGANIZATION_SEARCH_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:search:organization-1";
/// Foundations: finding a practitioner by their SDS user id.
pub const PRACTITIONER_SEARCH_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:rest:search:practitioner-1";

const STU3: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
pub const ORGANISATION_TYPE_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/GPConnect-OrganisationType-1";
/// The organisation types' value set, which some consumers send in place of the code system.
const ORGANISATION_TYPE_VALUE_SET: &str = "https://fhir.nhs.uk/STU3/ValueSet/GPConnect-OrganisationType-1";
const DELIVERY_CHANNEL: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-DeliveryChannel-2";
const PRACTITIONER_ROLE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-PractitionerRole-1";
const BOOKING_ORGANISATION: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-BookingOrganisation-1";
const CANCELLATION_REASON: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-AppointmentCancellationReason-1";
const APPOINTMENT_IDENTIFIER: &str = "https://fhir.nhs.uk/Id/gpconnect-appointment-identifier";
const JOB_ROLE_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/CareConnect-SDSJobRoleName-1";
/// The longest search window the specification allows.
pub const MAX_SEARCH_DAYS: i64 = 14;
/// The longest description and comment kept (the specification's limit on `description`).
pub const MAX_DESCRIPTION: usize = 100;
pub const MAX_COMMENT: usize = 500;
/// The longest cancellation reason kept (the specification sets none; this is far beyond any
/// reason given in practice, and a longer one is refused rather than cut).
pub const MAX_REASON: usize = 2000;
/// The `_include`s a slot search may ask for.
pub const SLOT_INCLUDES: [(&str, &str); 4] = [
    ("_include", "Slot:schedule"),
    ("_include:recurse", "Schedule:actor:Practitioner"),
    ("_include:recurse", "Schedule:actor:Location"),
    ("_include:recurse", "Location:managingOrganization"),
];

fn invalid_parameter(diagnostics: impl Into<String>) -> GpcError {
    GpcError::new(SpineCode::InvalidParameter, diagnostics)
}

fn invalid_resource(diagnostics: impl Into<String>) -> GpcError {
    GpcError::new(SpineCode::InvalidResource, diagnostics)
}

fn profile(name: &str) -> Vec<String> {
    vec![format!("{STU3}{name}")]
}

/// An instant as GP Connect shows it: UK local time with its offset, to the second.
pub fn instant(t: DateTime<Utc>) -> String {
    uk_time(t).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A date or date-time search value, as an instant: a date alone is the start of that UK day,
/// or of the next day when `end_of_day` (an inclusive end).
fn search_instant(v: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let d = if end_of_day { d.succ_opt()? } else { d };
        return uk_instant(d, NaiveTime::MIN);
    }
    DateTime::<FixedOffset>::parse_from_rfc3339(v).ok().map(|t| t.with_timezone(&Utc))
}

/// A slot search, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSearch {
    /// Slots starting at or after this…
    pub from: DateTime<Utc>,
    /// …and ending no later than this.
    pub to: DateTime<Utc>,
    /// Whether Practitioner and Location were asked to be included (the Schedule always is, and
    /// the Organization always goes with slots, as the specification says).
    pub include_practitioner: bool,
    pub include_location: bool,
    /// The booking organisation, from `searchFilter` (its ODS code and organisation type).
    pub booking_ods: Option<String>,
    pub booking_type: Option<String>,
}

/// `GET [base]/Slot?start=ge…&end=le…&status=free&_include=Slot:schedule[…]`.
pub fn read_slot_search(query: &[(String, String)]) -> Result<SlotSearch, GpcError> {
    let all = |name: &str| query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    let once = |name: &str, prefix: &str| -> Result<String, GpcError> {
        match all(name).as_slice() {
            [v] => v.strip_prefix(prefix).map(str::to_owned).ok_or_else(|| {
                invalid_parameter(format!("{name} must have the {prefix} prefix, as {name}={prefix}2026-12-07"))
            }),
            [] => Err(GpcError::new(SpineCode::BadRequest, format!("{name} is required"))),
            _ => Err(invalid_parameter(format!("{name} may be given only once"))),
        }
    };
    let start = once("start", "ge")?;
    let end = once("end", "le")?;
    match all("status").as_slice() {
        ["free"] => {}
        [] => return Err(GpcError::new(SpineCode::BadRequest, "status=free is required")),
        _ => return Err(invalid_parameter("only status=free, once, is supported")),
    }
    let from = search_instant(&start, false)
        .ok_or_else(|| invalid_parameter("start must be a date (2026-12-07) or a date and time with an offset"))?;
    let to = search_instant(&end, true)
        .ok_or_else(|| invalid_parameter("end must be a date (2026-12-07) or a date and time with an offset"))?;
    if to <= from || window_days(&start, &end) < 0 {
        return Err(invalid_parameter("end is before start"));
    }
    if to - from > Duration::days(MAX_SEARCH_DAYS) + Duration::days(1) || window_days(&start, &end) > MAX_SEARCH_DAYS {
        return Err(invalid_parameter(format!("the search may span at most {MAX_SEARCH_DAYS} days")));
    }
    let mut includes = [false; 4];
    for (k, v) in query.iter().filter(|(k, _)| k.starts_with("_include") || k.starts_with("_revinclude")) {
        let Some(i) = SLOT_INCLUDES.iter().position(|(name, value)| name == k && value == v) else {
            return Err(invalid_parameter(format!("{k}={v} is not supported")));
        };
        includes[i] = true;
    }
    if !includes[0] {
        return Err(GpcError::new(SpineCode::BadRequest, "_include=Slot:schedule is required"));
    }
    let (mut booking_ods, mut booking_type) = (None, None);
    for f in all("searchFilter") {
        // Filters of other systems are ignored, as the specification says.
        match f.split_once('|') {
            Some((ODS_SYSTEM, code)) if !code.trim().is_empty() => {
                booking_ods.get_or_insert_with(|| super::request::shown_text(code.trim()));
            }
            Some((ORGANISATION_TYPE_SYSTEM | ORGANISATION_TYPE_VALUE_SET, code)) if !code.trim().is_empty() => {
                booking_type.get_or_insert_with(|| super::request::shown_text(code.trim()));
            }
            _ => {}
        }
    }
    Ok(SlotSearch {
        from,
        to,
        include_practitioner: includes[1],
        include_location: includes[2],
        booking_ods,
        booking_type,
    })
}

/// The days between two search values' dates (the specification counts the window in days:
/// 14 is allowed, 15 is not).
fn window_days(start: &str, end: &str) -> i64 {
    let day = |v: &str| NaiveDate::parse_from_str(v.get(..10).unwrap_or(v), "%Y-%m-%d").ok();
    match (day(start), day(end)) {
        (Some(a), Some(b)) => (b - a).num_days(),
        _ => 0,
    }
}

/// `GET [base]/Patient/{id}/Appointment?start=ge…&start=le…`: the window, both ends required,
/// whole dates, none of it before `today`.
pub fn read_appointment_search(
    query: &[(String, String)],
    today: NaiveDate,
) -> Result<(DateTime<Utc>, DateTime<Utc>), GpcError> {
    let starts: Vec<&str> = query.iter().filter(|(k, _)| k == "start").map(|(_, v)| v.as_str()).collect();
    let (mut from, mut to) = (None, None);
    for v in &starts {
        let (slot, value) = if let Some(v) = v.strip_prefix("ge") {
            (&mut from, v)
        } else if let Some(v) = v.strip_prefix("le") {
            (&mut to, v)
        } else {
            return Err(invalid_parameter("start must be given twice, as start=ge<date> and start=le<date>"));
        };
        let d = NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .filter(|_| value.len() == 10)
            .ok_or_else(|| invalid_parameter("start must be a whole date, as 2026-12-07"))?;
        if slot.replace(d).is_some() {
            return Err(invalid_parameter("start=ge and start=le may each be given once"));
        }
    }
    let (Some(f), Some(t)) = (from, to) else {
        return Err(invalid_parameter("both start=ge<date> and start=le<date> are required"));
    };
    if t < f {
        return Err(invalid_parameter("the search ends before it starts"));
    }
    if f < today {
        return Err(invalid_parameter("the search may not start in the past: appointments from today are returned"));
    }
    let instant = |d: NaiveDate| uk_instant(d, NaiveTime::MIN).ok_or_else(|| invalid_parameter("no such date"));
    Ok((instant(f)?, instant(t.succ_opt().unwrap_or(t))?))
}

/// What a booking request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRequest {
    /// The slot's id (`Slot/{id}`); one slot per appointment here.
    pub slot: String,
    /// The patient's logical id (`Patient/{id}`, from a patient search).
    pub patient: String,
    /// Where (`Location/{id}`): the practice's premises.
    pub location: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub description: String,
    pub comment: Option<String>,
    /// The Practitioners named as participants (`Practitioner/{id}`), if any.
    pub practitioners: Vec<String>,
}

/// The elements of an Appointment a consumer may send; anything else (`reason`, `specialty`,
/// `appointmentType`, `priority`, …) is refused.
const APPOINTMENT_ELEMENTS: [&str; 18] = [
    "resourceType",
    "id",
    "meta",
    "language",
    "text",
    "identifier",
    "extension",
    "contained",
    "status",
    "serviceCategory",
    "serviceType",
    "description",
    "start",
    "end",
    "minutesDuration",
    "slot",
    "created",
    "comment",
];

/// Free text of the body, cleaned ([`clean_text`]: line breaks become spaces, control and
/// direction characters go) and then checked: not empty, at most `max` characters.
fn text(o: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, GpcError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = clean_text(s);
            if s.is_empty() {
                Err(invalid_resource(format!("{key} is empty")))
            } else if s.chars().count() > max {
                Err(invalid_resource(format!("{key} is longer than {max} characters")))
            } else {
                Ok(Some(s))
            }
        }
        Some(_) => Err(invalid_resource(format!("{key} must be a string"))),
    }
}

fn when(o: &Map<String, Value>, key: &str) -> Result<DateTime<Utc>, GpcError> {
    o.get(key)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::<FixedOffset>::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| invalid_resource(format!("{key} must be a date and time with an offset")))
}

/// The id of a local reference such as `Slot/{id}`; absolute references are not accepted.
fn reference_id<'v>(v: &'v Value, kind: &str) -> Option<&'v str> {
    v["reference"].as_str()?.strip_prefix(kind)?.strip_prefix('/').filter(|id| !id.is_empty() && !id.contains('/'))
}

/// An Appointment body as every interaction reads it: only known elements, its slot, its
/// participants (each a local reference with a status), its times.
struct Parsed {
    o: Map<String, Value>,
    status: String,
    slot: String,
    /// Every participant's reference, as sent (`Patient/…`, `Location/…`, `Practitioner/…`).
    participants: Vec<String>,
    patient: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn parse(body: &[u8]) -> Result<Parsed, GpcError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| GpcError::new(SpineCode::BadRequest, "the body is not a JSON resource"))?;
    let Value::Object(o) = v else { return Err(invalid_resource("the body must be an Appointment")) };
    if o.get("resourceType").and_then(Value::as_str) != Some("Appointment") {
        return Err(invalid_resource("the body must be an Appointment"));
    }
    if let Some(k) = o.keys().find(|k| !APPOINTMENT_ELEMENTS.contains(&k.as_str()) && k.as_str() != "participant") {
        return Err(invalid_resource(format!("{k} is not an element a consumer may send on an Appointment")));
    }
    let identifiers = o.get("identifier").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if identifiers.iter().any(|i| i["value"].as_str().is_none_or(|v| v.trim().is_empty())) {
        return Err(invalid_resource("an identifier needs its value"));
    }
    let contained = o.get("contained").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if contained.iter().any(|c| c["resourceType"] != "Organization") {
        return Err(invalid_resource("an Appointment contains only its booking organisation"));
    }
    let status = o.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
    let slot_refs = o.get("slot").and_then(Value::as_array).cloned().unwrap_or_default();
    let slot = match slot_refs.as_slice() {
        [one] => reference_id(one, "Slot")
            .ok_or_else(|| invalid_resource("slot must reference the slot booked, as Slot/{id}"))?
            .to_owned(),
        [] => return Err(invalid_resource("slot must reference the slot booked, as Slot/{id}")),
        _ => return Err(invalid_resource("one slot per appointment: book adjacent slots as separate appointments")),
    };
    let mut participants = Vec::new();
    for p in o.get("participant").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let reference = p["actor"]["reference"].as_str().unwrap_or_default();
        let local = ["Patient", "Location", "Practitioner"].iter().any(|k| reference_id(&p["actor"], k).is_some());
        if !local || p["status"].as_str().is_none_or(str::is_empty) {
            return Err(invalid_resource(
                "each participant needs an actor referenced locally (Patient/{id}, Location/{id}, Practitioner/{id}) and a status",
            ));
        }
        participants.push(reference.to_owned());
    }
    let patients: Vec<&str> = participants.iter().filter_map(|r| r.strip_prefix("Patient/")).collect();
    let [patient] = patients.as_slice() else {
        return Err(invalid_resource("participant must name the patient once, as Patient/{id}"));
    };
    let patient = (*patient).to_owned();
    let (start, end) = (when(&o, "start")?, when(&o, "end")?);
    if end <= start {
        return Err(invalid_resource("end must be after start"));
    }
    Ok(Parsed { o, status, slot, participants, patient, start, end })
}

fn extension<'v>(o: &'v Map<String, Value>, url: &str) -> Vec<&'v Value> {
    o.get("extension")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|e| e["url"] == url).collect())
        .unwrap_or_default()
}

/// The booking organisation: the extension's reference to a contained Organization with an ODS
/// code, a name and a telephone number.
fn booking_organisation(o: &Map<String, Value>) -> Result<BookingOrganisation, GpcError> {
    let missing = || {
        invalid_resource(
            "the booking organisation is required: an Extension-GPConnect-BookingOrganisation-1 referencing a contained Organization with its ODS code, name and telephone",
        )
    };
    let found = extension(o, BOOKING_ORGANISATION);
    let [ext] = found.as_slice() else { return Err(missing()) };
    let local = ext["valueReference"]["reference"].as_str().and_then(|r| r.strip_prefix('#')).ok_or_else(missing)?;
    let org = o
        .get("contained")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|r| r["resourceType"] == "Organization" && r["id"] == local))
        .ok_or_else(missing)?;
    let ods = org["identifier"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| i["system"] == ODS_SYSTEM))
        .and_then(|i| i["value"].as_str())
        .ok_or_else(missing)?;
    let ods =
        OdsCode::parse(ods).map_err(|_| invalid_resource("the booking organisation's ODS code is not well formed"))?;
    let name = org["name"].as_str().map(clean_text).filter(|n| !n.is_empty()).ok_or_else(missing)?;
    if name.chars().count() > 200 {
        return Err(invalid_resource("the booking organisation's name is too long"));
    }
    let telephone = org["telecom"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["system"] == "phone"))
        .and_then(|t| t["value"].as_str())
        .map(clean_text)
        .filter(|t| !t.is_empty() && t.chars().count() <= 40)
        .ok_or_else(missing)?;
    Ok(BookingOrganisation { ods: ods.as_str().to_owned(), name, telephone: Some(telephone) })
}

/// `POST [base]/Appointment` from another care setting: a booking, checked, with the booking
/// organisation the specification requires and, when its contained Organization says, the kind
/// of organisation it is (`GPConnect-OrganisationType-1`, for slots kept for one kind).
pub fn read_booking(body: &[u8]) -> Result<(BookingRequest, BookingOrganisation, Option<OrganisationType>), GpcError> {
    let (booking, o) = read_booking_of(body)?;
    let org = booking_organisation(&o)?;
    Ok((booking, org, booking_organisation_type(&o)))
}

/// The booking organisation's type coding, from either of the specification's system URLs.
fn booking_organisation_type(o: &Map<String, Value>) -> Option<OrganisationType> {
    let local =
        extension(o, BOOKING_ORGANISATION).first()?["valueReference"]["reference"].as_str()?.strip_prefix('#')?;
    let org =
        o.get("contained")?.as_array()?.iter().find(|r| r["resourceType"] == "Organization" && r["id"] == local)?;
    org["type"].as_array()?.iter().flat_map(|t| t["coding"].as_array().into_iter().flatten()).find_map(|c| {
        match c["system"].as_str()? {
            ORGANISATION_TYPE_SYSTEM | ORGANISATION_TYPE_VALUE_SET => OrganisationType::parse(c["code"].as_str()?),
            _ => None,
        }
    })
}

/// `POST [base]/Appointment` from a patient's app (Patient Facing Services): the same booking;
/// the app books for its own patient, so no booking organisation is needed.
pub fn read_patient_booking(body: &[u8]) -> Result<BookingRequest, GpcError> {
    read_booking_of(body).map(|(b, _)| b)
}

fn read_booking_of(body: &[u8]) -> Result<(BookingRequest, Map<String, Value>), GpcError> {
    let p = parse(body)?;
    if p.status != "booked" {
        return Err(invalid_resource("a new appointment's status must be booked"));
    }
    if !extension(&p.o, CANCELLATION_REASON).is_empty() {
        return Err(invalid_resource("a new appointment has no cancellation reason"));
    }
    let locations: Vec<&str> = p.participants.iter().filter_map(|r| r.strip_prefix("Location/")).collect();
    let [location] = locations.as_slice() else {
        return Err(invalid_resource("participant must name the location once, as Location/{id}"));
    };
    let description = text(&p.o, "description", MAX_DESCRIPTION)?
        .ok_or_else(|| invalid_resource("description is required: what the appointment is for"))?;
    if p.o.get("created").and_then(Value::as_str).is_none_or(|c| DateTime::parse_from_rfc3339(c).is_err()) {
        return Err(invalid_resource("created is required: when the booking was made, with an offset"));
    }
    let booking = BookingRequest {
        slot: p.slot.clone(),
        patient: p.patient.clone(),
        location: (*location).to_owned(),
        start: p.start,
        end: p.end,
        description,
        comment: text(&p.o, "comment", MAX_COMMENT)?,
        practitioners: p
            .participants
            .iter()
            .filter_map(|r| r.strip_prefix("Practitioner/"))
            .map(str::to_owned)
            .collect(),
    };
    Ok((booking, p.o))
}

/// Whether `sent` says nothing that `held` does not: every element sent is held with the same
/// value (objects key by key, each array element matched by one held, date-times by the moment
/// they name, so `Z` and `+00:00` agree).
fn within(sent: &Value, held: &Value) -> bool {
    match (sent, held) {
        (Value::Object(s), Value::Object(h)) => s.iter().all(|(k, v)| h.get(k).is_some_and(|hv| within(v, hv))),
        (Value::Array(s), Value::Array(h)) => s.iter().all(|v| h.iter().any(|hv| within(v, hv))),
        (Value::String(a), Value::String(b)) => {
            a == b
                || matches!((DateTime::parse_from_rfc3339(a), DateTime::parse_from_rfc3339(b)), (Ok(x), Ok(y)) if x == y)
        }
        (a, b) => a == b,
    }
}

/// What an update does to a live appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Cancel it, with the reason given.
    Cancel { reason: String },
    /// New description and comment.
    Amend { description: String, comment: Option<String> },
}

/// `PUT [base]/Appointment/{id}`: an amendment or a cancellation of the appointment whose
/// current resource (as [`appointment_resource`] writes it) is `current`, checked. Everything
/// but what the interaction may change must be as stored: the slot, the times, the participants
/// (fewer may be sent, none added), the booking organisation, and for a cancellation the
/// description and comment. A cancellation adds only its reason; an amendment changes only the
/// description and comment.
pub fn read_change(body: &[u8], current: &Value, cancelling: bool) -> Result<Change, GpcError> {
    let p = parse(body)?;
    let o = &p.o;
    if o.get("id").is_some_and(|i| *i != current["id"]) {
        return Err(invalid_resource("the body's id is not the appointment addressed"));
    }
    // What the consumer sent, less what the interaction may change, must be what is held.
    let mut sent = o.clone();
    for k in ["resourceType", "id", "meta", "text", "language", "status"] {
        sent.remove(k);
    }
    if !cancelling {
        sent.remove("description");
        sent.remove("comment");
    }
    if let Some(Value::Array(x)) = sent.get_mut("extension") {
        x.retain(|e| e["url"] != CANCELLATION_REASON);
    }
    if let Some(Value::Array(ps)) = sent.get_mut("participant") {
        // A participant's type is the consumer's own coding; the actor and status are the booking.
        ps.iter_mut().filter_map(Value::as_object_mut).for_each(|p| drop(p.remove("type")));
    }
    if !within(&Value::Object(sent), current) {
        return Err(invalid_resource(
            "only the description and comment change in an amendment, and only the status and its reason in a cancellation: \
             the slot, times, participants, delivery channel, booking organisation and the rest are as booked (cancel and book again to move an appointment)",
        ));
    }
    let reasons = extension(o, CANCELLATION_REASON);
    if cancelling {
        if p.status != "cancelled" {
            return Err(invalid_resource("a cancellation's status must be cancelled"));
        }
        let [reason] = reasons.as_slice() else {
            return Err(invalid_resource(
                "a cancellation needs one reason: Extension-GPConnect-AppointmentCancellationReason-1",
            ));
        };
        let reason = clean_text(reason["valueString"].as_str().unwrap_or_default());
        if reason.is_empty() {
            return Err(invalid_parameter("the cancellation reason is empty"));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(invalid_parameter(format!("the cancellation reason is longer than {MAX_REASON} characters")));
        }
        return Ok(Change::Cancel { reason });
    }
    if p.status != "booked" {
        return Err(invalid_resource("an amendment's status stays booked; cancel with the cancel interaction"));
    }
    if !reasons.is_empty() {
        return Err(invalid_resource("an amendment has no cancellation reason"));
    }
    let description = text(o, "description", MAX_DESCRIPTION)?
        .ok_or_else(|| invalid_resource("description is required: what the appointment is for"))?;
    Ok(Change::Amend { description, comment: text(o, "comment", MAX_COMMENT)? })
}

fn delivery_channel(t: SlotType) -> &'static str {
    if t.by_telephone() {
        "Telephone"
    } else {
        "In-person"
    }
}

fn role(t: SlotType) -> Value {
    let (code, display) = match t {
        SlotType::GpFaceToFace | SlotType::GpTelephone => ("R0260", "General Medical Practitioner"),
        SlotType::NurseFaceToFace => ("R0690", "Practice Nurse"),
    };
    json!({ "coding": [{ "system": JOB_ROLE_SYSTEM, "code": code, "display": display }] })
}

fn slot_end(s: &Slot) -> DateTime<Utc> {
    s.starts_at + Duration::minutes(i64::from(s.minutes))
}

fn slot_resource(s: &Slot) -> Value {
    json!({
        "resourceType": "Slot",
        "id": s.id.to_string(),
        "meta": { "versionId": "1", "profile": profile("GPConnect-Slot-1") },
        "extension": [{ "url": DELIVERY_CHANNEL, "valueCode": delivery_channel(s.slot_type) }],
        "serviceType": [{ "text": s.slot_type.display() }],
        "schedule": { "reference": format!("Schedule/{}", s.clinic) },
        "status": "free",
        "start": instant(s.starts_at),
        "end": instant(slot_end(s)),
    })
}

/// The practice's premises: one Location, managed by the practice.
pub fn location_resource(practice: &Practice) -> Value {
    let mut r = json!({
        "resourceType": "Location",
        "id": practice.id.to_string(),
        "meta": { "versionId": "1", "profile": profile("CareConnect-GPC-Location-1") },
        "name": practice.name,
        "address": { "use": "work", "line": practice.address.lines, "postalCode": practice.address.postcode },
        "managingOrganization": { "reference": format!("Organization/{}", practice.id) },
    });
    if !practice.telephone.trim().is_empty() {
        r["telecom"] = json!([{ "system": "phone", "value": practice.telephone, "use": "work" }]);
    }
    r
}

/// A clinician of the practice: their name, and their SDS user id when the practice has it (the
/// structured record's author, at version 1, its name the one in use).
pub fn practitioner_resource(id: &str, name: &str, sds_user_id: Option<&str>) -> Value {
    let mut p = super::structured::practitioner(id, name, sds_user_id);
    p["meta"]["versionId"] = json!("1");
    p["name"][0]["use"] = json!("usual");
    p
}

pub fn organization(practice: &Practice) -> Value {
    let mut o = organization_resource(practice);
    o["meta"]["versionId"] = json!("1");
    crate::write::compact(o)
}

fn schedule_resource(id: &str, practice: &Practice, slots: &[&Slot]) -> Value {
    let first = slots[0];
    let from = slots.iter().map(|s| s.starts_at).min().unwrap_or(first.starts_at);
    let to = slots.iter().map(|s| slot_end(s)).max().unwrap_or_else(|| slot_end(first));
    json!({
        "resourceType": "Schedule",
        "id": id,
        "meta": { "versionId": "1", "profile": profile("GPConnect-Schedule-1") },
        "extension": [{ "url": PRACTITIONER_ROLE, "valueCodeableConcept": role(first.slot_type) }],
        "serviceCategory": { "text": format!("{} session", first.clinician_name) },
        "actor": [
            { "reference": format!("Location/{}", practice.id) },
            { "reference": format!("Practitioner/{}", first.clinician) },
        ],
        "planningHorizon": { "start": instant(from), "end": instant(to) },
    })
}

/// The answer to a slot search: the free slots offered, each clinic's Schedule, the practice
/// (always, with slots), and the Practitioners and Location when asked for.
pub fn slots_bundle(
    base: &str,
    trace_id: &str,
    practice: &Practice,
    slots: &[Slot],
    search: &SlotSearch,
    sds_user_id: &dyn Fn(&str) -> Option<String>,
) -> Value {
    let mut entries: Vec<(String, Value, &str)> =
        slots.iter().map(|s| (format!("{base}/Slot/{}", s.id), slot_resource(s), "match")).collect();
    if !slots.is_empty() {
        let mut clinics: BTreeMap<String, Vec<&Slot>> = BTreeMap::new();
        for s in slots {
            clinics.entry(s.clinic.to_string()).or_default().push(s);
        }
        let mut clinicians = BTreeMap::new();
        for (id, ss) in &clinics {
            clinicians.insert(ss[0].clinician.to_string(), ss[0].clinician_name.clone());
            entries.push((format!("{base}/Schedule/{id}"), schedule_resource(id, practice, ss), "include"));
        }
        if search.include_practitioner {
            for (id, name) in &clinicians {
                let sds = sds_user_id(id);
                entries.push((
                    format!("{base}/Practitioner/{id}"),
                    practitioner_resource(id, name, sds.as_deref()),
                    "include",
                ));
            }
        }
        if search.include_location {
            entries.push((format!("{base}/Location/{}", practice.id), location_resource(practice), "include"));
        }
        entries.push((format!("{base}/Organization/{}", practice.id), organization(practice), "include"));
    }
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|(full, r, mode)| json!({ "fullUrl": full, "resource": r, "search": { "mode": mode } }))
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": trace_id,
        "meta": { "profile": [super::documents::SEARCHSET_PROFILE] },
        "type": "searchset",
        "total": slots.len(),
    });
    if !entry.is_empty() {
        bundle["entry"] = json!(entry);
    }
    bundle
}

/// One appointment as `GPConnect-Appointment-1`, at the practice's premises (`location`).
/// Appointments booked at the practice or by the patient online are described by their kind;
/// those booked through GP Connect carry what their booker wrote and the booking organisation.
pub fn appointment_resource(a: &Appointment, slot: &Slot, location: &str) -> Value {
    let mut extension = vec![
        json!({ "url": DELIVERY_CHANNEL, "valueCode": delivery_channel(slot.slot_type) }),
        json!({ "url": PRACTITIONER_ROLE, "valueCodeableConcept": role(slot.slot_type) }),
    ];
    let mut contained = Vec::new();
    if let Some(org) = &a.booked_through {
        extension.push(json!({ "url": BOOKING_ORGANISATION, "valueReference": { "reference": "#1" } }));
        let mut o = json!({
            "resourceType": "Organization",
            "id": "1",
            "meta": { "profile": profile("CareConnect-GPC-Organization-1") },
            "identifier": [{ "system": ODS_SYSTEM, "value": org.ods }],
            "name": org.name,
        });
        if let Some(t) = &org.telephone {
            o["telecom"] = json!([{ "system": "phone", "value": t, "use": "work" }]);
        }
        contained.push(o);
    }
    if let Some(r) = &a.cancellation_reason {
        extension.push(json!({ "url": CANCELLATION_REASON, "valueString": r }));
    }
    let mut r = json!({
        "resourceType": "Appointment",
        "id": a.id.to_string(),
        "meta": { "versionId": a.version.to_string(), "profile": profile("GPConnect-Appointment-1") },
        "extension": extension,
        "identifier": [{ "system": APPOINTMENT_IDENTIFIER, "value": a.id.to_string() }],
        "status": if a.cancelled_at.is_some() { "cancelled" } else { "booked" },
        "serviceCategory": { "text": format!("{} session", slot.clinician_name) },
        "serviceType": [{ "text": slot.slot_type.display() }],
        "description": a.description.clone().unwrap_or_else(|| slot.slot_type.display().to_owned()),
        "start": instant(slot.starts_at),
        "end": instant(slot_end(slot)),
        "minutesDuration": slot.minutes,
        "slot": [{ "reference": format!("Slot/{}", slot.id) }],
        "created": instant(a.booked_at),
        "participant": [
            { "actor": { "reference": format!("Patient/{}", a.patient) }, "status": "accepted" },
            { "actor": { "reference": format!("Location/{location}") }, "status": "accepted" },
            { "actor": { "reference": format!("Practitioner/{}", slot.clinician), "display": slot.clinician_name }, "status": "accepted" },
        ],
    });
    if !contained.is_empty() {
        r["contained"] = json!(contained);
    }
    if let Some(c) = &a.comment {
        r["comment"] = json!(c);
    }
    r
}

/// A patient read by id, as `CareConnect-GPC-Patient-1` at version 1.
pub fn patient(p: &Patient, practice: &Practice, today: NaiveDate) -> Value {
    let mut r = patient_resource(p, practice, today);
    r["meta"]["versionId"] = json!("1");
    r
}

/// The answer to a patient's appointments search.
pub fn appointments_bundle(base: &str, trace_id: &str, found: &[(Appointment, Slot)], location: &str) -> Value {
    let resources = found.iter().map(|(a, s)| appointment_resource(a, s, location)).collect();
    searchset_of(base, trace_id, "Appointment", resources)
}

/// A searchset of `resources` of one kind, each matched, with its full URL under `base`.
pub fn searchset_of(base: &str, trace_id: &str, kind: &str, resources: Vec<Value>) -> Value {
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            json!({ "fullUrl": format!("{base}/{kind}/{id}"), "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    crate::write::compact(json!({
        "resourceType": "Bundle",
        "id": trace_id,
        "meta": { "profile": [super::documents::SEARCHSET_PROFILE] },
        "type": "searchset",
        "total": entry.len(),
        "entry": entry,
    }))
}

/// A patient found by NHS number, as the appointments endpoint answers it.
pub fn patient_search_bundle(
    base: &str,
    trace_id: &str,
    found: Option<(&Patient, &Practice)>,
    today: NaiveDate,
) -> Value {
    let resources = found.map(|(p, practice)| vec![patient(p, practice, today)]).unwrap_or_default();
    searchset_of(base, trace_id, "Patient", resources)
}

/// The one `identifier=[system]|[value]` of a Foundations search, in `system`, without spaces:
/// its value. Another system is not one this server knows (`INVALID_IDENTIFIER_SYSTEM`);
/// anything else malformed fails the structural check (`INVALID_PARAMETER`).
fn search_identifier<'q>(query: &'q [(String, String)], system: &str, what: &str) -> Result<&'q str, GpcError> {
    let (asked, value) = super::one_identifier(query, system, what)?;
    if asked != system {
        return Err(GpcError::new(SpineCode::InvalidIdentifierSystem, format!("found here by {what} only ({system})")));
    }
    if value.contains(char::is_whitespace) {
        return Err(invalid_parameter(format!("an {what} has no spaces")));
    }
    Ok(value)
}

/// Reads `GET [base]/Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|<code>`:
/// the ODS code asked for (3 to 10 letters and digits).
pub fn read_organization_search(query: &[(String, String)]) -> Result<OdsCode, GpcError> {
    let value = search_identifier(query, ODS_SYSTEM, "ODS code")?;
    OdsCode::parse(value).map_err(|_| invalid_parameter("an ODS code is 3 to 10 letters and digits"))
}

/// Reads `GET [base]/Practitioner?identifier=https://fhir.nhs.uk/Id/sds-user-id|<id>`: the SDS
/// user ID asked for (3 to 20 letters and digits), upper-case.
pub fn read_practitioner_search(query: &[(String, String)]) -> Result<String, GpcError> {
    let value = search_identifier(query, SDS_USER_SYSTEM, "SDS user ID")?;
    caldicott_core::staff::parse_sds_user_id(value).map_err(invalid_parameter)
}

/// The answer to a practitioner search: each clinician found, as `(id, name, SDS user id)`.
pub fn practitioner_search_bundle(base: &str, trace_id: &str, found: &[(String, String, String)]) -> Value {
    let resources = found.iter().map(|(id, name, sds)| practitioner_resource(id, name, Some(sds))).collect();
    searchset_of(base, trace_id, "Practitioner", resources)
}

/// The answer to an organisation search: the practice when its ODS code is the one asked for
/// (ODS codes are compared without regard to case), else an empty searchset.
pub fn organization_search_bundle(base: &str, trace_id: &str, practice: &Practice, asked: &OdsCode) -> Value {
    let found = practice.ods_code.as_str().eq_ignore_ascii_case(asked.as_str());
    let resources = if found { vec![organization(practice)] } else { Vec::new() };
    searchset_of(base, trace_id, "Organization", resources)
}

/// The capability statement of the appointments endpoint.
pub fn capability_statement(software_version: &str, publisher: &str) -> Value {
    let profiles = [
        "CareConnect-GPC-Patient-1",
        "CareConnect-GPC-Organization-1",
        "CareConnect-GPC-Practitioner-1",
        "CareConnect-GPC-Location-1",
        "GPConnect-Slot-1",
        "GPConnect-Schedule-1",
        "GPConnect-Appointment-1",
        "GPConnect-OperationOutcome-1",
        "GPConnect-Searchset-Bundle-1",
    ];
    let rest = json!({
        "mode": "server",
        "resource": [
            { "type": "Patient", "interaction": [{ "code": "read" }, { "code": "search-type" }],
              "searchParam": [{ "name": "identifier", "type": "token" }] },
            { "type": "Slot", "interaction": [{ "code": "search-type" }],
              "searchInclude": SLOT_INCLUDES.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
              "searchParam": [
                { "name": "start", "type": "date" }, { "name": "end", "type": "date" },
                { "name": "status", "type": "token" }, { "name": "searchFilter", "type": "token" } ] },
            { "type": "Practitioner", "interaction": [{ "code": "read" }, { "code": "search-type" }],
              "searchParam": [{ "name": "identifier", "type": "token" }] },
            { "type": "Organization", "interaction": [{ "code": "read" }, { "code": "search-type" }],
              "searchParam": [{ "name": "identifier", "type": "token" }] },
            { "type": "Location", "interaction": [{ "code": "read" }] },
            { "type": "Appointment", "interaction": [{ "code": "read" }, { "code": "create" }, { "code": "update" }],
              "updateCreate": false, "versioning": "versioned",
              "searchParam": [{ "name": "start", "type": "date" }] },
        ],
        "operation": [],
    });
    super::capability_statement_of(
        "1.2.7",
        "GP Connect API - Appointment Management",
        software_version,
        publisher,
        &profiles,
        rest,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use caldicott_core::ids::{AppointmentId, ClinicId, PatientId, SlotId, StaffId};
    use uuid::Uuid;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const SCHEDULE: (&str, &str) = ("_include", "Slot:schedule");

    #[test]
    fn a_practitioner_is_found_by_their_sds_user_id_only() {
        // GP Connect Foundations, find a practitioner: `identifier=[system]|[value]`, the SDS user
        // id system only; a wrong system or an id that fails the structural check is an error.
        let sds = |v: &str| q(&[("identifier", v)]);
        assert_eq!(
            read_practitioner_search(&sds("https://fhir.nhs.uk/Id/sds-user-id|g13579135")),
            Ok("G13579135".to_owned())
        );
        let code_of = |r: Result<String, GpcError>| r.unwrap_err().code;
        assert_eq!(
            code_of(read_practitioner_search(&sds("https://fhir.nhs.uk/Id/ods-organization-code|G13579135"))),
            SpineCode::InvalidIdentifierSystem
        );
        for bad in ["G13579135", "https://fhir.nhs.uk/Id/sds-user-id|", "https://fhir.nhs.uk/Id/sds-user-id|G1 3579"] {
            assert_eq!(code_of(read_practitioner_search(&sds(bad))), SpineCode::InvalidParameter, "{bad}");
        }
        let p = practitioner_resource("x", "Dr A", Some("G13579135"));
        assert_eq!(p["identifier"][0]["system"], "https://fhir.nhs.uk/Id/sds-user-id");
        assert_eq!(p["identifier"][0]["value"], "G13579135");
        assert!(practitioner_resource("x", "Dr A", None).get("identifier").is_none());
        // CareConnect-GPC-Practitioner-1 names the family: the name the record shows, split.
        let named = practitioner_resource("x", "Dr Ada Lovelace Jones", None);
        assert_eq!(
            named["name"][0],
            json!({"use": "usual", "text": "Dr Ada Lovelace Jones", "family": "Jones", "given": ["Ada", "Lovelace"], "prefix": ["Dr"]})
        );
        assert_eq!(
            practitioner_resource("x", "Nurse", None)["name"][0],
            json!({"use": "usual", "text": "Nurse", "family": "Nurse"})
        );
    }

    #[test]
    fn an_organisation_is_found_by_its_ods_code_only() {
        // GP Connect Foundations, find an organisation: `identifier=[system]|[value]`, the ODS
        // code system only; a wrong system or a malformed code is an error, no match is not.
        let ods = |v: &str| q(&[("identifier", v)]);
        let found = read_organization_search(&ods("https://fhir.nhs.uk/Id/ods-organization-code|a81001")).unwrap();
        assert_eq!(found.as_str(), "A81001");
        let code_of = |r: Result<OdsCode, GpcError>| r.unwrap_err().code;
        assert_eq!(
            code_of(read_organization_search(&ods("https://fhir.nhs.uk/Id/sds-user-id|A81001"))),
            SpineCode::InvalidIdentifierSystem
        );
        assert_eq!(code_of(read_organization_search(&ods("A81001"))), SpineCode::InvalidParameter);
        assert_eq!(
            code_of(read_organization_search(&ods("https://fhir.nhs.uk/Id/ods-organization-code| A81001"))),
            SpineCode::InvalidParameter
        );
        assert_eq!(
            code_of(read_organization_search(&ods("https://fhir.nhs.uk/Id/ods-organization-code|A8-1001"))),
            SpineCode::InvalidParameter
        );
        assert_eq!(
            code_of(read_organization_search(&ods("https://fhir.nhs.uk/Id/ods-organization-code|"))),
            SpineCode::InvalidParameter
        );
        assert_eq!(code_of(read_organization_search(&q(&[]))), SpineCode::InvalidParameter);
        let twice = q(&[
            ("identifier", "https://fhir.nhs.uk/Id/ods-organization-code|A81001"),
            ("identifier", "https://fhir.nhs.uk/Id/ods-organization-code|B81001"),
        ]);
        assert_eq!(code_of(read_organization_search(&twice)), SpineCode::InvalidParameter);
    }

    fn search(start: &str, end: &str) -> Result<SlotSearch, GpcError> {
        read_slot_search(&q(&[("start", start), ("end", end), ("status", "free"), SCHEDULE]))
    }

    #[test]
    fn a_slot_search_takes_a_window_of_up_to_fourteen_days_in_uk_time() {
        let s = search("ge2026-12-07", "le2026-12-21").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.from.to_rfc3339(), "2026-12-07T00:00:00+00:00");
        assert_eq!(s.to.to_rfc3339(), "2026-12-22T00:00:00+00:00", "an end date includes its whole UK day");
        let summer = search("ge2026-07-01", "le2026-07-01").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summer.from.to_rfc3339(), "2026-06-30T23:00:00+00:00", "midnight BST");
        assert_eq!(
            search("ge2026-12-07", "le2026-12-22").map_err(|e| e.code),
            Err(SpineCode::InvalidParameter),
            "15 days"
        );
        let times =
            search("ge2026-12-07T09:00:00+00:00", "le2026-12-07T12:00:00+00:00").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((times.to - times.from).num_hours(), 3);
        for bad in ["ge2026", "ge2026-12", "ge2026-12-07T09:00:00", "ge", "geinvalid"] {
            assert_eq!(search(bad, "le2026-12-08").map_err(|e| e.code), Err(SpineCode::InvalidParameter), "{bad}");
        }
    }

    #[test]
    fn a_slot_search_is_refused_as_the_specification_says() {
        let ok = [("start", "ge2026-12-07"), ("end", "le2026-12-08"), ("status", "free"), SCHEDULE];
        let code = |pairs: &[(&str, &str)]| read_slot_search(&q(pairs)).err().map(|e| e.code);
        assert_eq!(code(&ok), None);
        assert_eq!(code(&ok[1..]), Some(SpineCode::BadRequest), "no start");
        assert_eq!(code(&[ok[0], ok[2], ok[3]]), Some(SpineCode::BadRequest), "no end");
        assert_eq!(code(&[ok[0], ok[1], ok[3]]), Some(SpineCode::BadRequest), "no status");
        assert_eq!(code(&ok[..3]), Some(SpineCode::BadRequest), "no _include=Slot:schedule");
        assert_eq!(code(&[ok[0], ok[0], ok[1], ok[2], ok[3]]), Some(SpineCode::InvalidParameter), "start twice");
        for (start, end) in
            [("2026-12-07", "le2026-12-08"), ("gt2026-12-07", "le2026-12-08"), ("ge2026-12-07", "lt2026-12-08")]
        {
            assert_eq!(
                code(&[("start", start), ("end", end), ok[2], ok[3]]),
                Some(SpineCode::InvalidParameter),
                "{start} {end}"
            );
        }
        assert_eq!(
            code(&[("start", "ge2026-12-09"), ok[1], ok[2], ok[3]]),
            Some(SpineCode::InvalidParameter),
            "ends first"
        );
        assert_eq!(code(&[ok[0], ok[1], ("status", "busy"), ok[3]]), Some(SpineCode::InvalidParameter));
        assert_eq!(
            code(&[ok[0], ok[1], ok[2], ok[3], ("_include", "Slot:patient")]),
            Some(SpineCode::InvalidParameter)
        );
        let mut filtered = ok.to_vec();
        filtered.push(("searchFilter", "https://fhir.nhs.uk/Id/ods-organization-code|RR8"));
        filtered.push(("searchFilter", "https://fhir.nhs.uk/STU3/ValueSet/GPConnect-OrganisationType-1|urgent-care"));
        filtered.push(("searchFilter", "https://fhir.nhs.uk/Id/otherIdentifier|otherID"));
        filtered.push(("_include:recurse", "Schedule:actor:Location"));
        let s = read_slot_search(&q(&filtered)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.booking_ods.as_deref(), s.booking_type.as_deref()), (Some("RR8"), Some("urgent-care")));
        assert!(s.include_location && !s.include_practitioner);
    }

    #[test]
    fn a_patients_appointments_are_searched_by_whole_dates_from_today() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap_or_default();
        let w = read_appointment_search(&q(&[("start", "ge2026-12-06"), ("start", "le2026-12-31")]), today)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.1.to_rfc3339(), "2027-01-01T00:00:00+00:00", "the last day is included");
        for bad in [
            vec![("start", "ge2026-12-07")],
            vec![("start", "ge2026-12-07"), ("start", "ge2026-12-08")],
            vec![("start", "ge2026-12-31"), ("start", "le2026-12-07")],
            vec![("start", "eq2026-12-07"), ("start", "le2026-12-31")],
            vec![("start", "ge2026-12-07T09:00:00+00:00"), ("start", "le2026-12-31")],
            vec![("start", "ge2026-12"), ("start", "le2026-12-31")],
            vec![("start", "ge2026-12-05"), ("start", "le2026-12-31")],
        ] {
            let got = read_appointment_search(&q(&bad), today).map_err(|e| e.code);
            assert_eq!(got, Err(SpineCode::InvalidParameter), "{bad:?}");
        }
    }

    fn booking() -> Value {
        json!({
            "resourceType": "Appointment",
            "meta": { "profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-Appointment-1"] },
            "extension": [{ "url": BOOKING_ORGANISATION, "valueReference": { "reference": "#1" } }],
            "contained": [{ "resourceType": "Organization", "id": "1",
                "identifier": [{ "system": ODS_SYSTEM, "value": "RR8" }], "name": "Leeds Urgent Treatment Centre",
                "telecom": [{ "system": "phone", "value": "0113 000 0000" }] }],
            "status": "booked",
            "description": "Review of ankle injury",
            "comment": "Seen at UTC today",
            "start": "2026-12-07T09:00:00+00:00",
            "end": "2026-12-07T09:15:00+00:00",
            "slot": [{ "reference": "Slot/abc" }],
            "created": "2026-12-06T20:00:00+00:00",
            "participant": [
                { "actor": { "reference": "Patient/p1" }, "status": "accepted" },
                { "actor": { "reference": "Location/l1" }, "status": "accepted" },
            ],
        })
    }

    #[test]
    fn a_booking_is_read_with_its_organisation() {
        let (b, org, _) = read_booking(booking().to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((b.slot.as_str(), b.patient.as_str(), b.location.as_str()), ("abc", "p1", "l1"));
        assert_eq!(org.ods, "RR8");
        assert_eq!(org.telephone.as_deref(), Some("0113 000 0000"));
        let mut from_an_app = booking();
        from_an_app["extension"] = json!([]);
        from_an_app["contained"] = Value::Null;
        assert!(read_booking(from_an_app.to_string().as_bytes()).is_err(), "another care setting names itself");
        assert_eq!(read_patient_booking(from_an_app.to_string().as_bytes()).map(|p| p.slot), Ok("abc".into()));
        assert_eq!(b.comment.as_deref(), Some("Seen at UTC today"));
        assert_eq!(b.start.to_rfc3339(), "2026-12-07T09:00:00+00:00");
    }

    type Edit = Box<dyn Fn(&mut Value)>;

    #[test]
    fn a_booking_missing_what_the_profile_requires_or_sending_more_is_an_invalid_resource() {
        let cases: Vec<(&str, Edit)> = vec![
            ("no description", Box::new(|v| v["description"] = Value::Null)),
            ("long description", Box::new(|v| v["description"] = json!("x".repeat(MAX_DESCRIPTION + 1)))),
            ("not booked", Box::new(|v| v["status"] = json!("proposed"))),
            ("no organisation", Box::new(|v| v["extension"] = json!([]))),
            ("bad ODS", Box::new(|v| v["contained"][0]["identifier"][0]["value"] = json!("?"))),
            ("no telephone", Box::new(|v| v["contained"][0]["telecom"] = json!([]))),
            ("no organisation name", Box::new(|v| v["contained"][0]["name"] = Value::Null)),
            (
                "no patient",
                Box::new(|v| {
                    v["participant"] = json!([{ "actor": { "reference": "Location/l1" }, "status": "accepted" }])
                }),
            ),
            (
                "no location",
                Box::new(|v| {
                    v["participant"] = json!([{ "actor": { "reference": "Patient/p1" }, "status": "accepted" }])
                }),
            ),
            ("participant without status", Box::new(|v| v["participant"][0]["status"] = Value::Null)),
            (
                "absolute reference",
                Box::new(|v| v["participant"][0]["actor"]["reference"] = json!("https://x.example/Patient/p1")),
            ),
            ("two slots", Box::new(|v| v["slot"] = json!([{ "reference": "Slot/a" }, { "reference": "Slot/b" }]))),
            ("no slot", Box::new(|v| v["slot"] = json!([]))),
            ("ends first", Box::new(|v| v["end"] = json!("2026-12-07T08:00:00+00:00"))),
            ("no offset", Box::new(|v| v["start"] = json!("2026-12-07T09:00:00"))),
            ("no created", Box::new(|v| v["created"] = Value::Null)),
            ("a reason", Box::new(|v| v["reason"] = json!([{ "text": "pain" }]))),
            ("a specialty", Box::new(|v| v["specialty"] = json!([{ "text": "GP" }]))),
            ("an appointment type", Box::new(|v| v["appointmentType"] = json!({ "text": "x" }))),
            (
                "a cancellation reason",
                Box::new(|v| {
                    v["extension"]
                        .as_array_mut()
                        .into_iter()
                        .for_each(|a| a.push(json!({ "url": CANCELLATION_REASON, "valueString": "x" })))
                }),
            ),
            ("not an appointment", Box::new(|v| v["resourceType"] = json!("Patient"))),
            ("only control characters", Box::new(|v| v["description"] = json!("\u{0000}\u{0007}\u{202E}"))),
            (
                "an organisation named by control characters",
                Box::new(|v| v["contained"][0]["name"] = json!("\u{0000}")),
            ),
            (
                "an identifier without its value",
                Box::new(|v| v["identifier"] = json!([{ "system": "https://x.example" }])),
            ),
            (
                "a contained patient",
                Box::new(|v| {
                    v["contained"]
                        .as_array_mut()
                        .into_iter()
                        .for_each(|c| c.push(json!({ "resourceType": "Patient", "id": "2" })))
                }),
            ),
        ];
        for (why, change) in cases {
            let mut v = booking();
            change(&mut v);
            let got = read_booking(v.to_string().as_bytes()).map_err(|e| e.code);
            assert_eq!(got, Err(SpineCode::InvalidResource), "{why}");
        }
        assert_eq!(read_booking(b"{").map_err(|e| e.code), Err(SpineCode::BadRequest));
    }

    #[test]
    fn line_breaks_in_what_the_booker_wrote_become_spaces_and_nothing_is_cut() {
        let mut v = booking();
        v["comment"] = json!("BP 120\n80, take 1\t2 tablets\u{202E}");
        v["description"] = json!("d".repeat(MAX_DESCRIPTION));
        let (b, _, _) = read_booking(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.comment.as_deref(), Some("BP 120 80, take 1 2 tablets"), "numbers stay apart");
        assert_eq!(b.description.chars().count(), MAX_DESCRIPTION, "kept whole up to the limit");
    }

    fn stored() -> (Appointment, Slot) {
        let u = |n| Uuid::from_u128(n);
        let starts_at = DateTime::parse_from_rfc3339("2026-12-07T09:00:00+00:00").map(|t| t.with_timezone(&Utc));
        let slot = Slot {
            id: SlotId::from_uuid(u(1)),
            clinic: ClinicId::from_uuid(u(2)),
            clinician: StaffId::from_uuid(u(3)),
            starts_at: starts_at.unwrap_or_default(),
            minutes: 15,
            slot_type: SlotType::GpFaceToFace,
            online_bookable: false,
            others_bookable: true,
            others_bookable_by: Default::default(),
            clinician_name: "Dr A Jones".into(),
            location: "Room 1".into(),
        };
        let mut a = Appointment::new(
            AppointmentId::from_uuid(u(4)),
            slot.id,
            PatientId::from_uuid(u(5)),
            slot.starts_at - Duration::hours(12),
            "by 111".into(),
            caldicott_core::appointments::BookingChannel::OtherCareSetting,
        );
        a.description = Some("Review of ankle injury".into());
        a.booked_through =
            Some(BookingOrganisation { ods: "RR8".into(), name: "UTC".into(), telephone: Some("0113".into()) });
        (a, slot)
    }

    #[test]
    fn what_was_read_comes_back_as_a_change_only_of_what_may_change() {
        let (a, slot) = stored();
        let current = appointment_resource(&a, &slot, "l1");
        let mut cancel = current.clone();
        cancel["status"] = json!("cancelled");
        cancel["extension"]
            .as_array_mut()
            .into_iter()
            .for_each(|x| x.push(json!({ "url": CANCELLATION_REASON, "valueString": "Patient better" })));
        assert_eq!(
            read_change(cancel.to_string().as_bytes(), &current, true),
            Ok(Change::Cancel { reason: "Patient better".into() })
        );
        let mut amend = current.clone();
        amend["description"] = json!("Ankle and wrist");
        amend["comment"] = json!("Bring X-ray");
        assert_eq!(
            read_change(amend.to_string().as_bytes(), &current, false),
            Ok(Change::Amend { description: "Ankle and wrist".into(), comment: Some("Bring X-ray".into()) })
        );
        let code = |v: &Value, cancelling: bool| {
            read_change(v.to_string().as_bytes(), &current, cancelling).err().map(|e| e.code)
        };
        let edits: Vec<(&str, bool, Edit)> = vec![
            ("cancel changes the comment", true, Box::new(|v| v["comment"] = json!("new"))),
            ("cancel changes the description", true, Box::new(|v| v["description"] = json!("new"))),
            ("cancel without a reason", true, Box::new(|v| v["extension"] = json!([]))),
            ("cancel still booked", true, Box::new(|v| v["status"] = json!("booked"))),
            ("moved", true, Box::new(|v| v["start"] = json!("2026-12-07T09:15:00+00:00"))),
            ("another slot", false, Box::new(|v| v["slot"] = json!([{ "reference": "Slot/other" }]))),
            (
                "a participant added",
                false,
                Box::new(|v| {
                    v["participant"].as_array_mut().into_iter().for_each(|p| {
                        p.push(json!({ "actor": { "reference": "Practitioner/2" }, "status": "accepted" }))
                    })
                }),
            ),
            ("another patient", false, Box::new(|v| v["participant"][0]["actor"]["reference"] = json!("Patient/2"))),
            ("a priority", false, Box::new(|v| v["priority"] = json!(1))),
            ("amend cancels", false, Box::new(|v| v["status"] = json!("cancelled"))),
            ("another id", false, Box::new(|v| v["id"] = json!("other"))),
            (
                "another booking organisation",
                false,
                Box::new(|v| v["contained"][0]["identifier"][0]["value"] = json!("RR9")),
            ),
            ("the organisation renamed", false, Box::new(|v| v["contained"][0]["name"] = json!("Evil Org"))),
            ("a participant declined", false, Box::new(|v| v["participant"][0]["status"] = json!("declined"))),
            ("by video now", false, Box::new(|v| v["extension"][0]["valueCode"] = json!("Video"))),
            ("another service type", false, Box::new(|v| v["serviceType"][0]["text"] = json!("Minor surgery"))),
            ("another identifier", false, Box::new(|v| v["identifier"][0]["value"] = json!("other"))),
        ];
        for (why, cancelling, edit) in edits {
            let mut v = if cancelling { cancel.clone() } else { amend.clone() };
            edit(&mut v);
            assert_eq!(code(&v, cancelling), Some(SpineCode::InvalidResource), "{why}");
        }
        let mut empty_reason = cancel.clone();
        empty_reason["extension"].as_array_mut().into_iter().for_each(|x| {
            if let Some(last) = x.last_mut() {
                last["valueString"] = json!(" ");
            }
        });
        assert_eq!(code(&empty_reason, true), Some(SpineCode::InvalidParameter), "an empty reason");
        let mut reason_on_amend = amend.clone();
        reason_on_amend["extension"] = cancel["extension"].clone();
        assert_eq!(code(&reason_on_amend, false), Some(SpineCode::InvalidResource));
        let mut fewer = cancel.clone();
        fewer["participant"].as_array_mut().into_iter().for_each(|p| p.truncate(2));
        assert_eq!(code(&fewer, true), None, "fewer participants sent than held is no change");
        let mut own_copy = amend.clone();
        for k in ["serviceType", "serviceCategory", "identifier", "meta"] {
            own_copy.as_object_mut().into_iter().for_each(|o| drop(o.remove(k)));
        }
        own_copy["start"] = json!("2026-12-07T09:00:00Z");
        own_copy["participant"][0]["type"] = json!([{ "coding": [{ "code": "PART" }] }]);
        assert_eq!(
            code(&own_copy, false),
            None,
            "left out, Z for +00:00 and the consumer's own codings change nothing"
        );
        let set_reason = |v: &mut Value, r: String| {
            v["extension"].as_array_mut().into_iter().for_each(|x| {
                if let Some(last) = x.last_mut() {
                    last["valueString"] = json!(r.clone());
                }
            })
        };
        let mut long = cancel.clone();
        set_reason(&mut long, "r".repeat(MAX_COMMENT + 1));
        assert_eq!(code(&long, true), None, "a long reason is kept");
        set_reason(&mut long, "r".repeat(MAX_REASON + 1));
        assert_eq!(code(&long, true), Some(SpineCode::InvalidParameter), "one beyond the limit is refused, not cut");
    }

    #[test]
    fn an_appointment_says_who_booked_it_and_why_it_was_cancelled() {
        let (mut a, slot) = stored();
        let r = appointment_resource(&a, &slot, "l1");
        assert_eq!(r["contained"][0]["identifier"][0]["value"], "RR8");
        assert_eq!(r["start"], "2026-12-07T09:00:00+00:00");
        assert_eq!(r["meta"]["versionId"], "1");
        assert_eq!(r["status"], "booked");
        a.cancelled_at = Some(slot.starts_at);
        a.cancellation_reason = Some("Patient better".into());
        a.version = 2;
        let r = appointment_resource(&a, &slot, "l1");
        assert_eq!((r["status"].as_str(), r["meta"]["versionId"].as_str()), (Some("cancelled"), Some("2")));
        assert!(r["extension"].as_array().is_some_and(|x| x.iter().any(|e| e["valueString"] == "Patient better")));
    }
}
