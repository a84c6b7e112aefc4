//! Care plans: staff record them and see each part marked with whether the patient sees it
//! online (`/patients/{nhs}/care-plans`); a patient, or a proxy whose scope includes them, reads
//! them and adds their own goals, notes and home readings (`/my/care-plans`), each marked as
//! theirs and sent to the care team as a task.

use crate::kernel::{
    banner, csrf_forms, field_errors, for_query, iso_from_boxes, link_of, long_date, printed_facts, same, to_patient,
    Banner, Chrome, Errors, FieldError, InMyPage, InPage, MyChrome, MyPageError, PageError, Patient, Portal,
    PortalForm, PrintedFacts,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use caldicott_app::care_plans::NewCarePlan;
use caldicott_app::my_care_plans::PlanAddition;
use caldicott_app::patient_services::PatientSignedIn;
use caldicott_app::record::OnlineStatus;
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::entry::{Entry, EntryBody, Origin, PlanPart};
use caldicott_core::ids::{EntryId, ProxyLinkId};
use serde::Deserialize;
use std::collections::HashMap;

pub fn patient_routes() -> Router<App> {
    Router::new().route("/my/care-plans", get(my_plans)).route("/my/care-plans/{plan}/add", get(add_page).post(add))
}

pub(crate) fn staff_routes() -> Router<App> {
    Router::new()
        .route("/patients/{nhs_number}/care-plans", get(staff_plans).post(record))
        .route("/patients/{nhs_number}/care-plans/new", get(new_page))
}

/// One part of a plan as a page lists it.
pub struct PartView {
    pub text: String,
    /// "Added by you on 3 Dec 2026", "Added by Jane Rivers (mother, for the patient) on …".
    pub added_by: Option<String>,
    /// Staff only: whether the patient sees it online, and the link to change that.
    pub online: Option<String>,
    pub change: Option<(String, &'static str)>,
}

/// The parts of one kind under their heading.
pub struct PartGroup {
    pub heading: &'static str,
    pub parts: Vec<PartView>,
}

pub struct PlanView {
    pub title: String,
    pub started: String,
    pub review: Option<String>,
    pub author: String,
    pub online: Option<String>,
    pub change: Option<(String, &'static str)>,
    pub groups: Vec<PartGroup>,
    pub add_href: String,
}

fn online_words(s: &OnlineStatus) -> String {
    match &s.withheld {
        None => "Shown online".to_owned(),
        Some(w) => format!("Not shown online: {}", w.reason),
    }
}

fn part_view(
    e: &Entry,
    own_name: Option<&str>,
    online: Option<&OnlineStatus>,
    change: Option<(String, &'static str)>,
) -> PartView {
    let text = match &e.body {
        EntryBody::CarePlanPart { text, .. } => text.clone(),
        other => other.headline(),
    };
    let added_by = (e.origin == Origin::PatientEntered).then(|| {
        let who = match own_name {
            Some(me) if e.author.name.starts_with(&format!("{me} (patient)")) => "you".to_owned(),
            _ => e.author.name.clone(),
        };
        format!("Added by {who} on {}", long_date(e.event_date))
    });
    PartView { text, added_by, online: online.map(online_words), change }
}

/// The parts grouped under their headings, in a plan's order, empty groups left out.
fn groups<'a>(parts: impl Iterator<Item = (&'a Entry, PartView)>) -> Vec<PartGroup> {
    let mut out: Vec<PartGroup> =
        PlanPart::ALL.iter().map(|p| PartGroup { heading: p.heading(), parts: Vec::new() }).collect();
    for (e, view) in parts {
        if let EntryBody::CarePlanPart { part, .. } = &e.body {
            if let Some(i) = PlanPart::ALL.iter().position(|p| p == part) {
                out[i].parts.push(view);
            }
        }
    }
    out.retain(|g| !g.parts.is_empty());
    out
}

fn plan_view(
    plan: &Entry,
    online: Option<&OnlineStatus>,
    change: Option<(String, &'static str)>,
    groups: Vec<PartGroup>,
    add_href: String,
) -> PlanView {
    let (condition, review) = match &plan.body {
        EntryBody::CarePlan { condition, review } => (condition.clone(), *review),
        other => (other.headline(), None),
    };
    PlanView {
        title: format!("Care plan: {condition}"),
        started: long_date(plan.event_date),
        review: review.map(long_date),
        author: plan.author.name.clone(),
        online: online.map(online_words),
        change,
        groups,
        add_href,
    }
}

// ---- Patients ---------------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "my_care_plans.html")]
struct MyPlansPage {
    me: Option<MyChrome>,
    facts: PrintedFacts,
    heading: String,
    no_record: Option<String>,
    plans: Vec<PlanView>,
    added: bool,
    results_href: String,
}

/// `GET /my/care-plans[?for=link]`.
async fn my_plans(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = link_of(q.get("for")).in_my_page(&me)?;
    let r = app.my_care_plans(&me.who, link).await.in_my_page(&me)?;
    let for_query = for_query(link);
    let own = link.is_none().then_some(me.who.name.as_str());
    let plans = r
        .plans
        .iter()
        .map(|p| {
            let parts = p.parts.iter().map(|e| (e.get(), part_view(e, own, None, None)));
            plan_view(&p.plan, None, None, groups(parts), format!("/my/care-plans/{}/add{for_query}", p.plan.id))
        })
        .collect();
    Ok(MyPlansPage {
        me: Some((&me).into()),
        facts: printed_facts(&app, &me, &r.holder),
        heading: if link.is_some() { format!("{}'s care plans", r.whose) } else { "Your care plans".into() },
        no_record: r.no_record,
        plans,
        added: q.contains_key("added"),
        results_href: format!("/my/results{for_query}"),
    }
    .into_response())
}

#[derive(Deserialize, Default)]
struct AddForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    measure: String,
    #[serde(default)]
    value: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "my_care_plan_add.html")]
struct AddPage {
    me: Option<MyChrome>,
    csrf: String,
    title: String,
    action: String,
    back: String,
    kind: String,
    text: String,
    measure: String,
    value: String,
    errors: Vec<FieldError>,
}

impl Errors for AddPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

fn plan_id(me: &PatientSignedIn, plan: &str) -> Result<EntryId, MyPageError> {
    plan.parse().map_err(|_| MyPageError::new(me, AppError::NotFound("There is no such care plan.".into())))
}

async fn add_form(
    app: &App,
    me: &PatientSignedIn,
    link: Option<ProxyLinkId>,
    plan: EntryId,
    f: AddForm,
    errors: Vec<FieldError>,
) -> Result<Response, MyPageError> {
    let plans = app.my_care_plans(&me.who, link).await.in_my_page(me)?;
    let shown = plans
        .plans
        .iter()
        .find(|p| p.plan.id == plan)
        .ok_or_else(|| MyPageError::new(me, AppError::NotFound("There is no such care plan.".into())))?;
    let for_query = for_query(link);
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((
        status,
        AddPage {
            me: Some(me.into()),
            csrf: me.csrf_token.clone(),
            title: plan_view(&shown.plan, None, None, Vec::new(), String::new()).title,
            action: format!("/my/care-plans/{plan}/add{for_query}"),
            back: format!("/my/care-plans{for_query}"),
            kind: if f.kind.is_empty() { "goal".into() } else { f.kind },
            text: f.text,
            measure: f.measure,
            value: f.value,
            errors,
        },
    )
        .into_response())
}

/// `GET /my/care-plans/{plan}/add[?for=link]`.
async fn add_page(
    State(app): State<App>,
    Patient(me): Patient,
    Path(plan): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = link_of(q.get("for")).in_my_page(&me)?;
    let plan = plan_id(&me, &plan)?;
    add_form(&app, &me, link, plan, AddForm::default(), Vec::new()).await
}

/// `POST /my/care-plans/{plan}/add[?for=link]`.
async fn add(
    State(app): State<App>,
    Patient(me): Patient,
    Path(plan): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    form: Result<Form<AddForm>, FormRejection>,
) -> Result<Response, MyPageError> {
    let Ok(Form(f)) = form else { return Err(MyPageError::form_expired()) };
    if !same(&me.csrf_token, &f._csrf) {
        return Err(MyPageError::form_expired());
    }
    let link = link_of(q.get("for")).in_my_page(&me)?;
    let plan = plan_id(&me, &plan)?;
    let addition =
        PlanAddition { kind: f.kind.clone(), text: f.text.clone(), measure: f.measure.clone(), value: f.value.clone() };
    match app.add_to_my_care_plan(&me.who, link, plan, &addition).await.in_my_page(&me)? {
        Ok(_) => {
            let to = match link {
                Some(l) => format!("/my/care-plans?for={l}&added"),
                None => "/my/care-plans?added".to_owned(),
            };
            Ok(Redirect::to(&to).into_response())
        }
        Err(problems) => add_form(&app, &me, link, plan, f, field_errors(problems)).await,
    }
}

// ---- Staff --------------------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "care_plans.html")]
struct StaffPlansPage {
    chrome: Option<Chrome>,
    banner: Banner,
    plans: Vec<PlanView>,
    can_record: bool,
    saved: bool,
}

/// `GET /patients/{nhs}/care-plans`.
async fn staff_plans(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let r = app.staff_care_plans(&me.who, &nhs).await.in_page(&me)?;
    let base = format!("/patients/{}", r.patient.nhs_number.as_str());
    let clinician = me.who.role == caldicott_core::staff::Role::Clinician;
    let change = |e: &Entry| {
        clinician.then(|| {
            let label = if e.visibility.is_hidden() { "Show online" } else { "Hide online" };
            (format!("{base}/entries/{}/online", e.id), label)
        })
    };
    let plans = r
        .plans
        .iter()
        .map(|p| {
            let parts = p.parts.iter().map(|(e, s)| (e, part_view(e, None, Some(s), change(e))));
            plan_view(&p.plan, Some(&p.online), change(&p.plan), groups(parts), String::new())
        })
        .collect();
    Ok(StaffPlansPage {
        chrome: Some(Chrome::from(&me)),
        banner: banner(&r.patient, app.today(), r.enhanced_review_active),
        plans,
        can_record: clinician,
        saved: q.contains_key("saved"),
    }
    .into_response())
}

#[derive(Deserialize, Default)]
struct PlanForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    review_day: String,
    #[serde(default)]
    review_month: String,
    #[serde(default)]
    review_year: String,
    #[serde(default)]
    goals: String,
    #[serde(default)]
    actions: String,
    #[serde(default)]
    preferences: String,
    #[serde(default)]
    decisions: String,
    #[serde(default)]
    contacts: String,
}

