//! Staff pages for the practice's daily work with patients' online requests: the appointment
//! book (plan clinics, see and cancel bookings), the task list (repeat prescription requests and
//! messages, decided by clinicians; online-services-linked alerts, one or many at once) and a
//! patient's nominated pharmacy.

use crate::kernel::{
    csrf_forms, decision_text, field_errors, method_choices, method_label, to_patient, Chrome, Errors, FieldError,
    InPage, PageError, Portal, PortalForm,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caldicott_app::appointments::NewClinic;
use caldicott_app::apps::AlertOutcome;
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::appointments::{uk_time, Attendance, OrganisationType, SlotType};
use caldicott_core::ids::*;
use caldicott_core::staff::Role;
use caldicott_core::tasks::{ItemDecision, Task, TaskBody};
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::HashMap;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/appointments", get(book))
        .route("/appointments/clinics", post(add_clinic))
        .route("/appointments/{appointment}/cancel", post(cancel))
        .route("/appointments/{appointment}/attendance", post(attendance))
        .route("/appointments/slots/{slot}/book", get(slot_page).post(book_slot))
        .route("/appointments/slots/{slot}/online", post(slot_online))
        .route("/tasks", get(tasks))
        .route("/tasks/{task}", get(task_page).post(act_on_task))
        .route("/alerts/{alert}", post(action_alert))
        .route("/alerts", post(action_alerts))
        .route("/patients/{nhs_number}/pharmacy", post(nominate))
        .route("/patients/{nhs_number}/proxies", get(proxies).post(add_proxy))
        .route("/patients/{nhs_number}/proxies/{link}", post(change_proxy))
        .route("/patients/{nhs_number}/communications", get(communications))
        .route("/messages/failed", get(failed_messages))
        .route("/messages/{message}/retry", post(retry_message))
}

csrf_forms!(ClinicForm, CancelForm, TaskForm, AlertForm, PharmacyForm, SlotBookForm, OnlineForm, AttendanceForm);

// ---- The appointment book -----------------------------------------------------------------------

pub struct BookRow {
    pub time: String,
    pub clinician: String,
    pub kind: &'static str,
    pub online: bool,
    /// Other care settings may book it through GP Connect.
    pub others: bool,
    /// Which of them, when the practice narrowed it ("Only urgent care").
    pub others_only: Option<String>,
    /// What a GP Connect booker said it is for (description, then comment).
    pub reason: Option<String>,
    pub patient: Option<(String, String)>,
    pub booked_by: String,
    pub appointment: Option<String>,
    pub patient_id: String,
    pub slot_id: String,
    /// Free and not started: the practice can book it for a patient.
    pub can_book: bool,
    /// Not started: its online offer can change.
    pub can_change_online: bool,
    /// Booked and started: whether the patient came can be recorded.
    pub can_record_attendance: bool,
    /// What was recorded, in words.
    pub attendance: Option<&'static str>,
}

pub struct BookDay {
    pub heading: String,
    pub rows: Vec<BookRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "appointments.html")]
struct BookPage {
    chrome: Option<Chrome>,
    csrf: String,
    from: String,
    earlier: String,
    later: String,
    days: Vec<BookDay>,
    clinicians: Vec<(String, String)>,
    slot_types: Vec<(&'static str, &'static str)>,
    form: ClinicForm,
    errors: Vec<FieldError>,
    notice: Option<String>,
}

impl Errors for BookPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[derive(Deserialize, Default, Clone)]
struct ClinicForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    clinician: String,
    #[serde(default)]
    day: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    year: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    slot_minutes: String,
    #[serde(default)]
    slot_type: String,
    #[serde(default)]
    online_share: String,
    #[serde(default)]
    others_bookable: Option<String>,
    /// Kept for GP practices (ticked) …
    #[serde(default)]
    others_gp_practice: Option<String>,
    /// … or for urgent care.
    #[serde(default)]
    others_urgent_care: Option<String>,
    /// Kept for these organisations: ODS codes, separated by commas or spaces.
    #[serde(default)]
    others_ods: String,
    /// At most this many of its slots booked by them at once (empty: no limit).
    #[serde(default)]
    others_limit: String,
    /// Each slot offered to them from this many hours before it starts (empty: at once).
    #[serde(default)]
    others_release_hours: String,
    #[serde(default)]
    location: String,
}

/// What a booker from another care setting said the appointment is for.
fn booking_reason(a: &caldicott_core::appointments::Appointment) -> Option<String> {
    match (a.description.as_deref(), a.comment.as_deref()) {
        (Some(d), Some(c)) => Some(format!("{d} ({c})")),
        (Some(d), None) => Some(d.to_owned()),
        (None, Some(c)) => Some(c.to_owned()),
        (None, None) => None,
    }
}

