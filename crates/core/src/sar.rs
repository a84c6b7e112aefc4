//! Subject access requests (UK GDPR Art. 15): the statutory due date (R31), extensions (R32),
//! fees (R34), and the England and Wales bank holidays the due date steps over.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// England and Wales bank holidays in `year`: the regular ones by rule (with weekend
/// substitutes), adjusted for the one-off changes announced by proclamation.
pub fn bank_holidays(year: i32) -> Vec<NaiveDate> {
    let d = |m, day| NaiveDate::from_ymd_opt(year, m, day).unwrap_or(NaiveDate::MIN);
    let mut days = Vec::new();
    // New Year's Day, or the Monday after when it falls at a weekend.
    days.push(next_weekday(d(1, 1)));
    // Good Friday and Easter Monday.
    let easter = easter_sunday(year);
    days.push(easter - Duration::days(2));
    days.push(easter + Duration::days(1));
    // Early May (first Monday), spring (last Monday of May), summer (last Monday of August).
    days.push(first_monday(year, 5));
    days.push(last_monday(year, 5));
    days.push(last_monday(year, 8));
    // Christmas Day and Boxing Day, with substitutes.
    let (christmas, boxing) = (d(12, 25), d(12, 26));
    match christmas.weekday() {
        Weekday::Sat => days.extend([d(12, 27), d(12, 28)]),
        Weekday::Sun => days.extend([d(12, 26), d(12, 27)]),
        Weekday::Fri => days.extend([christmas, d(12, 28)]),
        _ => days.extend([christmas, boxing]),
    }
    // One-off changes (proclamations).
    /// (year, from, to): a bank holiday moved by proclamation.
    type Moved = (i32, (u32, u32), (u32, u32));
    let moved: &[Moved] = &[
        (2020, (5, 4), (5, 8)),  // VE Day 75: early May moved to Friday 8 May
        (2022, (5, 30), (6, 2)), // Platinum Jubilee: spring moved to 2 June
    ];
    let extra: &[(i32, u32, u32)] = &[
        (2022, 6, 3),  // Platinum Jubilee
        (2022, 9, 19), // State funeral of Queen Elizabeth II
        (2023, 5, 8),  // Coronation of King Charles III
    ];
    for (y, from, to) in moved {
        if *y == year {
            days.retain(|x| *x != d(from.0, from.1));
            days.push(d(to.0, to.1));
        }
    }
    days.extend(extra.iter().filter(|(y, _, _)| *y == year).map(|(_, m, day)| d(*m, *day)));
    days.sort();
    days.dedup();
    days
}

fn next_weekday(mut day: NaiveDate) -> NaiveDate {
    while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
        day += Duration::days(1);
    }
    day
}

fn first_monday(year: i32, month: u32) -> NaiveDate {
    let mut day = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN);
    while day.weekday() != Weekday::Mon {
        day += Duration::days(1);
    }
    day
}

fn last_monday(year: i32, month: u32) -> NaiveDate {
    let mut day = last_day_of_month(year, month);
    while day.weekday() != Weekday::Mon {
        day -= Duration::days(1);
    }
    day
}

fn last_day_of_month(year: i32, month: u32) -> NaiveDate {
    let (y, m) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).map(|d| d - Duration::days(1)).unwrap_or(NaiveDate::MIN)
}

/// Easter Sunday (Gregorian calendar; the anonymous algorithm).
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).unwrap_or(NaiveDate::MIN)
}

/// Whether `day` is a working day in England and Wales.
pub fn is_working_day(day: NaiveDate) -> bool {
    !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !bank_holidays(day.year()).contains(&day)
}

/// The same day of the month `months` later, or that month's last day when it has no such day.
pub fn same_day_months_later(from: NaiveDate, months: u32) -> NaiveDate {
    let total = from.year() * 12 + from.month0() as i32 + months as i32;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
    NaiveDate::from_ymd_opt(y, m, from.day()).unwrap_or_else(|| last_day_of_month(y, m))
}

