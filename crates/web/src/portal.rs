//! The staff portal: server-rendered pages that work without JavaScript.
//!
//! Sign-in is two steps (password, then a TOTP code) and ends in a fresh session cookie
//! (`__Host-caldicott`: Secure, HttpOnly, SameSite=Strict). The sign-in forms carry a CSRF token
//! that must match a cookie set with the form; every form of a signed-in page carries the
//! session's own CSRF token. A page that needs a session redirects to sign-in without one.

use crate::api::{page_request, view_as};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_app::record::{AccessSummary, StaffEntry, ViewAs};
use caldicott_app::session::{SecondFactor, SignedIn};
use caldicott_app::{App, AppError};
use caldicott_core::entry::{Entry, EntryBody, Section};
use caldicott_core::patient::{age_on, Patient, Sex};
use caldicott_core::permissions::Permission;
use caldicott_core::visibility::GrantSource;
use chrono::NaiveDate;
use rand::RngCore;
use serde::Deserialize;
use std::collections::HashMap;

pub const SESSION_COOKIE: &str = "__Host-caldicott";
pub(crate) const SIGN_IN_COOKIE: &str = "__Host-caldicott-sign-in";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(home))
        .route(
            "/sign-in",
            get(sign_in_page).post(sign_in).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route(
            "/sign-in/code",
            get(code_page).post(code).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
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
        .route("/sign-out", axum::routing::post(sign_out))
        .route("/patients/{nhs_number}", get(record))
        .route("/patients/{nhs_number}/online", get(online))
        .route("/patients/{nhs_number}/entries/{entry}/online", get(visibility_page).post(change_visibility))
        .route("/patients/{nhs_number}/entries/{entry}/split", get(split_page).post(split))
        .route("/patients/{nhs_number}/enhanced-review", axum::routing::post(crate::access_page::enhanced_review))
        .route("/patients/{nhs_number}/audit", get(trail))
        .route("/settings", get(settings_page).post(save_settings))
        .route("/patients/{nhs_number}/consultations/new", get(consultation_page))
        .route("/patients/{nhs_number}/consultations", axum::routing::post(add_consultation))
        .route("/staff", get(staff_page).post(add_staff))
        .route("/staff/{staff}", axum::routing::post(change_staff))
        .route("/staff/{staff}/password", axum::routing::post(reset_staff_password))
        .route("/patients/new", get(register_page))
        .route("/patients", axum::routing::post(register))
        .route("/patients/{nhs_number}/deregister", axum::routing::post(deregister))
        .route("/patients/{nhs_number}/linkage", axum::routing::post(issue_linkage))
        .route("/patients/{nhs_number}/password-letter", axum::routing::post(issue_password_letter))
        .route(
            "/patients/transfer-in",
            get(transfer_page).post(transfer_in).layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route("/filing", get(filing_queue))
        .route("/filing/{entry}", get(file_page).post(file_item))
        .route(
            "/patients/{nhs_number}/access",
            get(crate::access_page::access_page).post(crate::access_page::change_access),
        )
}

// ---- Cookies and CSRF ---------------------------------------------------------------------

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(crate) fn set_cookie(name: &str, value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn random_token() -> String {
    let mut raw = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Constant-time comparison for CSRF tokens.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The CSRF token of the sign-in forms, from their cookie (or a new one with the header to set it).
pub(crate) fn sign_in_token(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, SIGN_IN_COOKIE).filter(|t| t.len() >= 32) {
        Some(t) => (t, None),
        None => {
            let t = random_token();
            let h = set_cookie(SIGN_IN_COOKIE, &t);
            (t, Some(h))
        }
    }
}

/// A form that carries a CSRF token.
pub(crate) trait CsrfToken {
    fn csrf(&self) -> &str;
}

#[macro_export]
macro_rules! csrf_forms {
    ($($form:ty),* $(,)?) => {$(
        impl $crate::portal::CsrfToken for $form {
            fn csrf(&self) -> &str {
                &self._csrf
            }
        }
    )*};
}

csrf_forms!(
    SignOutForm,
    VisibilityForm,
    SettingsForm,
    FileForm,
    ConsultationForm,
    StaffForm,
    StaffChangeForm,
    RegisterForm,
    DeregisterForm,
    SplitForm,
    LinkageForm,
    PasswordForm,
);

/// The form's fields, when it parsed and carries this session's CSRF token (handlers answer
/// `forbidden_form()` otherwise).
pub(crate) fn checked<T: CsrfToken>(me: &SignedIn, form: Result<Form<T>, FormRejection>) -> Option<T> {
    form.ok().map(|Form(f)| f).filter(|f| same(&me.csrf_token, f.csrf()))
}

/// Back to a page of the patient's record after a change (`rest` follows `/patients/{nhs}`).
pub(crate) fn to_patient(me: &SignedIn, nhs: &str, rest: &str) -> Response {
    match caldicott_app::record::parse_nhs_number(nhs) {
        Ok(n) => Redirect::to(&format!("/patients/{}{rest}", n.as_str())).into_response(),
        Err(e) => page_error(Some(me.into()), e),
    }
}

pub(crate) fn forbidden_form() -> Response {
    page_error(None, AppError::Forbidden("This form has expired. Go back, reload the page and try again.".into()))
}

// ---- Page chrome and errors ---------------------------------------------------------------

/// What every signed-in page shows in its header.
pub struct Chrome {
    pub name: String,
    pub role: &'static str,
    pub practice_name: String,
    pub csrf: String,
    /// Automatic access is paused: every page says so, with the reason.
    pub paused: bool,
    pub pause_reason: String,
    /// Staff instant messages not yet read.
    pub unread: i64,
    /// The practice manager sees the settings link.
    pub manager: bool,
    /// Clinicians see the filing link.
    pub clinician: bool,
    /// Administrators see the staff accounts link.
    pub admin: bool,
    /// The practice team (not administrators or ICB analysts) sees the patient links.
    pub team: bool,
    /// Clinicians and practice managers see reviews and reports.
    pub governance: bool,
    /// ICB analysts see the service-wide figures.
    pub analyst: bool,
}

impl From<&SignedIn> for Chrome {
    fn from(s: &SignedIn) -> Self {
        Self {
            name: s.who.name.clone(),
            role: s.who.role.display(),
            practice_name: s.practice_name.clone(),
            csrf: s.csrf_token.clone(),
            paused: s.practice_paused,
            pause_reason: s.practice_pause_reason.clone(),
            unread: s.unread_messages,
            manager: s.who.role == caldicott_core::staff::Role::PracticeManager,
            clinician: s.who.role == caldicott_core::staff::Role::Clinician,
            admin: s.who.role == caldicott_core::staff::Role::Administrator,
            team: s.who.role.works_with_patients(),
            governance: matches!(
                s.who.role,
                caldicott_core::staff::Role::Clinician | caldicott_core::staff::Role::PracticeManager
            ),
            analyst: s.who.role == caldicott_core::staff::Role::IcbAnalyst,
        }
    }
}

#[derive(Debug)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// Helpers every form template uses.
pub(crate) trait Errors {
    fn errors(&self) -> &[FieldError];
    fn has_error(&self, field: &str) -> bool {
        self.errors().iter().any(|e| e.field == field)
    }
    fn error_for(&self, field: &str) -> String {
        self.errors().iter().find(|e| e.field == field).map(|e| e.message.clone()).unwrap_or_default()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Option<Chrome>,
    title: &'static str,
    message: String,
}

pub(crate) fn page_error(chrome: Option<Chrome>, e: AppError) -> Response {
    match error_parts(&e) {
        None => Redirect::to("/sign-in").into_response(),
        Some((status, title, message)) => (status, ErrorPage { chrome, title, message }).into_response(),
    }
}

/// The status, title and message of an error page; `None` when the answer is to sign in.
pub(crate) fn error_parts(e: &AppError) -> Option<(StatusCode, &'static str, String)> {
    Some(match e {
        AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "There is a problem", m.clone()),
        AppError::Unauthenticated(_) => return None,
        AppError::Forbidden(m) => (StatusCode::FORBIDDEN, "You cannot do that", m.clone()),
        AppError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.clone()),
        AppError::Conflict(m) => (StatusCode::CONFLICT, "That has already happened", m.clone()),
        AppError::Unavailable(cause) => {
            tracing::error!(%cause, "service unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Sorry, the service is unavailable",
                "Nothing was changed. Try again in a few minutes.".into(),
            )
        }
        AppError::Internal(cause) => {
            tracing::error!(%cause, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sorry, something went wrong",
                "Nothing was changed. Try again, or tell your practice manager.".into(),
            )
        }
    })
}

/// A signed-in member of staff. Pages that take one redirect to sign-in without a session.
pub struct Portal(pub SignedIn);

impl FromRequestParts<App> for Portal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/sign-in").into_response());
        };
        app.signed_in(&value).await.map(Portal).map_err(|e| page_error(None, e))
    }
}

