//! GP Connect Update Record for staff: the review queue, one message's review (amend, file,
//! reject), and the register of pharmacies allowed to send.

use crate::kernel::{
    csrf_forms, field_errors, long_date, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::session::SignedIn;
use caldicott_app::update_record::{Amend, Listing, Status};
use caldicott_app::{App, AppError};
use caldicott_core::appointments::uk_time;
use caldicott_core::entry::EntryBody;
use serde::Deserialize;

/// The staff pages.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/inbound", get(queue))
        .route("/inbound/senders", get(senders_page).post(add_sender))
        .route("/inbound/{inbound}", get(message_page).post(act))
}

csrf_forms!(ActForm, SenderForm);

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    uk_time(t).format("%-d %b %Y %H:%M").to_string()
}

// ---- The queue -------------------------------------------------------------------------------

struct Row {
    id: String,
    received: String,
    sender: String,
    service: String,
    patient: String,
    nhs: String,
    items: i64,
    status: &'static str,
    replacement: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "inbound.html")]
struct QueuePage {
    chrome: Option<Chrome>,
    to_review: Vec<Row>,
    unmatched: Vec<Row>,
    log: Vec<Row>,
}

fn row(m: Listing) -> Row {
    Row {
        id: m.id.to_string(),
        received: when(m.received_at),
        sender: m.sender_ods,
        service: m.service,
        patient: m.patient_name,
        nhs: m.nhs_number,
        items: m.items,
        status: m.status.display(),
        replacement: m.replaces.is_some(),
    }
}

async fn queue(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let (to_review, unmatched) = app.inbound_queue(&me.who).await.in_page(&me)?;
    let log = app.inbound_log(&me.who).await.in_page(&me)?;
    Ok(QueuePage {
        chrome: Some((&me).into()),
        to_review: to_review.into_iter().map(row).collect(),
        unmatched: unmatched.into_iter().map(row).collect(),
        log: log.into_iter().map(row).collect(),
    }
    .into_response())
}

// ---- One message ---------------------------------------------------------------------------

