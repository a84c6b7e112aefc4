//! FHIR R4 search parameters read as the specification defines them, and matched against the
//! resources this crate writes: `code` (a token: `[system]|[code]`, several joined by commas
//! meaning any of them), `date` (a prefix and a date of year, month or day precision; several
//! `date` parameters must all hold) and `_sort` (`date` or `-date`).

use chrono::{Datelike, NaiveDate};
use serde_json::Value;

/// A search parameter that could not be read; the words say what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SearchParamError(pub String);

/// One token of a `code` search: a code, with or without its system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `None`: any system; `Some("")`: no system.
    pub system: Option<String>,
    pub code: String,
}

/// `code=a,b`: the tokens, any of which matches.
pub fn parse_tokens(value: &str) -> Result<Vec<Token>, SearchParamError> {
    let bad =
        || SearchParamError(format!("code must be [system]|[code], several joined by commas; \"{value}\" is not"));
    value
        .split(',')
        .map(|t| {
            let t = t.trim();
            let (system, code) = match t.split_once('|') {
                Some((s, c)) => (Some(s.to_owned()), c),
                None => (None, t),
            };
            if code.is_empty() || code.contains('|') {
                return Err(bad());
            }
            Ok(Token { system, code: code.to_owned() })
        })
        .collect()
}

/// Whether a `CodeableConcept` holds a coding any of the tokens names.
pub fn concept_matches(concept: &Value, tokens: &[Token]) -> bool {
    let codings = concept["coding"].as_array().map(Vec::as_slice).unwrap_or_default();
    codings.iter().any(|c| {
        tokens.iter().any(|t| {
            c["code"].as_str() == Some(t.code.as_str())
                && match &t.system {
                    None => true,
                    Some(s) if s.is_empty() => c.get("system").is_none(),
                    Some(s) => c["system"].as_str() == Some(s.as_str()),
                }
        })
    })
}

/// A date search's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

/// `date=ge2024-01`: the comparison and the days the date stands for (a year is all its days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateParam {
    pub prefix: Prefix,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// Reads one `date` parameter: an optional prefix (`eq`, `ne`, `gt`, `lt`, `ge`, `le`) and a date
