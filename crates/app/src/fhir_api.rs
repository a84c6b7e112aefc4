//! The FHIR R4 (UK Core) API: tokens with SMART-style scopes, reads, searches and
//! `Patient/$everything`, with the visibility engine on every patient-facing answer.
//!
//! Two kinds of caller:
//! - **A linked app** exchanges its link credential (the `lnk_` token from linking, as a SMART
//!   refresh token) and its client credentials for a short-lived access token bound to that
//!   practice, that link and the scopes granted (`patient/*.read` or narrower). It reads exactly
//!   the patient's online view: an entry the patient cannot see online is absent from every
//!   answer, and its id answers exactly as an id that never existed. The link is checked on every
//!   request, so revoking it ends access at once.
//! - **Practice-facing** callers (a staff API token) read the whole record of their practice's
//!   patients; entries hidden from the patient online carry the `NOPAT` security label.

use crate::apps::sha256;
use crate::fhir_out::{self, entry_resource, resource_type, Label};
use crate::record::{decode_cursor, encode_cursor, Loaded};
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::access::IdentityLevel;
use caldicott_core::audit::{Action, Actor, ActorKind, Outcome};
use caldicott_core::entry::{Entry, EntryKind};
use caldicott_core::ids::*;
use caldicott_core::online::{AppLink, LinkVia, PatientApp};
use caldicott_core::visibility::AccessPolicy;
use caldicott_store::fhir::FhirToken;
use caldicott_store::{EntryCursor, EntryQuery};
use chrono::Duration;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

const ACCESS_PREFIX: &str = "fat_";
/// How long an access token lasts; the app asks again with its link credential.
pub const ACCESS_LIFETIME: Duration = Duration::minutes(15);
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

/// The clinical resource types served, with the record kinds each holds.
pub const CLINICAL_TYPES: [&str; 7] = [
    "Condition",
    "Observation",
    "AllergyIntolerance",
    "MedicationRequest",
    "Immunization",
    "Encounter",
    "DocumentReference",
];

/// Booking: free slots to read, and the patient's appointments to read, book and cancel.
pub const SCHEDULING_TYPES: [&str; 2] = ["Slot", "Appointment"];

/// The practice and its clinicians: not patient data, served to any caller of the practice.
pub const DIRECTORY_TYPES: [&str; 2] = ["Organization", "Practitioner"];

fn kinds_of(resource: &str) -> Vec<EntryKind> {
    EntryKind::ALL.into_iter().filter(|k| resource_type(*k) == resource).collect()
}

/// The scopes granted to a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    pub granted: BTreeSet<String>,
}

impl Scopes {
    /// Reads a requested scope string. Only `patient/<type>.read` (or SMART v2 `.rs`/`.r`) for
    /// the types served, or `patient/*.read`, may be asked for; anything else is refused.
    pub fn parse(requested: &str) -> AppResult<Self> {
        let mut granted = BTreeSet::new();
        for s in requested.split_whitespace() {
            let bad = || AppError::BadRequest(format!("the scope \"{s}\" is not offered (invalid_scope)"));
            let rest = s.strip_prefix("patient/").ok_or_else(bad)?;
            let (t, access) = rest.split_once('.').ok_or_else(bad)?;
            let known = t == "*"
                || t == "Patient"
                || DIRECTORY_TYPES.contains(&t)
                || CLINICAL_TYPES.contains(&t)
                || SCHEDULING_TYPES.contains(&t);
            if !known {
                return Err(bad());
            }
            let (read, write) = match access {
                "read" | "rs" | "r" | "s" => (true, false),
                // Appointments are the one thing an app may write (book and cancel), and only when asked
                // for by name: `patient/*.write` is not offered.
                "write" | "cu" | "c" | "u" if t == "Appointment" => (false, true),
                "cruds" | "crus" | "cru" if t == "Appointment" => (true, true),
                _ => return Err(bad()),
            };
            if read {
                granted.insert(format!("patient/{t}.read"));
            }
            if write {
                granted.insert("patient/Appointment.write".to_owned());
            }
        }
        if granted.is_empty() {
            granted.insert("patient/*.read".into());
        }
        Ok(Self { granted })
    }

