//! The GOV.UK Notify courier (R41): `POST /v2/notifications/{email,sms,letter}` with a fresh
//! HS256 JWT per request (`iss` the service id, `iat` now), one template per channel taking
//! `subject` and `body` as personalisation, and a `reference` that is the message id and so
//! carries no personal data. 429 and 5xx are temporary failures; other errors are permanent.
//!
//! Exactly once: a message tried before (its earlier try may have reached Notify though no
//! answer came back: the worker was stopped mid-send, or Notify answered after the client's
//! timeout) is first looked up with `GET /v2/notifications?reference=<message id>`; a
//! notification found there is the message, sent, and it is not sent again. Notifications that
//! failed temporarily or technically do not count: the message is sent again (R41).
//!
//! Configured with `CALDICOTT_NOTIFY_API_KEY` (the key as Notify issues it:
//! `name-<service id>-<secret>`), `CALDICOTT_NOTIFY_EMAIL_TEMPLATE`,
//! `CALDICOTT_NOTIFY_SMS_TEMPLATE`, `CALDICOTT_NOTIFY_LETTER_TEMPLATE`, and optionally
//! `CALDICOTT_NOTIFY_URL` (default `https://api.notifications.service.gov.uk`).

use caldicott_app::outbox::{Accepted, Courier, Failure};
use caldicott_core::messages::{Channel, OutboundMessage};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub base_url: String,
    pub service_id: String,
    pub secret: String,
    pub email_template: String,
    pub sms_template: String,
    pub letter_template: String,
}

impl NotifyConfig {
    /// From the environment; `None` when Notify is not configured.
    pub fn from_env() -> Option<Result<Self, String>> {
        let key = std::env::var("CALDICOTT_NOTIFY_API_KEY").ok().filter(|k| !k.is_empty())?;
        let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} must be set with CALDICOTT_NOTIFY_API_KEY"));
        let build = || -> Result<Self, String> {
            let (service_id, secret) = split_key(&key)?;
            Ok(Self {
                base_url: std::env::var("CALDICOTT_NOTIFY_URL")
                    .unwrap_or_else(|_| "https://api.notifications.service.gov.uk".into())
                    .trim_end_matches('/')
                    .to_owned(),
                service_id,
                secret,
                email_template: var("CALDICOTT_NOTIFY_EMAIL_TEMPLATE")?,
                sms_template: var("CALDICOTT_NOTIFY_SMS_TEMPLATE")?,
                letter_template: var("CALDICOTT_NOTIFY_LETTER_TEMPLATE")?,
            })
        };
        Some(build())
    }
}

/// A Notify API key ends with two UUIDs: the service id, then the secret.
pub fn split_key(key: &str) -> Result<(String, String), String> {
    let k = key.trim();
    if k.len() < 74 || !k.is_char_boundary(k.len() - 73) {
        return Err("CALDICOTT_NOTIFY_API_KEY is not a Notify API key".into());
    }
    let (service, secret) = (&k[k.len() - 73..k.len() - 37], &k[k.len() - 36..]);
    if uuid::Uuid::parse_str(service).is_err() || uuid::Uuid::parse_str(secret).is_err() {
        return Err("CALDICOTT_NOTIFY_API_KEY is not a Notify API key".into());
    }
    Ok((service.to_owned(), secret.to_owned()))
}

pub struct NotifyCourier {
    config: NotifyConfig,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct Found {
    id: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct Notifications {
    notifications: Vec<Found>,
}

impl NotifyCourier {
    pub fn new(config: NotifyConfig) -> Self {
        Self::with_timeout(config, Duration::from_secs(15))
    }

    /// A courier that gives up waiting for Notify's answer after `timeout`.
    pub fn with_timeout(config: NotifyConfig, timeout: Duration) -> Self {
        let agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        Self { config, agent }
    }

    fn token(&self) -> Result<String, Failure> {
        let claims = serde_json::json!({ "iss": self.config.service_id, "iat": jsonwebtoken::get_current_timestamp() });
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.config.secret.as_bytes()),
        )
        .map_err(|e| Failure::Permanent(format!("signing the Notify token: {e}")))
    }
}

impl NotifyCourier {
    /// Whether Notify already holds the message, by its reference (the message id).
    fn already_sent(&self, m: &OutboundMessage) -> Result<Option<Accepted>, Failure> {
        let url = format!("{}/v2/notifications", self.config.base_url);
        let mut res = self
            .agent
            .get(&url)
            .query("reference", m.id.to_string())
            .header("Authorization", &format!("Bearer {}", self.token()?))
            .call()
            .map_err(|e| Failure::Temporary(format!("Notify did not answer the look-up: {e}")))?;
        let status = res.status().as_u16();
        if !(200..=299).contains(&status) {
            return Err(Failure::Temporary(format!(
                "Notify did not answer the look-up ({status}): not sending again until it does"
            )));
        }
        let found: Notifications = res.body_mut().read_json().map_err(|e| Failure::Temporary(e.to_string()))?;
        let held = found
            .notifications
            .into_iter()
            .filter(|n| !matches!(n.status.as_str(), "temporary-failure" | "technical-failure"));
        let mut outcome = None;
        for n in held {
            match n.status.as_str() {
                "permanent-failure" => {
                    return Err(Failure::Permanent(
                        "the provider could not deliver it: check the address or number".into(),
                    ))
                }
                "delivered" => outcome = Some(Accepted::Delivered(n.id)),
                _ if outcome.is_none() => outcome = Some(Accepted::Sent(n.id)),
                _ => {}
            }
        }
        Ok(outcome)
    }
}

impl Courier for NotifyCourier {
    fn deliver(&self, m: &OutboundMessage) -> Result<Accepted, Failure> {
        if m.tries > 1 {
            if let Some(accepted) = self.already_sent(m)? {
                return Ok(accepted);
            }
        }
        let c = &self.config;
        let personalisation = serde_json::json!({ "subject": m.subject, "body": m.body });
        let reference = m.id.to_string();
        let (path, body) = match m.channel {
            Channel::Email => (
                "email",
                serde_json::json!({ "email_address": m.recipient, "template_id": c.email_template, "personalisation": personalisation, "reference": reference }),
            ),
            Channel::Sms => (
                "sms",
                serde_json::json!({ "phone_number": m.recipient, "template_id": c.sms_template, "personalisation": personalisation, "reference": reference }),
            ),
            Channel::Letter => {
                let mut p = personalisation;
                for (i, line) in m.recipient.lines().take(7).enumerate() {
                    p[format!("address_line_{}", i + 1)] = line.into();
                }
                (
                    "letter",
                    serde_json::json!({ "template_id": c.letter_template, "personalisation": p, "reference": reference }),
                )
            }
        };
        let url = format!("{}/v2/notifications/{path}", c.base_url);
        let mut res = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token()?))
            .send_json(&body)
            .map_err(|e| Failure::Temporary(format!("Notify did not answer: {e}")))?;
        let status = res.status().as_u16();
        match status {
            200..=299 => {
                let created: Created = res.body_mut().read_json().map_err(|e| Failure::Temporary(e.to_string()))?;
                Ok(Accepted::Sent(created.id))
            }
            429 => Err(Failure::Temporary("Notify rate limit (429)".into())),
            500..=599 => Err(Failure::Temporary(format!("Notify error {status}"))),
            _ => {
                let text = res.body_mut().read_to_string().unwrap_or_default();
                Err(Failure::Permanent(format!(
                    "Notify refused the message ({status}): {}",
                    text.chars().take(300).collect::<String>()
                )))
            }
        }
    }
}
