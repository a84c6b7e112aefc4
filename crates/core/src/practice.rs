//! A practice and its online-services settings.

use crate::access::AccessLevel;
use crate::ids::PracticeId;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An ODS organisation code, such as a GP practice's `A81001`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdsCodeError {
    #[error("an ODS code is 3 to 10 letters and digits; \"{0}\" is not")]
    Invalid(String),
}

impl OdsCode {
    /// Accepts 3–10 ASCII letters and digits, and stores them upper-case.
    pub fn parse(input: &str) -> Result<Self, OdsCodeError> {
        let s = input.trim();
        if (3..=10).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()) {
            Ok(Self(s.to_ascii_uppercase()))
        } else {
            Err(OdsCodeError::Invalid(input.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OdsCode({})", self.0)
    }
}
impl TryFrom<String> for OdsCode {
    type Error = OdsCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<OdsCode> for String {
    fn from(c: OdsCode) -> String {
        c.0
    }
}

/// A postal address; the postcode is kept apart so that search can use it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PostalAddress {
    pub lines: Vec<String>,
    pub postcode: String,
}

impl fmt::Display for PostalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            write!(f, "{line}, ")?;
        }
        f.write_str(&self.postcode)
    }
}

/// The age, from 11 to 13, at which a child's proxy links are suspended for review (R16, D7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct ProxyReviewAge(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the proxy review age must be 11, 12 or 13, not {0}")]
pub struct ProxyReviewAgeError(pub u8);

impl ProxyReviewAge {
    pub fn new(age: u8) -> Result<Self, ProxyReviewAgeError> {
        if (11..=13).contains(&age) {
            Ok(Self(age))
        } else {
            Err(ProxyReviewAgeError(age))
        }
    }
    pub fn years(self) -> u8 {
        self.0
    }
}
impl Default for ProxyReviewAge {
    fn default() -> Self {
        Self(11)
    }
}
impl TryFrom<u8> for ProxyReviewAge {
    type Error = ProxyReviewAgeError;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}
impl From<ProxyReviewAge> for u8 {
    fn from(v: ProxyReviewAge) -> u8 {
        v.0
    }
}

/// An Accredited System ID: the Spine's number for one system at one organisation (digits,
/// at most 12).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Asid(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an ASID is a number of up to 12 digits, such as 200000000359")]
pub struct AsidError;

impl Asid {
    pub fn parse(s: &str) -> Result<Self, AsidError> {
        let s = s.trim();
        if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AsidError);
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Asid {
    type Error = AsidError;
    fn try_from(s: String) -> Result<Self, AsidError> {
        Self::parse(&s)
    }
}
impl From<Asid> for String {
    fn from(a: Asid) -> String {
        a.0
    }
}

/// The practice's online-services settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineServicesSettings {
    /// When automatic prospective access was (or will be) switched on; `None` = not yet.
    pub prospective_switch_on: Option<NaiveDate>,
    /// Paused at the data controller's request: no automatic access while set (D9).
    pub paused: bool,
    /// Why, and at whose request, automatic access is paused (empty when it is not).
    pub pause_reason: String,
    /// The automatic access level (D10: Full unless the practice chooses lower).
    pub default_level: AccessLevel,
    /// When a child's proxy links are suspended for review (R16, D7).
    pub proxy_review_age: ProxyReviewAge,
    /// Whether a new entry's "visible online" box starts ticked.
    pub visible_online_by_default: bool,
    /// Whether "who viewed my record" names members of staff to patients, or only their role.
    pub show_staff_names_to_patients: bool,
    /// Patients can cancel an appointment online until this many hours before it.
    pub cancel_cutoff_hours: u16,
    /// Whether pharmacies' Update Record messages are accepted (R30; on by default, and required
    /// by the GP contract since 1 October 2025).
    pub accept_update_record: bool,
    /// Whether clinicians in other care settings may read the record through GP Connect Access
    /// Record: Structured (on by default; a practice may turn it off).
    pub gp_connect_structured: bool,
    /// Whether they may list and retrieve the practice's documents through GP Connect Access
    /// Document (on by default).
    pub gp_connect_documents: bool,
    /// The practice's Accredited System ID on the Spine: GP Connect requests must be addressed to
    /// it (`Ssp-To`). None until the practice is connected.
    pub gp_connect_asid: Option<Asid>,
}

impl Default for OnlineServicesSettings {
    fn default() -> Self {
        Self {
            prospective_switch_on: None,
            paused: false,
            pause_reason: String::new(),
            default_level: AccessLevel::Full,
            proxy_review_age: ProxyReviewAge::default(),
            visible_online_by_default: true,
            show_staff_names_to_patients: false,
            cancel_cutoff_hours: 24,
            accept_update_record: true,
            gp_connect_structured: true,
            gp_connect_documents: true,
            gp_connect_asid: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Practice {
    pub id: PracticeId,
    pub ods_code: OdsCode,
    pub name: String,
    pub telephone: String,
    pub address: PostalAddress,
    pub online: OnlineServicesSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asids_are_up_to_twelve_digits() {
        assert_eq!(Asid::parse(" 200000000359 ").unwrap().as_str(), "200000000359");
        assert!(Asid::parse("").is_err());
        assert!(Asid::parse("2000000003591").is_err());
        assert!(Asid::parse("20000000035a").is_err());
    }

    #[test]
    fn ods_codes_are_upper_cased_and_checked() {
        assert_eq!(OdsCode::parse(" a81001 ").unwrap().as_str(), "A81001");
        assert!(OdsCode::parse("A8").is_err());
        assert!(OdsCode::parse("A81 001").is_err());
        assert!(OdsCode::parse("A81001A81001").is_err());
    }

    #[test]
    fn proxy_review_age_is_eleven_to_thirteen() {
        // R16, D7
        assert_eq!(ProxyReviewAge::default().years(), 11);
        assert!(ProxyReviewAge::new(13).is_ok());
        assert!(ProxyReviewAge::new(10).is_err());
        assert!(ProxyReviewAge::new(14).is_err());
    }
}
