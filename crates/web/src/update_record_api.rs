//! The endpoint pharmacies post GP Connect Update Record messages to, mounted under
//! `/api/update-record/v1`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use caldicott_app::{App, AppError};
use caldicott_core::update_record::{ItkCode, MAX_MESSAGE_BYTES};
use http_body_util::BodyExt;

/// The pharmacies' endpoint, under `/api/update-record/v1`. The handler reads the body itself,
/// at most one byte past the limit, so that a message too large is answered like any other
/// refusal rather than cut off.
pub fn routes() -> Router<App> {
    Router::new().route("/messages", post(receive).layer(axum::extract::DefaultBodyLimit::disable()))
}

/// Reads at most `MAX_MESSAGE_BYTES + 1` bytes of the body: enough to know it is too large.
async fn read_limited(body: Body) -> Result<Vec<u8>, AppError> {
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| AppError::BadRequest(format!("the message could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let room = MAX_MESSAGE_BYTES + 1 - bytes.len();
            bytes.extend_from_slice(&data[..data.len().min(room)]);
            if bytes.len() > MAX_MESSAGE_BYTES {
                break;
            }
        }
    }
    Ok(bytes)
}

/// `POST /api/update-record/v1/messages`: a pharmacy's message (HTTP Basic with the client id
/// and secret the practice gave it). The answer carries the ITK3 response code: 202 and 20013
/// when accepted (or held because no patient matches), 200 and 20007 for a message accepted
/// before, 422 and 20009 when the message is refused as invalid (413 and 20009 when it is
/// larger than 2 MB), 403 and 20010 when the practice does not accept Update Record.
async fn receive(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    throttles: Option<axum::Extension<std::sync::Arc<crate::throttle::Throttles>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, crate::error::WebError> {
    // An address that sent too many wrong credentials is held back before any is checked.
    let throttles = throttles.map(|axum::Extension(t)| t);
    if let Some(wait) = throttles.as_ref().and_then(|t| t.held_back(&from)) {
        return Ok(crate::throttle::too_many_json(wait));
    }
    let failed = || {
        if let Some(t) = &throttles {
            t.failed(&from);
        }
    };
    let Some((id, secret)) = crate::authorization::basic_credentials(&headers) else {
        failed();
        return Err(AppError::Unauthenticated(
            "send the pharmacy's client id and secret with HTTP Basic authentication".into(),
        )
        .into());
    };
    // The pharmacy first: nothing of the body is read for a caller who is not one.
    let (practice, sender) = match app.sender_credentials(&id, &secret).await {
        Ok(found) => found,
        Err(e @ AppError::Unauthenticated(_)) => {
            failed();
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let body = read_limited(body).await?;
    let receipt = app.receive_update_from(practice, &sender, &body).await?;
    let status = match receipt.outcome {
        ItkCode::Success => StatusCode::ACCEPTED,
        ItkCode::Duplicate => StatusCode::OK,
        ItkCode::PayloadInvalid if body.len() > MAX_MESSAGE_BYTES => StatusCode::PAYLOAD_TOO_LARGE,
        ItkCode::PayloadInvalid => StatusCode::UNPROCESSABLE_ENTITY,
        ItkCode::Refused => StatusCode::FORBIDDEN,
    };
    Ok((status, Json(receipt)).into_response())
}
