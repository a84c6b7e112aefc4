//! GP Connect (FHIR STU3) for the Spine: Access Record: Structured and Access Document, served by
//! `crate::spine_router`
//! on a listener of its own that only the Spine Secure Proxy can reach (mutual TLS, set up by
//! the command line). Nothing here is on the main router: patients, staff and apps never see
//! these routes.
//!
//! Under `/gpconnect/{ODS}/STU3/1/structured` (the service root the practice publishes in SDS):
//! - `GET  …/metadata`: the capability statement;
//! - `POST …/Patient/$gpc.getstructuredrecord`: the structured record.
//!
//! Under `/gpconnect/{ODS}/STU3/1/documents` (Access Document): `GET …/metadata`,
//! `GET …/Patient?identifier=…`, `GET …/Patient/{id}/DocumentReference?…`, `GET …/Binary/{id}`.
//!
//! Under `/gpconnect/{ODS}/STU3/1/appointments` (Appointment Management): `GET …/metadata`,
//! `GET …/Patient?identifier=…`, `GET …/Slot?…`, `POST …/Appointment` (201, `Location`,
//! `ETag`), `GET …/Appointment/{id}`, `PUT …/Appointment/{id}` (amend or cancel, by the
//! interaction; `If-Match` honoured), `GET …/Patient/{id}/Appointment?…`.
//!
//! [`pfs_routes`], on the main router: GP Connect Patient Facing Services Appointments for a
//! patient's app, under `/pfs/{ODS}/STU3/1/appointments` (`metadata`, `Slot`, `Appointment`,
//! `Appointment/{id}` read and cancel, `Patient/{id}/Appointment`), the caller the app's FHIR
//! access token.
//!
//! Every answer is `application/fhir+json`, `Cache-Control: no-store`; every error a
//! `GPConnect-OperationOutcome-1` with the Spine code and the HTTP status the specification
//! gives it.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use caldicott_app::fhir_api::PfsCall;
use caldicott_app::gp_connect::GpcCall;
use caldicott_app::gp_connect_appointments::{etag, Versioned};
use caldicott_app::App;
use caldicott_fhir::gpconnect::request::{SspHeaders, MAX_BODY};
use caldicott_fhir::gpconnect::{GpcError, SpineCode, FHIR_JSON};
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::HashMap;

/// The GP Connect routes (assembled into the Spine listener's application by
/// [`crate::spine_router`]).
pub(crate) fn routes() -> Router<App> {
    let root = "/gpconnect/{ods}/STU3/1/structured";
    let docs = "/gpconnect/{ods}/STU3/1/documents";
    let appts = "/gpconnect/{ods}/STU3/1/appointments";
    Router::new()
        .route(&format!("{appts}/metadata"), get(appointments_metadata).fallback(wrong_method))
        .route(&format!("{appts}/Patient"), get(appointments_find_patient).fallback(wrong_method))
        .route(&format!("{appts}/Slot"), get(slots).fallback(wrong_method))
        .route(&format!("{appts}/Appointment"), post(book).fallback(wrong_method))
        .route(
            &format!("{appts}/Appointment/{{id}}"),
            get(read_appointment).put(change_appointment).fallback(wrong_method),
        )
        .route(&format!("{appts}/Patient/{{patient}}/Appointment"), get(patient_appointments).fallback(wrong_method))
        .route(&format!("{appts}/Patient/{{patient}}"), get(read_patient).fallback(wrong_method))
        .route(&format!("{appts}/Practitioner/{{id}}"), get(read_practitioner).fallback(wrong_method))
        .route(&format!("{appts}/Organization"), get(find_organization).fallback(wrong_method))
        .route(&format!("{appts}/Practitioner"), get(find_practitioner).fallback(wrong_method))
        .route(&format!("{appts}/Organization/{{id}}"), get(read_organization).fallback(wrong_method))
        .route(&format!("{appts}/Location/{{id}}"), get(read_location).fallback(wrong_method))
        .route(&format!("{docs}/metadata"), get(documents_metadata).fallback(wrong_method))
        .route(&format!("{docs}/Patient"), get(find_patient).fallback(wrong_method))
        .route(&format!("{docs}/Patient/{{patient}}/DocumentReference"), get(document_search).fallback(wrong_method))
        .route(&format!("{docs}/Binary/{{id}}"), get(binary).fallback(wrong_method))
        .route(&format!("{root}/metadata"), get(metadata).fallback(wrong_method))
        .route(
            &format!("{root}/Patient/$gpc.getstructuredrecord"),
            post(structured).fallback(wrong_method).layer(axum::extract::DefaultBodyLimit::disable()),
        )
}

/// GP Connect Patient Facing Services Appointments, for patients' apps (assembled into the main
/// router by [`crate::router`]).
pub(crate) fn pfs_routes() -> Router<App> {
    let root = "/pfs/{ods}/STU3/1/appointments";
    Router::new()
        .route(&format!("{root}/metadata"), get(pfs_metadata).fallback(wrong_method))
        .route(&format!("{root}/Slot"), get(pfs_slots).fallback(wrong_method))
        .route(&format!("{root}/Appointment"), post(pfs_book).fallback(wrong_method))
        .route(&format!("{root}/Appointment/{{id}}"), get(pfs_read).put(pfs_cancel).fallback(wrong_method))
        .route(&format!("{root}/Patient/{{patient}}/Appointment"), get(pfs_appointments).fallback(wrong_method))
}