async fn book_page(
    app: &App,
    me: &SignedIn,
    from: NaiveDate,
    form: ClinicForm,
    errors: Vec<FieldError>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let lines = app.appointment_book(&me.who, from, 7).await.in_page(me)?;
    let now = app.now();
    let staff = app.practice_staff(&me.who).await.in_page(me)?;
    let mut days: Vec<BookDay> = Vec::new();
    for l in lines {
        let local = uk_time(l.slot.starts_at);
        let heading = local.format("%A %-d %B %Y").to_string();
        if days.last().map(|d| &d.heading) != Some(&heading) {
            days.push(BookDay { heading: heading.clone(), rows: Vec::new() });
        }
        let started = l.slot.starts_at <= now;
        let row = BookRow {
            slot_id: l.slot.id.to_string(),
            can_book: l.booking.is_none() && !started,
            can_change_online: !started,
            can_record_attendance: l.booking.is_some() && started,
            attendance: l.booking.as_ref().and_then(|(a, _)| a.attendance).map(|a| a.display()),
            time: local.format("%H:%M").to_string(),
            clinician: format!("{} · {}", l.slot.clinician_name, l.slot.location),
            kind: l.slot.slot_type.display(),
            online: l.slot.online_bookable,
            others: l.slot.others_bookable,
            others_only: l.slot.others_bookable_by.describe(),
            reason: l.booking.as_ref().and_then(|(a, _)| booking_reason(a)),
            booked_by: l.booking.as_ref().map(|(a, _)| a.booked_by.clone()).unwrap_or_default(),
            appointment: l.booking.as_ref().map(|(a, _)| a.id.to_string()),
            patient_id: l.booking.as_ref().map(|(_, p)| p.id.to_string()).unwrap_or_default(),
            patient: l.booking.map(|(_, p)| {
                (format!("{}, {}", p.name.family.to_uppercase(), p.name.given), p.nhs_number.as_str().to_owned())
            }),
        };
        if let Some(d) = days.last_mut() {
            d.rows.push(row);
        }
    }
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = BookPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        from: from.format("%-d %B %Y").to_string(),
        earlier: (from - chrono::Duration::days(7)).to_string(),
        later: (from + chrono::Duration::days(7)).to_string(),
        days,
        clinicians: staff
            .into_iter()
            .filter(|s| s.active && s.role == Role::Clinician)
            .map(|s| (s.id.to_string(), s.display_name))
            .collect(),
        slot_types: SlotType::ALL.iter().map(|t| (t.as_str(), t.display())).collect(),
        form,
        errors,
        notice,
    };
    Ok((status, page).into_response())
}

async fn book(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let today = app.today();
    let from = q.get("from").and_then(|d| d.parse::<NaiveDate>().ok()).unwrap_or(today);
    let notice = q
        .get("added")
        .map(|n| format!("Clinic added with {}.", crate::kernel::count(n, "slot", "slots")))
        .or_else(|| q.contains_key("booked").then(|| "Appointment booked.".to_owned()));
    let form = ClinicForm {
        slot_minutes: "15".into(),
        start: "09:00".into(),
        end: "12:00".into(),
        online_share: "50".into(),
        ..Default::default()
    };
    book_page(&app, &me, from, form, Vec::new(), notice).await
}

async fn add_clinic(State(app): State<App>, PortalForm(me, f): PortalForm<ClinicForm>) -> Result<Response, PageError> {
    let input = NewClinic {
        clinician: f.clinician.clone(),
        day: f.day.clone(),
        month: f.month.clone(),
        year: f.year.clone(),
        start: f.start.clone(),
        end: f.end.clone(),
        slot_minutes: f.slot_minutes.clone(),
        slot_type: f.slot_type.clone(),
        online_share: f.online_share.clone(),
        others_bookable: f.others_bookable.is_some(),
        others_types: [
            (f.others_gp_practice.is_some(), OrganisationType::GpPractice),
            (f.others_urgent_care.is_some(), OrganisationType::UrgentCare),
        ]
        .into_iter()
        .filter(|(ticked, _)| *ticked)
        .map(|(_, t)| t.code().to_owned())
        .collect(),
        others_ods: f.others_ods.clone(),
        others_limit: f.others_limit.clone(),
        others_release_hours: f.others_release_hours.clone(),
        location: f.location.clone(),
    };
    match app.create_clinic(&me.who, &input).await.in_page(&me)? {
        Ok((clinic, n)) => Ok(Redirect::to(&format!("/appointments?from={}&added={n}", clinic.date)).into_response()),
        Err(problems) => {
            let errors = field_errors(problems);
            book_page(&app, &me, app.today(), f, errors, None).await
        }
    }
}

