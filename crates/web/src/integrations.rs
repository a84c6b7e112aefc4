//! The practice's FHIR integrations, for administrators: register one with its public key and
//! scopes, turn one off (its tokens end at once) or on again.

use crate::kernel::{csrf_forms, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use caldicott_app::fhir_api::NewIntegration;
use caldicott_app::{App, AppError};
use serde::Deserialize;

pub fn routes() -> Router<App> {
    Router::new().route("/integrations", get(page).post(register)).route("/integrations/{integration}", post(change))
}

csrf_forms!(RegisterForm, ChangeForm);

pub struct Row {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub scopes: String,
    pub created: String,
    pub created_by: String,
    pub active: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "integrations.html")]
struct IntegrationsPage {
    chrome: Option<Chrome>,
    csrf: String,
    integrations: Vec<Row>,
    created: Option<(String, String)>,
    token_url: String,
    name: String,
    public_key: String,
    scopes: String,
    errors: Vec<FieldError>,
}

impl Errors for IntegrationsPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn view(
    app: &App,
    me: &caldicott_app::session::SignedIn,
    created: Option<(String, String)>,
    form: NewIntegration,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let list = app.integrations(&me.who).await.in_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = IntegrationsPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        integrations: list
            .into_iter()
            .map(|i| Row {
                id: i.id.to_string(),
                name: i.name,
                client_id: i.client_id,
                scopes: i.scopes,
                created: caldicott_core::appointments::uk_time(i.created_at).format("%-d %b %Y").to_string(),
                created_by: i.created_by,
                active: i.active,
            })
            .collect(),
        created,
        token_url: app.fhir_token_url(),
        name: form.name,
        public_key: form.public_key,
        scopes: form.scopes,
        errors,
    };
    Ok((status, page).into_response())
}

async fn page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    view(&app, &me, None, NewIntegration::default(), Vec::new()).await
}

#[derive(Deserialize)]
struct RegisterForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    scopes: String,
}

async fn register(State(app): State<App>, PortalForm(me, f): PortalForm<RegisterForm>) -> Result<Response, PageError> {
    let new = NewIntegration { name: f.name, public_key: f.public_key, scopes: f.scopes };
    match app.register_integration(&me.who, &new).await {
        Ok(i) => view(&app, &me, Some((i.name, i.client_id)), NewIntegration::default(), Vec::new()).await,
        Err(AppError::BadRequest(m)) => {
            let field = if m.contains("name") {
                "name"
            } else if m.contains("scope") {
                "scopes"
            } else {
                "public_key"
            };
            view(&app, &me, None, new, vec![FieldError { field, message: m }]).await
        }
        Err(e) => Err(PageError::new(&me, e)),
    }
}

#[derive(Deserialize)]
struct ChangeForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    integration_action: String,
}

async fn change(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<ChangeForm>,
) -> Result<Response, PageError> {
    let active = match f.integration_action.as_str() {
        "deactivate" => false,
        "reactivate" => true,
        _ => return Err(PageError::new(&me, AppError::BadRequest("Choose to turn it off or on".into()))),
    };
    app.set_integration_active(&me.who, &id, active).await.in_page(&me)?;
    Ok(Redirect::to("/integrations").into_response())
}
