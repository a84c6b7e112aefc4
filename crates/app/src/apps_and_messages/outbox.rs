//! The outbox and its worker. A message is written to the outbox in the transaction of the
//! action that caused it; the worker claims due messages for a lease, hands each to the
//! configured courier (GOV.UK Notify, or the log for the demo), and records the outcome.
//! Temporary failures are retried with backoff; a worker killed mid-send leaves its claims to
//! run out, and another worker takes them up, so nothing is lost. A message tried before is
//! looked up at the provider by its reference before it is sent again (GOV.UK Notify), and an
//! email keeps one `Message-ID` across tries (SMTP), so a message goes to the patient once.

use crate::permit;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, Actor, Outcome};
use caldicott_core::ids::*;
use caldicott_core::messages::*;
use caldicott_core::permissions::Permission;
use caldicott_store::{DeliveryOutcome, PatientListing};
use chrono::Duration;
use std::sync::Arc;

/// How long a claimed message is the worker's before another may take it.
pub const LEASE: Duration = Duration::seconds(60);

/// A provider accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Accepted for delivery; a delivery report may follow.
    Sent(String),
    /// Delivered there and then.
    Delivered(String),
}

/// A provider did not take a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again later (timeouts, rate limits, server errors).
    Temporary(String),
    /// Trying again will not help (a bad number, a rejected request).
    Permanent(String),
}

/// Something that delivers messages. Called from a blocking thread.
///
/// A message whose `tries` is more than one was tried before, and that try may have reached the
/// provider (a worker killed mid-send, an answer that came after the client gave up): a courier
/// that can ask the provider whether it holds the message must ask before sending it again.
pub trait Courier: Send + Sync + 'static {
    fn deliver(&self, message: &OutboundMessage) -> Result<Accepted, Failure>;

    /// The `Message-ID` this courier would give an email, fixed before its first try and reused
    /// on every retry so that the receiving side can drop a repeat; `None` if it sets none.
    fn email_message_id(&self, _message: &OutboundMessage) -> Option<String> {
        None
    }
}

/// The demo's courier: it records that a message would have gone, and to which channel, without
/// writing its content or its recipient anywhere.
pub struct LogCourier;

impl Courier for LogCourier {
    fn deliver(&self, m: &OutboundMessage) -> Result<Accepted, Failure> {
        tracing::info!(message = %m.id, channel = m.channel.as_str(), "message delivered to the log (no provider configured)");
        Ok(Accepted::Delivered(format!("log-{}", m.id)))
    }
}

/// The price of one SMS fragment, in hundredths of a penny (set `CALDICOTT_SMS_FRAGMENT_PRICE`
/// to the practice's contract price in pence, for example `2.27`).
pub fn sms_fragment_price() -> i64 {
    std::env::var("CALDICOTT_SMS_FRAGMENT_PRICE")
        .ok()
        .and_then(|p| p.trim().parse::<f64>().ok())
        .filter(|p| (0.0..100.0).contains(p))
        .map_or(227, |p| (p * 100.0).round() as i64)
}

/// A message as the outbox keeps it, before it is queued.
#[derive(Debug, Clone)]
pub struct Draft {
    pub patient: PatientId,
    pub purpose: &'static str,
    pub channel: Channel,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

impl Draft {
    /// The outbox record: fragments and cost counted (R42), an idempotency key of its own.
    pub fn into_message(self, now: chrono::DateTime<chrono::Utc>) -> OutboundMessage {
        let (fragments, _) = match self.channel {
            Channel::Sms => sms_fragments(&self.body),
            _ => (0, true),
        };
        let id = MessageId::from_uuid(new_id());
        OutboundMessage {
            id,
            patient: self.patient,
            purpose: self.purpose.to_owned(),
            channel: self.channel,
            recipient: self.recipient,
            subject: self.subject,
            body: self.body,
            idempotency_key: id.to_string(),
            status: MessageStatus::Queued,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            provider_id: None,
            fragments,
            cost_hundredths: i64::from(fragments) * sms_fragment_price(),
            created_at: now,
            sent_at: None,
            task: None,
            tries: 0,
            email_message_id: None,
        }
    }
}

impl App {
    /// Queues a message, audited as `actor` did it for the patient.
    pub async fn queue_message(&self, practice: PracticeId, actor: Actor, draft: Draft) -> AppResult<OutboundMessage> {
        let m = draft.into_message(self.now());
        if m.channel == Channel::Sms && m.fragments > 6 {
            return Err(AppError::BadRequest("the text is longer than 6 SMS fragments (918 characters)".into()));
        }
        let audit = self.patient_audit(
            actor,
            Some(m.patient),
            Action::MessageQueue,
            format!("message/{}", m.id),
            Outcome::Success,
            format!("{} {} fragments={}", m.purpose, m.channel.as_str(), m.fragments),
        );
        self.store.enqueue_message(practice, &m, &audit).await?;
        Ok(m)
    }

