//! Governance pages: the enhanced review queue and review (with the redaction assistant), bulk
//! 104/106 with its dry run and typed confirmation (R35), the exclusion report with the action
//! plan (R36), the monthly return (R37), the trend, and the ICB's service-wide figures.

use crate::kernel::{
    csrf_forms, entry_text, field_errors, kind_label, long_date, same, Chrome, Errors, FieldError, InPage, PageError,
    Portal, PortalForm,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caldicott_app::governance::{
    icb_csv, monthly_return_csv, trend_csv, ActionPlanInput, BulkInput, BulkPreview, DecisionInput, ExclusionReport,
};
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::appointments::uk_time;
use caldicott_core::governance::TrendMonth;
use caldicott_core::snomed::EnhancedReview;
use serde::Deserialize;
use std::collections::HashMap;

/// The most a bulk-change upload may be: a CSV of NHS numbers for a whole practice and more.
pub(crate) const BULK_UPLOAD_LIMIT: usize = 8 * 1024 * 1024;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/reviews", get(review_queue))
        .route("/reviews/{nhs_number}", get(review_page).post(decide))
        .route("/reports", get(reports))
        .route("/reports/action-plan", post(save_plan))
        .route("/reports/monthly-return", get(monthly_return))
        .route("/reports/monthly-return.csv", get(monthly_return_file))
        .route("/reports/trend", get(trend_page))
        .route("/reports/trend.csv", get(trend_file))
        .route("/reports/proxy-reviews", get(proxy_reviews))
        .route(
            "/bulk-code",
            get(bulk_page).post(bulk_post).layer(axum::extract::DefaultBodyLimit::max(BULK_UPLOAD_LIMIT)),
        )
        .route("/bulk-code/{job}/undo", post(bulk_undo))
        .route("/icb", get(icb_page))
        .route("/icb.csv", get(icb_file))
}

csrf_forms!(DecideForm, PlanForm, UndoForm);

pub(crate) fn csv_response(name: &str, body: String) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

fn short_date(t: chrono::DateTime<chrono::Utc>) -> String {
    uk_time(t).format("%-d %b %Y").to_string()
}

// ---- The review queue and one review ---------------------------------------------------------

struct QueueRow {
    name: String,
    nhs: String,
    added: String,
    added_by: String,
    due: bool,
    state: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "reviews.html")]
struct QueuePage {
    chrome: Option<Chrome>,
    rows: Vec<QueueRow>,
    due: usize,
}

async fn review_queue(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let items = app.review_queue(&me.who).await.in_page(&me)?;
    Ok(QueuePage {
        chrome: Some((&me).into()),
        due: items.iter().filter(|i| i.due).count(),
        rows: items
            .into_iter()
            .map(|i| QueueRow {
                name: format!("{}, {}", i.patient.family_name.to_uppercase(), i.patient.given_name),
                nhs: i.patient.nhs_number.clone(),
                added: short_date(i.patient.added_at),
                added_by: i.patient.added_by.clone(),
                due: i.due,
                state: match &i.latest {
                    None => "Not reviewed yet".into(),
                    Some(o) => format!(
                        "Withheld on {} by {}{}",
                        short_date(o.decided_at),
                        o.decided_by,
                        o.next_review.map_or(String::new(), |d| format!("; review again on {}", long_date(d)))
                    ),
                },
            })
            .collect(),
    }
    .into_response())
}

struct CheckRow {
    id: String,
    date: String,
    kind: &'static str,
    text: String,
    highlights: Vec<String>,
    after_grant: String,
    shown_after_grant: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "review.html")]
struct ReviewPage {
    chrome: Option<Chrome>,
    csrf: String,
    nhs: String,
    name: String,
    born: String,
    active: bool,
    since: String,
    clinician: bool,
    rows: Vec<CheckRow>,
    total: usize,
    hidden: usize,
    manual_grants: Vec<String>,
    has_account: bool,
    outcomes: Vec<(String, String, String, String, String)>,
    outcome: String,
    reason: String,
    day: String,
    month: String,
    year: String,
    errors: Vec<FieldError>,
}

