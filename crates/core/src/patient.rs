//! A registered patient: identity, contact details, preferred contact method and the history of
//! registration at this practice.

use crate::ids::{PatientId, PracticeId};
use crate::nhs_number::NhsNumber;
use crate::practice::PostalAddress;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "female" => Sex::Female,
            "male" => Sex::Male,
            "other" => Sex::Other,
            "unknown" => Sex::Unknown,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    pub title: Option<String>,
    pub given: String,
    pub family: String,
}

impl PersonName {
    /// "SURNAME, Given (Title)" as clinical systems show it in a banner.
    pub fn banner(&self) -> String {
        match &self.title {
            Some(t) => format!("{}, {} ({})", self.family.to_uppercase(), self.given, t),
            None => format!("{}, {}", self.family.to_uppercase(), self.given),
        }
    }
    pub fn initials(&self) -> String {
        self.given
            .split_whitespace()
            .chain(std::iter::once(self.family.as_str()))
            .filter_map(|w| w.chars().next())
            .map(|c| c.to_ascii_uppercase())
            .collect()
    }
}

/// UK Core PreferredContactMethod codes 1–9, plus "unknown" (R38).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreferredContactMethod {
    Letter,
    Visit,
    Telephone,
    Email,
    Minicom,
    TelephoneViaProxy,
    SignLanguage,
    NoTelephone,
    Sms,
    Unknown,
}

impl PreferredContactMethod {
    pub const ALL: [PreferredContactMethod; 10] = [
        Self::Letter,
        Self::Visit,
        Self::Telephone,
        Self::Email,
        Self::Minicom,
        Self::TelephoneViaProxy,
        Self::SignLanguage,
        Self::NoTelephone,
        Self::Sms,
        Self::Unknown,
    ];

    /// The UK Core code, or `None` for unknown.
    pub fn code(self) -> Option<u8> {
        Some(match self {
            Self::Letter => 1,
            Self::Visit => 2,
            Self::Telephone => 3,
            Self::Email => 4,
            Self::Minicom => 5,
            Self::TelephoneViaProxy => 6,
            Self::SignLanguage => 7,
            Self::NoTelephone => 8,
            Self::Sms => 9,
            Self::Unknown => return None,
        })
    }

    pub fn from_code(code: Option<u8>) -> Option<Self> {
        match code {
            None => Some(Self::Unknown),
            Some(c) => Self::ALL.into_iter().find(|m| m.code() == Some(c)),
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Self::Letter => "Letter",
            Self::Visit => "Visit",
            Self::Telephone => "Telephone",
            Self::Email => "E-mail",
            Self::Minicom => "Minicom (Textphone)",
            Self::TelephoneViaProxy => "Telephone contact via proxy",
            Self::SignLanguage => "Sign language",
            Self::NoTelephone => "No telephone contact",
            Self::Sms => "SMS",
            Self::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactDetails {
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub address: PostalAddress,
}

/// How a period of registration at this practice began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationKind {
    /// A new registration (first registration, or a newborn).
    Registered,
    /// Moved here from another practice; the record came by GP2GP.
    TransferredIn,
}

impl RegistrationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::TransferredIn => "transferred_in",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "registered" => Some(Self::Registered),
            "transferred_in" => Some(Self::TransferredIn),
            _ => None,
        }
    }
}

/// One period of registration at this practice; `ended` is the deregistration date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub kind: RegistrationKind,
    pub started: NaiveDate,
    pub ended: Option<NaiveDate>,
    /// For a transfer-in, the ODS code of the previous practice.
    pub previous_practice: Option<String>,
}

impl Registration {
    /// A registration here from `started`, still current.
    pub fn since(started: NaiveDate) -> Self {
        Self { kind: RegistrationKind::Registered, started, ended: None, previous_practice: None }
    }

    pub fn is_current_on(&self, date: NaiveDate) -> bool {
        self.started <= date && self.ended.is_none_or(|end| date < end)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    pub id: PatientId,
    pub practice: PracticeId,
    pub nhs_number: NhsNumber,
    pub name: PersonName,
    pub date_of_birth: NaiveDate,
    pub sex: Sex,
    pub contact: ContactDetails,
    pub preferred_contact: PreferredContactMethod,
    /// Oldest first.
    pub registrations: Vec<Registration>,
    pub date_of_death: Option<NaiveDate>,
}

impl Patient {
    /// The registration in force on `date`, if any.
    pub fn registration_on(&self, date: NaiveDate) -> Option<&Registration> {
        self.registrations.iter().rev().find(|r| r.is_current_on(date))
    }

    pub fn age_on(&self, date: NaiveDate) -> u32 {
        age_on(self.date_of_birth, date)
    }

    pub fn is_deceased_on(&self, date: NaiveDate) -> bool {
        self.date_of_death.is_some_and(|d| d <= date)
    }
}

/// The date a person born on `dob` turns `years` old. Someone born on 29 February turns a year
/// older on 1 March in a common year.
pub fn birthday(dob: NaiveDate, years: u32) -> NaiveDate {
    let year = dob.year() + i32::try_from(years).unwrap_or(i32::MAX / 2);
    NaiveDate::from_ymd_opt(year, dob.month(), dob.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, 3, 1))
        .unwrap_or(NaiveDate::MAX)
}

/// Age in whole years on `date` (0 before the first birthday, and for dates before birth).
pub fn age_on(dob: NaiveDate, date: NaiveDate) -> u32 {
    if date < dob {
        return 0;
    }
    let mut years = u32::try_from(date.year() - dob.year()).unwrap_or(0);
    if years > 0 && birthday(dob, years) > date {
        years -= 1;
    }
    years
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn ages_turn_on_the_birthday() {
        assert_eq!(age_on(d(2010, 6, 15), d(2026, 6, 14)), 15);
        assert_eq!(age_on(d(2010, 6, 15), d(2026, 6, 15)), 16);
        assert_eq!(age_on(d(2010, 6, 15), d(2000, 1, 1)), 0);
    }

    #[test]
    fn leap_day_birthdays_fall_on_first_of_march() {
        assert_eq!(birthday(d(2008, 2, 29), 16), d(2024, 2, 29));
        assert_eq!(birthday(d(2008, 2, 29), 17), d(2025, 3, 1));
        assert_eq!(age_on(d(2008, 2, 29), d(2025, 2, 28)), 16);
        assert_eq!(age_on(d(2008, 2, 29), d(2025, 3, 1)), 17);
    }

    #[test]
    fn preferred_contact_codes_round_trip() {
        // R38: exactly one of UK Core 1-9, or unknown.
        for m in PreferredContactMethod::ALL {
            assert_eq!(PreferredContactMethod::from_code(m.code()), Some(m));
        }
        assert_eq!(PreferredContactMethod::Sms.code(), Some(9));
        assert_eq!(PreferredContactMethod::from_code(Some(10)), None);
    }

    #[test]
    fn initials_take_every_given_name() {
        let n = PersonName { title: None, given: "mary jane".into(), family: "Smith".into() };
        assert_eq!(n.initials(), "MJS");
        assert_eq!(n.banner(), "SMITH, mary jane");
    }
}
