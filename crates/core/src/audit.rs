//! The audit hash chain: each practice's audit events form one chain in which every event carries
//! the SHA-256 of the one before, so that an altered, removed, re-ordered or forged event breaks
//! the chain at a named position. A checkpoint (count and head hash) kept elsewhere also catches
//! events cut off the end.

use crate::ids::{AuditEventId, PatientId, PracticeId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;

/// A SHA-256 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainHash(#[serde(with = "hex_bytes")] pub [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of the first event of every chain.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Self(b.try_into().ok()?))
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        v.try_into().map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Staff,
    Patient,
    Proxy,
    App,
    System,
    /// A practice integration of the FHIR API (a system client).
    Integration,
    /// A clinician in another care setting reading through GP Connect (the Spine); the actor's
    /// id is their organisation's ODS code and their role their SDS user id.
    GpConnect,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Patient => "patient",
            Self::Proxy => "proxy",
            Self::App => "app",
            Self::System => "system",
            Self::Integration => "integration",
            Self::GpConnect => "gp_connect",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    /// The actor's id (a staff id, an account id, an app id, or the name of a system job).
    pub id: String,
    /// The role the actor acted in (staff role, "patient", the proxy link id …).
    pub role: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// Refused by a rule or permission.
    Denied,
    /// Asked for something that does not exist.
    NotFound,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::NotFound => "not_found",
            Self::Failed => "failed",
        }
    }
}

