//! The practice's task list: requests from patients (repeat prescriptions, questions about
//! medication, requests to amend the record or to note a disagreement) wait here until a member
//! of staff records an outcome.

use crate::ids::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    RepeatRequest,
    MedicationQuery,
    RecordAmendment,
    RecordDisagreement,
    /// "Online services linked": a third-party app linked to the record (R23).
    OnlineServicesLinked,
    /// A letter for the practice to print and post.
    PostLetter,
    /// A pharmacy's consultation summary (GP Connect Update Record) to review and file (R26).
    PharmacyUpdate,
    /// What a patient (or a proxy) added to a care plan online, for the care team to review.
    CarePlanAddition,
}

impl TaskKind {
    pub const ALL: [TaskKind; 8] = [
        Self::RepeatRequest,
        Self::MedicationQuery,
        Self::RecordAmendment,
        Self::RecordDisagreement,
        Self::OnlineServicesLinked,
        Self::PostLetter,
        Self::PharmacyUpdate,
        Self::CarePlanAddition,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RepeatRequest => "repeat_request",
            Self::MedicationQuery => "medication_query",
            Self::RecordAmendment => "record_amendment",
            Self::RecordDisagreement => "record_disagreement",
            Self::OnlineServicesLinked => "online_services_linked",
            Self::PostLetter => "post_letter",
            Self::PharmacyUpdate => "pharmacy_update",
            Self::CarePlanAddition => "care_plan_addition",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::RepeatRequest => "Repeat prescription request",
            Self::MedicationQuery => "Question about medication",
            Self::RecordAmendment => "Request to amend the record",
            Self::RecordDisagreement => "Note of disagreement with the record",
            Self::OnlineServicesLinked => "Online services linked (security alert)",
            Self::PostLetter => "Letter to print and post",
            Self::PharmacyUpdate => "Pharmacy consultation summary to file",
            Self::CarePlanAddition => "Added to a care plan by the patient",
        }
    }
    /// Who may record the outcome: clinicians decide on medicines and the record.
    pub fn needs_clinician(self) -> bool {
        !matches!(self, Self::OnlineServicesLinked | Self::PostLetter)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Done,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "done" => Some(Self::Done),
            _ => None,
        }
    }
}

/// A clinician's decision on one item of a repeat request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum ItemDecision {
    Pending,
    Approved { by: String, at: DateTime<Utc> },
    Rejected { reason: String, by: String, at: DateTime<Utc> },
}

/// One medicine asked for, from a current repeat template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatItem {
    pub template: EntryId,
    pub drug: String,
    pub dosage: String,
    pub quantity: String,
    pub decision: ItemDecision,
}

/// What a task carries, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "body", rename_all = "snake_case")]
pub enum TaskBody {
    Repeat {
        items: Vec<RepeatItem>,
        note: String,
        pharmacy: Option<String>,
    },
    Message {
        text: String,
    },
    /// A letter to print and post, and the outbox message that records it.
    Letter {
        message: MessageId,
        text: String,
    },
    /// A pharmacy's consultation summary: the inbound message to review, file or reject.
    Inbound {
        message: uuid::Uuid,
        summary: String,
    },
}

/// A task in the practice's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub patient: PatientId,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub created_at: DateTime<Utc>,
    /// Who asked, in words ("the patient, online", "Jane Doe (mother), online").
    pub requested_by: String,
    pub body: TaskBody,
    /// What the practice decided or did, in words the patient may read.
    pub outcome: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("this task is already done")]
    AlreadyDone,
    #[error("that item is not part of this request")]
    NoSuchItem,
    #[error("that item has already been decided")]
    AlreadyDecided,
    #[error("give a reason for turning the item down; the patient will see it")]
    ReasonRequired,
    #[error("write what the practice decided or did; the patient will see it")]
    OutcomeRequired,
    #[error("the practice has started on this order, so it can no longer be cancelled online: contact the practice")]
    OrderStarted,
}

impl Task {
    /// Decides one item of a repeat request; the task is done when every item is decided.
    pub fn decide_item(
        &mut self,
        template: EntryId,
        approve: bool,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(), TaskError> {
        if self.status == TaskStatus::Done {
            return Err(TaskError::AlreadyDone);
        }
        let TaskBody::Repeat { items, .. } = &mut self.body else { return Err(TaskError::NoSuchItem) };
        let item = items.iter_mut().find(|i| i.template == template).ok_or(TaskError::NoSuchItem)?;
        if item.decision != ItemDecision::Pending {
            return Err(TaskError::AlreadyDecided);
        }
        item.decision = if approve {
            ItemDecision::Approved { by: by.to_owned(), at }
        } else {
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(TaskError::ReasonRequired);
            }
            ItemDecision::Rejected { reason: reason.to_owned(), by: by.to_owned(), at }
        };
        if items.iter().all(|i| i.decision != ItemDecision::Pending) {
            let approved = items.iter().filter(|i| matches!(i.decision, ItemDecision::Approved { .. })).count();
            self.status = TaskStatus::Done;
            self.outcome = Some(format!("{approved} of {} items approved", items.len()));
            self.closed_at = Some(at);
            self.closed_by = Some(by.to_owned());
        }
        Ok(())
    }

    /// Whether the order can still be cancelled by whoever made it: a repeat request, open, with
    /// no medicine decided yet.
    pub fn can_cancel_order(&self) -> bool {
        self.status == TaskStatus::Open
            && matches!(&self.body, TaskBody::Repeat { items, .. } if items.iter().all(|i| i.decision == ItemDecision::Pending))
    }

