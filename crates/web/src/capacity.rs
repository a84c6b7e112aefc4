//! The online appointment capacity report: the practice's page and CSV
//! (`/reports/appointments`), and every practice's totals for the ICB (`/icb/appointments`).
//! Counts only: clinicians and types of appointment are named, never a patient.

use crate::governance::csv_response;
use crate::kernel::{Chrome, Errors, FieldError, InPage, PageError, Portal};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::capacity::{capacity_csv, icb_capacity_csv, Period, MAX_WEEKS};
use caldicott_app::governance::parse_date_parts;
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::capacity::{percent, Counts};
use std::collections::HashMap;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/reports/appointments", get(report_page))
        .route("/reports/appointments.csv", get(report_file))
        .route("/icb/appointments", get(icb_page))
        .route("/icb/appointments.csv", get(icb_file))
}

/// One line of counts, ready to show.
pub struct CountsView {
    pub offered: u64,
    pub offered_online: u64,
    pub online_share: String,
    pub booked_online: u64,
    pub booked_by_practice: u64,
    pub booked_by_others: u64,
    pub dna_online: u64,
    pub dna_by_practice: u64,
    pub dna_by_others: u64,
    pub not_recorded: u64,
    /// Did-not-attends of online bookings as a share of them.
    pub dna_online_rate: String,
    pub dna_by_practice_rate: String,
}

impl From<&Counts> for CountsView {
    fn from(c: &Counts) -> Self {
        Self {
            offered: c.offered,
            offered_online: c.offered_online,
            online_share: c.online_share_text(),
            booked_online: c.booked_online,
            booked_by_practice: c.booked_by_practice,
            booked_by_others: c.booked_by_other_care_settings,
            dna_online: c.did_not_attend_online,
            dna_by_practice: c.did_not_attend_by_practice,
            dna_by_others: c.did_not_attend_by_other_care_settings,
            not_recorded: c.attendance_not_recorded,
            dna_online_rate: percent(c.did_not_attend_online, c.booked_online),
            dna_by_practice_rate: percent(c.did_not_attend_by_practice, c.booked_by_practice),
        }
    }
}

pub struct LineView {
    pub clinician: String,
    pub kind: &'static str,
    pub counts: CountsView,
}

pub struct WeekView {
    pub heading: String,
    pub total: CountsView,
    pub lines: Vec<LineView>,
}

/// The period's form and links, shared by both pages.
pub struct PeriodView {
    pub described: String,
    pub from_day: String,
    pub from_month: String,
    pub from_year: String,
    pub weeks: u32,
    pub max_weeks: u32,
    pub earlier: String,
    pub later: String,
    pub csv: String,
}

impl PeriodView {
    fn of(p: &Period, path: &str) -> Self {
        let query = |p: &Period| format!("from={}&weeks={}", p.from, p.weeks);
        Self {
            described: p.describe(),
            from_day: p.from.format("%-d").to_string(),
            from_month: p.from.format("%-m").to_string(),
            from_year: p.from.format("%Y").to_string(),
            weeks: p.weeks,
            max_weeks: MAX_WEEKS,
            earlier: format!("{path}?{}", query(&p.earlier())),
            later: format!("{path}?{}", query(&p.later())),
            csv: format!("{path}.csv?{}", query(p)),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "capacity.html")]
struct ReportPage {
    chrome: Option<Chrome>,
    practice: String,
    period: PeriodView,
    total: CountsView,
    weeks: Vec<WeekView>,
}

// The period form uses the shared date input, which asks its page for field errors: a bad
// period is answered with a 400 page of its own, so these pages have none.
impl Errors for ReportPage {
    fn errors(&self) -> &[FieldError] {
        &[]
    }
}

impl Errors for IcbPage {
    fn errors(&self) -> &[FieldError] {
        &[]
    }
}

/// The period a request asks for: the first week as day, month and year boxes (the form) or
/// as `from=YYYY-MM-DD` (links), and the number of weeks; a bad one is a 400 that says what is
/// wrong.
fn period_of(app: &App, me: &SignedIn, q: &HashMap<String, String>) -> Result<Period, PageError> {
    let bad = |e: String| PageError::new(me, AppError::BadRequest(e));
    let part = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let from = if ["from_day", "from_month", "from_year"].iter().any(|k| !part(k).trim().is_empty()) {
        parse_date_parts(part("from_day"), part("from_month"), part("from_year"))
            .map_err(|e| bad(format!("the first week's date {e}")))?
            .map(|d| d.to_string())
    } else {
        q.get("from").cloned()
    };
    Period::parse(from.as_deref(), q.get("weeks").map(String::as_str), app.today()).map_err(bad)
}

async fn report_page(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let period = period_of(&app, &me, &q)?;
    let r = app.capacity_report(&me.who, period).await.in_page(&me)?;
    let weeks = r
        .weeks
        .iter()
        .map(|(week, total)| WeekView {
            heading: format!("Week starting {}", week.format("%A %-d %B %Y")),
            total: total.into(),
            lines: r
                .lines
                .iter()
                .filter(|l| l.week == *week)
                .map(|l| LineView {
                    clinician: l.clinician.clone(),
                    kind: l.slot_type.display(),
                    counts: (&l.counts).into(),
                })
                .collect(),
        })
        .collect();
    Ok(ReportPage {
        chrome: Some((&me).into()),
        practice: format!("{} ({})", r.practice_name, r.ods_code),
        period: PeriodView::of(&r.period, "/reports/appointments"),
        total: (&r.total).into(),
        weeks,
    }
    .into_response())
}

async fn report_file(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let period = period_of(&app, &me, &q)?;
    let r = app.capacity_report(&me.who, period).await.in_page(&me)?;
    Ok(csv_response(
        &format!("appointment-capacity-{}-{}-{}w.csv", r.ods_code, period.from, period.weeks),
        capacity_csv(&r),
    ))
}

pub struct PracticeLine {
    pub name: String,
    pub counts: CountsView,
}

#[derive(Template, WebTemplate)]
#[template(path = "icb_capacity.html")]
struct IcbPage {
    chrome: Option<Chrome>,
    period: PeriodView,
    total: CountsView,
    practices: Vec<PracticeLine>,
}

async fn icb_page(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let period = period_of(&app, &me, &q)?;
    let rows = app.icb_capacity(&me.who, period).await.in_page(&me)?;
    let total = caldicott_core::capacity::total(rows.iter().map(|r| &r.counts));
    Ok(IcbPage {
        chrome: Some((&me).into()),
        period: PeriodView::of(&period, "/icb/appointments"),
        total: (&total).into(),
        practices: rows
            .iter()
            .map(|r| PracticeLine { name: format!("{} ({})", r.name, r.ods_code), counts: (&r.counts).into() })
            .collect(),
    }
    .into_response())
}

async fn icb_file(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let period = period_of(&app, &me, &q)?;
    let rows = app.icb_capacity(&me.who, period).await.in_page(&me)?;
    Ok(csv_response(
        &format!("icb-appointment-capacity-{}-{}w.csv", period.from, period.weeks),
        icb_capacity_csv(&period, &rows),
    ))
}
