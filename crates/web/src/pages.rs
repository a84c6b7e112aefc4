//! Pages and endpoints that need no sign-in: the API description, the health check and the
//! static assets (the NHS.UK design system, brought in at build time, and caldicott's own).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use caldicott_app::App;
use serde_json::json;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api", get(api_page))
        .route("/health", get(health))
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
    body: Result<Json<DeliveryReport>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, crate::error::WebError> {
    let bearer = crate::error::bearer_token(&headers).unwrap_or("");
    let Json(report) = body.map_err(|e| caldicott_app::AppError::BadRequest(e.body_text()))?;
    app.notify_delivery_report(bearer, &report.id, &report.status).await?;
    Ok(StatusCode::NO_CONTENT)
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

const API_PAGE: &str = include_str!("../templates/api.html");

async fn api_page() -> Html<&'static str> {
    Html(API_PAGE)
}

/// 200 when the database answers, 503 when it does not.
async fn health(State(app): State<App>) -> impl IntoResponse {
    match app.store.health().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok", "database": "ok" }))),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "database": "unreachable" })))
        }
    }
}
