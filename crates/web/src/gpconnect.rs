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
//! Every answer is `application/fhir+json`, `Cache-Control: no-store`; every error a
//! `GPConnect-OperationOutcome-1` with the Spine code and the HTTP status the specification
//! gives it.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use caldicott_app::gp_connect::GpcCall;
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
    Router::new()
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

async fn structured(
    State(app): State<App>,
    Path(ods): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = format_refused(&headers, q.as_deref(), true) {
        return r;
    }
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return error(SpineCode::BadRequest, "the request body could not be read");
        };
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
            if bytes.len() > MAX_BODY {
                return error(SpineCode::BadRequest, "the request body is larger than a Parameters resource needs");
            }
        }
    }
    answer(app.gp_connect_structured(call(&ods, &headers, &bytes)).await)
}
