//! The signed-in extractors: a handler that takes [`Portal`] cannot run without a member of
//! staff's session, one that takes [`Patient`] without a patient's (or proxy's). Without one,
//! the page redirects to its sign-in.

use super::cookies::{cookie, PATIENT_COOKIE, SESSION_COOKIE};
use super::errors::{my_error, page_error};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use caldicott_app::patient_services::PatientSignedIn;
use caldicott_app::session::SignedIn;
use caldicott_app::App;

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
