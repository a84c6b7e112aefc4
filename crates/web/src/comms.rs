//! Linked apps and patient communications: the app registry (administrators), the app-facing
//! linking API, contact preferences with their data-quality list, message presets, and the
//! patient's own list of linked apps. (The online-services-linked alerts these raise are tasks,
//! actioned from the task list in `staff_work`.)

use crate::kernel::{
    checked, csrf_forms, forbidden_form, my_error, page_error, to_patient, Chrome, Errors, FieldError, MyChrome,
    Patient, Portal,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caldicott_app::{App, AppError};
use caldicott_core::appointments::uk_time;
use caldicott_core::ids::{AppLinkId, TaskId};
use serde::Deserialize;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/apps", get(apps_page).post(register_app))
        .route("/apps/{app}", post(change_app))
        .route("/letters/{letter}/posted", post(letter_posted))
        .route("/patients/{nhs_number}/messages/new", get(compose_page))
        .route("/patients/{nhs_number}/messages", post(send_message))
        .route("/patients/{nhs_number}/apps/reset", post(reset_apps))
        .route("/patients/{nhs_number}/contact", post(set_contact))
        .route("/contact-preferences", get(contact_quality))
        .route("/settings/messages", get(presets_page).post(save_preset))
        .route("/my/apps", get(my_apps))
        .route("/my/apps/{link}/revoke", post(revoke_my_app))
}

csrf_forms!(RegisterAppForm, ChangeAppForm, ResetForm, ContactForm, PresetForm);

// ---- The app registry (administrators) ---------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "apps.html")]
struct AppsPage {
    chrome: Option<Chrome>,
    csrf: String,
    apps: Vec<AppRow>,
    created: Option<(String, String, String)>,
    errors: Vec<FieldError>,
}

/// One registered app, as the page lists it.
struct AppRow {
    id: String,
    name: String,
    supplier: String,
    client_id: String,
    registered: String,
    active: bool,
}

impl Errors for AppsPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn apps_view(
    app: &App,
    me: &caldicott_app::session::SignedIn,
    created: Option<(String, String, String)>,
    errors: Vec<FieldError>,
) -> Response {
    match app.registered_apps(&me.who).await {
        Ok(list) => {
            let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
            let page = AppsPage {
                chrome: Some(me.into()),
                csrf: me.csrf_token.clone(),
                apps: list
                    .into_iter()
                    .map(|a| AppRow {
                        id: a.id.to_string(),
                        name: a.name,
                        supplier: a.supplier,
                        client_id: a.client_id,
                        registered: uk_time(a.created_at).format("%-d %b %Y").to_string(),
                        active: a.active,
                    })
                    .collect(),
                created,
                errors,
            };
            (status, page).into_response()
        }
        Err(e) => page_error(Some(me.into()), e),
    }
}

async fn apps_page(State(app): State<App>, Portal(me): Portal) -> Response {
    apps_view(&app, &me, None, Vec::new()).await
}

#[derive(Deserialize)]
struct RegisterAppForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    app_name: String,
    #[serde(default)]
    supplier: String,
    #[serde(default)]
    nhs_login_client_id: String,
}

