//! GP Connect Patient Facing Services: Appointments, for a patient's app (the NHS App and other
//! apps a patient linked). The specification's interactions — search for free slots, book,
//! retrieve the patient's appointments, read one, cancel — in GP Connect's STU3 shapes, for the
//! app's own patient (or the person its holder acts for), with the rules and audit of the
//! patient's own pages: only slots offered to patients online, P5 or more to book, a proxy only
//! with the appointments permission, cancelling up to the practice's cut-off. The caller is the
//! app's FHIR access token (`patient/Appointment.write` to book and cancel).

use super::{AppCaller, FhirCaller};
use crate::{App, AppError};
use caldicott_core::appointments::{Appointment, Slot};
use caldicott_core::ids::SlotId;
use caldicott_core::practice::Practice;
use caldicott_fhir::gpconnect::appointments as gpc;
use caldicott_fhir::gpconnect::{GpcError, SpineCode};
use chrono::Duration;
use serde_json::Value;

/// The service root of a practice's Patient Facing Services appointments endpoint, on the
/// main address: `/pfs/{ODS}/STU3/1/appointments`.
pub fn pfs_root(ods: &str) -> String {
    format!("/pfs/{ods}/STU3/1/appointments")
}

/// One request from a patient's app.
#[derive(Debug, Clone, Copy)]
pub struct PfsCall<'a> {
    /// The practice's ODS code from the path.
    pub ods: &'a str,
    /// The bearer token.
    pub token: Option<&'a str>,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

/// An app's refusal in GP Connect's words.
pub(super) fn refused(e: AppError) -> GpcError {
    match e {
        AppError::Unauthenticated(m) | AppError::Forbidden(m) => GpcError::new(SpineCode::AccessDenied, m),
        AppError::NotFound(m) => GpcError::new(SpineCode::NoRecordFound, m),
        AppError::BadRequest(m) => GpcError::new(SpineCode::BadRequest, m),
        AppError::Conflict(m) => GpcError::new(SpineCode::InvalidResource, m),
        other => crate::gp_connect::internal(other),
    }
}

fn slot_end(s: &Slot) -> chrono::DateTime<chrono::Utc> {
    s.starts_at + Duration::minutes(i64::from(s.minutes))
}

impl App {
    /// The app calling, bound to the practice the path names.
    pub(super) async fn pfs_caller(&self, call: &PfsCall<'_>) -> Result<(Box<AppCaller>, Practice), GpcError> {
        let token = call
            .token
            .ok_or_else(|| GpcError::new(SpineCode::AccessDenied, "send the app's access token as a Bearer token"))?;
        let FhirCaller::App(a) = self.fhir_caller(token).await.map_err(refused)? else {
            return Err(GpcError::new(SpineCode::AccessDenied, "Patient Facing Services are for patients' apps"));
        };
        let practice = self
            .store
            .practice(a.practice)
            .await
            .map_err(|e| refused(e.into()))?
            .filter(|p| p.ods_code.as_str() == call.ods)
            .ok_or_else(|| GpcError::new(SpineCode::AccessDenied, "the token is not for this practice"))?;
        Ok((a, practice))
    }

    /// The app's patient, checked as for booking (registered, P5 or more, a proxy with the
    /// appointments permission).
    async fn pfs_patient(&self, a: &AppCaller) -> Result<caldicott_core::patient::Patient, GpcError> {
        let caller = FhirCaller::App(Box::new(a.clone()));
        self.scheduling_patient(&caller, None).await.map(|l| l.patient).map_err(refused)
    }

    fn pfs_write(a: &AppCaller) -> Result<(), GpcError> {
        if a.scopes.allows_write("Appointment") {
            Ok(())
        } else {
            Err(GpcError::new(SpineCode::AccessDenied, "the token's scopes do not include patient/Appointment.write"))
        }
    }

    /// `GET [base]/metadata`.
    pub async fn pfs_metadata(&self, ods: &str) -> Result<Value, GpcError> {
        let ods = caldicott_core::practice::OdsCode::parse(ods)
            .map_err(|_| GpcError::new(SpineCode::BadRequest, "no practice at this address"))?;
        let practice = self
            .store
            .practice_by_ods(&ods)
            .await
            .map_err(|e| refused(e.into()))?
            .ok_or_else(|| GpcError::new(SpineCode::BadRequest, "no practice at this address"))?;
        Ok(gpc::capability_statement(env!("CARGO_PKG_VERSION"), &practice.name))
    }

