//! The `Authorization` header: a bearer token (staff API tokens, FHIR access tokens) or HTTP
//! Basic client credentials (apps, pharmacies, integrations), and the [`Staff`] extractor of the
//! staff JSON API.

use crate::error::WebError;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap};
use caldicott_app::{auth, App, AppError, StaffPrincipal};

/// The token of an `Authorization: Bearer <token>` header. The scheme is matched in any case
/// (`bearer`, `BEARER`), as HTTP's authentication schemes are case-insensitive (RFC 9110
/// §11.1); the one space after it may be more.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The client id and secret of an `Authorization: Basic …` header.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// A member of staff, authenticated by `Authorization: Bearer …`.
pub struct Staff(pub StaffPrincipal);

impl FromRequestParts<App> for Staff {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let header = bearer_token(&parts.headers).ok_or_else(|| {
            AppError::Unauthenticated("send a staff API token as `Authorization: Bearer <token>`".into())
        })?;
        Ok(Staff(auth::authenticate(app, header).await?))
    }
}