impl Errors for ReviewPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn review_view(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    input: &DecisionInput,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let page = app.review_page(&me.who, nhs).await.in_page(me)?;
    let (active, since) = match page.status {
        EnhancedReview::Active { since } => (true, short_date(since)),
        _ => (false, String::new()),
    };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let view = ReviewPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        nhs: page.patient.nhs_number.as_str().to_owned(),
        name: page.patient.name.banner(),
        born: long_date(page.patient.date_of_birth),
        active,
        since,
        clinician: me.who.role == caldicott_core::staff::Role::Clinician,
        rows: page
            .to_check
            .iter()
            .map(|r| CheckRow {
                id: r.entry.id.to_string(),
                date: long_date(r.entry.event_date),
                kind: kind_label(&r.entry),
                text: entry_text(&r.entry),
                highlights: r.highlights.iter().map(|h| h.explain()).collect(),
                shown_after_grant: r.withheld_after_grant.is_none(),
                after_grant: r.withheld_after_grant.clone().unwrap_or_default(),
            })
            .collect(),
        total: page.total_entries,
        hidden: page.already_hidden,
        manual_grants: page
            .manual_grants
            .iter()
            .map(|g| format!("{} (granted by {} on {})", g.level.display(), g.granted_by, long_date(g.granted_on)))
            .collect(),
        has_account: page.has_online_account,
        outcomes: page
            .outcomes
            .iter()
            .map(|o| {
                (
                    short_date(o.decided_at),
                    o.outcome.as_str().to_owned(),
                    o.decided_by.clone(),
                    o.reason.clone(),
                    o.next_review.map_or(String::new(), long_date),
                )
            })
            .collect(),
        outcome: input.outcome.clone(),
        reason: input.reason.clone(),
        day: input.next_day.clone(),
        month: input.next_month.clone(),
        year: input.next_year.clone(),
        errors,
    };
    Ok((status, view).into_response())
}

async fn review_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
) -> Result<Response, PageError> {
    review_view(&app, &me, &nhs, &DecisionInput::default(), Vec::new()).await
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    review_outcome: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    next_day: String,
    #[serde(default)]
    next_month: String,
    #[serde(default)]
    next_year: String,
}

async fn decide(
    State(app): State<App>,
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<DecideForm>,
) -> Result<Response, PageError> {
    let input = DecisionInput {
        outcome: f.review_outcome,
        reason: f.reason,
        next_day: f.next_day,
        next_month: f.next_month,
        next_year: f.next_year,
    };
    match app.decide_review(&me.who, &nhs, &input).await.in_page(&me)? {
        Ok(_) => Ok(Redirect::to("/reviews?decided").into_response()),
        Err(problems) => review_view(&app, &me, &nhs, &input, field_errors(problems)).await,
    }
}

// ---- Reports -----------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "reports.html")]
struct ReportsPage {
    chrome: Option<Chrome>,
    csrf: String,
    r: ExclusionReport,
    /// The share excluded, as a width for the bar (0–100).
    bar: i64,
    manager: bool,
    owner: String,
    /// The plan's dates, as their boxes show them.
    review_by: [String; 3],
    below_half_by: [String; 3],
    progress: String,
    plan_updated: String,
    on: String,
    plan_review_by: String,
    plan_below_half_by: String,
    overdue_alerts: usize,
    saved: bool,
    errors: Vec<FieldError>,
}

