//! The practice's staff API tokens, for administrators: who each was issued to, when it was made
//! and expires, whether it still works, and a button to revoke it (its next request is refused).

use crate::kernel::{csrf_forms, Chrome, InPage, PageError, Portal, PortalForm};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use caldicott_app::App;
use serde::Deserialize;

pub fn routes() -> Router<App> {
    Router::new().route("/tokens", get(page)).route("/tokens/{token}/revoke", post(revoke))
}

csrf_forms!(RevokeForm);

pub struct Row {
    pub id: String,
    pub label: String,
    pub owner: String,
    pub created: String,
    pub expires: String,
    pub status: &'static str,
    pub revoked: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Option<Chrome>,
    csrf: String,
    tokens: Vec<Row>,
    revoked: Option<String>,
}

fn day(t: chrono::DateTime<chrono::Utc>) -> String {
    caldicott_core::appointments::uk_time(t).format("%-d %b %Y %H:%M").to_string()
}

async fn view(
    app: &App,
    me: &caldicott_app::session::SignedIn,
    revoked: Option<String>,
) -> Result<Response, PageError> {
    let list = app.api_tokens(&me.who).await.in_page(me)?;
    let now = app.now();
    Ok(TokensPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        tokens: list
            .iter()
            .map(|t| Row {
                id: t.token.id.to_string(),
                label: t.token.label.clone(),
                owner: format!("{} ({})", t.owner_name, t.owner_username),
                created: day(t.token.created_at),
                expires: day(t.token.expires_at),
                status: t.status_at(now),
                revoked: t.token.revoked_at.map(day).unwrap_or_default(),
            })
            .collect(),
        revoked,
    }
    .into_response())
}

async fn page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    view(&app, &me, None).await
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    _csrf: String,
}

async fn revoke(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, _): PortalForm<RevokeForm>,
) -> Result<Response, PageError> {
    let label = app
        .api_tokens(&me.who)
        .await
        .in_page(&me)?
        .into_iter()
        .find(|t| t.token.id.to_string() == id)
        .map(|t| t.token.label);
    app.revoke_api_token(&me.who, &id).await.in_page(&me)?;
    view(&app, &me, Some(label.unwrap_or_default())).await
}
