//! A patient's audit trail: who viewed or changed the record, filtered to views or changes.

use crate::kernel::{banner, Banner, Chrome, InPage, PageError, Portal, SectionLink};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::{App, AppError};
use std::collections::HashMap;

pub(super) fn routes() -> Router<App> {
    Router::new().route("/patients/{nhs_number}/audit", get(trail))
}

pub struct TrailRow {
    pub seq: i64,
    pub at: String,
    pub who: String,
    pub role: String,
    pub action: String,
    pub what: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct TrailPage {
    chrome: Option<Chrome>,
    banner: Banner,
    filters: Vec<SectionLink>,
    lines: Vec<TrailRow>,
    limit: i64,
}

async fn trail(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    use caldicott_app::trail::TrailFilter;
    let filter = match q.get("show").map(String::as_str) {
        None | Some("all") => TrailFilter::All,
        Some("views") => TrailFilter::Views,
        Some("changes") => TrailFilter::Changes,
        Some(other) => {
            return Err(PageError::new(
                &me,
                AppError::BadRequest(format!("show must be all, views or changes, not {other:?}")),
            ))
        }
    };
    let caldicott_app::trail::PatientTrail { patient, enhanced_review_active, lines } =
        app.patient_trail(&me.who, &nhs, filter).await.in_page(&me)?;
    let base = format!("/patients/{}/audit", patient.nhs_number.as_str());
    let filters = [
        ("All events", "all", TrailFilter::All),
        ("Views", "views", TrailFilter::Views),
        ("Changes", "changes", TrailFilter::Changes),
    ]
    .into_iter()
    .map(|(label, key, f)| SectionLink { label, href: format!("{base}?show={key}"), current: f == filter })
    .collect();
    let today = app.today();
    Ok(TrailPage {
        chrome: Some(Chrome::from(&me)),
        banner: banner(&patient, today, enhanced_review_active),
        filters,
        lines: lines
            .into_iter()
            .map(|l| TrailRow {
                seq: l.seq,
                at: caldicott_core::appointments::uk_time(l.at).format("%-d %b %Y %H:%M:%S").to_string(),
                who: l.who,
                role: l.role,
                action: l.action,
                what: l.what,
                outcome: l.outcome,
                detail: l.detail,
            })
            .collect(),
        limit: caldicott_app::trail::TRAIL_LIMIT,
    }
    .into_response())
}
