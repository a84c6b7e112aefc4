//! Staff instant messages: the inbox with search and unread marks, writing a message (asked
//! first whether to link it to a patient it names), one message, and "delete" (kept, recorded).
//! New messages show in the header count on every page; with JavaScript the count refreshes by
//! polling `/chat/unread`, without it on the next page.

use crate::kernel::{csrf_forms, field_errors, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use caldicott_app::chat::{Compose, Sent, TEAMS};
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::appointments::uk_time;
use serde::Deserialize;
use std::collections::HashMap;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/chat", get(inbox).post(send))
        .route("/chat/unread", get(unread))
        .route("/chat/{chat}", get(message))
        .route("/chat/{chat}/delete", post(delete))
}

csrf_forms!(SendForm, DeleteForm);

struct Row {
    id: String,
    when: String,
    from: String,
    to: String,
    body: String,
    unread: bool,
    about: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "chat.html")]
struct InboxPage {
    chrome: Option<Chrome>,
    csrf: String,
    rows: Vec<Row>,
    q: String,
    recipients: Vec<(String, String)>,
    to: String,
    body: String,
    on_screen: String,
    /// The patient the message names, when the sender is being asked whether to link it.
    ask: Option<(String, String)>,
    sent: bool,
    errors: Vec<FieldError>,
}

impl Errors for InboxPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn inbox_view(
    app: &App,
    me: &SignedIn,
    q: &str,
    draft: &Compose,
    ask: Option<(String, String)>,
    sent: bool,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let (list, people) = (app.staff_inbox(&me.who, q).await, app.chat_recipients(&me.who).await);
    let (list, people) = (list.in_page(me)?, people.in_page(me)?);
    let names: HashMap<String, String> = people.iter().map(|(id, n)| (id.to_string(), n.clone())).collect();
    let mut recipients: Vec<(String, String)> =
        TEAMS.iter().map(|(k, v)| (format!("team:{k}"), format!("Team: {v}"))).collect();
    recipients
        .extend(people.iter().filter(|(id, _)| *id != me.who.staff).map(|(id, n)| (format!("staff:{id}"), n.clone())));
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = InboxPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        rows: list
            .into_iter()
            .map(|(m, read)| Row {
                id: m.id.to_string(),
                when: uk_time(m.sent_at).format("%-d %b %H:%M").to_string(),
                to: match (&m.to_staff, &m.to_team) {
                    (Some(s), _) => names.get(&s.to_string()).cloned().unwrap_or_else(|| "a colleague".into()),
                    (_, Some(t)) => {
                        format!("Team: {}", TEAMS.iter().find(|(k, _)| k == t).map_or(t.as_str(), |(_, v)| v))
                    }
                    _ => String::new(),
                },
                unread: !read && m.sender != me.who.staff,
                from: m.sender_name,
                body: m.body.chars().take(140).collect(),
                about: m.patient.is_some(),
            })
            .collect(),
        q: q.to_owned(),
        recipients,
        to: draft.to.clone(),
        body: draft.body.clone(),
        on_screen: draft.on_screen.clone(),
        ask,
        sent,
        errors,
    };
    Ok((status, page).into_response())
}

async fn inbox(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let draft = Compose { on_screen: q.get("about").cloned().unwrap_or_default(), ..Default::default() };
    inbox_view(&app, &me, q.get("q").map_or("", String::as_str), &draft, None, q.contains_key("sent"), Vec::new()).await
}

#[derive(Deserialize)]
struct SendForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    on_screen: String,
    /// "yes" or "no" once asked; the patient's NHS number comes with "yes".
    #[serde(default)]
    link: String,
    #[serde(default)]
    patient: String,
}

async fn send(State(app): State<App>, PortalForm(me, f): PortalForm<SendForm>) -> Result<Response, PageError> {
    let compose = Compose {
        to: f.to,
        body: f.body,
        patient: f.patient,
        link: match f.link.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
        on_screen: f.on_screen,
    };
    match app.send_staff_message(&me.who, &compose).await.in_page(&me)? {
        Ok(Sent::Sent(_)) => Ok(Redirect::to("/chat?sent").into_response()),
        Ok(Sent::AskToLink(p)) => {
            let ask = Some((p.name.banner(), p.nhs_number.as_str().to_owned()));
            inbox_view(&app, &me, "", &compose, ask, false, Vec::new()).await
        }
        Err(problems) => {
            let errors = field_errors(problems);
            inbox_view(&app, &me, "", &compose, None, false, errors).await
        }
    }
}

/// `GET /chat/unread`: `{"unread": n}`, for the header count.
async fn unread(
    State(app): State<App>,
    crate::kernel::QuietPortal(me): crate::kernel::QuietPortal,
) -> Result<Response, PageError> {
    let n = app.unread_staff_messages(&me.who).await.in_page(&me)?;
    Ok(Json(serde_json::json!({ "unread": n })).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "chat_message.html")]
struct MessagePage {
    chrome: Option<Chrome>,
    csrf: String,
    id: String,
    from: String,
    when: String,
    body: String,
    patient: Option<(String, String)>,
}

async fn message(State(app): State<App>, Portal(me): Portal, Path(id): Path<String>) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such message".into())));
    };
    let (m, patient) = app.staff_message(&me.who, id).await.in_page(&me)?;
    Ok(MessagePage {
        chrome: Some((&me).into()),
        csrf: me.csrf_token.clone(),
        id: m.id.to_string(),
        from: m.sender_name,
        when: uk_time(m.sent_at).format("%-d %B %Y %H:%M").to_string(),
        body: m.body,
        patient: patient.map(|p| (p.name.banner(), p.nhs_number.as_str().to_owned())),
    }
    .into_response())
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    _csrf: String,
}

async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, _): PortalForm<DeleteForm>,
) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such message".into())));
    };
    app.delete_staff_message(&me.who, id).await.in_page(&me)?;
    Ok(Redirect::to("/chat").into_response())
}