fn pfs_call<'a>(g: &'a SpineGet, body: &'a [u8]) -> PfsCall<'a> {
    PfsCall { ods: g.param("ods"), token: crate::authorization::bearer_token(&g.headers), query: &g.query, body }
}

async fn pfs_metadata(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.pfs_metadata(g.param("ods")).await)
}

async fn pfs_slots(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.pfs_slots(pfs_call(&g, &[])).await)
}

async fn pfs_appointments(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.pfs_appointments(pfs_call(&g, &[]), g.param("patient")).await)
}

async fn pfs_read(State(app): State<App>, g: SpineGet) -> Response {
    versioned(app.pfs_read(pfs_call(&g, &[]), g.param("id")).await, None)
}

async fn pfs_book(State(app): State<App>, w: SpineWrite) -> Response {
    let base = caldicott_app::fhir_api::pfs_root(w.param("ods"));
    w.minimal_if_asked(versioned(app.pfs_book(w.pfs_call()).await, Some(&base)))
}

async fn pfs_cancel(State(app): State<App>, w: SpineWrite) -> Response {
    w.minimal_if_asked(versioned(app.pfs_cancel(w.pfs_call(), w.param("id")).await, None))
}

fn answer(result: Result<Value, GpcError>) -> Response {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => {
            // The code only: diagnostics can echo what the caller sent (an NHS number).
            tracing::info!(code = e.code.code(), "GP Connect request refused");
            (StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST), e.operation_outcome())
        }
    };
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    res
}

fn error(code: SpineCode, diagnostics: &str) -> Response {
    answer(Err(GpcError::new(code, diagnostics)))
}

async fn wrong_method() -> Response {
    error(SpineCode::BadRequest, "this HTTP method is not used here")
}

pub(crate) async fn not_implemented() -> Response {
    error(SpineCode::NotImplemented, "this resource or operation is not implemented here")
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Only JSON is served: an `Accept` or `_format` asking for something else, or a body that says
/// it is something else, is 415.
fn format_refused(h: &HeaderMap, query: Option<&str>, has_body: bool) -> Option<Response> {
    let json_ok = |v: &str| {
        let v = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(v.as_str(), "application/fhir+json" | "application/json" | "json" | "*/*" | "application/*" | "")
    };
    let format = query.and_then(|q| q.split('&').find_map(|p| p.strip_prefix("_format=")));
    let accept_ok = match format {
        Some(f) => json_ok(&f.replace("%2B", "+").replace("%2b", "+").replace("%2F", "/").replace("%2f", "/")),
        None => header(h, "accept").is_none_or(|a| a.split(',').any(json_ok)),
    };
    let content_ok = !has_body || header(h, "content-type").is_some_and(json_ok);
    (!accept_ok || !content_ok).then(|| {
        let mut r = error(SpineCode::BadRequest, "only application/fhir+json is served and accepted");
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        r
    })
}

fn call<'a>(ods: &'a str, h: &'a HeaderMap, body: &'a [u8]) -> GpcCall<'a> {
    searching(ods, h, body, &[])
}

fn searching<'a>(ods: &'a str, h: &'a HeaderMap, body: &'a [u8], query: &'a [(String, String)]) -> GpcCall<'a> {
    GpcCall {
        ods,
        ssp: SspHeaders {
            trace_id: header(h, "ssp-traceid"),
            from: header(h, "ssp-from"),
            to: header(h, "ssp-to"),
            interaction_id: header(h, "ssp-interactionid"),
        },
        authorization: header(h, "authorization"),
        body,
        query,
    }
}

/// A GET as every GP Connect read takes it: the path's parameters (`ods`, and `patient` or `id`),
/// the headers and the query's parameters (decoded, in order), after the media type is checked
/// (415) and the query read (400).
struct SpineGet {
    path: HashMap<String, String>,
    headers: HeaderMap,
    query: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for SpineGet {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let raw = parts.uri.query().map(str::to_owned);
        if let Some(r) = format_refused(&parts.headers, raw.as_deref(), false) {
            return Err(r);
        }
        let unreadable = || error(SpineCode::BadRequest, "the request's address cannot be read");
        let Path(path) =
            Path::<HashMap<String, String>>::from_request_parts(parts, state).await.map_err(|_| unreadable())?;
        let Query(query) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|_| unreadable())?;
        Ok(Self { path, headers: parts.headers.clone(), query })
    }
}

impl SpineGet {
    fn param(&self, name: &str) -> &str {
        self.path.get(name).map_or("", String::as_str)
    }
    fn call(&self) -> GpcCall<'_> {
        searching(self.param("ods"), &self.headers, &[], &self.query)
    }
}

