//! The HTTP face of caldicott. [`router`] builds the whole application; each area owns its
//! routes. Handlers take extractors that carry permission (a handler that takes [`Staff`] cannot
//! run for an unauthenticated caller), call one use case in `caldicott-app`, and return JSON or
//! HTML. Errors are mapped to HTTP in one place for each: [`WebError`] for JSON, and for pages
//! the HTML kernel's error pages (`kernel::errors`), which a page handler reaches with `?` through
//! its `PageError`. The modules form layers with no import circle between them (`layering`).

mod api;
mod app_api;
mod appointments_api;
mod authorization;
mod body;
mod booking;
mod capacity;
mod care_plans;
mod chart;
mod chat;
pub mod client;
mod comms;
mod documents;
mod error;
mod fhir;
mod governance;
mod gpconnect;
mod inbound;
mod integrations;
mod kernel;
pub mod metrics;
pub mod openapi;
mod pages;
mod patient;
mod pfs_prescriptions;
mod query;
mod results;
mod sar_export;
mod sars;
mod staff;
mod staff_work;
pub mod throttle;
mod tokens;
mod update_record_api;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use caldicott_app::App;

pub use error::WebError;
pub use kernel::cookies::{PATIENT_COOKIE, SESSION_COOKIE};

/// The whole application.
pub fn router(app: App) -> Router {
    Router::new()
        .merge(pages::routes())
        .merge(staff::routes())
        .merge(patient::routes())
        .merge(results::patient_routes())
        .merge(care_plans::patient_routes())
        .merge(care_plans::staff_routes())
        .merge(results::staff_routes())
        .merge(booking::routes())
        .merge(staff_work::routes())
        .merge(comms::routes())
        .merge(documents::routes())
        .merge(integrations::routes())
        .merge(tokens::routes())
        .merge(governance::routes())
        .merge(capacity::routes())
        .merge(inbound::routes())
        .merge(sars::routes())
        .merge(sar_export::routes())
        .merge(chat::routes())
        .nest("/api/update-record/v1", update_record_api::routes())
        .nest("/api/apps/v1", app_api::routes())
        .nest("/api/v1", api::routes().merge(staff::api_routes()).merge(appointments_api::routes()))
        .nest(fhir::BASE, fhir::routes())
        .merge(gpconnect::pfs_routes())
        .merge(pfs_prescriptions::routes())
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::Extension(std::sync::Arc::new(throttle::Throttles::new())))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(client::record_client))
        .with_state(app)
}

/// The Spine listener's whole application: GP Connect (docs/gp-connect.md) and nothing else.
/// The command line serves it only on a listener that requires the Spine's client
/// certificates.
pub fn spine_router(app: App) -> Router {
    gpconnect::routes()
        .fallback(gpconnect::not_implemented)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(client::record_client))
        .with_state(app)
}

/// The router's fallback: under the FHIR base an OperationOutcome (a path such as `/fhir/r4/`
/// that the FHIR router's own fallback does not see); under `/api/`, or for a caller that asks
/// for JSON and not HTML, the JSON API's answer; anywhere else a "Page not found" page, the
/// patient pages' under `/my`, the staff portal's elsewhere.
async fn unknown_route(
    axum::extract::State(app): axum::extract::State<App>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let path = uri.path();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if path == fhir::BASE || path.starts_with(&format!("{}/", fhir::BASE)) {
        fhir::unknown_route().await.into_response()
    } else if path.starts_with("/api/") || (accept.contains("json") && !accept.contains("text/html")) {
        error::not_found().await.into_response()
    } else {
        let patient_side = path == "/my" || path.starts_with("/my/");
        kernel::errors::page_not_found(&app, &headers, patient_side).await
    }
}

/// Headers on every response: patient data is never cached, never sniffed, never framed.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // A response that set a stricter policy of its own (a downloaded file) keeps it.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
        );
    }
    res
}

#[cfg(test)]
mod layering;
