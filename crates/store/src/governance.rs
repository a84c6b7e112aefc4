//! Storage for governance: exclusion figures (R36), the monthly return (R37), enhanced review
//! outcomes, bulk 104/106 jobs (R35) and the practice's action plan.

use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::entry::Entry;
use caldicott_core::governance::{ExclusionFigures, ReviewOutcome, TrendEvent};
use caldicott_core::ids::{PatientId, PracticeId};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// One active exclusion of a registered patient, for the monthly return (R37).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExclusionRow {
    pub patient: PatientId,
    pub nhs_number: String,
    pub family_name: String,
    pub given_name: String,
    pub date_of_birth: NaiveDate,
    /// When the 104 that is in force was entered, and who entered it.
    pub added_at: DateTime<Utc>,
    pub added_by: String,
}

/// How an enhanced review of one patient ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReviewOutcomeRow {
    pub id: Uuid,
    pub patient: PatientId,
    pub outcome: ReviewOutcome,
    pub reason: String,
    pub next_review: Option<NaiveDate>,
    pub decided_at: DateTime<Utc>,
    pub decided_by: String,
}

/// A registered patient a bulk change could apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortCandidate {
    pub patient: PatientId,
    pub nhs_number: String,
    pub date_of_birth: NaiveDate,
    /// When the current registration started.
    pub registered_on: NaiveDate,
}

/// A bulk 104 or 106 change, as applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BulkJob {
    pub id: Uuid,
    /// The concept recorded: 104 or 106.
    pub code: String,
    /// The cohort, described without identifiers.
    pub cohort: String,
    pub patients: i64,
    pub applied_at: DateTime<Utc>,
    pub applied_by: String,
    /// The job this one undid (a bulk 106 undoing a bulk 104).
    pub undoes: Option<Uuid>,
    /// The job that undid this one.
    pub undone_by: Option<Uuid>,
}

/// The practice's plan for reviewing its excluded patients (R36).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActionPlan {
    pub owner: String,
    /// By when every excluded patient will have had an individual review.
    pub review_by: NaiveDate,
    /// By when fewer than half will be excluded.
    pub below_half_by: NaiveDate,
    pub progress: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// One practice's figures in the service-wide view: counts only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PracticeFigures {
    pub practice: PracticeId,
    pub ods_code: String,
    pub name: String,
    pub figures: ExclusionFigures,
    pub paused: bool,
    pub switch_on: Option<NaiveDate>,
    pub has_action_plan: bool,
}

#[async_trait]
pub trait GovernanceStore: Send + Sync + 'static {
    /// Registered, living patients aged 16 or over on `today`, and how many have an active 104.
    async fn exclusion_figures(&self, practice: PracticeId, today: NaiveDate) -> StoreResult<ExclusionFigures>;
    /// Every practice of the service with its figures. Counts only, never a patient: this is
    /// the one query that spans practices, for the ICB view.
    async fn service_exclusion_figures(&self, today: NaiveDate) -> StoreResult<Vec<PracticeFigures>>;
    /// Every registered, living patient whose 104 is in force, by family name.
    async fn active_exclusions(&self, practice: PracticeId, today: NaiveDate) -> StoreResult<Vec<ExclusionRow>>;
    /// The latest review outcome of each patient that has one.
    async fn latest_review_outcomes(&self, practice: PracticeId) -> StoreResult<Vec<ReviewOutcomeRow>>;
    /// A patient's review outcomes, newest first.
    async fn review_outcomes(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<ReviewOutcomeRow>>;
    /// Records a review outcome, with the 106 entry a grant adds, in one transaction.
    async fn record_review_outcome(
        &self,
        practice: PracticeId,
        outcome: &ReviewOutcomeRow,
        entry: Option<&Entry>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// 104s entered and review outcomes decided since `since`, for the trend.
    async fn trend_events(
        &self,
        practice: PracticeId,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(DateTime<Utc>, TrendEvent)>>;
    /// Registered, living patients, with this code in their record if one is given.
    async fn cohort_candidates(
        &self,
        practice: PracticeId,
        today: NaiveDate,
        has_code: Option<&str>,
    ) -> StoreResult<Vec<CohortCandidate>>;
    /// Applies a bulk change in one transaction: the job, one coded entry per patient and one
    /// audit event per patient. A job that undoes another marks it undone; undoing a job twice
    /// is a conflict and changes nothing.
    async fn apply_bulk_code(
        &self,
        practice: PracticeId,
        job: &BulkJob,
        entries: &[Entry],
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// Bulk jobs, newest first.
    async fn bulk_jobs(&self, practice: PracticeId) -> StoreResult<Vec<BulkJob>>;
    async fn bulk_job(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<BulkJob>>;
    /// The patients a job coded.
    async fn bulk_job_patients(&self, practice: PracticeId, job: Uuid) -> StoreResult<Vec<PatientId>>;
    /// Writes many new patients (with their registrations and coded entries) in one
    /// transaction with multi-row inserts, for generated services (`demo --practices`): no
    /// accounts, grants or proxies. One audit event covers the batch.
    async fn seed_patients(
        &self,
        practice: PracticeId,
        patients: &[caldicott_core::patient::Patient],
        entries: &[Entry],
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Every proxy link of the practice, for the proxy reviews report.
    async fn proxy_links(&self, practice: PracticeId) -> StoreResult<Vec<caldicott_core::access::ProxyLink>>;
    /// Patients of the practice who hold an online account of their own.
    async fn patients_with_online_accounts(&self, practice: PracticeId) -> StoreResult<Vec<PatientId>>;
    async fn action_plan(&self, practice: PracticeId) -> StoreResult<Option<ActionPlan>>;
    async fn save_action_plan(&self, practice: PracticeId, plan: &ActionPlan, audit: &AuditRecord) -> StoreResult<()>;
}
