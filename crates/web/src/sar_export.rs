//! Reviewing and releasing a subject access export: the scope and the requester's authority,
//! a decision on every flagged item, the release (password again, T38), progress while the
//! files are made, and each file handed over once.
//!
//! The progress and the files are kept in the database (`App::start_sar_export`), so that any
//! server behind a load balancer shows the one and hands over the other: each file once, to the
//! member of staff who released it, within 15 minutes.

use crate::kernel::{csrf_forms, field_errors, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caldicott_app::sar_export::{ground_display, DecisionInput, ItemSection, SarReview, ScopeInput, GROUNDS};
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use serde::Deserialize;
use uuid::Uuid;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/sars/{sar}/scope", post(scope))
        .route("/sars/{sar}/export", get(review_page))
        .route("/sars/{sar}/export/decide", post(decide))
        .route(
            "/sars/{sar}/export/release",
            post(release).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route("/sars/{sar}/export/jobs/{export}", get(job_page))
        .route("/sars/{sar}/export/jobs/{export}/{format}", post(download))
}

csrf_forms!(ScopeForm, ReleaseForm, DownloadForm);

const PAGE: usize = 200;

/// The request named in the address, or the "no such request" page.
fn sar_id(me: &SignedIn, id: &str) -> Result<Uuid, PageError> {
    id.parse::<Uuid>().map_err(|_| PageError::new(me, AppError::NotFound("no such request".into())))
}

struct Row {
    key: String,
    title: String,
    lines: Vec<String>,
    flags: Vec<String>,
    decision: String,
    withheld: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "sar_export.html")]
struct ReviewPage {
    chrome: Option<Chrome>,
    csrf: String,
    id: String,
    patient: String,
    nhs: String,
    requester: String,
    /// The scope's dates, as their boxes show them.
    period_from: [String; 3],
    period_to: [String; 3],
    authority: String,
    total: usize,
    by_section: Vec<(String, usize)>,
    flagged: Vec<Row>,
    undecided: usize,
    withheld: usize,
    blockers: Vec<String>,
    others: Vec<Row>,
    page: usize,
    pages: usize,
    releases: Vec<(String, String, String, String)>,
    grounds: Vec<(String, String)>,
    can_decide: bool,
    errors: Vec<FieldError>,
}

impl Errors for ReviewPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn row(review: &SarReview, i: &caldicott_app::sar_export::SarItem) -> Row {
    let d = review.decisions.get(&i.key);
    Row {
        key: i.key.clone(),
        title: i.title.clone(),
        lines: i.lines.iter().map(|l| l.chars().take(600).collect()).collect(),
        flags: i.flags.clone(),
        decision: match d {
            None if i.flagged() => "Needs a decision".into(),
            None => "Released".into(),
            Some(d) if d.decision == "withhold" => format!(
                "Withheld ({}): {}. {}, {}",
                ground_display(d.ground.as_deref().unwrap_or_default()),
                d.reason,
                d.decided_by,
                caldicott_core::appointments::uk_time(d.decided_at).format("%-d %b %Y %H:%M")
            ),
            Some(d) => format!(
                "Release{}. {}, {}",
                if d.reason.is_empty() { String::new() } else { format!(": {}", d.reason) },
                d.decided_by,
                caldicott_core::appointments::uk_time(d.decided_at).format("%-d %b %Y %H:%M")
            ),
        },
        withheld: review.is_withheld(&i.key),
    }
}

#[derive(Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    page: usize,
}

