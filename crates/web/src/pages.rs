//! Pages and endpoints that need no sign-in: the service's front page and its health check.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use caldicott_app::App;
use serde_json::json;

pub fn routes() -> Router<App> {
    Router::new().route("/", get(index)).route("/health", get(health))
}

const INDEX: &str = include_str!("index.html");

async fn index() -> Html<&'static str> {
    Html(INDEX)
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
