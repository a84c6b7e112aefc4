//! The filing queue: results and documents waiting for a clinician to decide whether the patient
//! sees them online. Filing one visible for the first time shows the redaction assistant's
//! findings first (never blocking).

use crate::kernel::{
    csrf_forms, entry_row, entry_text, kind_label, long_date, CheckView, Chrome, EntryRow, Errors, FieldError, InPage,
    PageError, Portal, PortalForm, REASONS,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::entry::EntryBody;
use serde::Deserialize;

pub(super) fn routes() -> Router<App> {
    Router::new().route("/filing", get(filing_queue)).route("/filing/{entry}", get(file_page).post(file_item))
}

csrf_forms!(FileForm);

pub struct QueueRow {
    pub id: String,
    pub date: String,
    pub patient: String,
    pub nhs_number: String,
    pub kind: &'static str,
    pub text: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "filing.html")]
struct FilingPage {
    chrome: Option<Chrome>,
    items: Vec<QueueRow>,
}

async fn filing_queue(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let items = app.filing_queue(&me.who).await.in_page(&me)?;
    Ok(FilingPage {
        chrome: Some((&me).into()),
        items: items
            .into_iter()
            .map(|(e, p)| QueueRow {
                id: e.id.to_string(),
                date: long_date(caldicott_core::uk::uk_date(e.entered_at)),
                patient: p.name.banner(),
                nhs_number: p.nhs_number.to_string(),
                kind: kind_label(&e),
                text: entry_text(&e),
            })
            .collect(),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "file.html")]
struct FilePage {
    chrome: Option<Chrome>,
    id: String,
    csrf: String,
    patient: String,
    nhs_digits: String,
    item: EntryRow,
    reasons: Vec<(&'static str, &'static str)>,
    release: String,
    note: String,
    errors: Vec<FieldError>,
    check: Option<CheckView>,
}

impl Errors for FilePage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn file_form(
    app: &App,
    me: &SignedIn,
    entry: &str,
    release: String,
    note: String,
    errors: Vec<FieldError>,
    check: Option<CheckView>,
) -> Result<Response, PageError> {
    let chrome = || Some(Chrome::from(me));
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return Err(PageError::new(me, AppError::NotFound("nothing waiting to be filed with that id".into())));
    };
    let (item, patient) = app.view_item_to_file(&me.who, id).await.in_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut row = entry_row(&item, None);
    row.kind = match item.body {
        EntryBody::TestResult { .. } => "result",
        _ => "document",
    };
    Ok((
        status,
        FilePage {
            chrome: chrome(),
            id: item.id.to_string(),
            csrf: me.csrf_token.clone(),
            patient: format!("{} ({})", patient.name.banner(), patient.nhs_number),
            nhs_digits: patient.nhs_number.as_str().to_owned(),
            item: row,
            reasons: REASONS.iter().map(|r| (r.as_str(), r.display())).collect(),
            release,
            note,
            errors,
            check,
        },
    )
        .into_response())
}

async fn file_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path(entry): Path<String>,
) -> Result<Response, PageError> {
    file_form(&app, &me, &entry, String::new(), String::new(), Vec::new(), None).await
}

#[derive(Deserialize)]
struct FileForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    release: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    checked: String,
}

async fn file_item(
    State(app): State<App>,
    Path(entry): Path<String>,
    PortalForm(me, f): PortalForm<FileForm>,
) -> Result<Response, PageError> {
    use caldicott_app::redaction::VisibilityChange;
    let release = if f.release == "visible" {
        Some(VisibilityChange::Show { note: f.note.clone() })
    } else {
        caldicott_core::entry::HiddenReason::parse(&f.release)
            .filter(|r| REASONS.contains(r))
            .map(|reason| VisibilityChange::Hide { reason, note: f.note.clone() })
    };
    let mut errors = Vec::new();
    match &release {
        None => {
            errors.push(FieldError { field: "release", message: "Choose whether the patient can see it online".into() })
        }
        Some(VisibilityChange::Hide { note, .. }) if note.trim().is_empty() => {
            errors.push(FieldError { field: "note", message: "Enter a note explaining why it is hidden".into() })
        }
        _ => {}
    }
    let Some(release) = release.filter(|_| errors.is_empty()) else {
        return file_form(&app, &me, &entry, f.release, f.note, errors, None).await;
    };
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return Err(PageError::new(&me, AppError::NotFound("nothing waiting to be filed with that id".into())));
    };
    // Filed visible for the first time: the redaction assistant reads it first (never blocking).
    let shown = f.checked == "yes";
    if matches!(release, VisibilityChange::Show { .. }) && !shown {
        if let Some(check) = app.check_filing(&me.who, id).await.in_page(&me)? {
            return file_form(&app, &me, &entry, f.release, f.note, Vec::new(), Some(check.into())).await;
        }
    }
    match app.file(&me.who, id, &release, shown).await {
        Ok(()) => Ok(Redirect::to("/filing").into_response()),
        Err(AppError::BadRequest(m)) => {
            file_form(&app, &me, &entry, f.release, f.note, vec![FieldError { field: "note", message: m }], None).await
        }
        Err(e) => Err(PageError::new(&me, e)),
    }
}