#[derive(Deserialize)]
struct CancelForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    patient: String,
}

async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<CancelForm>,
) -> Result<Response, PageError> {
    let (Ok(id), Ok(patient)) = (id.parse::<AppointmentId>(), f.patient.parse::<PatientId>()) else {
        return Err(PageError::new(&me, AppError::NotFound("no such appointment".into())));
    };
    app.staff_cancel_appointment(&me.who, id, patient).await.in_page(&me)?;
    Ok(Redirect::to("/appointments").into_response())
}

#[derive(Deserialize)]
struct AttendanceForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    attendance: String,
}

/// The appointment book's week that holds a slot.
fn book_of(slot: &caldicott_core::appointments::Slot) -> String {
    format!("/appointments?from={}", uk_time(slot.starts_at).date_naive())
}

async fn attendance(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<AttendanceForm>,
) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<AppointmentId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such appointment".into())));
    };
    let Some(outcome) = Attendance::parse(&f.attendance) else {
        return Err(PageError::new(&me, AppError::BadRequest("choose attended or did not attend".into())));
    };
    let (_, slot) = app.record_attendance(&me.who, id, outcome).await.in_page(&me)?;
    Ok(Redirect::to(&book_of(&slot)).into_response())
}

#[derive(Deserialize)]
struct OnlineForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    online: String,
}

async fn slot_online(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<OnlineForm>,
) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<SlotId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such slot".into())));
    };
    let online = match f.online.as_str() {
        "yes" => true,
        "no" => false,
        _ => return Err(PageError::new(&me, AppError::BadRequest("say whether to offer the slot online".into()))),
    };
    let slot = app.set_slot_online(&me.who, id, online).await.in_page(&me)?;
    Ok(Redirect::to(&book_of(&slot)).into_response())
}

#[derive(Deserialize, Default)]
struct SlotBookForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    nhs_number: String,
    /// "yes" once the member of staff has seen whom the NHS number names.
    #[serde(default)]
    confirm: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "appointment_slot.html")]
struct SlotPage {
    chrome: Option<Chrome>,
    csrf: String,
    slot_id: String,
    when: String,
    clinician: String,
    kind: &'static str,
    online: bool,
    back: String,
    nhs_number: String,
    /// The patient the NHS number names, to check before booking: name, born, NHS number.
    patient: Option<(String, String, String)>,
    errors: Vec<FieldError>,
}

impl Errors for SlotPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// A free slot that has not started, or the conflict that says why it cannot be booked.
async fn free_slot(app: &App, me: &SignedIn, id: &str) -> Result<caldicott_core::appointments::Slot, PageError> {
    let id = id.parse::<SlotId>().map_err(|_| PageError::new(me, AppError::NotFound("no such slot".into())))?;
    let (slot, booking) = app.slot_for_staff(&me.who, id).await.in_page(me)?;
    if booking.is_some() || slot.starts_at <= app.now() {
        return Err(PageError::new(
            me,
            AppError::Conflict("this slot is booked or has started; choose another in the appointment book".into()),
        ));
    }
    Ok(slot)
}

fn slot_view(
    me: &SignedIn,
    slot: &caldicott_core::appointments::Slot,
    nhs_number: String,
    errors: Vec<FieldError>,
) -> SlotPage {
    SlotPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        slot_id: slot.id.to_string(),
        when: uk_time(slot.starts_at).format("%A %-d %B %Y at %H:%M").to_string(),
        clinician: format!("{} · {}", slot.clinician_name, slot.location),
        kind: slot.slot_type.display(),
        online: slot.online_bookable,
        back: book_of(slot),
        nhs_number,
        patient: None,
        errors,
    }
}

async fn slot_page(State(app): State<App>, Portal(me): Portal, Path(id): Path<String>) -> Result<Response, PageError> {
    let slot = free_slot(&app, &me, &id).await?;
    Ok(slot_view(&me, &slot, String::new(), Vec::new()).into_response())
}

