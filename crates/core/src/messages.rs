//! Outbound messages: practice-editable presets with placeholders, the choice of channel for a
//! patient (R23, R38–R40), and SMS fragment counting (R42).

use crate::patient::PreferredContactMethod;
use serde::{Deserialize, Serialize};

/// The placeholders a preset may use, and what each stands for.
pub const PLACEHOLDERS: [(&str, &str); 10] = [
    ("initials", "the patient's initials, for example J.S."),
    ("patient_given_name", "the patient's first name"),
    ("organisation_name", "the practice's name"),
    ("organisation_main_telephone", "the practice's main telephone number"),
    ("appointment_date", "the appointment's date, for example Monday 7 December 2026"),
    ("appointment_time", "the appointment's time, for example 09:30"),
    ("appointment_clinician", "who the appointment is with"),
    ("appointment_location", "where the appointment is"),
    ("app_name", "the app that linked to the record, for example NHS App (the latest link, for a preset sent by hand)"),
    ("linked_at", "when the app linked, for example 5 December 2026 at 14:05 (UK time)"),
];

/// What `<app_name>` and `<linked_at>` say when the patient has no linked app.
pub const NO_APP_NAME: &str = "an app such as the NHS App";
pub const NO_LINKED_AT: &str = "a recent date";

/// The placeholders found in a text, in order, and any text between `<` and `>` that is not one.
fn scan(text: &str) -> (Vec<&str>, Vec<String>) {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let name = &after[..close];
        if PLACEHOLDERS.iter().any(|(p, _)| *p == name) {
            known.push(name);
        } else if !name.is_empty() && name.len() <= 40 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            unknown.push(format!("<{name}>"));
        }
        rest = &after[close + 1..];
    }
    (known, unknown)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresetError {
    #[error("give the preset a name")]
    NoName,
    #[error("write the message")]
    NoBody,
    #[error("the message is too long ({0} characters; at most 918, the longest SMS)")]
    TooLong(usize),
    #[error("these placeholders are not known: {}. Use one of {}", .0.join(", "), known_list())]
    UnknownPlaceholders(Vec<String>),
}

fn known_list() -> String {
    PLACEHOLDERS.iter().map(|(p, _)| format!("<{p}>")).collect::<Vec<_>>().join(", ")
}

/// A message preset, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    pub body: String,
}

impl Preset {
    /// Checks a preset as typed: a name, a body of at most one long SMS, known placeholders only.
    pub fn new(name: &str, body: &str) -> Result<Self, PresetError> {
        let name = name.trim();
        let body = body.trim();
        if name.is_empty() {
            return Err(PresetError::NoName);
        }
        if body.is_empty() {
            return Err(PresetError::NoBody);
        }
        let len = body.chars().count();
        if len > 918 {
            return Err(PresetError::TooLong(len));
        }
        let (_, unknown) = scan(body);
        if !unknown.is_empty() {
            return Err(PresetError::UnknownPlaceholders(unknown));
        }
        Ok(Self { name: name.to_owned(), body: body.to_owned() })
    }

    /// The message with every placeholder filled; a placeholder without a value becomes empty.
    pub fn render(&self, values: &[(&str, String)]) -> String {
        let mut out = self.body.clone();
        for (name, _) in PLACEHOLDERS {
            let value = values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).unwrap_or("");
            out = out.replace(&format!("<{name}>"), value);
        }
        out
    }
}

/// The safety-net message sent when an online service is linked to a record (R23), in
/// caldicott's own words, with the same placeholders as the ICB's preset and the app's name and
/// when it linked, so the patient can tell their own link from someone else's.
pub const SAFETY_NET_NAME: &str = "Online services linked: security safety net";
pub const SAFETY_NET_BODY: &str =
    "<initials>, your GP record at <organisation_name> was connected to <app_name> on <linked_at>. \
If you did not do this, please tell us straight away on <organisation_main_telephone>.";

/// Initials as a safety-net message uses them ("J.S."): enough to address the person, too
/// little to identify them to someone else reading the phone.
pub fn initials(given: &str, family: &str) -> String {
    [given, family].iter().filter_map(|n| n.trim().chars().next()).map(|c| format!("{}.", c.to_uppercase())).collect()
}

/// How a message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Letter,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Letter => "letter",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            "letter" => Some(Self::Letter),
            _ => None,
        }
    }
}

/// What the practice knows about reaching a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach<'a> {
    pub preferred: PreferredContactMethod,
    pub email: Option<&'a str>,
    pub mobile: Option<&'a str>,
    /// The most recent SMS consent code is a dissent (R40).
    pub sms_dissent: bool,
}

