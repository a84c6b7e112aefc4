//! Error pages. An [`AppError`] becomes a page with a status, a title and a plain message (the
//! staff portal's `error.html`, the patient pages' `my_error.html`), or a redirect to sign-in when
//! the answer is to sign in; 5xx causes are logged, never shown. Staff page handlers return
//! `Result<Response, PageError>` and use `?`: an `AppError` before sign-in converts as it is, one
//! after sign-in with `.in_page(&me)` (the page keeps its header). Patient page handlers do the
//! same with `MyPageError` and `.in_my_page(&me)`.

use super::chrome::{Chrome, MyChrome};
use super::cookies::{cookie, PATIENT_COOKIE, SESSION_COOKIE};
use askama::Template;
use askama_web::WebTemplate;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use caldicott_app::patient_services::PatientSignedIn;
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Option<Chrome>,
    title: &'static str,
    message: String,
}

/// The staff error page for `e` (with the header when `chrome` is given), or a redirect to sign-in.
pub(crate) fn page_error(chrome: Option<Chrome>, e: AppError) -> Response {
    match error_parts(&e) {
        None => Redirect::to("/sign-in").into_response(),
        Some((status, title, message)) => (status, ErrorPage { chrome, title, message }).into_response(),
    }
}

/// What an address no route answers is told, as NHS.UK's "Page not found" page words it.
const NO_SUCH_PAGE: &str =
    "If you typed the web address, check it is correct. If you pasted the web address, check you copied the entire address.";

/// An address no route answers, as a page: on the patient pages (`patient_side`) their "Page not
/// found" page with the patient's header, elsewhere the staff portal's with the staff member's
/// header, when someone is signed in; each with a link to where that person starts.
pub(crate) async fn page_not_found(app: &App, headers: &HeaderMap, patient_side: bool) -> Response {
    let error = AppError::NotFound(NO_SUCH_PAGE.into());
    if patient_side {
        let me = match cookie(headers, PATIENT_COOKIE) {
            Some(v) => app.patient_signed_in(&v).await.ok(),
            None => None,
        };
        my_error(me.as_ref().map(Into::into), error)
    } else {
        let me = match cookie(headers, SESSION_COOKIE) {
            Some(v) => app.signed_in(&v).await.ok(),
            None => None,
        };
        page_error(me.as_ref().map(Into::into), error)
    }
}

/// The status, title and message of an error page; `None` when the answer is to sign in.
pub(crate) fn error_parts(e: &AppError) -> Option<(StatusCode, &'static str, String)> {
    Some(match e {
        AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "There is a problem", m.clone()),
        AppError::Unauthenticated(_) => return None,
        AppError::Forbidden(m) => (StatusCode::FORBIDDEN, "You cannot do that", m.clone()),
        AppError::NotFound(m) => (StatusCode::NOT_FOUND, "Page not found", m.clone()),
        AppError::Conflict(m) => (StatusCode::CONFLICT, "That has already happened", m.clone()),
        AppError::Unavailable(cause) => {
            tracing::error!(%cause, "service unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Sorry, the service is unavailable",
                "Nothing was changed. Try again in a few minutes.".into(),
            )
        }
        AppError::Internal(cause) => {
            tracing::error!(%cause, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sorry, something went wrong",
                "Nothing was changed. Try again, or tell your practice manager.".into(),
            )
        }
    })
}

/// What a staff page answers with when a use case refuses: [`page_error`]'s page, with the
/// signed-in header when there is one.
pub struct PageError {
    /// Boxed: the header is large, and an error should be small to return.
    chrome: Option<Box<Chrome>>,
    error: AppError,
}

impl PageError {
    /// The error page for `error`, with the header of the member of staff signed in.
    pub(crate) fn new(me: &SignedIn, error: AppError) -> Self {
        Self { chrome: Some(Box::new(me.into())), error }
    }

    /// A form that did not parse or does not carry this session's CSRF token.
    pub(crate) fn form_expired() -> Self {
        Self { chrome: None, error: form_expired_error() }
    }
}

/// What a form that did not parse or lacks its CSRF token is told, staff's and patients' alike.
fn form_expired_error() -> AppError {
    AppError::Forbidden("This form has expired. Go back, reload the page and try again.".into())
}

/// Before sign-in, or where the page has no header: the error as it is.
impl From<AppError> for PageError {
    fn from(error: AppError) -> Self {
        Self { chrome: None, error }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        page_error(self.chrome.map(|c| *c), self.error)
    }
}

/// A use case's answer on a signed-in page: `app.x(…).await.in_page(&me)?`.
pub(crate) trait InPage<T> {
    fn in_page(self, me: &SignedIn) -> Result<T, PageError>;
}

impl<T> InPage<T> for Result<T, AppError> {
    fn in_page(self, me: &SignedIn) -> Result<T, PageError> {
        self.map_err(|e| PageError::new(me, e))
    }
}

/// The answer to a form that did not parse or does not carry the CSRF token it should.
pub(crate) fn forbidden_form() -> Response {
    PageError::form_expired().into_response()
}

/// Back to a page of the patient's record after a change (`rest` follows `/patients/{nhs}`).
pub(crate) fn to_patient(me: &SignedIn, nhs: &str, rest: &str) -> Response {
    match caldicott_app::record::parse_nhs_number(nhs) {
        Ok(n) => Redirect::to(&format!("/patients/{}{rest}", n.as_str())).into_response(),
        Err(e) => page_error(Some(me.into()), e),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "my_error.html")]
struct MyErrorPage {
    me: Option<MyChrome>,
    title: &'static str,
    message: String,
}

/// The patient pages' error page for `e`, or a redirect to their sign-in.
pub(crate) fn my_error(me: Option<MyChrome>, e: AppError) -> Response {
    match error_parts(&e) {
        None => Redirect::to("/my/sign-in").into_response(),
        Some((status, title, message)) => (status, MyErrorPage { me, title, message }).into_response(),
    }
}

/// What a patient page answers with when a use case refuses: [`my_error`]'s page, with the
/// patient's header when there is one. A form that did not parse or does not carry its CSRF token
/// gets the same words as a staff form, on the patient pages' own page.
pub struct MyPageError {
    /// Boxed: the header should not make an error large to return.
    me: Option<Box<MyChrome>>,
    error: AppError,
}

impl MyPageError {
    /// The patient error page for `error`, with the header of the patient (or proxy) signed in.
    pub(crate) fn new(me: &PatientSignedIn, error: AppError) -> Self {
        Self { me: Some(Box::new(me.into())), error }
    }

    /// A form that did not parse or does not carry the CSRF token it should.
    pub(crate) fn form_expired() -> Self {
        Self { me: None, error: form_expired_error() }
    }
}

/// Before sign-in: the error as it is, without a header.
impl From<AppError> for MyPageError {
    fn from(error: AppError) -> Self {
        Self { me: None, error }
    }
}

impl IntoResponse for MyPageError {
    fn into_response(self) -> Response {
        my_error(self.me.map(|m| *m), self.error)
    }
}

/// A use case's answer on a signed-in patient page: `app.x(…).await.in_my_page(&me)?`.
pub(crate) trait InMyPage<T> {
    fn in_my_page(self, me: &PatientSignedIn) -> Result<T, MyPageError>;
}

impl<T> InMyPage<T> for Result<T, AppError> {
    fn in_my_page(self, me: &PatientSignedIn) -> Result<T, MyPageError> {
        self.map_err(|e| MyPageError::new(me, e))
    }
}