struct ItemRow {
    index: usize,
    kind: &'static str,
    code: String,
    term: String,
    /// The entry filing will write for the item, field by field.
    entry: Vec<(&'static str, String)>,
}

/// An entry filing will write, field by field, as the review page shows it.
fn entry_fields(code: &Option<caldicott_core::snomed::Coding>, body: &EntryBody) -> Vec<(&'static str, String)> {
    let mut out = vec![(
        "Entry",
        match body {
            EntryBody::MedicationIssue { .. } => "Medication issue",
            EntryBody::Problem { .. } => "Problem",
            EntryBody::Coded { .. } => "Coded entry",
            EntryBody::Consultation { .. } => "Consultation",
            _ => "Entry",
        }
        .to_owned(),
    )];
    if let Some(c) = code {
        out.push(("Code", format!("{} (SNOMED CT {})", c.term, c.concept.as_str())));
    }
    match body {
        EntryBody::MedicationIssue { drug, dosage, quantity, .. } => {
            out.push(("Medicine", drug.clone()));
            out.push(("Dosage", dosage.clone()));
            out.push(("Quantity", quantity.clone()));
        }
        EntryBody::Problem { title, active } => {
            out.push(("Problem", title.clone()));
            out.push(("Status", if *active { "Active" } else { "Past" }.to_owned()));
        }
        EntryBody::Coded { value } => out.push(("Value", value.clone().unwrap_or_default())),
        EntryBody::Consultation { text, .. } => out.push(("Text", text.clone())),
        other => out.push(("Text", other.headline())),
    }
    out
}

#[derive(Template, WebTemplate)]
#[template(path = "inbound_message.html")]
struct MessagePage {
    chrome: Option<Chrome>,
    csrf: String,
    id: String,
    status: &'static str,
    waiting: bool,
    /// Held apart: no registered patient matched it (it may be matched again, or closed).
    unmatched: bool,
    clinician: bool,
    message_id: String,
    received: String,
    via: String,
    sender: String,
    service: String,
    /// The service as the pharmacy sent it: its term and code.
    service_detail: String,
    date: String,
    pharmacist: String,
    pharmacist_role: String,
    /// The registered patient matched: name and the link to their record.
    matched: Option<(String, String)>,
    consultation_entry: Vec<(&'static str, String)>,
    patient: String,
    nhs: String,
    born: String,
    nopat: bool,
    presenting: String,
    items: Vec<ItemRow>,
    original: Vec<String>,
    amendments: Vec<(String, String, String)>,
    replaces: Option<(String, &'static str)>,
    superseded_by: Option<String>,
    changes: Vec<String>,
    decided: Option<String>,
    errors: Vec<FieldError>,
    check: Option<crate::kernel::CheckView>,
    reasons: Vec<(&'static str, &'static str)>,
}

impl Errors for MessagePage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn message_view(app: &App, me: &SignedIn, id: &str, errors: Vec<FieldError>) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return Err(PageError::new(me, AppError::NotFound("no such pharmacy message here".into())));
    };
    let v = app.inbound_view(&me.who, id).await.in_page(me)?;
    let m = &v.message;
    let r = &v.record;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = MessagePage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        id: m.id.to_string(),
        status: m.status.display(),
        waiting: m.status == Status::Pending,
        unmatched: m.status == Status::Unmatched,
        clinician: me.who.role == caldicott_core::staff::Role::Clinician,
        message_id: m.message_id.clone(),
        received: when(m.received_at),
        via: if m.via == "inbox" { "the mailbox inbox".into() } else { "HTTP".into() },
        sender: format!("{} ({})", r.sender_name, r.sender_ods),
        // The heading names the service as the practice knows it (D11's list), not its code.
        service: caldicott_core::update_record::accepted_services()
            .into_iter()
            .find(|(code, _, _)| *code == r.service_code)
            .map_or_else(|| r.service.clone(), |(_, _, name)| name.to_owned()),
        service_detail: format!("{} (SNOMED CT {})", r.service, r.service_code),
        date: long_date(r.consultation_date),
        pharmacist: r.pharmacist.clone(),
        pharmacist_role: r.pharmacist_role.clone(),
        matched: v.patient.as_ref().map(|p| {
            (
                format!("{}, {} (NHS number {})", p.name.family.to_uppercase(), p.name.given, p.nhs_number.as_str()),
                format!("/patients/{}", p.nhs_number.as_str()),
            )
        }),
        consultation_entry: v.to_file.first().map(|(c, b)| entry_fields(c, b)).unwrap_or_default(),
        patient: format!("{}, {}", r.family_name.to_uppercase(), r.given_name),
        nhs: r.nhs_number.as_str().to_owned(),
        born: long_date(r.birth_date),
        nopat: r.nopat,
        presenting: r.presenting_complaint.clone(),
        items: m
            .items
            .iter()
            .enumerate()
            .map(|(index, i)| ItemRow {
                index,
                kind: i.kind.display(),
                code: i.code.as_ref().map(|c| c.concept.as_str().to_owned()).unwrap_or_default(),
                term: i.code.as_ref().map(|c| c.term.clone()).unwrap_or_default(),
                entry: v.to_file.get(index + 1).map(|(c, b)| entry_fields(c, b)).unwrap_or_default(),
            })
            .collect(),
        original: r.items.iter().map(|i| format!("{}: {}", i.kind.display(), i.describe())).collect(),
        amendments: v.amendments.iter().map(|a| (when(a.at), a.by.clone(), a.change.clone())).collect(),
        replaces: v.replaces.as_ref().map(|e| (e.id.to_string(), e.status.display())),
        superseded_by: m.superseded_by.map(|s| s.to_string()),
        changes: v.changes_from_filed.clone(),
        decided: m.decided_at.map(|at| {
            format!(
                "{} on {} by {}{}",
                m.status.display(),
                when(at),
                m.decided_by.clone().unwrap_or_default(),
                m.decision_note.as_deref().filter(|n| !n.is_empty()).map_or(String::new(), |n| format!(": {n}"))
            )
        }),
        errors,
        check: v.entry_check.clone().map(Into::into),
        reasons: crate::kernel::REASONS.iter().map(|r| (r.as_str(), r.display())).collect(),
    };
    Ok((status, page).into_response())
}