// ---- Sign-in ------------------------------------------------------------------------------

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
    let mut res = page.into_response();
    if let Some(h) = set {
        res.headers_mut().append(header::SET_COOKIE, h);
    }
    res
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
) -> Response {
    let Ok(Form(f)) = form else { return forbidden_form() };
    let (csrf, _) = sign_in_token(&headers);
    if cookie(&headers, SIGN_IN_COOKIE).is_none() || !same(&csrf, &f._csrf) {
        return forbidden_form();
    }
    match app.sign_in(Some(f.ods.as_str()).filter(|s| !s.trim().is_empty()), &f.username, &f.password, &from).await {
        Ok(start) => {
            let mut res = Redirect::to("/sign-in/code").into_response();
            res.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &start.cookie));
            res
        }
        Err(e) => {
            let (status, field) = match &e {
                AppError::BadRequest(m) if m.contains("ODS") => (StatusCode::BAD_REQUEST, "ods"),
                AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "username"),
                AppError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "username"),
                AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "username"),
                _ => return page_error(None, e),
            };
            let errors = vec![FieldError { field, message: e.to_string() }];
            (status, sign_in_form(&app, csrf, f.ods, f.username, errors).await).into_response()
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

pub(crate) fn qr_svg(uri: &str) -> String {
    qrcode::QrCode::new(uri.as_bytes())
        .map(|q| q.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build())
        .unwrap_or_default()
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
    let mut res = match code_form(&app, &session, csrf, Vec::new()).await {
        Ok(page) => page.into_response(),
        Err(res) => res,
    };
    if let Some(h) = set {
        res.headers_mut().append(header::SET_COOKIE, h);
    }
    res
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
    let (csrf, _) = sign_in_token(&headers);
    if cookie(&headers, SIGN_IN_COOKIE).is_none() || !same(&csrf, &f._csrf) {
        return forbidden_form();
    }
    match app.second_factor(&session, &f.code, &from).await {
        Ok(new_session) => {
            let mut res = Redirect::to("/").into_response();
            res.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &new_session));
            res.headers_mut().append(header::SET_COOKIE, clear_cookie(SIGN_IN_COOKIE));
            res
        }
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
    Portal(me): Portal,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    if checked(&me, form).is_none() {
        return forbidden_form();
    }
    if let Some(v) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = app.sign_out(&v).await {
            return page_error(Some((&me).into()), e);
        }
    }
    let mut res = Redirect::to("/sign-in").into_response();
    res.headers_mut().append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
    res
}

// ---- Patient search -----------------------------------------------------------------------

pub struct Listing {
    pub name: String,
    pub nhs_number: String,
    pub nhs_digits: String,
    pub date_of_birth: String,
    pub age: String,
    pub address: String,
    pub deceased: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Option<Chrome>,
    can_register: bool,
    can_transfer: bool,
    overdue_alerts: usize,
    overdue_sars: usize,
    q: String,
    searched: bool,
    results: Vec<Listing>,
    recent: Vec<Listing>,
    errors: Vec<FieldError>,
}

impl Errors for HomePage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn listing(p: caldicott_app::PatientListing, today: NaiveDate) -> Listing {
    Listing {
        name: p.name.banner(),
        nhs_number: p.nhs_number.to_string(),
        nhs_digits: p.nhs_number.as_str().to_owned(),
        date_of_birth: long_date(p.date_of_birth),
        age: age_text(p.date_of_birth, today),
        address: p.address.to_string(),
        deceased: p.date_of_death.is_some(),
    }
}

pub(crate) fn long_date(d: NaiveDate) -> String {
    d.format("%-d %b %Y").to_string()
}

fn age_text(dob: NaiveDate, today: NaiveDate) -> String {
    let years = age_on(dob, today);
    if years >= 2 {
        format!("{years} years")
    } else {
        let months = (today - dob).num_days() / 30;
        format!("{months} months")
    }
}

async fn home(State(app): State<App>, Portal(me): Portal, Query(q): Query<HashMap<String, String>>) -> Response {
    if me.who.role == caldicott_core::staff::Role::IcbAnalyst && !q.contains_key("q") {
        return Redirect::to("/icb").into_response();
    }
    let text = q.get("q").cloned().unwrap_or_default();
    let today = app.today();
    let listing = |p| listing(p, today);
    let recent = if q.contains_key("q") {
        Vec::new()
    } else {
        match app.recently_viewed(&me.who).await {
            Ok(r) => r.into_iter().map(listing).collect(),
            Err(e) => return page_error(Some((&me).into()), e),
        }
    };
    let mut page = HomePage {
        chrome: Some((&me).into()),
        can_register: me.who.role.works_with_patients(),
        can_transfer: Permission::TransferRecordsIn.allows(me.who.role),
        overdue_alerts: if !me.who.role.works_with_patients() {
            0
        } else {
            match app.overdue_alerts(&me.who).await {
                Ok(n) => n,
                Err(e) => return page_error(Some((&me).into()), e),
            }
        },
        overdue_sars: if !me.who.role.works_with_patients() {
            0
        } else {
            match app.overdue_sars(&me.who).await {
                Ok(n) => n,
                Err(e) => return page_error(Some((&me).into()), e),
            }
        },
        q: text.clone(),
        searched: false,
        results: Vec::new(),
        recent,
        errors: Vec::new(),
    };
    if q.contains_key("q") {
        match app.search_patients(&me.who, &text).await {
            Ok((_, found)) => {
                page.searched = true;
                page.results = found.into_iter().map(listing).collect();
            }
            Err(AppError::BadRequest(m)) => {
                page.errors.push(FieldError { field: "q", message: m });
                return (StatusCode::BAD_REQUEST, page).into_response();
            }
            Err(e) => return page_error(Some((&me).into()), e),
        }
    }
    page.into_response()
}

// ---- The record ---------------------------------------------------------------------------

pub struct Flag {
    pub text: String,
    pub colour: &'static str,
}

pub(crate) struct Banner {
    pub name: String,
    pub nhs_number: String,
    pub nhs_digits: String,
    pub date_of_birth: String,
    pub age: String,
    pub sex: &'static str,
    pub flags: Vec<Flag>,
}

pub(crate) fn banner(p: &Patient, today: NaiveDate, enhanced_review_active: bool) -> Banner {
    let mut flags = Vec::new();
    if let Some(d) = p.date_of_death {
        flags.push(Flag { text: format!("Died {}", long_date(d)), colour: "grey" });
    }
    if p.registration_on(today).is_none() {
        flags.push(Flag { text: "Not registered at this practice".into(), colour: "grey" });
    }
    if enhanced_review_active {
        flags.push(Flag { text: "Online access withheld: enhanced review (104)".into(), colour: "red" });
    }
    Banner {
        name: p.name.banner(),
        nhs_number: p.nhs_number.to_string(),
        nhs_digits: p.nhs_number.as_str().to_owned(),
        date_of_birth: long_date(p.date_of_birth),
        age: age_text(p.date_of_birth, today),
        sex: match p.sex {
            Sex::Female => "Female",
            Sex::Male => "Male",
            Sex::Other => "Other",
            Sex::Unknown => "Not known",
        },
        flags,
    }
}