async fn book_slot(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<SlotBookForm>,
) -> Result<Response, PageError> {
    let slot = free_slot(&app, &me, &id).await?;
    if f.confirm != "yes" {
        // First whom the number names, so that the booking is for the person on the phone.
        return match app.patient_to_book(&me.who, &f.nhs_number).await.in_page(&me)? {
            Ok(p) => {
                let mut page = slot_view(&me, &slot, p.nhs_number.as_str().to_owned(), Vec::new());
                page.patient = Some((
                    format!("{}, {}", p.name.family.to_uppercase(), p.name.given),
                    p.date_of_birth.format("%-d %B %Y").to_string(),
                    p.nhs_number.to_string(),
                ));
                Ok(page.into_response())
            }
            Err(problem) => {
                let page = slot_view(&me, &slot, f.nhs_number.clone(), field_errors(vec![problem]));
                Ok((StatusCode::BAD_REQUEST, page).into_response())
            }
        };
    }
    match app.staff_book(&me.who, slot.id, &f.nhs_number).await.in_page(&me)? {
        Ok((_, slot, _)) => Ok(Redirect::to(&format!("{}&booked=1", book_of(&slot))).into_response()),
        Err(problem) => {
            let page = slot_view(&me, &slot, f.nhs_number.clone(), field_errors(vec![problem]));
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
    }
}

// ---- Tasks ------------------------------------------------------------------------------------

pub struct TaskRow {
    pub id: String,
    pub created: String,
    pub kind: &'static str,
    pub patient: String,
    pub nhs_number: String,
    pub requested_by: String,
    pub outcome: String,
    pub alert: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "tasks.html")]
struct TasksPage {
    chrome: Option<Chrome>,
    csrf: String,
    has_alerts: bool,
    done: bool,
    rows: Vec<TaskRow>,
}

async fn tasks(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let done = q.contains_key("done");
    let list = app.task_list(&me.who, done).await.in_page(&me)?;
    Ok(TasksPage {
        chrome: Some((&me).into()),
        csrf: me.csrf_token.clone(),
        has_alerts: list.iter().any(|(t, _)| t.kind == caldicott_core::tasks::TaskKind::OnlineServicesLinked),
        done,
        rows: list
            .into_iter()
            .map(|(t, p)| TaskRow {
                id: t.id.to_string(),
                created: uk_time(t.created_at).format("%-d %b %Y %H:%M").to_string(),
                kind: t.kind.display(),
                patient: format!("{}, {}", p.name.family.to_uppercase(), p.name.given),
                nhs_number: p.nhs_number.to_string(),
                requested_by: t.requested_by,
                outcome: t.outcome.unwrap_or_default(),
                alert: t.kind == caldicott_core::tasks::TaskKind::OnlineServicesLinked,
            })
            .collect(),
    }
    .into_response())
}

pub struct ItemView {
    pub template: String,
    pub drug: String,
    pub detail: String,
    pub decision: String,
    pub pending: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "task.html")]
