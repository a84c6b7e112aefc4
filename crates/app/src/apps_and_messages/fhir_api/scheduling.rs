//! Slot and Appointment: free slots to read, and an app's patient's appointments to read, book
//! and cancel, through the same rules and audit as the patient's own pages.

use super::{not_found, FhirCaller};
use crate::record::Loaded;
use crate::{App, AppError, AppResult};
use caldicott_core::access::IdentityLevel;
use caldicott_core::appointments::{can_book_online, Slot};
use caldicott_core::ids::*;
use caldicott_fhir::write as fhir;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// A slot's FHIR status: free to book online, booked, or not offered online (past, or kept
/// for booking by the practice).
fn slot_status(s: &Slot, booked: bool, now: DateTime<Utc>) -> &'static str {
    match (booked, can_book_online(s, now)) {
        (true, _) => "busy",
        (false, true) => "free",
        (false, false) => "busy-unavailable",
    }
}

fn slot_resource(s: &Slot, status: &str) -> Value {
    json!({
        "resourceType": "Slot",
        "id": s.id.to_string(),
        "meta": { "profile": [format!("{}UKCore-Slot", fhir::UK_CORE)] },
        "serviceType": [{ "text": s.slot_type.display() }],
        "schedule": { "display": format!("{}, {}", s.clinician_name, s.location) },
        "status": status,
        "start": fhir::instant(s.starts_at),
        "end": fhir::instant(s.starts_at + Duration::minutes(i64::from(s.minutes))),
    })
}

impl App {
    /// For booking: an app's patient must be registered, alive and known to at least P5 (the
    /// same rule as the patient's own pages), and a proxy must have the appointments permission.
    pub(super) async fn scheduling_patient(&self, caller: &FhirCaller, patient: Option<&str>) -> AppResult<Loaded> {
        let (l, _) = self.view_for(caller, patient).await?;
        let today = self.today();
        if l.patient.registration_on(today).is_none() || l.patient.is_deceased_on(today) {
            return Err(AppError::Forbidden("this person is not registered at the practice".into()));
        }
        if let FhirCaller::App(a) = caller {
            let identity = self.link_identity(a.practice, &a.link).await?;
            if identity.is_none_or(|i| i == IdentityLevel::P0) {
                return Err(AppError::Forbidden("verify your identity to use online services".into()));
            }
            if a.proxy.as_ref().is_some_and(|p| !p.scope.appointments) {
                return Err(AppError::Forbidden(
                    "managing appointments is not part of this proxy's access; contact the practice".into(),
                ));
            }
        }
        Ok(l)
    }

    /// One slot of the practice by id, in whatever state (a booked appointment points at it).
    pub(super) async fn slot_by_id(&self, practice: PracticeId, id: &str) -> AppResult<Option<Value>> {
        let Ok(id) = Uuid::try_parse(id) else { return Ok(None) };
        Ok(self
            .store
            .slot_with_booking(practice, SlotId::from_uuid(id))
            .await?
            .map(|(s, booking)| slot_resource(&s, slot_status(&s, booking.is_some(), self.now()))))
    }

    pub(super) async fn free_slots(&self, practice: PracticeId) -> AppResult<Vec<Slot>> {
        let now = self.now();
        Ok(self
            .store
            .slots_between(practice, now, now + Duration::days(crate::appointments::BOOKING_HORIZON_DAYS))
            .await?
            .into_iter()
            .filter(|(s, b)| b.is_none() && can_book_online(s, now))
            .map(|(s, _)| s)
            .collect())
    }

    /// Reads and searches of Slot and Appointment: the resources, and for appointments the
    /// record they were read from (`None` for slots, or when nothing matched an id).
    pub(super) async fn scheduling_read(
        &self,
        caller: &FhirCaller,
        resource: &str,
        id: Option<&str>,
        patient: Option<&str>,
    ) -> AppResult<(Option<Loaded>, Vec<Value>)> {
        let practice = caller.practice();
        if resource == "Slot" {
            if matches!(caller, FhirCaller::App(_)) {
                self.scheduling_patient(caller, None).await?;
            }
            if let Some(id) = id {
                return Ok((None, self.slot_by_id(practice, id).await?.into_iter().collect()));
            }
            let slots = self.free_slots(practice).await?;
            return Ok((None, slots.iter().map(|s| slot_resource(s, "free")).collect()));
        }
        let now = self.now();
        let (l, found) = match (caller, id, patient) {
            // A practice-facing read of one appointment: its booking names the patient.
            (FhirCaller::Staff(_) | FhirCaller::System(_), Some(i), None) => {
                let Some(found) = Uuid::try_parse(i).ok().map(AppointmentId::from_uuid) else {
                    return Ok((None, vec![]));
                };
                let Some((a, s)) = self.store.appointment(practice, found).await? else { return Ok((None, vec![])) };
                let (l, _) = self.view_for(caller, Some(&a.patient.to_string())).await?;
                (l, vec![fhir::appointment_resource(&a, &s, now)])
            }
            _ => {
                let l = match caller {
                    FhirCaller::App(_) => self.scheduling_patient(caller, patient).await?,
                    // The practice reads the bookings of anyone it holds, registered now or not.
                    FhirCaller::Staff(_) | FhirCaller::System(_) => self.view_for(caller, patient).await?.0,
                };
                let found = self
                    .store
                    .appointments_for_patient(practice, l.patient.id)
                    .await?
                    .iter()
                    .filter(|(a, _)| id.is_none_or(|i| a.id.to_string() == i))
                    .map(|(a, s)| fhir::appointment_resource(a, s, now))
                    .collect();
                (l, found)
            }
        };
        let audit =
            self.fhir_audit(caller, l.patient.id, "fhir/Appointment".into(), format!("appointments={}", found.len()));
        self.audit.record(practice, audit).await?;
        Ok((Some(l), found))
    }