/// as `YYYY`, `YYYY-MM` or `YYYY-MM-DD`. Times are refused: the record's dates are days.
pub fn parse_date(value: &str) -> Result<DateParam, SearchParamError> {
    let bad = || {
        SearchParamError(format!(
            "date must be a prefix (eq, ne, gt, lt, ge, le) and YYYY, YYYY-MM or YYYY-MM-DD; \"{value}\" is not"
        ))
    };
    let v = value.trim();
    let (prefix, rest) = match v.get(..2) {
        Some("eq") => (Prefix::Eq, &v[2..]),
        Some("ne") => (Prefix::Ne, &v[2..]),
        Some("gt") => (Prefix::Gt, &v[2..]),
        Some("lt") => (Prefix::Lt, &v[2..]),
        Some("ge") => (Prefix::Ge, &v[2..]),
        Some("le") => (Prefix::Le, &v[2..]),
        _ => (Prefix::Eq, v),
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = match parts.as_slice() {
        [y] if digits(y, 4) => {
            let y: i32 = y.parse().map_err(|_| bad())?;
            (NaiveDate::from_ymd_opt(y, 1, 1), NaiveDate::from_ymd_opt(y, 12, 31))
        }
        [y, m] if digits(y, 4) && digits(m, 2) => {
            let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            let first = NaiveDate::from_ymd_opt(y, m, 1);
            (first, first.and_then(|f| f.checked_add_months(chrono::Months::new(1))).and_then(|n| n.pred_opt()))
        }
        [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2) => {
            let day = NaiveDate::parse_from_str(rest, "%Y-%m-%d").ok();
            (day, day)
        }
        _ => return Err(bad()),
    };
    match (first, last) {
        (Some(first), Some(last)) if first.year() >= 1 => Ok(DateParam { prefix, first, last }),
        _ => Err(bad()),
    }
}

impl DateParam {
    /// Whether a resource dated `day` (a whole day) meets the parameter.
    pub fn holds_for(&self, day: NaiveDate) -> bool {
        match self.prefix {
            Prefix::Eq => self.first <= day && day <= self.last,
            Prefix::Ne => !(self.first <= day && day <= self.last),
            Prefix::Gt => day > self.last,
            Prefix::Lt => day < self.first,
            Prefix::Ge => day >= self.first,
            Prefix::Le => day <= self.last,
        }
    }
}

/// The day a clinical resource is dated by (`effectiveDateTime`, `onsetDateTime`, a period's
/// start, or `date`), as written by this crate.
pub fn resource_day(r: &Value) -> Option<NaiveDate> {
    let text = ["effectiveDateTime", "onsetDateTime", "occurrenceDateTime", "date", "recordedDate"]
        .iter()
        .find_map(|k| r[*k].as_str())
        .or_else(|| r["effectivePeriod"]["start"].as_str())?;
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

/// `_sort`: oldest first (`date`) or newest first (`-date`).
pub fn parse_sort(value: &str) -> Result<bool, SearchParamError> {
    match value.trim() {
        "date" => Ok(true),
        "-date" => Ok(false),
        other => Err(SearchParamError(format!(
            "_sort may be date (oldest first) or -date (newest first); \"{other}\" is not"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn dates_stand_for_every_day_of_their_precision_and_prefixes_compare_as_the_specification_says() {
        // FHIR R4 search 3.1.1.4.2: the parameter's value is a range; gt/lt/ge/le compare with it.
        let y = parse_date("2024").unwrap();
        assert_eq!((y.prefix, y.first, y.last), (Prefix::Eq, day("2024-01-01"), day("2024-12-31")));
        let m = parse_date("ge2024-02").unwrap();
        assert_eq!((m.first, m.last), (day("2024-02-01"), day("2024-02-29")), "a leap February");
        assert!(y.holds_for(day("2024-12-31")) && !y.holds_for(day("2025-01-01")));
        assert!(m.holds_for(day("2024-02-01")) && !m.holds_for(day("2024-01-31")));
        let gt = parse_date("gt2024-03").unwrap();
        assert!(!gt.holds_for(day("2024-03-31")) && gt.holds_for(day("2024-04-01")));
        let lt = parse_date("lt2024-03-10").unwrap();
        assert!(lt.holds_for(day("2024-03-09")) && !lt.holds_for(day("2024-03-10")));
        let le = parse_date("le2024").unwrap();
        assert!(le.holds_for(day("2024-12-31")) && !le.holds_for(day("2025-01-01")));
        let ne = parse_date("ne2024-03-10").unwrap();
        assert!(!ne.holds_for(day("2024-03-10")) && ne.holds_for(day("2024-03-11")));
        for bad in
            ["", "ge", "2024-2", "24", "2024-13", "2024-02-30", "ge2024-01-01T10:00", "sa2024", "2024/01/01", "0000"]
        {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_code_matches_with_or_without_its_system_and_commas_mean_any() {
        let concept = json!({ "coding": [{ "system": "http://snomed.info/sct", "code": "1019431000000105" }] });
        let t = |s: &str| parse_tokens(s).unwrap();
        assert!(concept_matches(&concept, &t("1019431000000105")));
        assert!(concept_matches(&concept, &t("http://snomed.info/sct|1019431000000105")));
        assert!(concept_matches(&concept, &t("75367002,1019431000000105")));
        assert!(!concept_matches(&concept, &t("http://loinc.org|1019431000000105")));
        assert!(!concept_matches(&concept, &t("|1019431000000105")), "|code means a coding without a system");
        assert!(!concept_matches(&json!({ "text": "HbA1c" }), &t("1019431000000105")));
        for bad in ["", "a|", "a|b|c", "x,,y"] {
            assert!(parse_tokens(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sorting_is_by_date_either_way_and_nothing_else() {
        assert_eq!(parse_sort("date"), Ok(true));
        assert_eq!(parse_sort("-date"), Ok(false));
        assert!(parse_sort("code").is_err() && parse_sort("").is_err());
        assert_eq!(resource_day(&json!({ "effectiveDateTime": "2025-06-01" })), Some(day("2025-06-01")));
        assert_eq!(resource_day(&json!({ "onsetDateTime": "2025-06-01T10:00:00Z" })), Some(day("2025-06-01")));
        assert_eq!(resource_day(&json!({ "status": "final" })), None);
    }
}
