//! Online access settings for a patient, the proxies who act for them, and who is looking.

use crate::ids::{PatientId, ProxyLinkId};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Record access levels, ordered None < Summary < Detailed < Documents < Full (R13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    None,
    /// Demographics, medications, allergies.
    Summary,
    /// Summary plus all coded entries, immunisations, problems, results.
    Detailed,
    /// Detailed plus documents.
    Documents,
    /// Documents plus free text.
    Full,
}

impl AccessLevel {
    pub const ALL: [AccessLevel; 5] = [Self::None, Self::Summary, Self::Detailed, Self::Documents, Self::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Summary => "summary",
            Self::Detailed => "detailed",
            Self::Documents => "documents",
            Self::Full => "full",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::None => "No record access",
            Self::Summary => "Summary",
            Self::Detailed => "Detailed coded record",
            Self::Documents => "Documents",
            Self::Full => "Full record",
        }
    }
}

/// From when a grant reaches back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", content = "date", rename_all = "snake_case")]
pub enum RecordFrom {
    /// The whole record, however old (historic access).
    Beginning,
    /// Entries entered on or after this date.
    Date(NaiveDate),
}

/// A level given to a patient by hand, with its own start date (R13). Grants made before the
/// patient's current registration began are void (R6, R7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelGrant {
    pub level: AccessLevel,
    pub from: RecordFrom,
    pub granted_on: NaiveDate,
    pub granted_by: String,
}

/// A patient's own level, set by hand (R13, D10). It replaces the automatic level in both
/// directions: a patient set to Summary sees no consultations even where automatic access would
/// give Full, and one set to None sees no record at all. The grants at or below the level say
/// from when each level reaches. Set before the patient's current registration began, it is
/// void (R6, R7) and automatic access applies again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnLevel {
    pub level: AccessLevel,
    pub set_on: NaiveDate,
    pub set_by: String,
}

/// A patient's own online access settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OnlineAccessSettings {
    /// Levels granted by hand, each with its start date (R13). Without an own level they add to
    /// automatic access (historic access, and the summary access many had before it began);
    /// with one, they are the whole of the patient's access up to that level.
    pub grants: Vec<LevelGrant>,
    /// The patient asked not to have automatic prospective access (R1).
    pub opted_out: bool,
    /// The patient's own level, when staff set one; `None`: the practice's automatic access.
    #[serde(default)]
    pub own_level: Option<OwnLevel>,
    /// Set by a transfer-in (to its UK date) and cleared when staff next set the patient's level:
    /// until then the levels granted by hand do not reach the entries it brought (R7).
    #[serde(default)]
    pub transfer_review_pending: Option<NaiveDate>,
}

/// NHS login identity proofing levels (R22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IdentityLevel {
    P0,
    P5,
    P9,
}

impl IdentityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P0 => "P0",
            Self::P5 => "P5",
            Self::P9 => "P9",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "P0" => Some(Self::P0),
            "P5" => Some(Self::P5),
            "P9" => Some(Self::P9),
            _ => None,
        }
    }
}

/// The legal basis of a proxy link (R17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyBasis {
    Consent,
    LastingPowerOfAttorney,
    CourtAppointedDeputy,
    BestInterests,
    ChildNotCompetent,
}

impl ProxyBasis {
    pub const ALL: [ProxyBasis; 5] = [
        Self::Consent,
        Self::LastingPowerOfAttorney,
        Self::CourtAppointedDeputy,
        Self::BestInterests,
        Self::ChildNotCompetent,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::LastingPowerOfAttorney => "lasting_power_of_attorney",
            Self::CourtAppointedDeputy => "court_appointed_deputy",
            Self::BestInterests => "best_interests",
            Self::ChildNotCompetent => "child_not_competent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// What a proxy may do for the patient (R15). A proxy never sees the patient's messages and
/// never changes their nominated pharmacy (R19), so there is no switch for either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyScope {
    pub appointments: bool,
    pub prescriptions: bool,
    pub demographics: bool,
    pub record: AccessLevel,
    pub record_from: RecordFrom,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProxyStatus {
    Active,
    /// Suspended by staff, pending review.
    Suspended {
        since: NaiveDate,
        reason: String,
    },
    /// Access taken away (R20: the proxy's online account itself is kept).
    Revoked {
        on: NaiveDate,
        reason: String,
    },
    /// The request for access was refused; kept as a record of the decision (R17).
    Refused {
        on: NaiveDate,
        reason: String,
    },
}

/// One person acting online for one patient, with their own credentials (R14) and permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyLink {
    pub id: ProxyLinkId,
    pub patient: PatientId,
    /// The proxy is registered at the same practice (R19).
    pub proxy: PatientId,
    pub relationship: String,
    pub basis: ProxyBasis,
    pub scope: ProxyScope,
    pub granted_on: NaiveDate,
    pub decided_by: String,
    pub ends_on: Option<NaiveDate>,
    pub status: ProxyStatus,
}

/// Who is looking at a record online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer<'a> {
    /// The patient, through their own online account (`None`: they have no account, as shown to
    /// staff previewing what the patient would see).
    Patient { identity: Option<IdentityLevel> },
    /// A proxy, through their own account, acting under one link.
    Proxy { link: &'a ProxyLink, identity: Option<IdentityLevel> },
}

/// How an online account reaches the practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// NHS App or NHS website, through NHS login.
    NhsLogin,
    /// A third-party app linked with linkage credentials.
    LinkedApp,
    /// A local caldicott account (demo, or practices without an external provider).
    Local,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NhsLogin => "nhs_login",
            Self::LinkedApp => "linked_app",
            Self::Local => "local",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::NhsLogin, Self::LinkedApp, Self::Local].into_iter().find(|k| k.as_str() == s)
    }
}

/// A person's online account at this practice: a patient's own, or a proxy's (R14: a proxy always
/// has an account of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineAccount {
    pub id: crate::ids::AccountId,
    /// The registered person who holds the account.
    pub holder: PatientId,
    pub kind: AccountKind,
    pub identity: IdentityLevel,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
