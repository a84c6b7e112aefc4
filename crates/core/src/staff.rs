//! Practice staff, their roles, and the API tokens issued to them.

use crate::ids::{PracticeId, StaffId, TokenId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Receptionist,
    Clinician,
    PracticeManager,
    Administrator,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Receptionist, Self::Clinician, Self::PracticeManager, Self::Administrator];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receptionist => "receptionist",
            Self::Clinician => "clinician",
            Self::PracticeManager => "practice_manager",
            Self::Administrator => "administrator",
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
        }
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
