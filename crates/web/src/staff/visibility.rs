//! Hiding an entry from online viewers, with the reason and a note, and showing it again
//! (clinicians only; the use case decides).

use crate::kernel::{
    csrf_forms, entry_row, long_date, to_patient, Chrome, EntryRow, Errors, FieldError, InPage, PageError, Portal,
    PortalForm, REASONS,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::entry::EntryBody;
use serde::Deserialize;

pub(super) fn routes() -> Router<App> {
    Router::new().route("/patients/{nhs_number}/entries/{entry}/online", get(visibility_page).post(change_visibility))
}

csrf_forms!(VisibilityForm);

#[derive(Template, WebTemplate)]
#[template(path = "visibility.html")]
struct VisibilityPage {
    chrome: Option<Chrome>,
    heading: &'static str,
    hiding: bool,
    back: String,
    action: String,
    csrf: String,
    patient: String,
    entry: EntryRow,
    current: String,
    reasons: Vec<(&'static str, &'static str)>,
    chosen: String,
    note: String,
    issue_count: usize,
    split: Option<String>,
    errors: Vec<FieldError>,
}

impl Errors for VisibilityPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn visibility_form(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    entry: &str,
    chosen: String,
    note: String,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return Err(PageError::new(me, AppError::NotFound("no such entry in this patient's record".into())));
    };
    let target = app.view_entry_to_change(&me.who, nhs, id, "visibility").await.in_page(me)?;
    let hiding = !target.entry.visibility.is_hidden();
    let current = match &target.entry.visibility {
        caldicott_core::entry::OnlineVisibility::Visible => "Not hidden".to_owned(),
        caldicott_core::entry::OnlineVisibility::Hidden(r) => {
            format!(
                "Hidden: {} (by {}, {}). {}",
                r.reason().display(),
                r.by(),
                long_date(caldicott_core::uk::uk_date(r.at())),
                r.note()
            )
        }
    };
    let base = format!("/patients/{}", target.patient.nhs_number.as_str());
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = VisibilityPage {
        chrome: Some(me.into()),
        heading: if hiding { "Hide this entry online" } else { "Show this entry online" },
        hiding,
        action: format!("{base}/entries/{}/online", target.entry.id),
        back: base,
        csrf: me.csrf_token.clone(),
        patient: format!("{} ({})", target.patient.name.banner(), target.patient.nhs_number),
        entry: entry_row(&target.entry, None),
        current,
        reasons: REASONS.iter().map(|r| (r.as_str(), r.display())).collect(),
        chosen,
        note,
        issue_count: target.issues.len(),
        split: matches!(target.entry.body, EntryBody::Consultation { .. })
            .then(|| format!("/patients/{}/entries/{}/split", target.patient.nhs_number.as_str(), target.entry.id)),
        errors,
    };
    Ok((status, page).into_response())
}

async fn visibility_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path((nhs, entry)): Path<(String, String)>,
) -> Result<Response, PageError> {
    visibility_form(&app, &me, &nhs, &entry, String::new(), String::new(), Vec::new()).await
}

#[derive(Deserialize)]
struct VisibilityForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    change: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    with_issues: Option<String>,
}

async fn change_visibility(
    State(app): State<App>,
    Path((nhs, entry)): Path<(String, String)>,
    PortalForm(me, f): PortalForm<VisibilityForm>,
) -> Result<Response, PageError> {
    use caldicott_app::redaction::VisibilityChange;
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such entry in this patient's record".into())));
    };
    let mut errors = Vec::new();
    let change = if f.change == "show" {
        VisibilityChange::Show { note: f.note.clone() }
    } else {
        match caldicott_core::entry::HiddenReason::parse(&f.reason).filter(|r| REASONS.contains(r)) {
            Some(reason) => VisibilityChange::Hide { reason, note: f.note.clone() },
            None => {
                errors.push(FieldError { field: "reason", message: "Choose why the entry is to be hidden".into() });
                VisibilityChange::Hide { reason: caldicott_core::entry::HiddenReason::Other, note: f.note.clone() }
            }
        }
    };
    if f.note.trim().is_empty() {
        errors.push(FieldError { field: "note", message: "Enter a note explaining the decision".into() });
    }
    if !errors.is_empty() {
        return visibility_form(&app, &me, &nhs, &entry, f.reason, f.note, errors).await;
    }
    match app.change_visibility(&me.who, &nhs, id, &change, f.with_issues.is_some()).await {
        Ok(_) => Ok(to_patient(&me, &nhs, "")),
        Err(AppError::BadRequest(m)) => {
            visibility_form(&app, &me, &nhs, &entry, f.reason, f.note, vec![FieldError { field: "note", message: m }])
                .await
        }
        Err(e) => Err(PageError::new(&me, e)),
    }
}
