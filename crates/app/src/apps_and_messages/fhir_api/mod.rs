//! The FHIR R4 (UK Core) API: tokens with SMART-style scopes, reads, searches with `_include`,
//! `Patient/$everything` and `Binary`, with the visibility engine on every patient-facing answer.
//!
//! Three kinds of caller:
//! - **A linked app** exchanges its link credential (the `lnk_` token from linking, as a SMART
//!   refresh token) and its client credentials for a short-lived access token bound to that
//!   practice, that link and the scopes granted (`patient/*.read` or narrower), and to one
//!   patient: the link's holder, or someone the holder acts for as a proxy (then within the
//!   proxy's scope). It reads exactly that patient's online view as that viewer: an entry they
//!   cannot see online is absent from every answer, and its id answers exactly as an id that
//!   never existed. The link (and the proxy link) is checked on every request, so revoking it
//!   ends access at once.
//! - **A practice integration** (SMART Backend Services: `client_credentials` with a signed
//!   client assertion) gets `system/` scopes for its own practice only.
//! - **A member of staff** through their API token.
//!
//! The last two are practice-facing: they read the whole record of the practice's patients, and
//! entries hidden from the patient online carry the `NOPAT` security label.

mod capability;
mod integrations;
mod pfs;
mod pfs_prescriptions;
mod prescriptions;
mod scheduling;
mod tokens;

pub use capability::capability_statement;
pub use integrations::{client_assertion, new_key_pair, NewIntegration};
pub use pfs::{pfs_root, PfsCall};
pub use pfs_prescriptions::{pfs_prescriptions_root, RxCall};
pub use tokens::{
    TokenError, TokenRequest, TokenResponse, ACCESS_TOKEN_TYPE, ASSERTION_TYPE, ID_TOKEN_TYPE, TOKEN_EXCHANGE,
};

use crate::record::{decode_cursor, encode_cursor, Loaded};
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::access::{IdentityLevel, ProxyLink};
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::entry::{Entry, EntryBody, EntryKind};
use caldicott_core::ids::*;
use caldicott_core::online::{AppLink, LinkVia, PatientApp};
use caldicott_core::staff::Role;
use caldicott_core::visibility::{AccessPolicy, Shown};
use caldicott_fhir::write::{self as fhir, entry_resources, resource_types, Context, EntryRefs, Label};
use caldicott_store::fhir::Integration;
use caldicott_store::{EntryCursor, EntryQuery};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// Where the FHIR API is mounted, under the public URL.
pub const BASE_PATH: &str = "/fhir/r4";

impl App {
    /// The FHIR API's base URL: the configured public URL and `BASE_PATH`, whatever a request's
    /// `Host` says.
    pub fn fhir_base_url(&self) -> String {
        format!("{}{BASE_PATH}", self.public_url())
    }

    /// The token endpoint's URL: the one audience a client assertion may name.
    pub fn fhir_token_url(&self) -> String {
        format!("{}/token", self.fhir_base_url())
    }
}

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

/// The clinical resource types served, each made from record entries. Communication (messages,
/// online consultations, texts, diary entries) is never shown online (R8): the visibility engine
/// gives an app none, and practice-facing callers read it like the rest of the record.
pub const CLINICAL_TYPES: [&str; 11] = [
    "Condition",
    "Observation",
    "AllergyIntolerance",
    "MedicationRequest",
    "MedicationStatement",
    "Immunization",
    "Encounter",
    "DocumentReference",
    "Communication",
    "CarePlan",
    "Goal",
];

/// Booking: free slots to read, and the patient's appointments to read, book and cancel.
pub const SCHEDULING_TYPES: [&str; 2] = ["Slot", "Appointment"];

/// Repeat prescription orders (the NHS App's Patient Facing Services Prescriptions API): an app
/// with `patient/Task.write` orders, and every caller reads the orders.
pub const REQUEST_TYPES: [&str; 1] = ["Task"];

/// The practice and its clinicians: not patient data, served to any caller of the practice.
pub const DIRECTORY_TYPES: [&str; 2] = ["Organization", "Practitioner"];

/// What an app may write, each only with its own `patient/<type>.write` scope.
const WRITABLE: [&str; 2] = ["Appointment", "Task"];

/// Every type a scope may name.
fn is_served(t: &str) -> bool {
    t == "Patient"
        || t == "Binary"
        || DIRECTORY_TYPES.contains(&t)
        || CLINICAL_TYPES.contains(&t)
        || SCHEDULING_TYPES.contains(&t)
        || REQUEST_TYPES.contains(&t)
}

/// Who a scope speaks for: SMART's `patient/` (one patient) or `system/` (the practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    Patient,
    System,
}

impl ScopeContext {
    fn prefix(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::System => "system",
        }
    }
}

/// The scopes granted to a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    pub context: ScopeContext,
    pub granted: BTreeSet<String>,
}

impl Scopes {
    /// Reads a requested scope string for an app. Only `patient/<type>.read` (or SMART v2
    /// `.rs`/`.r`) for the types served, or `patient/*.read`, may be asked for, and
    /// `patient/Appointment.write` to book; anything else is refused. Nothing asked: `patient/*.read`.
    pub fn parse(requested: &str) -> AppResult<Self> {
        Self::parse_in(ScopeContext::Patient, requested)
    }

    /// Reads a requested scope string for a practice integration: `system/<type>.read` or
    /// `system/*.read` only (nothing is written through `system/` scopes).
    pub fn parse_system(requested: &str) -> AppResult<Self> {
        Self::parse_in(ScopeContext::System, requested)
    }

    fn parse_in(context: ScopeContext, requested: &str) -> AppResult<Self> {
        let prefix = context.prefix();
        let mut granted = BTreeSet::new();
        for s in requested.split_whitespace() {
            let bad = || AppError::BadRequest(format!("the scope \"{s}\" is not offered (invalid_scope)"));
            let rest = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')).ok_or_else(bad)?;
            let (t, access) = rest.split_once('.').ok_or_else(bad)?;
            if t != "*" && !is_served(t) {
                return Err(bad());
            }
            let patient = context == ScopeContext::Patient;
            let (read, write) = match access {
                "read" | "rs" | "r" | "s" => (true, false),
                // Appointments (book and cancel) and Tasks (order a repeat) are what an app may
                // write, and only when asked for by name: `patient/*.write` is not offered.
                "write" | "cu" | "c" | "u" if patient && WRITABLE.contains(&t) => (false, true),
                "cruds" | "crus" | "cru" if patient && WRITABLE.contains(&t) => (true, true),
                _ => return Err(bad()),
            };
            if read {
                granted.insert(format!("{prefix}/{t}.read"));
            }
            if write {
                granted.insert(format!("patient/{t}.write"));
            }
        }
        if granted.is_empty() {
            granted.insert(format!("{prefix}/*.read"));
        }
        Ok(Self { context, granted })
    }