    /// `GET [base]/Slot?…`: the free slots the patient may book online in the window.
    pub async fn pfs_slots(&self, call: PfsCall<'_>) -> Result<Value, GpcError> {
        let (a, practice) = self.pfs_caller(&call).await?;
        self.pfs_patient(&a).await?;
        let search = gpc::read_slot_search(call.query)?;
        let slots: Vec<Slot> = self
            .free_slots(a.practice)
            .await
            .map_err(refused)?
            .into_iter()
            .filter(|s| s.starts_at >= search.from && slot_end(s) <= search.to)
            .collect();
        let trace = crate::new_id().to_string();
        let sds = self.sds_user_ids(practice.id, search.include_practitioner).await.map_err(refused)?;
        let root = pfs_root(practice.ods_code.as_str());
        Ok(gpc::slots_bundle(&root, &trace, &practice, &slots, &search, &|id| sds.get(id).cloned()))
    }

    /// `POST [base]/Appointment`: books a slot offered online for the app's patient, with the
    /// reason they gave.
    pub async fn pfs_book(&self, call: PfsCall<'_>) -> Result<crate::gp_connect_appointments::Versioned, GpcError> {
        let (a, practice) = self.pfs_caller(&call).await?;
        Self::pfs_write(&a)?;
        let request = gpc::read_patient_booking(call.body)?;
        let patient = self.pfs_patient(&a).await?;
        if request.patient != patient.id.to_string() {
            return Err(GpcError::new(SpineCode::NoRelationship, "an app books only for its own patient"));
        }
        if request.location != practice.id.to_string() {
            return Err(GpcError::new(SpineCode::ReferenceNotFound, "book at the location the slot search gave"));
        }
        let not_offered = || GpcError::new(SpineCode::ReferenceNotFound, "that slot is not available to book online");
        let slot_id = request.slot.parse::<SlotId>().map_err(|_| not_offered())?;
        let slot =
            self.store.slot(a.practice, slot_id).await.map_err(|e| refused(e.into()))?.ok_or_else(not_offered)?;
        if request.practitioners.iter().any(|p| *p != slot.clinician.to_string()) {
            return Err(GpcError::new(SpineCode::ReferenceNotFound, "name the slot's practitioner, or none"));
        }
        if request.start != slot.starts_at || request.end != slot_end(&slot) {
            return Err(GpcError::new(SpineCode::InvalidResource, "start and end must be the slot's"));
        }
        let booked_by = format!("online through {}", a.app.name);
        let reason = Some((request.description.clone(), request.comment.clone()));
        let (appointment, slot) = self
            .book_for(a.practice, patient.id, slot_id, booked_by, a.actor(), reason)
            .await
            .map_err(|e| match e {
                AppError::Conflict(_) => GpcError::new(SpineCode::DuplicateRejected, "the slot is no longer free"),
                AppError::NotFound(_) => not_offered(),
                other => refused(other),
            })?;
        Ok(versioned(&appointment, &slot, &practice))
    }

    /// The app's patient's appointment by id, or `NO_RECORD_FOUND`.
    async fn pfs_appointment(&self, a: &AppCaller, id: &str) -> Result<(Appointment, Slot), GpcError> {
        let patient = self.pfs_patient(a).await?;
        let found = self
            .store
            .appointments_for_patient(a.practice, patient.id)
            .await
            .map_err(|e| refused(e.into()))?
            .into_iter()
            .find(|(x, _)| x.id.to_string() == id);
        found.ok_or_else(|| GpcError::new(SpineCode::NoRecordFound, "there is no such appointment"))
    }

    /// `GET [base]/Appointment/{id}`: one of the patient's appointments from today.
    pub async fn pfs_read(
        &self,
        call: PfsCall<'_>,
        id: &str,
    ) -> Result<crate::gp_connect_appointments::Versioned, GpcError> {
        let (a, practice) = self.pfs_caller(&call).await?;
        let (appointment, slot) = self.pfs_appointment(&a, id).await?;
        if caldicott_core::uk::uk_date(slot.starts_at) < self.today() {
            return Err(GpcError::new(SpineCode::NoRecordFound, "there is no such appointment"));
        }
        let audit = self.fhir_audit(
            &FhirCaller::App(a.clone()),
            appointment.patient,
            format!("pfs/Appointment/{}", appointment.id),
            "read".into(),
        );
        self.audit.record(a.practice, audit).await.map_err(refused)?;
        Ok(versioned(&appointment, &slot, &practice))
    }

