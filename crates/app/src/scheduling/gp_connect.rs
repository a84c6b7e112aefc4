//! GP Connect Appointment Management, the provider side: a clinician or call handler in another
//! care setting (NHS 111, urgent care, a hospital) finds a patient registered here, searches the
//! free slots the practice offers to other care settings, books one, reads and lists the
//! patient's appointments, changes what they wrote on their own booking, and cancels it.
//!
//! The practice decides what is offered: only slots of clinics marked "other care settings can
//! book these slots" ([`caldicott_core::appointments::can_book_from_elsewhere`]), in the future
//! and free. A consumer changes or cancels only the appointments its own organisation booked;
//! one slot never holds two live bookings (the database refuses the second, T46). Every request
//! about a patient, and every slot search, is audited with the requesting organisation,
//! practitioner, consumer system and trace id; bookings and cancellations in the same
//! transaction as the change.

use crate::gp_connect::{appointments_root, internal, plain, GpcCall};
use crate::{new_id, App, AppResult};
use caldicott_core::appointments::{can_book_from_elsewhere, Appointment, OrganisationType, Slot};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::gpconnect::patient_refusal;
use caldicott_core::ids::{AppointmentId, PatientId, PracticeId, SlotId};
use caldicott_core::practice::Practice;
use caldicott_fhir::gpconnect::appointments as gpc;
use caldicott_fhir::gpconnect::request::{Claims, Ssp};
use caldicott_fhir::gpconnect::{GpcError, SpineCode};
use caldicott_store::{BookingChange, Conflict, StoreError};
use chrono::Duration;
use serde_json::Value;

/// An appointment as answered, with its version for the `ETag`.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub id: String,
    pub version: u32,
    pub resource: Value,
}

/// A booked appointment's `ETag` value: `W/"<version>"`.
pub fn etag(version: u32) -> String {
    format!("W/\"{version}\"")
}

/// The version an `If-Match` names (`W/"3"` or `"3"`), or a refusal.
fn if_match_version(h: Option<&str>) -> Result<Option<u32>, GpcError> {
    let Some(h) = h.map(str::trim) else { return Ok(None) };
    // An If-Match that names no version of ours cannot match the one held (the specification's
    // test pack sends `invalidEtag` and expects the conflict).
    h.trim_start_matches("W/").trim_matches('"').parse::<u32>().map(Some).map_err(|_| {
        GpcError::new(
            SpineCode::FhirConstraintViolation,
            "If-Match does not name the appointment's version: send its ETag, as W/\"1\"",
        )
    })
}

fn no_appointment() -> GpcError {
    GpcError::new(SpineCode::NoRecordFound, "there is no such appointment")
}

impl App {
    /// The checks every appointments request passes: the practice and headers, and the claims
    /// with the scope the interaction needs. Returns the base URL for the answer's links.
    async fn gp_connect_appointments_call(
        &self,
        call: &GpcCall<'_>,
        interaction: &str,
        scope: &str,
    ) -> Result<(Practice, Ssp, Claims, String), GpcError> {
        self.gp_connect_rooted(call, interaction, scope, appointments_root).await
    }

    /// Audits a read (a search, a patient found, appointments read) of the appointments endpoint.
    async fn gp_connect_appointments_look(
        &self,
        (practice, claims, ssp): (&Practice, &Claims, &Ssp),
        patient: Option<PatientId>,
        outcome: Outcome,
        entity: String,
        extra: String,
    ) -> Result<(), GpcError> {
        let rec =
            self.gp_connect_audit(claims, ssp, patient, outcome, entity, extra, Action::GpConnectAppointmentsRead);
        self.audit.record(practice.id, rec).await.map_err(internal)
    }