    /// Scopes as stored with a token.
    pub fn stored(context: ScopeContext, text: &str) -> Self {
        Self { context, granted: text.split_whitespace().map(str::to_owned).collect() }
    }

    pub fn allows(&self, resource: &str) -> bool {
        let p = self.context.prefix();
        self.granted.contains(&format!("{p}/*.read")) || self.granted.contains(&format!("{p}/{resource}.read"))
    }

    pub fn allows_write(&self, resource: &str) -> bool {
        WRITABLE.contains(&resource) && self.granted.contains(&format!("patient/{resource}.write"))
    }

    /// Every scope of these is also one of `other`'s.
    pub fn within(&self, other: &Scopes) -> bool {
        let p = self.context.prefix();
        self.context == other.context
            && self.granted.iter().all(|g| {
                match g.strip_prefix(p).and_then(|r| r.strip_prefix('/')).and_then(|r| r.strip_suffix(".read")) {
                    Some("*") => other.granted.contains(&format!("{p}/*.read")),
                    Some(t) => other.allows(t),
                    None => other.granted.contains(g),
                }
            })
    }

    pub fn as_string(&self) -> String {
        self.granted.iter().cloned().collect::<Vec<_>>().join(" ")
    }
}

/// A linked app calling, with what its token allows.
#[derive(Debug, Clone)]
pub struct AppCaller {
    pub practice: PracticeId,
    pub link: AppLink,
    pub app: PatientApp,
    pub scopes: Scopes,
    /// The proxy link the token was issued under, when the link's holder acts for someone else;
    /// checked as live on every request.
    pub proxy: Option<ProxyLink>,
}

impl AppCaller {
    /// The patient the token reads: the holder, or the person they act for.
    pub fn patient(&self) -> PatientId {
        self.proxy.as_ref().map_or(self.link.patient, |p| p.patient)
    }

    fn actor(&self) -> Actor {
        let role = match &self.proxy {
            None => "app".to_owned(),
            Some(p) => format!("app for proxy link {}", p.id),
        };
        Actor { kind: ActorKind::App, id: self.app.id.to_string(), role }
    }
}

/// A practice integration calling.
#[derive(Debug, Clone)]
pub struct SystemCaller {
    pub practice: PracticeId,
    pub integration: Integration,
    pub scopes: Scopes,
}

/// Who is calling the FHIR API.
#[derive(Debug, Clone)]
pub enum FhirCaller {
    /// A linked app, bound to one patient of one practice.
    App(Box<AppCaller>),
    /// A member of staff (through their API token): the practice's whole record.
    Staff(StaffPrincipal),
    /// A practice integration with `system/` scopes: the practice's whole record.
    System(Box<SystemCaller>),
}

impl FhirCaller {
    fn practice(&self) -> PracticeId {
        match self {
            Self::App(a) => a.practice,
            Self::Staff(s) => s.practice,
            Self::System(s) => s.practice,
        }
    }

    /// The scopes a token carries (staff tokens go by the member of staff's role instead).
    fn scopes(&self) -> Option<&Scopes> {
        match self {
            Self::App(a) => Some(&a.scopes),
            Self::System(s) => Some(&s.scopes),
            Self::Staff(_) => None,
        }
    }

    /// What a paging cursor is bound to: this caller at this practice.
    fn binding(&self) -> String {
        let p = self.practice().as_uuid().simple();
        match self {
            Self::App(a) => match &a.proxy {
                None => format!("{p}:{}", a.link.id.as_uuid().simple()),
                Some(x) => format!("{p}:{}:{}", a.link.id.as_uuid().simple(), x.id.as_uuid().simple()),
            },
            Self::Staff(s) => format!("{p}:{}", s.staff.as_uuid().simple()),
            Self::System(s) => format!("{p}:{}", s.integration.id.as_uuid().simple()),
        }
    }
}

/// A search as asked.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub patient: Option<String>,
    /// `Patient?_id=`.
    pub id: Option<String>,
    /// `Patient?identifier=[system|]value`: the NHS number.
    pub identifier: Option<String>,
    pub count: Option<String>,
    pub cursor: Option<String>,
    /// `_include` values, as given (`Observation:performer`).
    pub include: Vec<String>,
    /// `Observation?code=[system]|[code],…`.
    pub code: Option<String>,
    /// `Observation?date=ge2024-01&date=lt2025`: every one must hold.
    pub date: Vec<String>,
    /// `Observation?_sort=date` (oldest first) or `-date` (newest first).
    pub sort: Option<String>,
    /// `Prefer: handling=strict`: a parameter not served is refused, not ignored.
    pub strict: bool,
}

impl Search {
    /// Whether the search narrows or orders by `code`, `date` or `_sort`.
    fn filtered(&self) -> bool {
        self.code.is_some() || !self.date.is_empty() || self.sort.is_some()
    }
}

/// An Observation search's `code`, `date` and `_sort`, read and checked.
struct Filter {
    codes: Option<Vec<caldicott_fhir::search::Token>>,
    dates: Vec<caldicott_fhir::search::DateParam>,
    oldest_first: bool,
}

impl Filter {
    fn of(q: &Search) -> AppResult<Self> {
        use caldicott_fhir::search::{parse_date, parse_sort, parse_tokens};
        let bad = |e: caldicott_fhir::search::SearchParamError| AppError::BadRequest(e.0);
        Ok(Self {
            codes: q.code.as_deref().map(parse_tokens).transpose().map_err(bad)?,
            dates: q.date.iter().map(|d| parse_date(d)).collect::<Result<_, _>>().map_err(bad)?,
            oldest_first: q.sort.as_deref().map(parse_sort).transpose().map_err(bad)?.unwrap_or(false),
        })
    }

    fn keeps(&self, r: &Value) -> bool {
        let day = caldicott_fhir::search::resource_day(r);
        self.codes.as_ref().is_none_or(|t| caldicott_fhir::search::concept_matches(&r["code"], t))
            && self.dates.iter().all(|d| day.is_some_and(|day| d.holds_for(day)))
    }