/// What happened. Stored as text; the verifier works on the stored text, so an event altered to
/// an unknown action is reported as altered rather than refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    PracticeCreate,
    PracticeSettingsChange,
    PatientCreate,
    PatientUpdate,
    RecordViewStaff,
    RecordViewOnline,
    RecordPreviewOnline,
    EntryCreate,
    EntryVisibilityChange,
    /// An entry retired by a later version (R28): kept, marked superseded.
    EntrySupersede,
    AccessSettingsChange,
    ProxyLinkCreate,
    OnlineAccountCreate,
    StaffCreate,
    TokenCreate,
    TokenRevoke,
    DemoBuild,
    SignIn,
    SignInFailed,
    SignInLocked,
    SecondFactorEnrolled,
    SignOut,
    PatientSearch,
    AuditView,
    EntryFile,
    FilingQueueView,
    StaffUpdate,
    PatientDeregister,
    EntrySplit,
    RecordTransferIn,
    LinkageIssue,
    PatientSignIn,
    PatientSignInFailed,
    PatientSignOut,
    PatientActivityView,
    ClinicCreate,
    AppointmentBook,
    AppointmentCancel,
    TaskCreate,
    TaskUpdate,
    /// A done task opened again (a safety-net message that failed for good).
    TaskReopen,
    PharmacyNominate,
    ProxyLinkUpdate,
    MessageQueue,
    MessageRetry,
    AppRegister,
    AppChange,
    AppLink,
    AppUnlink,
    PresetSave,
    TaskView,
    CommunicationsView,
    ProxyView,
    EnhancedReviewView,
    EnhancedReviewDecide,
    BulkCode,
    BulkCodeJob,
    ReportView,
    ReportExport,
    ActionPlanChange,
    IcbReportView,
    InboundReceive,
    InboundAmend,
    InboundFile,
    InboundReject,
    InboundMatch,
    InboundView,
    SenderRegister,
    SarLog,
    SarUpdate,
    SarReview,
    SarDecide,
    SarExport,
    FhirTokenIssue,
    FhirIntegrationRegister,
    FhirIntegrationChange,
    /// A patient's record read through GP Connect Access Record: Structured.
    GpConnectStructuredRead,
    /// A patient found, their documents listed or one retrieved through GP Connect Access Document.
    GpConnectDocumentsRead,
    /// Free slots searched, or a patient found or their appointments read, through GP Connect
    /// Appointment Management.
    GpConnectAppointmentsRead,
    /// A patient's dissent from GP Connect sharing recorded, or taken away.
    GpConnectDissentChange,
    /// What a booker from another care setting wrote on an appointment changed.
    AppointmentAmend,
    StaffMessageSend,
    StaffMessageView,
    StaffMessageDelete,
    /// An entry opened to hide, show or split it.
    EntryView,
    /// One result or document waiting to be filed, opened.
    FilingItemView,
    /// A form for a patient (a consultation, a document, a message) that shows who they are.
    RecordFormView,
    /// A patient's record transfers listed.
    TransferListView,
    /// One subject access request opened.
    SarView,
    /// The register of subject access requests, with each patient.
    SarRegisterView,
    /// The appointment book, with the patients booked.
    AppointmentBookView,
    /// The task list, with each task's patient.
    TaskListView,
    /// Messages that failed, with their patients and contact details.
    FailedMessagesView,
    /// The list of patients whose contact preferences need attention.
    ContactQualityView,
    /// The enhanced review queue, with each patient.
    EnhancedReviewQueueView,
    /// The list of pharmacy messages, with their patients.
    InboundListView,
    StaffPasswordChange,
    StaffPasswordReset,
    StaffPasswordResetUse,
    PatientPasswordChange,
    PatientPasswordLetterIssue,
    PatientPasswordReset,
    /// A slot offered online, or no longer offered online.
    SlotOnlineChange,
    /// Whether the patient came to an appointment, recorded or corrected.
    AppointmentAttendance,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PracticeCreate => "practice.create",
            Self::PracticeSettingsChange => "practice.settings_change",
            Self::PatientCreate => "patient.create",
            Self::PatientUpdate => "patient.update",
            Self::RecordViewStaff => "record.view_staff",
            Self::RecordViewOnline => "record.view_online",
            Self::RecordPreviewOnline => "record.preview_online",
            Self::EntryCreate => "entry.create",
            Self::EntryVisibilityChange => "entry.visibility_change",
            Self::EntrySupersede => "entry.supersede",
            Self::AccessSettingsChange => "access.settings_change",
            Self::ProxyLinkCreate => "proxy.link_create",
            Self::OnlineAccountCreate => "account.create",
            Self::StaffCreate => "staff.create",
            Self::TokenCreate => "token.create",
            Self::TokenRevoke => "token.revoke",
            Self::DemoBuild => "demo.build",
            Self::SignIn => "staff.sign_in",
            Self::SignInFailed => "staff.sign_in_failed",
            Self::SignInLocked => "staff.locked_out",
            Self::SecondFactorEnrolled => "staff.totp_enrolled",
            Self::SignOut => "staff.sign_out",
            Self::PatientSearch => "patient.search",
            Self::AuditView => "record.view_audit",
            Self::EntryFile => "entry.file",
            Self::FilingQueueView => "filing.view_queue",
            Self::StaffUpdate => "staff.update",
            Self::PatientDeregister => "patient.deregister",
            Self::EntrySplit => "entry.split",
            Self::RecordTransferIn => "record.transfer_in",
            Self::LinkageIssue => "account.linkage_issue",
            Self::PatientSignIn => "patient.sign_in",
            Self::PatientSignInFailed => "patient.sign_in_failed",
            Self::PatientSignOut => "patient.sign_out",
            Self::PatientActivityView => "record.view_activity",
            Self::ClinicCreate => "clinic.create",
            Self::AppointmentBook => "appointment.book",
            Self::AppointmentCancel => "appointment.cancel",
            Self::TaskCreate => "task.create",
            Self::TaskUpdate => "task.update",
            Self::TaskReopen => "task.reopen",
            Self::PharmacyNominate => "patient.nominate_pharmacy",
            Self::ProxyLinkUpdate => "proxy.link_update",
            Self::MessageQueue => "message.queue",
            Self::MessageRetry => "message.retry",
            Self::AppRegister => "app.register",
            Self::AppChange => "app.change",
            Self::AppLink => "app.link",
            Self::AppUnlink => "app.unlink",
            Self::PresetSave => "preset.save",
            Self::TaskView => "task.view",
            Self::CommunicationsView => "record.view_communications",
            Self::ProxyView => "proxy.view",
            Self::EnhancedReviewView => "record.view_enhanced_review",
            Self::EnhancedReviewDecide => "review.decide",
            Self::BulkCode => "entry.bulk_code",
            Self::BulkCodeJob => "practice.bulk_code_job",
            Self::ReportView => "report.view",
            Self::ReportExport => "report.export",
            Self::ActionPlanChange => "practice.action_plan_change",
            Self::IcbReportView => "icb.report_view",
            Self::InboundReceive => "inbound.receive",
            Self::InboundAmend => "inbound.amend",
            Self::InboundFile => "inbound.file",
            Self::InboundReject => "inbound.reject",
            Self::InboundMatch => "inbound.match",
            Self::InboundView => "inbound.view",
            Self::SenderRegister => "inbound.sender_register",
            Self::SarLog => "sar.log",
            Self::SarUpdate => "sar.update",
            Self::SarReview => "sar.review_view",
            Self::SarDecide => "sar.decide",
            Self::SarExport => "sar.export",
            Self::FhirTokenIssue => "fhir.token_issue",
            Self::FhirIntegrationRegister => "fhir.integration_register",
            Self::FhirIntegrationChange => "fhir.integration_change",
            Self::GpConnectStructuredRead => "record.gp_connect_structured",
            Self::GpConnectDocumentsRead => "record.gp_connect_documents",
            Self::GpConnectDissentChange => "access.gp_connect_dissent",
            Self::GpConnectAppointmentsRead => "appointment.gp_connect_read",
            Self::AppointmentAmend => "appointment.amend",
            Self::StaffMessageSend => "staff_message.send",
            Self::StaffMessageView => "staff_message.view",
            Self::StaffMessageDelete => "staff_message.delete",
            Self::EntryView => "record.view_entry",
            Self::FilingItemView => "filing.view_item",
            Self::RecordFormView => "record.view_form",
            Self::TransferListView => "record.view_transfers",
            Self::SarView => "sar.view",
            Self::SarRegisterView => "sar.view_register",
            Self::AppointmentBookView => "appointment.view_book",
            Self::TaskListView => "task.view_list",
            Self::FailedMessagesView => "message.view_failed",
            Self::ContactQualityView => "patient.view_contact_quality",
            Self::EnhancedReviewQueueView => "review.view_queue",
            Self::InboundListView => "inbound.view_list",
            Self::StaffPasswordChange => "staff.password_change",
            Self::StaffPasswordReset => "staff.password_reset",
            Self::StaffPasswordResetUse => "staff.password_reset_use",
            Self::PatientPasswordChange => "patient.password_change",
            Self::PatientPasswordLetterIssue => "account.password_letter_issue",
            Self::PatientPasswordReset => "patient.password_reset",
            Self::SlotOnlineChange => "appointment.slot_online_change",
            Self::AppointmentAttendance => "appointment.attendance",
        }
    }
}