/// The viewer's access in plain words.
pub(crate) fn access_text(a: &AccessSummary) -> String {
    if let Some(r) = &a.no_record_access {
        return format!("Sees no record entries online: {} ({}).", r.reason, r.rule);
    }
    // Highest level first; a lower level is mentioned only where it reaches further back.
    let mut shown: Vec<&caldicott_core::visibility::LevelReach> = Vec::new();
    for l in a.levels.iter().rev().filter(|l| l.level != caldicott_core::access::AccessLevel::None) {
        if shown.last().is_none_or(|h| (h.from, h.by) != (l.from, l.by)) {
            shown.push(l);
        }
    }
    let parts: Vec<String> = shown
        .iter()
        .map(|l| {
            let from = l.from.map_or("the whole record".to_owned(), |d| format!("entries from {}", long_date(d)));
            let how = match l.by {
                GrantSource::Automatic => "automatic access",
                GrantSource::Manual => "granted by the practice",
                GrantSource::Proxy => "this proxy's access",
            };
            format!("{}: {from} ({how})", l.level.display())
        })
        .collect();
    let mut text = format!("Sees {}.", parts.join("; "));
    if let Some((level, on)) = a.own_level {
        text.push_str(&format!(
            " The practice set the patient's own level to {} on {}; it replaces automatic access (R13).",
            level.display(),
            long_date(on)
        ));
    } else if let Err(b) = &a.automatic {
        text.push_str(&format!(" No automatic access: {} ({}).", b.reason, b.rule));
    }
    text
}

pub struct ChangeLink {
    pub href: String,
    pub label: &'static str,
}

pub struct EntryRow {
    pub change: Option<ChangeLink>,
    pub date: String,
    pub kind: &'static str,
    pub code: Option<String>,
    pub text: String,
    pub author: String,
    pub online: &'static str,
    pub online_colour: &'static str,
    pub withheld: Option<String>,
    /// Retired by a later version (R28): what replaced it. Kept for audit, not current.
    pub superseded: Option<String>,
    /// Where its document opens (documents only).
    pub document: Option<String>,
}

pub(crate) fn kind_label(e: &Entry) -> &'static str {
    match &e.body {
        EntryBody::Coded { .. } => "Coded entry",
        EntryBody::Consultation { status, .. } => match status {
            caldicott_core::entry::ConsultationStatus::Draft => "Consultation (draft)",
            caldicott_core::entry::ConsultationStatus::Final => "Consultation",
        },
        EntryBody::Medication { course, .. } => match course {
            caldicott_core::entry::MedicationCourse::Acute => "Medication (acute)",
            caldicott_core::entry::MedicationCourse::RepeatTemplate => "Repeat medication",
        },
        EntryBody::MedicationIssue { .. } => "Medication issued",
        EntryBody::TestResult { filing, .. } => match filing {
            caldicott_core::entry::Filing::Unfiled => "Test result (unfiled)",
            caldicott_core::entry::Filing::Filed => "Test result",
        },
        EntryBody::Document { review, .. } => match review {
            caldicott_core::entry::DocumentReview::Unreviewed => "Document (not reviewed)",
            caldicott_core::entry::DocumentReview::Reviewed => "Document",
        },
        EntryBody::Allergy { .. } => "Allergy",
        EntryBody::Immunisation { .. } => "Immunisation",
        EntryBody::Problem { .. } => "Problem",
        EntryBody::AdminMessage { .. } => "Administrative message",
        EntryBody::OnlineConsultation { .. } => "Online consultation",
        EntryBody::SystemSms { .. } => "Text message sent",
        EntryBody::Diary { .. } => "Diary entry",
    }
}

pub(crate) fn entry_text(e: &Entry) -> String {
    match &e.body {
        EntryBody::Consultation { text, .. } => text.clone(),
        other => other.headline(),
    }
}

fn entry_row(e: &Entry, online: Option<&caldicott_app::record::OnlineStatus>) -> EntryRow {
    let (label, colour, withheld) = match online {
        None => ("", "grey", None),
        Some(s) if s.visible => ("Visible", "green", None),
        Some(s) => ("Withheld", "grey", s.withheld.as_ref().map(|r| format!("{} ({})", r.reason, r.rule))),
    };
    EntryRow {
        change: None,
        date: long_date(e.event_date),
        kind: kind_label(e),
        code: e.code.as_ref().map(|c| format!("{} ({})", c.term, c.concept)),
        text: entry_text(e),
        author: match &e.origin {
            caldicott_core::entry::Origin::Native => e.author.name.clone(),
            caldicott_core::entry::Origin::TransferredIn { from_ods } => {
                format!("{} · transferred in from {from_ods}", e.author.name)
            }
            caldicott_core::entry::Origin::Inbound { sender_ods } => {
                format!("{} · sent by {sender_ods}", e.author.name)
            }
        },
        online: label,
        online_colour: colour,
        withheld,
        superseded: e.superseded.as_ref().map(|x| x.note.clone()),
        document: crate::documents::staff_href(e),
    }
}

pub struct SectionLink {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

pub struct ProxyLinkView {
    pub id: String,
    pub label: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "record.html")]
struct RecordPage {
    chrome: Option<Chrome>,
    banner: Banner,
    notice: Option<String>,
    can_change: bool,
    can_see_trail: bool,
    can_register: bool,
    registered: bool,
    csrf: String,
    review_active: bool,
    access_text: String,
    proxies: Vec<ProxyLinkView>,
    pharmacy: Option<(String, String)>,
    contact: (String, String, String),
    contact_choices: Vec<(String, &'static str)>,
    apps: Vec<(String, String, Option<String>)>,
    sections: Vec<SectionLink>,
    entries: Vec<EntryRow>,
    caption: String,
    empty_text: &'static str,
    show_online: bool,
    next_page: Option<String>,
}

pub(crate) fn section_label(s: Option<Section>) -> &'static str {
    match s {
        None => "All entries",
        Some(Section::Consultations) => "Consultations",
        Some(Section::Problems) => "Problems",
        Some(Section::Medications) => "Medications",
        Some(Section::Results) => "Results",
        Some(Section::Documents) => "Documents",
        Some(Section::Allergies) => "Allergies",
        Some(Section::Immunisations) => "Immunisations",
        Some(Section::Codes) => "Codes",
        Some(Section::Communications) => "Communications",
    }
}

fn viewer_query(as_viewer: ViewAs) -> String {
    match as_viewer {
        ViewAs::Patient => String::new(),
        ViewAs::Proxy(id) => format!("?as=proxy&proxy={id}"),
    }
}

pub(crate) fn with_param(base: &str, query: &str, key: &str, value: &str) -> String {
    let sep = if query.is_empty() { "?" } else { "&" };
    format!("{base}{query}{sep}{key}={value}")
}

