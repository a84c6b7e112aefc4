//! Results over time: for a patient (or a proxy acting for them) under `/my/results`, and for
//! staff under `/patients/{nhs}/results`. Each series is a chart drawn on the server
//! ([`crate::chart`]) with a table of every reading beside it, in words; a patient's pages are made
//! only from the readings the visibility engine shows them.

use crate::chart;
use crate::kernel::{
    banner, for_query, link_of, long_date, printed_facts, Banner, Chrome, InMyPage, InPage, MyChrome, MyPageError,
    PageError, Patient, Portal, PrintedFacts,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::record::OnlineStatus;
use caldicott_app::session::SignedIn;
use caldicott_app::App;
use caldicott_core::ids::EntryId;
use caldicott_core::trends::{Reading, Series};
use std::collections::HashMap;

pub fn patient_routes() -> Router<App> {
    Router::new().route("/my/results", get(my_list)).route("/my/results/{series}", get(my_series))
}

pub(crate) fn staff_routes() -> Router<App> {
    Router::new()
        .route("/patients/{nhs_number}/results", get(staff_list))
        .route("/patients/{nhs_number}/results/{series}", get(staff_series))
}

/// One reading as a table row.
pub struct ReadingRow {
    pub date: String,
    pub value: String,
    pub range: String,
    pub flag: &'static str,
    pub flag_class: &'static str,
    /// Recorded in another unit than the chart's: listed, not drawn.
    pub other_unit: bool,
    /// A home reading the patient (or a proxy) entered online.
    pub home: bool,
    /// Staff only: whether the patient sees it online, and if not, why.
    pub online: Option<String>,
}

/// One series as a page or a card shows it.
pub struct SeriesView {
    pub label: String,
    pub about: Option<&'static str>,
    pub unit: String,
    /// What the chart marks of the range, as a sentence.
    pub range_sentence: Option<String>,
    /// For the table: "20 to 41", "90/60 to 139/89".
    pub range_short: Option<String>,
    pub href: String,
    pub svg: String,
    pub count: usize,
    pub latest: Option<ReadingRow>,
    /// Newest first.
    pub rows: Vec<ReadingRow>,
}

fn row(r: &Reading, online: Option<&OnlineStatus>) -> ReadingRow {
    ReadingRow {
        date: long_date(r.date),
        value: r.as_recorded.clone(),
        range: r.range_text.clone(),
        flag: r.flag.words(),
        flag_class: chart::flag_class(r.flag),
        other_unit: r.other_unit,
        home: r.patient_entered,
        online: online.map(|o| match &o.withheld {
            None => "Shown".to_owned(),
            Some(w) => format!("Not shown: {}", w.reason),
        }),
    }
}

fn series_view(s: &Series, href: String, online: Option<&HashMap<EntryId, OnlineStatus>>) -> SeriesView {
    let status = |r: &Reading| online.and_then(|m| m.get(&r.entry));
    SeriesView {
        label: s.label.clone(),
        about: s.about,
        unit: chart::unit_text(&s.unit),
        range_sentence: chart::range_sentence(s),
        range_short: chart::range_short(s),
        svg: chart::svg(s, &format!("chart-{}", s.slug)),
        count: s.readings.len(),
        latest: s.latest().map(|r| row(r, status(r))),
        rows: s.readings.iter().rev().map(|r| row(r, status(r))).collect(),
        href,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "my_results.html")]
struct MyListPage {
    me: Option<MyChrome>,
    facts: PrintedFacts,
    heading: String,
    no_record: Option<String>,
    series: Vec<SeriesView>,
    record_href: String,
}

/// `GET /my/results[?for=link]`: every series of results the viewer may follow.
async fn my_list(
    State(app): State<App>,
    Patient(me): Patient,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = link_of(q.get("for")).in_my_page(&me)?;
    let r = app.my_results(&me.who, link, None).await.in_my_page(&me)?;
    let for_query = for_query(link);
    Ok(MyListPage {
        me: Some((&me).into()),
        facts: printed_facts(&app, &me, &r.holder),
        heading: if link.is_some() {
            format!("{}'s results over time", r.whose)
        } else {
            "Your results over time".into()
        },
        no_record: r.no_record,
        series: r.series.iter().map(|s| series_view(s, format!("/my/results/{}{for_query}", s.slug), None)).collect(),
        record_href: format!("/my/record{for_query}"),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "my_result.html")]
struct MySeriesPage {
    me: Option<MyChrome>,
    facts: PrintedFacts,
    heading: String,
    whose: String,
    no_record: Option<String>,
    series: Option<SeriesView>,
    back: String,
}

/// `GET /my/results/{series}[?for=link]`: one series as a chart and a table.
async fn my_series(
    State(app): State<App>,
    Patient(me): Patient,
    Path(slug): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MyPageError> {
    let link = link_of(q.get("for")).in_my_page(&me)?;
    let r = app.my_results(&me.who, link, Some(&slug)).await.in_my_page(&me)?;
    let for_query = for_query(link);
    let series = r.series.first().map(|s| series_view(s, String::new(), None));
    Ok(MySeriesPage {
        me: Some((&me).into()),
        facts: printed_facts(&app, &me, &r.holder),
        heading: series.as_ref().map_or_else(|| "Results over time".to_owned(), |s| s.label.clone()),
        whose: if link.is_some() { format!("{}'s", r.whose) } else { "Your".into() },
        no_record: r.no_record,
        series,
        back: format!("/my/results{for_query}"),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "results.html")]
struct StaffPage {
    chrome: Option<Chrome>,
    banner: Banner,
    heading: String,
    series: Vec<SeriesView>,
    /// One series with its chart and table, or a list of them.
    one: bool,
    back: String,
}

async fn staff_page(app: &App, me: &SignedIn, nhs: &str, slug: Option<&str>) -> Result<Response, PageError> {
    let r = app.staff_results(&me.who, nhs, slug).await.in_page(me)?;
    let base = format!("/patients/{}", r.patient.nhs_number.as_str());
    // The plain-words "about" lines speak to the patient; staff pages leave them out.
    let series: Vec<SeriesView> = r
        .series
        .iter()
        .map(|s| SeriesView { about: None, ..series_view(s, format!("{base}/results/{}", s.slug), Some(&r.online)) })
        .collect();
    Ok(StaffPage {
        chrome: Some(Chrome::from(me)),
        banner: banner(&r.patient, app.today(), r.enhanced_review_active),
        heading: match (slug, series.first()) {
            (Some(_), Some(s)) => s.label.clone(),
            _ => "Results over time".into(),
        },
        one: slug.is_some(),
        series,
        back: if slug.is_some() { format!("{base}/results") } else { base },
    }
    .into_response())
}

/// `GET /patients/{nhs}/results`: every series in the record.
async fn staff_list(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
) -> Result<Response, PageError> {
    staff_page(&app, &me, &nhs, None).await
}

/// `GET /patients/{nhs}/results/{series}`: one series, each reading marked with whether the
/// patient sees it online.
async fn staff_series(
    State(app): State<App>,
    Portal(me): Portal,
    Path((nhs, slug)): Path<(String, String)>,
) -> Result<Response, PageError> {
    staff_page(&app, &me, &nhs, Some(&slug)).await
}