    pub fn allows(&self, resource: &str) -> bool {
        self.granted.contains("patient/*.read") || self.granted.contains(&format!("patient/{resource}.read"))
    }

    pub fn allows_write(&self, resource: &str) -> bool {
        resource == "Appointment" && self.granted.contains("patient/Appointment.write")
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
}

/// Who is calling the FHIR API.
#[derive(Debug, Clone)]
pub enum FhirCaller {
    /// A linked app, bound to one patient of one practice.
    App(Box<AppCaller>),
    /// A member of staff (through their API token): the practice's whole record.
    Staff(StaffPrincipal),
}

impl FhirCaller {
    fn practice(&self) -> PracticeId {
        match self {
            Self::App(a) => a.practice,
            Self::Staff(s) => s.practice,
        }
    }
    /// What a paging cursor is bound to: this caller at this practice.
    fn binding(&self) -> String {
        match self {
            Self::App(a) => format!("{}:{}", a.practice.as_uuid().simple(), a.link.id.as_uuid().simple()),
            Self::Staff(s) => format!("{}:{}", s.practice.as_uuid().simple(), s.staff.as_uuid().simple()),
        }
    }
}

/// The answer of the token endpoint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    /// SMART launch context: the patient the token is bound to.
    pub patient: String,
}

/// A search as asked.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub patient: Option<String>,
    pub count: Option<String>,
    pub cursor: Option<String>,
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

fn bundle_page(kind: &str, base: &str, self_url: &str, next_url: Option<String>, entries: Vec<Value>) -> Value {
    let mut links = vec![json!({ "relation": "self", "url": format!("{base}{self_url}") })];
    if let Some(n) = next_url {
        links.push(json!({ "relation": "next", "url": format!("{base}{n}") }));
    }
    json!({
        "resourceType": "Bundle",
        "id": new_id().to_string(),
        "type": kind,
        "link": links,
        "entry": entries,
    })
}

fn search_entry(base: &str, r: Value, mode: &str) -> Value {
    let url = format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
    json!({ "fullUrl": url, "resource": r, "search": { "mode": mode } })
}

impl App {
    /// The token endpoint: an app swaps its link credential for an access token (SMART
    /// `refresh_token` grant, client credentials by HTTP Basic). One refusal for every mismatch.
    pub async fn fhir_token(
        &self,
        client_id: &str,
        client_secret: &str,
        grant_type: &str,
        refresh_token: &str,
        scope: &str,
    ) -> AppResult<TokenResponse> {
        if grant_type != "refresh_token" {
            return Err(AppError::BadRequest(
                "grant_type must be refresh_token, with the link's token (unsupported_grant_type)".into(),
            ));
        }
        let scopes = Scopes::parse(scope)?;
        let refused =
            || AppError::Unauthenticated("the client or the link's token is not right (invalid_grant)".into());
        let (practice, link, app) = self.app_link_of_token(refresh_token).await.map_err(|_| refused())?;
        if app.client_id != client_id.trim()
            || !crate::constant_time_eq(&hex::encode(sha256(client_secret)), &hex::encode(app.client_secret_hash))
        {
            return Err(refused());
        }
        let mut raw = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let secret = URL_SAFE_NO_PAD.encode(raw);
        let now = self.now();
        let token = FhirToken {
            hash: sha256(&secret),
            link: link.id,
            scopes: scopes.as_string(),
            issued_at: now,
            expires_at: now + ACCESS_LIFETIME,
        };
        let audit = self.patient_audit(
            Actor { kind: ActorKind::App, id: app.id.to_string(), role: "app".into() },
            Some(link.patient),
            Action::FhirTokenIssue,
            format!("app_link/{}", link.id),
            Outcome::Success,
            format!("scope={}", token.scopes),
        );
        self.store.create_fhir_token(practice, &token, &audit).await?;
        Ok(TokenResponse {
            access_token: format!("{ACCESS_PREFIX}{}{secret}", practice.as_uuid().simple()),
            token_type: "Bearer",
            expires_in: ACCESS_LIFETIME.num_seconds(),
            scope: token.scopes,
            patient: link.patient.to_string(),
        })
    }

