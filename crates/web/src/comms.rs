//! Linked apps and patient communications: the app registry (administrators), the app-facing
//! linking API, contact preferences with their data-quality list, message presets, and the
//! patient's own list of linked apps. (The online-services-linked alerts these raise are tasks,
//! actioned from the task list in `staff_work`.)

use crate::kernel::{
    csrf_forms, to_patient, Chrome, Errors, FieldError, InMyPage, InPage, MyChrome, MyPageError, PageError, Patient,
    Portal, PortalForm,
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
        .route("/apps/token-exchange", post(set_token_exchange))
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

csrf_forms!(RegisterAppForm, ChangeAppForm, TokenExchangeForm, ResetForm, ContactForm, PresetForm);

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
    /// Whether it may exchange its users' NHS login ID tokens, and for which NHS login client.
    exchange: Option<String>,
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
) -> Result<Response, PageError> {
    let list = app.registered_apps(&me.who).await.in_page(me)?;
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
                exchange: a.exchange_key.is_some().then(|| a.nhs_login_client_id.unwrap_or_default()),
            })
            .collect(),
        created,
        errors,
    };
    Ok((status, page).into_response())
}

async fn apps_page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
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
    PortalForm(me, f): PortalForm<RegisterAppForm>,
) -> Result<Response, PageError> {
    match app.register_app(&me.who, &f.app_name, &f.supplier, &f.nhs_login_client_id).await {
        Ok((a, secret)) => apps_view(&app, &me, Some((a.name, a.client_id, secret)), Vec::new()).await,
        Err(AppError::BadRequest(m)) => {
            apps_view(&app, &me, None, vec![FieldError { field: "app_name", message: m }]).await
        }
        Err(e) => Err(PageError::new(&me, e)),
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
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<ChangeAppForm>,
) -> Result<Response, PageError> {
    let active = match f.app_action.as_str() {
        "deactivate" => false,
        "reactivate" => true,
        _ => return Err(PageError::new(&me, AppError::BadRequest("Choose to turn it off or on".into()))),
    };
    app.set_app_active(&me.who, &id, active).await.in_page(&me)?;
    Ok(Redirect::to("/apps").into_response())
}

#[derive(Deserialize)]
struct TokenExchangeForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    exchange_app: String,
    #[serde(default)]
    exchange_client_id: String,
    #[serde(default)]
    exchange_key: String,
}