    /// The parameters as the Bundle's links repeat them.
    fn query(q: &Search) -> String {
        let mut out = String::new();
        if let Some(c) = &q.code {
            out.push_str(&format!("&code={}", query_value(c)));
        }
        for d in &q.date {
            out.push_str(&format!("&date={}", query_value(d)));
        }
        if let Some(s) = &q.sort {
            out.push_str(&format!("&_sort={}", query_value(s)));
        }
        out
    }
}

/// A value written into a link's query: everything but unreserved characters percent-encoded.
fn query_value(v: &str) -> String {
    v.trim()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where an Observation sits in a dated search's order: its day, then its id.
fn dated_key(r: &Value) -> String {
    let day = caldicott_fhir::search::resource_day(r).map(|d| d.to_string()).unwrap_or_default();
    format!("{day}|{}", r["id"].as_str().unwrap_or(""))
}

fn not_found(resource: &str, id: &str) -> AppError {
    AppError::NotFound(format!("{resource}/{id} is not known"))
}

fn parse_count(c: Option<&str>) -> AppResult<usize> {
    match c {
        None => Ok(DEFAULT_COUNT),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
            _ => Err(AppError::BadRequest(format!("_count must be a whole number from 1 to {MAX_COUNT}"))),
        },
    }
}

fn bad_cursor() -> AppError {
    AppError::BadRequest("the paging cursor is not one this server gave this caller".into())
}

/// Where a slot or an appointment sits in its search's order: its start, then its id.
fn schedule_key(r: &Value) -> String {
    format!("{}|{}", r["start"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""))
}

/// One page of slots (soonest first) or appointments (latest first), after the key `after`
/// (keyset paging: a slot booked meanwhile leaves no gap or repeat), and the key to go on from.
fn schedule_page(
    mut found: Vec<Value>,
    soonest_first: bool,
    after: Option<&str>,
    count: usize,
) -> (Vec<Value>, Option<String>) {
    found.sort_by_cached_key(schedule_key);
    if !soonest_first {
        found.reverse();
    }
    let mut page: Vec<Value> = found
        .into_iter()
        .filter(|r| {
            after
                .is_none_or(|a| if soonest_first { schedule_key(r).as_str() > a } else { schedule_key(r).as_str() < a })
        })
        .take(count + 1)
        .collect();
    let more = page.len() > count;
    page.truncate(count);
    let next = if more { page.last().map(schedule_key) } else { None };
    (page, next)
}

fn bundle_page(base: &str, self_url: &str, next_url: Option<String>, entries: Vec<Value>) -> Value {
    let mut links = vec![json!({ "relation": "self", "url": format!("{base}{self_url}") })];
    if let Some(n) = next_url {
        links.push(json!({ "relation": "next", "url": format!("{base}{n}") }));
    }
    // A search that finds nothing has no `entry` (FHIR has no empty arrays).
    fhir::compact(json!({
        "resourceType": "Bundle",
        "id": new_id().to_string(),
        "type": "searchset",
        "link": links,
        "entry": entries,
    }))
}

fn search_entry(base: &str, r: Value, mode: &str) -> Value {
    let url = format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
    json!({ "fullUrl": url, "resource": r, "search": { "mode": mode } })
}

/// The `_include` parameters served: (source type, parameter, path to the reference, target).
/// `*` asks for all of a type's.
pub const INCLUDES: &[(&str, &str, &[&str], &str)] = &[
    ("Patient", "general-practitioner", &["generalPractitioner"], "Organization"),
    ("Patient", "organization", &["generalPractitioner"], "Organization"),
    ("Encounter", "patient", &["subject"], "Patient"),
    ("Encounter", "subject", &["subject"], "Patient"),
    ("Encounter", "practitioner", &["participant", "individual"], "Practitioner"),
    ("Encounter", "participant", &["participant", "individual"], "Practitioner"),
    ("Condition", "patient", &["subject"], "Patient"),
    ("Condition", "subject", &["subject"], "Patient"),
    ("Observation", "patient", &["subject"], "Patient"),
    ("Observation", "subject", &["subject"], "Patient"),
    ("Observation", "performer", &["performer"], "Practitioner"),
    ("AllergyIntolerance", "patient", &["patient"], "Patient"),
    ("AllergyIntolerance", "recorder", &["recorder"], "Practitioner"),
    ("MedicationRequest", "patient", &["subject"], "Patient"),
    ("MedicationRequest", "subject", &["subject"], "Patient"),
    ("MedicationRequest", "requester", &["requester"], "Practitioner"),
    ("MedicationStatement", "patient", &["subject"], "Patient"),
    ("MedicationStatement", "subject", &["subject"], "Patient"),
    ("MedicationStatement", "source", &["informationSource"], "Practitioner"),
    ("Immunization", "patient", &["patient"], "Patient"),
    ("Immunization", "performer", &["performer", "actor"], "Practitioner"),
    ("DocumentReference", "patient", &["subject"], "Patient"),
    ("DocumentReference", "subject", &["subject"], "Patient"),
    ("DocumentReference", "author", &["author"], "Practitioner"),
    ("Communication", "patient", &["subject"], "Patient"),
    ("Communication", "subject", &["subject"], "Patient"),
    ("Communication", "sender", &["sender"], "Practitioner"),
    ("CarePlan", "patient", &["subject"], "Patient"),
    ("CarePlan", "subject", &["subject"], "Patient"),
    ("Goal", "patient", &["subject"], "Patient"),
    ("Goal", "subject", &["subject"], "Patient"),
    ("Appointment", "patient", &["participant", "actor"], "Patient"),
    ("Appointment", "slot", &["slot"], "Slot"),
];

