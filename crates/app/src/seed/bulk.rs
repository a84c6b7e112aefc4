//! Loading a practice's data in bulk, as the demo generator (`caldicott-demo`) does: whole
//! patients, records, proxy links, pharmacy senders and batches of generated patients written
//! directly, each write with its audit event in the same transaction, as the store always does.
//!
//! This is the one door to the store from outside this crate that is not a use case. It checks no
//! role: only the operator's command line (`caldicott demo`) holds it, never the web layer (the
//! crates' layering test keeps `caldicott-web` from depending on `caldicott-demo`). Everything a
//! person does goes through the use cases, which check permission and decide visibility.

use crate::{App, AppResult, StaffPrincipal};
use caldicott_core::access::ProxyLink;
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::Entry;
use caldicott_core::ids::*;
use caldicott_core::patient::Patient;
use caldicott_core::staff::StaffMember;
use caldicott_store::fhir::Integration;
use caldicott_store::inbound::Sender;
use caldicott_store::PatientImport;

/// Bulk loading for one [`App`]; see the module's documentation.
pub struct Seeding<'a> {
    app: &'a App,
}

impl App {
    /// The bulk-loading door for the demo generator. Not for anything a person does.
    pub fn seeding(&self) -> Seeding<'_> {
        Seeding { app: self }
    }
}

impl Seeding<'_> {
    /// An audit record of something `who` did, timed by the app's clock.
    pub fn audit(
        &self,
        who: &StaffPrincipal,
        patient: Option<PatientId>,
        action: Action,
        entity: impl Into<String>,
        detail: impl Into<String>,
    ) -> AuditRecord {
        self.app.audit_record(who, patient, action, entity, Outcome::Success, detail)
    }

    /// How a machine credential's secret is kept (a pharmacy sender's, say): its SHA-256.
    pub fn credential_hash(&self, secret: &str) -> Vec<u8> {
        crate::apps::sha256(secret).to_vec()
    }

    pub async fn patient_count(&self, practice: PracticeId) -> AppResult<i64> {
        Ok(self.app.store.patient_count(practice).await?)
    }

    pub async fn staff_members(&self, practice: PracticeId) -> AppResult<Vec<StaffMember>> {
        Ok(self.app.store.staff_members(practice).await?)
    }

    pub async fn staff_by_username(&self, practice: PracticeId, username: &str) -> AppResult<Option<StaffMember>> {
        Ok(self.app.store.staff_by_username(practice, username).await?)
    }

    pub async fn integrations(&self, practice: PracticeId) -> AppResult<Vec<Integration>> {
        Ok(self.app.store.integrations(practice).await?)
    }

    /// Whole records in one transaction, with one audit event per patient.
    pub async fn import_patients(
        &self,
        practice: PracticeId,
        batch: &[PatientImport],
        audit: &[AuditRecord],
    ) -> AppResult<()> {
        Ok(self.app.store.import_patients(practice, batch, audit).await?)
    }

    /// Generated patients with their coded entries (no accounts, grants or proxies) in one
    /// transaction; one audit event covers the batch.
    pub async fn seed_patients(
        &self,
        practice: PracticeId,
        patients: &[Patient],
        entries: &[Entry],
        audit: &AuditRecord,
    ) -> AppResult<()> {
        Ok(self.app.store.seed_patients(practice, patients, entries, audit).await?)
    }

    pub async fn create_patient(&self, practice: PracticeId, patient: &Patient, audit: &AuditRecord) -> AppResult<()> {
        Ok(self.app.store.create_patient(practice, patient, audit).await?)
    }

    pub async fn add_entries(&self, practice: PracticeId, entries: &[Entry], audit: &AuditRecord) -> AppResult<()> {
        Ok(self.app.store.add_entries(practice, entries, audit).await?)
    }

    pub async fn create_proxy_link(
        &self,
        practice: PracticeId,
        link: &ProxyLink,
        audit: &AuditRecord,
    ) -> AppResult<()> {
        Ok(self.app.store.create_proxy_link(practice, link, audit).await?)
    }

    pub async fn create_sender(&self, practice: PracticeId, sender: &Sender, audit: &AuditRecord) -> AppResult<()> {
        Ok(self.app.store.create_sender(practice, sender, audit).await?)
    }

    /// A clinic and its slots on any date, past ones too (the practice's history in a demo).
    pub async fn plan_clinic(
        &self,
        practice: PracticeId,
        clinic: &caldicott_core::appointments::Clinic,
        slots: &[caldicott_core::appointments::Slot],
        audit: &AuditRecord,
    ) -> AppResult<()> {
        Ok(self.app.store.create_clinic(practice, clinic, slots, audit).await?)
    }

    /// A booking as it was made, whenever that was, and what was recorded about attendance.
    pub async fn book(
        &self,
        practice: PracticeId,
        appointment: &caldicott_core::appointments::Appointment,
        audit: &AuditRecord,
    ) -> AppResult<()> {
        Ok(self.app.store.book_slot(practice, appointment, audit).await?)
    }

    /// Registered, living patients of the practice, for a demo's bookings.
    pub async fn registered_patients(&self, practice: PracticeId) -> AppResult<Vec<PatientId>> {
        let today = self.app.today();
        Ok(self.app.store.cohort_candidates(practice, today, None).await?.into_iter().map(|c| c.patient).collect())
    }
}