/// Lets an app exchange its users' NHS login ID tokens (NHS England's API platform, for the NHS
/// App), or stops it when the key is left empty.
async fn set_token_exchange(
    State(app): State<App>,
    PortalForm(me, f): PortalForm<TokenExchangeForm>,
) -> Result<Response, PageError> {
    if f.exchange_app.is_empty() {
        let m = "Choose the app".to_owned();
        return apps_view(&app, &me, None, vec![FieldError { field: "exchange_app", message: m }]).await;
    }
    match app.set_app_token_exchange(&me.who, &f.exchange_app, &f.exchange_client_id, &f.exchange_key).await {
        Ok(()) => Ok(Redirect::to("/apps").into_response()),
        Err(AppError::BadRequest(m)) => {
            apps_view(&app, &me, None, vec![FieldError { field: "exchange_key", message: m }]).await
        }
        Err(e) => Err(PageError::new(&me, e)),
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
    Path(nhs): Path<String>,
    PortalForm(me, _): PortalForm<ResetForm>,
) -> Result<Response, PageError> {
    app.reset_app_links(&me.who, &nhs).await.in_page(&me)?;
    Ok(to_patient(&me, &nhs, "#apps"))
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
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<ContactForm>,
) -> Result<Response, PageError> {
    match app.set_contact(&me.who, &nhs, &f.preferred, &f.contact_email, &f.contact_mobile).await.in_page(&me)? {
        Ok(()) => match f.task.parse::<TaskId>() {
            Ok(task) => Ok(Redirect::to(&format!("/tasks/{task}")).into_response()),
            Err(_) => Ok(to_patient(&me, &nhs, "#contact")),
        },
        Err(problems) => Err(PageError::new(
            &me,
            AppError::BadRequest(problems.into_iter().map(|p| p.message).collect::<Vec<_>>().join(". ")),
        )),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "contact_quality.html")]
struct ContactQualityPage {
    chrome: Option<Chrome>,
    coverage: String,
    rows: Vec<(String, String, &'static str)>,
}

async fn contact_quality(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let q = app.contact_quality(&me.who).await.in_page(&me)?;
    Ok(ContactQualityPage {
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
            .map(|(p, why)| {
                (format!("{}, {}", p.name.family.to_uppercase(), p.name.given), p.nhs_number.as_str().to_owned(), why)
            })
            .collect(),
    }
    .into_response())
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
) -> Result<Response, PageError> {
    let list = app.message_presets(&me.who).await.in_page(me)?;
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
    Ok((status, page).into_response())
}

async fn presets_page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let p = app.safety_net_preset(me.who.practice).await.in_page(&me)?;
    presets_view(&app, &me, p.name, p.body, None, None, Vec::new()).await
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

async fn save_preset(State(app): State<App>, PortalForm(me, f): PortalForm<PresetForm>) -> Result<Response, PageError> {
    let problem = |field, message: String| vec![FieldError { field, message }];
    if f.step == "preview" {
        let (preview, errors) = match app.preview_preset(&me.who, &f.preset_body, &f.preview_nhs).await {
            Ok(Ok(p)) => {
                let cost = format!(
                    "As a text message: {} {} ({}), {:.2}p. By email: free.",
                    p.fragments,
                    if p.fragments == 1 { "fragment" } else { "fragments" },
                    if p.gsm { "standard characters" } else { "includes characters outside the SMS alphabet" },
                    p.cost_hundredths as f64 / 100.0
                );
                (Some((p.text, cost)), Vec::new())
            }
            Ok(Err(e)) => (None, problem("preset_body", capital(&e.to_string()))),
            Err(AppError::BadRequest(m) | AppError::NotFound(m)) => (None, problem("preview_nhs", capital(&m))),
            Err(e) => return Err(PageError::new(&me, e)),
        };
        return presets_view(&app, &me, f.preset_name, f.preset_body, preview, None, errors).await;
    }
    match app.save_preset(&me.who, &f.preset_name, &f.preset_body).await.in_page(&me)? {
        Ok(p) => {
            presets_view(&app, &me, p.name.clone(), p.body, None, Some(format!("Saved {}.", p.name)), Vec::new()).await
        }
        Err(e) => {
            let errors = problem("preset_body", capital(&e.to_string()));
            presets_view(&app, &me, f.preset_name, f.preset_body, None, None, errors).await
        }
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

async fn my_apps(State(app): State<App>, Patient(me): Patient) -> Result<Response, MyPageError> {
    let list = app.my_apps(&me.who).await.in_my_page(&me)?;
    Ok(MyAppsPage {
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
    .into_response())
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
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    if !caldicott_app::constant_time_eq(&me.csrf_token, &f._csrf) {
        return Err(MyPageError::form_expired());
    }
    let Ok(id) = id.parse::<AppLinkId>() else {
        return Err(MyPageError::new(&me, AppError::NotFound("no such linked app".into())));
    };
    app.revoke_my_app(&me.who, id).await.in_my_page(&me)?;
    Ok(Redirect::to("/my/apps").into_response())
}

async fn letter_posted(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, _): PortalForm<ResetForm>,
) -> Result<Response, PageError> {
    let Ok(task) = id.parse::<TaskId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such task".into())));
    };
    app.letter_posted(&me.who, task).await.in_page(&me)?;
    Ok(Redirect::to(&format!("/tasks/{task}")).into_response())
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
) -> Result<Response, PageError> {
    let presets = app.message_presets(&me.who).await.in_page(me)?.into_iter().map(|p| p.name).collect::<Vec<_>>();
    let chosen = preset.filter(|p| presets.contains(p)).or_else(|| presets.first().cloned()).unwrap_or_default();
    let c = app.view_compose(&me.who, nhs, &chosen).await.in_page(me)?;
    Ok(ComposePage {
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
    .into_response())
}

async fn compose_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, PageError> {
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
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<SendForm>,
) -> Result<Response, PageError> {
    app.send_preset(&me.who, &nhs, &f.preset, &f.send_key).await.in_page(&me)?;
    compose_view(&app, &me, &nhs, Some(f.preset), true).await
}