/// An event as the application describes it, before it joins the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: AuditEventId,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub patient: Option<PatientId>,
    pub action: String,
    /// What was acted on (entity ids, never clinical content).
    pub entity: String,
    pub outcome: Outcome,
    /// Extra facts: old and new values, the reason given. No clinical content.
    pub detail: String,
    /// The network address the request came from (the TCP peer, never a header), when the event
    /// was caused by a request; `None` for the command line and background work.
    #[serde(default)]
    pub client: Option<IpAddr>,
}

impl AuditRecord {
    /// A new record; `at` is cut to whole microseconds so that it survives a round trip through
    /// either database unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: AuditEventId,
        at: DateTime<Utc>,
        actor: Actor,
        patient: Option<PatientId>,
        action: Action,
        entity: impl Into<String>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            id,
            at: truncate_to_micros(at),
            actor,
            patient,
            action: action.as_str().to_owned(),
            entity: entity.into(),
            outcome,
            detail: detail.into(),
            client: None,
        }
    }

    /// The same record, made on behalf of a request from `client`.
    pub fn from_client(mut self, client: Option<IpAddr>) -> Self {
        self.client = client;
        self
    }
}

/// Cuts a timestamp to whole microseconds (both databases keep microseconds).
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// An event as stored: all fields as text, exactly as they are hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    pub practice: PracticeId,
    pub seq: i64,
    pub id: String,
    pub at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: String,
    pub actor_role: String,
    pub patient: Option<String>,
    pub action: String,
    pub entity: String,
    pub outcome: String,
    pub detail: String,
    /// The client address as text (`None` for events without one, and for every event written
    /// before addresses were recorded).
    pub client: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The head of a chain: how many events it holds and the hash of the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub count: i64,
    pub hash: ChainHash,
}

