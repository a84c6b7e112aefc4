//! Where a request comes from, and how often an address may try a credential.
//!
//! [`ClientAddr`] is the address of the connection as the server accepted it (axum's
//! `ConnectInfo`), never a header a client can write. [`credentials`] and [`machines`] are
//! middleware on the routes that check a credential: each client address gets a burst and then
//! a steady rate (governor's GCRA), and a request beyond it is answered 429 with `Retry-After`
//! before the credential is looked at. The per-account limits and the growing waits after wrong
//! tries are in the application (`caldicott_app::auth`), so that every way in shares them.

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use caldicott_app::auth::Client;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The client's address (none for in-process requests, as in tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Client);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_of(&parts.extensions)))
    }
}

/// The connection's address as axum recorded it (or as a test's `MockConnectInfo` gives it).
fn client_of(extensions: &axum::http::Extensions) -> Client {
    let real = extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| *a);
    let mock = || extensions.get::<axum::extract::connect_info::MockConnectInfo<SocketAddr>>().map(|m| m.0);
    real.or_else(mock).map_or_else(Client::default, |a| Client::at(a.ip()))
}

type Limiter = RateLimiter<String, HashMapStateStore<String>, DefaultClock>;

fn limiter(burst: u32, every: Duration) -> Limiter {
    let quota = Quota::with_period(every)
        .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    RateLimiter::hashmap(quota)
}

/// The per-address limits, one set per running router.
pub struct Throttles {
    credentials: Limiter,
    machines: Limiter,
    clock: DefaultClock,
}

impl Throttles {
    /// People's credentials (staff and patient sign-in, both second-factor steps, turning
    /// two-step on or off, the password re-check before a release): 20 at once from one
    /// address, then one every 3 seconds.
    pub const CREDENTIALS: (u32, Duration) = (20, Duration::from_secs(3));
    /// Machines' credentials (the FHIR token endpoint, app linking): 30 at once, then one
    /// every 2 seconds.
    pub const MACHINES: (u32, Duration) = (30, Duration::from_secs(2));

    pub fn new() -> Self {
        Self {
            credentials: limiter(Self::CREDENTIALS.0, Self::CREDENTIALS.1),
            machines: limiter(Self::MACHINES.0, Self::MACHINES.1),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `client`; `Err(wait)` when its rate is spent.
    fn take(&self, which: &Limiter, client: &Client) -> Result<(), Duration> {
        if which.len() > 100_000 {
            which.retain_recent();
        }
        which.check_key(&client.key()).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

impl Default for Throttles {
    fn default() -> Self {
        Self::new()
    }
}

/// The form a 429 takes on a route.
#[derive(Clone, Copy)]
enum Answer {
    Page,
    Json,
    Fhir,
}

/// Middleware for the pages that check a person's credential (only their POSTs are counted).
pub async fn credentials(req: Request, next: Next) -> Response {
    limit(req, next, |t| &t.credentials, Answer::Page).await
}

/// Middleware for the JSON API routes that check a machine's credential.
pub async fn machines(req: Request, next: Next) -> Response {
    limit(req, next, |t| &t.machines, Answer::Json).await
}

/// Middleware for the FHIR routes that check a machine's credential.
pub async fn fhir_machines(req: Request, next: Next) -> Response {
    limit(req, next, |t| &t.machines, Answer::Fhir).await
}

async fn limit(req: Request, next: Next, which: fn(&Throttles) -> &Limiter, answer: Answer) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let client = client_of(req.extensions());
    let Some(throttles) = req.extensions().get::<Arc<Throttles>>().cloned() else { return next.run(req).await };
    match throttles.take(which(&throttles), &client) {
        Ok(()) => next.run(req).await,
        Err(wait) => too_many(answer, req.uri().path(), wait),
    }
}

/// 429 with `Retry-After` (whole seconds, at least one): JSON for the APIs, FHIR's
/// OperationOutcome under the FHIR base, a page for people.
fn too_many(answer: Answer, path: &str, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let message = format!("Too many tries from this address. Wait {secs} seconds, then try again.");
    let mut res = if matches!(answer, Answer::Fhir) {
        let body = serde_json::json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": "throttled", "diagnostics": message }]
        });
        let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
        r
    } else if matches!(answer, Answer::Json) {
        let body = serde_json::json!({ "error": { "status": 429, "message": message } });
        (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
    } else {
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
             content=\"width=device-width, initial-scale=1\"><title>Too many tries – wait, then try again</title>\
             <link rel=\"stylesheet\" href=\"/assets/nhsuk-frontend.min.css\"></head><body><main class=\"nhsuk-width-container\" \
             id=\"maincontent\"><h1 class=\"nhsuk-heading-l\">Too many tries</h1><p>{message}</p>\
             <p><a href=\"{back}\">Go back</a></p></main></body></html>",
            back = if path.starts_with("/my/") { "/my/sign-in" } else { "/sign-in" }
        );
        (StatusCode::TOO_MANY_REQUESTS, Html(page)).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}
