//! The practice's work queue.

use crate::*;
use async_trait::async_trait;

/// The practice's work queue.
#[async_trait]
pub trait TaskStore: Send + Sync {
    // --- Tasks -------------------------------------------------------------------------------------
    /// A new task, with its audit event.
    async fn create_task(&self, practice: PracticeId, task: &Task, audit: &AuditRecord) -> StoreResult<()>;
    /// A new repeat order, with its audit event, unless the patient already has an open order
    /// with one of its medicines still waiting for a decision: then [`StoreError::Conflict`] and
    /// nothing is written. The patient's row is locked, so parallel orders of one medicine make
    /// one order (a retried request, two taps).
    async fn create_repeat_order(&self, practice: PracticeId, task: &Task, audit: &AuditRecord) -> StoreResult<()>;
    async fn task(&self, practice: PracticeId, id: TaskId) -> StoreResult<Option<Task>>;
    /// Tasks with a status, oldest first, with their patients.
    async fn tasks(
        &self,
        practice: PracticeId,
        status: TaskStatus,
        limit: u32,
    ) -> StoreResult<Vec<(Task, PatientListing)>>;
    /// How many open tasks of a kind were created before a time (the dashboard's overdue alerts).
    async fn count_open_tasks(
        &self,
        practice: PracticeId,
        kind: caldicott_core::tasks::TaskKind,
        created_before: DateTime<Utc>,
    ) -> StoreResult<i64>;
    async fn tasks_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<Task>>;
    /// Saves a task's new state, any entries its outcome adds and any message it sends, in one
    /// transaction: only if it is still open and its body still as read (the first of
    /// `change`; the second is the task as changed), so that changes at the same moment (two medicines of one order decided, an
    /// order cancelled as it is decided) never overwrite each other; otherwise refused and
    /// nothing is written.
    async fn update_task(
        &self,
        practice: PracticeId,
        change: (&caldicott_core::tasks::TaskBody, &Task),
        entries: &[Entry],
        message: Option<&OutboundMessage>,
        follow_up: Option<&Task>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The practice posted a printed letter: its task is done and its message sent.
    async fn letter_posted(
        &self,
        practice: PracticeId,
        task: &Task,
        message: MessageId,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The patient's nominated pharmacy: ODS code and name.
    async fn nominated_pharmacy(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Option<(String, String)>>;
    async fn set_nominated_pharmacy(
        &self,
        practice: PracticeId,
        patient: PatientId,
        pharmacy: Option<(&str, &str)>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
}
