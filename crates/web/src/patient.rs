//! Patient-facing pages under `/my`: sign-up with the practice's letter, sign-in, the services
//! of the person signed in and of everyone they act for, the record exactly as its online viewer
//! sees it, and who has viewed it. Server-rendered, no JavaScript needed, NHS.UK styled.
//!
//! The session cookie is `__Host-caldicott-patient`, separate from the staff portal's. Pages
//! that need a patient session redirect to `/my/sign-in` without one.

use crate::kernel::{
    clear_cookie, cookie, decision_text, entry_text, field_errors, for_query, kind_label, link_of, long_date,
    printed_facts, qr_svg, refusal, same, set_cookie, several_practices, sign_in_csrf_ok, sign_in_token, with_cookies,
    with_param, Errors, FieldError, InMyPage, MyChrome, MyPageError, Patient, PrintedFacts, PATIENT_COOKIE,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use caldicott_app::patient_services::{PatientSignedIn, SignUp};
use caldicott_app::record::PageRequest;
use caldicott_app::{App, AppError};
use caldicott_core::entry::Section;
use caldicott_core::ids::{AppointmentId, EntryId, ProxyLinkId, TaskId};
use serde::Deserialize;
use std::collections::HashMap;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/my", get(home))
        .route(
            "/my/sign-in",
            get(sign_in_page).post(sign_in).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route(
            "/my/sign-in/code",
            get(code_page).post(code).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route(
            "/my/security",
            get(security).post(change_security).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route("/my/sign-in/nhs-login", get(nhs_login_start))
        .route("/my/sign-in/nhs-login/callback", get(nhs_login_callback))
        .route(
            "/my/sign-up",
            get(sign_up_page).post(sign_up).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route(
            "/my/reset",
            get(reset_page).post(reset_password).layer(axum::middleware::from_fn(crate::throttle::credentials)),
        )
        .route("/my/sign-out", axum::routing::post(sign_out))
        .route("/my/record", get(record))
        .route("/my/record/print", get(record_printout))
        .route("/my/activity", get(activity))
        .route("/my/appointments", get(appointments))
        .route("/my/appointments/{appointment}/cancel", axum::routing::post(cancel))
        .route("/my/prescriptions", get(prescriptions).post(order))
        .route("/my/prescriptions/{order}/cancel", axum::routing::post(cancel_order))
        .route("/my/requests", get(requests).post(send_request))
}

// ---- Sign-in and sign-up ------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "my_sign_in.html")]
struct SignInPage {
    me: Option<MyChrome>,
    csrf: String,
    notice: Option<&'static str>,
    nhs_login: bool,
    show_practice: bool,
    ods: String,
    username: String,
    errors: Vec<FieldError>,
}

impl Errors for SignInPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn sign_in_page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(v) = cookie(&headers, PATIENT_COOKIE) {
        if app.patient_signed_in(&v).await.is_ok() {
            return Redirect::to("/my").into_response();
        }
    }
    let (csrf, set) = sign_in_token(&headers);
    let notice =
        (q.get("done").map(String::as_str) == Some("password")).then_some("Your new password is set. Sign in with it.");
    let page = SignInPage {
        me: None,
        csrf,
        notice,
        nhs_login: app.nhs_login().is_some(),
        show_practice: several_practices(&app).await,
        ods: String::new(),
        username: String::new(),
        errors: Vec::new(),
    };
    with_cookies(page.into_response(), set)
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    ods: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

fn signed_in_response(cookie_value: &str) -> Response {
    with_cookies(Redirect::to("/my").into_response(), [set_cookie(PATIENT_COOKIE, cookie_value)])
}

async fn sign_in(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    let Some(csrf) = sign_in_csrf_ok(&headers, &f._csrf) else { return Err(MyPageError::form_expired()) };
    match app
        .patient_sign_in(Some(f.ods.as_str()).filter(|s| !s.trim().is_empty()), &f.username, &f.password, &from)
        .await
    {
        Ok(step) if step.needs_code => Ok(with_cookies(
            Redirect::to("/my/sign-in/code").into_response(),
            [set_cookie(PATIENT_COOKIE, &step.cookie)],
        )),
        Ok(step) => Ok(signed_in_response(&step.cookie)),
        Err(e) => {
            let Some((status, field)) = refusal(&e) else { return Err(e.into()) };
            let page = SignInPage {
                me: None,
                csrf,
                notice: None,
                nhs_login: app.nhs_login().is_some(),
                show_practice: several_practices(&app).await,
                ods: f.ods,
                username: f.username,
                errors: vec![FieldError { field, message: e.to_string() }],
            };
            Ok((status, page).into_response())
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "my_sign_up.html")]
struct SignUpPage {
    me: Option<MyChrome>,
    csrf: String,
    form: SignUpValues,
    errors: Vec<FieldError>,
}

impl Errors for SignUpPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// What a letter from the practice says, and who the person is, as typed: the start of both
/// creating an account and setting a new password (`my_letter_fields.html`).
#[derive(Deserialize, Default)]
struct LetterValues {
    #[serde(default)]
    ods_code: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    linkage_key: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    birth_day: String,
    #[serde(default)]
    birth_month: String,
    #[serde(default)]
    birth_year: String,
}

#[derive(Deserialize, Default)]
struct SignUpValues {
    #[serde(default)]
    _csrf: String,
    #[serde(flatten)]
    letter: LetterValues,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn sign_up_page(headers: HeaderMap) -> Response {
    let (csrf, set) = sign_in_token(&headers);
    with_cookies(SignUpPage { me: None, csrf, form: SignUpValues::default(), errors: Vec::new() }.into_response(), set)
}

async fn sign_up(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<SignUpValues>, FormRejection>,
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    let Some(csrf) = sign_in_csrf_ok(&headers, &f._csrf) else { return Err(MyPageError::form_expired()) };
    let s = SignUp {
        ods_code: f.letter.ods_code.clone(),
        account_id: f.letter.account_id.clone(),
        linkage_key: f.letter.linkage_key.clone(),
        family: f.letter.family.clone(),
        birth_day: f.letter.birth_day.clone(),
        birth_month: f.letter.birth_month.clone(),
        birth_year: f.letter.birth_year.clone(),
        username: f.username.clone(),
        password: f.password.clone(),
    };
    Ok(match app.patient_sign_up(&s).await? {
        Ok(c) => signed_in_response(&c),
        Err(problems) => {
            let errors = field_errors(problems);
            let form = SignUpValues { password: String::new(), ..f };
            (StatusCode::BAD_REQUEST, SignUpPage { me: None, csrf, form, errors }).into_response()
        }
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "my_reset.html")]
struct ResetPage {
    me: Option<MyChrome>,
    csrf: String,
    form: ResetValues,
    errors: Vec<FieldError>,
}

impl Errors for ResetPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// The password-letter form as typed (the passwords are never shown again).
#[derive(Deserialize, Default)]
struct ResetValues {
    #[serde(default)]
    _csrf: String,
    #[serde(flatten)]
    letter: LetterValues,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
}

async fn reset_page(headers: HeaderMap) -> Response {
    let (csrf, set) = sign_in_token(&headers);
    with_cookies(ResetPage { me: None, csrf, form: ResetValues::default(), errors: Vec::new() }.into_response(), set)
}

async fn reset_password(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<ResetValues>, FormRejection>,
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    let Some(csrf) = sign_in_csrf_ok(&headers, &f._csrf) else { return Err(MyPageError::form_expired()) };
    let r = caldicott_app::passwords::PatientReset {
        ods_code: f.letter.ods_code.clone(),
        account_id: f.letter.account_id.clone(),
        linkage_key: f.letter.linkage_key.clone(),
        family: f.letter.family.clone(),
        birth_day: f.letter.birth_day.clone(),
        birth_month: f.letter.birth_month.clone(),
        birth_year: f.letter.birth_year.clone(),
        new_password: f.new_password.clone(),
        new_password_again: f.new_password_again.clone(),
    };
    Ok(match app.patient_password_reset(&r).await? {
        Ok(()) => {
            with_cookies(Redirect::to("/my/sign-in?done=password").into_response(), [clear_cookie(PATIENT_COOKIE)])
        }
        Err(problems) => {
            let errors = field_errors(problems);
            let form = ResetValues { new_password: String::new(), new_password_again: String::new(), ..f };
            (StatusCode::BAD_REQUEST, ResetPage { me: None, csrf, form, errors }).into_response()
        }
    })
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    _csrf: String,
}

async fn sign_out(
    State(app): State<App>,
    Patient(me): Patient,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    if !same(&me.csrf_token, &f._csrf) {
        return Err(MyPageError::form_expired());
    }
    if let Some(c) = cookie(&headers, PATIENT_COOKIE) {
        app.patient_sign_out(&c).await.in_my_page(&me)?;
    }
    Ok(with_cookies(Redirect::to("/my/sign-in").into_response(), [clear_cookie(PATIENT_COOKIE)]))
}

// ---- Home: whose services ------------------------------------------------------------------

pub struct ServiceView {
    pub link: Option<String>,
    pub name: String,
    pub relationship: String,
    pub scope: Vec<String>,
    pub unavailable: Option<String>,
    pub record: bool,
    pub appointments: bool,
    pub prescriptions: bool,
    pub notice: Option<String>,
}

fn service_view(s: caldicott_app::patient_services::Service) -> ServiceView {
    ServiceView {
        record: s.unavailable.is_none() && (s.link.is_none() || s.scope.iter().any(|x| x.starts_with("GP record"))),
        appointments: s.unavailable.is_none() && s.scope.iter().any(|x| x == "Appointments"),
        prescriptions: s.unavailable.is_none() && s.scope.iter().any(|x| x == "Repeat prescriptions"),
        link: s.link.map(|l| l.to_string()),
        name: s.name,
        relationship: s.relationship.unwrap_or_default(),
        scope: s.scope,
        unavailable: s.unavailable,
        notice: s.notice,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "my_home.html")]
struct HomePage {
    me: Option<MyChrome>,
    own: ServiceView,
    others: Vec<ServiceView>,
    for_me: Vec<ServiceView>,
}

async fn home(State(app): State<App>, Patient(me): Patient) -> Result<Response, MyPageError> {
    let services = app.my_services(&me.who).await.in_my_page(&me)?;
    let for_me = app.acting_for_me(&me.who).await.in_my_page(&me)?.into_iter().map(service_view).collect();
    let mut views = services.into_iter().map(service_view);
    let Some(own) = views.next() else { return Err(MyPageError::new(&me, AppError::Internal("no services".into()))) };
    Ok(HomePage { me: Some((&me).into()), own, others: views.collect(), for_me }.into_response())
}

// ---- My record -----------------------------------------------------------------------------

/// A record section as the NHS App names it: patients read these words, not the clinical
/// system's ("Codes", "Problems") that staff see.
fn my_section_label(s: Option<Section>) -> &'static str {
    match s {
        None => "All entries",
        Some(Section::Consultations) => "Consultations and events",
        Some(Section::Problems) => "Health conditions",
        Some(Section::Medications) => "Medicines",
        Some(Section::Results) => "Test results",
        Some(Section::Documents) => "Documents",
        Some(Section::Allergies) => "Allergies and adverse reactions",
        Some(Section::Immunisations) => "Vaccinations",
        Some(Section::Codes) => "Other health information",
        Some(Section::Communications) => "Messages and letters",
        Some(Section::CarePlans) => "Care plans",
    }
}

pub struct MyEntry {
    pub date: String,
    pub kind: &'static str,
    pub text: String,
    /// Where its document opens (documents only).
    pub document: Option<String>,
}

pub struct SectionTab {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

fn my_entry(e: &caldicott_core::entry::Entry, for_query: &str) -> MyEntry {
    MyEntry {
        date: long_date(e.event_date),
        kind: kind_label(e),
        text: entry_text(e),
        document: (e.kind() == caldicott_core::entry::EntryKind::Document)
            .then(|| format!("/my/documents/{}{for_query}", e.id)),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "my_record.html")]
struct RecordPage {
    me: Option<MyChrome>,
    /// Printed at the top of a printed page.
    facts: PrintedFacts,
    /// The printout of the whole record (or this section).
    print_href: String,
    /// Results over time for the same record.
    results_href: String,
    heading: String,
    no_record: Option<String>,
    section: &'static str,
    sections: Vec<SectionTab>,
    entries: Vec<MyEntry>,
    next: Option<String>,
}

async fn record(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = match q.get("for").filter(|s| !s.is_empty()).map(|s| s.parse::<ProxyLinkId>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Err(MyPageError::new(&me, AppError::NotFound("no such record".into()))),
    };
    let page = crate::query::page_request(&q).in_my_page(&me)?;
    let section = page.section;
    let view = app.my_record(&me.who, link, &PageRequest { limit: Some(25), ..page }).await.in_my_page(&me)?;
    let base = "/my/record";
    let for_query = link.map(|l| format!("?for={l}")).unwrap_or_default();
    let mut sections = vec![SectionTab {
        label: my_section_label(None),
        href: format!("{base}{for_query}"),
        current: section.is_none(),
    }];
    for s in Section::ALL.into_iter().filter(|s| s.kinds().iter().any(|k| k.required_level().is_some())) {
        sections.push(SectionTab {
            label: my_section_label(Some(s)),
            href: with_param(base, &for_query, "section", s.as_str()),
            current: section == Some(s),
        });
    }
    let section_query = match section {
        Some(s) => with_param("", &for_query, "section", s.as_str()),
        None => for_query.clone(),
    };
    Ok(RecordPage {
        me: Some((&me).into()),
        facts: printed_facts(&app, &me, &view.holder),
        results_href: format!("/my/results{for_query}"),
        print_href: match section {
            Some(s) => with_param("/my/record/print", &for_query, "section", s.as_str()),
            None => format!("/my/record/print{for_query}"),
        },
        heading: if link.is_some() { format!("{}'s GP record", view.whose) } else { "Your GP record".into() },
        no_record: view.no_record,
        section: my_section_label(section),
        sections,
        entries: view.entries.iter().map(|e| my_entry(e, &for_query)).collect(),
        next: view.next_cursor.map(|c| with_param(base, &section_query, "cursor", &c)),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "my_record_print.html")]
struct PrintoutPage {
    me: Option<MyChrome>,
    facts: PrintedFacts,
    heading: String,
    section: &'static str,
    back: String,
    no_record: Option<String>,
    entries: Vec<MyEntry>,
}

/// `GET /my/record/print`: the whole record (or one section) on one page, headed with whose it
/// is, the practice and when it was printed, to print or save as a PDF from the browser.
async fn record_printout(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = link_of(q.get("for")).in_my_page(&me)?;
    let section = crate::query::page_request(&q).in_my_page(&me)?.section;
    let printout = app.my_record_printout(&me.who, link, section).await.in_my_page(&me)?;
    let for_query = for_query(link);
    let back = match section {
        Some(s) => with_param("/my/record", &for_query, "section", s.as_str()),
        None => format!("/my/record{for_query}"),
    };
    Ok(PrintoutPage {
        me: Some((&me).into()),
        facts: printed_facts(&app, &me, &printout.holder),
        heading: if link.is_some() { format!("{}'s GP record", printout.holder.name) } else { "Your GP record".into() },
        section: my_section_label(section),
        back,
        no_record: printout.no_record,
        entries: printout.entries.iter().map(|e| my_entry(e, &for_query)).collect(),
    }
    .into_response())
}

// ---- Who viewed my record -------------------------------------------------------------------

pub struct ActivityRow {
    pub when: String,
    pub who: String,
    pub what: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "my_activity.html")]
struct ActivityPage {
    me: Option<MyChrome>,
    rows: Vec<ActivityRow>,
}

async fn activity(State(app): State<App>, Patient(me): Patient) -> Result<Response, MyPageError> {
    let lines = app.my_record_activity(&me.who).await.in_my_page(&me)?;
    Ok(ActivityPage {
        me: Some((&me).into()),
        rows: lines
            .into_iter()
            .map(|l| ActivityRow {
                when: caldicott_core::appointments::uk_time(l.at).format("%-d %b %Y, %H:%M").to_string(),
                who: l.who,
                what: l.what,
            })
            .collect(),
    }
    .into_response())
}

// ---- Shared: whose services, from `?for=` or a form's `for` ----------------------------------

/// A form's fields in the order sent.
pub(crate) type Pairs = Vec<(String, String)>;

/// A patient form sent as a list of pairs (so that a field may repeat): its fields and whose
/// services it is for, once its CSRF token is checked.
pub(crate) fn for_form(
    me: &PatientSignedIn,
    form: Result<Form<Pairs>, FormRejection>,
) -> Result<(Pairs, Option<ProxyLinkId>), MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    if !same(&me.csrf_token, field(&f, "_csrf").map_or("", String::as_str)) {
        return Err(MyPageError::form_expired());
    }
    let link = link_of(field(&f, "for")).in_my_page(me)?;
    Ok((f, link))
}

/// The first value of a form field sent as a list of pairs.
pub(crate) fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a String> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The name of the person whose services are used, for headings.
pub(crate) async fn whose(
    app: &App,
    me: &PatientSignedIn,
    link: Option<ProxyLinkId>,
) -> Result<Option<String>, AppError> {
    Ok(match link {
        None => None,
        Some(_) => Some(
            app.my_services(&me.who)
                .await?
                .into_iter()
                .find(|s| s.link == link)
                .map(|s| s.name)
                .ok_or_else(|| AppError::NotFound("you do not act for anyone through that link".into()))?,
        ),
    })
}

// ---- Appointments ----------------------------------------------------------------------------

pub struct AppointmentView {
    pub id: String,
    pub when: String,
    pub what: String,
    pub cancelled: bool,
    pub can_cancel: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "my_appointments.html")]
struct AppointmentsPage {
    me: Option<MyChrome>,
    csrf: String,
    whose: Option<String>,
    for_id: String,
    for_query: String,
    notice: Option<&'static str>,
    upcoming: Vec<AppointmentView>,
    /// Cancelled appointments that were still to come.
    cancelled: Vec<AppointmentView>,
    past: Vec<AppointmentView>,
}

/// What an appointment is, with whom and where, as a patient reads it: a telephone appointment
/// says the practice will phone, not the room the clinician sits in.
fn slot_what(slot: &caldicott_core::appointments::Slot) -> String {
    if slot.slot_type.by_telephone() {
        format!("{} with {}: the practice will phone you", slot.slot_type.display(), slot.clinician_name)
    } else {
        format!("{} with {}, {}", slot.slot_type.display(), slot.clinician_name, slot.location)
    }
}

fn appointment_view(a: caldicott_app::appointments::MyAppointment) -> AppointmentView {
    let local = caldicott_core::appointments::uk_time(a.slot.starts_at);
    AppointmentView {
        id: a.id.to_string(),
        when: local.format("%A %-d %B %Y at %H:%M").to_string(),
        what: slot_what(&a.slot),
        cancelled: a.cancelled,
        can_cancel: a.can_cancel,
    }
}

async fn appointments(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = link_of(q.get("for")).in_my_page(&me)?;
    let (upcoming, past) = app.my_appointments(&me.who, link).await.in_my_page(&me)?;
    let (cancelled, booked): (Vec<_>, Vec<_>) = upcoming.into_iter().partition(|a| a.cancelled);
    let whose = whose(&app, &me, link).await.in_my_page(&me)?;
    Ok(AppointmentsPage {
        me: Some((&me).into()),
        csrf: me.csrf_token.clone(),
        whose,
        for_id: link.map(|l| l.to_string()).unwrap_or_default(),
        for_query: for_query(link),
        notice: match q.get("done").map(String::as_str) {
            Some("booked") => Some("Your appointment is booked."),
            Some("cancelled") => Some("The appointment is cancelled."),
            _ => None,
        },
        // A cancelled appointment is not coming up: it is listed under its own heading.
        upcoming: booked.into_iter().map(appointment_view).collect(),
        cancelled: cancelled.into_iter().map(appointment_view).collect(),
        past: past.into_iter().map(appointment_view).collect(),
    }
    .into_response())
}

async fn cancel(
    State(app): State<App>,
    Patient(me): Patient,
    axum::extract::Path(id): axum::extract::Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, MyPageError> {
    let (_, link) = for_form(&me, form)?;
    let Ok(id) = id.parse::<AppointmentId>() else {
        return Err(MyPageError::new(&me, AppError::NotFound("no such appointment".into())));
    };
    app.cancel_online(&me.who, link, id).await.in_my_page(&me)?;
    Ok(Redirect::to(&with_param("/my/appointments", &for_query(link), "done", "cancelled")).into_response())
}

// ---- Repeat prescriptions -----------------------------------------------------------------------

pub struct OrderableView {
    pub id: String,
    pub drug: String,
    pub detail: String,
}

pub struct RequestView {
    pub id: String,
    pub when: String,
    pub items: Vec<(String, String)>,
    pub note: String,
    /// Nothing decided yet: the order can be cancelled.
    pub can_cancel: bool,
    /// How it ended, when it has ("Cancelled by the patient, online").
    pub outcome: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "my_prescriptions.html")]
struct PrescriptionsPage {
    me: Option<MyChrome>,
    csrf: String,
    whose: Option<String>,
    for_id: String,
    pharmacy: Option<String>,
    orderable: Vec<OrderableView>,
    requests: Vec<RequestView>,
    sent: bool,
    cancelled: bool,
    errors: Vec<FieldError>,
}

impl Errors for PrescriptionsPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn prescriptions_page(
    app: &App,
    me: &PatientSignedIn,
    link: Option<ProxyLinkId>,
    (sent, cancelled): (bool, bool),
    errors: Vec<FieldError>,
) -> Result<Response, MyPageError> {
    let page = app.repeat_page(&me.who, link).await.in_my_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let view = PrescriptionsPage {
        me: Some(me.into()),
        csrf: me.csrf_token.clone(),
        whose: link.map(|_| format!("{} {}", page.patient.name.given, page.patient.name.family)),
        for_id: link.map(|l| l.to_string()).unwrap_or_default(),
        pharmacy: page.pharmacy.map(|(ods, name)| format!("{name} ({ods})")),
        orderable: page
            .orderable
            .into_iter()
            .map(|o| OrderableView {
                id: o.template.to_string(),
                drug: o.drug,
                detail: format!("{} · {}", o.dosage, o.quantity),
            })
            .collect(),
        requests: page
            .requests
            .into_iter()
            .map(|t| {
                let can_cancel = t.can_cancel_order();
                let open = t.status == caldicott_core::tasks::TaskStatus::Open;
                let (items, note) = match t.body {
                    caldicott_core::tasks::TaskBody::Repeat { items, note, .. } => {
                        (items.iter().map(|i| (i.drug.clone(), decision_text(&i.decision, open))).collect(), note)
                    }
                    _ => (Vec::new(), String::new()),
                };
                RequestView {
                    id: t.id.to_string(),
                    when: caldicott_core::appointments::uk_time(t.created_at).format("%-d %B %Y").to_string(),
                    items,
                    note,
                    can_cancel,
                    outcome: t.outcome.filter(|o| o.starts_with("Cancelled")),
                }
            })
            .collect(),
        sent,
        cancelled,
        errors,
    };
    Ok((status, view).into_response())
}

async fn prescriptions(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = link_of(q.get("for")).in_my_page(&me)?;
    prescriptions_page(&app, &me, link, (q.contains_key("sent"), q.contains_key("cancelled")), Vec::new()).await
}

async fn cancel_order(
    State(app): State<App>,
    Patient(me): Patient,
    axum::extract::Path(id): axum::extract::Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, MyPageError> {
    let (_, link) = for_form(&me, form)?;
    let Ok(id) = id.parse::<TaskId>() else {
        return Err(MyPageError::new(&me, AppError::NotFound("there is no such order".into())));
    };
    app.cancel_repeat_order(&me.who, link, id).await.in_my_page(&me)?;
    Ok(Redirect::to(&with_param("/my/prescriptions", &for_query(link), "cancelled", "1")).into_response())
}

async fn order(
    State(app): State<App>,
    Patient(me): Patient,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, MyPageError> {
    let (f, link) = for_form(&me, form)?;
    let items: Vec<EntryId> = f.iter().filter(|(k, _)| k == "items").filter_map(|(_, v)| v.parse().ok()).collect();
    let note = field(&f, "note").cloned().unwrap_or_default();
    match app.request_repeats(&me.who, link, &items, &note).await.in_my_page(&me)? {
        Ok(_) => Ok(Redirect::to(&with_param("/my/prescriptions", &for_query(link), "sent", "1")).into_response()),
        Err(problems) => {
            let errors = field_errors(problems);
            prescriptions_page(&app, &me, link, (false, false), errors).await
        }
    }
}

// ---- Messages to the practice (the patient's own; never a proxy's, R19) --------------------------

pub struct MessageView {
    pub when: String,
    pub kind: &'static str,
    pub text: String,
    pub outcome: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "my_requests.html")]
struct RequestsPage {
    me: Option<MyChrome>,
    csrf: String,
    kinds: Vec<(&'static str, &'static str)>,
    kind: String,
    text: String,
    sent: bool,
    messages: Vec<MessageView>,
    errors: Vec<FieldError>,
}

impl Errors for RequestsPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn requests_page(
    app: &App,
    me: &PatientSignedIn,
    kind: String,
    text: String,
    sent: bool,
    errors: Vec<FieldError>,
) -> Result<Response, MyPageError> {
    use caldicott_core::tasks::{TaskBody, TaskKind};
    let mine = app.my_requests(&me.who).await.in_my_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = RequestsPage {
        me: Some(me.into()),
        csrf: me.csrf_token.clone(),
        kinds: [TaskKind::MedicationQuery, TaskKind::RecordAmendment, TaskKind::RecordDisagreement]
            .iter()
            .map(|k| (k.as_str(), k.display()))
            .collect(),
        kind,
        text,
        sent,
        messages: mine
            .into_iter()
            .map(|t| MessageView {
                when: caldicott_core::appointments::uk_time(t.created_at).format("%-d %B %Y").to_string(),
                kind: t.kind.display(),
                text: match t.body {
                    TaskBody::Message { text } => text,
                    _ => String::new(),
                },
                outcome: t.outcome,
            })
            .collect(),
        errors,
    };
    Ok((status, page).into_response())
}

async fn requests(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    requests_page(&app, &me, String::new(), String::new(), q.contains_key("sent"), Vec::new()).await
}

#[derive(Deserialize)]
struct RequestForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    text: String,
}

async fn send_request(
    State(app): State<App>,
    Patient(me): Patient,
    form: Result<Form<RequestForm>, FormRejection>,
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    if !same(&me.csrf_token, &f._csrf) {
        return Err(MyPageError::form_expired());
    }
    match app.send_request(&me.who, &f.kind, &f.text).await.in_my_page(&me)? {
        Ok(_) => Ok(Redirect::to("/my/requests?sent").into_response()),
        Err(problems) => {
            let errors = field_errors(problems);
            requests_page(&app, &me, f.kind, f.text, false, errors).await
        }
    }
}

// ---- NHS login (OpenID Connect) -------------------------------------------------------------

/// Holds state, nonce and PKCE verifier between the redirect to NHS login and its answer. It
/// must come back on a top-level redirect from the provider's site, so it is SameSite=Lax.
const OIDC_COOKIE: &str = "__Host-caldicott-oidc";

async fn nhs_login_start(State(app): State<App>) -> Result<Response, MyPageError> {
    let Some(provider) = app.nhs_login() else {
        return Err(AppError::NotFound("signing in with NHS login is not set up here".into()).into());
    };
    let start = provider.start().await?;
    let cookie = format!("{OIDC_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600", start.cookie);
    Ok(with_cookies(Redirect::to(&start.redirect).into_response(), header::HeaderValue::from_str(&cookie).ok()))
}

async fn nhs_login_callback(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let Some(provider) = app.nhs_login() else {
        return Err(AppError::NotFound("signing in with NHS login is not set up here".into()).into());
    };
    let failed = |app: &App, headers: &HeaderMap, message: String| {
        let (csrf, _) = sign_in_token(headers);
        let page = SignInPage {
            me: None,
            csrf,
            notice: None,
            nhs_login: app.nhs_login().is_some(),
            show_practice: false,
            ods: String::new(),
            username: String::new(),
            errors: vec![FieldError { field: "nhs-login", message }],
        };
        with_cookies((StatusCode::FORBIDDEN, page).into_response(), [clear_cookie(OIDC_COOKIE)])
    };
    if let Some(err) = q.get("error") {
        let message = if err == "access_denied" {
            "You did not finish signing in with NHS login. Try again, or use your practice username.".to_owned()
        } else {
            format!("NHS login could not sign you in ({err}). Try again.")
        };
        return Ok(failed(&app, &headers, message));
    }
    let (Some(code), Some(state), Some(cookie_value)) = (q.get("code"), q.get("state"), cookie(&headers, OIDC_COOKIE))
    else {
        return Ok(failed(&app, &headers, "Your sign-in took too long or was started elsewhere. Start again.".into()));
    };
    let result = match provider.finish(&cookie_value, code, state).await {
        Ok((subject, level, nhs, dob)) => app.nhs_login_sign_in(provider.issuer(), &subject, level, &nhs, dob).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(session) => Ok(with_cookies(signed_in_response(&session), [clear_cookie(OIDC_COOKIE)])),
        Err(AppError::BadRequest(m) | AppError::Forbidden(m)) => Ok(failed(&app, &headers, m)),
        Err(e) => Err(e.into()),
    }
}

// ---- Two-step sign-in (optional, for local accounts) ------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "my_code.html")]
struct CodePage {
    me: Option<MyChrome>,
    csrf: String,
    errors: Vec<FieldError>,
}

impl Errors for CodePage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn code_page(headers: HeaderMap) -> Response {
    if cookie(&headers, PATIENT_COOKIE).is_none() {
        return Redirect::to("/my/sign-in").into_response();
    }
    let (csrf, set) = sign_in_token(&headers);
    with_cookies(CodePage { me: None, csrf, errors: Vec::new() }.into_response(), set)
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    code: String,
}

async fn code(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    let Some(csrf) = sign_in_csrf_ok(&headers, &f._csrf) else { return Err(MyPageError::form_expired()) };
    let Some(pending) = cookie(&headers, PATIENT_COOKIE) else {
        return Ok(Redirect::to("/my/sign-in").into_response());
    };
    match app.patient_second_factor(&pending, &f.code, &from).await {
        Ok(c) => Ok(signed_in_response(&c)),
        Err(e @ AppError::Unauthenticated(_)) if e.to_string().contains("code") => {
            let page = CodePage { me: None, csrf, errors: vec![FieldError { field: "code", message: e.to_string() }] };
            Ok((StatusCode::UNAUTHORIZED, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "my_security.html")]
struct SecurityPage {
    me: Option<MyChrome>,
    csrf: String,
    /// `None`: the account signs in through NHS login.
    on: Option<bool>,
    enrol: Option<(String, String)>,
    done: Option<&'static str>,
    errors: Vec<FieldError>,
}

impl Errors for SecurityPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn security_page(
    app: &App,
    me: &PatientSignedIn,
    enrol: Option<(String, String)>,
    done: Option<&'static str>,
    errors: Vec<FieldError>,
) -> Result<Response, MyPageError> {
    let on = app.two_step_status(&me.who).await.in_my_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = SecurityPage { me: Some(me.into()), csrf: me.csrf_token.clone(), on, enrol, done, errors };
    Ok((status, page).into_response())
}

async fn security(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let done = match q.get("done").map(String::as_str) {
        Some("on") => Some("Two-step sign-in is on. Next time you sign in, you will be asked for a code."),
        Some("off") => Some("Two-step sign-in is off."),
        Some("password") => Some("Your password has been changed. You have been signed out everywhere else."),
        _ => None,
    };
    security_page(&app, &me, None, done, Vec::new()).await
}

#[derive(Deserialize)]
struct SecurityForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    step: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
}

async fn change_security(
    State(app): State<App>,
    crate::client::Caller(from): crate::client::Caller,
    Patient(me): Patient,
    form: Result<Form<SecurityForm>, FormRejection>,
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    if !same(&me.csrf_token, &f._csrf) {
        return Err(MyPageError::form_expired());
    }
    let result = match f.step.as_str() {
        "begin" => match app.two_step_begin(&me.who).await {
            Ok((secret, uri)) => return security_page(&app, &me, Some((secret, qr_svg(&uri))), None, Vec::new()).await,
            Err(e) => Err(e),
        },
        "confirm" => app.two_step_confirm(&me.who, &f.code, &from).await.map(|()| "on"),
        "off" => app.two_step_off(&me.who, &f.code, &from).await.map(|()| "off"),
        "password" => {
            match app
                .change_patient_password(
                    &me.who,
                    me.session,
                    &f.current_password,
                    &f.new_password,
                    &f.new_password_again,
                    &from,
                )
                .await
            {
                Ok(Ok(())) => Ok("password"),
                Ok(Err(problems)) => return security_page(&app, &me, None, None, field_errors(problems)).await,
                Err(e) => Err(e),
            }
        }
        _ => Err(AppError::BadRequest("Choose what to change".into())),
    };
    match result {
        Ok(done) => Ok(Redirect::to(&format!("/my/security?done={done}")).into_response()),
        Err(AppError::BadRequest(m)) => {
            let errors = vec![FieldError { field: "code", message: m }];
            security_page(&app, &me, None, None, errors).await
        }
        Err(e) => Err(MyPageError::new(&me, e)),
    }
}
