//! Booking an appointment online, one question a page as the NHS service manual's booking
//! pattern asks: what kind of appointment, then which day, then what time, then check and
//! confirm. Each step is a GET form, so the browser's back button and a reload are safe; only
//! the confirmation books. A slot taken meanwhile sends the patient back to that day's times.

use crate::kernel::{count, with_param, Errors, FieldError, InMyPage, MyChrome, MyPageError, Patient};
use crate::kernel::{for_query, link_of};
use crate::patient::{field, for_form, whose, Pairs};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use caldicott_app::patient_services::PatientSignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::appointments::{uk_time, Slot, SlotType};
use caldicott_core::ids::{ProxyLinkId, SlotId};
use chrono::NaiveDate;
use std::collections::HashMap;

/// Booking's routes: the steps, and the confirmation (posted to the appointments page).
pub(crate) fn routes() -> Router<App> {
    Router::new().route("/my/appointments", axum::routing::post(book)).route("/my/appointments/book", get(book_page))
}

/// One answer a step offers: the value sent, what the patient reads, and a hint under it.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub hint: String,
}

/// The appointment chosen, as the check page shows it.
pub struct Chosen {
    pub id: String,
    pub kind: String,
    pub day: String,
    pub time: String,
    pub with: String,
    pub place: String,
}

/// Which question the page asks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Kind,
    Day,
    Time,
    Check,
}

#[derive(Template, WebTemplate)]
#[template(path = "my_book.html")]
struct BookPage {
    me: Option<MyChrome>,
    csrf: String,
    whose: Option<String>,
    for_id: String,
    /// "kind", "day", "time" or "check".
    step: &'static str,
    /// The name of the field the step asks for ("type", "day" or "slot").
    field: &'static str,
    /// Where the back link goes: the step before.
    back: String,
    choices: Vec<Choice>,
    /// The kind and day chosen so far (values, and words for headings).
    kind: String,
    kind_name: String,
    day: String,
    day_name: String,
    chosen: Option<Chosen>,
    errors: Vec<FieldError>,
}

impl Errors for BookPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

/// The booking page's address with these answers (and whose appointment it is).
fn book_url(link: Option<ProxyLinkId>, answers: &[(&str, &str)]) -> String {
    let mut url = format!("/my/appointments/book{}", for_query(link));
    for (k, v) in answers {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("{k}={v}"));
    }
    url
}

fn day_of(s: &Slot) -> NaiveDate {
    uk_time(s.starts_at).date_naive()
}

fn day_name(d: NaiveDate) -> String {
    d.format("%A %-d %B %Y").to_string()
}

/// The answers so far, read from the query (or the confirmation form): the kind and day are kept
/// only when the practice still offers them online.
struct Answers {
    kind: Option<SlotType>,
    day: Option<NaiveDate>,
    slot: Option<SlotId>,
}

fn answers(q: &HashMap<String, String>, slots: &[Slot]) -> Answers {
    let kind = q.get("type").and_then(|t| SlotType::parse(t)).filter(|k| slots.iter().any(|s| s.slot_type == *k));
    let day = q
        .get("day")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .filter(|d| slots.iter().any(|s| Some(s.slot_type) == kind && day_of(s) == *d));
    let slot = q.get("slot").and_then(|s| s.parse::<SlotId>().ok());
    Answers { kind, day, slot }
}