async fn review_view(
    app: &App,
    me: &SignedIn,
    id: &str,
    page: usize,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let uuid = sar_id(me, id)?;
    let review = app.sar_review(&me.who, uuid).await.in_page(me)?;
    let others: Vec<&caldicott_app::sar_export::SarItem> = review.items.iter().filter(|i| !i.flagged()).collect();
    let pages = others.len().div_ceil(PAGE).max(1);
    let page = page.min(pages - 1);
    let s = &review.sar;
    let p = &review.patient;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let view = ReviewPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        id: s.id.to_string(),
        patient: format!("{} {}", p.name.given, p.name.family),
        nhs: p.nhs_number.to_string(),
        requester: format!("{} ({})", s.requester, s.relationship),
        period_from: crate::kernel::date_box_values(s.period_from),
        period_to: crate::kernel::date_box_values(s.period_to),
        authority: s.authority.clone().unwrap_or_default(),
        total: review.items.len(),
        by_section: ItemSection::ALL
            .iter()
            .map(|sec| (sec.display().to_owned(), review.items.iter().filter(|i| i.section == *sec).count()))
            .filter(|(_, n)| *n > 0)
            .collect(),
        flagged: review.items.iter().filter(|i| i.flagged()).map(|i| row(&review, i)).collect(),
        undecided: review.undecided,
        withheld: review.withheld(),
        blockers: review.blockers.clone(),
        others: others.iter().skip(page * PAGE).take(PAGE).map(|i| row(&review, i)).collect(),
        page,
        pages,
        releases: review
            .releases
            .iter()
            .map(|r| {
                (
                    caldicott_core::appointments::uk_time(r.released_at).format("%-d %b %Y %H:%M").to_string(),
                    r.released_by.clone(),
                    format!(
                        "{} ({} bytes, {} released, {} withheld)",
                        r.format.to_uppercase(),
                        r.bytes,
                        r.items_released,
                        r.items_withheld
                    ),
                    r.sha256.clone(),
                )
            })
            .collect(),
        grounds: GROUNDS.iter().map(|(k, d)| ((*k).to_owned(), (*d).to_owned())).collect(),
        can_decide: matches!(
            me.who.role,
            caldicott_core::staff::Role::Clinician | caldicott_core::staff::Role::PracticeManager
        ),
        errors,
    };
    Ok((status, view).into_response())
}

async fn review_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    review_view(&app, &me, &id, q.page, Vec::new()).await
}

/// Decisions on the items ticked (`key` repeated).
async fn decide(
    State(app): State<App>,
    Portal(me): Portal,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(f)) = form else { return Err(PageError::form_expired()) };
    let field = |name: &str| f.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    if !caldicott_app::constant_time_eq(&me.csrf_token, &field("_csrf")) {
        return Err(PageError::form_expired());
    }
    let uuid = sar_id(&me, &id)?;
    let input = DecisionInput {
        keys: f.iter().filter(|(k, _)| k == "key").map(|(_, v)| v.clone()).collect(),
        decision: field("sar_decision"),
        ground: field("ground"),
        reason: field("reason"),
    };
    match app.decide_sar_items(&me.who, uuid, &input).await.in_page(&me)? {
        Ok(_) => Ok(Redirect::to(&format!("/sars/{uuid}/export")).into_response()),
        Err(problems) => {
            let errors = field_errors(problems);
            review_view(&app, &me, &id, 0, errors).await
        }
    }
}

#[derive(Deserialize)]
struct ScopeForm {
    #[serde(default)]
    _csrf: String,
    /// The first and last dates' boxes (NHS.UK date inputs; all empty for none).
    #[serde(default)]
    from_day: String,
    #[serde(default)]
    from_month: String,
    #[serde(default)]
    from_year: String,
    #[serde(default)]
    to_day: String,
    #[serde(default)]
    to_month: String,
    #[serde(default)]
    to_year: String,
    #[serde(default)]
    authority: String,
}

async fn scope(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<ScopeForm>,
) -> Result<Response, PageError> {
    let uuid = sar_id(&me, &id)?;
    let input = ScopeInput {
        from: (f.from_day, f.from_month, f.from_year),
        to: (f.to_day, f.to_month, f.to_year),
        authority: f.authority,
    };
    match app.set_sar_scope(&me.who, uuid, &input).await.in_page(&me)? {
        Ok(_) => Ok(Redirect::to(&format!("/sars/{uuid}/export")).into_response()),
        Err(problems) => {
            let errors = field_errors(problems);
            review_view(&app, &me, &id, 0, errors).await
        }
    }
}

#[derive(Deserialize)]
struct ReleaseForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    password: String,
}

