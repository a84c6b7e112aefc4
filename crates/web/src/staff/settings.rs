//! The practice's online-services settings (practice managers): the prospective switch-on date,
//! pausing automatic access, the default level, the proxy review age and the rest.

use crate::kernel::{csrf_forms, field_errors, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::session::SignedIn;
use caldicott_app::App;
use serde::Deserialize;
use std::collections::HashMap;

pub(super) fn routes() -> Router<App> {
    Router::new().route("/settings", get(settings_page).post(save_settings))
}

csrf_forms!(SettingsForm);

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
    gp_connect_structured: bool,
    gp_connect_documents: bool,
    gp_connect_asid: String,
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
        gp_connect_structured: input.gp_connect_structured,
        gp_connect_documents: input.gp_connect_documents,
        gp_connect_asid: input.gp_connect_asid.clone(),
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
        gp_connect_structured: p.online.gp_connect_structured,
        gp_connect_documents: p.online.gp_connect_documents,
        gp_connect_asid: p.online.gp_connect_asid.as_ref().map(|a| a.as_str().to_owned()).unwrap_or_default(),
    }
}

async fn settings_page(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let p = app.practice_settings(&me.who).await.in_page(&me)?;
    Ok(settings_page_for(&me, &p.name, &input_of(&p), q.contains_key("saved"), Vec::new()).into_response())
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
    #[serde(default)]
    gp_connect_structured: Option<String>,
    #[serde(default)]
    gp_connect_documents: Option<String>,
    #[serde(default)]
    gp_connect_asid: String,
}

async fn save_settings(
    State(app): State<App>,
    PortalForm(me, f): PortalForm<SettingsForm>,
) -> Result<Response, PageError> {
    let input = caldicott_app::settings::SettingsInput {
        switch_on_day: f.switch_on_day,
        switch_on_month: f.switch_on_month,
        switch_on_year: f.switch_on_year,
        paused: f.paused.is_some(),
        pause_reason: f.pause_reason,
        accept_update_record: f.accept_update_record.is_some(),
        gp_connect_structured: f.gp_connect_structured.is_some(),
        gp_connect_documents: f.gp_connect_documents.is_some(),
        gp_connect_asid: f.gp_connect_asid,
        default_level: f.default_level,
        proxy_review_age: f.proxy_review_age,
        visible_online_by_default: f.visible_online_by_default.is_some(),
        show_staff_names_to_patients: f.show_staff_names_to_patients.is_some(),
        cancel_cutoff_hours: f.cancel_cutoff_hours,
    };
    Ok(match app.change_practice_settings(&me.who, &input).await.in_page(&me)? {
        Ok(_) => Redirect::to("/settings?saved").into_response(),
        Err(problems) => {
            let errors = field_errors(problems);
            (StatusCode::BAD_REQUEST, settings_page_for(&me, &me.practice_name, &input, false, errors)).into_response()
        }
    })
}