/// A POST or PUT as GP Connect takes it: the path's parameters, the headers, and the body read
/// to [`MAX_BODY`] after the media type is checked (415).
struct SpineWrite {
    path: HashMap<String, String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl SpineWrite {
    /// A write's answer without its body when the consumer sent `Prefer: return=minimal`
    /// (RFC 7240, as FHIR uses it): the status, `Location` and `ETag` then say what was done. A
    /// refusal keeps its OperationOutcome whatever was asked.
    fn minimal_if_asked(&self, res: Response) -> Response {
        if !(crate::fhir::prefers(&self.headers, "return", "minimal") && res.status().is_success()) {
            return res;
        }
        let (mut parts, _) = res.into_parts();
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::empty())
    }
}

impl<S: Send + Sync> FromRequest<S> for SpineWrite {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Path(path) = Path::<HashMap<String, String>>::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| error(SpineCode::BadRequest, "the request's address cannot be read"))?;
        let body = read_body(&parts.headers, parts.uri.query(), body).await?;
        Ok(Self { path, headers: parts.headers, body })
    }
}

impl SpineWrite {
    fn param(&self, name: &str) -> &str {
        self.path.get(name).map_or("", String::as_str)
    }
    fn call(&self) -> GpcCall<'_> {
        call(self.param("ods"), &self.headers, &self.body)
    }
    fn pfs_call(&self) -> PfsCall<'_> {
        PfsCall {
            ods: self.param("ods"),
            token: crate::authorization::bearer_token(&self.headers),
            query: &[],
            body: &self.body,
        }
    }
}

async fn documents_metadata(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_documents_metadata(g.call()).await)
}

async fn find_patient(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_find_patient(g.call()).await)
}

async fn document_search(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_document_search(g.call(), g.param("patient")).await)
}

async fn binary(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_binary(g.call(), g.param("id")).await)
}

async fn metadata(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_metadata(g.call()).await)
}

/// A request body, up to [`MAX_BODY`], after the media type is checked.
async fn read_body(headers: &HeaderMap, query: Option<&str>, mut body: Body) -> Result<Vec<u8>, Response> {
    if let Some(r) = format_refused(headers, query, true) {
        return Err(r);
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(error(SpineCode::BadRequest, "the request body could not be read"));
        };
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
            if bytes.len() > MAX_BODY {
                return Err(error(SpineCode::BadRequest, "the request body is larger than the resource needs"));
            }
        }
    }
    Ok(bytes)
}

async fn structured(State(app): State<App>, w: SpineWrite) -> Response {
    answer(app.gp_connect_structured(w.call()).await)
}

async fn appointments_metadata(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_appointments_metadata(g.call()).await)
}

async fn appointments_find_patient(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_appointments_find_patient(g.call()).await)
}

async fn slots(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_slots(g.call()).await)
}

async fn patient_appointments(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_patient_appointments(g.call(), g.param("patient")).await)
}

/// An appointment as answered: its resource with `ETag` (and, when `created`, 201 and the
/// `Location` of the new appointment).
fn versioned(result: Result<Versioned, GpcError>, created: Option<&str>) -> Response {
    match result {
        Ok(v) => {
            let tag = etag(v.version);
            let mut res = answer(Ok(v.resource));
            if let Ok(t) = HeaderValue::from_str(&tag) {
                res.headers_mut().insert(header::ETAG, t);
            }
            if let Some(base) = created {
                *res.status_mut() = StatusCode::CREATED;
                if let Ok(l) = HeaderValue::from_str(&format!("{base}/Appointment/{}", v.id)) {
                    res.headers_mut().insert(header::LOCATION, l);
                }
            }
            res
        }
        Err(e) => answer(Err(e)),
    }
}

async fn read_patient(State(app): State<App>, g: SpineGet) -> Response {
    versioned(app.gp_connect_foundation(g.call(), "Patient", g.param("patient")).await, None)
}

async fn read_practitioner(State(app): State<App>, g: SpineGet) -> Response {
    versioned(app.gp_connect_foundation(g.call(), "Practitioner", g.param("id")).await, None)
}

async fn find_practitioner(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_find_practitioner(g.call()).await)
}

async fn find_organization(State(app): State<App>, g: SpineGet) -> Response {
    answer(app.gp_connect_find_organization(g.call()).await)
}

async fn read_organization(State(app): State<App>, g: SpineGet) -> Response {
    versioned(app.gp_connect_foundation(g.call(), "Organization", g.param("id")).await, None)
}

async fn read_location(State(app): State<App>, g: SpineGet) -> Response {
    versioned(app.gp_connect_foundation(g.call(), "Location", g.param("id")).await, None)
}

async fn read_appointment(State(app): State<App>, g: SpineGet) -> Response {
    versioned(app.gp_connect_read_appointment(g.call(), g.param("id")).await, None)
}

async fn book(State(app): State<App>, w: SpineWrite) -> Response {
    let base = caldicott_app::gp_connect::appointments_root(w.param("ods"));
    w.minimal_if_asked(versioned(app.gp_connect_book(w.call()).await, Some(&base)))
}

async fn change_appointment(State(app): State<App>, w: SpineWrite) -> Response {
    let if_match = header(&w.headers, "if-match");
    w.minimal_if_asked(versioned(app.gp_connect_change_appointment(w.call(), w.param("id"), if_match).await, None))
}
