//! Transfer-in: a record from the previous practice, uploaded as a FHIR Bundle (R7, D3, D4).

use crate::body::TRANSFER_UPLOAD_LIMIT;
use crate::kernel::{same, Chrome, Errors, FieldError, InPage, PageError, Portal};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use caldicott_app::session::SignedIn;
use caldicott_app::App;
use caldicott_core::permissions::Permission;
use serde::Deserialize;

pub(super) fn routes() -> Router<App> {
    Router::new().route(
        "/patients/transfer-in",
        get(transfer_page).post(transfer_in).layer(axum::extract::DefaultBodyLimit::max(TRANSFER_UPLOAD_LIMIT)),
    )
}

#[derive(Template, WebTemplate)]
#[template(path = "transfer.html")]
struct TransferPage {
    chrome: Option<Chrome>,
    csrf: String,
    clinician: bool,
    done: Option<caldicott_app::transfer::TransferOutcome>,
    errors: Vec<FieldError>,
}

impl Errors for TransferPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn transfer_form(me: &SignedIn, problems: Vec<String>) -> Response {
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let errors = problems.into_iter().map(|message| FieldError { field: "bundle", message }).collect();
    let page = TransferPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        clinician: me.who.role == caldicott_core::staff::Role::Clinician,
        done: None,
        errors,
    };
    (status, page).into_response()
}

async fn transfer_page(Portal(me): Portal) -> Result<Response, PageError> {
    caldicott_app::permit(&me.who, Permission::TransferRecordsIn).in_page(&me)?;
    Ok(transfer_form(&me, Vec::new()))
}

#[derive(Deserialize)]
struct TransferForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    bundle: String,
}

/// The CSRF token and the file of an upload: `multipart/form-data` from the page, or a
/// url-encoded form with the Bundle as text (for scripts).
async fn read_upload(app: &App, req: axum::extract::Request) -> Result<(String, Vec<u8>), String> {
    use axum::extract::FromRequest;
    if !crate::body::is_multipart(&req) {
        let Form(f) = Form::<TransferForm>::from_request(req, app).await.map_err(|e| e.body_text())?;
        return Ok((f._csrf, f.bundle.into_bytes()));
    }
    let too_big = || format!("The file is larger than {} MB", caldicott_app::transfer::MAX_BUNDLE_BYTES / 1024 / 1024);
    let mut form = axum::extract::Multipart::from_request(req, app).await.map_err(|e| e.body_text())?;
    let (mut csrf, mut bundle) = (String::new(), Vec::new());
    while let Some(field) = form.next_field().await.map_err(|_| too_big())? {
        match field.name() {
            Some("_csrf") => csrf = field.text().await.map_err(|_| too_big())?,
            Some("bundle") => bundle = field.bytes().await.map_err(|_| too_big())?.to_vec(),
            _ => {}
        }
    }
    Ok((csrf, bundle))
}

async fn transfer_in(
    State(app): State<App>,
    Portal(me): Portal,
    req: axum::extract::Request,
) -> Result<Response, PageError> {
    caldicott_app::permit(&me.who, Permission::TransferRecordsIn).in_page(&me)?;
    let (csrf, bundle) = match read_upload(&app, req).await {
        Ok(v) => v,
        Err(m) => return Ok(transfer_form(&me, vec![m])),
    };
    if !same(&me.csrf_token, &csrf) {
        return Err(PageError::form_expired());
    }
    Ok(match app.transfer_in(&me.who, &bundle).await.in_page(&me)? {
        Ok(done) => TransferPage {
            chrome: Some((&me).into()),
            csrf: me.csrf_token.clone(),
            clinician: me.who.role == caldicott_core::staff::Role::Clinician,
            done: Some(done),
            errors: Vec::new(),
        }
        .into_response(),
        Err(problems) => transfer_form(&me, problems),
    })
}
