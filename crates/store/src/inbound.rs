//! Storage for GP Connect Update Record (R24–R30): the pharmacies allowed to send, every
//! message received (kept whole), the amendments made before filing and the entries filed.

use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::entry::Entry;
use caldicott_core::ids::{PatientId, PracticeId, TaskId};
use caldicott_core::tasks::Task;
use caldicott_core::update_record::{InboundItem, UpdateRecord};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A pharmacy allowed to send Update Record messages to the practice over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sender {
    pub id: Uuid,
    pub ods_code: String,
    pub name: String,
    pub client_id: String,
    #[serde(skip)]
    pub secret_hash: Vec<u8>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundStatus {
    /// Accepted; waits for review (R26).
    Pending,
    /// Valid, but no registered patient matches: held, nothing filed (T34).
    Unmatched,
    /// Refused whole: it failed validation (R25).
    Invalid,
    /// Refused: the practice had switched Update Record off (R30).
    Refused,
    /// Filed into the record.
    Filed,
    /// Rejected by the practice: nothing filed, the sender not told (R27).
    Rejected,
    /// Replaced by a later message before it was filed (R28).
    Superseded,
    /// Void: a replacement of it, or this replacement, could not be processed (R28); the
    /// sender was told.
    Void,
}

impl InboundStatus {
    pub const ALL: [InboundStatus; 8] = [
        Self::Pending,
        Self::Unmatched,
        Self::Invalid,
        Self::Refused,
        Self::Filed,
        Self::Rejected,
        Self::Superseded,
        Self::Void,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Unmatched => "unmatched",
            Self::Invalid => "invalid",
            Self::Refused => "refused",
            Self::Filed => "filed",
            Self::Rejected => "rejected",
            Self::Superseded => "superseded",
            Self::Void => "void",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::Pending => "To review",
            Self::Unmatched => "Cannot match to a patient",
            Self::Invalid => "Refused: not valid",
            Self::Refused => "Refused: Update Record switched off",
            Self::Filed => "Filed",
            Self::Rejected => "Rejected by the practice",
            Self::Superseded => "Replaced by a later message",
            Self::Void => "Void: a replacement could not be processed",
        }
    }
}

/// One message as received and as it stands now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboundMessage {
    pub id: Uuid,
    pub message_id: String,
    pub sender_ods: String,
    /// "http" or "inbox".
    pub via: String,
    pub received_at: DateTime<Utc>,
    pub status: InboundStatus,
    /// The ITK3 response code given (D13).
    pub response_code: i64,
    pub problems: Vec<String>,
    /// The message exactly as it arrived (empty when it was too large to keep).
    #[serde(skip)]
    pub payload: String,
    pub record: Option<UpdateRecord>,
    /// The items as they stand, after any amendment (R26).
    pub items: Vec<InboundItem>,
    pub patient: Option<PatientId>,
    /// The earlier message this one replaces, here (R28).
    pub replaces: Option<Uuid>,
    pub superseded_by: Option<Uuid>,
    pub task: Option<TaskId>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
}

/// An amendment made before filing: what changed, by whom, and the items after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Amendment {
    pub at: DateTime<Utc>,
    pub by: String,
    pub change: String,
    pub items: Vec<InboundItem>,
}

/// A message waiting in a queue, with its patient's name when it has one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboundListing {
    pub id: Uuid,
    pub message_id: String,
    pub sender_ods: String,
    pub received_at: DateTime<Utc>,
    pub status: InboundStatus,
    pub service: String,
    pub nhs_number: String,
    pub patient_name: String,
    pub items: i64,
    pub replaces: Option<Uuid>,
}