impl ChainHead {
    pub const EMPTY: ChainHead = ChainHead { count: 0, hash: ChainHash::GENESIS };
}

fn field(h: &mut Sha256, s: &[u8]) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s);
}

/// The hash of one event: SHA-256 over a domain tag, the previous hash and every field,
/// each length-prefixed so that no two different events encode alike.
pub fn event_hash(e: &StoredEvent) -> ChainHash {
    let mut h = Sha256::new();
    field(&mut h, b"caldicott-audit-v1");
    field(&mut h, &e.prev_hash);
    field(&mut h, e.practice.as_uuid().as_bytes());
    field(&mut h, &e.seq.to_be_bytes());
    field(&mut h, e.id.as_bytes());
    field(&mut h, e.at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
    field(&mut h, e.actor_kind.as_bytes());
    field(&mut h, e.actor_id.as_bytes());
    field(&mut h, e.actor_role.as_bytes());
    field(&mut h, e.patient.as_deref().unwrap_or("").as_bytes());
    field(&mut h, e.action.as_bytes());
    field(&mut h, e.entity.as_bytes());
    field(&mut h, e.outcome.as_bytes());
    field(&mut h, e.detail.as_bytes());
    // Added later: hashed only when present, so events written before it verify unchanged, and
    // an address added to, removed from or changed in a stored event breaks the chain there.
    if let Some(client) = &e.client {
        field(&mut h, b"client");
        field(&mut h, client.as_bytes());
    }
    ChainHash(h.finalize().into())
}

/// Joins a record to the chain after `head`, returning the event to store and the new head.
pub fn seal(practice: PracticeId, head: ChainHead, record: &AuditRecord) -> (StoredEvent, ChainHead) {
    let mut e = StoredEvent {
        practice,
        seq: head.count + 1,
        id: record.id.to_string(),
        at: record.at,
        actor_kind: record.actor.kind.as_str().to_owned(),
        actor_id: record.actor.id.clone(),
        actor_role: record.actor.role.clone(),
        patient: record.patient.map(|p| p.to_string()),
        action: record.action.clone(),
        entity: record.entity.clone(),
        outcome: record.outcome.as_str().to_owned(),
        detail: record.detail.clone(),
        client: record.client.map(|c| c.to_string()),
        prev_hash: head.hash.0.to_vec(),
        hash: Vec::new(),
    };
    let hash = event_hash(&e);
    e.hash = hash.0.to_vec();
    let head = ChainHead { count: e.seq, hash };
    (e, head)
}

/// Where and how a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainBreak {
    #[error("event {seq} is missing (the next event found is {found})")]
    Missing { seq: i64, found: i64 },
    #[error("event {seq} ({id}) was altered: its contents no longer match its hash")]
    Altered { seq: i64, id: String },
    #[error("event {seq} ({id}) does not follow event {prev}: events were removed, re-ordered or forged")]
    Unlinked { seq: i64, id: String, prev: i64 },
    #[error("the chain ends at event {count}, but {expected} events were recorded: events were cut off the end")]
    Truncated { count: i64, expected: i64 },
    #[error("event {seq} does not match the checkpoint: the log was rewritten")]
    CheckpointMismatch { seq: i64 },
}