pub const NO_PREFERENCE: &str = "No SMS or email preference recorded: contact the patient manually";
/// Text messages are preferred and a mobile number is on record, but the latest SMS consent code
/// is a dissent (R40).
pub const SMS_DISSENT_REASON: &str =
    "The patient has recorded a dissent from text messages (SMS dissent code), so no text \
message is sent automatically: contact the patient another way";
/// Sending anyway: no email address, and the only number is one the patient has dissented from
/// texts to (R40).
pub const SMS_DISSENT_NO_EMAIL: &str = "No email address on record, and the patient has recorded a dissent from text \
messages (SMS dissent code): contact the patient another way";

/// The channel for an automated message (R23): the recorded preference, when it is SMS or email
/// with a matching number or address and no SMS dissent. Otherwise the error staff see.
pub fn automatic_channel(r: &Reach) -> Result<Channel, &'static str> {
    match r.preferred {
        PreferredContactMethod::Email if r.email.is_some() => Ok(Channel::Email),
        PreferredContactMethod::Sms if r.mobile.is_some() && !r.sms_dissent => Ok(Channel::Sms),
        PreferredContactMethod::Sms if r.mobile.is_some() => Err(SMS_DISSENT_REASON),
        _ => Err(NO_PREFERENCE),
    }
}

/// The channel when staff choose to send anyway, without a usable preference: email before SMS
/// (email is free, SMS is not), never SMS against a dissent.
pub fn anyway_channel(r: &Reach) -> Option<Channel> {
    if r.email.is_some() {
        Some(Channel::Email)
    } else if r.mobile.is_some() && !r.sms_dissent {
        Some(Channel::Sms)
    } else {
        None
    }
}

/// Characters of the GSM 03.38 basic set (one septet each).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Characters of the GSM extension table (two septets each).
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

/// How many SMS fragments a text takes, and whether it fits the GSM alphabet (R42: 160, 306,
/// 459, 612, 765 and 918 characters give 1 to 6 fragments; other text goes as UCS-2, 70 and
/// then 67 a fragment).
pub fn sms_fragments(text: &str) -> (u32, bool) {
    let mut septets = 0usize;
    let mut gsm = true;
    for c in text.chars() {
        if GSM_BASIC.contains(c) {
            septets += 1;
        } else if GSM_EXTENDED.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (units, single, multi) = if gsm { (septets, 160, 153) } else { (text.encode_utf16().count(), 70, 67) };
    let fragments = if units <= single { 1 } else { units.div_ceil(multi) };
    (u32::try_from(fragments).unwrap_or(u32::MAX), gsm)
}

/// Where an outbound message is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for the worker (first try, or a retry after a temporary failure).
    Queued,
    /// Claimed by the worker; if the worker dies, the claim runs out and it is tried again.
    Sending,
    /// A letter waiting for the practice to print and post it (no letter provider).
    Printing,
    /// Accepted by the provider (or posted by the practice); a delivery report may follow.
    Sent,
    Delivered,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Printing => "printing",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Sending, Self::Printing, Self::Sent, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub id: crate::ids::MessageId,
    pub patient: crate::ids::PatientId,
    /// Why it was sent ("safety_net", "manual" …), for the communications log.
    pub purpose: String,
    pub channel: Channel,
    /// The email address, mobile number or postal address.
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// One key per message: a provider that honours it never delivers it twice.
    pub idempotency_key: String,
    pub status: MessageStatus,
    pub attempts: u32,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub fragments: u32,
    /// Cost in hundredths of a penny (SMS fragments at the configured price; email is free).
    pub cost_hundredths: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The alert task this message answers (a safety net, R23): if the message fails for good,
    /// the task opens again.
    pub task: Option<crate::ids::TaskId>,
    /// Every try ever started, never reset by "Send again". A message tried before may have
    /// reached the provider, so it is looked up there before it is sent again.
    pub tries: u32,
    /// The `Message-ID` an email carries: fixed before its first try and the same on every
    /// retry, so a receiving server can drop a repeat.
    pub email_message_id: Option<String>,
}

/// What an alert task says when its safety-net message could not reach the patient (R23).
pub fn undelivered_reason(channel: Channel, error: &str) -> String {
    let what = match channel {
        Channel::Email => "email",
        Channel::Sms => "text message",
        Channel::Letter => "letter",
    };
    format!(
        "Safety-net {what} not delivered: {error}. Contact the patient another way, or correct the \
         contact details and action this alert again."
    )
}

