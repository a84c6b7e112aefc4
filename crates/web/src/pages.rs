//! Pages and endpoints that need no sign-in: the API description, the health check and the
//! static assets (the NHS.UK design system, brought in at build time, and caldicott's own).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use caldicott_app::App;
use serde_json::json;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api", get(api_page))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/assets/{*path}", get(asset))
        .route("/notify/delivery-reports", axum::routing::post(delivery_report))
}

#[derive(serde::Deserialize)]
struct DeliveryReport {
    id: String,
    status: String,
}

/// GOV.UK Notify's delivery-status callback: `Authorization: Bearer <the configured token>` and
/// a JSON body with the notification's `id` and `status`. Repeated reports are applied once.
async fn delivery_report(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::response::Response, crate::error::WebError> {
    // The token first: nothing of the body is read for a caller without it.
    let bearer = crate::authorization::bearer_token(&headers).unwrap_or("");
    if !app.notify_callback_accepts(bearer) {
        return Err(caldicott_app::AppError::Unauthenticated("the delivery report's token is not right".into()).into());
    }
    let Ok(bytes) = crate::body::read_at_most(body, 16 * 1024).await else {
        return Ok(crate::body::TooLarge.into_response());
    };
    let report: DeliveryReport = serde_json::from_slice(&bytes)
        .map_err(|_| caldicott_app::AppError::BadRequest("a delivery report is JSON with id and status".into()))?;
    app.notify_delivery_report(bearer, &report.id, &report.status).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

const OWN_ASSETS: &[(&str, &str, &[u8])] = &[
    ("/assets/caldicott.css", "text/css; charset=utf-8", include_bytes!("../assets/caldicott.css")),
    ("/assets/caldicott.js", "text/javascript; charset=utf-8", include_bytes!("../assets/caldicott.js")),
];

async fn asset(axum::extract::Path(rest): axum::extract::Path<String>) -> axum::response::Response {
    let path = format!("/assets/{rest}");
    match generated::ASSETS.iter().chain(OWN_ASSETS).find(|(p, _, _)| *p == path.as_str()) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "public, max-age=3600")], *body).into_response()
        }
        None => crate::error::not_found().await.into_response(),
    }
}

/// The record API's front page: in the site's own style (under its content security policy), with
/// this service's own public address in the example.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "api.html")]
struct ApiPage {
    chrome: Option<crate::kernel::Chrome>,
    public_url: String,
}

async fn api_page(State(app): State<App>) -> axum::response::Response {
    ApiPage { chrome: None, public_url: app.public_url().trim_end_matches('/').to_owned() }.into_response()
}

/// 200 when the database answers, 503 when it does not.
/// `GET /health/live`: the process answers (a supervisor restarts one that does not). It asks
/// nothing of the database.
async fn live() -> impl IntoResponse {
    Json(json!({ "status": "live" }))
}

/// `GET /health/ready`: the database answers and its schema is this build's (a load balancer
/// sends requests only to a ready server); 503 otherwise, with the reason logged.
async fn ready(State(app): State<App>) -> impl IntoResponse {
    match app.ready().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "not ready" })))
        }
    }
}

async fn health(State(app): State<App>) -> impl IntoResponse {
    match app.health().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok", "database": "ok" }))),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "database": "unreachable" })))
        }
    }
}