    /// `POST [base]/Appointment`: an app books a free slot for its patient; `POST [base]/Task`:
    /// it orders a repeat (`prescriptions`).
    pub async fn fhir_create(&self, caller: &FhirCaller, resource: &str, body: &Value) -> AppResult<Value> {
        let FhirCaller::App(a) = caller else {
            return Err(AppError::Forbidden(
                "staff book appointments in the appointment book, and order repeats from the record".into(),
            ));
        };
        if resource == "Task" {
            return self.order_repeat(a, body).await.map(fhir::compact);
        }
        if resource != "Appointment" {
            return Err(AppError::Forbidden(format!("{resource} cannot be created here")));
        }
        if !a.scopes.allows_write("Appointment") {
            return Err(AppError::Forbidden("the token's scopes do not include patient/Appointment.write".into()));
        }
        if body["resourceType"] != "Appointment" {
            return Err(AppError::BadRequest("send an Appointment resource".into()));
        }
        let slot = body["slot"][0]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Slot/"))
            .and_then(|s| Uuid::try_parse(s).ok())
            .ok_or_else(|| AppError::BadRequest("name the slot to book: slot[0].reference = \"Slot/<id>\"".into()))?;
        if let Some(p) =
            body["participant"].as_array().into_iter().flatten().find_map(|p| p["actor"]["reference"].as_str())
        {
            if p.strip_prefix("Patient/") != Some(&a.patient().to_string()) {
                return Err(AppError::Forbidden("an app books only for its own patient".into()));
            }
        }
        let pid = self.scheduling_patient(caller, None).await?.patient.id;
        let (appointment, slot) = self
            .book_for(
                a.practice,
                pid,
                SlotId::from_uuid(slot),
                format!("online through {}", a.app.name),
                a.actor(),
                None,
            )
            .await?;
        Ok(fhir::compact(fhir::appointment_resource(&appointment, &slot, self.now())))
    }

    /// `PUT [base]/Appointment/{id}` with `status: cancelled`: an app cancels its patient's
    /// appointment (the only change offered).
    pub async fn fhir_update(&self, caller: &FhirCaller, resource: &str, id: &str, body: &Value) -> AppResult<Value> {
        let FhirCaller::App(a) = caller else {
            return Err(AppError::Forbidden(
                "only a patient's app changes these: staff cancel appointments in the appointment book and close orders in tasks"
                    .into(),
            ));
        };
        if resource == "Task" {
            return self.cancel_order_through_app(a, id, body).await;
        }
        if resource != "Appointment" {
            return Err(AppError::Forbidden(format!("{resource} cannot be changed here")));
        }
        if !a.scopes.allows_write("Appointment") {
            return Err(AppError::Forbidden("the token's scopes do not include patient/Appointment.write".into()));
        }
        if body["resourceType"] != "Appointment" || body["status"] != "cancelled" {
            return Err(AppError::BadRequest(
                "the only change offered is cancelling: send the Appointment with status \"cancelled\"".into(),
            ));
        }
        let appointment = Uuid::try_parse(id).map_err(|_| not_found("Appointment", id))?;
        let pid = self.scheduling_patient(caller, None).await?.patient.id;
        self.cancel_for(
            a.practice,
            pid,
            AppointmentId::from_uuid(appointment),
            format!("online through {}", a.app.name),
            a.actor(),
            None,
        )
        .await
        .map_err(|e| match e {
            AppError::NotFound(_) => not_found("Appointment", id),
            other => other,
        })?;
        let now = self.now();
        self.store
            .appointments_for_patient(a.practice, pid)
            .await?
            .iter()
            .find(|(x, _)| x.id.to_string() == id)
            .map(|(x, s)| fhir::compact(fhir::appointment_resource(x, s, now)))
            .ok_or_else(|| not_found("Appointment", id))
    }
}