async fn message_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    message_view(&app, &me, &id, Vec::new()).await
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    _csrf: String,
    /// remove, recode, file or reject.
    #[serde(default)]
    inbound_action: String,
    #[serde(default)]
    item: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    term: String,
    #[serde(default)]
    reason: String,
    /// When filing: hide online with this reason (empty: as the practice's default says).
    #[serde(default)]
    hide_reason: String,
    #[serde(default)]
    note: String,
}

async fn act(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<ActForm>,
) -> Result<Response, PageError> {
    let Ok(uuid) = id.parse::<uuid::Uuid>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such pharmacy message here".into())));
    };
    let item = || f.item.trim().parse::<usize>().map_err(|_| AppError::BadRequest("choose an item".into()));
    let done: Result<Result<(), Vec<caldicott_app::settings::FieldProblem>>, AppError> = match f.inbound_action.as_str()
    {
        "remove" => match item() {
            Ok(item) => app.amend_inbound(&me.who, uuid, &Amend::Remove { item }).await,
            Err(e) => Err(e),
        },
        "recode" => match item() {
            Ok(item) => {
                app.amend_inbound(&me.who, uuid, &Amend::Recode { item, code: f.code.clone(), term: f.term.clone() })
                    .await
            }
            Err(e) => Err(e),
        },
        "file" => match f.hide_reason.trim() {
            "" => app.file_inbound(&me.who, uuid).await.map(|_| Ok(())),
            r => match caldicott_core::entry::HiddenReason::parse(r).filter(|r| crate::kernel::REASONS.contains(r)) {
                Some(reason) if !f.note.trim().is_empty() => {
                    app.file_inbound_as(&me.who, uuid, Some((reason, f.note.clone()))).await.map(|_| Ok(()))
                }
                Some(_) => Ok(Err(vec![caldicott_app::settings::FieldProblem {
                    field: "note",
                    message: "Enter a note explaining why it is hidden online".into(),
                }])),
                None => Err(AppError::BadRequest("choose why it is hidden online".into())),
            },
        },
        "reject" => app.reject_inbound(&me.who, uuid, &f.reason).await,
        "match" => match app.match_inbound_again(&me.who, uuid).await {
            Ok(Ok(_)) => Ok(Ok(())),
            Ok(Err(why)) => Ok(Err(vec![caldicott_app::settings::FieldProblem { field: "match", message: why }])),
            Err(e) => Err(e),
        },
        _ => Err(AppError::BadRequest("choose what to do with the message".into())),
    };
    match done.in_page(&me)? {
        Ok(()) if matches!(f.inbound_action.as_str(), "file" | "reject") => {
            Ok(Redirect::to("/inbound?done").into_response())
        }
        Ok(()) => Ok(Redirect::to(&format!("/inbound/{uuid}")).into_response()),
        Err(problems) => {
            let errors = field_errors(problems);
            message_view(&app, &me, &id, errors).await
        }
    }
}

// ---- Senders -------------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "senders.html")]
struct SendersPage {
    chrome: Option<Chrome>,
    csrf: String,
    senders: Vec<(String, String, String, String)>,
    created: Option<(String, String, String)>,
    errors: Vec<FieldError>,
}

impl Errors for SendersPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn senders_view(
    app: &App,
    me: &SignedIn,
    created: Option<(String, String, String)>,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let list = app.senders(&me.who).await.in_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = SendersPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        senders: list
            .into_iter()
            .map(|s| (s.ods_code, s.name, s.client_id, uk_time(s.created_at).format("%-d %b %Y").to_string()))
            .collect(),
        created,
        errors,
    };
    Ok((status, page).into_response())
}

async fn senders_page(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    senders_view(&app, &me, None, Vec::new()).await
}

#[derive(Deserialize)]
struct SenderForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    sender_ods: String,
    #[serde(default)]
    sender_name: String,
}

async fn add_sender(State(app): State<App>, PortalForm(me, f): PortalForm<SenderForm>) -> Result<Response, PageError> {
    match app.register_sender(&me.who, &f.sender_ods, &f.sender_name).await {
        Ok((s, secret)) => senders_view(&app, &me, Some((s.ods_code, s.client_id, secret)), Vec::new()).await,
        Err(AppError::BadRequest(m)) | Err(AppError::Conflict(m)) => {
            senders_view(&app, &me, None, vec![FieldError { field: "sender_ods", message: m }]).await
        }
        Err(e) => Err(PageError::new(&me, e)),
    }
}
