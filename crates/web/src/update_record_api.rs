//! The endpoint pharmacies post GP Connect Update Record messages to, mounted under
//! `/api/update-record/v1`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use caldicott_app::{App, AppError};
use caldicott_core::update_record::{ItkCode, MAX_MESSAGE_BYTES};

/// The pharmacies' endpoint, under `/api/update-record/v1`.
pub fn routes() -> Router<App> {
    Router::new().route("/messages", post(receive).layer(axum::extract::DefaultBodyLimit::max(MAX_MESSAGE_BYTES)))
}

/// `POST /api/update-record/v1/messages`: a pharmacy's message (HTTP Basic with the client id
/// and secret the practice gave it). The answer carries the ITK3 response code: 202 and 20013
/// when accepted (or held because no patient matches), 200 and 20007 for a message received
/// before, 422 and 20009 when the message is refused as invalid, 403 and 20010 when the practice
/// does not accept Update Record.
async fn receive(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, crate::error::WebError> {
    let (id, secret) = crate::app_api::basic_credentials(&headers).ok_or_else(|| {
        AppError::Unauthenticated("send the pharmacy's client id and secret with HTTP Basic authentication".into())
    })?;
    let receipt = app.receive_update_http(&id, &secret, &body).await?;
    let status = match receipt.outcome {
        ItkCode::Success => StatusCode::ACCEPTED,
        ItkCode::Duplicate => StatusCode::OK,
        ItkCode::PayloadInvalid => StatusCode::UNPROCESSABLE_ENTITY,
        ItkCode::Refused => StatusCode::FORBIDDEN,
    };
    Ok((status, Json(receipt)).into_response())
}