async fn record(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let chrome = || Some(Chrome::from(&me));
    let (page, as_viewer) = match (page_request(&q), view_as(&q)) {
        (Ok(p), Ok(v)) => (p, v),
        (Err(e), _) | (_, Err(e)) => return page_error(chrome(), e),
    };
    let rec = match app.staff_record(&me.who, &nhs, as_viewer, &page).await {
        Ok(r) => r,
        Err(e) => return page_error(chrome(), e),
    };
    let pharmacy = match app.nominated_pharmacy_for(&me.who, rec.patient.id).await {
        Ok(p) => p,
        Err(e) => return page_error(chrome(), e),
    };
    // The staff record was opened (and audited) above: the patient is the caller's to see.
    let apps = match app.patient_apps_by_id(&me.who, rec.patient.id).await {
        Ok(list) => list
            .into_iter()
            .map(|(l, a)| {
                (
                    format!("{} ({})", a.name, a.supplier),
                    caldicott_core::appointments::uk_time(l.linked_at).format("%-d %b %Y").to_string(),
                    l.revoked_at.map(|_| l.revoked_why.clone().unwrap_or_else(|| "revoked".into())),
                )
            })
            .collect(),
        Err(e) => return page_error(chrome(), e),
    };
    let today = app.today();
    let base = format!("/patients/{}", rec.patient.nhs_number.as_str());
    let vq = viewer_query(as_viewer);
    let sections = std::iter::once(None)
        .chain(Section::ALL.into_iter().map(Some))
        .map(|s| SectionLink {
            label: section_label(s),
            href: match s {
                None => format!("{base}{vq}"),
                Some(s) => with_param(&base, &vq, "section", s.as_str()),
            },
            current: s == page.section,
        })
        .collect();
    let section_q = page.section.map_or(vq.clone(), |s| with_param("", &vq, "section", s.as_str()));
    let next_page = rec.next_cursor.as_ref().map(|c| with_param(&base, &section_q, "cursor", c));
    let whose = match as_viewer {
        ViewAs::Patient => "the patient".to_owned(),
        ViewAs::Proxy(id) => {
            rec.proxies.iter().find(|p| p.id == id).map_or("this proxy".into(), |p| p.relationship.to_lowercase())
        }
    };
    let can_change = me.who.role == caldicott_core::staff::Role::Clinician;
    let entries = rec
        .entries
        .iter()
        .map(|e: &StaffEntry| {
            let mut row = entry_row(&e.entry, Some(&e.online));
            if can_change {
                row.change = Some(ChangeLink {
                    href: format!("{base}/entries/{}/online", e.entry.id),
                    label: if e.entry.visibility.is_hidden() { "Show online" } else { "Hide online" },
                });
            }
            row
        })
        .collect();
    let proxies = rec
        .proxies
        .iter()
        .map(|p| ProxyLinkView {
            id: p.id.to_string(),
            label: format!("{} ({})", p.relationship, p.basis.as_str().replace('_', " ")),
        })
        .collect();
    let notice = q.get("recorded").map(|code| match code.as_str() {
        "104" => {
            let mut text = "104 recorded: automatic online access to this record is withheld until a 106 is recorded.".to_owned();
            let manual: Vec<String> = rec
                .online_access
                .levels
                .iter()
                .filter(|l| l.by == GrantSource::Manual)
                .map(|l| l.level.display().to_owned())
                .collect();
            if !manual.is_empty() {
                text.push_str(&format!(
                    " Access granted by hand is not changed by a 104 (R3) and continues: {}. Decide whether it should stop.",
                    manual.join(", ")
                ));
            }
            text
        }
        _ => "106 recorded: the enhanced review no longer withholds automatic access.".to_owned(),
    });
    let notice = notice.or_else(|| {
        q.contains_key("document_added").then(|| {
            "Document added. It waits in the filing queue, where a clinician decides whether the patient sees it online."
                .to_owned()
        })
    });
    RecordPage {
        chrome: chrome(),
        pharmacy,
        contact: (
            rec.patient.preferred_contact.code().map_or("unknown".to_owned(), |c| c.to_string()),
            rec.patient.contact.email.clone().unwrap_or_default(),
            rec.patient.contact.mobile.clone().unwrap_or_default(),
        ),
        contact_choices: crate::comms::method_choices(),
        apps,
        notice,
        can_change,
        can_register: me.who.role.works_with_patients(),
        registered: rec.patient.registration_on(today).is_some(),
        can_see_trail: matches!(
            me.who.role,
            caldicott_core::staff::Role::Clinician | caldicott_core::staff::Role::PracticeManager
        ),
        csrf: me.csrf_token.clone(),
        review_active: rec.enhanced_review.is_active(),
        banner: banner(&rec.patient, today, rec.enhanced_review.is_active()),
        access_text: access_text(&rec.online_access),
        proxies,
        sections,
        entries,
        caption: format!("{}, newest first; the Online column is for {whose}", section_label(page.section)),
        empty_text: "No entries in this section.",
        show_online: true,
        next_page,
    }
    .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "online.html")]
struct OnlinePage {
    chrome: Option<Chrome>,
    banner: Banner,
    heading: String,
    access_text: String,
    record_query: String,
    entries: Vec<EntryRow>,
    caption: String,
    empty_text: &'static str,
    show_online: bool,
    next_page: Option<String>,
}

async fn online(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let chrome = || Some(Chrome::from(&me));
    let (page, as_viewer) = match (page_request(&q), view_as(&q)) {
        (Ok(p), Ok(v)) => (p, v),
        (Err(e), _) | (_, Err(e)) => return page_error(chrome(), e),
    };
    let view = match app.online_view(&me.who, &nhs, as_viewer, &page).await {
        Ok(v) => v,
        Err(e) => return page_error(chrome(), e),
    };
    let Some(patient) = view.context.patient.clone() else {
        return page_error(chrome(), AppError::Internal("online view without its patient".into()));
    };
    let today = app.today();
    let heading = match &view.context.proxy_relationship {
        None => format!("What {} sees online", patient.name.given),
        Some(who) => format!("What {who} sees online for {}", patient.name.given),
    };
    let base = format!("/patients/{}/online", patient.nhs_number.as_str());
    let vq = viewer_query(as_viewer);
    OnlinePage {
        chrome: chrome(),
        banner: banner(&patient, today, view.context.enhanced_review_active),
        heading,
        access_text: access_text(&view.access),
        record_query: vq.clone(),
        entries: view.entries.iter().map(|e| entry_row(e, None)).collect(),
        caption: "Entries this viewer sees, newest first".into(),
        empty_text: "This viewer sees no record entries.",
        show_online: false,
        next_page: view.next_cursor.as_ref().map(|c| with_param(&base, &vq, "cursor", c)),
    }
    .into_response()
}

// ---- Hiding and showing an entry ----------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "visibility.html")]
struct VisibilityPage {
    chrome: Option<Chrome>,
    heading: &'static str,
    hiding: bool,
    back: String,
    action: String,
    csrf: String,
    patient: String,
    entry: EntryRow,
    current: String,
    reasons: Vec<(&'static str, &'static str)>,
    chosen: String,
    note: String,
    issue_count: usize,
    split: Option<String>,
    errors: Vec<FieldError>,
}

impl Errors for VisibilityPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

pub(crate) const REASONS: [caldicott_core::entry::HiddenReason; 4] = [
    caldicott_core::entry::HiddenReason::ThirdParty,
    caldicott_core::entry::HiddenReason::PotentiallyHarmful,
    caldicott_core::entry::HiddenReason::Safeguarding,
    caldicott_core::entry::HiddenReason::Other,
];

async fn visibility_form(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    entry: &str,
    chosen: String,
    note: String,
    errors: Vec<FieldError>,
) -> Response {
    let chrome = || Some(Chrome::from(me));
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return page_error(chrome(), AppError::NotFound("no such entry in this patient's record".into()));
    };
    let target = match app.view_entry_to_change(&me.who, nhs, id, "visibility").await {
        Ok(t) => t,
        Err(e) => return page_error(chrome(), e),
    };
    let hiding = !target.entry.visibility.is_hidden();
    let current = match &target.entry.visibility {
        caldicott_core::entry::OnlineVisibility::Visible => "Not hidden".to_owned(),
        caldicott_core::entry::OnlineVisibility::Hidden(r) => {
            format!(
                "Hidden: {} (by {}, {}). {}",
                r.reason().display(),
                r.by(),
                long_date(caldicott_core::uk::uk_date(r.at())),
                r.note()
            )
        }
    };
    let base = format!("/patients/{}", target.patient.nhs_number.as_str());
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = VisibilityPage {
        chrome: chrome(),
        heading: if hiding { "Hide this entry online" } else { "Show this entry online" },
        hiding,
        action: format!("{base}/entries/{}/online", target.entry.id),
        back: base,
        csrf: me.csrf_token.clone(),
        patient: format!("{} ({})", target.patient.name.banner(), target.patient.nhs_number),
        entry: entry_row(&target.entry, None),
        current,
        reasons: REASONS.iter().map(|r| (r.as_str(), r.display())).collect(),
        chosen,
        note,
        issue_count: target.issues.len(),
        split: matches!(target.entry.body, EntryBody::Consultation { .. })
            .then(|| format!("/patients/{}/entries/{}/split", target.patient.nhs_number.as_str(), target.entry.id)),
        errors,
    };
    (status, page).into_response()
}

async fn visibility_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path((nhs, entry)): Path<(String, String)>,
) -> Response {
    visibility_form(&app, &me, &nhs, &entry, String::new(), String::new(), Vec::new()).await
}

#[derive(Deserialize)]
struct VisibilityForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    change: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    with_issues: Option<String>,
}

