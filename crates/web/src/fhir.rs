//! The FHIR R4 API (mounted under `/fhir/r4`): the CapabilityStatement and SMART discovery, the
//! token endpoint for linked apps and practice integrations, reads, searches with `_include`,
//! `Patient/$everything` and Binary. Answers are `application/fhir+json`;
//! errors are OperationOutcomes with the matching HTTP status, and a hidden entry's id answers
//! exactly as an id that does not exist.

use crate::error::WebError;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caldicott_app::fhir_api::{capability_statement, FhirCaller, Search, TokenError, TokenRequest};
use caldicott_app::{App, AppError};
use serde::Deserialize;
use serde_json::{json, Value};

pub const BASE: &str = caldicott_app::fhir_api::BASE_PATH;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/token", post(token).layer(axum::middleware::from_fn(crate::throttle::fhir_machines)))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route("/Patient/{id}/$everything", get(everything))
        .route("/{resource}", get(search).post(create))
        .route("/{resource}/{id}", get(read).put(update))
        .fallback(unknown_route)
        .layer(axum::middleware::map_response(errors_as_outcomes))
}

/// A path under the FHIR base that is not served.
pub(crate) async fn unknown_route() -> FhirError {
    FhirError(AppError::NotFound(
        "no such FHIR interaction here; the CapabilityStatement (/fhir/r4/metadata) says what is served".into(),
    ))
}

/// Errors the router makes itself (405 for a method a route does not take, 413, 415) become
/// OperationOutcomes too, keeping their headers (`Allow`). The token endpoint's OAuth errors
/// (`application/json`, as OAuth requires) and this module's own OperationOutcomes pass as they are.
async fn errors_as_outcomes(res: Response) -> Response {
    let status = res.status();
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/fhir+json") || t.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return res;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("not-supported", "this method is not offered on this FHIR route (see Allow)")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("too-long", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("not-supported", "send the resource as application/fhir+json"),
        s if s.is_server_error() => ("exception", "something went wrong on our side; nothing was changed"),
        _ => ("invalid", "the request is not one this FHIR server can answer"),
    };
    let (parts, _) = res.into_parts();
    let mut r = (status, fhir_json(outcome(code, message))).into_response();
    for name in [header::ALLOW, header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            r.headers_mut().insert(name, v.clone());
        }
    }
    r
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

/// A FHIR answer (compacted: FHIR has no empty elements).
fn fhir_json(v: Value) -> Response {
    let mut r = axum::Json(caldicott_fhir::write::compact(v)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    r
}

/// The FHIR base URL: from the configured public URL only, never from `Host` or
/// `X-Forwarded-*` (a client could make links, or an assertion's audience, point anywhere).
fn base(app: &App) -> String {
    app.fhir_base_url()
}

async fn caller(app: &App, headers: &HeaderMap) -> Result<FhirCaller, FhirError> {
    let token = crate::authorization::bearer_token(headers)
        .ok_or_else(|| AppError::Unauthenticated("send an access token as `Authorization: Bearer <token>`".into()))?;
    Ok(app.fhir_caller(token).await?)
}

async fn metadata(State(app): State<App>) -> Response {
    fhir_json(capability_statement(&base(&app), env!("CARGO_PKG_VERSION")))
}

/// The most a token request may hold (a client assertion is a few kilobytes).
const TOKEN_BODY_LIMIT: usize = 16 * 1024;
/// The most a FHIR resource sent to be written may hold.
const RESOURCE_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default)]
    client_assertion_type: String,
    #[serde(default)]
    client_assertion: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    subject_token: String,
    #[serde(default)]
    subject_token_type: String,
    #[serde(default)]
    subject_issuer: String,
    #[serde(default)]
    requested_token_type: String,
}

