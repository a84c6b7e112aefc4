//! The online access panel and the 104/106 buttons: every change that moves what a patient or a
//! proxy sees online is shown before it is saved ("Leo's consultations from 1 Nov 2023 will no
//! longer be visible") and saved only once confirmed. Giving the whole record (historic access)
//! is a choice of its own with its own confirmation; an empty start date is an error, never the
//! whole record.

use crate::kernel::{
    access_text, banner, checked, csrf_forms, long_date, to_patient, Banner, Chrome, Errors, FieldError, InPage,
    PageError, Portal,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caldicott_app::access_panel::{
    AccessChange, EffectiveAccess, OnlineChange, OnlineChangePreview, SectionChange, ViewerEffect,
};
use caldicott_app::record::{PageRequest, ViewAs};
use caldicott_app::redaction::EnhancedReviewCode;
use caldicott_app::session::SignedIn;
use caldicott_app::{App, AppError};
use caldicott_core::access::{AccessLevel, RecordFrom};
use caldicott_core::entry::Section;
use caldicott_core::staff::Role;
use caldicott_core::visibility::GrantSource;
use chrono::NaiveDate;
use serde::Deserialize;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/patients/{nhs_number}/access", get(access_page).post(change_access))
        .route("/patients/{nhs_number}/enhanced-review", post(enhanced_review))
        .route("/patients/{nhs_number}/gp-connect-sharing", post(change_sharing))
}

pub struct GrantRow {
    pub key: &'static str,
    pub level: &'static str,
    pub from: String,
    pub granted: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "access.html")]
struct AccessPage {
    chrome: Option<Chrome>,
    banner: Banner,
    status: String,
    own_level: Option<String>,
    transfer_hold: Option<String>,
    grants: Vec<GrantRow>,
    levels: Vec<(&'static str, &'static str)>,
    opted_out: bool,
    /// The patient's dissent from GP Connect sharing, in words, when one stands.
    dissent: Option<String>,
    action: String,
    csrf: String,
    errors: Vec<FieldError>,
    form: AccessForm,
}

impl Errors for AccessPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct AccessForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    level: String,
    /// "date" or "whole".
    #[serde(default)]
    start: String,
    #[serde(default)]
    from_day: String,
    #[serde(default)]
    from_month: String,
    #[serde(default)]
    from_year: String,
    #[serde(default)]
    whole_confirm: String,
    #[serde(default)]
    confirmed: String,
    /// GP Connect sharing: "yes" to record the patient's dissent, "no" to take it away.
    #[serde(default)]
    dissent: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
pub(crate) struct ReviewForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    confirmed: String,
}

csrf_forms!(AccessForm, ReviewForm);

fn may_change_access(role: Role) -> bool {
    matches!(role, Role::Clinician | Role::PracticeManager)
}

