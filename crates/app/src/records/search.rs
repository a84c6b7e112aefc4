//! Finding a patient from one search box: an NHS number (with or without spaces), a date of
//! birth, a postcode, or names.

use crate::permit;
use crate::{App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::Action;
use caldicott_core::permissions::Permission;
use caldicott_core::NhsNumber;
use caldicott_store::{PatientListing, PatientSearch};
use chrono::NaiveDate;

pub const MAX_RESULTS: u32 = 50;

/// How a search box's text was understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchBy {
    NhsNumber,
    DateOfBirth,
    Postcode,
    Name,
}

fn looks_like_postcode(s: &str) -> Option<String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    let b = compact.as_bytes();
    let n = b.len();
    let ok = (5..=7).contains(&n)
        && b[0].is_ascii_alphabetic()
        && b[n - 3].is_ascii_digit()
        && b[n - 2].is_ascii_alphabetic()
        && b[n - 1].is_ascii_alphabetic()
        && b[..n - 3].iter().all(u8::is_ascii_alphanumeric)
        && b[..n - 3].iter().any(u8::is_ascii_digit);
    ok.then_some(compact)
}

/// Reads the search box. Errors say what to type.
pub fn parse_search(text: &str) -> AppResult<(SearchBy, PatientSearch)> {
    let t = text.trim();
    if t.is_empty() {
        return Err(AppError::BadRequest("Enter an NHS number, a name, a date of birth or a postcode".into()));
    }
    if t.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        && t.chars().filter(char::is_ascii_digit).count() == 10
    {
        let nhs = NhsNumber::parse(t).map_err(|e| AppError::BadRequest(e.to_string()))?;
        return Ok((SearchBy::NhsNumber, PatientSearch { nhs_number: Some(nhs), ..Default::default() }));
    }
    for format in ["%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y"] {
        if let Ok(date) = NaiveDate::parse_from_str(t, format) {
            return Ok((SearchBy::DateOfBirth, PatientSearch { date_of_birth: Some(date), ..Default::default() }));
        }
    }
    if t.chars().any(|c| c.is_ascii_digit()) && t.contains('/') {
        return Err(AppError::BadRequest(format!("\"{t}\" is not a date; write a date of birth like 31/01/1980")));
    }
    if let Some(pc) = looks_like_postcode(t) {
        return Ok((SearchBy::Postcode, PatientSearch { postcode: Some(pc), ..Default::default() }));
    }
    let names: Vec<String> =
        t.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    if names.iter().any(|w| w.chars().any(|c| c.is_ascii_digit())) {
        return Err(AppError::BadRequest(format!(
            "\"{t}\" is not an NHS number, a date of birth, a postcode or a name"
        )));
    }
    if names.iter().map(|w| w.chars().count()).sum::<usize>() < 2 {
        return Err(AppError::BadRequest("Enter at least 2 letters of a name".into()));
    }
    Ok((SearchBy::Name, PatientSearch { names, ..Default::default() }))
}

impl App {
    /// Searches the caller's practice. Audited with how it searched and how many it found.
    pub async fn search_patients(
        &self,
        who: &StaffPrincipal,
        text: &str,
    ) -> AppResult<(SearchBy, Vec<PatientListing>)> {
        permit(who, Permission::OpenRecords)?;
        let (by, q) = parse_search(text)?;
        let found = self.store.search_patients(who.practice, &q, MAX_RESULTS).await?;
        self.audit_look(who, None, Action::PatientSearch, "patients", format!("by={by:?} results={}", found.len()))
            .await?;
        Ok((by, found))
    }
}

impl App {
    /// The patients whose records the caller opened most recently.
    pub async fn recently_viewed(&self, who: &StaffPrincipal) -> AppResult<Vec<PatientListing>> {
        if !Permission::OpenRecords.allows(who.role) {
            return Ok(Vec::new());
        }
        Ok(self.store.recently_viewed(who.practice, who.staff, 10).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_box_understands_each_kind_of_query() {
        assert_eq!(parse_search("943 476 5919").unwrap().0, SearchBy::NhsNumber);
        assert!(matches!(parse_search("943 476 5918"), Err(AppError::BadRequest(m)) if m.contains("check digit")));
        let (by, q) = parse_search("09/12/1906").unwrap();
        assert_eq!((by, q.date_of_birth), (SearchBy::DateOfBirth, NaiveDate::from_ymd_opt(1906, 12, 9)));
        assert_eq!(parse_search("1906-12-09").unwrap().0, SearchBy::DateOfBirth);
        assert!(matches!(parse_search("31/02/2000"), Err(AppError::BadRequest(m)) if m.contains("not a date")));
        let (by, q) = parse_search("rv1 4qs").unwrap();
        assert_eq!((by, q.postcode.as_deref()), (SearchBy::Postcode, Some("RV14QS")));
        assert_eq!(parse_search("SW1A 1AA").unwrap().0, SearchBy::Postcode);
        let (by, q) = parse_search("Hopper, Grace").unwrap();
        assert_eq!((by, q.names), (SearchBy::Name, vec!["hopper".to_owned(), "grace".to_owned()]));
        assert!(parse_search("  ").is_err());
        assert!(parse_search("a").is_err());
        assert!(parse_search("abc123").is_err());
    }
}
