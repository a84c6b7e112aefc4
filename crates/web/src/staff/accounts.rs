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
        .route("/staff/sds-user-id", post(set_sds_user_id))
        .route("/staff/{staff}", post(change_staff))
        .route("/staff/{staff}/password", post(reset_staff_password))
}

csrf_forms!(StaffForm, StaffChangeForm, SdsForm);

pub struct MemberRow {
    pub id: String,
    pub name: String,
    pub username: String,
    pub role: &'static str,
    pub sds_user_id: String,
    /// An ICB analyst's account belongs to the service operator, not the practice.
    pub operator_managed: bool,
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
    /// The SDS user id form as typed: the member chosen and the id.
    sds: (String, String),
    errors: Vec<FieldError>,
}

impl Errors for StaffPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// What a staff page shows besides the list: a notice, one of its two forms as typed, and what
/// was wrong with it.
#[derive(Default)]
struct Shown<'a> {
    notice: Option<String>,
    add: Option<&'a StaffForm>,
    sds: Option<&'a SdsForm>,
    errors: Vec<FieldError>,
}

async fn staff_form(app: &App, me: &SignedIn, shown: Shown<'_>) -> Result<Response, PageError> {
    let Shown { notice, add: f, sds, errors } = shown;
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
                    sds_user_id: m.sds_user_id.unwrap_or_default(),
                    operator_managed: m.role == caldicott_core::staff::Role::IcbAnalyst,
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
            // What was typed comes back, but never more of it than an id could be.
            sds: sds
                .map(|s| (s.staff.clone(), s.sds_user_id.as_deref().unwrap_or_default().chars().take(40).collect()))
                .unwrap_or_default(),
            errors,
        },
    )
        .into_response())
}

async fn staff_page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    staff_form(&app, &me, Shown::default()).await
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
        let errors = vec![FieldError { field: "name", message: "Choose a role".into() }];
        return staff_form(&app, &me, Shown { add: Some(&f), errors, ..Shown::default() }).await;
    };
    match app.add_staff_account(&me.who, &f.username, &f.name, role, &f.password).await {
        Ok(m) => {
            let notice = Some(format!("Account {} added for {}.", m.username, m.display_name));
            staff_form(&app, &me, Shown { notice, ..Shown::default() }).await
        }
        Err(AppError::BadRequest(m)) | Err(AppError::Conflict(m)) => {
            let field = if m.contains("password") {
                "password"
            } else if m.contains("name") && !m.contains("username") {
                "name"
            } else {
                "username"
            };
            staff_form(
                &app,
                &me,
                Shown { add: Some(&f), errors: vec![FieldError { field, message: m }], ..Shown::default() },
            )
            .await
        }
        Err(e) => Err(PageError::new(&me, e)),
    }
}

#[derive(Deserialize)]
struct SdsForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    staff: String,
    /// Absent is not blank: only an empty box removes an id.
    sds_user_id: Option<String>,
}

/// Records (or, left blank, clears) the SDS user id of the member chosen.
async fn set_sds_user_id(
    State(app): State<App>,
    PortalForm(me, f): PortalForm<SdsForm>,
) -> Result<Response, PageError> {
    let refused = |field: &'static str, message: String| Shown {
        sds: Some(&f),
        errors: vec![FieldError { field, message }],
        ..Shown::default()
    };
    let Ok(id) = f.staff.parse::<caldicott_core::ids::StaffId>() else {
        return staff_form(&app, &me, refused("staff", "Choose the member of staff".into())).await;
    };
    let Some(typed) = f.sds_user_id.as_deref() else {
        let message = "Enter the SDS user ID, or leave the box empty to remove it".into();
        return staff_form(&app, &me, refused("sds_user_id", message)).await;
    };
    match app.set_staff_sds_user_id(&me.who, id, typed).await {
        Ok(saved) => {
            let name = &saved.name;
            let notice = Some(match (&saved.kept, saved.changed) {
                (Some(sds), true) => format!("SDS user ID {sds} recorded for {name}."),
                (None, true) => format!("SDS user ID removed for {name}."),
                (Some(sds), false) => format!("No change: {name}'s SDS user ID is {sds}."),
                (None, false) => format!("No change: {name} has no SDS user ID recorded."),
            });
            staff_form(&app, &me, Shown { notice, ..Shown::default() }).await
        }
        Err(AppError::BadRequest(m)) | Err(AppError::Conflict(m)) => {
            staff_form(&app, &me, refused("sds_user_id", m)).await
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