    /// `GET [base]/metadata` of the appointments endpoint.
    pub async fn gp_connect_appointments_metadata(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, _, _, _) =
            self.gp_connect_appointments_call(&call, gpc::METADATA_INTERACTION, "organization/*.read").await?;
        Ok(gpc::capability_statement(env!("CARGO_PKG_VERSION"), &practice.name))
    }

    /// `GET [base]/Patient?identifier=…|<NHS number>`: the patient when registered here and living.
    pub async fn gp_connect_appointments_find_patient(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, ssp, claims, base) =
            self.gp_connect_appointments_call(&call, gpc::PATIENT_SEARCH_INTERACTION, "patient/*.read").await?;
        let found =
            self.gp_connect_find(&practice, &claims, &ssp, call.query, Action::GpConnectAppointmentsRead).await?;
        Ok(gpc::patient_search_bundle(&base, &ssp.trace_id, found.as_ref().map(|p| (p, &practice)), self.today()))
    }

    /// `GET [base]/Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|<code>`
    /// (Foundations): the practice in a searchset when the code is its own, an empty searchset
    /// otherwise (finding nothing is not an error). No patient is read, so nothing is audited.
    pub async fn gp_connect_find_organization(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, ssp, _, base) = self
            .gp_connect_appointments_call(&call, gpc::ORGANIZATION_SEARCH_INTERACTION, "organization/*.read")
            .await?;
        let asked = gpc::read_organization_search(call.query)?;
        Ok(gpc::organization_search_bundle(&base, &ssp.trace_id, &practice, &asked))
    }

    /// `GET [base]/Patient/{id}`, `Practitioner/{id}`, `Organization/{id}`, `Location/{id}`:
    /// what an appointment or a slot references (Foundations). A patient is read only when
    /// registered here and living (and audited); a practitioner is one of the practice's
    /// clinicians; the organisation and the location are the practice's.
    pub async fn gp_connect_foundation(&self, call: GpcCall<'_>, kind: &str, id: &str) -> Result<Versioned, GpcError> {
        let (interaction, scope) = match kind {
            "Patient" => (gpc::READ_PATIENT_INTERACTION, "patient/*.read"),
            "Practitioner" => (gpc::READ_PRACTITIONER_INTERACTION, "organization/*.read"),
            "Organization" => (gpc::READ_ORGANIZATION_INTERACTION, "organization/*.read"),
            _ => (gpc::READ_LOCATION_INTERACTION, "organization/*.read"),
        };
        let (practice, ssp, claims, _) = self.gp_connect_appointments_call(&call, interaction, scope).await?;
        let none = || GpcError::new(SpineCode::NoRecordFound, format!("there is no such {kind} here"));
        let ours = id == practice.id.to_string();
        let resource = match kind {
            "Patient" => {
                let p = self
                    .gp_connect_patient(&practice, &claims, &ssp, id, "read", Action::GpConnectAppointmentsRead)
                    .await?;
                let entity = format!("patient/{}", p.id);
                self.gp_connect_appointments_look(
                    (&practice, &claims, &ssp),
                    Some(p.id),
                    Outcome::Success,
                    entity,
                    "read".into(),
                )
                .await?;
                gpc::patient(&p, &practice, self.today())
            }
            "Practitioner" => {
                let staff = match id.parse::<caldicott_core::ids::StaffId>() {
                    Ok(sid) => self.store.staff_member(practice.id, sid).await.map_err(|e| internal(e.into()))?,
                    Err(_) => None,
                };
                let s = staff.filter(|s| s.role == caldicott_core::staff::Role::Clinician).ok_or_else(none)?;
                gpc::practitioner_resource(id, &s.display_name, s.sds_user_id.as_deref())
            }
            "Organization" if ours => gpc::organization(&practice),
            "Location" if ours => gpc::location_resource(&practice),
            _ => return Err(none()),
        };
        Ok(Versioned { id: id.to_owned(), version: 1, resource })
    }

    /// `GET [base]/Slot?…`: the free slots offered to other care settings in the window, from now.
    pub async fn gp_connect_slots(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, ssp, claims, base) =
            self.gp_connect_appointments_call(&call, gpc::SLOT_SEARCH_INTERACTION, "organization/*.read").await?;
        let search = gpc::read_slot_search(call.query)?;
        // The practice may keep a clinic for some kinds of organisation or some organisations:
        // the consumer's searchFilter says which it is (none: only slots kept for nobody).
        let kind = search.booking_type.as_deref().and_then(OrganisationType::parse);
        let now = self.now();
        let from = search.from.max(now);
        let mut slots: Vec<Slot> = self
            .store
            .slots_between(practice.id, from, search.to)
            .await
            .map_err(|e| internal(e.into()))?
            .into_iter()
            .filter(|(s, booking)| {
                booking.is_none()
                    && can_book_from_elsewhere(s, now)
                    && s.others_bookable_by.allows(search.booking_ods.as_deref(), kind)
                    && s.starts_at + Duration::minutes(i64::from(s.minutes)) <= search.to
            })
            .map(|(s, _)| s)
            .collect();
        // A clinic whose limit of bookings from other care settings is reached offers no more.
        if slots.iter().any(|s| s.others_bookable_by.limit.is_some()) {
            let booked: std::collections::HashMap<_, _> = self
                .store
                .others_bookings_by_clinic(practice.id, from, search.to)
                .await
                .map_err(|e| internal(e.into()))?
                .into_iter()
                .collect();
            slots.retain(|s| s.others_bookable_by.has_room(booked.get(&s.clinic).copied().unwrap_or(0)));
        }
        let extra = format!(
            "slot search {} to {}; offered={}; booking_ods={}; booking_type={}",
            search.from.to_rfc3339(),
            search.to.to_rfc3339(),
            slots.len(),
            plain(search.booking_ods.as_deref().unwrap_or("none")),
            plain(search.booking_type.as_deref().unwrap_or("none")),
        );
        self.gp_connect_appointments_look((&practice, &claims, &ssp), None, Outcome::Success, "slots".into(), extra)
            .await?;
        let sds = self.sds_user_ids(practice.id, search.include_practitioner).await.map_err(internal)?;
        Ok(gpc::slots_bundle(&base, &ssp.trace_id, &practice, &slots, &search, &|id| sds.get(id).cloned()))
    }

    /// The SDS user ids the practice has recorded, by staff id (none read unless `wanted`).
    pub(crate) async fn sds_user_ids(
        &self,
        practice: PracticeId,
        wanted: bool,
    ) -> AppResult<std::collections::HashMap<String, String>> {
        if !wanted {
            return Ok(Default::default());
        }
        let staff = self.store.staff_members(practice).await?;
        Ok(staff.into_iter().filter_map(|s| Some((s.id.to_string(), s.sds_user_id?))).collect())
    }

    /// `GET [base]/Practitioner?identifier=https://fhir.nhs.uk/Id/sds-user-id|<id>` (Foundations):
    /// the practice's clinician with that SDS user id in a searchset, or an empty searchset
    /// (finding nobody is not an error). Clinicians of the practice whose account is active: a read
    /// by id still answers for one who has left, as appointments and records reference them.
    pub async fn gp_connect_find_practitioner(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, ssp, _, base) = self
            .gp_connect_appointments_call(&call, gpc::PRACTITIONER_SEARCH_INTERACTION, "organization/*.read")
            .await?;
        let asked = gpc::read_practitioner_search(call.query)?;
        let found: Vec<(String, String, String)> = self
            .store
            .staff_members(practice.id)
            .await
            .map_err(|e| internal(e.into()))?
            .into_iter()
            // A deactivated member has left: references to them still read, but nobody finds them.
            .filter(|s| s.role == caldicott_core::staff::Role::Clinician && s.active)
            .filter_map(|s| {
                let sds = s.sds_user_id.filter(|id| id.eq_ignore_ascii_case(&asked))?;
                Some((s.id.to_string(), s.display_name, sds))
            })
            .collect();
        Ok(gpc::practitioner_search_bundle(&base, &ssp.trace_id, &found))
    }

    /// `POST [base]/Appointment`: books a free slot offered to other care settings for a patient
    /// registered here. The booking and its audit event are one transaction.
    pub async fn gp_connect_book(&self, call: GpcCall<'_>) -> Result<Versioned, GpcError> {
        let (practice, ssp, claims, _) =
            self.gp_connect_appointments_call(&call, gpc::BOOK_INTERACTION, "patient/*.write").await?;
        let (request, org, kind) = gpc::read_booking(call.body)?;
        let not_here =
            |what: &str| GpcError::new(SpineCode::ReferenceNotFound, format!("there is no such {what} here"));
        if request.location != practice.id.to_string() {
            return Err(not_here("location: book at the location the slot search gave"));
        }
        let patient = self
            .gp_connect_patient(&practice, &claims, &ssp, &request.patient, "book", Action::AppointmentBook)
            .await
            .map_err(|e| if e.code == SpineCode::PatientNotFound { not_here("patient registered") } else { e })?;
        let now = self.now();
        let slot_id = request.slot.parse::<SlotId>().map_err(|_| {
            GpcError::new(SpineCode::InvalidResource, "the slot reference is not a slot id of this practice")
        })?;
        let found = self.store.slot_with_booking(practice.id, slot_id).await.map_err(|e| internal(e.into()))?;
        // A slot not offered to other care settings, or kept for others than the booking
        // organisation, is, to it, not there.
        let offered = |s: &Slot| {
            s.others_bookable
                && s.others_bookable_by.allows(Some(&org.ods), kind)
                && s.others_bookable_by.released(s.starts_at, now)
        };
        let Some((slot, booking)) = found.filter(|(s, _)| offered(s)) else {
            return Err(not_here("slot offered to other care settings"));
        };
        if slot.starts_at <= now {
            return Err(GpcError::new(
                SpineCode::InvalidResource,
                "the slot has started: only future slots are booked",
            ));
        }
        if request.start != slot.starts_at || request.end != slot.starts_at + Duration::minutes(i64::from(slot.minutes))
        {
            return Err(GpcError::new(SpineCode::InvalidResource, "start and end must be the slot's"));
        }
        if request.practitioners.iter().any(|p| *p != slot.clinician.to_string()) {
            return Err(not_here("practitioner: name the slot's, from the slot search, or none"));
        }
        if booking.is_some() {
            return Err(GpcError::new(SpineCode::DuplicateRejected, "the slot is no longer free"));
        }
        let org = &org;
        let by = format!("by {} at {} ({}), through GP Connect", plain(&claims.practitioner_name), org.name, org.ods);
        let mut a = Appointment::new(
            AppointmentId::from_uuid(new_id()),
            slot.id,
            patient.id,
            now,
            by,
            caldicott_core::appointments::BookingChannel::OtherCareSetting,
        );
        a.description = Some(request.description.clone());
        a.comment = request.comment.clone();
        a.booked_through = Some(org.clone());
        let rec = self.gp_connect_audit(
            &claims,
            &ssp,
            Some(patient.id),
            Outcome::Success,
            format!("appointment/{}", a.id),
            format!("slot/{} at {}; booking_org={}", slot.id, slot.starts_at.to_rfc3339(), org.ods),
            Action::AppointmentBook,
        );
        match self.store.book_slot(practice.id, &a, &rec).await {
            Ok(()) => {}
            Err(StoreError::Conflict(Conflict::SlotTaken)) => {
                return Err(GpcError::new(SpineCode::DuplicateRejected, "the slot is no longer free"));
            }
            Err(StoreError::Conflict(Conflict::OthersLimitReached)) => {
                return Err(GpcError::new(
                    SpineCode::DuplicateRejected,
                    "the slot is no longer free: the practice takes no more bookings from other care settings in this clinic",
                ));
            }
            Err(e) => return Err(internal(e.into())),
        }
        Ok(Versioned {
            id: a.id.to_string(),
            version: a.version,
            resource: gpc::appointment_resource(&a, &slot, &practice.id.to_string()),
        })
    }

    /// One appointment of a patient registered here and living, or the audited `NO_RECORD_FOUND`.
    async fn gp_connect_appointment(
        &self,
        practice: &Practice,
        claims: &Claims,
        ssp: &Ssp,
        id: &str,
        what: &str,
    ) -> Result<(Appointment, Slot), GpcError> {
        let found = match id.parse::<AppointmentId>() {
            Ok(aid) => self.store.appointment(practice.id, aid).await.map_err(|e| internal(e.into()))?,
            Err(_) => None,
        };
        let today = self.today();
        let mut shown = None;
        if let Some((a, s)) = found {
            let patient = self.store.patient(practice.id, a.patient).await.map_err(|e| internal(e.into()))?;
            if patient.is_some_and(|p| patient_refusal(&p, today).is_none()) {
                shown = Some((a, s));
            }
        }
        if shown.is_none() {
            let entity = format!("appointment/{}", plain(id));
            self.gp_connect_appointments_look((practice, claims, ssp), None, Outcome::NotFound, entity, what.into())
                .await?;
        }
        shown.ok_or_else(no_appointment)
    }

    /// `GET [base]/Appointment/{id}`.
    pub async fn gp_connect_read_appointment(&self, call: GpcCall<'_>, id: &str) -> Result<Versioned, GpcError> {
        let (practice, ssp, claims, _) =
            self.gp_connect_appointments_call(&call, gpc::READ_INTERACTION, "patient/*.read").await?;
        let (a, slot) = self.gp_connect_appointment(&practice, &claims, &ssp, id, "read").await?;
        let entity = format!("appointment/{}", a.id);
        // The specification serves appointments from today on; earlier ones are the practice's.
        if caldicott_core::uk::uk_date(slot.starts_at) < self.today() {
            self.gp_connect_appointments_look(
                (&practice, &claims, &ssp),
                None,
                Outcome::NotFound,
                entity,
                "read: in the past".into(),
            )
            .await?;
            return Err(no_appointment());
        }
        self.gp_connect_appointments_look(
            (&practice, &claims, &ssp),
            Some(a.patient),
            Outcome::Success,
            entity,
            "read".into(),
        )
        .await?;
        Ok(Versioned {
            id: a.id.to_string(),
            version: a.version,
            resource: gpc::appointment_resource(&a, &slot, &practice.id.to_string()),
        })
    }

    /// `GET [base]/Patient/{id}/Appointment?start=ge…&start=le…`: the patient's appointments
    /// (booked and cancelled) starting in the window.
    pub async fn gp_connect_patient_appointments(&self, call: GpcCall<'_>, patient: &str) -> Result<Value, GpcError> {
        let (practice, ssp, claims, base) =
            self.gp_connect_appointments_call(&call, gpc::PATIENT_APPOINTMENTS_INTERACTION, "patient/*.read").await?;
        let (from, to) = gpc::read_appointment_search(call.query, self.today())?;
        let patient = self
            .gp_connect_patient(&practice, &claims, &ssp, patient, "appointments", Action::GpConnectAppointmentsRead)
            .await?;
        let mut found: Vec<(Appointment, Slot)> = self
            .store
            .appointments_for_patient(practice.id, patient.id)
            .await
            .map_err(|e| internal(e.into()))?
            .into_iter()
            .filter(|(_, s)| s.starts_at >= from && s.starts_at < to)
            .collect();
        found.reverse();
        let extra = format!("appointments {} to {}; found={}", from.to_rfc3339(), to.to_rfc3339(), found.len());
        let entity = format!("patient/{}", patient.id);
        self.gp_connect_appointments_look(
            (&practice, &claims, &ssp),
            Some(patient.id),
            Outcome::Success,
            entity,
            extra,
        )
        .await?;
        Ok(gpc::appointments_bundle(&base, &ssp.trace_id, &found, &practice.id.to_string()))
    }

    /// `PUT [base]/Appointment/{id}`: an amendment (`update:appointment-1`: the description and
    /// comment) or a cancellation (`cancel:appointment-1`, with its reason), of an upcoming
    /// appointment this consumer's organisation booked. With an `If-Match`, only if the
    /// appointment is still at that version.
    pub async fn gp_connect_change_appointment(
        &self,
        call: GpcCall<'_>,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Versioned, GpcError> {
        let cancelling = call.ssp.interaction_id == Some(gpc::CANCEL_INTERACTION);
        let interaction = if cancelling { gpc::CANCEL_INTERACTION } else { gpc::AMEND_INTERACTION };
        let (practice, ssp, claims, _) =
            self.gp_connect_appointments_call(&call, interaction, "patient/*.write").await?;
        let expected = if_match_version(if_match)?;
        let (current, slot) = self.gp_connect_appointment(&practice, &claims, &ssp, id, "change").await?;
        let location = practice.id.to_string();
        let change = gpc::read_change(call.body, &gpc::appointment_resource(&current, &slot, &location), cancelling)?;
        if current.cancelled_at.is_some() {
            return Err(GpcError::new(SpineCode::InvalidResource, "the appointment is cancelled already"));
        }
        if slot.starts_at <= self.now() {
            return Err(GpcError::new(SpineCode::InvalidResource, "the appointment has started or passed"));
        }
        if current.booked_through.as_ref().is_none_or(|o| o.ods != claims.organisation_ods) {
            return Err(GpcError::new(
                SpineCode::InvalidResource,
                "only appointments your organisation booked through GP Connect can be changed here; contact the practice",
            ));
        }
        if expected.is_some_and(|v| v != current.version) {
            return Err(GpcError::new(
                SpineCode::FhirConstraintViolation,
                "the appointment has changed since it was read: read it again",
            ));
        }
        let now = self.now();
        let entity = format!("appointment/{}", current.id);
        let mut next = current.clone();
        next.version = current.version + 1;
        let stored = match &change {
            gpc::Change::Cancel { reason } => {
                let rec = self.gp_connect_audit(
                    &claims,
                    &ssp,
                    Some(current.patient),
                    Outcome::Success,
                    entity,
                    format!("cancelled; reason={}", plain(reason)),
                    Action::AppointmentCancel,
                );
                let by = format!(
                    "by {} at {}, through GP Connect",
                    plain(&claims.practitioner_name),
                    plain(&claims.organisation_ods)
                );
                let change = BookingChange {
                    at: now,
                    by: &by,
                    reason: Some(reason.as_str()),
                    expected_version: Some(current.version),
                };
                next.cancelled_at = Some(now);
                next.cancelled_by = Some(by.clone());
                next.cancellation_reason = Some(reason.clone());
                self.store.cancel_appointment(practice.id, current.id, current.patient, &change, &rec).await
            }
            gpc::Change::Amend { description, comment } => {
                let rec = self.gp_connect_audit(
                    &claims,
                    &ssp,
                    Some(current.patient),
                    Outcome::Success,
                    entity,
                    "description and comment changed".into(),
                    Action::AppointmentAmend,
                );
                let mut amended = current.clone();
                amended.description = Some(description.clone());
                amended.comment = comment.clone();
                next.description = amended.description.clone();
                next.comment = amended.comment.clone();
                self.store.amend_appointment(practice.id, &amended, &rec).await
            }
        };
        match stored {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(GpcError::new(
                    SpineCode::FhirConstraintViolation,
                    "the appointment changed while this request was made",
                ));
            }
            Err(e) => return Err(internal(e.into())),
        }
        Ok(Versioned {
            id: next.id.to_string(),
            version: next.version,
            resource: gpc::appointment_resource(&next, &slot, &location),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_if_match_names_a_version() {
        assert_eq!(if_match_version(None), Ok(None));
        assert_eq!(if_match_version(Some("W/\"3\"")), Ok(Some(3)));
        assert_eq!(if_match_version(Some("\"12\"")), Ok(Some(12)));
        assert_eq!(if_match_version(Some("W/\"x\"")).map_err(|e| e.code), Err(SpineCode::FhirConstraintViolation));
        assert_eq!(if_match_version(Some("invalidEtag")).map_err(|e| e.code), Err(SpineCode::FhirConstraintViolation));
        assert_eq!(etag(4), "W/\"4\"");
    }
}