impl Errors for ReportsPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn reports_view(
    app: &App,
    me: &SignedIn,
    input: Option<&ActionPlanInput>,
    saved: bool,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let r = app.exclusion_report(&me.who).await.in_page(me)?;
    let overdue_alerts = app.overdue_alerts(&me.who).await.in_page(me)?;
    let plan = r.action_plan.as_ref();
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page =
        ReportsPage {
            chrome: Some(me.into()),
            csrf: me.csrf_token.clone(),
            bar: (r.figures.per_mille() / 10).clamp(0, 100),
            manager: me.who.role == caldicott_core::staff::Role::PracticeManager,
            owner: input.map_or_else(|| plan.map_or(String::new(), |p| p.owner.clone()), |i| i.owner.clone()),
            review_by: crate::kernel::boxes_of_iso(
                &input.map_or_else(|| plan.map_or(String::new(), |p| p.review_by.to_string()), |i| i.review_by.clone()),
            ),
            below_half_by: crate::kernel::boxes_of_iso(&input.map_or_else(
                || plan.map_or(String::new(), |p| p.below_half_by.to_string()),
                |i| i.below_half_by.clone(),
            )),
            progress: input.map_or_else(|| plan.map_or(String::new(), |p| p.progress.clone()), |i| i.progress.clone()),
            plan_updated: plan.map_or(String::new(), |p| format!("{} by {}", short_date(p.updated_at), p.updated_by)),
            on: long_date(r.on),
            plan_review_by: plan.map_or(String::new(), |p| long_date(p.review_by)),
            plan_below_half_by: plan.map_or(String::new(), |p| long_date(p.below_half_by)),
            overdue_alerts,
            saved,
            errors,
            r,
        };
    Ok((status, page).into_response())
}

async fn reports(
    State(app): State<App>,
    Portal(me): Portal,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    reports_view(&app, &me, None, q.contains_key("saved"), Vec::new()).await
}

#[derive(Deserialize)]
struct PlanForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    review_by_day: String,
    #[serde(default)]
    review_by_month: String,
    #[serde(default)]
    review_by_year: String,
    #[serde(default)]
    below_half_by_day: String,
    #[serde(default)]
    below_half_by_month: String,
    #[serde(default)]
    below_half_by_year: String,
    #[serde(default)]
    progress: String,
}

async fn save_plan(State(app): State<App>, PortalForm(me, f): PortalForm<PlanForm>) -> Result<Response, PageError> {
    let review_by = crate::kernel::iso_from_boxes(
        "The date every excluded patient is reviewed by",
        &f.review_by_day,
        &f.review_by_month,
        &f.review_by_year,
    );
    let below_half_by = crate::kernel::iso_from_boxes(
        "The date below half are excluded by",
        &f.below_half_by_day,
        &f.below_half_by_month,
        &f.below_half_by_year,
    );
    let mut input = ActionPlanInput {
        owner: f.owner,
        review_by: review_by.clone().unwrap_or_default(),
        below_half_by: below_half_by.clone().unwrap_or_default(),
        progress: f.progress,
    };
    let errors: Vec<FieldError> = [("review_by", review_by), ("below_half_by", below_half_by)]
        .into_iter()
        .filter_map(|(field, r)| r.err().map(|message| FieldError { field, message }))
        .collect();
    if !errors.is_empty() {
        input.review_by = String::new();
        input.below_half_by = String::new();
        return reports_view(&app, &me, Some(&input), false, errors).await;
    }
    match app.save_action_plan(&me.who, &input).await.in_page(&me)? {
        Ok(_) => Ok(Redirect::to("/reports?saved").into_response()),
        Err(problems) => reports_view(&app, &me, Some(&input), false, field_errors(problems)).await,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "monthly_return.html")]
struct MonthlyReturnPage {
    chrome: Option<Chrome>,
    on: String,
    rows: Vec<(String, String, String, String, String)>,
}

async fn monthly_return(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let (on, rows) = app.monthly_return(&me.who).await.in_page(&me)?;
    Ok(MonthlyReturnPage {
        chrome: Some((&me).into()),
        on: long_date(on),
        rows: rows
            .into_iter()
            .map(|r| {
                (
                    format!("{}, {}", r.family_name.to_uppercase(), r.given_name),
                    r.nhs_number,
                    long_date(r.date_of_birth),
                    short_date(r.added_at),
                    r.added_by,
                )
            })
            .collect(),
    }
    .into_response())
}

async fn monthly_return_file(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let (on, rows) = app.monthly_return(&me.who).await.in_page(&me)?;
    Ok(csv_response(&format!("monthly-return-{on}.csv"), monthly_return_csv(&rows, on)))
}

/// One bar group of the trend chart, laid out for the SVG.
struct TrendBar {
    label: String,
    x: i64,
    bars: [(i64, i64, i64); 3],
}

