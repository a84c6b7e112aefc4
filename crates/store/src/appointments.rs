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

/// One practice's online appointment capacity for a period, in the service-wide view: counts
/// only, never a patient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PracticeCapacity {
    pub practice: PracticeId,
    pub ods_code: String,
    pub name: String,
    pub counts: caldicott_core::capacity::Counts,
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
    /// hold one slot (T46), whatever the timing. A booking through GP Connect (one with
    /// `booked_through`) is also refused with [`Conflict::OthersLimitReached`] when its clinic's
    /// limit of live GP Connect bookings is reached, also by bookings at the same moment.
    async fn book_slot(&self, practice: PracticeId, appointment: &Appointment, audit: &AuditRecord) -> StoreResult<()>;
    /// For each clinic with a slot starting in `[from, to)`, how many of its slots hold a live
    /// booking made through GP Connect (none: not listed).
    async fn others_bookings_by_clinic(
        &self,
        practice: PracticeId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(ClinicId, u32)>>;
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
    /// Offers a slot online, or stops offering it. `NotFound` if the slot is not this
    /// practice's or has started.
    async fn set_slot_online(
        &self,
        practice: PracticeId,
        slot: SlotId,
        online: bool,
        now: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Records whether the patient came to a live booking of this practice. `NotFound` if it is
    /// not a live booking of this practice.
    async fn record_attendance(
        &self,
        practice: PracticeId,
        id: AppointmentId,
        attendance: caldicott_core::appointments::Attendance,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Every slot starting in `[from, to)` as the capacity report reads it, earliest first.
    async fn capacity_facts(
        &self,
        practice: PracticeId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<caldicott_core::capacity::SlotFact>>;
    /// Every practice of the service with its capacity counts for slots starting in
    /// `[from, to)`; `now` decides which bookings have started. Counts only: with
    /// `service_exclusion_figures`, one of the two queries that span practices, for the ICB.
    async fn service_capacity(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<PracticeCapacity>>;
}
