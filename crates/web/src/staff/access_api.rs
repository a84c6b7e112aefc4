//! The online access panel's changes through the staff JSON API (mounted under `/api/v1`): as on
//! the page, a change is first answered with what it would change for the patient and each proxy,
//! and made (audited) only when sent again with `"confirm": true`.

use super::access::{change_line, effective_text};
use crate::authorization::Staff;
use crate::error::WebError;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use caldicott_app::access_panel::{AccessChange, EffectiveAccess, OnlineChange, OnlineChangePreview, ViewerEffect};
use caldicott_app::redaction::EnhancedReviewCode;
use caldicott_app::{App, AppError};
use caldicott_core::access::{AccessLevel, RecordFrom};
use caldicott_core::gpconnect::SharingDissent;
use chrono::NaiveDate;
use serde::Deserialize;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/patients/{nhs_number}/access", post(api_access))
        .route("/patients/{nhs_number}/enhanced-review", post(api_enhanced_review))
        .route("/patients/{nhs_number}/gp-connect-sharing", post(api_set_sharing))
}

/// `POST /api/v1/patients/{nhs}/gp-connect-sharing`: record the patient's dissent from sharing
/// their record through GP Connect (`"dissent": true` with a `reason`), or take it away. The
/// record (`GET …/record`) carries it as `gp_connect_dissent`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharingRequest {
    dissent: bool,
    #[serde(default)]
    reason: String,
}

fn sharing_json(d: Option<&SharingDissent>) -> serde_json::Value {
    serde_json::json!({
        "dissent": d.is_some(),
        "shared_through_gp_connect": d.is_none(),
        "recorded_at": d.map(|d| d.recorded_at),
        "recorded_by": d.map(|d| d.recorded_by.clone()),
        "reason": d.map(|d| d.reason.clone()),
    })
}

