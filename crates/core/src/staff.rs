//! Practice staff, their roles, and the API tokens issued to them.

use crate::ids::{PracticeId, SessionId, StaffId, TokenId};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Receptionist,
    Clinician,
    PracticeManager,
    Administrator,
    /// An analyst of the integrated care board: sees figures across every practice of the
    /// service, counts only, never a patient.
    IcbAnalyst,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Self::Receptionist, Self::Clinician, Self::PracticeManager, Self::Administrator, Self::IcbAnalyst];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receptionist => "receptionist",
            Self::Clinician => "clinician",
            Self::PracticeManager => "practice_manager",
            Self::Administrator => "administrator",
            Self::IcbAnalyst => "icb_analyst",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::Receptionist => "Receptionist",
            Self::Clinician => "Clinician",
            Self::PracticeManager => "Practice manager",
            Self::Administrator => "Administrator",
            Self::IcbAnalyst => "ICB analyst",
        }
    }
    /// Whether the role works with the practice's patients (reads records, books, files).
    /// Administrators run the service and ICB analysts see counts; neither opens a record.
    /// The permission table's `OpenRecords` row (`crate::permissions`).
    pub fn works_with_patients(self) -> bool {
        crate::permissions::Permission::OpenRecords.allows(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMember {
    pub id: StaffId,
    pub practice: PracticeId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// An argon2id PHC string; never the password.
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub active: bool,
    /// Their SDS user id (the identity on their NHS smartcard), when the practice has recorded
    /// it: GP Connect names a practitioner by it, and other care settings find them by it.
    pub sds_user_id: Option<String>,
    #[serde(skip)]
    pub sign_in: SignInState,
}

/// Checks an SDS user id as typed: 3 to 20 letters and digits (spaces ignored), kept upper-case.
/// An id on a smartcard is twelve digits; older ones and test environments use letters too.
pub fn parse_sds_user_id(input: &str) -> Result<String, &'static str> {
    let id: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if (3..=20).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id.to_ascii_uppercase())
    } else {
        Err("An SDS user ID is 3 to 20 letters and digits, as on the person's NHS smartcard")
    }
}

/// Sign-in protection for one member of staff.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignInState {
    /// The base32 TOTP secret: shown at enrolment, in use once confirmed with a valid code.
    pub totp_secret: Option<String>,
    pub totp_confirmed: bool,
    /// The lock-out of earlier versions, kept as stored; nothing locks an account now (wrong
    /// tries are counted per account and address in `credential_tries`, see
    /// [`crate::credentials`]).
    pub failed: i64,
    pub locked_until: Option<DateTime<Utc>>,
}

/// A session ends after this long without a request…
pub const SESSION_IDLE: Duration = Duration::minutes(30);
/// …and in any case this long after sign-in.
pub const SESSION_LIFETIME: Duration = Duration::hours(12);

impl SignInState {
    /// The state after a completed sign-in (clears the stored lock-out of earlier versions).
    pub fn after_success(&self) -> SignInState {
        SignInState {
            totp_secret: self.totp_secret.clone(),
            totp_confirmed: self.totp_confirmed,
            failed: 0,
            locked_until: None,
        }
    }
}

/// How far a session has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// The password was right; the second factor is still to come (or to be enrolled).
    SecondFactor,
    SignedIn,
}

impl SessionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecondFactor => "second_factor",
            Self::SignedIn => "signed_in",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "second_factor" => Some(Self::SecondFactor),
            "signed_in" => Some(Self::SignedIn),
            _ => None,
        }
    }
}

/// A staff session held on the server; the browser holds only its id and a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    pub id: SessionId,
    pub practice: PracticeId,
    pub staff: StaffId,
    pub secret_hash: [u8; 32],
    /// Sent back with every form, to prove the form came from this session's pages.
    pub csrf_token: String,
    pub stage: SessionStage,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl StaffSession {
    /// Live: not ended, not past its lifetime, and used within the idle limit.
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.ended_at.is_none() && now < self.expires_at && now - self.last_seen_at < SESSION_IDLE
    }
}

/// A one-time code an administrator made so that a member of staff can set a new password
/// (ASVS 2.5): kept only as its SHA-256, works once, until `expires_at`. Making it ends the old
/// password and every session of the member; the second factor is not touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    pub staff: StaffId,
    pub code_hash: [u8; 32],
    pub made_by: StaffId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

impl PasswordReset {
    /// Usable: not used yet and not expired.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }
}

/// A bearer token issued to a member of staff. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: TokenId,
    pub practice: PracticeId,
    pub staff: StaffId,
    pub label: String,
    pub secret_hash: [u8; 32],
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// Usernames are 3–64 characters of letters, digits, dots, hyphens and underscores, lower-cased.
pub fn normalise_username(s: &str) -> Option<String> {
    let u = s.trim().to_ascii_lowercase();
    ((3..=64).contains(&u.len()) && u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))).then_some(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap() + Duration::minutes(min)
    }

    #[test]
    fn sessions_end_when_idle_expired_or_ended() {
        let s = StaffSession {
            id: SessionId::from_uuid(uuid::Uuid::from_u128(1)),
            practice: PracticeId::from_uuid(uuid::Uuid::from_u128(2)),
            staff: StaffId::from_uuid(uuid::Uuid::from_u128(3)),
            secret_hash: [0; 32],
            csrf_token: "x".into(),
            stage: SessionStage::SignedIn,
            created_at: t(0),
            last_seen_at: t(0),
            expires_at: t(0) + SESSION_LIFETIME,
            ended_at: None,
        };
        assert!(s.is_live_at(t(29)));
        assert!(!s.is_live_at(t(30)));
        let busy = StaffSession { last_seen_at: t(12 * 60 - 1), ..s.clone() };
        assert!(!busy.is_live_at(t(12 * 60)));
        let ended = StaffSession { ended_at: Some(t(1)), ..s };
        assert!(!ended.is_live_at(t(2)));
    }
}