async fn access_form(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    errors: Vec<FieldError>,
    form: AccessForm,
) -> Result<Response, PageError> {
    let chrome = || Some(Chrome::from(me));
    if !may_change_access(me.who.role) {
        return Err(PageError::new(
            me,
            AppError::Forbidden("only clinicians and practice managers change a patient's online access".into()),
        ));
    }
    let page = PageRequest { limit: Some(1), ..Default::default() };
    let rec = app.staff_record(&me.who, nhs, ViewAs::Patient, &page).await.in_page(me)?;
    let today = app.today();
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut grants: Vec<_> = rec.access_settings.grants.iter().collect();
    grants.sort_by_key(|g| std::cmp::Reverse(g.level));
    Ok((
        status,
        AccessPage {
            chrome: chrome(),
            banner: banner(&rec.patient, today, rec.enhanced_review.is_active()),
            status: access_text(&rec.online_access),
            own_level: rec
                .access_settings
                .own_level
                .as_ref()
                .map(|o| format!("{}, set on {} by {}", o.level.display(), long_date(o.set_on), o.set_by)),
            transfer_hold: rec.access_settings.transfer_review_pending.map(|d| {
                format!(
                    "A record was transferred in on {}. The levels granted by hand below do not show the \
                     transferred entries until you set the patient's level again, after reviewing the record.",
                    long_date(d)
                )
            }),
            grants: grants
                .into_iter()
                .map(|g| GrantRow {
                    key: g.level.as_str(),
                    level: g.level.display(),
                    from: match g.from {
                        RecordFrom::Beginning => "The whole record (historic access)".into(),
                        RecordFrom::Date(d) => long_date(d),
                    },
                    granted: format!("{} by {}", long_date(g.granted_on), g.granted_by),
                })
                .collect(),
            levels: [
                AccessLevel::Full,
                AccessLevel::Documents,
                AccessLevel::Detailed,
                AccessLevel::Summary,
                AccessLevel::None,
            ]
            .into_iter()
            .map(|l| (l.as_str(), l.display()))
            .collect(),
            opted_out: rec.access_settings.opted_out,
            dissent: rec.gp_connect_dissent.as_ref().map(|d| {
                format!(
                    "Recorded on {} by {}: \u{201c}{}\u{201d}",
                    long_date(caldicott_core::uk::uk_date(d.recorded_at)),
                    d.recorded_by,
                    d.reason
                )
            }),
            action: format!("/patients/{}/access", rec.patient.nhs_number.as_str()),
            csrf: me.csrf_token.clone(),
            errors,
            form,
        },
    )
        .into_response())
}

async fn access_page(State(app): State<App>, me: Portal, Path(nhs): Path<String>) -> Result<Response, PageError> {
    access_form(&app, &me.0, &nhs, Vec::new(), AccessForm::default()).await
}

/// The change a form asks for, or the errors to show beside its fields.
fn parse_change(f: &AccessForm) -> Result<AccessChange, Vec<FieldError>> {
    let level = AccessLevel::parse(f.level.trim());
    match f.action.as_str() {
        "opt_out" => Ok(AccessChange::OptOut(true)),
        "opt_in" => Ok(AccessChange::OptOut(false)),
        "use_default" => Ok(AccessChange::UsePracticeDefault),
        "remove" => match level.filter(|l| *l != AccessLevel::None) {
            Some(level) => Ok(AccessChange::Remove { level }),
            None => Err(vec![FieldError { field: "level", message: "Choose a level to remove".into() }]),
        },
        "set_level" => {
            let mut errors = Vec::new();
            let Some(level) = level else {
                errors.push(FieldError { field: "level", message: "Choose the patient's level".into() });
                return Err(errors);
            };
            if level == AccessLevel::None {
                return Ok(AccessChange::SetLevel { level, from: RecordFrom::Beginning, historic_confirmed: false });
            }
            match f.start.as_str() {
                "whole" => {
                    if f.whole_confirm != "yes" {
                        errors.push(FieldError {
                            field: "whole_confirm",
                            message: "Confirm that you have reviewed the whole record before giving historic access"
                                .into(),
                        });
                        return Err(errors);
                    }
                    Ok(AccessChange::SetLevel { level, from: RecordFrom::Beginning, historic_confirmed: true })
                }
                "date" => {
                    let parts = [&f.from_day, &f.from_month, &f.from_year].map(|s| s.trim().to_owned());
                    let date = match (parts[0].parse::<u32>(), parts[1].parse::<u32>(), parts[2].parse::<i32>()) {
                        (Ok(d), Ok(m), Ok(y)) => NaiveDate::from_ymd_opt(y, m, d),
                        _ => None,
                    };
                    match date {
                        Some(d) => {
                            Ok(AccessChange::SetLevel { level, from: RecordFrom::Date(d), historic_confirmed: false })
                        }
                        None => Err(vec![FieldError {
                            field: "from_day",
                            message: if parts.iter().all(String::is_empty) {
                                "Enter the date the level starts from, for example 1 4 2024".into()
                            } else {
                                "Enter a real date, for example 1 4 2024".into()
                            },
                        }]),
                    }
                }
                _ => Err(vec![FieldError {
                    field: "start",
                    message: "Choose whether the level starts from a date or covers the whole record".into(),
                }]),
            }
        }
        _ => Err(vec![FieldError { field: "level", message: "Choose what to change".into() }]),
    }
}