struct TaskPage {
    chrome: Option<Chrome>,
    csrf: String,
    id: String,
    kind: &'static str,
    patient: String,
    nhs_digits: String,
    created: String,
    requested_by: String,
    open: bool,
    clinician: bool,
    items: Vec<ItemView>,
    note: String,
    pharmacy: String,
    message: String,
    outcome: String,
    /// An online-services-linked alert: the contact details it will use.
    alert: Option<String>,
    /// The safety-net message as this patient will get it, and its SMS fragments and cost (R42).
    alert_preview: Option<(String, String)>,
    /// The patient's preferred contact, email and mobile, and the choices, for the alert's form.
    contact: (String, String, String),
    contact_choices: Vec<(String, &'static str)>,
    /// A letter for the practice to print and post.
    letter: bool,
    notice: Option<String>,
    errors: Vec<FieldError>,
}

impl Errors for TaskPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// The task named in the address, or the "no such task" page.
fn task_id(me: &SignedIn, id: &str) -> Result<TaskId, PageError> {
    id.parse::<TaskId>().map_err(|_| PageError::new(me, AppError::NotFound("no such task".into())))
}

pub(crate) async fn task_view(
    app: &App,
    me: &SignedIn,
    id: &str,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    task_view_with(app, me, id, errors, None).await
}

pub(crate) async fn task_view_with(
    app: &App,
    me: &SignedIn,
    id: &str,
    errors: Vec<FieldError>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let (task, patient): (Task, _) = app.view_task(&me.who, task_id(me, id)?).await.in_page(me)?;
    if let TaskBody::Inbound { message, .. } = &task.body {
        // A pharmacy's message is reviewed, amended and filed on its own page.
        return Ok(Redirect::to(&format!("/inbound/{message}")).into_response());
    }
    let open = task.status == caldicott_core::tasks::TaskStatus::Open;
    let (items, note, pharmacy, message) = match &task.body {
        TaskBody::Repeat { items, note, pharmacy } => (
            items
                .iter()
                .map(|i| ItemView {
                    template: i.template.to_string(),
                    drug: i.drug.clone(),
                    detail: format!("{} · {}", i.dosage, i.quantity),
                    decision: decision_text(&i.decision, open),
                    pending: open && i.decision == ItemDecision::Pending,
                })
                .collect(),
            note.clone(),
            pharmacy.clone().unwrap_or_else(|| "None: the patient collects a paper prescription".into()),
            String::new(),
        ),
        TaskBody::Message { text } | TaskBody::Letter { text, .. } | TaskBody::Inbound { summary: text, .. } => {
            (Vec::new(), String::new(), String::new(), text.clone())
        }
    };
    let alert_preview =
        if task.kind == caldicott_core::tasks::TaskKind::OnlineServicesLinked && task.closed_at.is_none() {
            let preset = app.safety_net_preset(me.who.practice).await.in_page(me)?;
            match app.preview_preset(&me.who, &preset.body, patient.nhs_number.as_str()).await.in_page(me)? {
                Ok(p) => Some((
                    p.text,
                    format!(
                        "By text message: {} {}, {:.2}p. By email: free.",
                        p.fragments,
                        if p.fragments == 1 { "fragment" } else { "fragments" },
                        p.cost_hundredths as f64 / 100.0
                    ),
                )),
                Err(_) => None,
            }
        } else {
            None
        };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = TaskPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        id: task.id.to_string(),
        kind: task.kind.display(),
        patient: format!("{}, {}", patient.name.family.to_uppercase(), patient.name.given),
        nhs_digits: patient.nhs_number.as_str().to_owned(),
        created: uk_time(task.created_at).format("%-d %b %Y %H:%M").to_string(),
        requested_by: task.requested_by.clone(),
        open: task.closed_at.is_none(),
        clinician: me.who.role == Role::Clinician,
        items,
        note,
        pharmacy,
        message,
        outcome: task.outcome.clone().unwrap_or_default(),
        alert: (task.kind == caldicott_core::tasks::TaskKind::OnlineServicesLinked).then(|| {
            let pref = patient.preferred_contact;
            format!(
                "Preferred contact: {}. Email: {}. Mobile: {}.",
                method_label(pref),
                patient.contact.email.as_deref().unwrap_or("none"),
                patient.contact.mobile.as_deref().unwrap_or("none"),
            )
        }),
        alert_preview,
        letter: task.kind == caldicott_core::tasks::TaskKind::PostLetter,
        contact: (
            patient.preferred_contact.code().map_or("unknown".to_owned(), |c| c.to_string()),
            patient.contact.email.clone().unwrap_or_default(),
            patient.contact.mobile.clone().unwrap_or_default(),
        ),
        contact_choices: method_choices(),
        notice,
        errors,
    };
    Ok((status, page).into_response())
}

async fn task_page(State(app): State<App>, Portal(me): Portal, Path(id): Path<String>) -> Result<Response, PageError> {
    task_view(&app, &me, &id, Vec::new()).await
}

#[derive(Deserialize)]
struct TaskForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    outcome: String,
}

async fn act_on_task(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<TaskForm>,
) -> Result<Response, PageError> {
    let task = task_id(&me, &id)?;
    let result = match f.decision.as_str() {
        "approve" | "reject" => match f.template.parse::<EntryId>() {
            Ok(t) => app.decide_repeat_item(&me.who, task, t, f.decision == "approve", &f.reason).await,
            Err(_) => Err(AppError::BadRequest("choose an item of the request".into())),
        },
        _ => app.close_request(&me.who, task, &f.outcome).await,
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/tasks/{task}")).into_response()),
        Err(AppError::BadRequest(m)) => {
            let field = if f.decision == "reject" { "reason" } else { "outcome" };
            let message = format!("{}{}", m[..1].to_uppercase(), &m[1..]);
            task_view(&app, &me, &id, vec![FieldError { field, message }]).await
        }
        Err(e) => Err(PageError::new(&me, e)),
    }
}

// ---- Online-services-linked alerts ---------------------------------------------------------------

#[derive(Deserialize)]
struct AlertForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    anyway: String,
}

fn outcome_words(o: &AlertOutcome) -> String {
    match o {
        AlertOutcome::Sent(c) => format!(
            "The safety-net {} is on its way; the task is done.",
            match c {
                caldicott_core::messages::Channel::Email => "email",
                caldicott_core::messages::Channel::Sms => "text message",
                caldicott_core::messages::Channel::Letter => "letter",
            }
        ),
        AlertOutcome::Manual(why) => why.clone(),
    }
}

async fn action_alert(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, f): PortalForm<AlertForm>,
) -> Result<Response, PageError> {
    let task = task_id(&me, &id)?;
    let outcome = match f.anyway.as_str() {
        "letter" => app.letter_alert(&me.who, task).await,
        other => app.action_alert(&me.who, task, !other.is_empty()).await,
    };
    match outcome.in_page(&me)? {
        AlertOutcome::Manual(why) => {
            // Nothing was sent, and the task stays open: the state, not the form, is the problem
            // (whatever the page answers, it answers 409).
            let errors = vec![FieldError { field: "alert", message: why }];
            let mut res = task_view_with(&app, &me, &id, errors, None).await.into_response();
            *res.status_mut() = StatusCode::CONFLICT;
            Ok(res)
        }
        done => task_view_with(&app, &me, &id, Vec::new(), Some(outcome_words(&done))).await,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "alerts_done.html")]