#[derive(Template, WebTemplate)]
#[template(path = "trend.html")]
struct TrendPage {
    chrome: Option<Chrome>,
    months: Vec<TrendMonth>,
    bars: Vec<TrendBar>,
    max: i64,
    width: i64,
}

/// Chart geometry: the plot is 200 units high; each month takes 48 units.
fn trend_bars(months: &[TrendMonth]) -> (Vec<TrendBar>, i64) {
    let max = months.iter().map(|m| m.excluded.max(m.granted).max(m.withheld)).max().unwrap_or(0).max(1);
    let bars = months
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let x = 40 + i as i64 * 48;
            let h = |v: i64| v * 200 / max;
            TrendBar {
                label: m.month.format("%b %y").to_string(),
                x,
                bars: [
                    (x + 4, 220 - h(m.excluded), h(m.excluded)),
                    (x + 17, 220 - h(m.granted), h(m.granted)),
                    (x + 30, 220 - h(m.withheld), h(m.withheld)),
                ],
            }
        })
        .collect();
    (bars, max)
}

async fn trend_page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let months = app.exclusion_trend(&me.who, 12).await.in_page(&me)?;
    let (bars, max) = trend_bars(&months);
    Ok(TrendPage { chrome: Some((&me).into()), width: 40 + months.len() as i64 * 48 + 10, months, bars, max }
        .into_response())
}

async fn trend_file(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let months = app.exclusion_trend(&me.who, 24).await.in_page(&me)?;
    Ok(csv_response("exclusion-trend.csv", trend_csv(&months)))
}

// ---- Bulk 104/106 ------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "bulk.html")]
struct BulkPage {
    chrome: Option<Chrome>,
    csrf: String,
    input: BulkFields,
    preview: Option<BulkPreview>,
    jobs: Vec<JobRow>,
    done: Option<String>,
    errors: Vec<FieldError>,
}

impl Errors for BulkPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

struct JobRow {
    id: String,
    date: String,
    code: &'static str,
    cohort: String,
    patients: i64,
    by: String,
    undoable: bool,
    state: &'static str,
}

#[derive(Default, Clone)]
struct BulkFields {
    code: String,
    min_age: String,
    max_age: String,
    has_code: String,
    registered_from: String,
    registered_to: String,
    csv: String,
}

impl BulkFields {
    fn input(&self) -> BulkInput {
        BulkInput {
            code: self.code.clone(),
            min_age: self.min_age.clone(),
            max_age: self.max_age.clone(),
            has_code: self.has_code.clone(),
            registered_from: self.registered_from.clone(),
            registered_to: self.registered_to.clone(),
            csv: self.csv.clone(),
        }
    }
}

async fn bulk_view(
    app: &App,
    me: &SignedIn,
    input: BulkFields,
    preview: Option<BulkPreview>,
    done: Option<String>,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let jobs = app.bulk_jobs(&me.who).await.in_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = BulkPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        input,
        preview,
        jobs: jobs
            .into_iter()
            .map(|j| {
                let code = if j.code == caldicott_core::snomed::ENHANCED_REVIEW_INDICATED { "104" } else { "106" };
                JobRow {
                    id: j.id.to_string(),
                    date: short_date(j.applied_at),
                    code,
                    cohort: j.cohort,
                    patients: j.patients,
                    by: j.applied_by,
                    undoable: code == "104" && j.undone_by.is_none(),
                    state: match (j.undoes, j.undone_by) {
                        (_, Some(_)) => "Undone",
                        (Some(_), None) => "Undoes an earlier change",
                        (None, None) => "Applied",
                    },
                }
            })
            .collect(),
        done,
        errors,
    };
    Ok((status, page).into_response())
}

async fn bulk_page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    bulk_view(&app, &me, BulkFields { code: "104".into(), ..Default::default() }, None, None, Vec::new()).await
}