async fn change_visibility(
    State(app): State<App>,
    Portal(me): Portal,
    Path((nhs, entry)): Path<(String, String)>,
    form: Result<Form<VisibilityForm>, FormRejection>,
) -> Response {
    use caldicott_app::redaction::VisibilityChange;
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return page_error(Some((&me).into()), AppError::NotFound("no such entry in this patient's record".into()));
    };
    let mut errors = Vec::new();
    let change = if f.change == "show" {
        VisibilityChange::Show { note: f.note.clone() }
    } else {
        match caldicott_core::entry::HiddenReason::parse(&f.reason).filter(|r| REASONS.contains(r)) {
            Some(reason) => VisibilityChange::Hide { reason, note: f.note.clone() },
            None => {
                errors.push(FieldError { field: "reason", message: "Choose why the entry is to be hidden".into() });
                VisibilityChange::Hide { reason: caldicott_core::entry::HiddenReason::Other, note: f.note.clone() }
            }
        }
    };
    if f.note.trim().is_empty() {
        errors.push(FieldError { field: "note", message: "Enter a note explaining the decision".into() });
    }
    if !errors.is_empty() {
        return visibility_form(&app, &me, &nhs, &entry, f.reason, f.note, errors).await;
    }
    match app.change_visibility(&me.who, &nhs, id, &change, f.with_issues.is_some()).await {
        Ok(_) => to_patient(&me, &nhs, ""),
        Err(AppError::BadRequest(m)) => {
            visibility_form(&app, &me, &nhs, &entry, f.reason, f.note, vec![FieldError { field: "note", message: m }])
                .await
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- The patient's audit trail --------------------------------------------------------------

pub struct TrailRow {
    pub seq: i64,
    pub at: String,
    pub who: String,
    pub role: String,
    pub action: String,
    pub what: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct TrailPage {
    chrome: Option<Chrome>,
    banner: Banner,
    filters: Vec<SectionLink>,
    lines: Vec<TrailRow>,
    limit: i64,
}

async fn trail(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    use caldicott_app::trail::TrailFilter;
    let chrome = || Some(Chrome::from(&me));
    let filter = match q.get("show").map(String::as_str) {
        None | Some("all") => TrailFilter::All,
        Some("views") => TrailFilter::Views,
        Some("changes") => TrailFilter::Changes,
        Some(other) => {
            return page_error(
                chrome(),
                AppError::BadRequest(format!("show must be all, views or changes, not {other:?}")),
            )
        }
    };
    let caldicott_app::trail::PatientTrail { patient, enhanced_review_active, lines } =
        match app.patient_trail(&me.who, &nhs, filter).await {
            Ok(x) => x,
            Err(e) => return page_error(chrome(), e),
        };
    let base = format!("/patients/{}/audit", patient.nhs_number.as_str());
    let filters = [
        ("All events", "all", TrailFilter::All),
        ("Views", "views", TrailFilter::Views),
        ("Changes", "changes", TrailFilter::Changes),
    ]
    .into_iter()
    .map(|(label, key, f)| SectionLink { label, href: format!("{base}?show={key}"), current: f == filter })
    .collect();
    let today = app.today();
    TrailPage {
        chrome: chrome(),
        banner: banner(&patient, today, enhanced_review_active),
        filters,
        lines: lines
            .into_iter()
            .map(|l| TrailRow {
                seq: l.seq,
                at: l.at.format("%-d %b %Y %H:%M:%S").to_string(),
                who: l.who,
                role: l.role,
                action: l.action,
                what: l.what,
                outcome: l.outcome,
                detail: l.detail,
            })
            .collect(),
        limit: caldicott_app::trail::TRAIL_LIMIT,
    }
    .into_response()
}

// ---- Practice settings ------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Option<Chrome>,
    csrf: String,
    practice: String,
    saved: bool,
    day: String,
    month: String,
    year: String,
    paused: bool,
    pause_reason: String,
    level: String,
    age: String,
    visible_by_default: bool,
    show_staff_names: bool,
    cutoff: String,
    accept_update_record: bool,
    levels: Vec<(&'static str, &'static str)>,
    errors: Vec<FieldError>,
}

impl Errors for SettingsPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn settings_page_for(
    me: &SignedIn,
    practice: &str,
    input: &caldicott_app::settings::SettingsInput,
    saved: bool,
    errors: Vec<FieldError>,
) -> SettingsPage {
    use caldicott_core::access::AccessLevel;
    SettingsPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        practice: practice.to_owned(),
        saved,
        day: input.switch_on_day.clone(),
        month: input.switch_on_month.clone(),
        year: input.switch_on_year.clone(),
        paused: input.paused,
        pause_reason: input.pause_reason.clone(),
        level: input.default_level.clone(),
        age: input.proxy_review_age.clone(),
        visible_by_default: input.visible_online_by_default,
        show_staff_names: input.show_staff_names_to_patients,
        cutoff: input.cancel_cutoff_hours.clone(),
        accept_update_record: input.accept_update_record,
        levels: [AccessLevel::Full, AccessLevel::Documents, AccessLevel::Detailed, AccessLevel::Summary]
            .into_iter()
            .map(|l| (l.as_str(), l.display()))
            .collect(),
        errors,
    }
}

fn input_of(p: &caldicott_core::practice::Practice) -> caldicott_app::settings::SettingsInput {
    use chrono::Datelike;
    let d = p.online.prospective_switch_on;
    caldicott_app::settings::SettingsInput {
        switch_on_day: d.map(|d| d.day().to_string()).unwrap_or_default(),
        switch_on_month: d.map(|d| d.month().to_string()).unwrap_or_default(),
        switch_on_year: d.map(|d| d.year().to_string()).unwrap_or_default(),
        paused: p.online.paused,
        pause_reason: p.online.pause_reason.clone(),
        default_level: p.online.default_level.as_str().to_owned(),
        proxy_review_age: p.online.proxy_review_age.years().to_string(),
        visible_online_by_default: p.online.visible_online_by_default,
        show_staff_names_to_patients: p.online.show_staff_names_to_patients,
        cancel_cutoff_hours: p.online.cancel_cutoff_hours.to_string(),
        accept_update_record: p.online.accept_update_record,
    }
}

async fn settings_page(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match app.practice_settings(&me.who).await {
        Ok(p) => settings_page_for(&me, &p.name, &input_of(&p), q.contains_key("saved"), Vec::new()).into_response(),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

#[derive(Deserialize)]
struct SettingsForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    switch_on_day: String,
    #[serde(default)]
    switch_on_month: String,
    #[serde(default)]
    switch_on_year: String,
    #[serde(default)]
    paused: Option<String>,
    #[serde(default)]
    pause_reason: String,
    #[serde(default)]
    default_level: String,
    #[serde(default)]
    proxy_review_age: String,
    #[serde(default)]
    visible_online_by_default: Option<String>,
    #[serde(default)]
    show_staff_names_to_patients: Option<String>,
    #[serde(default)]
    cancel_cutoff_hours: String,
    #[serde(default)]
    accept_update_record: Option<String>,
}

async fn save_settings(
    State(app): State<App>,
    Portal(me): Portal,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let input = caldicott_app::settings::SettingsInput {
        switch_on_day: f.switch_on_day,
        switch_on_month: f.switch_on_month,
        switch_on_year: f.switch_on_year,
        paused: f.paused.is_some(),
        pause_reason: f.pause_reason,
        accept_update_record: f.accept_update_record.is_some(),
        default_level: f.default_level,
        proxy_review_age: f.proxy_review_age,
        visible_online_by_default: f.visible_online_by_default.is_some(),
        show_staff_names_to_patients: f.show_staff_names_to_patients.is_some(),
        cancel_cutoff_hours: f.cancel_cutoff_hours,
    };
    match app.change_practice_settings(&me.who, &input).await {
        Ok(Ok(_)) => Redirect::to("/settings?saved").into_response(),
        Ok(Err(problems)) => {
            let errors = problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }).collect();
            (StatusCode::BAD_REQUEST, settings_page_for(&me, &me.practice_name, &input, false, errors)).into_response()
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Filing -----------------------------------------------------------------------------------

pub struct QueueRow {
    pub id: String,
    pub date: String,
    pub patient: String,
    pub nhs_number: String,
    pub kind: &'static str,
    pub text: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "filing.html")]
struct FilingPage {
    chrome: Option<Chrome>,
    items: Vec<QueueRow>,
}

async fn filing_queue(State(app): State<App>, Portal(me): Portal) -> Response {
    match app.filing_queue(&me.who).await {
        Ok(items) => FilingPage {
            chrome: Some((&me).into()),
            items: items
                .into_iter()
                .map(|(e, p)| QueueRow {
                    id: e.id.to_string(),
                    date: long_date(caldicott_core::uk::uk_date(e.entered_at)),
                    patient: p.name.banner(),
                    nhs_number: p.nhs_number.to_string(),
                    kind: kind_label(&e),
                    text: entry_text(&e),
                })
                .collect(),
        }
        .into_response(),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "file.html")]
struct FilePage {
    chrome: Option<Chrome>,
    id: String,
    csrf: String,
    patient: String,
    nhs_digits: String,
    item: EntryRow,
    reasons: Vec<(&'static str, &'static str)>,
    release: String,
    note: String,
    errors: Vec<FieldError>,
    check: Option<CheckView>,
}

impl Errors for FilePage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn file_form(
    app: &App,
    me: &SignedIn,
    entry: &str,
    release: String,
    note: String,
    errors: Vec<FieldError>,
    check: Option<CheckView>,
) -> Response {
    let chrome = || Some(Chrome::from(me));
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return page_error(chrome(), AppError::NotFound("nothing waiting to be filed with that id".into()));
    };
    let (item, patient) = match app.view_item_to_file(&me.who, id).await {
        Ok(x) => x,
        Err(e) => return page_error(chrome(), e),
    };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut row = entry_row(&item, None);
    row.kind = match item.body {
        EntryBody::TestResult { .. } => "result",
        _ => "document",
    };
    (
        status,
        FilePage {
            chrome: chrome(),
            id: item.id.to_string(),
            csrf: me.csrf_token.clone(),
            patient: format!("{} ({})", patient.name.banner(), patient.nhs_number),
            nhs_digits: patient.nhs_number.as_str().to_owned(),
            item: row,
            reasons: REASONS.iter().map(|r| (r.as_str(), r.display())).collect(),
            release,
            note,
            errors,
            check,
        },
    )
        .into_response()
}

async fn file_page(State(app): State<App>, Portal(me): Portal, Path(entry): Path<String>) -> Response {
    file_form(&app, &me, &entry, String::new(), String::new(), Vec::new(), None).await
}

#[derive(Deserialize)]
struct FileForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    release: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    checked: String,
}

