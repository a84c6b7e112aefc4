//! The signed-in extractors: a handler that takes [`Portal`] cannot run without a member of
//! staff's session, one that takes [`Patient`] without a patient's (or proxy's). Without one,
//! the page redirects to its sign-in.

use super::cookies::{checked, cookie, CsrfToken, PATIENT_COOKIE, SESSION_COOKIE};
use super::errors::{my_error, page_error, PageError};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use caldicott_app::patient_services::PatientSignedIn;
use caldicott_app::session::SignedIn;
use caldicott_app::App;
use serde::de::DeserializeOwned;

/// A signed-in member of staff. Pages that take one redirect to sign-in without a session.
pub struct Portal(pub SignedIn);

impl FromRequestParts<App> for Portal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/sign-in").into_response());
        };
        app.signed_in(&value).await.map(Portal).map_err(|e| page_error(None, e))
    }
}

/// A signed-in member of staff, for what an open page asks by itself (the unread count): unlike
/// [`Portal`], the request is not activity, so an unattended screen still signs out when idle.
/// Without a live session, 401 (the page's script is asking, not a person).
pub struct QuietPortal(pub SignedIn);

impl FromRequestParts<App> for QuietPortal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let unauthorized = || axum::http::StatusCode::UNAUTHORIZED.into_response();
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(unauthorized()) };
        app.signed_in_quietly(&value).await.map(QuietPortal).map_err(|_| unauthorized())
    }
}

/// A signed-in member of staff and the form they sent, which parsed and carries their session's
/// CSRF token. Without a session the page redirects to sign-in (as [`Portal`]); a form that does
/// not parse or lacks the token answers "This form has expired" and nothing is done.
pub struct PortalForm<T>(pub SignedIn, pub T);

impl<T: DeserializeOwned + CsrfToken + Send> FromRequest<App> for PortalForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Portal(me) = Portal::from_request_parts(&mut parts, app).await?;
        let form = Form::<T>::from_request(Request::from_parts(parts, body), app).await;
        match checked(&me, form) {
            Some(f) => Ok(PortalForm(me, f)),
            None => Err(PageError::form_expired().into_response()),
        }
    }
}

/// A signed-in patient (or proxy). Pages that take one redirect to sign-in without a session.
pub struct Patient(pub PatientSignedIn);

impl FromRequestParts<App> for Patient {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(value) = cookie(&parts.headers, PATIENT_COOKIE) else {
            return Err(Redirect::to("/my/sign-in").into_response());
        };
        app.patient_signed_in(&value).await.map(Patient).map_err(|e| my_error(None, e))
    }
}