/// Reads the bulk form, as a multipart upload (with a CSV file) or a plain form.
async fn read_bulk(app: &App, req: axum::extract::Request) -> Result<HashMap<String, String>, String> {
    use axum::extract::FromRequest;
    if !crate::body::is_multipart(&req) {
        let Form(f) = Form::<HashMap<String, String>>::from_request(req, app).await.map_err(|e| e.body_text())?;
        return Ok(f);
    }
    let too_big = || format!("The upload is larger than {} MB", BULK_UPLOAD_LIMIT / 1024 / 1024);
    let mut form = axum::extract::Multipart::from_request(req, app).await.map_err(|e| e.body_text())?;
    let mut fields = HashMap::new();
    while let Some(field) = form.next_field().await.map_err(|_| too_big())? {
        let Some(name) = field.name().map(str::to_owned) else { continue };
        let bytes = field.bytes().await.map_err(|_| too_big())?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| "The CSV file must be text (UTF-8)".to_owned())?;
        if name == "csv_file" {
            if !text.trim().is_empty() {
                fields.insert("csv".to_owned(), text.trim_start_matches('\u{feff}').to_owned());
            }
        } else if !(name == "csv" && fields.contains_key("csv")) {
            fields.insert(name, text);
        }
    }
    Ok(fields)
}

async fn bulk_post(
    State(app): State<App>,
    Portal(me): Portal,
    req: axum::extract::Request,
) -> Result<Response, PageError> {
    let f = match read_bulk(&app, req).await {
        Ok(f) => f,
        Err(m) => {
            let errors = vec![FieldError { field: "csv_file", message: m }];
            return bulk_view(&app, &me, BulkFields::default(), None, None, errors).await;
        }
    };
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    if !same(&me.csrf_token, &field("_csrf")) {
        return Err(PageError::form_expired());
    }
    // The registration dates come as NHS.UK date boxes from the form, or as the ISO dates the
    // confirmation step carries on.
    let date = |name: &'static str, label: &str| -> Result<String, FieldError> {
        let boxes = ["day", "month", "year"].map(|b| field(&format!("{name}_{b}")));
        if boxes.iter().all(String::is_empty) {
            return Ok(field(name));
        }
        crate::kernel::iso_from_boxes(label, &boxes[0], &boxes[1], &boxes[2])
            .map_err(|message| FieldError { field: name, message })
    };
    let (from, to) =
        (date("registered_from", "The first registration date"), date("registered_to", "The last registration date"));
    let mut fields = BulkFields {
        code: field("code"),
        min_age: field("min_age"),
        max_age: field("max_age"),
        has_code: field("has_code"),
        registered_from: from.clone().unwrap_or_default(),
        registered_to: to.clone().unwrap_or_default(),
        csv: field("csv"),
    };
    let date_errors: Vec<FieldError> = [from, to].into_iter().filter_map(Result::err).collect();
    if !date_errors.is_empty() {
        // Shown again as typed is not possible for a date that does not read: the boxes show empty.
        fields.registered_from = String::new();
        fields.registered_to = String::new();
        return bulk_view(&app, &me, fields, None, None, date_errors).await;
    }
    if field("step") == "apply" {
        return match app.bulk_apply(&me.who, &fields.input(), &field("confirm")).await.in_page(&me)? {
            Ok(done) => {
                let what = format!(
                    "{} recorded for {} ({}). Each patient's record and audit trail shows it.",
                    if done.job.code == caldicott_core::snomed::ENHANCED_REVIEW_INDICATED { "104" } else { "106" },
                    crate::kernel::count(done.job.patients, "patient", "patients"),
                    done.job.cohort
                );
                bulk_view(
                    &app,
                    &me,
                    BulkFields { code: "104".into(), ..Default::default() },
                    None,
                    Some(what),
                    Vec::new(),
                )
                .await
            }
            Err(problems) => {
                let preview = app.bulk_preview(&me.who, &fields.input()).await.ok().and_then(Result::ok);
                bulk_view(&app, &me, fields, preview, None, field_errors(problems)).await
            }
        };
    }
    match app.bulk_preview(&me.who, &fields.input()).await.in_page(&me)? {
        Ok(preview) => bulk_view(&app, &me, fields, Some(preview), None, Vec::new()).await,
        Err(problems) => bulk_view(&app, &me, fields, None, None, field_errors(problems)).await,
    }
}

