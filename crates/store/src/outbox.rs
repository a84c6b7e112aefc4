//! Messages to patients, sent once, with their delivery reports.

use crate::*;
use async_trait::async_trait;

/// Messages to patients, sent once, with their delivery reports.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    // --- Outbox ------------------------------------------------------------------------------------
    /// Writes a message to the outbox with its audit event, in one transaction.
    async fn enqueue_message(
        &self,
        practice: PracticeId,
        message: &OutboundMessage,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Writes a message and the task that goes with it (a letter to print and post), with the
    /// audit event, in one transaction; unless a message with the same idempotency key is
    /// already in the outbox, when nothing is written and it returns `false`. Concurrent calls
    /// with one key write one message.
    async fn enqueue_message_with_task(
        &self,
        practice: PracticeId,
        message: &OutboundMessage,
        task: Option<&Task>,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;
    /// Claims up to `limit` messages that are due (queued, or claimed by a worker whose claim ran
    /// out), across practices, until `lease_until`. A claimed message is not claimed again
    /// before then.
    async fn claim_due_messages(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(PracticeId, OutboundMessage)>>;
    /// Fixes an email's `Message-ID` before its first try: the one already recorded if there is
    /// one, else `candidate`. Returns the one to use, the same on every retry.
    async fn fix_email_message_id(&self, practice: PracticeId, id: MessageId, candidate: &str) -> StoreResult<String>;
    /// Records the outcome of a claimed message (only while it is still claimed).
    async fn finish_message(
        &self,
        practice: PracticeId,
        id: MessageId,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Applies a provider's delivery report once (reports are de-duplicated by provider id and
    /// status). Returns whether it changed anything.
    async fn apply_delivery_report(&self, provider_id: &str, status: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    async fn messages_for_patient(&self, practice: PracticeId, patient: PatientId)
        -> StoreResult<Vec<OutboundMessage>>;
    /// Messages that failed, newest first, with their patients.
    async fn failed_messages(
        &self,
        practice: PracticeId,
        limit: u32,
    ) -> StoreResult<Vec<(OutboundMessage, PatientListing)>>;
    /// Puts a failed message back in the queue, now.
    async fn retry_message(
        &self,
        practice: PracticeId,
        id: MessageId,
        now: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    /// The practice's message presets.
    async fn presets(&self, practice: PracticeId) -> StoreResult<Vec<(PresetId, caldicott_core::messages::Preset)>>;
    /// Saves a preset by name (a new one, or new wording for an existing one).
    async fn save_preset(
        &self,
        practice: PracticeId,
        preset: &caldicott_core::messages::Preset,
        by: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    /// Records a patient's preferred contact method and contact details (R38).
    async fn set_contact(
        &self,
        practice: PracticeId,
        patient: PatientId,
        preferred: caldicott_core::patient::PreferredContactMethod,
        email: Option<&str>,
        mobile: Option<&str>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
}