    /// `GET [base]/Patient/{id}/Appointment?start=ge…&start=le…`: the patient's appointments.
    pub async fn pfs_appointments(&self, call: PfsCall<'_>, patient: &str) -> Result<Value, GpcError> {
        let (a, practice) = self.pfs_caller(&call).await?;
        let (from, to) = gpc::read_appointment_search(call.query, self.today())?;
        let me = self.pfs_patient(&a).await?;
        if patient != me.id.to_string() {
            return Err(GpcError::new(SpineCode::NoRelationship, "an app reads only its own patient"));
        }
        let mut found: Vec<(Appointment, Slot)> = self
            .store
            .appointments_for_patient(a.practice, me.id)
            .await
            .map_err(|e| refused(e.into()))?
            .into_iter()
            .filter(|(_, s)| s.starts_at >= from && s.starts_at < to)
            .collect();
        found.reverse();
        let audit = self.fhir_audit(
            &FhirCaller::App(a.clone()),
            me.id,
            "pfs/Appointment".into(),
            format!("appointments={}", found.len()),
        );
        self.audit.record(a.practice, audit).await.map_err(refused)?;
        let trace = crate::new_id().to_string();
        let entries: Vec<Value> = found.iter().map(|(x, s)| versioned(x, s, &practice).resource).collect();
        Ok(gpc::searchset_of(&pfs_root(practice.ods_code.as_str()), &trace, "Appointment", entries))
    }

    /// `PUT [base]/Appointment/{id}`: cancels the patient's appointment, up to the practice's
    /// cut-off, with the reason given (the only change Patient Facing Services offers).
    pub async fn pfs_cancel(
        &self,
        call: PfsCall<'_>,
        id: &str,
    ) -> Result<crate::gp_connect_appointments::Versioned, GpcError> {
        let (a, practice) = self.pfs_caller(&call).await?;
        Self::pfs_write(&a)?;
        let (current, slot) = self.pfs_appointment(&a, id).await?;
        let location = practice.id.to_string();
        let gpc::Change::Cancel { reason } =
            gpc::read_change(call.body, &gpc::appointment_resource(&current, &slot, &location), true)?
        else {
            return Err(GpcError::new(SpineCode::InvalidResource, "the only change offered is cancelling"));
        };
        if current.cancelled_at.is_some() {
            return Err(GpcError::new(SpineCode::InvalidResource, "the appointment is cancelled already"));
        }
        let by = format!("online through {}", a.app.name);
        self.cancel_for(a.practice, current.patient, current.id, by, a.actor(), Some(&reason))
            .await
            .map_err(refused)?;
        let (after, slot) = self.pfs_appointment(&a, id).await?;
        Ok(versioned(&after, &slot, &practice))
    }
}

/// An appointment as the patient's app receives it. What a clinician in another care setting
/// wrote when booking (the reason, a comment, their organisation) is for the practice, not for
/// whoever holds the patient's phone: such a booking is described by its kind only.
fn versioned(a: &Appointment, slot: &Slot, practice: &Practice) -> crate::gp_connect_appointments::Versioned {
    let mut shown = a.clone();
    if shown.booked_through.is_some() {
        shown.description = None;
        shown.comment = None;
        shown.booked_through = None;
        shown.cancellation_reason = None;
    }
    crate::gp_connect_appointments::Versioned {
        id: a.id.to_string(),
        version: a.version,
        resource: gpc::appointment_resource(&shown, slot, &practice.id.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apps_refusals_are_gp_connect_codes() {
        assert_eq!(refused(AppError::Forbidden("x".into())).code, SpineCode::AccessDenied);
        assert_eq!(refused(AppError::NotFound("x".into())).code, SpineCode::NoRecordFound);
        assert_eq!(refused(AppError::Conflict("cut-off".into())).code, SpineCode::InvalidResource);
        assert_eq!(pfs_root("Y90210"), "/pfs/Y90210/STU3/1/appointments");
    }
}
