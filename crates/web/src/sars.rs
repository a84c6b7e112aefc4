//! The subject access request register: the list with due dates, logging a request, and one
//! request with its changes (identity, clarification, extension, fee, closing).

use crate::kernel::{
    csrf_forms, field_errors, long_date, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::sar::{is_open, NewSar, SarChange, SarRow};
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use serde::Deserialize;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/sars", get(register).post(log))
        .route("/sars/new", get(new_page))
        .route("/sars/{sar}", get(sar_page).post(change))
}

csrf_forms!(LogForm, ChangeForm);

fn state(r: &SarRow) -> String {
    if !is_open(&r.sar) {
        return format!(
            "{} on {}",
            match r.sar.status.as_str() {
                "released" => "Released",
                "refused" => "Refused",
                _ => "Withdrawn",
            },
            r.sar.closed_on.map_or(String::new(), long_date)
        );
    }
    match (r.sar.waiting_for.as_deref(), r.days_left) {
        (Some(w), _) => format!("Clock stopped: waiting for {w}"),
        (None, Some(d)) if d < 0 => format!("Overdue by {} days", -d),
        (None, Some(0)) => "Due today".into(),
        (None, Some(d)) => format!("Due in {d} days"),
        _ => String::new(),
    }
}

struct RegisterRow {
    id: String,
    patient: String,
    nhs: String,
    requester: String,
    received: String,
    due: String,
    state: String,
    urgent: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "sars.html")]
struct RegisterPage {
    chrome: Option<Chrome>,
    rows: Vec<RegisterRow>,
    overdue: usize,
    due_soon: usize,
}

async fn register(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let rows = app.sar_register(&me.who).await.in_page(&me)?;
    Ok(RegisterPage {
        chrome: Some((&me).into()),
        overdue: rows.iter().filter(|r| is_open(&r.sar) && r.days_left.is_some_and(|d| d < 0)).count(),
        due_soon: rows.iter().filter(|r| is_open(&r.sar) && r.days_left.is_some_and(|d| (0..=7).contains(&d))).count(),
        rows: rows
            .iter()
            .map(|r| RegisterRow {
                id: r.sar.id.to_string(),
                patient: r.patient_name.clone(),
                nhs: r.nhs_number.clone(),
                requester: format!("{} ({})", r.sar.requester, r.sar.relationship),
                received: long_date(r.sar.received),
                due: r.due.map_or("—".into(), long_date),
                state: state(r),
                urgent: is_open(&r.sar) && r.days_left.is_some_and(|d| d <= 7),
            })
            .collect(),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "sar_new.html")]
struct NewPage {
    chrome: Option<Chrome>,
    csrf: String,
    nhs_number: String,
    requester: String,
    relationship: String,
    day: String,
    month: String,
    year: String,
    waiting_for: String,
    notes: String,
    errors: Vec<FieldError>,
}

impl Errors for NewPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn new_form(me: &SignedIn, i: &NewSar, errors: Vec<FieldError>) -> Response {
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    (
        status,
        NewPage {
            chrome: Some(me.into()),
            csrf: me.csrf_token.clone(),
            nhs_number: i.nhs_number.clone(),
            requester: i.requester.clone(),
            relationship: i.relationship.clone(),
            day: i.day.clone(),
            month: i.month.clone(),
            year: i.year.clone(),
            waiting_for: i.waiting_for.clone(),
            notes: i.notes.clone(),
            errors,
        },
    )
        .into_response()
}

async fn new_page(Portal(me): Portal) -> Result<Response, PageError> {
    if !me.who.role.works_with_patients() {
        return Err(PageError::new(
            &me,
            AppError::Forbidden("only the practice team handles subject access requests".into()),
        ));
    }
    Ok(new_form(&me, &NewSar::default(), Vec::new()))
}

#[derive(Deserialize)]
struct LogForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    nhs_number: String,
    #[serde(default)]
    requester: String,
    #[serde(default)]
    relationship: String,
    #[serde(default)]
    received_day: String,
    #[serde(default)]
    received_month: String,
    #[serde(default)]
    received_year: String,
    #[serde(default)]
    waiting_for: String,
    #[serde(default)]
    notes: String,
}

