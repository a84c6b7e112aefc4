//! Documents' files: staff add one to a record (it goes to the filing queue) and open any of
//! their practice's; a patient or proxy opens one shown to them online, from their record page.
//! Files are sent as downloads (`Content-Disposition: attachment`, never sniffed), so nothing
//! uploaded runs in the portal's own pages.

use crate::kernel::{
    field_errors, same, to_patient, Chrome, Errors, FieldError, InMyPage, InPage, MyPageError, PageError, Patient,
    Portal,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use caldicott_app::documents::{DocumentContent, NewDocument, MAX_FILE_BYTES};
use caldicott_app::{App, AppError};
use caldicott_core::ids::{EntryId, ProxyLinkId};
use serde::Deserialize;
use std::collections::HashMap;

/// A file and the form around it, with room for the multipart framing.
const UPLOAD_LIMIT: usize = MAX_FILE_BYTES + 64 * 1024;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/patients/{nhs_number}/documents/new", get(new_page))
        .route(
            "/patients/{nhs_number}/documents",
            axum::routing::post(add).layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route("/documents/{document}", get(open))
        .route("/my/documents/{document}", get(my_open))
}

#[derive(Template, WebTemplate)]
#[template(path = "document_new.html")]
struct NewPage {
    chrome: Option<Chrome>,
    csrf: String,
    patient: String,
    nhs_digits: String,
    title: String,
    summary: String,
    day: String,
    month: String,
    year: String,
    max_mb: usize,
    errors: Vec<FieldError>,
}

impl Errors for NewPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn form_page(
    app: &App,
    me: &caldicott_app::session::SignedIn,
    nhs: &str,
    d: &NewDocument,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let p = app.view_document_form(&me.who, nhs).await.in_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = NewPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        patient: format!("{} {}", p.name.given, p.name.family),
        nhs_digits: p.nhs_number.as_str().to_owned(),
        title: d.title.clone(),
        summary: d.summary.clone(),
        day: d.day.clone(),
        month: d.month.clone(),
        year: d.year.clone(),
        max_mb: MAX_FILE_BYTES / 1024 / 1024,
        errors,
    };
    Ok((status, page).into_response())
}

async fn new_page(State(app): State<App>, Portal(me): Portal, Path(nhs): Path<String>) -> Result<Response, PageError> {
    form_page(&app, &me, &nhs, &NewDocument::default(), Vec::new()).await
}

/// The url-encoded form (for scripts, and a document that is text): `text` is its content.
#[derive(Deserialize, Default)]
struct TextForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    doc_day: String,
    #[serde(default)]
    doc_month: String,
    #[serde(default)]
    doc_year: String,
    #[serde(default)]
    text: String,
}

/// The CSRF token and the document: `multipart/form-data` from the page, or a url-encoded form
/// whose `text` is the document.
async fn read_form(app: &App, req: axum::extract::Request) -> Result<(String, NewDocument), String> {
    use axum::extract::FromRequest;
    if !crate::body::is_multipart(&req) {
        let Form(f) = Form::<TextForm>::from_request(req, app).await.map_err(|e| e.body_text())?;
        let d = NewDocument {
            title: f.title,
            summary: f.summary,
            day: f.doc_day,
            month: f.doc_month,
            year: f.doc_year,
            filename: "document.txt".into(),
            content: f.text.into_bytes(),
        };
        return Ok((f._csrf, d));
    }
    let too_big = || format!("The file is larger than {} MB", MAX_FILE_BYTES / 1024 / 1024);
    let mut form = axum::extract::Multipart::from_request(req, app).await.map_err(|e| e.body_text())?;
    let (mut csrf, mut d) = (String::new(), NewDocument::default());
    while let Some(field) = form.next_field().await.map_err(|_| too_big())? {
        match field.name().unwrap_or_default() {
            "_csrf" => csrf = field.text().await.map_err(|_| too_big())?,
            "title" => d.title = field.text().await.map_err(|_| too_big())?,
            "summary" => d.summary = field.text().await.map_err(|_| too_big())?,
            "doc_day" => d.day = field.text().await.map_err(|_| too_big())?,
            "doc_month" => d.month = field.text().await.map_err(|_| too_big())?,
            "doc_year" => d.year = field.text().await.map_err(|_| too_big())?,
            "file" => {
                d.filename = field.file_name().unwrap_or_default().to_owned();
                d.content = field.bytes().await.map_err(|_| too_big())?.to_vec();
            }
            _ => {}
        }
    }
    Ok((csrf, d))
}

async fn add(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, PageError> {
    // The role first: a form from someone who may not add documents is refused, whatever it holds.
    app.document_form(&me.who, &nhs).await.in_page(&me)?;
    let (csrf, d) = match read_form(&app, req).await {
        Ok(v) => v,
        Err(m) => {
            return form_page(&app, &me, &nhs, &NewDocument::default(), vec![FieldError { field: "file", message: m }])
                .await
        }
    };
    if !same(&me.csrf_token, &csrf) {
        return Err(PageError::form_expired());
    }
    let kept = NewDocument { content: Vec::new(), ..d.clone() };
    match app.add_document(&me.who, &nhs, d).await.in_page(&me)? {
        Ok(_) => Ok(to_patient(&me, &nhs, "?document_added")),
        Err(problems) => {
            let errors = field_errors(problems);
            form_page(&app, &me, &nhs, &kept, errors).await
        }
    }
}

/// A document as a download.
fn download(c: DocumentContent) -> Response {
    let safe: String = c
        .filename
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() || " .-_()".contains(ch) { ch } else { '_' })
        .collect();
    let mut r = c.bytes.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&c.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // The file is the practice's record: it is never framed or run, whatever it holds.
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    r
}

fn document_id(s: &str) -> Result<EntryId, AppError> {
    s.parse::<EntryId>().map_err(|_| AppError::NotFound("there is no such document".into()))
}

async fn open(State(app): State<App>, Portal(me): Portal, Path(id): Path<String>) -> Result<Response, PageError> {
    let id = document_id(&id).in_page(&me)?;
    let content = app.staff_document(&me.who, id).await.in_page(&me)?;
    Ok(download(content))
}

async fn my_open(
    State(app): State<App>,
    Patient(me): Patient,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = match q.get("for").filter(|s| !s.is_empty()).map(|s| s.parse::<ProxyLinkId>()) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(_)) => return Err(MyPageError::new(&me, AppError::NotFound("there is no such document".into()))),
    };
    let id = document_id(&id).in_my_page(&me)?;
    let content = app.my_document(&me.who, link, id).await.in_my_page(&me)?;
    Ok(download(content))
}
