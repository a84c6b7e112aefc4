//! The letters staff print for a patient: the sign-up letter with its linkage credentials, and
//! the letter with a one-time code to set a new password.

use crate::kernel::{csrf_forms, Chrome, InPage, PageError, PortalForm};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use caldicott_app::App;
use serde::Deserialize;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/patients/{nhs_number}/linkage", post(issue_linkage))
        .route("/patients/{nhs_number}/password-letter", post(issue_password_letter))
}

csrf_forms!(LinkageForm);

#[derive(Template, WebTemplate)]
#[template(path = "linkage_letter.html")]
struct LetterPage {
    chrome: Option<Chrome>,
    nhs_digits: String,
    l: caldicott_app::patient_services::LinkageLetter,
}

#[derive(Deserialize)]
struct LinkageForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    identity: String,
}

async fn issue_linkage(
    State(app): State<App>,
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<LinkageForm>,
) -> Result<Response, PageError> {
    let l = app.issue_linkage(&me.who, &nhs, &f.identity).await.in_page(&me)?;
    Ok(LetterPage { chrome: Some((&me).into()), nhs_digits: l.nhs_number.replace(' ', ""), l }.into_response())
}

async fn issue_password_letter(
    State(app): State<App>,
    Path(nhs): Path<String>,
    PortalForm(me, _): PortalForm<LinkageForm>,
) -> Result<Response, PageError> {
    let l = app.issue_password_letter(&me.who, &nhs).await.in_page(&me)?;
    Ok(LetterPage { chrome: Some((&me).into()), nhs_digits: l.nhs_number.replace(' ', ""), l }.into_response())
}
