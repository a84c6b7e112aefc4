//! Where a request comes from, and how often an address may try a credential.
//!
//! The address is the connection's as the server accepted it (`crate::client`), never a header
//! a client can write. [`credentials`] and [`machines`] are
//! middleware on the routes that check a credential: each client address gets a burst and then
//! a steady rate (governor's GCRA), and a request beyond it is answered 429 with `Retry-After`
//! before the credential is looked at. The per-account limits and the growing waits after wrong
//! tries are in the application (`caldicott_app::auth`), so that every way in shares them.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use caldicott_app::auth::Client;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The connection's address, the one key per-address limits use.
fn client_of(extensions: &axum::http::Extensions) -> Client {
    crate::client::ClientAddr::of(extensions).client()
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
    /// Failed pharmacy credentials per address (a pharmacy system may send for many pharmacies
    /// from one address, so only failures count), and until when an address is held back.
    failures: Limiter,
    held: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
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
    /// Failed credentials at the Update Record endpoint: 10 at once from one address, then one
    /// every 6 seconds; beyond it the address is held back, right credentials or not.
    pub const FAILURES: (u32, Duration) = (10, Duration::from_secs(6));

    /// The limits above, or as `CALDICOTT_THROTTLE_PEOPLE`, `CALDICOTT_THROTTLE_MACHINES` and
    /// `CALDICOTT_THROTTLE_FAILURES` set them (`<burst>/<seconds per try>`, e.g. `20/3`); a value
    /// that does not read so is ignored with a warning.
    pub fn new() -> Self {
        let rate = |name: &str, default: (u32, Duration)| {
            let Ok(v) = std::env::var(name) else { return default };
            let parsed = v.split_once('/').and_then(|(b, s)| Some((b.trim().parse().ok()?, s.trim().parse().ok()?)));
            match parsed {
                Some((burst, secs)) if burst > 0 && secs > 0.0 => (burst, Duration::from_secs_f64(secs)),
                _ => {
                    tracing::warn!(%name, value = %v, "not <burst>/<seconds>: the default limit is used");
                    default
                }
            }
        };
        let (people, machines, failures) = (
            rate("CALDICOTT_THROTTLE_PEOPLE", Self::CREDENTIALS),
            rate("CALDICOTT_THROTTLE_MACHINES", Self::MACHINES),
            rate("CALDICOTT_THROTTLE_FAILURES", Self::FAILURES),
        );
        Self {
            credentials: limiter(people.0, people.1),
            machines: limiter(machines.0, machines.1),
            failures: limiter(failures.0, failures.1),
            held: std::sync::Mutex::new(std::collections::HashMap::new()),
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

impl Throttles {
    /// How long `client` is still held back after too many failed credentials.
    pub fn held_back(&self, client: &Client) -> Option<Duration> {
        let now = std::time::Instant::now();
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|_, until| *until > now);
        held.get(&client.key()).map(|until| *until - now)
    }

    /// Counts a failed credential from `client`; past the rate, the address is held back.
    pub fn failed(&self, client: &Client) {
        if let Err(wait) = self.take(&self.failures, client) {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            held.insert(client.key(), std::time::Instant::now() + wait);
        }
    }
}

/// 429 with `Retry-After` for a JSON API.
pub fn too_many_json(wait: Duration) -> Response {
    too_many(Answer::Json, "", wait)
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
    let kind = match answer {
        Answer::Page => "page",
        Answer::Json => "json",
        Answer::Fhir => "fhir",
    };
    metrics::counter!("caldicott_throttled_requests_total", "answer" => kind).increment(1);
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