struct AlertsDonePage {
    chrome: Option<Chrome>,
    rows: Vec<(String, String, bool)>,
}

/// Actions many alert tasks at once (a form with `task` repeated).
async fn action_alerts(
    State(app): State<App>,
    Portal(me): Portal,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(f)) = form else { return Err(PageError::form_expired()) };
    let sent = f.iter().find(|(k, _)| k == "_csrf").map_or("", |(_, v)| v.as_str());
    if !caldicott_app::constant_time_eq(&me.csrf_token, sent) {
        return Err(PageError::form_expired());
    }
    let anyway = f.iter().any(|(k, v)| k == "anyway" && !v.is_empty());
    let mut rows = Vec::new();
    for (_, v) in f.iter().filter(|(k, _)| k == "task") {
        let Ok(id) = v.parse::<TaskId>() else { continue };
        let (_, p) = app.open_task(&me.who, id).await.in_page(&me)?;
        let who = format!("{}, {}", p.name.family.to_uppercase(), p.name.given);
        match app.action_alert(&me.who, id, anyway).await {
            Ok(o) => rows.push((who, outcome_words(&o), matches!(o, AlertOutcome::Sent(_)))),
            Err(AppError::Conflict(m) | AppError::BadRequest(m)) => rows.push((who, m, false)),
            Err(e) => return Err(PageError::new(&me, e)),
        }
    }
    if rows.is_empty() {
        return Err(PageError::new(&me, AppError::BadRequest("Choose at least one task".into())));
    }
    Ok(AlertsDonePage { chrome: Some((&me).into()), rows }.into_response())
}

// ---- Nominated pharmacy -------------------------------------------------------------------------

#[derive(Deserialize)]
struct PharmacyForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    pharmacy_ods: String,
    #[serde(default)]
    pharmacy_name: String,
}

async fn nominate(
    State(app): State<App>,
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<PharmacyForm>,
) -> Result<Response, PageError> {
    app.nominate_pharmacy(&me.who, &nhs, &f.pharmacy_ods, &f.pharmacy_name).await.in_page(&me)?;
    Ok(to_patient(&me, &nhs, ""))
}

// ---- Proxy access (R14–R20) ---------------------------------------------------------------------

pub struct ProxyView {
    pub id: String,
    pub name: String,
    pub nhs_number: String,
    pub relationship: String,
    pub basis: String,
    pub scope: String,
    pub granted: String,
    pub decided_by: String,
    pub ends: String,
    pub status: String,
    pub live: bool,
    pub last_used: String,
    pub unused: bool,
    pub next: Option<String>,
    pub appointments: bool,
    pub prescriptions: bool,
    pub record_level: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "proxies.html")]
struct ProxiesPage {
    chrome: Option<Chrome>,
    csrf: String,
    nhs_digits: String,
    patient: String,
    can_decide: bool,
    rows: Vec<ProxyView>,
    bases: Vec<(&'static str, String)>,
    levels: Vec<(&'static str, &'static str)>,
    form: ProxyForm,
    errors: Vec<FieldError>,
}

impl Errors for ProxiesPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[derive(Deserialize, Default, Clone)]
struct ProxyForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    applicant_nhs: String,
    #[serde(default)]
    relationship: String,
    #[serde(default)]
    basis: String,
    #[serde(default)]
    appointments: Option<String>,
    #[serde(default)]
    prescriptions: Option<String>,
    #[serde(default)]
    record_level: String,
    #[serde(default)]
    record_from: String,
    #[serde(default)]
    end_day: String,
    #[serde(default)]
    end_month: String,
    #[serde(default)]
    end_year: String,
    #[serde(default)]
    proxy_outcome: String,
    #[serde(default)]
    refusal_reason: String,
}

csrf_forms!(ProxyForm, ProxyChangeForm);