async fn api_set_sharing(
    State(app): State<App>,
    Staff(who): Staff,
    Path(nhs): Path<String>,
    body: Result<axum::Json<SharingRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, WebError> {
    let axum::Json(r) = body.map_err(|e| AppError::BadRequest(format!("the body is not a valid request: {e}")))?;
    let held = app.set_gp_connect_dissent(&who, &nhs, r.dissent, &r.reason).await?;
    Ok(axum::Json(sharing_json(held.as_ref())).into_response())
}

/// `POST /api/v1/patients/{nhs}/access`: a change to the patient's online access settings.
/// Without `"confirm": true` it changes nothing and answers what it would change for the patient
/// and each proxy; with it, the change is made (audited) and the new settings are returned.
#[derive(Deserialize)]
struct AccessRequest {
    /// set_level, use_default, remove, opt_out or opt_in.
    change: String,
    #[serde(default)]
    level: Option<String>,
    /// A date (YYYY-MM-DD) or "whole_record".
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    historic_confirmed: bool,
    #[serde(default)]
    confirm: bool,
}

/// `POST /api/v1/patients/{nhs}/enhanced-review`: record 104 or 106, checked first the same way.
#[derive(Deserialize)]
struct ReviewRequest {
    code: String,
    #[serde(default)]
    confirm: bool,
}

fn api_change(r: &AccessRequest) -> Result<AccessChange, AppError> {
    let level = match r.level.as_deref() {
        None => None,
        Some(l) => Some(AccessLevel::parse(l).ok_or_else(|| {
            AppError::BadRequest(format!("level must be none, summary, detailed, documents or full, not {l:?}"))
        })?),
    };
    let need_level = || level.ok_or_else(|| AppError::BadRequest("this change needs a level".into()));
    Ok(match r.change.as_str() {
        "opt_out" => AccessChange::OptOut(true),
        "opt_in" => AccessChange::OptOut(false),
        "use_default" => AccessChange::UsePracticeDefault,
        "remove" => AccessChange::Remove { level: need_level()? },
        "set_level" => {
            let level = need_level()?;
            let from = match (level, r.from.as_deref()) {
                (AccessLevel::None, _) => RecordFrom::Beginning,
                (_, Some("whole_record")) => RecordFrom::Beginning,
                (_, Some(d)) => RecordFrom::Date(d.parse::<NaiveDate>().map_err(|_| {
                    AppError::BadRequest(format!("from must be a date (YYYY-MM-DD) or \"whole_record\", not {d:?}"))
                })?),
                (_, None) => {
                    return Err(AppError::BadRequest(
                        "from is required: a date (YYYY-MM-DD), or \"whole_record\" with historic_confirmed".into(),
                    ))
                }
            };
            AccessChange::SetLevel { level, from, historic_confirmed: r.historic_confirmed }
        }
        other => {
            return Err(AppError::BadRequest(format!(
                "change must be set_level, use_default, remove, opt_out or opt_in, not {other:?}"
            )))
        }
    })
}

fn effective_json(e: &EffectiveAccess) -> serde_json::Value {
    serde_json::json!({
        "level": e.level.as_str(),
        "summary": effective_text(e),
        "no_record_access": e.none_because.map(|w| serde_json::json!({ "rule": w.rule(), "reason": w.explain() })),
        "own_level": e.own_level.map(|(l, on)| serde_json::json!({ "level": l.as_str(), "set_on": on })),
        "reach": e.reach,
    })
}

fn preview_json(p: &OnlineChangePreview) -> serde_json::Value {
    let given = &p.patient_name.given;
    let viewer = |v: &ViewerEffect| {
        serde_json::json!({
            "who": v.who,
            "proxy_link": v.proxy.as_ref().map(|l| l.id.to_string()),
            "before": effective_json(&v.before),
            "after": effective_json(&v.after),
            "changes": v.changes.iter().map(|c| serde_json::json!({
                "section": c.section,
                "count": c.count,
                "earliest": c.earliest,
                "now_visible": c.now_visible,
                "sentence": change_line(given, c),
            })).collect::<Vec<_>>(),
        })
    };
    serde_json::json!({
        "confirmed": false,
        "patient_has_account": p.patient_has_account,
        "patient": viewer(&p.patient),
        "proxies": p.proxies.iter().map(viewer).collect::<Vec<_>>(),
        "settings_after": p.settings_after,
    })
}

async fn api_access(
    State(app): State<App>,
    Staff(who): Staff,
    Path(nhs): Path<String>,
    body: Result<axum::Json<AccessRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, WebError> {
    let axum::Json(r) = body.map_err(|e| AppError::BadRequest(format!("the body is not a valid request: {e}")))?;
    let change = api_change(&r)?;
    if !r.confirm {
        let p = app.preview_online_change(&who, &nhs, &OnlineChange::Access(change)).await?;
        return Ok(axum::Json(preview_json(&p)).into_response());
    }
    let settings = app.change_access(&who, &nhs, &change).await?;
    Ok(axum::Json(serde_json::json!({ "confirmed": true, "settings": settings })).into_response())
}

async fn api_enhanced_review(
    State(app): State<App>,
    Staff(who): Staff,
    Path(nhs): Path<String>,
    body: Result<axum::Json<ReviewRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, WebError> {
    let axum::Json(r) = body.map_err(|e| AppError::BadRequest(format!("the body is not a valid request: {e}")))?;
    let code = match r.code.as_str() {
        "104" => EnhancedReviewCode::Indicated,
        "106" => EnhancedReviewCode::NotIndicated,
        other => return Err(AppError::BadRequest(format!("code must be \"104\" or \"106\", not {other:?}")).into()),
    };
    if !r.confirm {
        let p = app.preview_online_change(&who, &nhs, &OnlineChange::EnhancedReview(code)).await?;
        return Ok(axum::Json(preview_json(&p)).into_response());
    }
    let out = app.add_enhanced_review_code(&who, &nhs, code).await?;
    Ok(axum::Json(serde_json::json!({
        "confirmed": true,
        "enhanced_review_active": out.after.is_active(),
        "grants_made_by_hand_remain": out.manual_grants_remain,
    }))
    .into_response())
}
