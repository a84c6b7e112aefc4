//! Staff passwords: changing your own, and setting a new one at sign-in with the one-time code an
//! administrator gave (ASVS 2.5).

use crate::kernel::{
    csrf_forms, field_errors, several_practices, sign_in_csrf_ok, sign_in_token, with_cookies, Chrome, Errors,
    FieldError, InPage, PageError, Portal, PortalForm,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use caldicott_app::App;
use serde::Deserialize;
use std::collections::HashMap;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route(
            "/sign-in/reset",
            get(sign_in_reset_page).post(sign_in_reset).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route(
            "/account/password",
            get(account_password_page)
                .post(change_account_password)
                .layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
}

csrf_forms!(PasswordForm);

#[derive(Template, WebTemplate)]
#[template(path = "account_password.html")]
struct AccountPasswordPage {
    chrome: Option<Chrome>,
    csrf: String,
    done: bool,
    errors: Vec<FieldError>,
}

impl Errors for AccountPasswordPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn account_password_page(Portal(me): Portal, Query(q): Query<HashMap<String, String>>) -> Response {
    let done = q.contains_key("done");
    AccountPasswordPage { chrome: Some((&me).into()), csrf: me.csrf_token.clone(), done, errors: Vec::new() }
        .into_response()
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
}

async fn change_account_password(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    PortalForm(me, f): PortalForm<PasswordForm>,
) -> Result<Response, PageError> {
    match app
        .change_staff_password(
            &me.who,
            Some(me.session),
            &f.current_password,
            &f.new_password,
            &f.new_password_again,
            &from,
        )
        .await
        .in_page(&me)?
    {
        Ok(()) => Ok(Redirect::to("/account/password?done=1").into_response()),
        Err(problems) => {
            let page = AccountPasswordPage {
                chrome: Some((&me).into()),
                csrf: me.csrf_token.clone(),
                done: false,
                errors: field_errors(problems),
            };
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "sign_in_reset.html")]
struct SignInResetPage {
    chrome: Option<Chrome>,
    csrf: String,
    show_practice: bool,
    ods: String,
    username: String,
    errors: Vec<FieldError>,
}

impl Errors for SignInResetPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn sign_in_reset_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let (csrf, set) = sign_in_token(&headers);
    let page = SignInResetPage {
        chrome: None,
        csrf,
        show_practice: several_practices(&app).await,
        ods: String::new(),
        username: String::new(),
        errors: Vec::new(),
    };
    with_cookies(page.into_response(), set)
}

#[derive(Deserialize)]
struct SignInResetForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    ods: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
}

async fn sign_in_reset(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    headers: HeaderMap,
    form: Result<Form<SignInResetForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(f)) = form else { return Err(PageError::form_expired()) };
    let Some(csrf) = sign_in_csrf_ok(&headers, &f._csrf) else { return Err(PageError::form_expired()) };
    let reset = caldicott_app::passwords::StaffReset {
        ods: f.ods.clone(),
        username: f.username.clone(),
        code: f.code,
        new_password: f.new_password,
        new_password_again: f.new_password_again,
    };
    match app.reset_password_with_code(&reset, &from).await? {
        Ok(()) => Ok(Redirect::to("/sign-in?done=password").into_response()),
        Err(problems) => {
            let page = SignInResetPage {
                chrome: None,
                csrf,
                show_practice: several_practices(&app).await,
                ods: f.ods,
                username: f.username,
                errors: field_errors(problems),
            };
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
    }
}