    /// Who a bearer token belongs to: an app's access token, or a member of staff's API token.
    /// The app's link and the app itself are checked on every request.
    pub async fn fhir_caller(&self, bearer: &str) -> AppResult<FhirCaller> {
        let refused = || AppError::Unauthenticated("the access token is not right, has expired or was revoked".into());
        let bearer = bearer.trim();
        let Some(rest) = bearer.strip_prefix(ACCESS_PREFIX) else {
            let staff = crate::auth::authenticate(self, bearer).await?;
            staff.require_team("administrators and ICB analysts do not read patient records")?;
            return Ok(FhirCaller::Staff(staff));
        };
        if rest.len() < 33 || !rest.is_char_boundary(32) {
            return Err(refused());
        }
        let practice = PracticeId::from_uuid(Uuid::try_parse(&rest[..32]).map_err(|_| refused())?);
        let token = self.store.fhir_token(practice, &sha256(&rest[32..])).await?.ok_or_else(refused)?;
        if token.expires_at <= self.now() {
            return Err(refused());
        }
        let link = self.store.app_link(practice, token.link).await?.ok_or_else(refused)?;
        if link.revoked_at.is_some() {
            return Err(refused());
        }
        let app =
            self.store.apps(practice).await?.into_iter().find(|a| a.id == link.app && a.active).ok_or_else(refused)?;
        let scopes = Scopes { granted: token.scopes.split_whitespace().map(str::to_owned).collect() };
        Ok(FhirCaller::App(Box::new(AppCaller { practice, link, app, scopes })))
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

    /// The facts and the policy for the patient an app is bound to: the patient's own online
    /// view, at the identity level the link was made with.
    async fn app_view(&self, practice: PracticeId, link: &AppLink) -> AppResult<(Loaded, AccessPolicy)> {
        let p = self.store.practice(practice).await?.ok_or_else(|| not_found("Patient", ""))?;
        let patient = self.store.patient(practice, link.patient).await?.ok_or_else(|| not_found("Patient", ""))?;
        let identity = self.link_identity(practice, link).await?;
        let l = self.facts_for(p, patient).await?;
        let policy = self.policy_for(&l, None, identity);
        Ok((l, policy))
    }

    /// The patient a staff caller names (by resource id), of their own practice.
    async fn staff_view(&self, who: &StaffPrincipal, patient: &str) -> AppResult<(Loaded, AccessPolicy)> {
        let id = Uuid::try_parse(patient.trim_start_matches("Patient/")).map_err(|_| not_found("Patient", patient))?;
        let p = self.store.practice(who.practice).await?.ok_or_else(|| not_found("Patient", patient))?;
        let patient = self
            .store
            .patient(who.practice, PatientId::from_uuid(id))
            .await?
            .ok_or_else(|| not_found("Patient", patient))?;
        let l = self.facts_for(p, patient).await?;
        let identity = l.identity;
        let policy = self.policy_for(&l, None, identity);
        Ok((l, policy))
    }

    fn fhir_audit(
        &self,
        caller: &FhirCaller,
        patient: PatientId,
        entity: String,
        detail: String,
    ) -> caldicott_core::audit::AuditRecord {
        match caller {
            FhirCaller::App(a) => self.patient_audit(
                Actor { kind: ActorKind::App, id: a.app.id.to_string(), role: "app".into() },
                Some(patient),
                Action::RecordViewOnline,
                entity,
                Outcome::Success,
                detail,
            ),
            FhirCaller::Staff(who) => {
                self.audit_record(who, Some(patient), Action::RecordViewStaff, entity, Outcome::Success, detail)
            }
        }
    }

    /// The view a caller has of a patient: an app only of its own patient (any other id is not
    /// known to it), staff of any patient of their practice.
    async fn view_for(&self, caller: &FhirCaller, patient: Option<&str>) -> AppResult<(Loaded, AccessPolicy)> {
        match caller {
            FhirCaller::App(a) => {
                if let Some(p) = patient {
                    let asked = p.trim_start_matches("Patient/");
                    if asked != a.link.patient.to_string() {
                        return Err(not_found("Patient", asked));
                    }
                }
                self.app_view(a.practice, &a.link).await
            }
            FhirCaller::Staff(who) => {
                let p = patient.ok_or_else(|| {
                    AppError::BadRequest("name the patient: ?patient=<Patient id> (practice-facing searches)".into())
                })?;
                self.staff_view(who, p).await
            }
        }
    }

    fn check_scope(caller: &FhirCaller, resource: &str) -> AppResult<()> {
        match caller {
            FhirCaller::App(a) if !a.scopes.allows(resource) => Err(AppError::Forbidden(format!(
                "the token's scopes do not include {resource} (patient/{resource}.read)"
            ))),
            _ => Ok(()),
        }
    }

    /// An entry as the caller may receive it: for an app only if shown online (never labelled),
    /// for staff always, labelled `NOPAT` when hidden from the patient.
    fn resource_for(caller: &FhirCaller, policy: &AccessPolicy, e: &Entry) -> Option<Value> {
        let shown = policy.decide(e).is_shown();
        match caller {
            FhirCaller::App(_) if !shown => None,
            FhirCaller::App(_) => Some(entry_resource(e, Label::None)),
            FhirCaller::Staff(_) => {
                Some(entry_resource(e, if shown { Label::Shareable } else { Label::NotForPatient }))
            }
        }
    }

    /// The practice's Organization and its clinicians (active or not: past entries name them).
    async fn directory(&self, caller: &FhirCaller, resource: &str) -> AppResult<Vec<Value>> {
        let practice = self.store.practice(caller.practice()).await?.ok_or_else(|| not_found(resource, ""))?;
        Ok(match resource {
            "Organization" => vec![fhir_out::organization_resource(&practice)],
            _ => self
                .store
                .staff_members(practice.id)
                .await?
                .iter()
                .filter(|s| s.role == caldicott_core::staff::Role::Clinician)
                .map(fhir_out::practitioner_resource)
                .collect(),
        })
    }

    /// `GET [base]/{type}/{id}`.
    pub async fn fhir_read(&self, caller: &FhirCaller, resource: &str, id: &str) -> AppResult<Value> {
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
            // Practice-facing reads of one appointment go through a search by patient.
            return self
                .scheduling_read(caller, resource, Some(id), None)
                .await
                .map_err(|e| match e {
                    AppError::BadRequest(_) => not_found(resource, id),
                    other => other,
                })?
                .into_iter()
                .next()
                .ok_or_else(|| not_found(resource, id));
        }
        if resource == "Patient" {
            let (l, _) = self.view_for(caller, Some(id)).await?;
            let audit = self.fhir_audit(caller, l.patient.id, format!("fhir/Patient/{id}"), "read".into());
            self.audit.record(caller.practice(), audit).await?;
            return Ok(fhir_out::patient_resource(&l.patient, &l.practice));
        }
        if !CLINICAL_TYPES.contains(&resource) {
            return Err(AppError::NotFound(format!("{resource} is not a resource type served here")));
        }
        let entry_id = Uuid::try_parse(id).map_err(|_| not_found(resource, id))?;
        let entry = self
            .store
            .entry(caller.practice(), EntryId::from_uuid(entry_id))
            .await?
            .filter(|e| resource_type(e.kind()) == resource)
            .ok_or_else(|| not_found(resource, id))?;
        let patient = entry.patient.to_string();
        // An app asking for another patient's entry, or a hidden one, gets what a made-up id gets.
        let (l, policy) = self.view_for(caller, Some(&patient)).await.map_err(|_| not_found(resource, id))?;
        let r = Self::resource_for(caller, &policy, &entry).ok_or_else(|| not_found(resource, id))?;
        let audit = self.fhir_audit(caller, l.patient.id, format!("fhir/{resource}/{id}"), "read".into());
        self.audit.record(caller.practice(), audit).await?;
        Ok(r)
    }

