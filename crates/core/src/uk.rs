//! UK dates. The rules' dates (the start of access, registration, the 16th birthday, the review
//! age, end dates, the SAR clock) are dates in UK time (Europe/London), not UTC dates: an entry
//! made at 00:30 on a British Summer Time day was made on that day, though it is still the day
//! before in UTC.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::London;

/// The UK date of an instant.
pub fn uk_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&London).date_naive()
}

/// The UK wall-clock time of an instant, for showing to people.
pub fn uk_local(t: DateTime<Utc>) -> chrono::NaiveDateTime {
    t.with_timezone(&London).naive_local()
}

/// The instant a UK date begins (midnight UK time, which is 23:00 UTC the day before in British
/// Summer Time). Midnight always exists in the UK (the clocks change at 01:00 and 02:00).
pub fn uk_start_of(date: NaiveDate) -> DateTime<Utc> {
    London
        .from_local_datetime(&date.and_time(NaiveTime::MIN))
        .earliest()
        .map_or_else(|| date.and_time(NaiveTime::MIN).and_utc(), |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
    }

    #[test]
    fn a_bst_day_begins_at_23_00_utc_the_day_before() {
        let d = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        assert_eq!(uk_start_of(d), utc(2026, 5, 31, 23, 0));
        // 00:30 on 1 June in the UK is 23:30 on 31 May in UTC, and is 1 June.
        assert_eq!(uk_date(utc(2026, 5, 31, 23, 30)), d);
        assert_eq!(uk_date(utc(2026, 5, 31, 22, 59)), NaiveDate::from_ymd_opt(2026, 5, 31).unwrap());
    }

    #[test]
    fn a_gmt_day_is_the_utc_day() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        assert_eq!(uk_start_of(d), utc(2026, 12, 5, 0, 0));
        assert_eq!(uk_date(utc(2026, 12, 5, 0, 1)), d);
        assert_eq!(uk_date(utc(2026, 12, 4, 23, 59)), NaiveDate::from_ymd_opt(2026, 12, 4).unwrap());
    }

    #[test]
    fn change_days_begin_at_gmt_midnight_or_bst_midnight() {
        // 29 March 2026: clocks go forward at 01:00 GMT; the day began at 00:00 GMT.
        assert_eq!(uk_start_of(NaiveDate::from_ymd_opt(2026, 3, 29).unwrap()), utc(2026, 3, 29, 0, 0));
        assert_eq!(uk_start_of(NaiveDate::from_ymd_opt(2026, 3, 30).unwrap()), utc(2026, 3, 29, 23, 0));
        // 25 October 2026: clocks go back at 02:00 BST; the day began at 00:00 BST.
        assert_eq!(uk_start_of(NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()), utc(2026, 10, 24, 23, 0));
        assert_eq!(uk_start_of(NaiveDate::from_ymd_opt(2026, 10, 26).unwrap()), utc(2026, 10, 26, 0, 0));
    }
}