async fn change_access(
    State(app): State<App>,
    me: Portal,
    Path(nhs): Path<String>,
    form: Result<Form<AccessForm>, FormRejection>,
) -> Result<Response, PageError> {
    let me = me.0;
    let f = checked(&me, form).ok_or_else(PageError::form_expired)?;
    let change = match parse_change(&f) {
        Ok(c) => c,
        Err(errors) => return access_form(&app, &me, &nhs, errors, f).await,
    };
    if f.confirmed != "yes" {
        let hidden = vec![
            ("action", f.action.clone()),
            ("level", f.level.clone()),
            ("start", f.start.clone()),
            ("from_day", f.from_day.clone()),
            ("from_month", f.from_month.clone()),
            ("from_year", f.from_year.clone()),
            ("whole_confirm", f.whole_confirm.clone()),
        ];
        return match app.preview_online_change(&me.who, &nhs, &OnlineChange::Access(change)).await {
            Ok(p) => confirm_page(&app, &me, &nhs, p, "access", hidden).await,
            Err(AppError::BadRequest(m)) => {
                access_form(&app, &me, &nhs, vec![FieldError { field: "from_day", message: m }], f).await
            }
            Err(e) => Err(PageError::new(&me, e)),
        };
    }
    let done = app.change_access(&me.who, &nhs, &change).await;
    back_or_again(&app, &me, &nhs, done, "from_day", f).await
}

/// After a change: back to the access page, or the page again with the refusal at `field`.
async fn back_or_again<T>(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    done: Result<T, AppError>,
    field: &'static str,
    form: AccessForm,
) -> Result<Response, PageError> {
    match done {
        Ok(_) => Ok(to_patient(me, nhs, "/access")),
        Err(AppError::BadRequest(message)) => {
            access_form(app, me, nhs, vec![FieldError { field, message }], form).await
        }
        Err(e) => Err(PageError::new(me, e)),
    }
}

/// Records the patient's dissent from sharing through GP Connect, or takes it away.
async fn change_sharing(
    State(app): State<App>,
    me: Portal,
    Path(nhs): Path<String>,
    form: Result<Form<AccessForm>, FormRejection>,
) -> Result<Response, PageError> {
    let me = me.0;
    let f = checked(&me, form).ok_or_else(PageError::form_expired)?;
    if !may_change_access(me.who.role) {
        return Err(PageError::new(
            &me,
            AppError::Forbidden("only clinicians and practice managers change a patient's sharing".into()),
        ));
    }
    let dissent = match f.dissent.as_str() {
        "yes" => true,
        "no" => false,
        _ => return Err(PageError::new(&me, AppError::BadRequest("Choose to record or take away the dissent".into()))),
    };
    let done = app.set_gp_connect_dissent(&me.who, &nhs, dissent, &f.reason).await;
    let form = AccessForm { reason: f.reason.clone(), ..AccessForm::default() };
    back_or_again(&app, &me, &nhs, done, "reason", form).await
}

async fn enhanced_review(
    State(app): State<App>,
    me: Portal,
    Path(nhs): Path<String>,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> Result<Response, PageError> {
    let me = me.0;
    let f = checked(&me, form).ok_or_else(PageError::form_expired)?;
    let code = match f.code.as_str() {
        "104" => EnhancedReviewCode::Indicated,
        "106" => EnhancedReviewCode::NotIndicated,
        _ => return Err(PageError::new(&me, AppError::BadRequest("Choose 104 or 106".into()))),
    };
    if f.confirmed != "yes" {
        let p = app.preview_online_change(&me.who, &nhs, &OnlineChange::EnhancedReview(code)).await.in_page(&me)?;
        return confirm_page(&app, &me, &nhs, p, "enhanced-review", vec![("code", f.code.clone())]).await;
    }
    app.add_enhanced_review_code(&me.who, &nhs, code).await.in_page(&me)?;
    Ok(to_patient(&me, &nhs, &format!("?recorded={}", f.code)))
}

// ---- Checking a change before it is saved ----------------------------------------------------

pub struct ViewerLines {
    pub who: String,
    pub before: String,
    pub after: String,
    pub lines: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "access_confirm.html")]