async fn proxies_view(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    form: ProxyForm,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    use caldicott_core::access::{AccessLevel, ProxyBasis, ProxyStatus};
    let (patient, rows) = app.proxy_overview(&me.who, nhs).await.in_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = ProxiesPage {
        chrome: Some(me.into()),
        csrf: me.csrf_token.clone(),
        nhs_digits: patient.nhs_number.as_str().to_owned(),
        patient: format!("{}, {}", patient.name.family.to_uppercase(), patient.name.given),
        can_decide: matches!(me.who.role, Role::Clinician | Role::PracticeManager),
        rows: rows
            .into_iter()
            .map(|r| {
                let l = &r.link;
                let mut scope = Vec::new();
                if l.scope.appointments {
                    scope.push("appointments".to_owned());
                }
                if l.scope.prescriptions {
                    scope.push("repeat prescriptions".to_owned());
                }
                scope.push(format!("record: {}", l.scope.record.display().to_lowercase()));
                ProxyView {
                    id: l.id.to_string(),
                    name: format!("{} {}", r.proxy.name.given, r.proxy.name.family),
                    nhs_number: r.proxy.nhs_number.to_string(),
                    relationship: l.relationship.clone(),
                    basis: l.basis.as_str().replace('_', " "),
                    scope: scope.join(", "),
                    granted: l.granted_on.format("%-d %b %Y").to_string(),
                    decided_by: l.decided_by.clone(),
                    ends: l.ends_on.map_or("no end date".into(), |d| d.format("%-d %b %Y").to_string()),
                    status: r.lapse.clone().unwrap_or_else(|| "Active".into()),
                    live: matches!(l.status, ProxyStatus::Active | ProxyStatus::Suspended { .. }),
                    last_used: r.last_used.map_or("never".into(), |t| uk_time(t).format("%-d %b %Y").to_string()),
                    unused: r.unused,
                    next: r.next,
                    appointments: l.scope.appointments,
                    prescriptions: l.scope.prescriptions,
                    record_level: l.scope.record.as_str(),
                }
            })
            .collect(),
        bases: ProxyBasis::ALL.iter().map(|b| (b.as_str(), b.as_str().replace('_', " "))).collect(),
        levels: AccessLevel::ALL.iter().map(|l| (l.as_str(), l.display())).collect(),
        form,
        errors,
    };
    Ok((status, page).into_response())
}

async fn proxies(State(app): State<App>, Portal(me): Portal, Path(nhs): Path<String>) -> Result<Response, PageError> {
    let form = ProxyForm { record_level: "none".into(), record_from: "grant".into(), ..Default::default() };
    proxies_view(&app, &me, &nhs, form, Vec::new()).await
}

async fn add_proxy(
    State(app): State<App>,
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<ProxyForm>,
) -> Result<Response, PageError> {
    let req = caldicott_app::proxies::ProxyRequest {
        applicant_nhs: f.applicant_nhs.clone(),
        relationship: f.relationship.clone(),
        basis: f.basis.clone(),
        appointments: f.appointments.is_some(),
        prescriptions: f.prescriptions.is_some(),
        record_level: f.record_level.clone(),
        record_from: f.record_from.clone(),
        end_day: f.end_day.clone(),
        end_month: f.end_month.clone(),
        end_year: f.end_year.clone(),
        outcome: f.proxy_outcome.clone(),
        refusal_reason: f.refusal_reason.clone(),
    };
    match app.record_proxy_request(&me.who, &nhs, &req).await.in_page(&me)? {
        Ok(_) => Ok(to_patient(&me, &nhs, "/proxies")),
        Err(problems) => {
            let errors = field_errors(problems);
            proxies_view(&app, &me, &nhs, f, errors).await
        }
    }
}

#[derive(Deserialize)]
struct ProxyChangeForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    proxy_action: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    appointments: Option<String>,
    #[serde(default)]
    prescriptions: Option<String>,
    #[serde(default)]
    record_level: String,
}

async fn change_proxy(
    State(app): State<App>,
    Path((nhs, link)): Path<(String, String)>,
    PortalForm(me, f): PortalForm<ProxyChangeForm>,
) -> Result<Response, PageError> {
    use caldicott_app::proxies::ProxyChange;
    let Ok(link) = link.parse::<ProxyLinkId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such proxy link".into())));
    };
    let change = match f.proxy_action.as_str() {
        "suspend" => ProxyChange::Suspend { reason: f.reason },
        "end" => ProxyChange::End { reason: f.reason },
        "reactivate" => ProxyChange::Reactivate,
        "scope" => match caldicott_core::access::AccessLevel::parse(&f.record_level) {
            Some(record) => ProxyChange::Scope {
                appointments: f.appointments.is_some(),
                prescriptions: f.prescriptions.is_some(),
                record,
            },
            None => return Err(PageError::new(&me, AppError::BadRequest("Choose the record access".into()))),
        },
        _ => return Err(PageError::new(&me, AppError::BadRequest("Choose what to change".into()))),
    };
    app.change_proxy(&me.who, &nhs, link, &change).await.in_page(&me)?;
    Ok(to_patient(&me, &nhs, "/proxies"))
}