impl ChainBreak {
    /// The position of the first bad event.
    pub fn first_bad(&self) -> i64 {
        match self {
            Self::Missing { seq, .. }
            | Self::Altered { seq, .. }
            | Self::Unlinked { seq, .. }
            | Self::CheckpointMismatch { seq } => *seq,
            Self::Truncated { count, .. } => count + 1,
        }
    }
}

/// Checks a chain event by event, in `seq` order, as it streams from the store.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    head: ChainHead,
    checkpoints: Vec<ChainHead>,
}

impl ChainVerifier {
    /// `checkpoints` are heads recorded earlier (by `audit checkpoint` or by the store's own head
    /// row); each must be a prefix of the chain.
    pub fn new(checkpoints: Vec<ChainHead>) -> Self {
        Self { head: ChainHead::EMPTY, checkpoints }
    }

    pub fn push(&mut self, e: &StoredEvent) -> Result<(), ChainBreak> {
        let expected = self.head.count + 1;
        if e.seq != expected {
            return Err(if e.seq > expected {
                ChainBreak::Missing { seq: expected, found: e.seq }
            } else {
                ChainBreak::Unlinked { seq: e.seq, id: e.id.clone(), prev: self.head.count }
            });
        }
        if e.prev_hash.as_slice() != self.head.hash.0.as_slice() {
            // Content altered in place shows as a hash mismatch; a row from elsewhere shows here.
            let recomputed = event_hash(e);
            if recomputed.0.as_slice() != e.hash.as_slice() {
                return Err(ChainBreak::Altered { seq: e.seq, id: e.id.clone() });
            }
            return Err(ChainBreak::Unlinked { seq: e.seq, id: e.id.clone(), prev: self.head.count });
        }
        let hash = event_hash(e);
        if hash.0.as_slice() != e.hash.as_slice() {
            return Err(ChainBreak::Altered { seq: e.seq, id: e.id.clone() });
        }
        self.head = ChainHead { count: e.seq, hash };
        for cp in &self.checkpoints {
            if cp.count == e.seq && cp.hash != hash {
                return Err(ChainBreak::CheckpointMismatch { seq: e.seq });
            }
        }
        Ok(())
    }

