//! Patients, their registrations and their online access settings, grants, accounts and proxies.

use crate::*;
use async_trait::async_trait;

/// Patients, their registrations and their online access settings, grants, accounts and proxies.
#[async_trait]
pub trait PatientStore: Send + Sync {
    // --- Patients ----------------------------------------------------------------------------------
    async fn create_patient(&self, practice: PracticeId, patient: &Patient, audit: &AuditRecord) -> StoreResult<()>;
    async fn patient(&self, practice: PracticeId, id: PatientId) -> StoreResult<Option<Patient>>;
    async fn patient_by_nhs_number(
        &self,
        practice: PracticeId,
        nhs: &caldicott_core::NhsNumber,
    ) -> StoreResult<Option<Patient>>;
    async fn patient_count(&self, practice: PracticeId) -> StoreResult<i64>;
    /// Ends the patient's current registration on `on` (deregistration, R6).
    async fn end_registration(
        &self,
        practice: PracticeId,
        patient: PatientId,
        on: NaiveDate,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The patients whose records a member of staff opened most recently, newest first (from
    /// the audit log).
    async fn recently_viewed(
        &self,
        practice: PracticeId,
        staff: StaffId,
        limit: u32,
    ) -> StoreResult<Vec<PatientListing>>;
    /// Patients of the practice matching every criterion, by name then date of birth.
    async fn search_patients(
        &self,
        practice: PracticeId,
        q: &PatientSearch,
        limit: u32,
    ) -> StoreResult<Vec<PatientListing>>;
    /// Imports whole records in one transaction, with one audit event per patient.
    async fn import_patients(
        &self,
        practice: PracticeId,
        batch: &[PatientImport],
        audit: &[AuditRecord],
    ) -> StoreResult<()>;

    // --- Online access -----------------------------------------------------------------------------
    async fn access_facts(&self, practice: PracticeId, patient: PatientId) -> StoreResult<AccessFacts>;
    async fn set_access_settings(
        &self,
        practice: PracticeId,
        patient: PatientId,
        settings: &OnlineAccessSettings,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn create_online_account(
        &self,
        practice: PracticeId,
        account: &OnlineAccount,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn online_accounts(&self, practice: PracticeId, holder: PatientId) -> StoreResult<Vec<OnlineAccount>>;
    async fn create_proxy_link(&self, practice: PracticeId, link: &ProxyLink, audit: &AuditRecord) -> StoreResult<()>;
    async fn proxy_link(&self, practice: PracticeId, id: ProxyLinkId) -> StoreResult<Option<ProxyLink>>;
    /// The proxies who act for `patient`.
    async fn proxy_links_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<ProxyLink>>;

    // --- Sharing with other care settings ----------------------------------------------------------
    /// The patient's dissent from sharing their record through GP Connect, when one stands.
    async fn gp_connect_dissent(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Option<caldicott_core::gpconnect::SharingDissent>>;
    /// Records the patient's dissent when none stands or, given `None`, takes the one standing
    /// away, with its audit event in the same transaction. `false`, and nothing written (the
    /// audit event neither), when there was nothing to change: of two requests at once, one
    /// records it.
    async fn set_gp_connect_dissent(
        &self,
        practice: PracticeId,
        patient: PatientId,
        dissent: Option<&caldicott_core::gpconnect::SharingDissent>,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;
}