/// Starts making the files, once the member of staff has given their password again.
async fn release(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<ReleaseForm>,
) -> Result<Response, PageError> {
    let uuid = sar_id(&me, &id)?;
    app.may_release_sar(&me.who).in_page(&me)?;
    // The gate is checked again inside the export; refuse here first, with the reasons on the page.
    let r = app.sar_review(&me.who, uuid).await.in_page(&me)?;
    if !r.blockers.is_empty() {
        let errors = r.blockers.into_iter().map(|b| FieldError { field: "release", message: b }).collect();
        // Whatever the page answers, it answers 409.
        let mut page = review_view(&app, &me, &id, 0, errors).await.into_response();
        *page.status_mut() = StatusCode::CONFLICT;
        return Ok(page);
    }
    if let Err(e) = app.confirm_password(&me.who, &f.password, &format!("sar/{uuid}"), &from).await {
        let message = match e {
            AppError::Unauthenticated(m) => m,
            other => return Err(PageError::new(&me, other)),
        };
        return review_view(&app, &me, &id, 0, vec![FieldError { field: "password", message }]).await;
    }
    let job = app.start_sar_export(&me.who, uuid).await.in_page(&me)?;
    Ok(Redirect::to(&format!("/sars/{uuid}/export/jobs/{job}")).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "sar_job.html")]
struct JobPage {
    chrome: Option<Chrome>,
    csrf: String,
    id: String,
    job: String,
    stage: String,
    done: usize,
    total: usize,
    running: bool,
    failed: String,
    pdf: String,
    fhir: String,
    pdf_taken: bool,
    fhir_taken: bool,
    released: usize,
    withheld: usize,
}

/// The export named in the address (any malformed id is "not found").
fn job_id(me: &SignedIn, job: &str) -> Result<Uuid, PageError> {
    job.parse::<Uuid>().map_err(|_| {
        PageError::new(
            me,
            AppError::NotFound(
                "This export has been collected or has expired. Make it again from the review page.".into(),
            ),
        )
    })
}

async fn job_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path((id, job)): Path<(String, String)>,
) -> Result<Response, PageError> {
    app.may_release_sar(&me.who).in_page(&me)?;
    let uuid = sar_id(&me, &id)?;
    let job_uuid = job_id(&me, &job)?;
    let v = app.sar_export_job(&me.who, uuid, job_uuid).await.in_page(&me)?;
    let j = &v.job;
    let facts = |f: &Option<caldicott_app::sar_export::ExportFileFacts>| {
        f.as_ref()
            .map(|f| format!("{} ({} KB)", f.sha256, u64::try_from(f.bytes).unwrap_or(0).div_ceil(1024)))
            .unwrap_or_default()
    };
    let page = JobPage {
        chrome: Some((&me).into()),
        csrf: me.csrf_token.clone(),
        id: uuid.to_string(),
        job: job_uuid.to_string(),
        stage: j.stage.clone(),
        done: usize::try_from(j.done).unwrap_or(0),
        total: usize::try_from(j.total).unwrap_or(0),
        running: v.running,
        failed: v.failure.clone().unwrap_or_default(),
        pdf: if v.failure.is_none() { facts(&j.pdf) } else { String::new() },
        fhir: if v.failure.is_none() { facts(&j.bundle) } else { String::new() },
        pdf_taken: j.pdf.as_ref().is_some_and(|f| f.taken),
        fhir_taken: j.bundle.as_ref().is_some_and(|f| f.taken),
        released: usize::try_from(j.released).unwrap_or(0),
        withheld: usize::try_from(j.withheld).unwrap_or(0),
    };
    Ok(page.into_response())
}

#[derive(Deserialize)]
struct DownloadForm {
    #[serde(default)]
    _csrf: String,
}

/// Hands over one file, once (POST: no link to share, nothing in the address).
async fn download(
    State(app): State<App>,
    Path((id, job, format)): Path<(String, String, String)>,
    PortalForm(me, _): PortalForm<DownloadForm>,
) -> Result<Response, PageError> {
    app.may_release_sar(&me.who).in_page(&me)?;
    let uuid = sar_id(&me, &id)?;
    let gone = || {
        Err(PageError::new(
            &me,
            AppError::NotFound("This file has been collected or has expired. Make the export again.".into()),
        ))
    };
    let job = job_id(&me, &job)?;
    let which = match format.as_str() {
        "pdf" => caldicott_app::sar_export::ExportFile::Pdf,
        "fhir" => caldicott_app::sar_export::ExportFile::Bundle,
        _ => return gone(),
    };
    let Some((bytes, name, mime)) = app.collect_sar_export_file(&me.who, uuid, job, which).await.in_page(&me)? else {
        return gone();
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
