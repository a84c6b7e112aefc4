//! The FHIR R4 API (mounted under `/fhir/r4`): the CapabilityStatement, the token endpoint for
//! linked apps, reads, searches and `Patient/$everything`. Answers are `application/fhir+json`;
//! errors are OperationOutcomes with the matching HTTP status, and a hidden entry's id answers
//! exactly as an id that does not exist.

use crate::error::WebError;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caldicott_app::fhir_api::{capability_statement, FhirCaller, Search};
use caldicott_app::{App, AppError};
use serde::Deserialize;
use serde_json::{json, Value};

pub const BASE: &str = "/fhir/r4";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/token", post(token))
        .route("/Patient/{id}/$everything", get(everything))
        .route("/{resource}", get(search).post(create))
        .route("/{resource}/{id}", get(read).put(update))
}

/// An OperationOutcome for an error, with its status.
pub struct FhirError(pub AppError);

impl From<AppError> for FhirError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let web = WebError(self.0);
        let status = web.status();
        let code = match status {
            StatusCode::BAD_REQUEST => "invalid",
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::SERVICE_UNAVAILABLE => "transient",
            _ => "exception",
        };
        // The message the JSON API gives: causes of server errors stay in the log.
        let message = web.public_message();
        let mut r = (status, fhir_json(outcome(code, &message))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn outcome(code: &str, message: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": message }],
    })
}

fn fhir_json(v: Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    r
}

/// The server's base URL as the caller reached it.
fn base(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    format!("{scheme}://{host}{BASE}")
}

async fn caller(app: &App, headers: &HeaderMap) -> Result<FhirCaller, FhirError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| AppError::Unauthenticated("send an access token as `Authorization: Bearer <token>`".into()))?;
    Ok(app.fhir_caller(token).await?)
}

async fn metadata(headers: HeaderMap) -> Response {
    fhir_json(capability_statement(&base(&headers), env!("CARGO_PKG_VERSION")))
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    scope: String,
}

/// `POST /fhir/r4/token`: OAuth 2.0 token endpoint (client credentials by HTTP Basic).
async fn token(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str, description: String| {
        let mut r = (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    let Some((id, secret)) = crate::app_api::basic_credentials(&headers) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "send the app's client id and secret with HTTP Basic authentication".into(),
        );
    };
    let Ok(Form(f)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "send a form-encoded token request".into());
    };
    match app.fhir_token(&id, &secret, &f.grant_type, &f.refresh_token, &f.scope).await {
        Ok(t) => {
            let mut r = axum::Json(t).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(AppError::BadRequest(m)) if m.contains("invalid_scope") => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", m)
        }
        Err(AppError::BadRequest(m)) => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", m),
        Err(AppError::Unauthenticated(m)) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", m),
        Err(e) => FhirError(e).into_response(),
    }
}

#[derive(Deserialize, Default)]
struct SearchQuery {
    patient: Option<String>,
    #[serde(rename = "_count")]
    count: Option<String>,
    #[serde(rename = "_cursor")]
    cursor: Option<String>,
}

async fn search(
    State(app): State<App>,
    headers: HeaderMap,
    Path(resource): Path<String>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, FhirError> {
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let who = caller(&app, &headers).await?;
    let s = Search { patient: q.patient, count: q.count, cursor: q.cursor };
    Ok(fhir_json(app.fhir_search(&who, &resource, &base(&headers), &s).await?))
}

async fn read(
    State(app): State<App>,
    headers: HeaderMap,
    Path((resource, id)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    let who = caller(&app, &headers).await?;
    Ok(fhir_json(app.fhir_read(&who, &resource, &id).await?))
}

/// A resource in the request body, or a clear error.
fn resource_body(body: &axum::body::Bytes) -> Result<Value, FhirError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| FhirError(AppError::BadRequest("the body must be a FHIR resource in JSON".into())))
}

/// `POST /fhir/r4/Appointment`: book. 201 with the Appointment and its Location.
async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Path(resource): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, FhirError> {
    let who = caller(&app, &headers).await?;
    let made = app.fhir_create(&who, &resource, &resource_body(&body)?).await?;
    let location = format!("{}/{resource}/{}", base(&headers), made["id"].as_str().unwrap_or_default());
    let mut r = (StatusCode::CREATED, fhir_json(made)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// `PUT /fhir/r4/Appointment/{id}` with status cancelled: cancel.
async fn update(
    State(app): State<App>,
    headers: HeaderMap,
    Path((resource, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, FhirError> {
    let who = caller(&app, &headers).await?;
    Ok(fhir_json(app.fhir_update(&who, &resource, &id, &resource_body(&body)?).await?))
}

async fn everything(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, FhirError> {
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let who = caller(&app, &headers).await?;
    let bundle = app.fhir_everything(&who, &id, &base(&headers), q.count.as_deref(), q.cursor.as_deref()).await?;
    Ok(fhir_json(bundle))
}
