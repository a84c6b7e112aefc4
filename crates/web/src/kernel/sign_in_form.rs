//! What the staff and patient forms used before sign-in share (sign-in, the second step, setting
//! a password with a code or a letter, sign-up): the check of the CSRF token they carry against
//! the sign-in cookie, whether they ask for the practice, and how they show a refusal.

use super::cookies::{cookie, same, sign_in_token, SIGN_IN_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use caldicott_app::{App, AppError};

/// The form's CSRF token, when the request carries the sign-in cookie and the form the token
/// that goes with it (the form is refused otherwise).
pub(crate) fn sign_in_csrf_ok(headers: &HeaderMap, sent: &str) -> Option<String> {
    let (csrf, _) = sign_in_token(headers);
    (cookie(headers, SIGN_IN_COOKIE).is_some() && same(&csrf, sent)).then_some(csrf)
}

/// Whether a form before sign-in asks for the practice's ODS code: unless this installation
/// serves exactly one practice (and when that cannot be read).
pub(crate) async fn several_practices(app: &App) -> bool {
    app.practices().await.map(|p| p.len() != 1).unwrap_or(true)
}

/// How a sign-in form shows a refused sign-in: its status and the field it marks. `None` for an
/// error the form does not show (the error page answers it).
pub(crate) fn refusal(e: &AppError) -> Option<(StatusCode, &'static str)> {
    Some(match e {
        AppError::BadRequest(m) if m.contains("ODS") => (StatusCode::BAD_REQUEST, "ods"),
        AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "username"),
        AppError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "username"),
        AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "username"),
        _ => return None,
    })
}