/// Tries before a message is given up as failed.
pub const MAX_ATTEMPTS: u32 = 8;

/// The wait before try `attempts + 1`: 5 s, 10 s, 20 s … at most an hour.
pub fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds((5i64 << attempts.min(10)).min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ICB's wording, as quoted in the practice guidance the project started from.
    const ICB: &str = "<initials>, a new online service was recently linked to your GP records, this may have been the NHS App or another third-party GP online services solution. If this wasn't you, let us know: <organisation_main_telephone>";

    fn values() -> Vec<(&'static str, String)> {
        vec![
            ("initials", initials("jane", "smith")),
            ("organisation_name", "Riverside Medical Practice".into()),
            ("organisation_main_telephone", "01632 960123".into()),
        ]
    }

    #[test]
    fn the_icb_preset_can_be_pasted_in_unchanged() {
        let p = Preset::new("ICB safety net", ICB).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.render(&values()),
            "J.S., a new online service was recently linked to your GP records, this may have been the NHS App or another third-party GP online services solution. If this wasn't you, let us know: 01632 960123"
        );
        let ours = Preset::new(SAFETY_NET_NAME, SAFETY_NET_BODY).unwrap_or_else(|e| panic!("{e}"));
        assert!(ours.render(&values()).starts_with("J.S., your GP record at Riverside Medical Practice"));
        assert!(!ours.render(&values()).contains('<'));
    }

    #[test]
    fn unknown_placeholders_and_bad_presets_are_refused() {
        assert_eq!(
            Preset::new("x", "Hello <patient_name>, call <organisation_main_telephone>"),
            Err(PresetError::UnknownPlaceholders(vec!["<patient_name>".into()]))
        );
        assert_eq!(Preset::new(" ", "x"), Err(PresetError::NoName));
        assert_eq!(Preset::new("x", " "), Err(PresetError::NoBody));
        assert_eq!(Preset::new("x", &"a".repeat(919)), Err(PresetError::TooLong(919)));
        // Angle brackets that are not placeholder-shaped are just text.
        assert!(Preset::new("x", "Blood pressure < 140 > target? <initials>").is_ok());
    }

    #[test]
    fn sms_fragments_follow_r42() {
        // R42
        for (len, n) in
            [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (612, 4), (765, 5), (918, 6), (919, 7)]
        {
            assert_eq!(sms_fragments(&"a".repeat(len)), (n, true), "{len}");
        }
        assert_eq!(sms_fragments(&"€".repeat(80)), (1, true), "extension characters count twice");
        assert_eq!(sms_fragments(&"€".repeat(81)), (2, true));
        assert_eq!(sms_fragments(&"ł".repeat(70)), (1, false));
        assert_eq!(sms_fragments(&"ł".repeat(71)), (2, false));
    }

    #[test]
    fn the_channel_follows_the_preference_and_never_sms_against_dissent() {
        // R23, R38–R40
        let base = Reach {
            preferred: PreferredContactMethod::Sms,
            email: Some("a@example.com"),
            mobile: Some("07700 900123"),
            sms_dissent: false,
        };
        assert_eq!(automatic_channel(&base), Ok(Channel::Sms));
        assert_eq!(automatic_channel(&Reach { sms_dissent: true, ..base.clone() }), Err(SMS_DISSENT_REASON));
        assert_eq!(automatic_channel(&Reach { mobile: None, ..base.clone() }), Err(NO_PREFERENCE));
        let email = Reach { preferred: PreferredContactMethod::Email, ..base.clone() };
        assert_eq!(automatic_channel(&email), Ok(Channel::Email));
        assert_eq!(automatic_channel(&Reach { email: None, ..email }), Err(NO_PREFERENCE));
        let none = Reach { preferred: PreferredContactMethod::Unknown, ..base.clone() };
        assert_eq!(automatic_channel(&none), Err(NO_PREFERENCE));
        assert_eq!(anyway_channel(&none), Some(Channel::Email), "email before SMS");
        assert_eq!(anyway_channel(&Reach { email: None, ..none.clone() }), Some(Channel::Sms));
        assert_eq!(anyway_channel(&Reach { email: None, sms_dissent: true, ..none }), None);
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(backoff(0).num_seconds(), 5);
        assert_eq!(backoff(3).num_seconds(), 40);
        assert_eq!(backoff(30).num_seconds(), 3600);
    }

    #[test]
    fn initials_are_short() {
        assert_eq!(initials("Siân", "o'Neill"), "S.O.");
        assert_eq!(initials("", "Smith"), "S.");
    }
}