    /// Ends the check: every checkpoint must lie within the chain.
    pub fn finish(self) -> Result<ChainHead, ChainBreak> {
        if let Some(cp) = self.checkpoints.iter().filter(|cp| cp.count > self.head.count).max_by_key(|cp| cp.count) {
            return Err(ChainBreak::Truncated { count: self.head.count, expected: cp.count });
        }
        Ok(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn chain(n: usize) -> (Vec<StoredEvent>, ChainHead) {
        let practice = PracticeId::from_uuid(Uuid::from_u128(9));
        let mut head = ChainHead::EMPTY;
        let mut out = Vec::new();
        for i in 0..n {
            let rec = AuditRecord::new(
                AuditEventId::from_uuid(Uuid::from_u128(i as u128 + 1)),
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::milliseconds(i as i64),
                Actor { kind: ActorKind::Staff, id: "s1".into(), role: "clinician".into() },
                Some(PatientId::from_uuid(Uuid::from_u128(5))),
                Action::RecordViewStaff,
                format!("patient/{i}"),
                Outcome::Success,
                "",
            );
            let (e, h) = seal(practice, head, &rec);
            head = h;
            out.push(e);
        }
        (out, head)
    }

    fn verify(events: &[StoredEvent], checkpoints: Vec<ChainHead>) -> Result<ChainHead, ChainBreak> {
        let mut v = ChainVerifier::new(checkpoints);
        for e in events {
            v.push(e)?;
        }
        v.finish()
    }

    #[test]
    fn a_clean_chain_verifies_and_matches_its_head() {
        let (events, head) = chain(50);
        assert_eq!(verify(&events, vec![head]), Ok(head));
        assert_eq!(verify(&[], vec![]), Ok(ChainHead::EMPTY));
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_event() {
        let (events, head) = chain(20);
        let mut edited = events.clone();
        edited[6].detail = "changed".into();
        assert_eq!(verify(&edited, vec![head]).unwrap_err().first_bad(), 7);

        let mut deleted = events.clone();
        deleted.remove(9);
        assert_eq!(verify(&deleted, vec![head]).unwrap_err(), ChainBreak::Missing { seq: 10, found: 11 });

        // Swapping two rows' contents but keeping their positions.
        let mut swapped = events.clone();
        let (a, b) = (swapped[3].clone(), swapped[4].clone());
        swapped[3] = StoredEvent { seq: 4, ..b };
        swapped[4] = StoredEvent { seq: 5, ..a };
        assert_eq!(verify(&swapped, vec![head]).unwrap_err().first_bad(), 4);

        let truncated = &events[..15];
        assert_eq!(verify(truncated, vec![head]).unwrap_err(), ChainBreak::Truncated { count: 15, expected: 20 });
        assert!(verify(truncated, vec![]).is_ok(), "without a checkpoint a clean prefix verifies");

        // A whole rewritten log with recomputed hashes is caught by the checkpoint.
        let mut rewritten = events.clone();
        rewritten[0].detail = "rewritten".into();
        let mut h = ChainHead::EMPTY;
        for e in &mut rewritten {
            e.prev_hash = h.hash.0.to_vec();
            let hash = event_hash(e);
            e.hash = hash.0.to_vec();
            h = ChainHead { count: e.seq, hash };
        }
        assert!(verify(&rewritten, vec![]).is_ok());
        assert_eq!(verify(&rewritten, vec![head]).unwrap_err(), ChainBreak::CheckpointMismatch { seq: 20 });
    }

    #[test]
    fn the_client_address_is_part_of_the_chain_and_old_events_still_verify() {
        // An event without an address hashes exactly as before the address was recorded.
        let (events, head) = chain(3);
        assert!(events.iter().all(|e| e.client.is_none()));
        assert_eq!(verify(&events, vec![head]), Ok(head));
        // One with an address: removing or changing it is caught at that event.
        let practice = PracticeId::from_uuid(Uuid::from_u128(9));
        let rec = AuditRecord::new(
            AuditEventId::from_uuid(Uuid::from_u128(99)),
            Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap(),
            Actor { kind: ActorKind::Staff, id: "s1".into(), role: "clinician".into() },
            None,
            Action::RecordViewStaff,
            "patient/x",
            Outcome::Success,
            "",
        )
        .from_client(Some("198.51.100.7".parse().unwrap()));
        let (e, head) = seal(practice, head, &rec);
        assert_eq!(e.client.as_deref(), Some("198.51.100.7"));
        let mut all = events.clone();
        all.push(e);
        assert_eq!(verify(&all, vec![head]), Ok(head));
        let mut removed = all.clone();
        removed[3].client = None;
        assert_eq!(verify(&removed, vec![head]).unwrap_err().first_bad(), 4);
        let mut changed = all;
        changed[3].client = Some("203.0.113.9".into());
        assert_eq!(verify(&changed, vec![head]).unwrap_err().first_bad(), 4);
    }

    proptest! {
        #[test]
        fn any_single_field_change_is_detected_at_that_event(n in 1usize..40, at in 0usize..40, which in 0usize..7) {
            let (mut events, head) = chain(n);
            let i = at % n;
            let e = &mut events[i];
            match which {
                0 => e.detail.push('x'),
                1 => e.action = "record.view_online".into(),
                2 => e.actor_id = "someone-else".into(),
                3 => e.at += chrono::Duration::microseconds(1),
                4 => e.patient = None,
                5 => e.client = Some("192.0.2.1".into()),
                _ => e.outcome = "denied".into(),
            }
            prop_assert_eq!(verify(&events, vec![head]).unwrap_err().first_bad(), i as i64 + 1);
        }
    }
}