/// The dates that start the clock (R31).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SarDates {
    pub received: Option<NaiveDate>,
    /// When the requester's identity was confirmed, if the practice had to ask.
    pub identity_verified: Option<NaiveDate>,
    /// When the clarification asked for arrived, if the practice had to ask.
    pub clarified: Option<NaiveDate>,
    /// When a fee was received, where one may be charged (R34).
    pub fee_received: Option<NaiveDate>,
}

impl SarDates {
    /// The day the clock starts: the latest of receipt, verification, clarification and fee.
    pub fn clock_starts(&self) -> Option<NaiveDate> {
        let received = self.received?;
        Some(
            [Some(received), self.identity_verified, self.clarified, self.fee_received]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(received),
        )
    }
}

/// The statutory due date (R31): one calendar month from the day the clock starts (the last day
/// of the next month when there is no such day), moved on to the next working day when it falls
/// at a weekend or on a bank holiday. With an extension (R32), three months.
pub fn due_date(clock_starts: NaiveDate, extended: bool) -> NaiveDate {
    let mut due = same_day_months_later(clock_starts, if extended { 3 } else { 1 });
    while !is_working_day(due) {
        due += Duration::days(1);
    }
    due
}

/// Why an extension cannot be recorded (R32).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    #[error("an extension must be recorded before the original due date, {0}")]
    TooLate(NaiveDate),
    #[error("give the reason for the extension (the request is complex or there are many of them)")]
    NoReason,
    #[error("record when and how the requester was told of the extension; they must be told within the first month")]
    NotNotified,
    #[error("the requester must be told on or before the original due date, {0}")]
    NotifiedLate(NaiveDate),
    #[error("the request has already been extended")]
    AlreadyExtended,
}