async fn register_app(
    State(app): State<App>,
    Portal(me): Portal,
    form: Result<Form<RegisterAppForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    match app.register_app(&me.who, &f.app_name, &f.supplier, &f.nhs_login_client_id).await {
        Ok((a, secret)) => apps_view(&app, &me, Some((a.name, a.client_id, secret)), Vec::new()).await,
        Err(AppError::BadRequest(m)) => {
            apps_view(&app, &me, None, vec![FieldError { field: "app_name", message: m }]).await
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}

#[derive(Deserialize)]
struct ChangeAppForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    app_action: String,
}

/// Turns an app off (every link it holds is refused from the next request) or on again.
async fn change_app(
    State(app): State<App>,
    Portal(me): Portal,
    Path(id): Path<String>,
    form: Result<Form<ChangeAppForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let active = match f.app_action.as_str() {
        "deactivate" => false,
        "reactivate" => true,
        _ => return page_error(Some((&me).into()), AppError::BadRequest("Choose to turn it off or on".into())),
    };
    match app.set_app_active(&me.who, &id, active).await {
        Ok(()) => Redirect::to("/apps").into_response(),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- A patient's apps and contact details (from the record) ------------------------------------

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    _csrf: String,
}

async fn reset_apps(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    form: Result<Form<ResetForm>, FormRejection>,
) -> Response {
    let Some(_) = checked(&me, form) else { return forbidden_form() };
    match app.reset_app_links(&me.who, &nhs).await {
        Ok(_) => to_patient(&me, &nhs, "#apps"),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

#[derive(Deserialize)]
struct ContactForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    preferred: String,
    #[serde(default)]
    contact_email: String,
    #[serde(default)]
    contact_mobile: String,
    /// Back to this task after saving (the alert task's own contact form).
    #[serde(default)]
    task: String,
}

async fn set_contact(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    form: Result<Form<ContactForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    match app.set_contact(&me.who, &nhs, &f.preferred, &f.contact_email, &f.contact_mobile).await {
        Ok(Ok(())) => match f.task.parse::<TaskId>() {
            Ok(task) => Redirect::to(&format!("/tasks/{task}")).into_response(),
            Err(_) => to_patient(&me, &nhs, "#contact"),
        },
        Ok(Err(problems)) => page_error(
            Some((&me).into()),
            AppError::BadRequest(problems.into_iter().map(|p| p.message).collect::<Vec<_>>().join(". ")),
        ),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "contact_quality.html")]
struct ContactQualityPage {
    chrome: Option<Chrome>,
    coverage: String,
    rows: Vec<(String, String, &'static str)>,
}

async fn contact_quality(State(app): State<App>, Portal(me): Portal) -> Response {
    match app.contact_quality(&me.who).await {
        Ok(q) => ContactQualityPage {
            chrome: Some((&me).into()),
            coverage: if q.patients_16_plus == 0 {
                "No registered patients aged 16 or over.".into()
            } else {
                format!(
                    "{:.1}% of registered patients aged 16 or over ({} of {}) have a preferred contact method recorded.",
                    q.with_preference as f64 * 100.0 / q.patients_16_plus as f64,
                    q.with_preference,
                    q.patients_16_plus
                )
            },
            rows: q
                .problems
                .into_iter()
                .map(|(p, why)| (format!("{}, {}", p.name.family.to_uppercase(), p.name.given), p.nhs_number.as_str().to_owned(), why))
                .collect(),
        }
        .into_response(),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Message presets -----------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "presets.html")]
struct PresetsPage {
    chrome: Option<Chrome>,
    csrf: String,
    manager: bool,
    presets: Vec<(String, String)>,
    placeholders: Vec<(&'static str, &'static str)>,
    form_name: String,
    form_body: String,
    preview: Option<(String, String)>,
    notice: Option<String>,
    errors: Vec<FieldError>,
}

impl Errors for PresetsPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[allow(clippy::too_many_arguments)]
async fn presets_view(
    app: &App,
    me: &caldicott_app::session::SignedIn,
    name: String,
    body: String,
    preview: Option<(String, String)>,
    notice: Option<String>,
    errors: Vec<FieldError>,
) -> Response {
    match app.message_presets(&me.who).await {
        Ok(list) => {
            let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
            let page = PresetsPage {
                chrome: Some(me.into()),
                csrf: me.csrf_token.clone(),
                manager: me.who.role == caldicott_core::staff::Role::PracticeManager,
                presets: list.into_iter().map(|p| (p.name, p.body)).collect(),
                placeholders: caldicott_core::messages::PLACEHOLDERS.to_vec(),
                form_name: name,
                form_body: body,
                preview,
                notice,
                errors,
            };
            (status, page).into_response()
        }
        Err(e) => page_error(Some(me.into()), e),
    }
}

async fn presets_page(State(app): State<App>, Portal(me): Portal) -> Response {
    let (name, body) = match app.safety_net_preset(me.who.practice).await {
        Ok(p) => (p.name, p.body),
        Err(e) => return page_error(Some((&me).into()), e),
    };
    presets_view(&app, &me, name, body, None, None, Vec::new()).await
}

#[derive(Deserialize)]
struct PresetForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    preset_name: String,
    #[serde(default)]
    preset_body: String,
    #[serde(default)]
    preview_nhs: String,
    #[serde(default)]
    step: String,
}

async fn save_preset(
    State(app): State<App>,
    Portal(me): Portal,
    form: Result<Form<PresetForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    let problem = |field, message: String| vec![FieldError { field, message }];
    if f.step == "preview" {
        return match app.preview_preset(&me.who, &f.preset_body, &f.preview_nhs).await {
            Ok(Ok(p)) => {
                let cost = format!(
                    "As a text message: {} {} ({}), {:.2}p. By email: free.",
                    p.fragments,
                    if p.fragments == 1 { "fragment" } else { "fragments" },
                    if p.gsm { "standard characters" } else { "includes characters outside the SMS alphabet" },
                    p.cost_hundredths as f64 / 100.0
                );
                presets_view(&app, &me, f.preset_name, f.preset_body, Some((p.text, cost)), None, Vec::new()).await
            }
            Ok(Err(e)) => {
                presets_view(
                    &app,
                    &me,
                    f.preset_name,
                    f.preset_body,
                    None,
                    None,
                    problem("preset_body", capital(&e.to_string())),
                )
                .await
            }
            Err(AppError::BadRequest(m) | AppError::NotFound(m)) => {
                presets_view(&app, &me, f.preset_name, f.preset_body, None, None, problem("preview_nhs", capital(&m)))
                    .await
            }
            Err(e) => page_error(Some((&me).into()), e),
        };
    }
    match app.save_preset(&me.who, &f.preset_name, &f.preset_body).await {
        Ok(Ok(p)) => {
            presets_view(&app, &me, p.name.clone(), p.body, None, Some(format!("Saved {}.", p.name)), Vec::new()).await
        }
        Ok(Err(e)) => {
            presets_view(
                &app,
                &me,
                f.preset_name,
                f.preset_body,
                None,
                None,
                problem("preset_body", capital(&e.to_string())),
            )
            .await
        }
        Err(e) => page_error(Some((&me).into()), e),
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

// ---- The patient's linked apps -----------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "my_apps.html")]
struct MyAppsPage {
    me: Option<MyChrome>,
    csrf: String,
    rows: Vec<MyAppRow>,
}

/// One app linked to the patient's record, as they see it.
struct MyAppRow {
    id: String,
    name: String,
    linked: String,
    /// "Disconnected on …" once the link has ended.
    disconnected: Option<String>,
    /// The practice has turned the app off (for every patient) while the link stands.
    turned_off: bool,
}

async fn my_apps(State(app): State<App>, Patient(me): Patient) -> Response {
    match app.my_apps(&me.who).await {
        Ok(list) => MyAppsPage {
            me: Some((&me).into()),
            csrf: me.csrf_token.clone(),
            rows: list
                .into_iter()
                .map(|(l, a)| MyAppRow {
                    id: l.id.to_string(),
                    name: format!("{} ({})", a.name, a.supplier),
                    linked: uk_time(l.linked_at).format("%-d %B %Y").to_string(),
                    disconnected: l.revoked_at.map(|t| format!("Disconnected on {}", uk_time(t).format("%-d %B %Y"))),
                    turned_off: !a.active && l.revoked_at.is_none(),
                })
                .collect(),
        }
        .into_response(),
        Err(e) => my_error(Some((&me).into()), e),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    _csrf: String,
}

async fn revoke_my_app(
    State(app): State<App>,
    Patient(me): Patient,
    Path(id): Path<String>,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return forbidden_form() };
    if !caldicott_app::constant_time_eq(&me.csrf_token, &f._csrf) {
        return forbidden_form();
    }
    let Ok(id) = id.parse::<AppLinkId>() else {
        return my_error(Some((&me).into()), AppError::NotFound("no such linked app".into()));
    };
    match app.revoke_my_app(&me.who, id).await {
        Ok(()) => Redirect::to("/my/apps").into_response(),
        Err(e) => my_error(Some((&me).into()), e),
    }
}

async fn letter_posted(
    State(app): State<App>,
    Portal(me): Portal,
    Path(id): Path<String>,
    form: Result<Form<ResetForm>, FormRejection>,
) -> Response {
    let Some(_) = checked(&me, form) else { return forbidden_form() };
    let Ok(task) = id.parse::<TaskId>() else {
        return page_error(Some((&me).into()), AppError::NotFound("no such task".into()));
    };
    match app.letter_posted(&me.who, task).await {
        Ok(()) => Redirect::to(&format!("/tasks/{task}")).into_response(),
        Err(e) => page_error(Some((&me).into()), e),
    }
}

// ---- Sending a preset to a patient -----------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "compose.html")]
struct ComposePage {
    chrome: Option<Chrome>,
    csrf: String,
    nhs_digits: String,
    presets: Vec<String>,
    chosen: String,
    text: String,
    how: String,
    cost: String,
    can_send: bool,
    sent: bool,
    /// This form's key: the same form submitted twice sends one message.
    send_key: String,
}

async fn compose_view(
    app: &App,
    me: &caldicott_app::session::SignedIn,
    nhs: &str,
    preset: Option<String>,
    sent: bool,
) -> Response {
    let presets = match app.message_presets(&me.who).await {
        Ok(p) => p.into_iter().map(|p| p.name).collect::<Vec<_>>(),
        Err(e) => return page_error(Some(me.into()), e),
    };
    let chosen = preset.filter(|p| presets.contains(p)).or_else(|| presets.first().cloned()).unwrap_or_default();
    match app.view_compose(&me.who, nhs, &chosen).await {
        Ok(c) => ComposePage {
            chrome: Some(me.into()),
            csrf: me.csrf_token.clone(),
            nhs_digits: nhs.chars().filter(char::is_ascii_digit).collect(),
            presets,
            chosen: c.preset,
            text: c.text,
            how: match c.channel {
                Some(caldicott_core::messages::Channel::Email) => format!("By email to {}", c.to),
                Some(caldicott_core::messages::Channel::Sms) => format!("By text message to {}", c.to),
                Some(caldicott_core::messages::Channel::Letter) => format!("By letter to {}", c.to),
                None => "There is no email address, mobile number or postal address on record.".into(),
            },
            cost: if c.fragments > 0 {
                format!(
                    "{} SMS {}, {:.2}p",
                    c.fragments,
                    if c.fragments == 1 { "fragment" } else { "fragments" },
                    c.cost_hundredths as f64 / 100.0
                )
            } else {
                "free".into()
            },
            can_send: c.channel.is_some(),
            sent,
            send_key: uuid::Uuid::now_v7().to_string(),
        }
        .into_response(),
        Err(e) => page_error(Some(me.into()), e),
    }
}

async fn compose_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    compose_view(&app, &me, &nhs, q.get("preset").cloned(), q.contains_key("sent")).await
}

#[derive(Deserialize)]
struct SendForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    preset: String,
    #[serde(default)]
    send_key: String,
}

csrf_forms!(SendForm);

async fn send_message(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    form: Result<Form<SendForm>, FormRejection>,
) -> Response {
    let Some(f) = checked(&me, form) else { return forbidden_form() };
    match app.send_preset(&me.who, &nhs, &f.preset, &f.send_key).await {
        Ok(_) => compose_view(&app, &me, &nhs, Some(f.preset), true).await,
        Err(e) => page_error(Some((&me).into()), e),
    }
}