/// The page for the step the answers reach, with `errors` on its question.
async fn step_page(
    app: &App,
    me: &PatientSignedIn,
    link: Option<ProxyLinkId>,
    q: &HashMap<String, String>,
    mut errors: Vec<FieldError>,
) -> Result<Response, MyPageError> {
    let slots = app.bookable_slots(&me.who, link).await.in_my_page(me)?;
    let a = answers(q, &slots);
    let asked = q.get("step").map(String::as_str);
    let chosen = a.slot.and_then(|id| slots.iter().find(|s| s.id == id));
    let step = match (a.kind, a.day, chosen) {
        (Some(_), Some(_), Some(_)) if errors.is_empty() => Step::Check,
        (Some(_), Some(_), _) => Step::Time,
        (Some(_), None, _) => Step::Day,
        _ => Step::Kind,
    };
    // A question sent back unanswered says so on the question it asked.
    if errors.is_empty() {
        let unanswered = match (asked, step) {
            (Some("kind"), Step::Kind) => Some(("type", "Choose the kind of appointment")),
            (Some("day"), Step::Day) => Some(("day", "Choose a day")),
            (Some("time"), Step::Time) => Some(("slot", "Choose a time")),
            _ => None,
        };
        if let Some((field, message)) = unanswered {
            errors.push(FieldError { field, message: message.into() });
        }
    }
    // Every problem is shown on the question this page asks (a slot taken meanwhile, on a day
    // with nothing left, is told on the day question).
    let field = match step {
        Step::Kind => "type",
        Step::Day => "day",
        Step::Time | Step::Check => "slot",
    };
    for e in &mut errors {
        e.field = field;
    }
    let kind_value = a.kind.map(|k| k.as_str()).unwrap_or_default();
    let day_value = a.day.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default();
    let of_kind: Vec<&Slot> = slots.iter().filter(|s| Some(s.slot_type) == a.kind).collect();
    let (step_name, back, choices) = match step {
        Step::Kind => {
            let choices = SlotType::ALL
                .into_iter()
                .filter_map(|k| {
                    let n = slots.iter().filter(|s| s.slot_type == k).count();
                    (n > 0).then(|| Choice {
                        value: k.as_str().into(),
                        label: k.display().into(),
                        hint: count(n, "time free", "times free"),
                    })
                })
                .collect();
            ("kind", format!("/my/appointments{}", for_query(link)), choices)
        }
        Step::Day => {
            let mut days: Vec<(NaiveDate, usize)> = Vec::new();
            for s in &of_kind {
                match days.last_mut() {
                    Some((d, n)) if *d == day_of(s) => *n += 1,
                    _ => days.push((day_of(s), 1)),
                }
            }
            let choices = days
                .into_iter()
                .map(|(d, n)| Choice {
                    value: d.format("%Y-%m-%d").to_string(),
                    label: day_name(d),
                    hint: count(n, "time free", "times free"),
                })
                .collect();
            ("day", book_url(link, &[]), choices)
        }
        Step::Time => {
            let choices = of_kind
                .iter()
                .filter(|s| Some(day_of(s)) == a.day)
                .map(|s| Choice {
                    value: s.id.to_string(),
                    label: uk_time(s.starts_at).format("%H:%M").to_string(),
                    hint: format!("{} minutes with {}", s.minutes, s.clinician_name),
                })
                .collect();
            ("time", book_url(link, &[("type", kind_value)]), choices)
        }
        Step::Check => ("check", book_url(link, &[("type", kind_value), ("day", &day_value)]), Vec::new()),
    };
    let chosen = chosen.filter(|_| step == Step::Check).map(|s| Chosen {
        id: s.id.to_string(),
        kind: s.slot_type.display().into(),
        day: day_name(day_of(s)),
        time: uk_time(s.starts_at).format("%H:%M").to_string(),
        with: s.clinician_name.clone(),
        place: if s.slot_type.by_telephone() { "The practice will phone you".into() } else { s.location.clone() },
    });
    let page = BookPage {
        me: Some(me.into()),
        csrf: me.csrf_token.clone(),
        whose: whose(app, me, link).await.in_my_page(me)?,
        for_id: link.map(|l| l.to_string()).unwrap_or_default(),
        step: step_name,
        field,
        back,
        choices,
        kind: kind_value.into(),
        kind_name: a.kind.map(|k| k.display().to_owned()).unwrap_or_default(),
        day: day_value,
        day_name: a.day.map(day_name).unwrap_or_default(),
        chosen,
        errors,
    };
    let status = if page.errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((status, page).into_response())
}

/// `GET /my/appointments/book`: the step the query's answers reach.
async fn book_page(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = link_of(q.get("for")).in_my_page(&me)?;
    step_page(&app, &me, link, &q, Vec::new()).await
}

/// `POST /my/appointments`: books the slot confirmed on the check page. Without one the patient
/// starts again; a slot taken meanwhile shows that day's times again, saying so.
async fn book(
    State(app): State<App>,
    Patient(me): Patient,
    form: Result<Form<Pairs>, FormRejection>,
) -> Result<Response, MyPageError> {
    let (f, link) = for_form(&me, form)?;
    let mut q: HashMap<String, String> =
        ["type", "day"].into_iter().filter_map(|k| field(&f, k).map(|v| (k.to_owned(), v.clone()))).collect();
    let Some(slot) = field(&f, "slot").and_then(|s| s.parse::<SlotId>().ok()) else {
        let e = FieldError { field: "type", message: "Choose an appointment".into() };
        return step_page(&app, &me, link, &HashMap::new(), vec![e]).await;
    };
    match app.book_online(&me.who, link, slot).await {
        Ok(_) => Ok(Redirect::to(&with_param("/my/appointments", &for_query(link), "done", "booked")).into_response()),
        Err(AppError::Conflict(m) | AppError::NotFound(m)) => {
            let message = format!("{}{}. Choose another.", m[..1].to_uppercase(), &m[1..]);
            q.remove("slot");
            step_page(&app, &me, link, &q, vec![FieldError { field: "slot", message }]).await
        }
        Err(e) => Err(MyPageError::new(&me, e)),
    }
}
