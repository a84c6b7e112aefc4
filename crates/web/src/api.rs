//! The JSON API for staff tools, authenticated by a bearer token issued to a member of staff.

use crate::authorization::Staff;
use crate::error::WebError;
use crate::query::{page_request, view_as};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use caldicott_app::record::{OnlineViewPage, StaffRecordPage, ViewAs};
use caldicott_app::{App, AppError};
use caldicott_core::ids::ProxyLinkId;
use std::collections::HashMap;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/patients/{nhs_number}/record", get(staff_record))
        .route("/patients/{nhs_number}/online-view", get(online_view))
        .route("/patients/{nhs_number}/transfers", get(transfers))
        .route("/reports/exclusions", get(exclusions))
        .route("/reports/monthly-return", get(monthly_return))
        .route("/reports/trend", get(trend))
        .route("/icb/exclusions", get(icb_exclusions))
        .route("/sars", get(sars))
        .route(
            "/transfer-in",
            axum::routing::post(transfer_in)
                .layer(axum::extract::DefaultBodyLimit::max(crate::body::TRANSFER_UPLOAD_LIMIT)),
        )
}

/// The whole record as staff see it, each entry marked with whether the patient sees it online.
async fn staff_record(
    State(app): State<App>,
    Staff(who): Staff,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<StaffRecordPage>, WebError> {
    let page = page_request(&q)?;
    Ok(Json(app.staff_record(&who, &nhs, view_as(&q)?, &page).await?))
}

/// Exactly what the patient (`as=patient`, the default) or one proxy (`as=proxy&proxy=<link id>`)
/// sees online.
async fn online_view(
    State(app): State<App>,
    Staff(who): Staff,
    Path(nhs): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<OnlineViewPage>, WebError> {
    let page = page_request(&q)?;
    let viewer = match q.get("as").map(String::as_str) {
        None | Some("patient") => ViewAs::Patient,
        Some("proxy") => {
            let id =
                q.get("proxy").ok_or_else(|| AppError::BadRequest("as=proxy needs proxy=<proxy link id>".into()))?;
            ViewAs::Proxy(
                id.parse::<ProxyLinkId>()
                    .map_err(|_| AppError::BadRequest(format!("{id:?} is not a proxy link id")))?,
            )
        }
        Some(other) => return Err(AppError::BadRequest(format!("as must be patient or proxy, not {other:?}")).into()),
    };
    Ok(Json(app.online_view(&who, &nhs, viewer, &page).await?))
}

/// Imports a record from another practice: the request body is a FHIR R4 Bundle (JSON). 201 with
/// what was imported, or 422 with every problem found in the file (nothing is imported then).
async fn transfer_in(State(app): State<App>, Staff(who): Staff, body: axum::body::Bytes) -> Result<Response, WebError> {
    Ok(match app.transfer_in(&who, &body).await? {
        Ok(done) => (StatusCode::CREATED, Json(serde_json::to_value(done).unwrap_or_default())).into_response(),
        Err(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "error": { "status": 422, "message": "the file was not imported", "problems": problems }
            })),
        )
            .into_response(),
    })
}

/// The records transferred in for a patient, newest first.
async fn transfers(
    State(app): State<App>,
    Staff(who): Staff,
    Path(nhs): Path<String>,
) -> Result<Json<Vec<caldicott_app::RecordImport>>, WebError> {
    Ok(Json(app.record_imports(&who, &nhs).await?))
}

// ---- Governance reports (R36, R37) ------------------------------------------------------------

/// The practice's exclusion figures, the 50% flag and its action plan.
async fn exclusions(
    State(app): State<App>,
    Staff(who): Staff,
) -> Result<Json<caldicott_app::governance::ExclusionReport>, WebError> {
    Ok(Json(app.exclusion_report(&who).await?))
}

#[derive(serde::Serialize)]
struct MonthlyReturn {
    on: chrono::NaiveDate,
    exclusions: Vec<caldicott_app::governance::ExclusionRow>,
}

/// Every active exclusion: NHS number, when the 104 was recorded and by whom (R37).
async fn monthly_return(State(app): State<App>, Staff(who): Staff) -> Result<Json<MonthlyReturn>, WebError> {
    let (on, exclusions) = app.monthly_return(&who).await?;
    Ok(Json(MonthlyReturn { on, exclusions }))
}

/// Exclusions, grants and withholds by month; `months` from 1 to 60 (default 12).
async fn trend(
    State(app): State<App>,
    Staff(who): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<caldicott_core::governance::TrendMonth>>, WebError> {
    let months =
        match q.get("months") {
            None => 12,
            Some(m) => m.parse::<u32>().ok().filter(|m| (1..=60).contains(m)).ok_or_else(|| {
                AppError::BadRequest(format!("months must be a whole number from 1 to 60, not {m:?}"))
            })?,
        };
    Ok(Json(app.exclusion_trend(&who, months).await?))
}

#[derive(serde::Serialize)]
struct IcbFigures {
    on: chrono::NaiveDate,
    practices: Vec<caldicott_app::governance::PracticeFigures>,
}

/// Every practice's figures, for ICB analysts: counts only.
async fn icb_exclusions(State(app): State<App>, Staff(who): Staff) -> Result<Json<IcbFigures>, WebError> {
    let (on, practices) = app.icb_figures(&who).await?;
    Ok(Json(IcbFigures { on, practices }))
}

/// The subject access request register, open requests by due date first (R31).
async fn sars(State(app): State<App>, Staff(who): Staff) -> Result<Json<Vec<caldicott_app::sar::SarRow>>, WebError> {
    Ok(Json(app.sar_register(&who).await?))
}