    /// The patient, or someone acting for them, cancels their order before the practice has
    /// decided any of it: it is done, its medicines undecided, the outcome saying who cancelled.
    pub fn cancel_order(&mut self, by: &str, at: DateTime<Utc>) -> Result<(), TaskError> {
        if self.kind != TaskKind::RepeatRequest {
            return Err(TaskError::NoSuchItem);
        }
        if self.status == TaskStatus::Done {
            return Err(TaskError::AlreadyDone);
        }
        if !self.can_cancel_order() {
            return Err(TaskError::OrderStarted);
        }
        self.status = TaskStatus::Done;
        self.outcome = Some(format!("Cancelled by {by}"));
        self.closed_at = Some(at);
        self.closed_by = Some(by.to_owned());
        Ok(())
    }

    /// Records the outcome of a message task and closes it.
    pub fn close(&mut self, outcome: &str, by: &str, at: DateTime<Utc>) -> Result<(), TaskError> {
        if self.status == TaskStatus::Done {
            return Err(TaskError::AlreadyDone);
        }
        let outcome = outcome.trim();
        if outcome.is_empty() {
            return Err(TaskError::OutcomeRequired);
        }
        self.status = TaskStatus::Done;
        self.outcome = Some(outcome.to_owned());
        self.closed_at = Some(at);
        self.closed_by = Some(by.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn repeat(n: u128) -> Task {
        Task {
            id: TaskId::from_uuid(Uuid::from_u128(99)),
            patient: PatientId::from_uuid(Uuid::from_u128(98)),
            kind: TaskKind::RepeatRequest,
            status: TaskStatus::Open,
            created_at: DateTime::default(),
            requested_by: "the patient".into(),
            body: TaskBody::Repeat {
                items: (1..=n)
                    .map(|i| RepeatItem {
                        template: EntryId::from_uuid(Uuid::from_u128(i)),
                        drug: format!("drug {i}"),
                        dosage: String::new(),
                        quantity: String::new(),
                        decision: ItemDecision::Pending,
                    })
                    .collect(),
                note: String::new(),
                pharmacy: None,
            },
            outcome: None,
            closed_at: None,
            closed_by: None,
        }
    }

    #[test]
    fn a_repeat_request_is_done_when_every_item_is_decided() {
        let mut t = repeat(2);
        let one = EntryId::from_uuid(Uuid::from_u128(1));
        let two = EntryId::from_uuid(Uuid::from_u128(2));
        assert_eq!(t.decide_item(two, false, " ", "Dr A", DateTime::default()), Err(TaskError::ReasonRequired));
        t.decide_item(one, true, "", "Dr A", DateTime::default()).unwrap_or_default();
        assert_eq!(t.status, TaskStatus::Open);
        assert_eq!(t.decide_item(one, true, "", "Dr A", DateTime::default()), Err(TaskError::AlreadyDecided));
        t.decide_item(two, false, "Review due first", "Dr A", DateTime::default()).unwrap_or_default();
        assert_eq!(t.status, TaskStatus::Done);
        assert_eq!(t.outcome.as_deref(), Some("1 of 2 items approved"));
        assert_eq!(t.decide_item(one, true, "", "Dr A", DateTime::default()), Err(TaskError::AlreadyDone));
        let nope = EntryId::from_uuid(Uuid::from_u128(7));
        assert_eq!(repeat(1).decide_item(nope, true, "", "x", DateTime::default()), Err(TaskError::NoSuchItem));
    }

    #[test]
    fn an_order_is_cancelled_only_before_the_practice_decides_any_of_it() {
        let mut t = repeat(2);
        assert!(t.can_cancel_order());
        t.cancel_order("the patient, online", DateTime::default()).unwrap_or_default();
        assert_eq!((t.status, t.outcome.as_deref()), (TaskStatus::Done, Some("Cancelled by the patient, online")));
        assert_eq!(t.cancel_order("x", DateTime::default()), Err(TaskError::AlreadyDone), "once");
        let one = EntryId::from_uuid(Uuid::from_u128(1));
        assert_eq!(t.decide_item(one, true, "", "Dr A", DateTime::default()), Err(TaskError::AlreadyDone));
        // One medicine decided: the practice has started on it.
        let mut started = repeat(2);
        started.decide_item(one, false, "Review due", "Dr A", DateTime::default()).unwrap_or_default();
        assert!(!started.can_cancel_order());
        assert_eq!(started.cancel_order("x", DateTime::default()), Err(TaskError::OrderStarted));
        assert_eq!(started.status, TaskStatus::Open, "nothing changed");
        let mut message =
            Task { kind: TaskKind::MedicationQuery, body: TaskBody::Message { text: "q".into() }, ..repeat(0) };
        assert!(!message.can_cancel_order());
        assert_eq!(message.cancel_order("x", DateTime::default()), Err(TaskError::NoSuchItem));
    }

    #[test]
    fn a_message_task_closes_with_an_outcome() {
        let mut t = Task { kind: TaskKind::MedicationQuery, body: TaskBody::Message { text: "q".into() }, ..repeat(0) };
        assert_eq!(t.close("  ", "x", DateTime::default()), Err(TaskError::OutcomeRequired));
        assert!(t.close("Phoned the patient", "x", DateTime::default()).is_ok());
        assert_eq!(t.close("again", "x", DateTime::default()), Err(TaskError::AlreadyDone));
    }
}
