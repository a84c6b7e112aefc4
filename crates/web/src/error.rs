//! The one mapping from application errors to HTTP responses. JSON routes answer with
//! `{"error": {"status": …, "message": …}}`. Server-side causes are logged, never shown.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use caldicott_app::AppError;
use serde_json::json;

#[derive(Debug)]
pub struct WebError(pub AppError);

impl From<AppError> for WebError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match &self.0 {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn public_message(&self) -> String {
        match &self.0 {
            AppError::Unavailable(cause) => {
                tracing::error!(%cause, "service unavailable");
                "the service is temporarily unavailable; nothing was changed, please try again".into()
            }
            AppError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "something went wrong on our side; nothing was changed".into()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(json!({ "error": { "status": status.as_u16(), "message": self.public_message() } }));
        let mut res = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub async fn not_found() -> WebError {
    WebError(AppError::NotFound("no such page or API route".into()))
}
