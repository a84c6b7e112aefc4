//! Splitting a consultation into parts (R9), so that each part can be hidden or shown on its own.

use crate::kernel::{csrf_forms, to_patient, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm};
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
    Router::new().route("/patients/{nhs_number}/entries/{entry}/split", get(split_page).post(split))
}

csrf_forms!(SplitForm);

#[derive(Template, WebTemplate)]
#[template(path = "split.html")]
struct SplitPage {
    chrome: Option<Chrome>,
    back: String,
    action: String,
    csrf: String,
    parts: String,
    errors: Vec<FieldError>,
}

impl Errors for SplitPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn split_form(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    entry: &str,
    parts: Option<String>,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return Err(PageError::new(me, AppError::NotFound("no such entry in this patient's record".into())));
    };
    let target = app.view_entry_to_change(&me.who, nhs, id, "split").await.in_page(me)?;
    let EntryBody::Consultation { text, .. } = &target.entry.body else {
        return Err(PageError::new(me, AppError::BadRequest("only consultations can be split".into())));
    };
    let base = format!("/patients/{}", target.patient.nhs_number.as_str());
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((
        status,
        SplitPage {
            chrome: Some(me.into()),
            action: format!("{base}/entries/{}/split", target.entry.id),
            back: base,
            csrf: me.csrf_token.clone(),
            parts: parts.unwrap_or_else(|| text.clone()),
            errors,
        },
    )
        .into_response())
}

async fn split_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path((nhs, entry)): Path<(String, String)>,
) -> Result<Response, PageError> {
    split_form(&app, &me, &nhs, &entry, None, Vec::new()).await
}

#[derive(Deserialize)]
struct SplitForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    parts: String,
}

async fn split(
    State(app): State<App>,
    Path((nhs, entry)): Path<(String, String)>,
    PortalForm(me, f): PortalForm<SplitForm>,
) -> Result<Response, PageError> {
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such entry in this patient's record".into())));
    };
    let mut parts = vec![String::new()];
    for line in f.parts.lines() {
        if line.trim() == "---" {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    match app.split_entry(&me.who, &nhs, id, &parts).await {
        Ok(_) => Ok(to_patient(&me, &nhs, "")),
        Err(AppError::BadRequest(m)) => {
            split_form(&app, &me, &nhs, &entry, Some(f.parts), vec![FieldError { field: "parts", message: m }]).await
        }
        Err(e) => Err(PageError::new(&me, e)),
    }
}
