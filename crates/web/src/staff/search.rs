//! The front page: finding a patient (by name, NHS number or date of birth), the patients the
//! member of staff saw lately, and the counts of overdue alerts and subject access requests. An
//! ICB analyst's front page is the ICB view.

use crate::kernel::{age_text, long_date, Chrome, Errors, FieldError, InPage, PageError, Portal};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::{App, AppError};
use caldicott_core::permissions::Permission;
use chrono::NaiveDate;
use std::collections::HashMap;

pub(super) fn routes() -> Router<App> {
    Router::new().route("/", get(home))
}

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

async fn home(
    State(app): State<App>,
    Portal(me): Portal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    // An administrator and an ICB analyst do not search for patients: each starts on their own
    // home (the staff accounts, the service-wide figures).
    let home = crate::kernel::chrome::home_of(me.who.role);
    if home != "/" && !q.contains_key("q") {
        return Ok(Redirect::to(home).into_response());
    }
    let text = q.get("q").cloned().unwrap_or_default();
    let today = app.today();
    let listing = |p| listing(p, today);
    let recent = if q.contains_key("q") {
        Vec::new()
    } else {
        app.recently_viewed(&me.who).await.in_page(&me)?.into_iter().map(listing).collect()
    };
    let mut page = HomePage {
        chrome: Some((&me).into()),
        can_register: me.who.role.works_with_patients(),
        can_transfer: Permission::TransferRecordsIn.allows(me.who.role),
        overdue_alerts: if !me.who.role.works_with_patients() {
            0
        } else {
            app.overdue_alerts(&me.who).await.in_page(&me)?
        },
        overdue_sars: if !me.who.role.works_with_patients() {
            0
        } else {
            app.overdue_sars(&me.who).await.in_page(&me)?
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
                return Ok((StatusCode::BAD_REQUEST, page).into_response());
            }
            Err(e) => return Err(PageError::new(&me, e)),
        }
    }
    Ok(page.into_response())
}