struct ConfirmPage {
    chrome: Option<Chrome>,
    banner: Banner,
    title: String,
    viewers: Vec<ViewerLines>,
    notes: Vec<String>,
    action: String,
    hidden: Vec<(&'static str, String)>,
    csrf: String,
    confirm_label: String,
    back: String,
}

fn section_words(s: Section) -> &'static str {
    match s {
        Section::Consultations => "consultations",
        Section::Problems => "problems",
        Section::Medications => "medicines",
        Section::Results => "test results",
        Section::Documents => "documents",
        Section::Allergies => "allergies",
        Section::Immunisations => "immunisations",
        Section::Codes => "coded entries",
        Section::Communications => "communications",
        Section::CarePlans => "care plans",
    }
}

/// "Leo's consultations from 1 Nov 2023 will no longer be visible (3 entries)".
pub(super) fn change_line(given: &str, c: &SectionChange) -> String {
    format!(
        "{given}'s {} from {} will {} ({} {})",
        section_words(c.section),
        long_date(c.earliest),
        if c.now_visible { "become visible" } else { "no longer be visible" },
        c.count,
        if c.count == 1 { "entry" } else { "entries" }
    )
}

/// The effective level in words: "Full record from 31 Oct 2023 (automatic access)".
pub(super) fn effective_text(e: &EffectiveAccess) -> String {
    if let Some(w) = e.none_because {
        return format!("No record access: {}", w.explain());
    }
    let mut parts: Vec<String> = Vec::new();
    let mut last: Option<(Option<NaiveDate>, GrantSource)> = None;
    for r in e.reach.iter().rev() {
        if last == Some((r.from, r.by)) {
            continue;
        }
        last = Some((r.from, r.by));
        let from = r.from.map_or("over the whole record".to_owned(), |d| format!("from {}", long_date(d)));
        let how = match r.by {
            GrantSource::Automatic => "automatic access",
            GrantSource::Manual if e.own_level.is_some() => "the patient's own level",
            GrantSource::Manual => "granted by hand",
            GrantSource::Proxy => "the proxy's scope",
        };
        parts.push(format!("{} {from} ({how})", r.level.display()));
    }
    if parts.is_empty() {
        "No record access".into()
    } else {
        parts.join("; ")
    }
}

fn viewer_lines(given: &str, v: &ViewerEffect) -> ViewerLines {
    let mut lines: Vec<String> = v.changes.iter().map(|c| change_line(given, c)).collect();
    if lines.is_empty() {
        lines.push("Nothing they see online changes.".into());
    }
    ViewerLines {
        who: if v.proxy.is_some() { v.who.clone() } else { format!("{given} (the patient)") },
        before: effective_text(&v.before),
        after: effective_text(&v.after),
        lines,
    }
}

