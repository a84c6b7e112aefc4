//! SNOMED CT concepts that the rules depend on, and the 104/106 enhanced-review status (R2, D5).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A SNOMED CT concept id: 6 to 18 digits (the SCTID format).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConceptId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a SNOMED CT concept id is 6 to 18 digits; \"{0}\" is not")]
pub struct ConceptIdError(pub String);

impl ConceptId {
    pub fn parse(s: &str) -> Result<Self, ConceptIdError> {
        let t = s.trim();
        if (6..=18).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()) && !t.starts_with('0') {
            Ok(Self(t.to_owned()))
        } else {
            Err(ConceptIdError(s.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for ConceptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ConceptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SCTID {}", self.0)
    }
}
impl TryFrom<String> for ConceptId {
    type Error = ConceptIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<ConceptId> for String {
    fn from(c: ConceptId) -> String {
        c.0
    }
}

/// A coded term: concept id and the term as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coding {
    pub concept: ConceptId,
    pub term: String,
}

/// "Enhanced review indicated before granting access to own health record" (104).
pub const ENHANCED_REVIEW_INDICATED: &str = "1364731000000104";
/// "Enhanced review not indicated before granting access to own health record" (106).
pub const ENHANCED_REVIEW_NOT_INDICATED: &str = "1364751000000106";
/// SMS dissent codes (R40).
pub const SMS_DISSENT: &str = "513631000000106";
pub const SMS_RESULTS_DISSENT: &str = "911401000000108";
pub const SMS_CONSENT: &str = "699237001";
pub const SMS_RESULTS_CONSENT: &str = "911361000000104";

/// The 104 status of a record (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EnhancedReview {
    /// No 104 in the record.
    NotIndicated,
    /// A 104 with no later 106: automatic access is withheld.
    Active { since: DateTime<Utc> },
    /// A 106 entered after the latest 104.
    Overridden { indicated: DateTime<Utc>, not_indicated: DateTime<Utc> },
}

impl EnhancedReview {
    pub fn is_active(self) -> bool {
        matches!(self, Self::Active { .. })
    }
}

/// Works out the 104 status from the coded entries of a record (R2). The later of the latest 104
/// and the latest 106 by entered time wins; on equal times 104 wins, the safer reading (D5).
pub fn enhanced_review<'a>(codes: impl IntoIterator<Item = (&'a str, DateTime<Utc>)>) -> EnhancedReview {
    let mut latest_104: Option<DateTime<Utc>> = None;
    let mut latest_106: Option<DateTime<Utc>> = None;
    for (concept, entered) in codes {
        let slot = match concept {
            ENHANCED_REVIEW_INDICATED => &mut latest_104,
            ENHANCED_REVIEW_NOT_INDICATED => &mut latest_106,
            _ => continue,
        };
        if slot.is_none_or(|t| entered > t) {
            *slot = Some(entered);
        }
    }
    match (latest_104, latest_106) {
        (None, _) => EnhancedReview::NotIndicated,
        (Some(i), Some(n)) if n > i => EnhancedReview::Overridden { indicated: i, not_indicated: n },
        (Some(i), _) => EnhancedReview::Active { since: i },
    }
}

/// The small bundled picklist of common codes offered when a consultation is recorded; any other
/// concept can be typed in.
pub const PICKLIST: &[(&str, &str)] = &[
    (ENHANCED_REVIEW_INDICATED, "Enhanced review indicated before granting access to own health record"),
    (ENHANCED_REVIEW_NOT_INDICATED, "Enhanced review not indicated before granting access to own health record"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("35489007", "Depressive disorder"),
    ("75367002", "Blood pressure"),
    ("60621009", "Body mass index"),
    ("77176002", "Smoker"),
    ("8517006", "Ex-smoker"),
    ("266919005", "Never smoked tobacco"),
    ("91936005", "Allergy to penicillin"),
    (SMS_CONSENT, "Consent given for communication by short message service text messaging"),
    (SMS_DISSENT, "Declined consent for short message service text messaging"),
];

/// The term for a picklist concept.
pub fn picklist_term(concept: &str) -> Option<&'static str> {
    PICKLIST.iter().find(|(c, _)| *c == concept).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, day, 9, 0, 0).unwrap()
    }

    #[test]
    fn a_104_without_a_later_106_is_active() {
        // R2
        assert_eq!(enhanced_review([]), EnhancedReview::NotIndicated);
        assert_eq!(enhanced_review([(ENHANCED_REVIEW_INDICATED, t(2))]), EnhancedReview::Active { since: t(2) });
        assert!(enhanced_review([(ENHANCED_REVIEW_NOT_INDICATED, t(1)), (ENHANCED_REVIEW_INDICATED, t(2))]).is_active());
    }

    #[test]
    fn a_later_106_overrides_and_a_later_104_reinstates() {
        // R2
        let r = enhanced_review([(ENHANCED_REVIEW_INDICATED, t(2)), (ENHANCED_REVIEW_NOT_INDICATED, t(3))]);
        assert!(!r.is_active());
        let r = enhanced_review([
            (ENHANCED_REVIEW_INDICATED, t(2)),
            (ENHANCED_REVIEW_NOT_INDICATED, t(3)),
            (ENHANCED_REVIEW_INDICATED, t(4)),
        ]);
        assert_eq!(r, EnhancedReview::Active { since: t(4) });
    }

    #[test]
    fn equal_times_mean_104_wins() {
        // R2, D5
        assert!(enhanced_review([(ENHANCED_REVIEW_NOT_INDICATED, t(3)), (ENHANCED_REVIEW_INDICATED, t(3))]).is_active());
    }

    #[test]
    fn concept_ids_are_digits() {
        assert!(ConceptId::parse(ENHANCED_REVIEW_INDICATED).is_ok());
        assert!(ConceptId::parse("12345").is_err());
        assert!(ConceptId::parse("0123456").is_err());
        assert!(ConceptId::parse("12a4567").is_err());
    }
}
