//! The service's metrics in Prometheus's text format.
//!
//! The process installs one recorder ([`install`]); counters and histograms are recorded where
//! things happen (requests here, audit appends in the store, deliveries and Update Record
//! answers in the application, throttled requests in `throttle`), and the gauges that describe
//! the database (pool use, the outbox by channel and status) are read when the metrics are
//! scraped. Labels carry route templates, methods, status codes and outcome names only: never an
//! identifier, a name or anything else about a patient.
//!
//! `/metrics` is not public: it answers only with `Authorization: Bearer <token>` when a token
//! is configured ([`routes`]), and otherwise only on an address of its own (`serve
//! --metrics-listen`), which the operator keeps to their monitoring network.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::App;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("caldicott_backup_bytes".into()),
                        &[1e6, 1e7, 1e8, 1e9, 1e10],
                    )
                })
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only its own");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("caldicott_http_requests_total", "HTTP requests answered, by route template, method and status");
    describe_histogram!(
        "caldicott_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer a request, by route template and method"
    );
    describe_gauge!("caldicott_db_pool_connections", "Database connections by pool and state (in_use, idle, max)");
    describe_histogram!(
        "caldicott_audit_append_seconds",
        Unit::Seconds,
        "Time to append audit events to a practice's chain inside a transaction"
    );
    describe_gauge!("caldicott_outbox_messages", "Messages in the outbox, by channel and status");
    describe_counter!("caldicott_outbox_attempts_total", "Delivery attempts by channel and result");
    describe_counter!(
        "caldicott_update_record_messages_total",
        "GP Connect Update Record messages by transport and answer code"
    );
    describe_counter!("caldicott_sign_in_failures_total", "Failed sign-ins, staff or patient");
    describe_counter!("caldicott_throttled_requests_total", "Requests refused with 429 by the per-address limits");
    describe_counter!("caldicott_backups_total", "Scheduled backups by result (ok: taken and verified)");
    describe_gauge!(
        "caldicott_backup_last_success_timestamp_seconds",
        "When the last scheduled backup was taken and verified (Unix time)"
    );
}

/// Counts and times every request by its route template (never its path, which may hold an
/// identifier).
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("caldicott_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("caldicott_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    res
}

/// Scheduled backups are on: their counters start at 0.
pub fn backups_scheduled() {
    for result in ["ok", "failed"] {
        metrics::counter!("caldicott_backups_total", "result" => result).increment(0);
    }
}

/// A scheduled backup's result.
pub fn backup_taken(ok: bool, bytes: u64, took: Duration) {
    metrics::counter!("caldicott_backups_total", "result" => if ok { "ok" } else { "failed" }).increment(1);
    if ok {
        metrics::histogram!("caldicott_backup_duration_seconds").record(took.as_secs_f64());
        metrics::histogram!("caldicott_backup_bytes").record(bytes as f64);
        metrics::gauge!("caldicott_backup_last_success_timestamp_seconds").set(chrono::Utc::now().timestamp() as f64);
    }
}

/// The text exposition, with the database gauges read now.
pub async fn render(app: &App, handle: &PrometheusHandle) -> Response {
    match app.service_gauges().await {
        Ok((pools, outbox)) => {
            for p in pools {
                let in_use = p.open.saturating_sub(p.idle);
                for (state, n) in [("in_use", in_use), ("idle", p.idle), ("max", p.max)] {
                    metrics::gauge!("caldicott_db_pool_connections", "pool" => p.pool, "state" => state)
                        .set(f64::from(n));
                }
            }
            // Every channel and status has a series, at 0 when empty, so that alerts on a
            // growing queue have something to compare from the start.
            use caldicott_core::messages::{Channel, MessageStatus};
            for channel in [Channel::Email, Channel::Sms, Channel::Letter] {
                for status in [
                    MessageStatus::Queued,
                    MessageStatus::Sending,
                    MessageStatus::Printing,
                    MessageStatus::Sent,
                    MessageStatus::Delivered,
                    MessageStatus::Failed,
                ] {
                    let n = outbox
                        .iter()
                        .find(|(c, s, _)| c == channel.as_str() && s == status.as_str())
                        .map_or(0, |(_, _, n)| *n);
                    metrics::gauge!("caldicott_outbox_messages", "channel" => channel.as_str(), "status" => status.as_str())
                        .set(n as f64);
                }
            }
            for (channel, status, n) in
                outbox.iter().filter(|(c, s, _)| Channel::parse(c).is_none() || MessageStatus::parse(s).is_none())
            {
                metrics::gauge!("caldicott_outbox_messages", "channel" => channel.clone(), "status" => status.clone())
                    .set(*n as f64);
            }
            metrics::gauge!("caldicott_database_up").set(1.0);
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the database gauges for /metrics");
            metrics::gauge!("caldicott_database_up").set(0.0);
        }
    }
    handle.run_upkeep();
    let mut res = handle.render().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[derive(Clone)]
struct Access {
    handle: PrometheusHandle,
    /// `None`: open (its own address); otherwise the bearer token a scraper must send.
    token: Option<Arc<str>>,
}

async fn metrics_page(State((app, access)): State<(App, Access)>, headers: HeaderMap) -> Response {
    if let Some(token) = &access.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let same =
            given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            let mut r = (StatusCode::UNAUTHORIZED, "a bearer token is needed for /metrics").into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    render(&app, &access.handle).await
}

/// `GET /metrics`: behind `token` on the service's own address, or open (`token: None`) on an
/// address of its own.
pub fn routes(app: App, handle: PrometheusHandle, token: Option<&str>) -> Router {
    Router::new().route("/metrics", get(metrics_page)).with_state((app, Access { handle, token: token.map(Arc::from) }))
}