async fn file_item(
    State(app): State<App>,
    Portal(me): Portal,
    Path(entry): Path<String>,
    form: Result<Form<FileForm>, FormRejection>,
) -> Response {
    use caldicott_app::redaction::VisibilityChange;
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let release = if f.release == "visible" {
        Some(VisibilityChange::Show { note: f.note.clone() })
    } else {
        caldicott_core::entry::HiddenReason::parse(&f.release)
            .filter(|r| REASONS.contains(r))
            .map(|reason| VisibilityChange::Hide { reason, note: f.note.clone() })
    };
    let mut errors = Vec::new();
    match &release {
        None => {
            errors.push(FieldError { field: "release", message: "Choose whether the patient can see it online".into() })
        }
        Some(VisibilityChange::Hide { note, .. }) if note.trim().is_empty() => {
            errors.push(FieldError { field: "note", message: "Enter a note explaining why it is hidden".into() })
        }
        _ => {}
    }
    let Some(release) = release.filter(|_| errors.is_empty()) else {
        return file_form(&app, &me, &entry, f.release, f.note, errors, None).await;
    };
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return page_error(Some((&me).into()), AppError::NotFound("nothing waiting to be filed with that id".into()));
    };
    // Filed visible for the first time: the redaction assistant reads it first (never blocking).
    let shown = f.checked == "yes";
    if matches!(release, VisibilityChange::Show { .. }) && !shown {
        match app.check_filing(&me.who, id).await {
            Ok(Some(check)) => {
                return file_form(&app, &me, &entry, f.release, f.note, Vec::new(), Some(check.into())).await;
            }
            Ok(None) => {}
            Err(e) => return page_error(Some((&me).into()), e),
        }
    }
    match app.file(&me.who, id, &release, shown).await {
        Ok(()) => Redirect::to("/filing").into_response(),
        Err(AppError::BadRequest(m)) => {
            file_form(&app, &me, &entry, f.release, f.note, vec![FieldError { field: "note", message: m }], None).await
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- The entry-time check --------------------------------------------------------------------

/// The redaction assistant's findings as a form shows them, with who will see the entry.
pub struct CheckView {
    pub highlights: Vec<String>,
    pub onlookers: Vec<(String, String)>,
}

impl From<caldicott_app::entry_check::EntryCheck> for CheckView {
    fn from(c: caldicott_app::entry_check::EntryCheck) -> Self {
        Self {
            highlights: c.highlights,
            onlookers: c
                .onlookers
                .into_iter()
                .map(|o| {
                    let what = match o.not_shown {
                        None => "will see it online as soon as it is saved".to_owned(),
                        Some(why) => format!("will not see it ({why})"),
                    };
                    (o.who, what)
                })
                .collect(),
        }
    }
}

// ---- Recording a consultation ------------------------------------------------------------------

pub struct CodeRow {
    pub number: usize,
    pub field: &'static str,
    pub pick: String,
    pub concept: String,
    pub term: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "consultation.html")]
struct ConsultationPage {
    chrome: Option<Chrome>,
    csrf: String,
    patient: String,
    nhs_digits: String,
    text: String,
    code_rows: Vec<CodeRow>,
    picklist: &'static [(&'static str, &'static str)],
    visible: bool,
    reasons: Vec<(&'static str, &'static str)>,
    reason: String,
    note: String,
    errors: Vec<FieldError>,
    check: Option<CheckView>,
}

impl Errors for ConsultationPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[derive(Deserialize, Default)]
struct ConsultationForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    visible_online: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    pick_1: String,
    #[serde(default)]
    concept_1: String,
    #[serde(default)]
    term_1: String,
    #[serde(default)]
    pick_2: String,
    #[serde(default)]
    concept_2: String,
    #[serde(default)]
    term_2: String,
    #[serde(default)]
    pick_3: String,
    #[serde(default)]
    concept_3: String,
    #[serde(default)]
    term_3: String,
    #[serde(default)]
    checked: String,
}

impl ConsultationForm {
    fn rows(&self) -> [(&String, &String, &String); 3] {
        [
            (&self.pick_1, &self.concept_1, &self.term_1),
            (&self.pick_2, &self.concept_2, &self.term_2),
            (&self.pick_3, &self.concept_3, &self.term_3),
        ]
    }
}

async fn consultation_form(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    f: Option<&ConsultationForm>,
    errors: Vec<FieldError>,
    check: Option<CheckView>,
) -> Response {
    let chrome = || Some(Chrome::from(me));
    let (patient, visible_default) = match app.view_consultation_form(&me.who, nhs).await {
        Ok(x) => x,
        Err(e) => return page_error(chrome(), e),
    };
    let empty = ConsultationForm::default();
    let form = f.unwrap_or(&empty);
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let code_rows = form
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, (pick, concept, term))| CodeRow {
            number: i + 1,
            field: ["code_0", "code_1", "code_2"][i],
            pick: pick.clone(),
            concept: concept.clone(),
            term: term.clone(),
        })
        .collect();
    (
        status,
        ConsultationPage {
            chrome: chrome(),
            csrf: me.csrf_token.clone(),
            patient: format!("{} ({})", patient.name.banner(), patient.nhs_number),
            nhs_digits: patient.nhs_number.as_str().to_owned(),
            text: form.text.clone(),
            code_rows,
            picklist: caldicott_core::snomed::PICKLIST,
            visible: if f.is_some() { form.visible_online.is_some() } else { visible_default },
            reasons: REASONS.iter().map(|r| (r.as_str(), r.display())).collect(),
            reason: form.reason.clone(),
            note: form.note.clone(),
            errors,
            check,
        },
    )
        .into_response()
}

async fn consultation_page(State(app): State<App>, Portal(me): Portal, Path(nhs): Path<String>) -> Response {
    consultation_form(&app, &me, &nhs, None, Vec::new(), None).await
}

