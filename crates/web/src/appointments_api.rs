//! The appointment book and the online capacity report through the staff JSON API (mounted
//! under `/api/v1`), for practice tools: the same use cases as the pages, with the same
//! permissions and audit.

use crate::authorization::Staff;
use crate::error::WebError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use caldicott_app::capacity::Period;
use caldicott_app::{App, AppError};
use caldicott_core::appointments::{Appointment, Attendance, Slot};
use caldicott_core::ids::{AppointmentId, SlotId};
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::HashMap;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/appointments", get(book).post(book_for_patient))
        .route("/appointments/{appointment}/attendance", post(attendance))
        .route("/slots/{slot}/online", post(slot_online))
        .route("/reports/appointments", get(capacity))
        .route("/icb/appointments", get(icb_capacity))
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, AppError> {
    b.map(|Json(t)| t).map_err(|e| AppError::BadRequest(format!("the body is not a valid request: {e}")))
}

/// A patient as a booking names them.
fn patient_json(p: &caldicott_core::patient::Patient) -> serde_json::Value {
    serde_json::json!({
        "nhs_number": p.nhs_number.as_str(),
        "family_name": p.name.family,
        "given_name": p.name.given,
        "date_of_birth": p.date_of_birth,
    })
}

fn booking_json(a: &Appointment, slot: &Slot, patient: Option<&caldicott_core::patient::Patient>) -> serde_json::Value {
    serde_json::json!({ "slot": slot, "appointment": a, "patient": patient.map(patient_json) })
}

/// `GET /api/v1/appointments?from=YYYY-MM-DD&days=N`: every slot from `from` (default today)
/// for `days` days (1 to 14, default 7), each with its booking and patient.
async fn book(
    State(app): State<App>,
    Staff(who): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, WebError> {
    let from = match q.get("from") {
        None => app.today(),
        Some(d) => d
            .parse::<NaiveDate>()
            .map_err(|_| AppError::BadRequest(format!("from must be a date (YYYY-MM-DD), not {d:?}")))?,
    };
    let days = match q.get("days") {
        None => 7,
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=14).contains(n))
            .ok_or_else(|| AppError::BadRequest(format!("days must be a whole number from 1 to 14, not {n:?}")))?,
    };
    let lines = app.appointment_book(&who, from, days).await?;
    let slots: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| match &l.booking {
            Some((a, p)) => booking_json(a, &l.slot, Some(p)),
            None => serde_json::json!({ "slot": l.slot, "appointment": null, "patient": null }),
        })
        .collect();
    Ok(Json(serde_json::json!({ "from": from, "days": days, "slots": slots })))
}

#[derive(Deserialize)]
struct BookRequest {
    slot: String,
    nhs_number: String,
}

/// `POST /api/v1/appointments` `{ "slot", "nhs_number" }`: books a free slot that has not
/// started for a registered patient (201), as the practice. 422 names a bad or unknown NHS
/// number; 409 if the slot is taken or has started.
async fn book_for_patient(
    State(app): State<App>,
    Staff(who): Staff,
    b: Result<Json<BookRequest>, JsonRejection>,
) -> Result<Response, WebError> {
    let r = body(b)?;
    let slot = r.slot.parse::<SlotId>().map_err(|_| AppError::BadRequest(format!("{:?} is not a slot id", r.slot)))?;
    Ok(match app.staff_book(&who, slot, &r.nhs_number).await? {
        Ok((a, slot, p)) => (StatusCode::CREATED, Json(booking_json(&a, &slot, Some(&p)))).into_response(),
        Err(problem) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "error": { "status": 422, "message": "not booked", "problems": [{ "field": problem.field, "message": problem.message }] }
            })),
        )
            .into_response(),
    })
}

#[derive(Deserialize)]
struct AttendanceRequest {
    attendance: String,
}

/// `POST /api/v1/appointments/{id}/attendance` `{ "attendance": "attended" | "did_not_attend" }`.
async fn attendance(
    State(app): State<App>,
    Staff(who): Staff,
    Path(id): Path<String>,
    b: Result<Json<AttendanceRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, WebError> {
    let r = body(b)?;
    let id = id.parse::<AppointmentId>().map_err(|_| AppError::NotFound("no such appointment".into()))?;
    let outcome = Attendance::parse(&r.attendance).ok_or_else(|| {
        AppError::BadRequest(format!("attendance must be attended or did_not_attend, not {:?}", r.attendance))
    })?;
    let (a, slot) = app.record_attendance(&who, id, outcome).await?;
    Ok(Json(booking_json(&a, &slot, None)))
}

#[derive(Deserialize)]
struct OnlineRequest {
    online: bool,
}

/// `POST /api/v1/slots/{slot}/online` `{ "online": true | false }`: offers a slot that has not
/// started online, or stops offering it.
async fn slot_online(
    State(app): State<App>,
    Staff(who): Staff,
    Path(id): Path<String>,
    b: Result<Json<OnlineRequest>, JsonRejection>,
) -> Result<Json<Slot>, WebError> {
    let r = body(b)?;
    let id = id.parse::<SlotId>().map_err(|_| AppError::NotFound("no such slot".into()))?;
    Ok(Json(app.set_slot_online(&who, id, r.online).await?))
}

fn period(app: &App, q: &HashMap<String, String>) -> Result<Period, AppError> {
    Period::parse(q.get("from").map(String::as_str), q.get("weeks").map(String::as_str), app.today())
        .map_err(AppError::BadRequest)
}

/// `GET /api/v1/reports/appointments?from=YYYY-MM-DD&weeks=N`: the online capacity report.
async fn capacity(
    State(app): State<App>,
    Staff(who): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<caldicott_app::capacity::CapacityReport>, WebError> {
    Ok(Json(app.capacity_report(&who, period(&app, &q)?).await?))
}

/// `GET /api/v1/icb/appointments?from=YYYY-MM-DD&weeks=N`: every practice's totals (ICB analysts).
async fn icb_capacity(
    State(app): State<App>,
    Staff(who): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, WebError> {
    let period = period(&app, &q)?;
    let practices = app.icb_capacity(&who, period).await?;
    Ok(Json(serde_json::json!({ "period": period, "practices": practices })))
}