csrf_forms!(PlanForm);

#[derive(Template, WebTemplate)]
#[template(path = "care_plan_new.html")]
struct NewPlanPage {
    chrome: Option<Chrome>,
    csrf: String,
    patient: String,
    nhs_digits: String,
    f: PlanForm,
    /// The boxes of the plan's parts: field, label, hint, what was written.
    boxes: Vec<(&'static str, &'static str, &'static str, String)>,
    errors: Vec<FieldError>,
}

impl Errors for NewPlanPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

async fn plan_form(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    f: PlanForm,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let (patient, _) = app.view_consultation_form(&me.who, nhs).await.in_page(me)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((
        status,
        NewPlanPage {
            chrome: Some(Chrome::from(me)),
            csrf: me.csrf_token.clone(),
            patient: format!("{} ({})", patient.name.banner(), patient.nhs_number),
            nhs_digits: patient.nhs_number.as_str().to_owned(),
            boxes: vec![
                (
                    "goals",
                    "Goals",
                    "What the patient is aiming for, such as \"HbA1c below 53 mmol/mol\"",
                    f.goals.clone(),
                ),
                (
                    "actions",
                    "Actions: who does what",
                    "Such as \"Practice nurse: diabetes review every 6 months\"",
                    f.actions.clone(),
                ),
                (
                    "preferences",
                    "Preferences",
                    "Where the patient would like to be cared for, and what matters to them",
                    f.preferences.clone(),
                ),
                (
                    "decisions",
                    "Advance and treatment escalation decisions",
                    "Decisions the patient has made about future treatment",
                    f.decisions.clone(),
                ),
                ("contacts", "Who to contact", "Whom to contact, and when", f.contacts.clone()),
            ],
            f,
            errors,
        },
    )
        .into_response())
}

/// `GET /patients/{nhs}/care-plans/new`.
async fn new_page(State(app): State<App>, Portal(me): Portal, Path(nhs): Path<String>) -> Result<Response, PageError> {
    plan_form(&app, &me, &nhs, PlanForm::default(), Vec::new()).await
}

/// `POST /patients/{nhs}/care-plans`.
async fn record(
    State(app): State<App>,
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<PlanForm>,
) -> Result<Response, PageError> {
    let review = match iso_from_boxes("The review date", &f.review_day, &f.review_month, &f.review_year) {
        Ok(r) => r,
        Err(message) => return plan_form(&app, &me, &nhs, f, vec![FieldError { field: "review", message }]).await,
    };
    let input = NewCarePlan {
        condition: f.condition.clone(),
        code: f.code.clone(),
        review,
        goals: f.goals.clone(),
        actions: f.actions.clone(),
        preferences: f.preferences.clone(),
        decisions: f.decisions.clone(),
        contacts: f.contacts.clone(),
    };
    match app.record_care_plan(&me.who, &nhs, &input).await.in_page(&me)? {
        Ok(_) => Ok(to_patient(&me, &nhs, "/care-plans?saved")),
        Err(problems) => plan_form(&app, &me, &nhs, f, field_errors(problems)).await,
    }
}