async fn add_consultation(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    form: Result<Form<ConsultationForm>, FormRejection>,
) -> Response {
    use caldicott_app::consultation::NewConsultation;
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let input =
        NewConsultation {
            text: f.text.clone(),
            draft: f.status == "draft",
            codes: f
                .rows()
                .into_iter()
                .map(|(pick, concept, term)| {
                    if concept.trim().is_empty() {
                        (pick.clone(), term.clone())
                    } else {
                        (concept.clone(), term.clone())
                    }
                })
                .collect(),
            visible_online: f.visible_online.is_some(),
            hidden_reason: caldicott_core::entry::HiddenReason::parse(&f.reason).filter(|r| REASONS.contains(r)),
            note: f.note.clone(),
            checked: f.checked == "yes",
        };
    // Saved visible for the first time: the redaction assistant reads it first (never blocking).
    if !input.checked && input.visible_online && !input.draft {
        match app.check_consultation(&me.who, &nhs, &input).await {
            Ok(Ok(Some(check))) => {
                return consultation_form(&app, &me, &nhs, Some(&f), Vec::new(), Some(check.into())).await;
            }
            Ok(Ok(None)) => {}
            Ok(Err(problems)) => {
                let errors = problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }).collect();
                return consultation_form(&app, &me, &nhs, Some(&f), errors, None).await;
            }
            Err(e) => return page_error(Some((&me).into()), e),
        }
    }
    match app.add_consultation(&me.who, &nhs, &input).await {
        Ok(Ok(_)) => to_patient(&me, &nhs, ""),
        Ok(Err(problems)) => {
            let errors = problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }).collect();
            consultation_form(&app, &me, &nhs, Some(&f), errors, None).await
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Staff accounts ---------------------------------------------------------------------------

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
) -> Response {
    let members = match app.staff_accounts(&me.who).await {
        Ok(m) => m,
        Err(e) => return page_error(Some(me.into()), e),
    };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    (
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
        .into_response()
}

async fn staff_page(State(app): State<App>, Portal(me): Portal) -> Response {
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

async fn add_staff(
    State(app): State<App>,
    Portal(me): Portal,
    form: Result<Form<StaffForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
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
        Err(e) => page_error(Some((&me).into()), e),
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
    Portal(me): Portal,
    Path(staff): Path<String>,
    form: Result<Form<StaffChangeForm>, FormRejection>,
) -> Response {
    use caldicott_app::staff_admin::AccountChange;
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let change = match f.change.as_str() {
        "deactivate" => AccountChange::Deactivate,
        "reactivate" => AccountChange::Reactivate,
        "reset" => AccountChange::ResetSecondFactor,
        _ => return page_error(Some((&me).into()), AppError::BadRequest("Choose what to change".into())),
    };
    let Ok(id) = staff.parse::<caldicott_core::ids::StaffId>() else {
        return page_error(Some((&me).into()), AppError::NotFound("no such member of staff at this practice".into()));
    };
    match app.change_staff_account(&me.who, id, change).await {
        Ok(()) => Redirect::to("/staff").into_response(),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Registration ---------------------------------------------------------------------------

pub struct TextField {
    pub name: &'static str,
    pub label: &'static str,
    pub hint: Option<&'static str>,
    pub width: &'static str,
    pub value: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "register.html")]
struct RegisterPage {
    chrome: Option<Chrome>,
    csrf: String,
    text_fields: Vec<TextField>,
    birth_day: String,
    birth_month: String,
    birth_year: String,
    sex: String,
    sexes: Vec<(&'static str, &'static str)>,
    errors: Vec<FieldError>,
}

impl Errors for RegisterPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn register_form(me: &SignedIn, r: &caldicott_app::registration::NewRegistration, errors: Vec<FieldError>) -> Response {
    let field = |name, label, hint, width, value: &String| TextField { name, label, hint, width, value: value.clone() };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    (
        status,
        RegisterPage {
            chrome: Some(me.into()),
            csrf: me.csrf_token.clone(),
            text_fields: vec![
                field(
                    "nhs_number",
                    "NHS number",
                    Some("10 digits, for example 943 476 5919"),
                    "nhsuk-input--width-10",
                    &r.nhs_number,
                ),
                field("given", "First name", None, "nhsuk-u-width-two-thirds", &r.given),
                field("family", "Last name", None, "nhsuk-u-width-two-thirds", &r.family),
                field("address_line", "Address", None, "", &r.address_line),
                field("town", "Town or city", None, "nhsuk-u-width-two-thirds", &r.town),
                field("postcode", "Postcode", None, "nhsuk-input--width-10", &r.postcode),
                field("mobile", "Mobile phone number (optional)", None, "nhsuk-input--width-20", &r.mobile),
                field("email", "Email address (optional)", None, "", &r.email),
            ],
            birth_day: r.birth_day.clone(),
            birth_month: r.birth_month.clone(),
            birth_year: r.birth_year.clone(),
            sex: r.sex.clone(),
            sexes: vec![("female", "Female"), ("male", "Male"), ("other", "Other"), ("unknown", "Not known")],
            errors,
        },
    )
        .into_response()
}

async fn register_page(Portal(me): Portal) -> Response {
    if !me.who.role.works_with_patients() {
        return page_error(Some((&me).into()), AppError::Forbidden("only the practice team registers patients".into()));
    }
    register_form(&me, &Default::default(), Vec::new())
}

#[derive(Deserialize)]
struct RegisterForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    nhs_number: String,
    #[serde(default)]
    given: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    birth_day: String,
    #[serde(default)]
    birth_month: String,
    #[serde(default)]
    birth_year: String,
    #[serde(default)]
    sex: String,
    #[serde(default)]
    address_line: String,
    #[serde(default)]
    town: String,
    #[serde(default)]
    postcode: String,
    #[serde(default)]
    mobile: String,
    #[serde(default)]
    email: String,
}

async fn register(
    State(app): State<App>,
    Portal(me): Portal,
    form: Result<Form<RegisterForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let r = caldicott_app::registration::NewRegistration {
        nhs_number: f.nhs_number,
        given: f.given,
        family: f.family,
        birth_day: f.birth_day,
        birth_month: f.birth_month,
        birth_year: f.birth_year,
        sex: f.sex,
        address_line: f.address_line,
        town: f.town,
        postcode: f.postcode,
        mobile: f.mobile,
        email: f.email,
    };
    match app.register_patient(&me.who, &r).await {
        Ok(Ok(p)) => Redirect::to(&format!("/patients/{}", p.nhs_number.as_str())).into_response(),
        Ok(Err(problems)) => register_form(
            &me,
            &r,
            problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }).collect(),
        ),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

#[derive(Deserialize)]
struct DeregisterForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    reason: String,
}

async fn deregister(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    form: Result<Form<DeregisterForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    match app.deregister_patient(&me.who, &nhs, &f.reason).await {
        Ok(()) => to_patient(&me, &nhs, ""),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Linkage credentials: the sign-up letter ------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "linkage_letter.html")]
struct LetterPage {
    chrome: Option<Chrome>,
    nhs_digits: String,
    l: caldicott_app::patient_services::LinkageLetter,
}

#[derive(Deserialize)]
struct LinkageForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    identity: String,
}