/// `POST /fhir/r4/token`: the OAuth 2.0 token endpoint. Apps send their client credentials by
/// HTTP Basic with `grant_type=refresh_token`; practice integrations a signed client assertion
/// with `grant_type=client_credentials`; an app registered for token exchange (RFC 8693) a
/// signed client assertion and its user's NHS login ID token.
async fn token(State(app): State<App>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let oauth_error = |status: StatusCode, error: &str, description: String| {
        let mut r = (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        }
        r
    };
    // An app's credentials come in the header: checked (and a refusal audited) before the body
    // is read. An integration's come in the body, which is then read only so far.
    let basic = crate::authorization::basic_credentials(&headers);
    if let Some((id, secret)) = &basic {
        match app.app_credentials(id, secret).await {
            Ok(_) => {}
            Err(AppError::Unauthenticated(_)) => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "the app's client id or secret is not right".into(),
                )
            }
            Err(e) => return FhirError(e).into_response(),
        }
    }
    let Ok(bytes) = crate::body::read_at_most(body, TOKEN_BODY_LIMIT).await else {
        return match basic {
            Some(_) => {
                oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "the token request is too large".into())
            }
            None => oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "no client credentials: HTTP Basic for an app, a client assertion for an integration".into(),
            ),
        };
    };
    let mut form_request = axum::http::Request::new(axum::body::Body::from(bytes));
    // A form is read from the body only for a method other than GET.
    *form_request.method_mut() = axum::http::Method::POST;
    if let Some(t) = headers.get(header::CONTENT_TYPE) {
        form_request.headers_mut().insert(header::CONTENT_TYPE, t.clone());
    }
    let Ok(Form(f)) = <Form<TokenForm> as axum::extract::FromRequest<()>>::from_request(form_request, &()).await else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "send a form-encoded token request".into());
    };
    let request = TokenRequest {
        grant_type: f.grant_type,
        basic,
        refresh_token: f.refresh_token,
        scope: f.scope,
        patient: f.patient,
        client_assertion_type: f.client_assertion_type,
        client_assertion: f.client_assertion,
        client_id: f.client_id,
        subject_token: f.subject_token,
        subject_token_type: f.subject_token_type,
        subject_issuer: f.subject_issuer,
        requested_token_type: f.requested_token_type,
    };
    match app.fhir_token(&request).await {
        Ok(t) => {
            let mut r = axum::Json(t).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(TokenError::OAuth { error: "invalid_client", description }) => {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
        Err(TokenError::OAuth { error, description }) => oauth_error(StatusCode::BAD_REQUEST, error, description),
        Err(TokenError::App(e)) => FhirError(e).into_response(),
    }
}

/// `GET /fhir/r4/.well-known/smart-configuration`: where and how to get a token (SMART App
/// Launch 2.0 discovery), for apps and for practice integrations.
async fn smart_configuration(State(app): State<App>) -> Response {
    let base = base(&app);
    let mut r = axum::Json(json!({
        "issuer": base,
        "token_endpoint": format!("{base}/token"),
        "grant_types_supported": ["refresh_token", "client_credentials", caldicott_app::fhir_api::TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384", "RS256", "ES256", "RS512"],
        "scopes_supported": ["patient/*.read", "patient/Appointment.write", "patient/Task.write", "system/*.read"],
        "capabilities": ["client-confidential-symmetric", "client-confidential-asymmetric", "permission-patient", "permission-v1", "permission-v2"],
    }))
    .into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Every query parameter, in order (`_include` may come more than once).
type QueryPairs = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// Whether the client's `Prefer` header (RFC 7240) asks `key` to be `value`: any case, with
/// spaces around `=` and the value quoted or not (`return="minimal"`).
pub(crate) fn prefers(headers: &HeaderMap, key: &str, value: &str) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|p| p.split_once('='))
        .any(|(k, v)| k.trim().eq_ignore_ascii_case(key) && v.trim().trim_matches('"').eq_ignore_ascii_case(value))
}

/// Whether the client asked for strict handling of search parameters (`Prefer: handling=strict`).
fn strict(headers: &HeaderMap) -> bool {
    prefers(headers, "handling", "strict")
}

fn search_of(query: QueryPairs, strict: bool) -> Result<Search, FhirError> {
    let Query(pairs) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let mut s = Search { strict, ..Search::default() };
    for (k, v) in pairs {
        match k.as_str() {
            "patient" | "subject" => s.patient = Some(v),
            "_id" => s.id = Some(v),
            "identifier" => s.identifier = Some(v),
            "_count" => s.count = Some(v),
            "_cursor" => s.cursor = Some(v),
            "_include" => s.include.push(v),
            "code" => s.code = Some(v),
            "date" => s.date.push(v),
            "_sort" => s.sort = Some(v),
            "_revinclude" | "_include:iterate" | "_include:recurse" => {
                return Err(FhirError(AppError::BadRequest(format!("{k} is not supported here; _include is"))))
            }
            // A modifier (code:not, date:missing, …) changes what a parameter means; one not
            // supported is refused, never ignored (FHIR R4 search 3.1.1.5).
            _ if k.contains(':') => {
                return Err(FhirError(AppError::BadRequest(format!(
                    "{k}: search modifiers are not supported here (see the CapabilityStatement)"
                ))))
            }
            // Anything else is not a parameter served here: refused when the client asks for
            // strict handling, otherwise ignored (FHIR's lenient handling), and the Bundle's self
            // link says which were used.
            _ if strict => {
                return Err(FhirError(AppError::BadRequest(format!(
                    "{k} is not a search parameter served here (see the CapabilityStatement)"
                ))))
            }
            _ => {}
        }
    }
    Ok(s)
}

async fn search(
    State(app): State<App>,
    headers: HeaderMap,
    Path(resource): Path<String>,
    query: QueryPairs,
) -> Result<Response, FhirError> {
    let s = search_of(query, strict(&headers))?;
    let who = caller(&app, &headers).await?;
    Ok(fhir_json(app.fhir_search(&who, &resource, &base(&app), &s).await?))
}

async fn read(
    State(app): State<App>,
    headers: HeaderMap,
    Path((resource, id)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    let who = caller(&app, &headers).await?;
    if resource == "Binary" {
        return binary(&app, &who, &id, &headers).await;
    }
    Ok(fhir_json(app.fhir_read(&who, &resource, &id).await?))
}

/// `GET /fhir/r4/Binary/{id}`: the file itself, unless the client asks for FHIR JSON (then a
/// Binary resource with the content in `data`).
async fn binary(app: &App, who: &FhirCaller, id: &str, headers: &HeaderMap) -> Result<Response, FhirError> {
    let content = app.fhir_binary(who, id).await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/fhir+json") || accept.contains("application/json") {
        return Ok(fhir_json(content.resource()));
    }
    let mut r = content.bytes.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        content.filename.replace(|c: char| !c.is_ascii() || c == '"', "_")
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(r)
}

/// A resource in the request body, read only after the caller is known and at most
/// `RESOURCE_BODY_LIMIT` bytes (413 past that), or a clear error.
async fn resource_body(body: axum::body::Body) -> Result<Value, Response> {
    let bytes = crate::body::read_at_most(body, RESOURCE_BODY_LIMIT)
        .await
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())?;
    serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object).ok_or_else(|| {
        FhirError(AppError::BadRequest("the body must be a FHIR resource in JSON".into())).into_response()
    })
}

/// `POST /fhir/r4/Appointment`: book. 201 with the Appointment and its Location.
async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Path(resource): Path<String>,
    body: axum::body::Body,
) -> Result<Response, Response> {
    let who = caller(&app, &headers).await.map_err(IntoResponse::into_response)?;
    let resource_json = resource_body(body).await?;
    let made = app.fhir_create(&who, &resource, &resource_json).await.map_err(|e| FhirError(e).into_response())?;
    let location = format!("{}/{resource}/{}", base(&app), made["id"].as_str().unwrap_or_default());
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
    body: axum::body::Body,
) -> Result<Response, Response> {
    let who = caller(&app, &headers).await.map_err(IntoResponse::into_response)?;
    let resource_json = resource_body(body).await?;
    Ok(fhir_json(
        app.fhir_update(&who, &resource, &id, &resource_json).await.map_err(|e| FhirError(e).into_response())?,
    ))
}

async fn everything(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Result<Response, FhirError> {
    let q = search_of(query, strict(&headers))?;
    let who = caller(&app, &headers).await?;
    let bundle = app.fhir_everything(&who, &id, &base(&app), q.count.as_deref(), q.cursor.as_deref()).await?;
    Ok(fhir_json(bundle))
}
