//! Request bodies of the machine endpoints (the Update Record endpoint, the app API, the FHIR
//! token endpoint and FHIR writes) are read by the handler itself, after the caller's credential
//! has been checked, and never further than a limit: an unauthenticated request is answered
//! 401 without a byte of its body being read, however large it says it is. The limit of a
//! transfer-in upload (a page's form and the staff API alike) is here too, and how a page's
//! upload tells a multipart form from a url-encoded one.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;

/// A FHIR Bundle upload (transfer-in), with room for the multipart framing.
pub(crate) const TRANSFER_UPLOAD_LIMIT: usize = caldicott_app::transfer::MAX_BUNDLE_BYTES + 64 * 1024;

/// The body was larger than the limit (reading stopped one byte past it).
#[derive(Debug)]
pub(crate) struct TooLarge;

impl IntoResponse for TooLarge {
    fn into_response(self) -> Response {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        (status, Json(serde_json::json!({ "error": { "status": 413, "message": "the request body is too large" } })))
            .into_response()
    }
}

/// Whether a page's upload comes as `multipart/form-data` (a file chosen on the page) rather than
/// a url-encoded form (a script's, with the file as text).
pub(crate) fn is_multipart(req: &axum::extract::Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// Reads the body, at most `limit` bytes; `Err(TooLarge)` past that, or when the body cannot be
/// read at all.
pub(crate) async fn read_at_most(body: Body, limit: usize) -> Result<Vec<u8>, TooLarge> {
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(TooLarge) };
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}
