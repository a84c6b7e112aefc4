//! GP Connect Patient Facing Services: Prescriptions Management (FHIR R4), for patients' apps,
//! under `/pfs/{ODS}/FHIR/R4/prescriptions` on the main router:
//! - `GET …/Patient/{nhs}/MedicationStatement`, `GET …/Patient/{nhs}/MedicationRequest`,
//!   `GET …/MedicationRequest/{id}`: the patient's medicines;
//! - `POST …/Task` (201), `GET …/Task?patient=…`, `PATCH …/Task?id=…` (a JSON Patch that
//!   cancels): ordering a repeat and following it;
//! - `GET …/PractitionerRole/{id}`: who prescribed.
//!
//! The caller is the app's FHIR access token. Every request carries `X-Request-ID`, answered
//! back with `X-Correlation-ID` when one was sent; every answer is `application/fhir+json`,
//! `Cache-Control: no-store`; every error a UK Core OperationOutcome with the Spine code and the
//! HTTP status the specification gives it.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::fhir_api::RxCall;
use caldicott_app::App;
use caldicott_fhir::gpconnect::request::MAX_BODY;
use caldicott_fhir::gpconnect::{GpcError, SpineCode, FHIR_JSON};
use serde_json::Value;
use std::collections::HashMap;

pub(crate) fn routes() -> Router<App> {
    let root = "/pfs/{ods}/FHIR/R4/prescriptions";
    Router::new()
        .route(&format!("{root}/Patient/{{nhs}}/MedicationStatement"), get(statements).fallback(wrong_method))
        .route(&format!("{root}/Patient/{{nhs}}/MedicationRequest"), get(requests).fallback(wrong_method))
        .route(&format!("{root}/MedicationRequest/{{id}}"), get(request).fallback(wrong_method))
        .route(&format!("{root}/Task"), get(orders).post(order).patch(cancel).fallback(wrong_method))
        .route(&format!("{root}/PractitionerRole/{{id}}"), get(practitioner_role).fallback(wrong_method))
}

/// A request as this API takes it: the path's parameters, the headers, the query's parameters
/// (decoded, in order) and the body, read to [`MAX_BODY`].
struct RxRequest {
    path: HashMap<String, String>,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    body: Vec<u8>,
}

impl<S: Send + Sync> FromRequest<S> for RxRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let headers = parts.headers.clone();
        let unreadable = || error(&headers, SpineCode::BadRequest, "the request cannot be read");
        let Path(path) =
            Path::<HashMap<String, String>>::from_request_parts(&mut parts, state).await.map_err(|_| unreadable())?;
        let Query(query) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|_| unreadable())?;
        let body = crate::body::read_at_most(body, MAX_BODY).await.map_err(|_| {
            let mut r = error(&headers, SpineCode::BadRequest, "the body is too large");
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            r
        })?;
        Ok(Self { path, headers, query, body })
    }
}

impl RxRequest {
    fn param(&self, name: &str) -> &str {
        self.path.get(name).map_or("", String::as_str)
    }

    fn call(&self) -> RxCall<'_> {
        RxCall {
            ods: self.param("ods"),
            token: crate::authorization::bearer_token(&self.headers),
            request_id: self.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
            query: &self.query,
            body: &self.body,
        }
    }

    /// The body's media type is one of `accepted` (415 otherwise).
    fn media_refused(&self, accepted: &[&str]) -> Option<Response> {
        let given = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let given = given.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        (!accepted.contains(&given.as_str())).then(|| {
            let mut r = error(
                &self.headers,
                SpineCode::BadRequest,
                &format!("send the body as {}", accepted.first().copied().unwrap_or("JSON")),
            );
            *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            r
        })
    }
}

/// The answer: the resource with `status`, or the refusal as an OperationOutcome; the request's
/// ids answered back.
fn answer(h: &HeaderMap, status: StatusCode, result: Result<Value, GpcError>) -> Response {
    let (status, body) = match result {
        Ok(v) => (status, v),
        Err(e) => {
            // The code only: diagnostics can echo what the caller sent (an NHS number).
            tracing::info!(code = e.code.code(), "Prescriptions Management request refused");
            (StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST), e.operation_outcome_r4())
        }
    };
    let mut res = (status, body.to_string()).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for name in ["x-request-id", "x-correlation-id"] {
        if let Some(v) = h.get(name).filter(|v| v.len() <= 200) {
            headers.insert(name, v.clone());
        }
    }
    res
}

fn error(h: &HeaderMap, code: SpineCode, diagnostics: &str) -> Response {
    answer(h, StatusCode::OK, Err(GpcError::new(code, diagnostics)))
}

async fn wrong_method(headers: HeaderMap) -> Response {
    let mut r = error(&headers, SpineCode::BadRequest, "this HTTP method is not used here");
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

async fn statements(State(app): State<App>, r: RxRequest) -> Response {
    answer(&r.headers, StatusCode::OK, app.rx_medication_statements(r.call(), r.param("nhs")).await)
}

async fn requests(State(app): State<App>, r: RxRequest) -> Response {
    answer(&r.headers, StatusCode::OK, app.rx_medication_requests(r.call(), r.param("nhs")).await)
}

async fn request(State(app): State<App>, r: RxRequest) -> Response {
    answer(&r.headers, StatusCode::OK, app.rx_medication_request(r.call(), r.param("id")).await)
}

async fn practitioner_role(State(app): State<App>, r: RxRequest) -> Response {
    answer(&r.headers, StatusCode::OK, app.rx_practitioner_role(r.call(), r.param("id")).await)
}

async fn orders(State(app): State<App>, r: RxRequest) -> Response {
    answer(&r.headers, StatusCode::OK, app.rx_orders(r.call()).await)
}

async fn order(State(app): State<App>, r: RxRequest) -> Response {
    if let Some(refused) = r.media_refused(&["application/fhir+json", "application/json"]) {
        return refused;
    }
    answer(&r.headers, StatusCode::CREATED, app.rx_order(r.call()).await)
}

async fn cancel(State(app): State<App>, r: RxRequest) -> Response {
    if let Some(refused) = r.media_refused(&["application/json-patch+json", "application/json"]) {
        return refused;
    }
    answer(&r.headers, StatusCode::OK, app.rx_cancel(r.call()).await)
}
