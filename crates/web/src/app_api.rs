//! The API for third-party patient apps (mounted under `/api/apps/v1`): linking to a patient
//! with the practice's letter or NHS login, and the state of a link with whom its holder acts
//! for (each a `patient` the FHIR token endpoint accepts). The record itself is read through the
//! FHIR API.

use crate::authorization::basic_credentials;
use crate::body::{read_at_most, TooLarge};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use caldicott_app::apps::LinkRequest;
use caldicott_app::{App, AppError};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/links", post(link).layer(axum::middleware::from_fn(crate::throttle::machines)))
        .route(
            "/links/nhs-login",
            post(link_with_nhs_login).layer(axum::middleware::from_fn(crate::throttle::machines)),
        )
        .route(
            "/links/nhs-login/nonce",
            post(nhs_login_nonce).layer(axum::middleware::from_fn(crate::throttle::machines)),
        )
        .route("/link", get(link_status))
}

/// `POST /api/apps/v1/links/nhs-login/nonce`: a nonce for the app's NHS login request. The ID
/// token that comes back must carry it, within ten minutes, and links once.
async fn nhs_login_nonce(State(app): State<App>, headers: HeaderMap) -> Result<Response, crate::error::WebError> {
    let (_, client) = authenticated_app(&app, &headers).await?;
    let (nonce, expires_at) = app.app_link_nonce(&client);
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "nonce": nonce, "expires_at": expires_at }))).into_response())
}

/// The most a linking request's JSON may hold.
const LINK_BODY_LIMIT: usize = 64 * 1024;

/// The app calling, by its client credentials (HTTP Basic), checked before anything of the
/// request's body is read; a refusal is audited.
async fn authenticated_app(
    app: &App,
    headers: &HeaderMap,
) -> Result<(caldicott_core::ids::PracticeId, caldicott_core::online::PatientApp), AppError> {
    let (id, secret) = basic_credentials(headers).ok_or_else(|| {
        AppError::Unauthenticated("send the app's client id and secret with HTTP Basic authentication".into())
    })?;
    app.app_credentials(&id, &secret).await
}

/// A JSON body of at most `LINK_BODY_LIMIT` bytes, or what is wrong with it.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<Result<T, TooLarge>, AppError> {
    let bytes = match read_at_most(body, LINK_BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    serde_json::from_slice(&bytes).map(Ok).map_err(|e| AppError::BadRequest(format!("the request's JSON: {e}")))
}

/// `POST /api/apps/v1/links`: an app, with its client credentials (HTTP Basic), links to a
/// patient with the details from the practice's letter. 201 with the app's token for the link.
async fn link(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Response, crate::error::WebError> {
    let (practice, client) = authenticated_app(&app, &headers).await?;
    let req: LinkRequest = match json_body(body).await? {
        Ok(r) => r,
        Err(too_large) => return Ok(too_large.into_response()),
    };
    let (link, token) = app.link_app_as(practice, &client, &req).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "link_id": link.id, "token": token, "linked_at": link.linked_at })),
    )
        .into_response())
}

/// `GET /api/apps/v1/link`: the link behind an app's token, while it lasts (401 once it is
/// revoked, the key regenerated or the links reset).
async fn link_status(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, crate::error::WebError> {
    let token = crate::authorization::bearer_token(&headers)
        .ok_or_else(|| AppError::Unauthenticated("send the link's token as `Authorization: Bearer <token>`".into()))?;
    let (_, link, registered) = app.app_link_of_token(token).await?;
    let acts_for: Vec<_> = app
        .link_acts_for(token)
        .await?
        .into_iter()
        .map(
            |(id, name, relationship)| serde_json::json!({ "patient": id, "name": name, "relationship": relationship }),
        )
        .collect();
    Ok(Json(serde_json::json!({
        "link_id": link.id,
        "app": registered.name,
        "linked_at": link.linked_at,
        "patient": link.patient,
        "acts_for": acts_for,
    })))
}

#[derive(serde::Deserialize)]
struct NhsLoginLink {
    id_token: String,
    access_token: String,
}

/// `POST /api/apps/v1/links/nhs-login`: an app that signs its users in with NHS login links with
/// the user's P9 identity: the ID token NHS login issued to the app and the user's access token.
async fn link_with_nhs_login(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, crate::error::WebError> {
    let (practice, client) = authenticated_app(&app, &headers).await?;
    let req: NhsLoginLink = match json_body(body).await? {
        Ok(r) => r,
        Err(too_large) => return Ok(too_large.into_response()),
    };
    let (link, token) = app.link_app_nhs_login_as(practice, &client, &req.id_token, &req.access_token).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "link_id": link.id, "token": token, "linked_at": link.linked_at })),
    )
        .into_response())
}
