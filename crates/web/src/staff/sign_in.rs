//! Staff sign-in: two steps (password, then a TOTP code, enrolling the authenticator on the
//! first sign-in) that end in a fresh session cookie (`__Host-caldicott`: Secure, HttpOnly,
//! SameSite=Strict), and signing out. The sign-in forms carry a CSRF token that must match a
//! cookie set with the form.

use crate::kernel::{
    clear_cookie, cookie, csrf_forms, forbidden_form, page_error, qr_svg, refusal, set_cookie, sign_in_csrf_ok,
    sign_in_token, with_cookies, Chrome, Errors, FieldError, InPage, PageError, PortalForm, SESSION_COOKIE,
    SIGN_IN_COOKIE,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caldicott_app::session::SecondFactor;
use caldicott_app::{App, AppError};
use serde::Deserialize;
use std::collections::HashMap;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route(
            "/sign-in",
            get(sign_in_page).post(sign_in).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route(
            "/sign-in/code",
            get(code_page).post(code).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route("/sign-out", post(sign_out))
        .route("/session", get(session_status))
        .route("/session/keep-alive", post(keep_alive))
}

csrf_forms!(SignOutForm);

#[derive(Template, WebTemplate)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Option<Chrome>,
    csrf: String,
    notice: Option<&'static str>,
    show_practice: bool,
    practice_name: Option<String>,
    ods: String,
    username: String,
    errors: Vec<FieldError>,
}

impl Errors for SignInPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn sign_in_form(app: &App, csrf: String, ods: String, username: String, errors: Vec<FieldError>) -> SignInPage {
    let practices = app.practices().await.unwrap_or_default();
    let practice_name = (practices.len() == 1).then(|| practices[0].name.clone());
    SignInPage {
        chrome: None,
        csrf,
        notice: None,
        show_practice: practices.len() != 1,
        practice_name,
        ods,
        username,
        errors,
    }
}

async fn sign_in_page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(v) = cookie(&headers, SESSION_COOKIE) {
        if app.signed_in(&v).await.is_ok() {
            return Redirect::to("/").into_response();
        }
    }
    let (csrf, set) = sign_in_token(&headers);
    let mut page = sign_in_form(&app, csrf, String::new(), String::new(), Vec::new()).await;
    if q.get("done").map(String::as_str) == Some("password") {
        page.notice = Some("Your new password is set. Sign in with it and your authenticator app.");
    }
    if q.contains_key("timeout") {
        page.notice = Some(
            "You were signed out because nothing was done for 30 minutes. Sign in again to carry on: a form you \
             had not saved is put back when you open it again in this tab.",
        );
    }
    with_cookies(page.into_response(), set)
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    ods: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    _csrf: String,
}

async fn sign_in(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(f)) = form else { return Err(PageError::form_expired()) };
    let Some(csrf) = sign_in_csrf_ok(&headers, &f._csrf) else { return Err(PageError::form_expired()) };
    match app.sign_in(Some(f.ods.as_str()).filter(|s| !s.trim().is_empty()), &f.username, &f.password, &from).await {
        Ok(start) => {
            Ok(with_cookies(Redirect::to("/sign-in/code").into_response(), [set_cookie(SESSION_COOKIE, &start.cookie)]))
        }
        Err(e) => {
            let Some((status, field)) = refusal(&e) else { return Err(e.into()) };
            let errors = vec![FieldError { field, message: e.to_string() }];
            Ok((status, sign_in_form(&app, csrf, f.ods, f.username, errors).await).into_response())
        }
    }
}

pub struct Enrolment {
    pub secret: String,
    pub qr_svg: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "code.html")]
struct CodePage {
    chrome: Option<Chrome>,
    csrf: String,
    enrol: Option<Enrolment>,
    errors: Vec<FieldError>,
}

impl Errors for CodePage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn code_form(app: &App, session: &str, csrf: String, errors: Vec<FieldError>) -> Result<CodePage, Response> {
    let step = app.second_factor_step(session).await.map_err(|e| match e {
        AppError::Conflict(_) => Redirect::to("/").into_response(),
        other => page_error(None, other),
    })?;
    let enrol = match step {
        SecondFactor::Enrol { secret, otpauth_uri } => Some(Enrolment { qr_svg: qr_svg(&otpauth_uri), secret }),
        SecondFactor::EnterCode => None,
    };
    Ok(CodePage { chrome: None, csrf, enrol, errors })
}

async fn code_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(session) = cookie(&headers, SESSION_COOKIE) else { return Redirect::to("/sign-in").into_response() };
    let (csrf, set) = sign_in_token(&headers);
    let res = match code_form(&app, &session, csrf, Vec::new()).await {
        Ok(page) => page.into_response(),
        Err(res) => res,
    };
    with_cookies(res, set)
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    _csrf: String,
}

async fn code(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return forbidden_form() };
    let Some(session) = cookie(&headers, SESSION_COOKIE) else { return Redirect::to("/sign-in").into_response() };
    let Some(csrf) = sign_in_csrf_ok(&headers, &f._csrf) else { return forbidden_form() };
    match app.second_factor(&session, &f.code, &from).await {
        Ok(new_session) => with_cookies(
            Redirect::to("/").into_response(),
            [set_cookie(SESSION_COOKIE, &new_session), clear_cookie(SIGN_IN_COOKIE)],
        ),
        Err(e @ (AppError::Unauthenticated(_) | AppError::Forbidden(_)))
            if !e.to_string().contains("session has ended") =>
        {
            let status =
                if matches!(e, AppError::Forbidden(_)) { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
            match code_form(&app, &session, csrf, vec![FieldError { field: "code", message: e.to_string() }]).await {
                Ok(page) => (status, page).into_response(),
                Err(res) => res,
            }
        }
        Err(e) => page_error(None, e),
    }
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    _csrf: String,
}

async fn sign_out(
    State(app): State<App>,
    headers: HeaderMap,
    PortalForm(me, _): PortalForm<SignOutForm>,
) -> Result<Response, PageError> {
    if let Some(v) = cookie(&headers, SESSION_COOKIE) {
        app.sign_out(&v).await.in_page(&me)?;
    }
    Ok(with_cookies(Redirect::to("/sign-in").into_response(), [clear_cookie(SESSION_COOKIE)]))
}

/// `GET /session`: `{"seconds_left": n}`, how long the session has before it ends (WCAG 2.2.1:
/// the page warns before it does). Asking is not activity; without a live session, 401.
async fn session_status(State(app): State<App>, headers: HeaderMap) -> Response {
    let left = match cookie(&headers, SESSION_COOKIE) {
        Some(v) => app.session_seconds_left(&v).await,
        None => Err(AppError::Unauthenticated("no session".into())),
    };
    match left {
        Ok(n) => axum::Json(serde_json::json!({ "seconds_left": n })).into_response(),
        Err(AppError::Unauthenticated(_)) => StatusCode::UNAUTHORIZED.into_response(),
        Err(e) => crate::error::WebError(e).into_response(),
    }
}

/// `POST /session/keep-alive`: "Stay signed in" on the timeout warning. The request itself is
/// the activity that keeps the session; it answers with the time now left.
async fn keep_alive(State(app): State<App>, headers: HeaderMap, PortalForm(_, _): PortalForm<SignOutForm>) -> Response {
    session_status(State(app), headers).await
}
