//! A patient's record as staff see it, each entry marked with whether the patient (or a chosen
//! proxy) sees it online, and "view as": the record exactly as that viewer sees it online.

use crate::kernel::{
    access_text, banner, entry_row, method_choices, section_label, with_param, Banner, ChangeLink, Chrome, EntryRow,
    InPage, PageError, Portal, SectionLink,
};
use crate::query::{page_request, view_as};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use caldicott_app::record::{StaffEntry, ViewAs};
use caldicott_app::{App, AppError};
use caldicott_core::entry::Section;
use caldicott_core::visibility::GrantSource;
use std::collections::HashMap;

pub(super) fn routes() -> Router<App> {
    Router::new().route("/patients/{nhs_number}", get(record)).route("/patients/{nhs_number}/online", get(online))
}

pub struct ProxyLinkView {
    pub id: String,
    pub label: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "record.html")]
struct RecordPage {
    chrome: Option<Chrome>,
    banner: Banner,
    notice: Option<String>,
    /// A form's draft the browser may now forget: it was saved ("consultation-<nhs>").
    draft_done: Option<String>,
    can_change: bool,
    can_see_trail: bool,
    can_register: bool,
    registered: bool,
    csrf: String,
    review_active: bool,
    access_text: String,
    proxies: Vec<ProxyLinkView>,
    pharmacy: Option<(String, String)>,
    contact: (String, String, String),
    contact_choices: Vec<(String, &'static str)>,
    apps: Vec<(String, String, Option<String>)>,
    sections: Vec<SectionLink>,
    entries: Vec<EntryRow>,
    caption: String,
    empty_text: &'static str,
    show_online: bool,
    next_page: Option<String>,
}

fn viewer_query(as_viewer: ViewAs) -> String {
    match as_viewer {
        ViewAs::Patient => String::new(),
        ViewAs::Proxy(id) => format!("?as=proxy&proxy={id}"),
    }
}

async fn record(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let page = page_request(&q).in_page(&me)?;
    let as_viewer = view_as(&q).in_page(&me)?;
    let rec = app.staff_record(&me.who, &nhs, as_viewer, &page).await.in_page(&me)?;
    let pharmacy = app.nominated_pharmacy_for(&me.who, rec.patient.id).await.in_page(&me)?;
    // The staff record was opened (and audited) above: the patient is the caller's to see.
    let apps = app
        .patient_apps_by_id(&me.who, rec.patient.id)
        .await
        .in_page(&me)?
        .into_iter()
        .map(|(l, a)| {
            (
                format!("{} ({})", a.name, a.supplier),
                caldicott_core::appointments::uk_time(l.linked_at).format("%-d %b %Y").to_string(),
                l.revoked_at.map(|_| l.revoked_why.clone().unwrap_or_else(|| "revoked".into())),
            )
        })
        .collect();
    let today = app.today();
    let base = format!("/patients/{}", rec.patient.nhs_number.as_str());
    let vq = viewer_query(as_viewer);
    let sections = std::iter::once(None)
        .chain(Section::ALL.into_iter().map(Some))
        .map(|s| SectionLink {
            label: section_label(s),
            href: match s {
                None => format!("{base}{vq}"),
                Some(s) => with_param(&base, &vq, "section", s.as_str()),
            },
            current: s == page.section,
        })
        .collect();
    let section_q = page.section.map_or(vq.clone(), |s| with_param("", &vq, "section", s.as_str()));
    let next_page = rec.next_cursor.as_ref().map(|c| with_param(&base, &section_q, "cursor", c));
    let whose = match as_viewer {
        ViewAs::Patient => "the patient".to_owned(),
        ViewAs::Proxy(id) => {
            rec.proxies.iter().find(|p| p.id == id).map_or("this proxy".into(), |p| p.relationship.to_lowercase())
        }
    };
    let can_change = me.who.role == caldicott_core::staff::Role::Clinician;
    let entries = rec
        .entries
        .iter()
        .map(|e: &StaffEntry| {
            let mut row = entry_row(&e.entry, Some(&e.online));
            if can_change {
                row.change = Some(ChangeLink {
                    href: format!("{base}/entries/{}/online", e.entry.id),
                    label: if e.entry.visibility.is_hidden() { "Show online" } else { "Hide online" },
                });
            }
            row
        })
        .collect();
    // Each proxy by name and relationship: a patient may have two parents.
    let proxies = rec
        .proxies
        .iter()
        .zip(&rec.proxy_names)
        .map(|(p, name)| ProxyLinkView {
            id: p.id.to_string(),
            label: format!("{name} ({}, {})", p.relationship.to_lowercase(), p.basis.as_str().replace('_', " ")),
        })
        .collect();
    let notice = q.get("recorded").map(|code| match code.as_str() {
        "104" => {
            let mut text =
                "104 recorded: automatic online access to this record is withheld until a 106 is recorded.".to_owned();
            let manual: Vec<String> = rec
                .online_access
                .levels
                .iter()
                .filter(|l| l.by == GrantSource::Manual)
                .map(|l| l.level.display().to_owned())
                .collect();
            if !manual.is_empty() {
                text.push_str(&format!(
                    " Access granted by hand is not changed by a 104 and continues: {}. Decide whether it should stop.",
                    manual.join(", ")
                ));
            }
            text
        }
        _ => "106 recorded: the enhanced review no longer withholds automatic access.".to_owned(),
    });
    let draft_done =
        q.contains_key("consultation_saved").then(|| format!("consultation-{}", rec.patient.nhs_number.as_str()));
    let notice = notice.or_else(|| draft_done.as_ref().map(|_| "Consultation saved.".to_owned())).or_else(|| {
        q.contains_key("document_added").then(|| {
            "Document added. It waits in the filing queue, where a clinician decides whether the patient sees it online."
                .to_owned()
        })
    });
    Ok(RecordPage {
        chrome: Some(Chrome::from(&me)),
        pharmacy,
        contact: (
            rec.patient.preferred_contact.code().map_or("unknown".to_owned(), |c| c.to_string()),
            rec.patient.contact.email.clone().unwrap_or_default(),
            rec.patient.contact.mobile.clone().unwrap_or_default(),
        ),
        contact_choices: method_choices(),
        apps,
        notice,
        draft_done,
        can_change,
        can_register: me.who.role.works_with_patients(),
        registered: rec.patient.registration_on(today).is_some(),
        can_see_trail: matches!(
            me.who.role,
            caldicott_core::staff::Role::Clinician | caldicott_core::staff::Role::PracticeManager
        ),
        csrf: me.csrf_token.clone(),
        review_active: rec.enhanced_review.is_active(),
        banner: banner(&rec.patient, today, rec.enhanced_review.is_active()),
        access_text: access_text(&rec.online_access),
        proxies,
        sections,
        entries,
        caption: format!("{}, newest first; the Online column is for {whose}", section_label(page.section)),
        empty_text: "No entries in this section.",
        show_online: true,
        next_page,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "online.html")]
struct OnlinePage {
    chrome: Option<Chrome>,
    banner: Banner,
    heading: String,
    access_text: String,
    record_query: String,
    entries: Vec<EntryRow>,
    caption: String,
    empty_text: &'static str,
    show_online: bool,
    next_page: Option<String>,
}

async fn online(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let page = page_request(&q).in_page(&me)?;
    let as_viewer = view_as(&q).in_page(&me)?;
    let view = app.online_view(&me.who, &nhs, as_viewer, &page).await.in_page(&me)?;
    let Some(patient) = view.context.patient.clone() else {
        return Err(PageError::new(&me, AppError::Internal("online view without its patient".into())));
    };
    let today = app.today();
    // A proxy is named, with their relationship: a patient may have two parents.
    let heading = match (&view.context.proxy_name, &view.context.proxy_relationship) {
        (Some(name), Some(rel)) => {
            format!("What {name} ({}) sees online for {}", rel.to_lowercase(), patient.name.given)
        }
        (Some(name), None) => format!("What {name} sees online for {}", patient.name.given),
        (None, Some(rel)) => format!("What {rel} sees online for {}", patient.name.given),
        (None, None) => format!("What {} sees online", patient.name.given),
    };
    let base = format!("/patients/{}/online", patient.nhs_number.as_str());
    let vq = viewer_query(as_viewer);
    Ok(OnlinePage {
        chrome: Some(Chrome::from(&me)),
        banner: banner(&patient, today, view.context.enhanced_review_active),
        heading,
        access_text: access_text(&view.access),
        record_query: vq.clone(),
        entries: view.entries.iter().map(|e| entry_row(e, None)).collect(),
        caption: "Entries this viewer sees, newest first".into(),
        empty_text: "This viewer sees no record entries.",
        show_online: false,
        next_page: view.next_cursor.as_ref().map(|c| with_param(&base, &vq, "cursor", c)),
    }
    .into_response())
}
