//! The OpenAPI 3.0 description of every JSON route (`GET /openapi.json`), made from one table.
//! A test reads the routers' sources and checks that the table and the routes agree, both ways,
//! so the document cannot drift from the code.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// How a route is called.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// A member of staff's API token (`Authorization: Bearer stf_…`).
    Staff,
    /// An app's or a pharmacy's client credentials (HTTP Basic).
    Basic,
    /// An app's link token.
    Link,
    /// A FHIR access token (an app's, an integration's, or a staff API token).
    Fhir,
    /// GOV.UK Notify's callback token.
    Notify,
}

/// A parameter: (name, in, required, type, description).
pub type Param = (&'static str, &'static str, bool, &'static str, &'static str);

pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub params: &'static [Param],
    /// (media type, description) of the request body.
    pub body: Option<(&'static str, &'static str)>,
    /// (status, description).
    pub responses: &'static [(&'static str, &'static str)],
    pub tag: &'static str,
}

const NHS: Param = ("nhs_number", "path", true, "string", "The patient's NHS number (10 digits)");
const FHIR_COUNT: Param = ("_count", "query", false, "integer", "Page size, 1 to 1000 (default 50)");
const FHIR_CURSOR: Param = ("_cursor", "query", false, "string", "The opaque cursor from a Bundle's next link");
const FHIR_PREFER: Param =
    ("Prefer", "header", false, "string", "handling=strict: unknown search parameters are refused (400)");
const FHIR_PATIENT: Param =
    ("patient", "query", false, "string", "The patient's resource id (required for staff tokens)");
const PAGE: &[Param] = &[
    ("section", "query", false, "string", "One section of the record (consultations, problems, medications …)"),
    ("cursor", "query", false, "string", "The cursor of the next page"),
    ("limit", "query", false, "integer", "Page size, 1 to 500"),
];
const STAFF_ANSWERS: &[(&str, &str)] =
    &[("200", "OK"), ("400", "Bad input"), ("401", "No valid token"), ("403", "Not this role's"), ("404", "Not found")];
const FHIR_ANSWERS: &[(&str, &str)] = &[
    ("200", "A FHIR resource or Bundle"),
    ("400", "OperationOutcome: bad input"),
    ("401", "OperationOutcome: no valid token"),
    ("403", "OperationOutcome: outside the token's scopes, or not this role's"),
    ("404", "OperationOutcome: not known (hidden entries answer the same)"),
];