    /// Entries the caller may receive, of the given kinds, newest first, after `after`: at most
    /// `limit` and whether more follow.
    async fn fhir_entries(
        &self,
        caller: &FhirCaller,
        l: &Loaded,
        policy: &AccessPolicy,
        kinds: &[EntryKind],
        mut after: Option<EntryCursor>,
        limit: usize,
    ) -> AppResult<(Vec<Value>, Option<String>)> {
        let mut out = Vec::with_capacity(limit);
        let mut last: Option<Entry> = None;
        if matches!(caller, FhirCaller::App(_)) && policy.denied().is_some() {
            return Ok((out, None));
        }
        let mut scan = (limit as u32 + limit as u32 / 5 + 8).min(2000);
        loop {
            let batch = self
                .store
                .entries(l.practice.id, l.patient.id, EntryQuery { section: None, after, limit: scan })
                .await?;
            let exhausted = batch.len() < scan as usize;
            for e in batch {
                after = Some(EntryCursor::of(&e));
                if !kinds.contains(&e.kind()) {
                    continue;
                }
                if let Some(r) = Self::resource_for(caller, policy, &e) {
                    if out.len() == limit {
                        // One more exists: the page ends at the last one taken.
                        return Ok((out, last.as_ref().map(encode_cursor)));
                    }
                    out.push(r);
                    last = Some(e);
                }
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

    fn unbind_cursor(caller: &FhirCaller, cursor: &str) -> AppResult<EntryCursor> {
        let bad = || AppError::BadRequest("the paging cursor is not one this server gave this caller".into());
        let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (binding, inner) = text.split_once('|').ok_or_else(bad)?;
        if binding != caller.binding() {
            return Err(bad());
        }
        decode_cursor(inner).map_err(|_| bad())
    }

    /// `GET [base]/{type}?patient=…&_count=…&_cursor=…`.
    pub async fn fhir_search(&self, caller: &FhirCaller, resource: &str, base: &str, q: &Search) -> AppResult<Value> {
        Self::check_scope(caller, resource)?;
        let count = parse_count(q.count.as_deref())?;
        let after = q.cursor.as_deref().map(|c| Self::unbind_cursor(caller, c)).transpose()?;
        if DIRECTORY_TYPES.contains(&resource) {
            let entries =
                self.directory(caller, resource).await?.into_iter().map(|r| search_entry(base, r, "match")).collect();
            return Ok(bundle_page("searchset", base, &format!("/{resource}"), None, entries));
        }
        if SCHEDULING_TYPES.contains(&resource) {
            let found = self.scheduling_read(caller, resource, None, q.patient.as_deref()).await?;
            let entries = found.into_iter().map(|r| search_entry(base, r, "match")).collect();
            return Ok(bundle_page("searchset", base, &format!("/{resource}"), None, entries));
        }
        if resource == "Patient" {
            let (l, _) = self.view_for(caller, q.patient.as_deref()).await?;
            let audit = self.fhir_audit(caller, l.patient.id, "fhir/Patient".into(), "search".into());
            self.audit.record(caller.practice(), audit).await?;
            let r = fhir_out::patient_resource(&l.patient, &l.practice);
            return Ok(bundle_page("searchset", base, "/Patient", None, vec![search_entry(base, r, "match")]));
        }
        if !CLINICAL_TYPES.contains(&resource) {
            return Err(AppError::NotFound(format!("{resource} is not a resource type served here")));
        }
        let (l, policy) = self.view_for(caller, q.patient.as_deref()).await?;
        let (found, next) = self.fhir_entries(caller, &l, &policy, &kinds_of(resource), after, count).await?;
        let audit = self.fhir_audit(
            caller,
            l.patient.id,
            format!("fhir/{resource}"),
            format!("search entries={}", found.len()),
        );
        self.audit.record(caller.practice(), audit).await?;
        let pid = l.patient.id;
        let self_url = format!("/{resource}?patient={pid}&_count={count}");
        let next_url = next.map(|c| format!("{self_url}&_cursor={}", Self::bind_cursor(caller, &c)));
        let entries = found.into_iter().map(|r| search_entry(base, r, "match")).collect();
        Ok(bundle_page("searchset", base, &self_url, next_url, entries))
    }

    /// `GET [base]/Patient/{id}/$everything?_count=…&_cursor=…`: the Patient, then every entry
    /// the caller may receive, a page at a time.
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
        let kinds: Vec<EntryKind> = EntryKind::ALL
            .into_iter()
            .filter(|k| match caller {
                FhirCaller::App(a) => a.scopes.allows(resource_type(*k)),
                FhirCaller::Staff(_) => true,
            })
            .collect();
        let (found, next) = self.fhir_entries(caller, &l, &policy, &kinds, after, count).await?;
        let audit = self.fhir_audit(
            caller,
            l.patient.id,
            format!("fhir/Patient/{}/$everything", l.patient.id),
            format!("entries={}", found.len()),
        );
        self.audit.record(caller.practice(), audit).await?;
        let mut entries = Vec::with_capacity(found.len() + 2);
        if after.is_none() {
            entries.push(search_entry(base, fhir_out::patient_resource(&l.patient, &l.practice), "match"));
            entries.push(search_entry(base, fhir_out::organization_resource(&l.practice), "include"));
        }
        entries.extend(found.into_iter().map(|r| search_entry(base, r, "match")));
        let self_url = format!("/Patient/{}/$everything?_count={count}", l.patient.id);
        let next_url = next.map(|c| format!("{self_url}&_cursor={}", Self::bind_cursor(caller, &c)));
        Ok(bundle_page("searchset", base, &self_url, next_url, entries))
    }
}

fn slot_resource(s: &caldicott_core::appointments::Slot, free: bool) -> Value {
    json!({
        "resourceType": "Slot",
        "id": s.id.to_string(),
        "meta": { "profile": [format!("{}UKCore-Slot", fhir_out::UK_CORE)] },
        "serviceType": [{ "text": s.slot_type.display() }],
        "schedule": { "display": format!("{}, {}", s.clinician_name, s.location) },
        "status": if free { "free" } else { "busy" },
        "start": fhir_out::instant(s.starts_at),
        "end": fhir_out::instant(s.starts_at + Duration::minutes(i64::from(s.minutes))),
    })
}

impl App {
    /// For booking: an app's patient must be registered, alive and known to at least P5
    /// (the same rule as the patient's own pages).
    async fn scheduling_patient(&self, caller: &FhirCaller, patient: Option<&str>) -> AppResult<PatientId> {
        let (l, _) = self.view_for(caller, patient).await?;
        let today = self.now().date_naive();
        if l.patient.registration_on(today).is_none() || l.patient.is_deceased_on(today) {
            return Err(AppError::Forbidden("this person is not registered at the practice".into()));
        }
        if let FhirCaller::App(a) = caller {
            let identity = self.link_identity(a.practice, &a.link).await?;
            if identity.is_none_or(|i| i == IdentityLevel::P0) {
                return Err(AppError::Forbidden("verify your identity to use online services".into()));
            }
        }
        Ok(l.patient.id)
    }

    async fn free_slots(&self, practice: PracticeId) -> AppResult<Vec<caldicott_core::appointments::Slot>> {
        let now = self.now();
        Ok(self
            .store
            .slots_between(practice, now, now + Duration::days(crate::appointments::BOOKING_HORIZON_DAYS))
            .await?
            .into_iter()
            .filter(|(s, b)| b.is_none() && caldicott_core::appointments::can_book_online(s, now))
            .map(|(s, _)| s)
            .collect())
    }

    /// Reads and searches of Slot and Appointment.
    async fn scheduling_read(
        &self,
        caller: &FhirCaller,
        resource: &str,
        id: Option<&str>,
        patient: Option<&str>,
    ) -> AppResult<Vec<Value>> {
        let practice = caller.practice();
        if resource == "Slot" {
            if matches!(caller, FhirCaller::App(_)) {
                self.scheduling_patient(caller, None).await?;
            }
            let slots = self.free_slots(practice).await?;
            return Ok(slots
                .iter()
                .filter(|s| id.is_none_or(|i| s.id.to_string() == i))
                .map(|s| slot_resource(s, true))
                .collect());
        }
        let pid = self.scheduling_patient(caller, patient).await?;
        let now = self.now();
        let found: Vec<Value> = self
            .store
            .appointments_for_patient(practice, pid)
            .await?
            .iter()
            .filter(|(a, _)| id.is_none_or(|i| a.id.to_string() == i))
            .map(|(a, s)| fhir_out::appointment_resource(a, s, now))
            .collect();
        let audit = self.fhir_audit(caller, pid, "fhir/Appointment".into(), format!("appointments={}", found.len()));
        self.audit.record(practice, audit).await?;
        Ok(found)
    }

    /// `POST [base]/Appointment`: an app books a free slot for its patient.
    pub async fn fhir_create(&self, caller: &FhirCaller, resource: &str, body: &Value) -> AppResult<Value> {
        let FhirCaller::App(a) = caller else {
            return Err(AppError::Forbidden("staff book appointments in the appointment book".into()));
        };
        if resource != "Appointment" {
            return Err(AppError::Forbidden(format!("{resource} cannot be created here")));
        }
        if !a.scopes.allows_write("Appointment") {
            return Err(AppError::Forbidden("the token's scopes do not include patient/Appointment.write".into()));
        }
        if body["resourceType"] != "Appointment" {
            return Err(AppError::BadRequest("send an Appointment resource".into()));
        }
        let slot = body["slot"][0]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Slot/"))
            .and_then(|s| Uuid::try_parse(s).ok())
            .ok_or_else(|| AppError::BadRequest("name the slot to book: slot[0].reference = \"Slot/<id>\"".into()))?;
        if let Some(p) =
            body["participant"].as_array().into_iter().flatten().find_map(|p| p["actor"]["reference"].as_str())
        {
            if p.strip_prefix("Patient/") != Some(&a.link.patient.to_string()) {
                return Err(AppError::Forbidden("an app books only for its own patient".into()));
            }
        }
        let pid = self.scheduling_patient(caller, None).await?;
        let actor = Actor { kind: ActorKind::App, id: a.app.id.to_string(), role: "app".into() };
        let (appointment, slot) = self
            .book_for(a.practice, pid, SlotId::from_uuid(slot), format!("online through {}", a.app.name), actor)
            .await?;
        Ok(fhir_out::appointment_resource(&appointment, &slot, self.now()))
    }

    /// `PUT [base]/Appointment/{id}` with `status: cancelled`: an app cancels its patient's
    /// appointment (the only change offered).
    pub async fn fhir_update(&self, caller: &FhirCaller, resource: &str, id: &str, body: &Value) -> AppResult<Value> {
        let FhirCaller::App(a) = caller else {
            return Err(AppError::Forbidden("staff cancel appointments in the appointment book".into()));
        };
        if resource != "Appointment" {
            return Err(AppError::Forbidden(format!("{resource} cannot be changed here")));
        }
        if !a.scopes.allows_write("Appointment") {
            return Err(AppError::Forbidden("the token's scopes do not include patient/Appointment.write".into()));
        }
        if body["resourceType"] != "Appointment" || body["status"] != "cancelled" {
            return Err(AppError::BadRequest(
                "the only change offered is cancelling: send the Appointment with status \"cancelled\"".into(),
            ));
        }
        let appointment = Uuid::try_parse(id).map_err(|_| not_found("Appointment", id))?;
        let pid = self.scheduling_patient(caller, None).await?;
        let actor = Actor { kind: ActorKind::App, id: a.app.id.to_string(), role: "app".into() };
        self.cancel_for(
            a.practice,
            pid,
            AppointmentId::from_uuid(appointment),
            format!("online through {}", a.app.name),
            actor,
        )
        .await
        .map_err(|e| match e {
            AppError::NotFound(_) => not_found("Appointment", id),
            other => other,
        })?;
        let now = self.now();
        self.store
            .appointments_for_patient(a.practice, pid)
            .await?
            .iter()
            .find(|(x, _)| x.id.to_string() == id)
            .map(|(x, s)| fhir_out::appointment_resource(x, s, now))
            .ok_or_else(|| not_found("Appointment", id))
    }
}

/// The CapabilityStatement: exactly what is implemented.
pub fn capability_statement(base: &str, software_version: &str) -> Value {
    let search = |extra: bool| {
        let mut params = vec![
            json!({ "name": "patient", "type": "reference", "documentation": "The patient (optional for a patient-bound token: its own patient)" }),
            json!({ "name": "_count", "type": "number", "documentation": format!("Page size, 1 to {MAX_COUNT} (default {DEFAULT_COUNT})") }),
        ];
        if extra {
            params.push(json!({ "name": "_cursor", "type": "string", "documentation": "The opaque cursor of the next page, from a Bundle's next link" }));
        }
        params
    };
    let mut resources = vec![json!({
        "type": "Patient",
        "profile": format!("{}UKCore-Patient", fhir_out::UK_CORE),
        "interaction": [{ "code": "read" }, { "code": "search-type" }],
        "searchParam": search(false),
        "operation": [{ "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" }],
    })];
    for t in DIRECTORY_TYPES {
        resources.push(json!({
            "type": t,
            "profile": format!("{}UKCore-{t}", fhir_out::UK_CORE),
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "documentation": if t == "Organization" { "The practice" } else { "The practice's clinicians" },
        }));
    }
    resources.push(json!({
        "type": "Slot",
        "profile": format!("{}UKCore-Slot", fhir_out::UK_CORE),
        "interaction": [{ "code": "read" }, { "code": "search-type" }],
        "documentation": "Free slots the patient may book online, for the next four weeks",
    }));
    resources.push(json!({
        "type": "Appointment",
        "profile": format!("{}UKCore-Appointment", fhir_out::UK_CORE),
        "interaction": [{ "code": "read" }, { "code": "search-type" }, { "code": "create" }, { "code": "update" }],
        "documentation": "The patient's appointments; an app with patient/Appointment.write books a free slot (create) and cancels (update to status cancelled) up to the practice's cut-off",
    }));
    for t in CLINICAL_TYPES {
        resources.push(json!({
            "type": t,
            "profile": format!("{}UKCore-{t}", fhir_out::UK_CORE),
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "searchParam": search(true),
        }));
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "software": { "name": "caldicott", "version": software_version },
        "implementation": { "description": "caldicott FHIR R4 API", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Linked apps read the patient's online view with patient-bound tokens; hidden entries are absent and their ids answer as unknown ones. Staff API tokens read the practice's whole record, hidden entries labelled NOPAT.",
            "security": {
                "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }] }],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{ "url": "token", "valueUri": format!("{base}/token") }],
                }],
            },
            "resource": resources,
        }],
    })
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
    }
}