/// What `_include` asked for: the (path, target) pairs to follow, checked against [`INCLUDES`].
fn include_paths(resource: &str, asked: &[String]) -> AppResult<Vec<(&'static [&'static str], &'static str)>> {
    let mut out = Vec::new();
    for a in asked {
        let mut parts = a.trim().split(':');
        let (source, param, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
        let offered = || {
            let names: Vec<String> =
                INCLUDES.iter().filter(|i| i.0 == resource).map(|i| format!("{}:{}", i.0, i.1)).collect();
            if names.is_empty() {
                format!("{resource} has no _include parameters")
            } else {
                format!("{resource} offers _include={}", names.join(", "))
            }
        };
        if source != resource || parts.next().is_some() {
            return Err(AppError::BadRequest(format!("_include={a} is not offered here: {}", offered())));
        }
        let matched: Vec<_> = INCLUDES
            .iter()
            .filter(|i| i.0 == resource && (param == "*" || i.1 == param) && target.is_none_or(|t| t == i.3))
            .map(|i| (i.2, i.3))
            .collect();
        if matched.is_empty() {
            return Err(AppError::BadRequest(format!("_include={a} is not offered here: {}", offered())));
        }
        out.extend(matched);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The references found along `path` (arrays walked at every step).
fn references_at(r: &Value, path: &[&str]) -> Vec<String> {
    let mut here = vec![r];
    for key in path {
        here = here
            .into_iter()
            .filter_map(|v| v.get(*key))
            .flat_map(|v| match v.as_array() {
                Some(a) => a.iter().collect::<Vec<_>>(),
                None => vec![v],
            })
            .collect();
    }
    here.into_iter().filter_map(|v| v["reference"].as_str().map(str::to_owned)).collect()
}

/// Per request: what resources may point at (the practice's clinicians are loaded once), and
/// which repeats the reader may see (each decided once).
struct Render {
    practitioners: HashSet<StaffId>,
    /// Whether the entries others refer to (a repeat, a care plan) are shown to the app.
    repeat_shown: HashMap<EntryId, bool>,
}

impl App {
    /// The patient a practice-facing caller names (by resource id), of their own practice.
    async fn practice_view(&self, practice: PracticeId, patient: &str) -> AppResult<(Loaded, AccessPolicy)> {
        let id = Uuid::try_parse(patient.trim_start_matches("Patient/")).map_err(|_| not_found("Patient", patient))?;
        let p = self.store.practice(practice).await?.ok_or_else(|| not_found("Patient", patient))?;
        let patient = self
            .store
            .patient(practice, PatientId::from_uuid(id))
            .await?
            .ok_or_else(|| not_found("Patient", patient))?;
        let l = self.facts_for(p, patient).await?;
        let identity = l.identity;
        let policy = self.policy_for(&l, None, identity);
        Ok((l, policy))
    }

    /// The identity level an app link stands on: P9 for NHS login, the letter's level for a
    /// linkage key.
    async fn link_identity(&self, practice: PracticeId, link: &AppLink) -> AppResult<Option<IdentityLevel>> {
        Ok(match (&link.via, &link.linkage_ref) {
            (LinkVia::NhsLogin, _) => Some(IdentityLevel::P9),
            (LinkVia::LinkageKey, Some(r)) => self.store.linkage_key(practice, r).await?.map(|k| k.identity),
            (LinkVia::LinkageKey, None) => None,
        })
    }

    /// The facts and the policy for the patient an app is bound to: the online view of the
    /// link's holder (as the patient, or as the proxy acting for them), at the identity level
    /// the link was made with.
    async fn app_view(&self, a: &AppCaller) -> AppResult<(Loaded, AccessPolicy)> {
        let identity = self.link_identity(a.practice, &a.link).await?;
        let view =
            self.outside_view(a.practice, a.patient(), a.proxy.clone(), identity, || not_found("Patient", "")).await?;
        Ok((view.l, view.policy))
    }

    /// The view a caller has of a patient: an app only of its own patient (any other id is not
    /// known to it), practice-facing callers of any patient of their practice.
    async fn view_for(&self, caller: &FhirCaller, patient: Option<&str>) -> AppResult<(Loaded, AccessPolicy)> {
        match caller {
            FhirCaller::App(a) => {
                if let Some(p) = patient {
                    let asked = p.trim_start_matches("Patient/");
                    if asked != a.patient().to_string() {
                        return Err(not_found("Patient", asked));
                    }
                }
                self.app_view(a).await
            }
            FhirCaller::Staff(_) | FhirCaller::System(_) => {
                let p = patient.ok_or_else(|| {
                    AppError::BadRequest("name the patient: ?patient=<Patient id> (practice-facing searches)".into())
                })?;
                self.practice_view(caller.practice(), p).await
            }
        }
    }

    fn fhir_audit(&self, caller: &FhirCaller, patient: PatientId, entity: String, detail: String) -> AuditRecord {
        match caller {
            FhirCaller::App(a) => {
                self.patient_audit(a.actor(), Some(patient), Action::RecordViewOnline, entity, Outcome::Success, detail)
            }
            FhirCaller::Staff(who) => {
                self.audit_record(who, Some(patient), Action::RecordViewStaff, entity, Outcome::Success, detail)
            }
            FhirCaller::System(s) => self.patient_audit(
                integrations::actor(&s.integration),
                Some(patient),
                Action::RecordViewStaff,
                entity,
                Outcome::Success,
                detail,
            ),
        }
    }

    fn check_scope(caller: &FhirCaller, resource: &str) -> AppResult<()> {
        match caller.scopes() {
            Some(s) if !s.allows(resource) => Err(AppError::Forbidden(format!(
                "the token's scopes do not include {resource} ({}/{resource}.read)",
                s.context.prefix()
            ))),
            _ => Ok(()),
        }
    }

    /// The Patient resource as the caller may receive it: a proxy without the demographics
    /// permission gets who the person is, not where they live or how to reach them.
    fn patient_for(caller: &FhirCaller, l: &Loaded) -> Value {
        let mut r = fhir::patient_resource(&l.patient, &l.practice);
        if let FhirCaller::App(a) = caller {
            if a.proxy.as_ref().is_some_and(|p| !p.scope.demographics) {
                if let Some(o) = r.as_object_mut() {
                    o.remove("address");
                    o.remove("telecom");
                }
            }
        }
        r
    }

    async fn render(&self, practice: PracticeId) -> AppResult<Render> {
        let practitioners = self
            .store
            .staff_members(practice)
            .await?
            .into_iter()
            .filter(|s| s.role == Role::Clinician)
            .map(|s| s.id)
            .collect();
        Ok(Render { practitioners, repeat_shown: HashMap::new() })
    }

    /// What the resources of `batch` may point at, for this caller: for an app, only repeats it
    /// may see itself (each looked up and decided once).
    async fn context_for(
        &self,
        caller: &FhirCaller,
        l: &Loaded,
        policy: &AccessPolicy,
        render: &mut Render,
        batch: &[Entry],
    ) -> AppResult<Context> {
        let entries = match caller {
            FhirCaller::App(_) => {
                // What an entry refers to: an issue its repeat, a part of a care plan its plan.
                let refs: Vec<EntryId> = batch
                    .iter()
                    .filter_map(|e| match &e.body {
                        EntryBody::MedicationIssue { template: Some(t), .. }
                        | EntryBody::CarePlanPart { plan: t, .. } => Some(*t),
                        _ => None,
                    })
                    .collect();
                self.refs_shown(l, policy, &refs, batch, &mut render.repeat_shown).await?;
                EntryRefs::Only(render.repeat_shown.iter().filter(|(_, s)| **s).map(|(id, _)| *id).collect())
            }
            FhirCaller::Staff(_) | FhirCaller::System(_) => EntryRefs::All,
        };
        let documents: Vec<EntryId> = batch.iter().filter(|e| e.kind() == EntryKind::Document).map(|e| e.id).collect();
        let files = if documents.is_empty() {
            HashMap::new()
        } else {
            self.store.document_files(l.practice.id, &documents).await?.into_iter().collect()
        };
        Ok(Context { today: self.today(), practitioners: render.practitioners.clone(), entries, files })
    }

    /// Whether each of `ids`, entries an app's answer refers to (an issue's repeat, a care plan
    /// part's plan, an order's medicine), is shown to the app's viewer: the patient's own entry,
    /// decided by the viewer's policy (found in `batch` or read). Answers go into `shown`; those
    /// already there are kept.
    async fn refs_shown(
        &self,
        l: &Loaded,
        policy: &AccessPolicy,
        ids: &[EntryId],
        batch: &[Entry],
        shown: &mut HashMap<EntryId, bool>,
    ) -> AppResult<()> {
        for t in ids {
            if shown.contains_key(t) {
                continue;
            }
            let entry = match batch.iter().find(|x| x.id == *t) {
                Some(x) => Some(x.clone()),
                None => self.store.entry(l.practice.id, *t).await?,
            };
            let ok = entry.is_some_and(|r| r.patient == l.patient.id && policy.decide(&r).is_shown());
            shown.insert(*t, ok);
        }
        Ok(())
    }

    /// The resources an entry is written as, for this caller: for an app only if shown online
    /// (never labelled), practice-facing always, labelled `NOPAT` when hidden from the patient.
    fn resources_for(caller: &FhirCaller, policy: &AccessPolicy, cx: &Context, e: &Entry) -> Vec<Value> {
        match caller {
            FhirCaller::App(_) => policy.show(e).map(|e| Self::app_resources(&e, cx)).unwrap_or_default(),
            FhirCaller::Staff(_) | FhirCaller::System(_) => {
                let label = if policy.decide(e).is_shown() { Label::Shareable } else { Label::NotForPatient };
                entry_resources(e, label, cx)
            }
        }
    }

    /// What an app receives for one entry: only one the engine shows its user, never labelled.
    fn app_resources(e: &Shown<&Entry>, cx: &Context) -> Vec<Value> {
        // A part of a care plan the app is not shown is not shown either.
        if let EntryBody::CarePlanPart { plan, .. } = &e.get().body {
            if !cx.entries.allows(*plan) {
                return Vec::new();
            }
        }
        entry_resources(e.get(), Label::None, cx)
    }

    /// The practice's Organization and its clinicians (active or not: past entries name them).
    async fn directory(&self, caller: &FhirCaller, resource: &str) -> AppResult<Vec<Value>> {
        let practice = self.store.practice(caller.practice()).await?.ok_or_else(|| not_found(resource, ""))?;
        Ok(match resource {
            "Organization" => vec![fhir::organization_resource(&practice)],
            _ => self
                .store
                .staff_members(practice.id)
                .await?
                .iter()
                .filter(|s| s.role == Role::Clinician)
                .map(fhir::practitioner_resource)
                .collect(),
        })
    }

    /// The one entry behind `{resource}/{id}`, if the caller may receive it: a hidden entry,
    /// another patient's or a made-up id all answer the same.
    async fn entry_for(
        &self,
        caller: &FhirCaller,
        resource: &str,
        id: &str,
    ) -> AppResult<(Loaded, AccessPolicy, Entry)> {
        let entry_id = Uuid::try_parse(id).map_err(|_| not_found(resource, id))?;
        let wanted = |e: &Entry| match resource {
            "Binary" => e.kind() == EntryKind::Document,
            _ => resource_types(e.kind()).contains(&resource),
        };
        let entry = self
            .store
            .entry(caller.practice(), EntryId::from_uuid(entry_id))
            .await?
            .filter(wanted)
            .ok_or_else(|| not_found(resource, id))?;
        let patient = entry.patient.to_string();
        let (l, policy) = self.view_for(caller, Some(&patient)).await.map_err(|_| not_found(resource, id))?;
        if matches!(caller, FhirCaller::App(_)) && !policy.decide(&entry).is_shown() {
            return Err(not_found(resource, id));
        }
        Ok((l, policy, entry))
    }

    /// `GET [base]/{type}/{id}`.
    pub async fn fhir_read(&self, caller: &FhirCaller, resource: &str, id: &str) -> AppResult<Value> {
        self.read_one(caller, resource, id).await.map(fhir::compact)
    }

    async fn read_one(&self, caller: &FhirCaller, resource: &str, id: &str) -> AppResult<Value> {
        Self::check_scope(caller, resource)?;
        if DIRECTORY_TYPES.contains(&resource) {
            return self
                .directory(caller, resource)
                .await?
                .into_iter()
                .find(|r| r["id"] == id)
                .ok_or_else(|| not_found(resource, id));
        }
        if SCHEDULING_TYPES.contains(&resource) {
            return self
                .scheduling_read(caller, resource, Some(id), None)
                .await?
                .1
                .into_iter()
                .next()
                .ok_or_else(|| not_found(resource, id));
        }
        if REQUEST_TYPES.contains(&resource) {
            return self.task_by_id(caller, id).await;
        }
        if resource == "Patient" {
            let (l, _) = self.view_for(caller, Some(id)).await?;
            let audit = self.fhir_audit(caller, l.patient.id, format!("fhir/Patient/{id}"), "read".into());
            self.audit.record(caller.practice(), audit).await?;
            return Ok(Self::patient_for(caller, &l));
        }
        if resource == "Binary" {
            return Ok(self.fhir_binary(caller, id).await?.resource());
        }
        if !CLINICAL_TYPES.contains(&resource) {
            return Err(AppError::NotFound(format!("{resource} is not a resource type served here")));
        }
        let (l, policy, entry) = self.entry_for(caller, resource, id).await?;
        let mut render = self.render(caller.practice()).await?;
        let cx = self.context_for(caller, &l, &policy, &mut render, std::slice::from_ref(&entry)).await?;
        let r = Self::resources_for(caller, &policy, &cx, &entry)
            .into_iter()
            .find(|r| r["resourceType"] == resource)
            .ok_or_else(|| not_found(resource, id))?;
        let audit = self.fhir_audit(caller, l.patient.id, format!("fhir/{resource}/{id}"), "read".into());
        self.audit.record(caller.practice(), audit).await?;
        Ok(r)
    }

    /// `GET [base]/Binary/{id}`: a document's content, for a caller who may receive its
    /// DocumentReference (the same check: a hidden document answers as an unknown id).
    pub async fn fhir_binary(&self, caller: &FhirCaller, id: &str) -> AppResult<crate::documents::DocumentContent> {
        Self::check_scope(caller, "Binary")?;
        let (l, _, entry) = self.entry_for(caller, "Binary", id).await?;
        let file = self.store.document_file(caller.practice(), entry.id).await?;
        let content = crate::documents::content_of(&entry, file).ok_or_else(|| not_found("Binary", id))?;
        let audit = self.fhir_audit(
            caller,
            l.patient.id,
            format!("fhir/Binary/{id}"),
            format!("read {} bytes", content.bytes.len()),
        );
        self.audit.record(caller.practice(), audit).await?;
        Ok(content)
    }

    /// Resources of the given types the caller may receive, newest entry first, after `after`:
    /// at most `limit` (an entry's resources stay together on one page) and whether more follow.
    #[allow(clippy::too_many_arguments)]
    async fn fhir_entries(
        &self,
        caller: &FhirCaller,
        l: &Loaded,
        policy: &AccessPolicy,
        render: &mut Render,
        types: &[&str],
        mut after: Option<EntryCursor>,
        limit: usize,
    ) -> AppResult<(Vec<Value>, Option<String>)> {
        let kinds: Vec<EntryKind> =
            EntryKind::ALL.into_iter().filter(|k| resource_types(*k).iter().any(|t| types.contains(t))).collect();
        let mut out = Vec::with_capacity(limit);
        let mut last: Option<Entry> = None;
        if kinds.is_empty() || (matches!(caller, FhirCaller::App(_)) && policy.denied().is_some()) {
            return Ok((out, None));
        }
        let mut scan = (limit as u32 + limit as u32 / 5 + 8).min(2000);
        loop {
            let batch = self
                .store
                .entries(l.practice.id, l.patient.id, EntryQuery { section: None, after, limit: scan })
                .await?;
            let exhausted = batch.len() < scan as usize;
            let cx = self.context_for(caller, l, policy, render, &batch).await?;
            for e in batch {
                after = Some(EntryCursor::of(&e));
                if !kinds.contains(&e.kind()) {
                    continue;
                }
                let rs: Vec<Value> = Self::resources_for(caller, policy, &cx, &e)
                    .into_iter()
                    .filter(|r| r["resourceType"].as_str().is_some_and(|t| types.contains(&t)))
                    .collect();
                if rs.is_empty() {
                    continue;
                }
                if !out.is_empty() && out.len() + rs.len() > limit {
                    // More follow: the page ends at the last entry taken.
                    return Ok((out, last.as_ref().map(encode_cursor)));
                }
                out.extend(rs);
                last = Some(e);
            }
            if exhausted {
                return Ok((out, None));
            }
            scan = (scan * 2).min(2000);
        }
    }

    fn bind_cursor(caller: &FhirCaller, inner: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{inner}", caller.binding()))
    }

    /// What a cursor this server gave this caller holds; any other cursor is refused.
    fn unbind_raw(caller: &FhirCaller, cursor: &str) -> AppResult<String> {
        let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad_cursor())?;
        let text = String::from_utf8(raw).map_err(|_| bad_cursor())?;
        let (binding, inner) = text.split_once('|').ok_or_else(bad_cursor)?;
        if binding != caller.binding() {
            return Err(bad_cursor());
        }
        Ok(inner.to_owned())
    }

    fn unbind_cursor(caller: &FhirCaller, cursor: &str) -> AppResult<EntryCursor> {
        decode_cursor(&Self::unbind_raw(caller, cursor)?).map_err(|_| bad_cursor())
    }

    /// The resources `matches` point at along `paths`, that the caller may receive, once each
    /// and none already among the matches: the patient themselves, the practice, its
    /// clinicians, an appointment's slot.
    async fn included(
        &self,
        caller: &FhirCaller,
        l: &Loaded,
        matches: &[Value],
        paths: &[(&[&str], &str)],
    ) -> AppResult<Vec<Value>> {
        let mut seen: HashSet<String> = matches
            .iter()
            .map(|r| format!("{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or("")))
            .collect();
        let mut wanted: Vec<String> = Vec::new();
        for (path, target) in paths {
            if Self::check_scope(caller, target).is_err() {
                continue;
            }
            for r in matches {
                for reference in references_at(r, path) {
                    if reference.starts_with(&format!("{target}/")) && seen.insert(reference.clone()) {
                        wanted.push(reference);
                    }
                }
            }
        }
        let mut out = Vec::new();
        let mut directory: Option<Vec<Value>> = None;
        for reference in wanted {
            let Some((t, id)) = reference.split_once('/') else { continue };
            match t {
                "Patient" if id == l.patient.id.to_string() => out.push(Self::patient_for(caller, l)),
                "Organization" if id == l.practice.id.to_string() => out.push(fhir::organization_resource(&l.practice)),
                "Practitioner" => {
                    if directory.is_none() {
                        directory = Some(self.directory(caller, "Practitioner").await?);
                    }
                    if let Some(p) = directory.iter().flatten().find(|p| p["id"] == id) {
                        out.push(p.clone());
                    }
                }
                "Slot" => out.extend(self.slot_by_id(l.practice.id, id).await?),
                _ => {}
            }
        }
        Ok(out)
    }

    /// `GET [base]/{type}?patient=…&_count=…&_cursor=…&_include=…`.
    pub async fn fhir_search(&self, caller: &FhirCaller, resource: &str, base: &str, q: &Search) -> AppResult<Value> {
        Self::check_scope(caller, resource)?;
        let count = parse_count(q.count.as_deref())?;
        let cursor = q.cursor.as_deref().map(|c| Self::unbind_raw(caller, c)).transpose()?;
        let paths = include_paths(resource, &q.include)?;
        if DIRECTORY_TYPES.contains(&resource) {
            let entries =
                self.directory(caller, resource).await?.into_iter().map(|r| search_entry(base, r, "match")).collect();
            return Ok(bundle_page(base, &format!("/{resource}"), None, entries));
        }
        if resource == "Binary" {
            return Err(AppError::BadRequest(
                "Binary is read by id only (the url in a DocumentReference's attachment)".into(),
            ));
        }
        let (l, found, self_url, next_url) = if SCHEDULING_TYPES.contains(&resource) {
            let (whose, found) = self.scheduling_read(caller, resource, None, q.patient.as_deref()).await?;
            let after = match cursor.as_deref() {
                Some(c) => Some(c.strip_prefix("at:").ok_or_else(bad_cursor)?),
                None => None,
            };
            let (page, next) = schedule_page(found, resource == "Slot", after, count);
            let self_url = match &whose {
                None => format!("/Slot?_count={count}"),
                Some(l) => format!("/Appointment?patient={}&_count={count}", l.patient.id),
            };
            let next_url =
                next.map(|k| format!("{self_url}&_cursor={}", Self::bind_cursor(caller, &format!("at:{k}"))));
            match whose {
                // Slots point at nothing the caller could include.
                Some(l) if !paths.is_empty() => (l, page, self_url, next_url),
                _ => return Ok(bundle_page(base, &self_url, next_url, entries_of(base, page, Vec::new()))),
            }
        } else if REQUEST_TYPES.contains(&resource) {
            let (l, found) = self.tasks_read(caller, None, q.patient.as_deref()).await?;
            let self_url = format!("/Task?patient={}", l.patient.id);
            (l, found, self_url, None)
        } else if resource == "Patient" {
            let Some(l) = self.patient_search(caller, q).await? else {
                return Ok(bundle_page(base, "/Patient", None, Vec::new()));
            };
            let audit = self.fhir_audit(caller, l.patient.id, "fhir/Patient".into(), "search".into());
            self.audit.record(caller.practice(), audit).await?;
            let found = vec![Self::patient_for(caller, &l)];
            let self_url = format!("/Patient?_id={}", l.patient.id);
            (l, found, self_url, None)
        } else if resource == "Observation" && q.filtered() {
            let filter = Filter::of(q)?;
            let (l, policy) = self.view_for(caller, q.patient.as_deref()).await?;
            let mut render = self.render(caller.practice()).await?;
            let after = match cursor.as_deref() {
                Some(c) => Some(c.strip_prefix("dated:").ok_or_else(bad_cursor)?.to_owned()),
                None => None,
            };
            // Every Observation the caller may receive (through the same engine-checked reader as
            // an unfiltered search), then those that match, in date order, a page at a time.
            let mut matched = Vec::new();
            let mut from = None;
            loop {
                let (found, next) =
                    self.fhir_entries(caller, &l, &policy, &mut render, &["Observation"], from, MAX_COUNT).await?;
                matched.extend(found.into_iter().filter(|r| filter.keeps(r)));
                match next {
                    Some(c) => from = Some(decode_cursor(&c).map_err(|_| bad_cursor())?),
                    None => break,
                }
            }
            matched.sort_by_cached_key(dated_key);
            if !filter.oldest_first {
                matched.reverse();
            }
            let mut page: Vec<Value> = matched
                .into_iter()
                .filter(|r| {
                    after.as_deref().is_none_or(|a| {
                        if filter.oldest_first {
                            dated_key(r).as_str() > a
                        } else {
                            dated_key(r).as_str() < a
                        }
                    })
                })
                .take(count + 1)
                .collect();
            let next = (page.len() > count).then(|| page[count - 1].clone());
            page.truncate(count);
            let audit = self.fhir_audit(
                caller,
                l.patient.id,
                "fhir/Observation".into(),
                format!("search entries={}{}", page.len(), Filter::query(q).replace('&', " ")),
            );
            self.audit.record(caller.practice(), audit).await?;
            let self_url = format!("/Observation?patient={}{}&_count={count}", l.patient.id, Filter::query(q));
            let next_url = next.map(|r| {
                format!("{self_url}&_cursor={}", Self::bind_cursor(caller, &format!("dated:{}", dated_key(&r))))
            });
            (l, page, self_url, next_url)
        } else if CLINICAL_TYPES.contains(&resource) {
            if q.filtered() && q.strict {
                let first = if q.code.is_some() {
                    "code"
                } else if q.date.is_empty() {
                    "_sort"
                } else {
                    "date"
                };
                return Err(AppError::BadRequest(format!(
                    "{first} is not a search parameter of {resource} here (code, date and _sort are Observation's; see the CapabilityStatement)"
                )));
            }
            let (l, policy) = self.view_for(caller, q.patient.as_deref()).await?;
            let mut render = self.render(caller.practice()).await?;
            let after = cursor.as_deref().map(|c| decode_cursor(c).map_err(|_| bad_cursor())).transpose()?;
            let (found, next) = self.fhir_entries(caller, &l, &policy, &mut render, &[resource], after, count).await?;
            let audit = self.fhir_audit(
                caller,
                l.patient.id,
                format!("fhir/{resource}"),
                format!("search entries={}", found.len()),
            );
            self.audit.record(caller.practice(), audit).await?;
            let self_url = format!("/{resource}?patient={}&_count={count}", l.patient.id);
            let next_url = next.map(|c| format!("{self_url}&_cursor={}", Self::bind_cursor(caller, &c)));
            (l, found, self_url, next_url)
        } else {
            return Err(AppError::NotFound(format!("{resource} is not a resource type served here")));
        };
        let included = self.included(caller, &l, &found, &paths).await?;
        // The links say which _include were followed, so that the next page follows them too.
        let followed: String = q.include.iter().map(|i| format!("&_include={}", i.trim())).collect();
        let self_url = format!("{self_url}{followed}");
        let next_url = next_url.map(|n| format!("{n}{followed}"));
        Ok(bundle_page(base, &self_url, next_url, entries_of(base, found, included)))
    }

    /// `Patient?identifier=` (an NHS number) or `Patient?patient=`/`_id`; an app's only answer is
    /// its own patient.
    async fn patient_search(&self, caller: &FhirCaller, q: &Search) -> AppResult<Option<Loaded>> {
        let Some(ident) = q.identifier.as_deref() else {
            return Ok(Some(self.view_for(caller, q.patient.as_deref().or(q.id.as_deref())).await?.0));
        };
        let value = match ident.split_once('|') {
            Some((system, v)) if system.is_empty() || system == caldicott_fhir::read::NHS_NUMBER_SYSTEM => v,
            Some(_) => {
                return Err(AppError::BadRequest(format!(
                    "identifier searches take an NHS number: identifier={}|<NHS number>",
                    caldicott_fhir::read::NHS_NUMBER_SYSTEM
                )))
            }
            None => ident,
        };
        let nhs = caldicott_core::NhsNumber::parse(value).map_err(|e| AppError::BadRequest(e.to_string()))?;
        let patient = match caller {
            FhirCaller::App(_) => {
                let (l, _) = self.view_for(caller, None).await?;
                return Ok((l.patient.nhs_number == nhs).then_some(l));
            }
            _ => self.store.patient_by_nhs_number(caller.practice(), &nhs).await?,
        };
        match patient {
            Some(p) => Ok(Some(self.view_for(caller, Some(&p.id.to_string())).await?.0)),
            None => Ok(None),
        }
    }

    /// `GET [base]/Patient/{id}/$everything?_count=…&_cursor=…`: the Patient, then every entry
    /// the caller may receive, a page at a time, each page with the clinicians it names.
    pub async fn fhir_everything(
        &self,
        caller: &FhirCaller,
        patient: &str,
        base: &str,
        count: Option<&str>,
        cursor: Option<&str>,
    ) -> AppResult<Value> {
        Self::check_scope(caller, "Patient")?;
        let count = parse_count(count)?;
        let after = cursor.map(|c| Self::unbind_cursor(caller, c)).transpose()?;
        let (l, policy) = self.view_for(caller, Some(patient)).await?;
        let types: Vec<&str> = EntryKind::ALL
            .into_iter()
            .flat_map(|k| resource_types(k).iter().copied())
            .filter(|t| caller.scopes().is_none_or(|s| s.allows(t)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut render = self.render(caller.practice()).await?;
        let (found, next) = self.fhir_entries(caller, &l, &policy, &mut render, &types, after, count).await?;
        let audit = self.fhir_audit(
            caller,
            l.patient.id,
            format!("fhir/Patient/{}/$everything", l.patient.id),
            format!("entries={}", found.len()),
        );
        self.audit.record(caller.practice(), audit).await?;
        let mut head = Vec::new();
        if after.is_none() {
            head.push(Self::patient_for(caller, &l));
        }
        let mut paths: Vec<(&[&str], &str)> =
            INCLUDES.iter().filter(|i| i.3 == "Practitioner").map(|i| (i.2, i.3)).collect();
        if after.is_none() {
            paths.push((&["generalPractitioner"], "Organization"));
        }
        let matches: Vec<Value> = head.iter().cloned().chain(found.iter().cloned()).collect();
        let included = self.included(caller, &l, &matches, &paths).await?;
        let mut entries: Vec<Value> = head.into_iter().map(|r| search_entry(base, r, "match")).collect();
        entries.extend(entries_of(base, found, included));
        let self_url = format!("/Patient/{}/$everything?_count={count}", l.patient.id);
        let next_url = next.map(|c| format!("{self_url}&_cursor={}", Self::bind_cursor(caller, &c)));
        Ok(bundle_page(base, &self_url, next_url, entries))
    }
}

fn entries_of(base: &str, found: Vec<Value>, included: Vec<Value>) -> Vec<Value> {
    found
        .into_iter()
        .map(|r| search_entry(base, r, "match"))
        .chain(included.into_iter().map(|r| search_entry(base, r, "include")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_only_those_offered() {
        assert!(Scopes::parse("").unwrap().allows("Observation"));
        let narrow = Scopes::parse("patient/Observation.read patient/Patient.rs").unwrap();
        assert!(Scopes::parse("patient/Practitioner.read").unwrap().allows("Practitioner"));
        assert!(narrow.allows("Observation") && narrow.allows("Patient") && !narrow.allows("Condition"));
        for bad in ["system/*.read", "patient/*.write", "user/Observation.read", "patient/Basic.read", "openid"] {
            assert!(Scopes::parse(bad).is_err(), "{bad}");
        }
        assert!(Scopes::parse("patient/MedicationStatement.read patient/Binary.read").is_ok());
    }

    #[test]
    fn system_scopes_read_only_and_within_what_was_registered() {
        let all = Scopes::parse_system("").unwrap();
        assert_eq!(all.as_string(), "system/*.read");
        let obs = Scopes::parse_system("system/Observation.rs system/Patient.read").unwrap();
        assert!(obs.allows("Observation") && !obs.allows("Condition"));
        assert!(obs.within(&all) && !all.within(&obs));
        assert!(Scopes::parse_system("system/Patient.read").unwrap().within(&obs));
        for bad in ["patient/*.read", "system/*.write", "system/Appointment.write", "system/Basic.read"] {
            assert!(Scopes::parse_system(bad).is_err(), "{bad}");
        }
        // Patient and system scopes never stand in for each other.
        assert!(!Scopes::parse("").unwrap().within(&all));
    }

    #[test]
    fn include_parameters_are_checked() {
        let p = include_paths("Observation", &["Observation:performer".into()]).unwrap();
        assert_eq!(p, vec![(&["performer"][..], "Practitioner")]);
        assert_eq!(
            include_paths("Observation", &["Observation:*".into()]).unwrap().len(),
            2,
            "patient and subject are one path"
        );
        assert!(include_paths("Observation", &["Observation:performer:Practitioner".into()]).is_ok());
        for bad in ["Condition:patient", "Observation:based-on", "Observation:performer:Organization", "x"] {
            let e = include_paths("Observation", &[bad.into()]).unwrap_err();
            assert!(e.to_string().contains("Observation:performer"), "{bad}: {e}");
        }
    }

    #[test]
    fn references_are_found_through_arrays() {
        let r =
            json!({ "performer": [{ "actor": { "reference": "Practitioner/a" } }, { "actor": { "display": "x" } }] });
        assert_eq!(references_at(&r, &["performer", "actor"]), vec!["Practitioner/a".to_owned()]);
        assert!(references_at(&r, &["subject"]).is_empty());
    }
}
