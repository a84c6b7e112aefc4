//! Storage for staff instant messages (R43): never removed; deletion is recorded.

use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{PatientId, PracticeId, StaffId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One instant message between members of staff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaffMessage {
    pub id: Uuid,
    pub sender: StaffId,
    pub sender_name: String,
    /// To one person…
    pub to_staff: Option<StaffId>,
    /// …or to a team: a role's name ("clinician", "receptionist", "practice_manager").
    pub to_team: Option<String>,
    pub body: String,
    /// The patient the message is about, if linked.
    pub patient: Option<PatientId>,
    pub sent_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<String>,
}

#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    async fn send_staff_message(&self, practice: PracticeId, m: &StaffMessage, audit: &AuditRecord) -> StoreResult<()>;
    async fn staff_message(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<StaffMessage>>;
    /// Messages to or from this member of staff (or to their team), newest first, deleted ones
    /// left out, with whether they have read each.
    async fn staff_inbox(
        &self,
        practice: PracticeId,
        staff: StaffId,
        team: &str,
        limit: i64,
    ) -> StoreResult<Vec<(StaffMessage, bool)>>;
    /// How many messages to this member of staff (or their team) they have not read.
    async fn unread_staff_messages(&self, practice: PracticeId, staff: StaffId, team: &str) -> StoreResult<i64>;
    async fn mark_staff_message_read(
        &self,
        practice: PracticeId,
        id: Uuid,
        staff: StaffId,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Hides a message from its participants, recording who and when, with its audit event.
    async fn delete_staff_message(
        &self,
        practice: PracticeId,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Every message about a patient, deleted ones included, oldest first.
    async fn staff_messages_about(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<StaffMessage>>;
    /// Messages whose text contains any of these phrases (compared in lower case), deleted ones
    /// included: what a subject access search finds beyond the linked messages (R43).
    async fn staff_messages_naming(&self, practice: PracticeId, phrases: &[String]) -> StoreResult<Vec<StaffMessage>>;
}