    /// One pass of the worker: claims up to `limit` due messages and tries each once. Returns
    /// how many it tried.
    pub async fn deliver_due(&self, courier: &Arc<dyn Courier>, limit: u32) -> AppResult<usize> {
        let now = self.now();
        let claimed = self.store.claim_due_messages(now, now + LEASE, limit).await?;
        let n = claimed.len();
        for (practice, mut m) in claimed {
            if m.channel == Channel::Email && m.email_message_id.is_none() {
                if let Some(candidate) = courier.email_message_id(&m) {
                    m.email_message_id = Some(self.store.fix_email_message_id(practice, m.id, &candidate).await?);
                }
            }
            let c = courier.clone();
            let attempts = m.attempts;
            let id = m.id;
            let channel = m.channel.as_str();
            let result = tokio::task::spawn_blocking(move || c.deliver(&m))
                .await
                .map_err(|e| AppError::Internal(format!("courier: {e}")))?;
            let outcome = match result {
                Ok(Accepted::Sent(provider_id)) => DeliveryOutcome::Sent { provider_id },
                Ok(Accepted::Delivered(provider_id)) => DeliveryOutcome::Delivered { provider_id },
                Err(Failure::Temporary(error)) if attempts < MAX_ATTEMPTS => {
                    DeliveryOutcome::Retry { error, next: self.now() + backoff(attempts) }
                }
                Err(Failure::Temporary(error)) => {
                    DeliveryOutcome::Failed { error: format!("gave up after {attempts} tries: {error}") }
                }
                Err(Failure::Permanent(error)) => DeliveryOutcome::Failed { error },
            };
            let result = match &outcome {
                DeliveryOutcome::Sent { .. } => "sent",
                DeliveryOutcome::Delivered { .. } => "delivered",
                DeliveryOutcome::Retry { .. } => "retry",
                DeliveryOutcome::Failed { .. } => "failed",
            };
            metrics::counter!("caldicott_outbox_attempts_total", "channel" => channel, "result" => result).increment(1);
            self.store.finish_message(practice, id, &outcome, self.now()).await?;
        }
        Ok(n)
    }

    /// Runs the worker until the task is dropped: a pass, then a pause when there was nothing.
    ///
    /// When `stop` turns true the worker finishes the pass it is in (a message being sent is sent
    /// and recorded, not left leased) and returns.
    pub fn spawn_outbox_worker(
        &self,
        courier: Arc<dyn Courier>,
        pause: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        tokio::spawn(async move {
            while !*stop.borrow() {
                let rest = match app.deliver_due(&courier, 20).await {
                    Ok(0) => pause,
                    Ok(_) => std::time::Duration::ZERO,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox pass failed; trying again shortly");
                        pause
                    }
                };
                if !rest.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(rest) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            tracing::info!("outbox worker stopped");
        })
    }

    /// A patient's communications log, newest first (staff; audited as a look at the record).
    pub async fn communications(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
    ) -> AppResult<(caldicott_core::patient::Patient, Vec<OutboundMessage>)> {
        permit(who, Permission::OpenRecords)?;
        let patient = self.patient_here(who, nhs).await?;
        let messages = self.store.messages_for_patient(who.practice, patient.id).await?;
        self.audit_look(
            who,
            Some(patient.id),
            Action::CommunicationsView,
            format!("patient/{}", patient.id),
            format!("messages={}", messages.len()),
        )
        .await?;
        Ok((patient, messages))
    }

    /// Messages that failed, for staff to fix the contact details and retry.
    pub async fn failed_messages(&self, who: &StaffPrincipal) -> AppResult<Vec<(OutboundMessage, PatientListing)>> {
        permit(who, Permission::MessagePatients)?;
        let failed = self.store.failed_messages(who.practice, 200).await?;
        self.audit_look(who, None, Action::FailedMessagesView, "messages/failed", format!("messages={}", failed.len()))
            .await?;
        Ok(failed)
    }

    /// Puts a failed message back in the queue.
    pub async fn retry_message(&self, who: &StaffPrincipal, id: MessageId) -> AppResult<()> {
        permit(who, Permission::MessagePatients)?;
        let audit = self.audit_record(who, None, Action::MessageRetry, format!("message/{id}"), Outcome::Success, "");
        Ok(self.store.retry_message(who.practice, id, self.now(), &audit).await?)
    }
}