async fn log(State(app): State<App>, PortalForm(me, f): PortalForm<LogForm>) -> Result<Response, PageError> {
    let input = NewSar {
        nhs_number: f.nhs_number,
        requester: f.requester,
        relationship: f.relationship,
        day: f.received_day,
        month: f.received_month,
        year: f.received_year,
        waiting_for: f.waiting_for,
        notes: f.notes,
    };
    Ok(match app.log_sar(&me.who, &input).await.in_page(&me)? {
        Ok(sar) => Redirect::to(&format!("/sars/{}", sar.id)).into_response(),
        Err(problems) => new_form(&me, &input, field_errors(problems)),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "sar.html")]
struct SarPage {
    chrome: Option<Chrome>,
    csrf: String,
    id: String,
    patient: String,
    nhs: String,
    requester: String,
    received: String,
    due: String,
    state: String,
    open: bool,
    waiting_for: String,
    identity_verified: String,
    clarified: String,
    extension: String,
    unfounded: String,
    notes: String,
    close_note: String,
    created: String,
    period: String,
    authority: String,
    status: String,
    errors: Vec<FieldError>,
}

impl Errors for SarPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn sar_view(app: &App, me: &SignedIn, id: &str, errors: Vec<FieldError>) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return Err(PageError::new(me, AppError::NotFound("no such request".into())));
    };
    let r = app.sar_view(&me.who, id).await.in_page(me)?;
    let s = &r.sar;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = SarPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        id: s.id.to_string(),
        patient: r.patient_name.clone(),
        nhs: r.nhs_number.clone(),
        requester: format!("{} ({})", s.requester, s.relationship),
        received: long_date(s.received),
        due: r.due.map_or("Not running".into(), long_date),
        state: state(&r),
        open: is_open(s),
        waiting_for: s.waiting_for.clone().unwrap_or_default(),
        identity_verified: s.identity_verified.map_or(String::new(), long_date),
        clarified: s.clarified.map_or(String::new(), long_date),
        extension: match (&s.extension_reason, s.extension_notified_on) {
            (Some(reason), Some(on)) => format!("{reason} (requester told on {})", long_date(on)),
            _ => String::new(),
        },
        unfounded: if s.manifestly_unfounded {
            format!("Yes{}", s.fee_received.map_or(String::new(), |d| format!("; fee received {}", long_date(d))))
        } else {
            "No: no fee may be charged".into()
        },
        notes: s.notes.clone(),
        close_note: s.close_note.clone().unwrap_or_default(),
        created: format!(
            "{} by {}",
            caldicott_core::appointments::uk_time(s.created_at).format("%-d %b %Y"),
            s.created_by
        ),
        period: crate::kernel::period_words(s.period_from, s.period_to),
        authority: s.authority.clone().unwrap_or_default(),
        status: s.status.clone(),
        errors,
    };
    Ok((status, page).into_response())
}

async fn sar_page(State(app): State<App>, Portal(me): Portal, Path(id): Path<String>) -> Result<Response, PageError> {
    sar_view(&app, &me, &id, Vec::new()).await
}

#[derive(Deserialize)]
struct ChangeForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    sar_action: String,
    /// The date boxes (NHS.UK date input) of the date that arrived, or the fee's.
    #[serde(default)]
    date_day: String,
    #[serde(default)]
    date_month: String,
    #[serde(default)]
    date_year: String,
    #[serde(default)]
    waiting_for: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    notified_on_day: String,
    #[serde(default)]
    notified_on_month: String,
    #[serde(default)]
    notified_on_year: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    status: String,
}

async fn change(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<ChangeForm>,
) -> Result<Response, PageError> {
    let Ok(uuid) = id.parse::<uuid::Uuid>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such request".into())));
    };
    let date = |field: &'static str, label: &str, [day, month, year]: [&str; 3]| {
        crate::kernel::date_boxes(label, day, month, year).map_err(|message| vec![FieldError { field, message }])
    };
    let arrived = [f.date_day.as_str(), f.date_month.as_str(), f.date_year.as_str()];
    let told = [f.notified_on_day.as_str(), f.notified_on_month.as_str(), f.notified_on_year.as_str()];
    let change = match f.sar_action.as_str() {
        "identity" | "clarified" => match date("date", "The date", arrived) {
            Ok(Some(d)) if f.sar_action == "identity" => SarChange::IdentityVerified(d),
            Ok(Some(d)) => SarChange::Clarified(d),
            Ok(None) => {
                return sar_view(&app, &me, &id, vec![FieldError { field: "date", message: "Enter the date".into() }])
                    .await
            }
            Err(e) => return sar_view(&app, &me, &id, e).await,
        },
        "wait" => SarChange::WaitFor(f.waiting_for.clone()),
        "extend" => match date("notified_on", "The date the requester was told", told) {
            Ok(notified_on) => SarChange::Extend { reason: f.reason.clone(), notified_on },
            Err(e) => return sar_view(&app, &me, &id, e).await,
        },
        "unfounded" => match date("date", "The date the fee was received", arrived) {
            Ok(fee_received) => SarChange::Unfounded { fee_received, note: f.note.clone() },
            Err(e) => return sar_view(&app, &me, &id, e).await,
        },
        "close" => SarChange::Close { status: f.status.clone(), note: f.note.clone() },
        _ => return Err(PageError::new(&me, AppError::BadRequest("choose what to change".into()))),
    };
    match app.change_sar(&me.who, uuid, &change).await.in_page(&me)? {
        Ok(_) => Ok(Redirect::to(&format!("/sars/{uuid}")).into_response()),
        Err(problems) => sar_view(&app, &me, &id, field_errors(problems)).await,
    }
}