/// Checks an extension against R32: before the original due date, with a reason, and with the
/// requester told within the first month.
pub fn check_extension(
    original_due: NaiveDate,
    today: NaiveDate,
    reason: &str,
    notified_on: Option<NaiveDate>,
    already: bool,
) -> Result<(), ExtensionError> {
    if already {
        return Err(ExtensionError::AlreadyExtended);
    }
    if today >= original_due {
        return Err(ExtensionError::TooLate(original_due));
    }
    if reason.trim().is_empty() {
        return Err(ExtensionError::NoReason);
    }
    match notified_on {
        None => Err(ExtensionError::NotNotified),
        Some(d) if d > original_due => Err(ExtensionError::NotifiedLate(original_due)),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn bank_holidays_match_the_published_lists() {
        // gov.uk/bank-holidays, England and Wales.
        assert_eq!(
            bank_holidays(2026),
            vec![
                d(2026, 1, 1),
                d(2026, 4, 3),
                d(2026, 4, 6),
                d(2026, 5, 4),
                d(2026, 5, 25),
                d(2026, 8, 31),
                d(2026, 12, 25),
                d(2026, 12, 28)
            ]
        );
        assert_eq!(
            bank_holidays(2027),
            vec![
                d(2027, 1, 1),
                d(2027, 3, 26),
                d(2027, 3, 29),
                d(2027, 5, 3),
                d(2027, 5, 31),
                d(2027, 8, 30),
                d(2027, 12, 27),
                d(2027, 12, 28)
            ]
        );
        assert_eq!(bank_holidays(2028)[0], d(2028, 1, 3), "New Year's Day on a Saturday moves to Monday");
        assert!(bank_holidays(2023).contains(&d(2023, 5, 8)), "the coronation");
        assert_eq!(bank_holidays(2022).len(), 10, "2022 had two extra");
        assert!(bank_holidays(2022).contains(&d(2022, 6, 2)) && !bank_holidays(2022).contains(&d(2022, 5, 30)));
        assert_eq!(
            bank_holidays(2024),
            vec![
                d(2024, 1, 1),
                d(2024, 3, 29),
                d(2024, 4, 1),
                d(2024, 5, 6),
                d(2024, 5, 27),
                d(2024, 8, 26),
                d(2024, 12, 25),
                d(2024, 12, 26)
            ]
        );
        assert_eq!(easter_sunday(2025), d(2025, 4, 20));
    }

    #[test]
    fn the_due_date_follows_r31() {
        // R31: (clock starts, due)
        let cases = [
            (d(2026, 3, 10), d(2026, 4, 10)),   // a Friday, plain
            (d(2026, 1, 30), d(2026, 3, 2)),    // no 30 Feb: the last day, Sat 28 Feb, then Monday
            (d(2025, 1, 31), d(2025, 2, 28)),   // 31 Jan → 28 Feb 2025 (a Friday)
            (d(2024, 1, 31), d(2024, 2, 29)),   // leap year: 29 Feb 2024 (a Thursday)
            (d(2026, 8, 31), d(2026, 9, 30)),   // 31 Aug → 30 Sep
            (d(2026, 10, 17), d(2026, 11, 17)), // a Saturday receipt counts from the day itself
            (d(2026, 2, 28), d(2026, 3, 30)),   // due Sat 28 Mar → Monday 30 Mar
            (d(2026, 3, 3), d(2026, 4, 7)),     // due Fri 3 Apr (Good Friday) → Tue 7 Apr after Easter Monday
            (d(2026, 11, 25), d(2026, 12, 29)), // due Fri 25 Dec → Tue 29 Dec (28th is the Boxing Day substitute)
            (d(2026, 12, 1), d(2027, 1, 4)),    // due Fri 1 Jan → Mon 4 Jan
            (d(2026, 4, 25), d(2026, 5, 26)),   // due Mon 25 May (spring bank holiday) → Tue 26 May
        ];
        for (start, due) in cases {
            assert_eq!(due_date(start, false), due, "clock starting {start}");
        }
    }

    #[test]
    fn the_clock_starts_at_the_last_thing_waited_for() {
        // R31
        let dates = SarDates {
            received: Some(d(2026, 3, 2)),
            identity_verified: Some(d(2026, 3, 9)),
            clarified: Some(d(2026, 3, 5)),
            fee_received: None,
        };
        assert_eq!(dates.clock_starts(), Some(d(2026, 3, 9)));
        assert_eq!(due_date(dates.clock_starts().unwrap(), false), d(2026, 4, 9));
        assert_eq!(SarDates::default().clock_starts(), None);
    }

    #[test]
    fn an_extension_is_only_before_the_due_date_with_reason_and_notice() {
        // R32
        let due = d(2026, 4, 10);
        assert_eq!(
            check_extension(due, d(2026, 4, 9), "Complex: 20 years of records", Some(d(2026, 4, 9)), false),
            Ok(())
        );
        assert_eq!(
            check_extension(due, d(2026, 4, 10), "x", Some(d(2026, 4, 9)), false),
            Err(ExtensionError::TooLate(due))
        );
        assert_eq!(
            check_extension(due, d(2026, 5, 1), "x", Some(d(2026, 4, 9)), false),
            Err(ExtensionError::TooLate(due))
        );
        assert_eq!(check_extension(due, d(2026, 4, 1), " ", Some(d(2026, 4, 1)), false), Err(ExtensionError::NoReason));
        assert_eq!(check_extension(due, d(2026, 4, 1), "x", None, false), Err(ExtensionError::NotNotified));
        assert_eq!(
            check_extension(due, d(2026, 4, 1), "x", Some(d(2026, 4, 11)), false),
            Err(ExtensionError::NotifiedLate(due))
        );
        assert_eq!(
            check_extension(due, d(2026, 4, 1), "x", Some(d(2026, 4, 1)), true),
            Err(ExtensionError::AlreadyExtended)
        );
        // Extended: three months from the clock's start, on a working day.
        assert_eq!(due_date(d(2026, 3, 10), true), d(2026, 6, 10));
        assert_eq!(due_date(d(2026, 5, 31), true), d(2026, 8, 31) + Duration::days(1), "31 Aug 2026 is a bank holiday");
    }

    #[test]
    fn same_day_months_later_clamps_to_the_month_end() {
        assert_eq!(same_day_months_later(d(2026, 1, 31), 1), d(2026, 2, 28));
        assert_eq!(same_day_months_later(d(2028, 1, 31), 1), d(2028, 2, 29));
        assert_eq!(same_day_months_later(d(2026, 11, 30), 3), d(2027, 2, 28));
        assert_eq!(same_day_months_later(d(2026, 12, 15), 1), d(2027, 1, 15));
    }
}