// ---- Communications: a patient's log, and failed messages --------------------------------------

pub struct MessageRow {
    pub id: String,
    pub when: String,
    pub purpose: String,
    pub channel: &'static str,
    pub to: String,
    pub status: &'static str,
    pub cost: String,
    pub error: String,
    pub patient: String,
    pub nhs_digits: String,
}

fn message_row(m: &caldicott_core::messages::OutboundMessage) -> MessageRow {
    use caldicott_core::messages::{Channel, MessageStatus};
    MessageRow {
        id: m.id.to_string(),
        when: uk_time(m.created_at).format("%-d %b %Y %H:%M").to_string(),
        purpose: m.purpose.replace('_', " "),
        channel: match m.channel {
            Channel::Email => "Email",
            Channel::Sms => "Text message",
            Channel::Letter => "Letter",
        },
        to: m.recipient.lines().next().unwrap_or_default().to_owned(),
        status: match m.status {
            MessageStatus::Queued => "Waiting to send",
            MessageStatus::Sending => "Sending",
            MessageStatus::Printing => "To print and post",
            MessageStatus::Sent => "Sent",
            MessageStatus::Delivered => "Delivered",
            MessageStatus::Failed => "Failed",
        },
        cost: if m.cost_hundredths == 0 {
            "free".into()
        } else {
            format!(
                "{:.2}p ({} {})",
                m.cost_hundredths as f64 / 100.0,
                m.fragments,
                if m.fragments == 1 { "fragment" } else { "fragments" }
            )
        },
        error: m.last_error.clone().unwrap_or_default(),
        patient: String::new(),
        nhs_digits: String::new(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "communications.html")]
struct CommunicationsPage {
    chrome: Option<Chrome>,
    csrf: String,
    heading: String,
    back: Option<String>,
    failed_view: bool,
    rows: Vec<MessageRow>,
    /// Staff instant messages about the patient: (when, from, to, words, deleted: who and when).
    staff_messages: Vec<(String, String, String, String, String)>,
}

async fn communications(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
) -> Result<Response, PageError> {
    let (patient, list) = app.communications(&me.who, &nhs).await.in_page(&me)?;
    let staff_messages = app.staff_messages_about(&me.who, &patient).await.in_page(&me)?;
    Ok(CommunicationsPage {
        chrome: Some((&me).into()),
        csrf: me.csrf_token.clone(),
        heading: format!("Messages sent to {}, {}", patient.name.family.to_uppercase(), patient.name.given),
        back: Some(format!("/patients/{}", patient.nhs_number.as_str())),
        failed_view: false,
        rows: list.iter().map(message_row).collect(),
        staff_messages: staff_messages
            .into_iter()
            .map(|m| {
                (
                    caldicott_core::appointments::uk_time(m.sent_at).format("%-d %b %Y %H:%M").to_string(),
                    m.sender_name,
                    m.to_team.map_or_else(|| "one member of staff".to_owned(), |t| format!("team: {t}")),
                    m.body,
                    match (m.deleted_by, m.deleted_at) {
                        (Some(by), Some(at)) => format!(
                            "Deleted by {by} on {}",
                            caldicott_core::appointments::uk_time(at).format("%-d %b %Y %H:%M")
                        ),
                        _ => String::new(),
                    },
                )
            })
            .collect(),
    }
    .into_response())
}

async fn failed_messages(State(app): State<App>, Portal(me): Portal) -> Result<Response, PageError> {
    let list = app.failed_messages(&me.who).await.in_page(&me)?;
    Ok(CommunicationsPage {
        chrome: Some((&me).into()),
        csrf: me.csrf_token.clone(),
        heading: "Messages that could not be sent".into(),
        back: None,
        failed_view: true,
        staff_messages: Vec::new(),
        rows: list
            .iter()
            .map(|(m, p)| MessageRow {
                patient: format!("{}, {}", p.name.family.to_uppercase(), p.name.given),
                nhs_digits: p.nhs_number.as_str().to_owned(),
                ..message_row(m)
            })
            .collect(),
    }
    .into_response())
}

#[derive(Deserialize)]
struct RetryForm {
    #[serde(default)]
    _csrf: String,
}

csrf_forms!(RetryForm);

async fn retry_message(
    State(app): State<App>,
    Path(id): Path<String>,
    PortalForm(me, _): PortalForm<RetryForm>,
) -> Result<Response, PageError> {
    let Ok(id) = id.parse::<MessageId>() else {
        return Err(PageError::new(&me, AppError::NotFound("no such message".into())));
    };
    app.retry_message(&me.who, id).await.in_page(&me)?;
    Ok(Redirect::to("/messages/failed").into_response())
}