async fn confirm_page(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    p: OnlineChangePreview,
    path: &str,
    hidden: Vec<(&'static str, String)>,
) -> Result<Response, PageError> {
    let given = p.patient_name.given.clone();
    let digits: String = nhs.chars().filter(char::is_ascii_digit).collect();
    let mut notes = Vec::new();
    if !p.patient_has_account {
        notes.push(format!("{given} has no online account yet: this is what {given} will see once they have one."));
    }
    let (title, confirm_label) = match &p.change {
        OnlineChange::EnhancedReview(EnhancedReviewCode::Indicated) => {
            let manual: Vec<String> = p
                .settings_after
                .grants
                .iter()
                .map(|g| g.level.display().to_owned())
                .chain(p.settings_after.own_level.as_ref().map(|o| format!("own level {}", o.level.display())))
                .collect();
            if !manual.is_empty() {
                notes.push(format!(
                    "A 104 withholds automatic access only. Access set by hand goes on: {}. Change it on the \
                     online access page if it should stop.",
                    manual.join(", ")
                ));
            }
            if !p.proxies.is_empty() {
                notes.push(
                    "A 104 does not change proxy access (D6). Review each proxy's access if it should stop.".into(),
                );
            }
            ("Record 104: enhanced review indicated".to_owned(), "Record 104".to_owned())
        }
        OnlineChange::EnhancedReview(EnhancedReviewCode::NotIndicated) => {
            ("Record 106: enhanced review not indicated".to_owned(), "Record 106".to_owned())
        }
        OnlineChange::Access(AccessChange::SetLevel { level, from, .. }) => {
            if *from == RecordFrom::Beginning && *level != AccessLevel::None {
                notes.push(format!(
                    "This gives {given} the whole record at this level, however old (historic access). You \
                     confirmed that you have reviewed it."
                ));
            }
            (format!("Set {given}'s own level to {}", level.display()), "Save the level".to_owned())
        }
        OnlineChange::Access(AccessChange::UsePracticeDefault) => {
            (format!("Return {given} to the practice's automatic access"), "Use automatic access".to_owned())
        }
        OnlineChange::Access(AccessChange::Remove { level }) => {
            (format!("Remove the {} grant", level.display()), "Remove the grant".to_owned())
        }
        OnlineChange::Access(AccessChange::OptOut(true)) => {
            (format!("Record that {given} opts out of automatic access"), "Record the opt-out".to_owned())
        }
        OnlineChange::Access(AccessChange::OptOut(false)) => {
            (format!("Record that {given} wants automatic access again"), "Record it".to_owned())
        }
    };
    let mut viewers = vec![viewer_lines(&given, &p.patient)];
    viewers.extend(p.proxies.iter().map(|v| viewer_lines(&given, v)));
    let rec_banner = {
        let page = PageRequest { limit: Some(1), ..Default::default() };
        let r = app.staff_record(&me.who, nhs, ViewAs::Patient, &page).await.in_page(me)?;
        banner(&r.patient, app.today(), r.enhanced_review.is_active())
    };
    Ok(ConfirmPage {
        chrome: Some(me.into()),
        banner: rec_banner,
        title,
        viewers,
        notes,
        action: format!("/patients/{digits}/{path}"),
        hidden,
        csrf: me.csrf_token.clone(),
        confirm_label,
        back: format!("/patients/{digits}{}", if path == "access" { "/access" } else { "" }),
    }
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_lines_say_whose_entries_from_when() {
        let c = SectionChange {
            section: Section::Consultations,
            count: 3,
            earliest: NaiveDate::from_ymd_opt(2023, 11, 1).unwrap(),
            now_visible: false,
        };
        assert_eq!(change_line("Leo", &c), "Leo's consultations from 1 Nov 2023 will no longer be visible (3 entries)");
    }

    #[test]
    fn an_empty_start_date_is_an_error_not_the_whole_record() {
        let f =
            AccessForm { action: "set_level".into(), level: "full".into(), start: "date".into(), ..Default::default() };
        assert!(parse_change(&f).is_err());
        let whole = AccessForm { start: "whole".into(), ..f.clone() };
        assert!(parse_change(&whole).is_err(), "the whole record needs its own confirmation");
        let confirmed = AccessForm { whole_confirm: "yes".into(), ..whole };
        assert_eq!(
            parse_change(&confirmed).unwrap(),
            AccessChange::SetLevel { level: AccessLevel::Full, from: RecordFrom::Beginning, historic_confirmed: true }
        );
    }
}