#[derive(Deserialize)]
struct UndoForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    confirm: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "bulk_undo.html")]
struct UndoPage {
    chrome: Option<Chrome>,
    csrf: String,
    job: String,
    cohort: String,
    applied: String,
    count: usize,
    errors: Vec<FieldError>,
}

impl Errors for UndoPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn bulk_undo(
    State(app): State<App>,
    Path(job): Path<String>,
    PortalForm(me, f): PortalForm<UndoForm>,
) -> Result<Response, PageError> {
    let Ok(job) = job.parse::<uuid::Uuid>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such bulk change".into())));
    };
    let mut errors = Vec::new();
    if let Some(typed) = &f.confirm {
        match app.bulk_undo(&me.who, job, typed).await.in_page(&me)? {
            Ok(done) => {
                let what = format!(
                    "106 recorded for {} ({}).",
                    crate::kernel::count(done.job.patients, "patient", "patients"),
                    done.job.cohort
                );
                return bulk_view(
                    &app,
                    &me,
                    BulkFields { code: "104".into(), ..Default::default() },
                    None,
                    Some(what),
                    Vec::new(),
                )
                .await;
            }
            Err(problems) => errors = field_errors(problems),
        }
    }
    let (original, patients) = app.bulk_undo_preview(&me.who, job).await.in_page(&me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = UndoPage {
        chrome: Some((&me).into()),
        csrf: me.csrf_token.clone(),
        job: original.id.to_string(),
        cohort: original.cohort,
        applied: format!("{} by {}", short_date(original.applied_at), original.applied_by),
        count: patients.len(),
        errors,
    };
    Ok((status, page).into_response())
}

// ---- The ICB view ------------------------------------------------------------------------

struct IcbRow {
    ods: String,
    name: String,
    registered: i64,
    active: i64,
    percent: String,
    bar: i64,
    flagged: bool,
    plan: bool,
    paused: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "icb.html")]
struct IcbPage {
    chrome: Option<Chrome>,
    on: String,
    rows: Vec<IcbRow>,
    flagged: usize,
    total_registered: i64,
    total_active: i64,
    total_percent: String,
}

async fn icb_page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let (on, list) = app.icb_figures(&me.who).await.in_page(&me)?;
    let total = caldicott_core::governance::ExclusionFigures {
        registered_16_plus: list.iter().map(|r| r.figures.registered_16_plus).sum(),
        active_104: list.iter().map(|r| r.figures.active_104).sum(),
    };
    let mut rows: Vec<IcbRow> = list
        .into_iter()
        .map(|r| IcbRow {
            ods: r.ods_code,
            name: r.name,
            registered: r.figures.registered_16_plus,
            active: r.figures.active_104,
            percent: r.figures.percent_text(),
            bar: (r.figures.per_mille() / 10).clamp(0, 100),
            flagged: r.figures.needs_action_plan(),
            plan: r.has_action_plan,
            paused: r.paused,
        })
        .collect();
    rows.sort_by(|a, b| b.flagged.cmp(&a.flagged).then(b.bar.cmp(&a.bar)).then(a.ods.cmp(&b.ods)));
    Ok(IcbPage {
        chrome: Some((&me).into()),
        on: long_date(on),
        flagged: rows.iter().filter(|r| r.flagged).count(),
        rows,
        total_registered: total.registered_16_plus,
        total_active: total.active_104,
        total_percent: total.percent_text(),
    }
    .into_response())
}

async fn icb_file(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let (on, rows) = app.icb_figures(&me.who).await.in_page(&me)?;
    Ok(csv_response(&format!("icb-exclusions-{on}.csv"), icb_csv(&rows)))
}

// ---- Proxy reviews due -------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "proxy_reviews.html")]
struct ProxyReviewsPage {
    chrome: Option<Chrome>,
    rows: Vec<caldicott_app::governance::ProxyReviewRow>,
    horizon: i64,
}

async fn proxy_reviews(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let rows = app.proxy_reviews_due(&me.who).await.in_page(&me)?;
    Ok(ProxyReviewsPage {
        chrome: Some((&me).into()),
        rows,
        horizon: caldicott_app::governance::PROXY_REVIEW_HORIZON_DAYS,
    }
    .into_response())
}
