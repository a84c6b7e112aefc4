//! The HTTP face of caldicott. [`router`] builds the whole application; each area owns its
//! routes. Handlers take extractors that carry permission (a handler that takes [`Staff`] cannot
//! run for an unauthenticated caller), call one use case in `caldicott-app`, and return JSON or
//! HTML. Errors are mapped to HTTP in one place, [`WebError`].

mod access_page;
mod api;
mod app_api;
mod body;
mod chat;
pub mod client;
mod comms;
mod documents;
mod error;
mod fhir;
mod governance;
mod inbound;
mod integrations;
pub mod openapi;
mod pages;
mod patient;
mod portal;
mod sar_export;
mod sars;
mod staff_work;
pub mod throttle;
mod tokens;
mod update_record_api;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use caldicott_app::App;

pub use error::WebError;
pub use patient::PATIENT_COOKIE;
pub use portal::SESSION_COOKIE;

/// The whole application.
pub fn router(app: App) -> Router {
    Router::new()
        .merge(pages::routes())
        .merge(portal::routes())
        .merge(patient::routes())
        .merge(staff_work::routes())
        .merge(comms::routes())
        .merge(documents::routes())
        .merge(integrations::routes())
        .merge(tokens::routes())
        .merge(governance::routes())
        .merge(inbound::routes())
        .merge(sars::routes())
        .merge(sar_export::routes())
        .merge(chat::routes())
        .nest("/api/update-record/v1", update_record_api::routes())
        .nest("/api/apps/v1", app_api::routes())
        .nest("/api/v1", api::routes())
        .nest(fhir::BASE, fhir::routes())
        .fallback(error::unknown_route)
        .layer(axum::Extension(std::sync::Arc::new(throttle::Throttles::new())))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(client::record_client))
        .with_state(app)
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
mod layering {
    /// The web layer calls the application's use cases, never its store: every check of who may
    /// see what, and every audit event, lives in a use case (issue 22).
    #[test]
    fn handlers_call_use_cases_never_the_store() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&src).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "rs") {
                let text: String =
                    std::fs::read_to_string(&path).unwrap().chars().filter(|c| !c.is_whitespace()).collect();
                // Spelt in pieces so that this test does not find itself.
                let store = "store";
                for needle in [format!(".{store}."), format!(".{store}("), format!("caldicott_{store}::Store")] {
                    if text.contains(&needle) {
                        found.push(format!("{}: {needle}", path.display()));
                    }
                }
            }
        }
        assert!(found.is_empty(), "the web layer reaches the store directly: {found:?}");
    }
}
