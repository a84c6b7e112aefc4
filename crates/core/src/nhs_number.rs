//! The NHS number: ten digits whose last is a modulus-11 check digit.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A valid NHS number. The only way to get one is [`NhsNumber::parse`], so holding one means the
/// check digit is right.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NhsNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number is 10 digits; \"{0}\" has {1}")]
    WrongLength(String, usize),
    #[error(
        "an NHS number has only digits (spaces and hyphens between groups are fine); \"{0}\" has other characters"
    )]
    NotDigits(String),
    #[error("{0} is not a valid NHS number: its check digit does not match (check for a mistyped digit)")]
    CheckDigit(String),
}

impl NhsNumber {
    /// Parses an NHS number typed by a person: spaces and hyphens between digits are ignored.
    pub fn parse(input: &str) -> Result<Self, NhsNumberError> {
        let trimmed = input.trim();
        let mut digits = String::with_capacity(10);
        for c in trimmed.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                _ => return Err(NhsNumberError::NotDigits(trimmed.to_owned())),
            }
        }
        if digits.len() != 10 {
            return Err(NhsNumberError::WrongLength(trimmed.to_owned(), digits.len()));
        }
        let bytes = digits.as_bytes();
        match check_digit(&bytes[..9]) {
            Some(check) if check == bytes[9] - b'0' => Ok(Self(digits)),
            _ => Err(NhsNumberError::CheckDigit(trimmed.to_owned())),
        }
    }

    /// Builds a valid NHS number from its first nine digits, or `None` when those nine digits have
    /// no valid check digit (a remainder of 10).
    pub fn from_first_nine(first_nine: u32) -> Option<Self> {
        if first_nine > 999_999_999 {
            return None;
        }
        let stem = format!("{first_nine:09}");
        let check = check_digit(stem.as_bytes())?;
        Some(Self(format!("{stem}{check}")))
    }

    /// The ten digits, without spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Numbers starting 999 are reserved for testing and never issued to a person.
    pub fn is_test_number(&self) -> bool {
        self.0.starts_with("999")
    }
}

/// Modulus 11: weights 10 down to 2; check = 11 - (sum mod 11); 11 becomes 0; 10 is invalid.
fn check_digit(first_nine: &[u8]) -> Option<u8> {
    let sum: u32 = first_nine.iter().zip((2..=10u32).rev()).map(|(d, w)| u32::from(d - b'0') * w).sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => u8::try_from(c).ok(),
    }
}

impl fmt::Display for NhsNumber {
    /// The NHS style: 3-3-4 digits separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", &self.0[..3], &self.0[3..6], &self.0[6..])
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NhsNumber({})", self.0)
    }
}

impl TryFrom<String> for NhsNumber {
    type Error = NhsNumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<NhsNumber> for String {
    fn from(n: NhsNumber) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_valid_numbers_with_spaces_and_hyphens() {
        for s in ["9434765919", "943 476 5919", "943-476-5919", " 9434765919 "] {
            let n = NhsNumber::parse(s).unwrap();
            assert_eq!(n.as_str(), "9434765919");
            assert_eq!(n.to_string(), "943 476 5919");
        }
    }

    #[test]
    fn refuses_a_wrong_check_digit_with_a_clear_message() {
        let err = NhsNumber::parse("9434765918").unwrap_err();
        assert_eq!(err, NhsNumberError::CheckDigit("9434765918".into()));
        assert!(err.to_string().contains("check digit"));
    }

    #[test]
    fn refuses_wrong_length_and_letters() {
        assert!(matches!(NhsNumber::parse("12345"), Err(NhsNumberError::WrongLength(_, 5))));
        assert!(matches!(NhsNumber::parse("94347659x9"), Err(NhsNumberError::NotDigits(_))));
        assert!(matches!(NhsNumber::parse(""), Err(NhsNumberError::WrongLength(_, 0))));
    }

    #[test]
    fn a_stem_with_remainder_ten_has_no_valid_number() {
        // 000000001: sum = 1*2 = 2, 11 - 2 = 9 -> valid; find a stem whose check would be 10.
        let invalid_stem = (0..1000u32).find(|s| check_digit(format!("{s:09}").as_bytes()).is_none());
        let stem = invalid_stem.unwrap();
        assert!(NhsNumber::from_first_nine(stem).is_none());
    }

    proptest! {
        #[test]
        fn every_generated_number_parses_and_one_changed_digit_fails(stem in 0u32..=999_999_999, pos in 0usize..10, bump in 1u8..10) {
            if let Some(n) = NhsNumber::from_first_nine(stem) {
                prop_assert_eq!(NhsNumber::parse(n.as_str()).unwrap(), n.clone());
                let mut digits = n.as_str().as_bytes().to_vec();
                digits[pos] = b'0' + (digits[pos] - b'0' + bump) % 10;
                let changed = String::from_utf8(digits).unwrap();
                // Modulus 11 catches every single-digit substitution.
                prop_assert!(NhsNumber::parse(&changed).is_err());
            }
        }
    }
}
