//! Clinics, slots and appointments.

use crate::*;
use async_trait::async_trait;

/// A change to a live booking: when, by whom, why (GP Connect's cancellation reason), and the
/// version the changer last saw (an `If-Match`); with a version, the change happens only if the
/// booking is still at that version.
#[derive(Debug, Clone, Copy)]
pub struct BookingChange<'a> {
    pub at: DateTime<Utc>,
    pub by: &'a str,
    pub reason: Option<&'a str>,
    pub expected_version: Option<u32>,
}

/// Clinics, slots and appointments.
#[async_trait]
pub trait AppointmentStore: Send + Sync {
    // --- Appointments ------------------------------------------------------------------------------
    /// A clinic and its slots, in one transaction.
    async fn create_clinic(
        &self,
        practice: PracticeId,
        clinic: &Clinic,
        slots: &[Slot],
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Every slot starting in `[from, to)`, earliest first, each with its live booking if any.
    async fn slots_between(
        &self,
        practice: PracticeId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(Slot, Option<Appointment>)>>;
    async fn slot(&self, practice: PracticeId, id: SlotId) -> StoreResult<Option<Slot>>;
    /// Books a slot. A conflict if the slot already has a live booking: two people can never
    /// hold one slot (T46), whatever the timing.
    async fn book_slot(&self, practice: PracticeId, appointment: &Appointment, audit: &AuditRecord) -> StoreResult<()>;
    /// Cancels a live booking of this patient, one version on. `NotFound` if it is not live, or
    /// not at the expected version.
    async fn cancel_appointment(
        &self,
        practice: PracticeId,
        id: AppointmentId,
        patient: PatientId,
        change: &BookingChange<'_>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Changes a live booking's description and comment to `amended`'s, one version on, if it is
    /// still at `amended.version`; `NotFound` otherwise.
    async fn amend_appointment(
        &self,
        practice: PracticeId,
        amended: &Appointment,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A patient's bookings (live and cancelled) with their slots, latest slot first.
    async fn appointments_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(Appointment, Slot)>>;
    /// One booking (live or cancelled) of this practice, with its slot.
    async fn appointment(&self, practice: PracticeId, id: AppointmentId) -> StoreResult<Option<(Appointment, Slot)>>;
    /// One slot of this practice with its live booking, if any.
    async fn slot_with_booking(
        &self,
        practice: PracticeId,
        id: SlotId,
    ) -> StoreResult<Option<(Slot, Option<Appointment>)>>;
}
