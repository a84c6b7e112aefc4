//! Email by SMTP. Configured with `CALDICOTT_SMTP_URL` (for example
//! `smtp://user:password@mail.example.nhs.uk:587?tls=required`, or `smtp://127.0.0.1:1025` for a
//! local relay) and `CALDICOTT_SMTP_FROM` (the practice's sending address).
//!
//! SMTP cannot be asked whether a message arrived, so each email carries one `Message-ID`
//! (`<message id@sender's domain>`, no personal data), fixed and recorded in the outbox before
//! its first try and reused on every retry: a try that reached the server though its answer did
//! not come back is sent again with the same id, and the receiving side drops the repeat.
//!
//! Each email is a complete MIME message (`MIME-Version: 1.0`, `multipart/alternative`): the
//! text as written in a `text/plain` part, then the same text, HTML-escaped, in a `text/html`
//! part, both UTF-8.

use caldicott_app::outbox::{Accepted, Courier, Failure};
use caldicott_core::messages::{Channel, OutboundMessage};
use lettre::message::MultiPart;
use lettre::transport::smtp::SmtpTransport;
use lettre::{Message, Transport};

pub struct SmtpCourier {
    transport: SmtpTransport,
    from: lettre::message::Mailbox,
}

impl SmtpCourier {
    /// From the environment; `None` when SMTP is not configured.
    pub fn from_env() -> Option<Result<Self, String>> {
        let url = std::env::var("CALDICOTT_SMTP_URL").ok().filter(|u| !u.is_empty())?;
        let from = std::env::var("CALDICOTT_SMTP_FROM").unwrap_or_default();
        Some(Self::new(&url, &from))
    }

    pub fn new(url: &str, from: &str) -> Result<Self, String> {
        Self::with_timeout(url, from, std::time::Duration::from_secs(15))
    }

    /// A courier that gives up waiting for the mail server after `timeout`.
    pub fn with_timeout(url: &str, from: &str, timeout: std::time::Duration) -> Result<Self, String> {
        let transport = SmtpTransport::from_url(url)
            .map_err(|e| format!("CALDICOTT_SMTP_URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        let from = from.parse().map_err(|e| format!("CALDICOTT_SMTP_FROM {from:?}: {e}"))?;
        Ok(Self { transport, from })
    }
}

impl Courier for SmtpCourier {
    fn deliver(&self, m: &OutboundMessage) -> Result<Accepted, Failure> {
        if m.channel != Channel::Email {
            return Err(Failure::Permanent(format!("SMTP sends email, not {}", m.channel.as_str())));
        }
        let to = m.recipient.parse().map_err(|e| Failure::Permanent(format!("the email address is not valid: {e}")))?;
        let message_id = m.email_message_id.clone().unwrap_or_else(|| self.message_id_for(m));
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(message_id))
            .multipart(MultiPart::alternative_plain_html(m.body.clone(), html_body(&m.subject, &m.body)))
            .map_err(|e| Failure::Permanent(format!("building the email: {e}")))?;
        match self.transport.send(&email) {
            Ok(response) => Ok(Accepted::Delivered(format!("smtp-{}-{}", m.id, response.code()))),
            Err(e) if e.is_permanent() => Err(Failure::Permanent(format!("the mail server refused it: {e}"))),
            Err(e) => Err(Failure::Temporary(format!("the mail server did not take it: {e}"))),
        }
    }

    fn email_message_id(&self, m: &OutboundMessage) -> Option<String> {
        Some(self.message_id_for(m))
    }
}

/// Text escaped for HTML: nothing in a message becomes markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML part of an email: the same text, escaped, a paragraph per blank-line-separated block
/// and a line break per line.
pub fn html_body(subject: &str, body: &str) -> String {
    let paragraphs: String = body
        .replace("\r\n", "\n")
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>\n", p.lines().map(escape).collect::<Vec<_>>().join("<br>\n")))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n</head>\n<body>\n{paragraphs}</body>\n</html>\n",
        escape(subject)
    )
}

impl SmtpCourier {
    fn message_id_for(&self, m: &OutboundMessage) -> String {
        format!("<{}@{}>", m.id, self.from.email.domain())
    }
}

/// Sends each channel the right way: email by SMTP when it is set up, otherwise by Notify; text
/// messages and letters by Notify; with neither, to the log.
pub struct Couriers {
    pub smtp: Option<SmtpCourier>,
    pub notify: Option<crate::notify::NotifyCourier>,
}

impl Courier for Couriers {
    fn deliver(&self, m: &OutboundMessage) -> Result<Accepted, Failure> {
        match (m.channel, &self.smtp, &self.notify) {
            (Channel::Email, Some(smtp), _) => smtp.deliver(m),
            (_, _, Some(notify)) => notify.deliver(m),
            _ => caldicott_app::outbox::LogCourier.deliver(m),
        }
    }

    fn email_message_id(&self, m: &OutboundMessage) -> Option<String> {
        match (m.channel, &self.smtp) {
            (Channel::Email, Some(smtp)) => smtp.email_message_id(m),
            _ => None,
        }
    }
}
