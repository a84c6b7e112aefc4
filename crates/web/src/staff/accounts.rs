//! Staff accounts (administrators): adding a member of staff, deactivating and reactivating an
//! account, resetting its authenticator, and giving a one-time code to set a new password
//! (ASVS 2.5).

use crate::kernel::{csrf_forms, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use serde::Deserialize;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/staff", get(staff_page).post(add_staff))
        .route("/staff/{staff}", post(change_staff))
        .route("/staff/{staff}/password", post(reset_staff_password))
}

csrf_forms!(StaffForm, StaffChangeForm);

pub struct MemberRow {
    pub id: String,
    pub name: String,
    pub username: String,
    pub role: &'static str,
    pub status: String,
    pub active: bool,
    pub me: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "staff.html")]
struct StaffPage {
    chrome: Option<Chrome>,
    csrf: String,
    notice: Option<String>,
    members: Vec<MemberRow>,
    roles: Vec<(&'static str, &'static str)>,
    name: String,
    username: String,
    role: String,
    errors: Vec<FieldError>,
}

impl Errors for StaffPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn staff_form(
    app: &App,
    me: &SignedIn,
    notice: Option<String>,
    f: Option<&StaffForm>,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let members = app.staff_accounts(&me.who).await.in_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((
        status,
        StaffPage {
            chrome: Some(me.into()),
            csrf: me.csrf_token.clone(),
            notice,
            members: members
                .into_iter()
                .map(|m| MemberRow {
                    id: m.id.to_string(),
                    me: m.id == me.who.staff,
                    status: match (m.active, m.sign_in.totp_confirmed) {
                        (false, _) => "Deactivated".into(),
                        (true, false) => "Active; authenticator not set up yet".into(),
                        (true, true) => "Active".into(),
                    },
                    active: m.active,
                    name: m.display_name,
                    username: m.username,
                    role: m.role.display(),
                })
                .collect(),
            roles: caldicott_core::staff::Role::ALL
                .iter()
                .filter(|r| **r != caldicott_core::staff::Role::IcbAnalyst)
                .map(|r| (r.as_str(), r.display()))
                .collect(),
            name: f.map(|f| f.name.clone()).unwrap_or_default(),
            username: f.map(|f| f.username.clone()).unwrap_or_default(),
            role: f.map_or_else(|| "receptionist".to_owned(), |f| f.role.clone()),
            errors,
        },
    )
        .into_response())
}

async fn staff_page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    staff_form(&app, &me, None, None, Vec::new()).await
}

#[derive(Deserialize)]
struct StaffForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

async fn add_staff(State(app): State<App>, PortalForm(me, f): PortalForm<StaffForm>) -> Result<Response, PageError> {
    let Some(role) = caldicott_core::staff::Role::parse(&f.role) else {
        return staff_form(
            &app,
            &me,
            None,
            Some(&f),
            vec![FieldError { field: "name", message: "Choose a role".into() }],
        )
        .await;
    };
    match app.add_staff_account(&me.who, &f.username, &f.name, role, &f.password).await {
        Ok(m) => {
            staff_form(
                &app,
                &me,
                Some(format!("Account {} added for {}.", m.username, m.display_name)),
                None,
                Vec::new(),
            )
            .await
        }
        Err(AppError::BadRequest(m)) | Err(AppError::Conflict(m)) => {
            let field = if m.contains("password") {
                "password"
            } else if m.contains("name") && !m.contains("username") {
                "name"
            } else {
                "username"
            };
            staff_form(&app, &me, None, Some(&f), vec![FieldError { field, message: m }]).await
        }
        Err(e) => Err(PageError::new(&me, e)),
    }
}

#[derive(Deserialize)]
struct StaffChangeForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    change: String,
}

async fn change_staff(
    State(app): State<App>,
    Path(staff): Path<String>,
    PortalForm(me, f): PortalForm<StaffChangeForm>,
) -> Result<Response, PageError> {
    use caldicott_app::staff_admin::AccountChange;
    let change = match f.change.as_str() {
        "deactivate" => AccountChange::Deactivate,
        "reactivate" => AccountChange::Reactivate,
        "reset" => AccountChange::ResetSecondFactor,
        _ => return Err(PageError::new(&me, AppError::BadRequest("Choose what to change".into()))),
    };
    let Ok(id) = staff.parse::<caldicott_core::ids::StaffId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such member of staff at this practice".into())));
    };
    app.change_staff_account(&me.who, id, change).await.in_page(&me)?;
    Ok(Redirect::to("/staff").into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "staff_reset_code.html")]
struct ResetCodePage {
    chrome: Option<Chrome>,
    r: caldicott_app::passwords::ResetCode,
    expires: String,
}

async fn reset_staff_password(
    State(app): State<App>,
    Path(staff): Path<String>,
    PortalForm(me, _): PortalForm<StaffChangeForm>,
) -> Result<Response, PageError> {
    let Ok(id) = staff.parse::<caldicott_core::ids::StaffId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such member of staff at this practice".into())));
    };
    let r = app.reset_staff_password(&me.who, id).await.in_page(&me)?;
    let expires = caldicott_core::uk::uk_local(r.expires_at).format("%-d %B %Y at %H:%M").to_string();
    Ok(ResetCodePage { chrome: Some((&me).into()), r, expires }.into_response())
}
