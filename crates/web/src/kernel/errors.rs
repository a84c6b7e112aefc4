//! Error pages. An [`AppError`] becomes a page with a status, a title and a plain message (the
//! staff portal's `error.html`, the patient pages' `my_error.html`), or a redirect to sign-in when
//! the answer is to sign in; 5xx causes are logged, never shown.

use super::chrome::{Chrome, MyChrome};
use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use caldicott_app::session::SignedIn;
use caldicott_app::AppError;

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

/// The status, title and message of an error page; `None` when the answer is to sign in.
pub(crate) fn error_parts(e: &AppError) -> Option<(StatusCode, &'static str, String)> {
    Some(match e {
        AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "There is a problem", m.clone()),
        AppError::Unauthenticated(_) => return None,
        AppError::Forbidden(m) => (StatusCode::FORBIDDEN, "You cannot do that", m.clone()),
        AppError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.clone()),
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

/// The answer to a form that did not parse or does not carry the CSRF token it should.
pub(crate) fn forbidden_form() -> Response {
    page_error(None, AppError::Forbidden("This form has expired. Go back, reload the page and try again.".into()))
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