/// What receiving a replacement does to the earlier payload it names (R28).
#[derive(Debug, Clone, Copy)]
pub enum Earlier<'a> {
    /// Not a replacement of anything here.
    None,
    /// The earlier one was already decided: it points on to the replacement.
    Link(Uuid),
    /// The earlier one still waits: it is superseded and this task (its own) closed.
    Supersede(Uuid, &'a Task),
    /// The replacement could not be processed: the earlier one, still waiting, is void and
    /// this task (its own) closed.
    Void(Uuid, &'a Task),
}

/// Entries a filing retires: a replacement's filing marks what the earlier payload filed
/// superseded (R28), each with its audit event, in the filing's transaction.
#[derive(Debug, Clone)]
pub struct Retire {
    pub entries: Vec<Uuid>,
    pub at: DateTime<Utc>,
    pub note: String,
    /// One per entry.
    pub audits: Vec<AuditRecord>,
}

/// How a waiting message was decided, and by whom.
#[derive(Debug, Clone, Copy)]
pub struct InboundDecision<'a> {
    /// Filed or rejected.
    pub status: InboundStatus,
    /// The reason for a rejection.
    pub note: &'a str,
    pub by: &'a str,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait InboundStore: Send + Sync + 'static {
    async fn create_sender(&self, practice: PracticeId, sender: &Sender, audit: &AuditRecord) -> StoreResult<()>;
    async fn senders(&self, practice: PracticeId) -> StoreResult<Vec<Sender>>;
    /// The sender with this client id, at whichever practice registered it.
    async fn sender_by_client_id(&self, client_id: &str) -> StoreResult<Option<(PracticeId, Sender)>>;
    async fn sender_by_ods(&self, practice: PracticeId, ods: &str) -> StoreResult<Option<Sender>>;
    /// The accepted message (answered 20013) with this id: refused ones do not hold their id.
    async fn inbound_by_message_id(
        &self,
        practice: PracticeId,
        message_id: &str,
    ) -> StoreResult<Option<InboundMessage>>;
    async fn inbound(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<InboundMessage>>;
    /// The accepted message a replacement names (R28) by its message id, its Composition's
    /// identifier or its document Bundle's identifier, in that order of preference.
    async fn inbound_named(&self, practice: PracticeId, target: &str) -> StoreResult<Option<InboundMessage>>;
    /// Records a message received, with its review task if it has one, and what it does to the
    /// earlier payload it replaces (superseded or void, closing its task, or linked), in one
    /// transaction. The same message id accepted twice is a conflict, as is an earlier message
    /// no longer waiting when it was to be superseded or made void.
    async fn record_inbound(
        &self,
        practice: PracticeId,
        message: &InboundMessage,
        task: Option<&Task>,
        earlier: Earlier<'_>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Messages with these statuses, oldest first.
    async fn inbound_list(&self, practice: PracticeId, statuses: &[InboundStatus]) -> StoreResult<Vec<InboundListing>>;
    /// Saves amended items of a message still waiting for review, with the amendment.
    async fn amend_inbound(
        &self,
        practice: PracticeId,
        id: Uuid,
        amendment: &Amendment,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn amendments(&self, practice: PracticeId, id: Uuid) -> StoreResult<Vec<Amendment>>;
    /// Files (with entries) or rejects (without) a waiting message and closes its task, and
    /// marks superseded the entries it retires, in one transaction; a message no longer waiting,
    /// or an entry to retire that is missing or already superseded, is a conflict.
    #[allow(clippy::too_many_arguments)]
    async fn decide_inbound(
        &self,
        practice: PracticeId,
        id: Uuid,
        decision: InboundDecision<'_>,
        entries: &[Entry],
        retire: Option<&Retire>,
        task: Option<&Task>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A message held apart because no patient matched, matched now (on staff's request, by the
    /// same rule): it becomes a message waiting for review of `patient`, with its review task, in
    /// one transaction. A message no longer unmatched is a conflict and changes nothing.
    async fn match_inbound(
        &self,
        practice: PracticeId,
        id: Uuid,
        patient: PatientId,
        task: &Task,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The entries a filed message made.
    async fn inbound_entries(&self, practice: PracticeId, id: Uuid) -> StoreResult<Vec<uuid::Uuid>>;
    /// The message an entry was filed from, if any.
    async fn inbound_of_entry(&self, practice: PracticeId, entry: uuid::Uuid) -> StoreResult<Option<Uuid>>;
}
