//! Registering a patient at the practice, and ending a registration.

use crate::kernel::{
    csrf_forms, field_errors, to_patient, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm,
};
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
        .route("/patients/new", get(register_page))
        .route("/patients", post(register))
        .route("/patients/{nhs_number}/deregister", post(deregister))
}

csrf_forms!(RegisterForm, DeregisterForm);

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

async fn register_page(Portal(me): Portal) -> Result<Response, PageError> {
    if !me.who.role.works_with_patients() {
        return Err(PageError::new(&me, AppError::Forbidden("only the practice team registers patients".into())));
    }
    Ok(register_form(&me, &Default::default(), Vec::new()))
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

async fn register(State(app): State<App>, PortalForm(me, f): PortalForm<RegisterForm>) -> Result<Response, PageError> {
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
    Ok(match app.register_patient(&me.who, &r).await.in_page(&me)? {
        Ok(p) => Redirect::to(&format!("/patients/{}", p.nhs_number.as_str())).into_response(),
        Err(problems) => register_form(&me, &r, field_errors(problems)),
    })
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
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<DeregisterForm>,
) -> Result<Response, PageError> {
    app.deregister_patient(&me.who, &nhs, &f.reason).await.in_page(&me)?;
    Ok(to_patient(&me, &nhs, ""))
}