async fn issue_linkage(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    form: Result<Form<LinkageForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    match app.issue_linkage(&me.who, &nhs, &f.identity).await {
        Ok(l) => {
            LetterPage { chrome: Some((&me).into()), nhs_digits: l.nhs_number.replace(' ', ""), l }.into_response()
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Passwords: your own, and an administrator's one-time code (ASVS 2.5) --------------------

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

pub(crate) fn field_errors(problems: Vec<caldicott_app::settings::FieldProblem>) -> Vec<FieldError> {
    problems.into_iter().map(|p| FieldError { field: p.field, message: p.message }).collect()
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
    Portal(me): Portal,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
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
    {
        Ok(Ok(())) => Redirect::to("/account/password?done=1").into_response(),
        Ok(Err(problems)) => {
            let page = AccountPasswordPage {
                chrome: Some((&me).into()),
                csrf: me.csrf_token.clone(),
                done: false,
                errors: field_errors(problems),
            };
            (StatusCode::BAD_REQUEST, page).into_response()
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
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
    Portal(me): Portal,
    Path(staff): Path<String>,
    form: Result<Form<StaffChangeForm>, FormRejection>,
) -> Response {
    if checked(&me, form).is_none() {
        return forbidden_form();
    }
    let Ok(id) = staff.parse::<caldicott_core::ids::StaffId>() else {
        return page_error(Some((&me).into()), AppError::NotFound("no such member of staff at this practice".into()));
    };
    match app.reset_staff_password(&me.who, id).await {
        Ok(r) => {
            let expires = caldicott_core::uk::uk_local(r.expires_at).format("%-d %B %Y at %H:%M").to_string();
            ResetCodePage { chrome: Some((&me).into()), r, expires }.into_response()
        }
        Err(e) => page_error(Some((&me).into()), e),
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
    let show_practice = app.practices().await.map(|p| p.len() != 1).unwrap_or(true);
    let page = SignInResetPage {
        chrome: None,
        csrf,
        show_practice,
        ods: String::new(),
        username: String::new(),
        errors: Vec::new(),
    };
    let mut res = page.into_response();
    if let Some(h) = set {
        res.headers_mut().append(header::SET_COOKIE, h);
    }
    res
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
) -> Response {
    let Ok(Form(f)) = form else { return forbidden_form() };
    let (csrf, _) = sign_in_token(&headers);
    if cookie(&headers, SIGN_IN_COOKIE).is_none() || !same(&csrf, &f._csrf) {
        return forbidden_form();
    }
    let reset = caldicott_app::passwords::StaffReset {
        ods: f.ods.clone(),
        username: f.username.clone(),
        code: f.code,
        new_password: f.new_password,
        new_password_again: f.new_password_again,
    };
    match app.reset_password_with_code(&reset, &from).await {
        Ok(Ok(())) => Redirect::to("/sign-in?done=password").into_response(),
        Ok(Err(problems)) => {
            let show_practice = app.practices().await.map(|p| p.len() != 1).unwrap_or(true);
            let page = SignInResetPage {
                chrome: None,
                csrf,
                show_practice,
                ods: f.ods,
                username: f.username,
                errors: field_errors(problems),
            };
            (StatusCode::BAD_REQUEST, page).into_response()
        }
        Err(e) => page_error(None, e),
    }
}

async fn issue_password_letter(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    form: Result<Form<LinkageForm>, FormRejection>,
) -> Response {
    if checked(&me, form).is_none() {
        return forbidden_form();
    }
    match app.issue_password_letter(&me.who, &nhs).await {
        Ok(l) => {
            LetterPage { chrome: Some((&me).into()), nhs_digits: l.nhs_number.replace(' ', ""), l }.into_response()
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Transfer-in: a record from the previous practice (R7, D3, D4) ------------------------------

/// A FHIR Bundle upload, with room for the multipart framing.
pub const UPLOAD_LIMIT: usize = caldicott_app::transfer::MAX_BUNDLE_BYTES + 64 * 1024;

#[derive(Template, WebTemplate)]
#[template(path = "transfer.html")]
struct TransferPage {
    chrome: Option<Chrome>,
    csrf: String,
    clinician: bool,
    done: Option<caldicott_app::transfer::TransferOutcome>,
    errors: Vec<FieldError>,
}

impl Errors for TransferPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn transfer_form(me: &SignedIn, problems: Vec<String>) -> Response {
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let errors = problems.into_iter().map(|message| FieldError { field: "bundle", message }).collect();
    let page = TransferPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        clinician: me.who.role == caldicott_core::staff::Role::Clinician,
        done: None,
        errors,
    };
    (status, page).into_response()
}

async fn transfer_page(Portal(me): Portal) -> Response {
    match caldicott_app::permit(&me.who, Permission::TransferRecordsIn) {
        Ok(()) => transfer_form(&me, Vec::new()),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

#[derive(Deserialize)]
struct TransferForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    bundle: String,
}

/// The CSRF token and the file of an upload: `multipart/form-data` from the page, or a
/// url-encoded form with the Bundle as text (for scripts).
async fn read_upload(app: &App, req: axum::extract::Request) -> Result<(String, Vec<u8>), String> {
    use axum::extract::FromRequest;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let Form(f) = Form::<TransferForm>::from_request(req, app).await.map_err(|e| e.body_text())?;
        return Ok((f._csrf, f.bundle.into_bytes()));
    }
    let too_big = || format!("The file is larger than {} MB", caldicott_app::transfer::MAX_BUNDLE_BYTES / 1024 / 1024);
    let mut form = axum::extract::Multipart::from_request(req, app).await.map_err(|e| e.body_text())?;
    let (mut csrf, mut bundle) = (String::new(), Vec::new());
    while let Some(field) = form.next_field().await.map_err(|_| too_big())? {
        match field.name() {
            Some("_csrf") => csrf = field.text().await.map_err(|_| too_big())?,
            Some("bundle") => bundle = field.bytes().await.map_err(|_| too_big())?.to_vec(),
            _ => {}
        }
    }
    Ok((csrf, bundle))
}

async fn transfer_in(State(app): State<App>, Portal(me): Portal, req: axum::extract::Request) -> Response {
    if let Err(e) = caldicott_app::permit(&me.who, Permission::TransferRecordsIn) {
        return page_error(Some((&me).into()), e);
    }
    let (csrf, bundle) = match read_upload(&app, req).await {
        Ok(v) => v,
        Err(m) => return transfer_form(&me, vec![m]),
    };
    if !same(&me.csrf_token, &csrf) {
        return forbidden_form();
    }
    match app.transfer_in(&me.who, &bundle).await {
        Ok(Ok(done)) => TransferPage {
            chrome: Some((&me).into()),
            csrf: me.csrf_token.clone(),
            clinician: me.who.role == caldicott_core::staff::Role::Clinician,
            done: Some(done),
            errors: Vec::new(),
        }
        .into_response(),
        Ok(Err(problems)) => transfer_form(&me, problems),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Splitting a consultation (R9) ----------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "split.html")]
struct SplitPage {
    chrome: Option<Chrome>,
    back: String,
    action: String,
    csrf: String,
    parts: String,
    errors: Vec<FieldError>,
}

impl Errors for SplitPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn split_form(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    entry: &str,
    parts: Option<String>,
    errors: Vec<FieldError>,
) -> Response {
    let chrome = || Some(Chrome::from(me));
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return page_error(chrome(), AppError::NotFound("no such entry in this patient's record".into()));
    };
    let target = match app.view_entry_to_change(&me.who, nhs, id, "split").await {
        Ok(t) => t,
        Err(e) => return page_error(chrome(), e),
    };
    let EntryBody::Consultation { text, .. } = &target.entry.body else {
        return page_error(chrome(), AppError::BadRequest("only consultations can be split".into()));
    };
    let base = format!("/patients/{}", target.patient.nhs_number.as_str());
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    (
        status,
        SplitPage {
            chrome: chrome(),
            action: format!("{base}/entries/{}/split", target.entry.id),
            back: base,
            csrf: me.csrf_token.clone(),
            parts: parts.unwrap_or_else(|| text.clone()),
            errors,
        },
    )
        .into_response()
}

async fn split_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path((nhs, entry)): Path<(String, String)>,
) -> Response {
    split_form(&app, &me, &nhs, &entry, None, Vec::new()).await
}

#[derive(Deserialize)]
struct SplitForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    parts: String,
}

async fn split(
    State(app): State<App>,
    Portal(me): Portal,
    Path((nhs, entry)): Path<(String, String)>,
    form: Result<Form<SplitForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let Ok(id) = entry.parse::<caldicott_core::ids::EntryId>() else {
        return page_error(Some((&me).into()), AppError::NotFound("no such entry in this patient's record".into()));
    };
    let mut parts = vec![String::new()];
    for line in f.parts.lines() {
        if line.trim() == "---" {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    match app.split_entry(&me.who, &nhs, id, &parts).await {
        Ok(_) => to_patient(&me, &nhs, ""),
        Err(AppError::BadRequest(m)) => {
            split_form(&app, &me, &nhs, &entry, Some(f.parts), vec![FieldError { field: "parts", message: m }]).await
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}