pub const OPERATIONS: &[Op] = &[
    Op { method: "get", path: "/health", summary: "Whether the server and its database answer", auth: Auth::None, params: &[], body: None, responses: &[("200", "Up"), ("503", "The database does not answer")], tag: "service" },
    Op { method: "get", path: "/health/live", summary: "Whether the process answers (asks nothing of the database)", auth: Auth::None, params: &[], body: None, responses: &[("200", "Live")], tag: "service" },
    Op { method: "get", path: "/health/ready", summary: "Whether the database answers and its schema is this build's", auth: Auth::None, params: &[], body: None, responses: &[("200", "Ready"), ("503", "Not ready")], tag: "service" },
    Op { method: "post", path: "/notify/delivery-reports", summary: "GOV.UK Notify delivery receipts", auth: Auth::Notify, params: &[], body: Some(("application/json", "Notify's callback")), responses: &[("204", "Recorded"), ("400", "Bad input"), ("401", "Wrong token")], tag: "service" },
    Op { method: "get", path: "/openapi.json", summary: "This document", auth: Auth::None, params: &[], body: None, responses: &[("200", "OpenAPI 3.0")], tag: "service" },
    // Staff JSON API.
    Op { method: "get", path: "/api/v1/patients/{nhs_number}/record", summary: "The whole record as staff see it, each entry with whether the patient sees it online", auth: Auth::Staff, params: &[NHS, PAGE[0], PAGE[1], PAGE[2], ("as", "query", false, "string", "patient (default) or proxy"), ("proxy", "query", false, "string", "The proxy link id, with as=proxy")], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/patients/{nhs_number}/online-view", summary: "Exactly what the patient or one proxy sees online", auth: Auth::Staff, params: &[NHS, PAGE[0], PAGE[1], PAGE[2], ("as", "query", false, "string", "patient (default) or proxy"), ("proxy", "query", false, "string", "The proxy link id, with as=proxy")], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "post", path: "/api/v1/patients/{nhs_number}/access", summary: "Change the patient's online access (own level, historic access, automatic access, opt-out): without confirm, what it would change for the patient and each proxy; with confirm, made and audited", auth: Auth::Staff, params: &[NHS], body: Some(("application/json", "change (set_level, use_default, remove, opt_out, opt_in), level, from (YYYY-MM-DD or whole_record), historic_confirmed, confirm")), responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "post", path: "/api/v1/patients/{nhs_number}/enhanced-review", summary: "Record 104 or 106: without confirm, what it would change for the patient and each proxy; with confirm, recorded", auth: Auth::Staff, params: &[NHS], body: Some(("application/json", "code (104 or 106), confirm")), responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "post", path: "/api/v1/patients/{nhs_number}/gp-connect-sharing", summary: "Record the patient's dissent from sharing their record with other care settings through GP Connect (dissent true, with a reason), or take it away (dissent false); answers whether it stands, when, by whom and why", auth: Auth::Staff, params: &[NHS], body: Some(("application/json", "dissent (true or false), reason (required to record it)")), responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/patients/{nhs_number}/transfers", summary: "Records transferred in for the patient", auth: Auth::Staff, params: &[NHS], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "post", path: "/api/v1/transfer-in", summary: "Import a record from another practice (a FHIR R4 Bundle)", auth: Auth::Staff, params: &[], body: Some(("application/json", "A FHIR R4 Bundle")), responses: &[("201", "Imported"), ("400", "Bad input"), ("401", "No valid token"), ("403", "Not this role's"), ("422", "Every problem found; nothing imported")], tag: "staff" },
    Op { method: "get", path: "/api/v1/reports/exclusions", summary: "The share of registered 16+ patients with an active 104, and the action plan", auth: Auth::Staff, params: &[], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/reports/monthly-return", summary: "Every active exclusion (R37)", auth: Auth::Staff, params: &[], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/reports/trend", summary: "Exclusions, grants and withholds by month", auth: Auth::Staff, params: &[("months", "query", false, "integer", "1 to 60 (default 12)")], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/icb/exclusions", summary: "Every practice's figures, counts only (ICB analysts)", auth: Auth::Staff, params: &[], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/appointments", summary: "The appointment book: every slot from a day, each with its booking and patient", auth: Auth::Staff, params: &[("from", "query", false, "string", "The first day, YYYY-MM-DD (default today)"), ("days", "query", false, "integer", "1 to 14 (default 7)")], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "post", path: "/api/v1/appointments", summary: "Book a free slot that has not started for a registered patient, as the practice", auth: Auth::Staff, params: &[], body: Some(("application/json", "slot (its id), nhs_number")), responses: &[("201", "Booked"), ("400", "Bad input"), ("401", "No valid token"), ("403", "Not this role's"), ("409", "The slot is taken or has started"), ("422", "The NHS number is not valid or names no registered patient; nothing booked")], tag: "staff" },
    Op { method: "post", path: "/api/v1/appointments/{appointment}/attendance", summary: "Record whether the patient came to an appointment that has started (or correct it)", auth: Auth::Staff, params: &[("appointment", "path", true, "string", "The appointment's id")], body: Some(("application/json", "attendance: attended or did_not_attend")), responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "post", path: "/api/v1/slots/{slot}/online", summary: "Offer a slot that has not started online, or stop offering it", auth: Auth::Staff, params: &[("slot", "path", true, "string", "The slot's id")], body: Some(("application/json", "online: true or false")), responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/reports/appointments", summary: "Online appointment capacity by week, clinician and type: slots offered, offered online, bookings by channel, did-not-attends", auth: Auth::Staff, params: &[("from", "query", false, "string", "Any day of the first week, YYYY-MM-DD (default four weeks before this one)"), ("weeks", "query", false, "integer", "1 to 26 (default 8)")], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/icb/appointments", summary: "Every practice's online appointment totals, counts only (ICB analysts)", auth: Auth::Staff, params: &[("from", "query", false, "string", "Any day of the first week, YYYY-MM-DD"), ("weeks", "query", false, "integer", "1 to 26 (default 8)")], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    Op { method: "get", path: "/api/v1/sars", summary: "The subject access request register", auth: Auth::Staff, params: &[], body: None, responses: STAFF_ANSWERS, tag: "staff" },
    // Apps.
    Op { method: "post", path: "/api/apps/v1/links", summary: "Link an app to a patient with the practice's letter", auth: Auth::Basic, params: &[], body: Some(("application/json", "ods_code, account_id, linkage_key, family_name, birth_date")), responses: &[("201", "Linked: the link's token"), ("400", "Bad input"), ("401", "Wrong client credentials"), ("403", "The details do not match")], tag: "apps" },
    Op { method: "post", path: "/api/apps/v1/links/nhs-login", summary: "Link an app with the user's NHS login (P9)", auth: Auth::Basic, params: &[], body: Some(("application/json", "id_token, access_token")), responses: &[("201", "Linked: the link's token"), ("400", "Bad input, or the ID token's nonce missing, not ours, expired or used"), ("401", "Wrong client credentials"), ("403", "Not matched or not P9")], tag: "apps" },
    Op { method: "post", path: "/api/apps/v1/links/nhs-login/nonce", summary: "A nonce for the app's NHS login request (the ID token must carry it; it links once, within 10 minutes)", auth: Auth::Basic, params: &[], body: None, responses: &[("201", "nonce, expires_at"), ("401", "Wrong client credentials"), ("429", "Too many requests from this address")], tag: "apps" },
    Op { method: "get", path: "/api/apps/v1/link", summary: "The link behind a link token, while it lasts", auth: Auth::Link, params: &[], body: None, responses: &[("200", "The link"), ("401", "Revoked or not right")], tag: "apps" },
    // Pharmacies.
    Op { method: "post", path: "/api/update-record/v1/messages", summary: "A GP Connect Update Record message (FHIR STU3 Bundle)", auth: Auth::Basic, params: &[], body: Some(("application/fhir+json", "An ITK3 message Bundle")), responses: &[("200", "Already accepted (20007)"), ("202", "Accepted (20013)"), ("401", "Wrong credentials"), ("403", "Refused (20010)"), ("413", "Larger than 2 MB (20009)"), ("422", "Invalid (20009)")], tag: "pharmacies" },
    // FHIR R4.
    Op { method: "get", path: "/fhir/r4/metadata", summary: "The CapabilityStatement", auth: Auth::None, params: &[], body: None, responses: &[("200", "CapabilityStatement")], tag: "fhir" },
    Op { method: "get", path: "/fhir/r4/.well-known/smart-configuration", summary: "SMART discovery: the token endpoint, grant types, client authentication and scopes offered", auth: Auth::None, params: &[], body: None, responses: &[("200", "SMART configuration")], tag: "fhir" },
    Op { method: "post", path: "/fhir/r4/token", summary: "OAuth 2.0 token endpoint: an app's link token (grant_type=refresh_token, HTTP Basic client credentials, optional patient= for someone its user acts for) or a practice integration's signed client assertion (grant_type=client_credentials, private_key_jwt)", auth: Auth::Basic, params: &[], body: Some(("application/x-www-form-urlencoded", "grant_type, refresh_token, scope, patient, client_assertion_type, client_assertion")), responses: &[("200", "access_token, expires_in, scope, patient"), ("400", "invalid_grant, invalid_scope, unsupported_grant_type, invalid_request"), ("401", "invalid_client")], tag: "fhir" },
    Op { method: "get", path: "/fhir/r4/{resource}", summary: "Search a resource type (Patient, Organization, Practitioner, Slot, Appointment, Condition, Observation, AllergyIntolerance, MedicationRequest, MedicationStatement, Immunization, Encounter, DocumentReference, Communication)", auth: Auth::Fhir, params: &[("resource", "path", true, "string", "The resource type"), FHIR_PATIENT, FHIR_COUNT, FHIR_CURSOR, ("_include", "query", false, "string", "A reference to follow, e.g. Observation:performer (see the CapabilityStatement's searchInclude)"), ("identifier", "query", false, "string", "Patient only: https://fhir.nhs.uk/Id/nhs-number|<NHS number>"), FHIR_PREFER], body: None, responses: FHIR_ANSWERS, tag: "fhir" },
    Op { method: "post", path: "/fhir/r4/{resource}", summary: "Book an appointment: POST an Appointment naming a free Slot (patient/Appointment.write)", auth: Auth::Fhir, params: &[("resource", "path", true, "string", "Appointment")], body: Some(("application/fhir+json", "An Appointment with slot[0].reference")), responses: &[("201", "The booked Appointment"), ("400", "OperationOutcome: bad input"), ("401", "OperationOutcome: no valid token"), ("403", "OperationOutcome: not allowed"), ("404", "OperationOutcome: the slot is not free to book"), ("409", "OperationOutcome: someone else booked it")], tag: "fhir" },
    Op { method: "put", path: "/fhir/r4/{resource}/{id}", summary: "Cancel an appointment: PUT it with status cancelled (patient/Appointment.write)", auth: Auth::Fhir, params: &[("resource", "path", true, "string", "Appointment"), ("id", "path", true, "string", "The Appointment's id")], body: Some(("application/fhir+json", "The Appointment with status cancelled")), responses: &[("200", "The cancelled Appointment"), ("400", "OperationOutcome: bad input"), ("401", "OperationOutcome: no valid token"), ("403", "OperationOutcome: not allowed"), ("404", "OperationOutcome: not known"), ("409", "OperationOutcome: past the cut-off")], tag: "fhir" },
    Op { method: "get", path: "/fhir/r4/{resource}/{id}", summary: "Read a resource; Binary/{id} is a document's file (a Binary resource when Accept is application/fhir+json)", auth: Auth::Fhir, params: &[("resource", "path", true, "string", "The resource type"), ("id", "path", true, "string", "The resource id")], body: None, responses: FHIR_ANSWERS, tag: "fhir" },
    Op { method: "get", path: "/fhir/r4/Patient/{id}/$everything", summary: "The patient and every entry the caller may receive, a page at a time", auth: Auth::Fhir, params: &[("id", "path", true, "string", "The Patient's id"), FHIR_COUNT, FHIR_CURSOR, FHIR_PREFER], body: None, responses: FHIR_ANSWERS, tag: "fhir" },
];

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let params: Vec<Value> = op
            .params
            .iter()
            .map(|(name, place, required, kind, description)| {
                json!({ "name": name, "in": place, "required": required, "description": description, "schema": { "type": kind } })
            })
            .collect();
        let responses: Map<String, Value> = op
            .responses
            .iter()
            .map(|(code, description)| ((*code).to_owned(), json!({ "description": description })))
            .collect();
        let mut o = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '$', '-', '.'], "_")),
            "tags": [op.tag],
            "parameters": params,
            "responses": responses,
        });
        let security = match op.auth {
            Auth::None => None,
            Auth::Staff => Some("staffToken"),
            Auth::Basic => Some("clientCredentials"),
            Auth::Link => Some("linkToken"),
            Auth::Fhir => Some("fhirToken"),
            Auth::Notify => Some("notifyToken"),
        };
        o["security"] = match security {
            Some(s) => json!([{ s: [] }]),
            None => json!([]),
        };
        if let Some((media, description)) = op.body {
            let schema = if media == "application/x-www-form-urlencoded" {
                json!({ "type": "object", "properties": {
                    "grant_type": { "type": "string" }, "refresh_token": { "type": "string" }, "scope": { "type": "string" } } })
            } else {
                json!({ "type": "object" })
            };
            o["requestBody"] =
                json!({ "required": true, "description": description, "content": { media: { "schema": schema } } });
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "caldicott",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every JSON route of caldicott: the staff API, linking apps, GP Connect Update Record, and the FHIR R4 API. Patient data is never cached (Cache-Control: no-store)."
        },
        "paths": paths,
        "components": { "securitySchemes": {
            "staffToken": { "type": "http", "scheme": "bearer", "description": "A member of staff's API token (caldicott token create)" },
            "clientCredentials": { "type": "http", "scheme": "basic", "description": "An app's or a pharmacy's client id and secret" },
            "linkToken": { "type": "http", "scheme": "bearer", "description": "The token an app received when it linked" },
            "fhirToken": { "type": "http", "scheme": "bearer", "description": "An access token from /fhir/r4/token (an app's or a practice integration's), or a staff API token" },
            "notifyToken": { "type": "http", "scheme": "bearer", "description": "GOV.UK Notify's callback bearer token" }
        } },
    })
}

pub async fn serve() -> Response {
    Json(document()).into_response()
}
