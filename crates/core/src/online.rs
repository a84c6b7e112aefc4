//! Patients' own sign-in to caldicott's patient services: linkage credentials issued at the
//! practice after an identity check, local accounts made with them, and patient sessions.

use crate::access::IdentityLevel;
use crate::ids::{AccountId, PatientId, SessionId};
use crate::staff::{SESSION_IDLE, SESSION_LIFETIME};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Linkage credentials not used within this time stop working.
pub const LINKAGE_VALIDITY: Duration = Duration::days(90);
pub const PATIENT_SESSION_LIFETIME: Duration = SESSION_LIFETIME;
pub const PATIENT_SESSION_IDLE: Duration = SESSION_IDLE;

/// Linkage credentials (Account ID, ODS code, Linkage Key) issued on a letter after staff check
/// a patient's identity in person (§6). The key itself is kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkageKey {
    /// The Account ID printed on the letter (the look-up key).
    pub account_ref: String,
    pub holder: PatientId,
    #[serde(skip)]
    pub key_hash: [u8; 32],
    /// The identity level the check at the practice established.
    pub identity: IdentityLevel,
    pub issued_at: DateTime<Utc>,
    pub issued_by: String,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// A letter for a patient who forgot their password: it sets a new password for this
    /// existing local account instead of making a new one (`None`: a sign-up letter).
    #[serde(default)]
    pub resets: Option<AccountId>,
}

impl LinkageKey {
    /// Usable to sign up: not used, not revoked, not older than [`LINKAGE_VALIDITY`].
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && now - self.issued_at < LINKAGE_VALIDITY
    }
}

/// A local patient login: a username and password for one online account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientLogin {
    pub account: AccountId,
    pub username: String,
    pub password_hash: String,
    pub failed_sign_ins: u32,
    pub locked_until: Option<DateTime<Utc>>,
    /// An authenticator-app secret, when the patient chose two-step sign-in.
    pub totp_secret: Option<String>,
    /// The patient has entered a code from it: sign-in now asks for one.
    pub totp_confirmed: bool,
}

/// A signed-in patient (or proxy) session. The browser holds the secret; the store its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientSession {
    pub id: SessionId,
    pub account: AccountId,
    pub secret_hash: [u8; 32],
    pub csrf_token: String,
    /// Waiting for the authenticator code, or signed in.
    pub stage: crate::staff::SessionStage,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl PatientSession {
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.ended_at.is_none() && now < self.expires_at && now - self.last_seen_at < PATIENT_SESSION_IDLE
    }
}

/// A third-party patient-facing app registered with the practice (R21).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientApp {
    pub id: crate::ids::AppId,
    pub name: String,
    pub supplier: String,
    pub client_id: String,
    #[serde(skip)]
    pub client_secret_hash: [u8; 32],
    /// The app's own client id at NHS login, when it may link with its users' P9 identity.
    pub nhs_login_client_id: Option<String>,
    /// The public key (PEM, or a JWK Set) its client assertions are signed with, when it may
    /// exchange its users' NHS login ID tokens for access tokens (RFC 8693; NHS England's API
    /// platform for the NHS App). Needs `nhs_login_client_id`: the ID tokens' audience.
    pub exchange_key: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// How an app proved it acts for the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkVia {
    LinkageKey,
    NhsLogin,
}

impl LinkVia {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinkageKey => "linkage_key",
            Self::NhsLogin => "nhs_login",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "linkage_key" => Some(Self::LinkageKey),
            "nhs_login" => Some(Self::NhsLogin),
            _ => None,
        }
    }
}

/// An app's link to a patient's record: it gives the app the patient's own online access,
/// never more. Regenerating the linkage key it was made with, or resetting third-party links,
/// revokes it at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLink {
    pub id: crate::ids::AppLinkId,
    pub app: crate::ids::AppId,
    pub patient: PatientId,
    pub via: LinkVia,
    /// The Account ID of the linkage key it was made with.
    pub linkage_ref: Option<String>,
    #[serde(skip)]
    pub token_hash: [u8; 32],
    pub linked_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_why: Option<String>,
}

impl LinkageKey {
    /// Usable to link an app: the current key (not revoked), whether or not it made an account.
    pub fn links_apps(&self) -> bool {
        self.revoked_at.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + min * 60, 0).unwrap_or_default()
    }

    #[test]
    fn linkage_keys_work_once_and_expire() {
        let k = LinkageKey {
            account_ref: "ABC".into(),
            holder: PatientId::from_uuid(Uuid::from_u128(1)),
            key_hash: [0; 32],
            identity: IdentityLevel::P9,
            issued_at: t(0),
            issued_by: "x".into(),
            used_at: None,
            revoked_at: None,
            resets: None,
        };
        assert!(k.is_usable_at(t(1)));
        assert!(!k.is_usable_at(t(0) + LINKAGE_VALIDITY));
        assert!(!LinkageKey { used_at: Some(t(1)), ..k.clone() }.is_usable_at(t(2)));
        assert!(!LinkageKey { revoked_at: Some(t(1)), ..k }.is_usable_at(t(2)));
    }
}
