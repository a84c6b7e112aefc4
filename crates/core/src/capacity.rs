//! The practice's online appointment capacity: for each week (Monday to Sunday, UK dates),
//! clinician and type of appointment, how many slots were offered, how many of them patients
//! could book online, how the live bookings were made, and how many of each were not attended.
//!
//! Counts only: the report names clinicians and types of appointment, never a patient.

use crate::appointments::{Attendance, BookingChannel, SlotType};
use crate::uk::uk_date;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One slot as the report reads it: when, whose, what type, whether it is offered online, and
/// its live booking (how it was made, and the attendance recorded) if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFact {
    pub starts_at: DateTime<Utc>,
    pub clinician_name: String,
    pub slot_type: SlotType,
    pub online: bool,
    pub booking: Option<(BookingChannel, Option<Attendance>)>,
}

/// The counts of one line of the report, or of a total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Slots in the clinics.
    pub offered: u64,
    /// Of those, slots patients could book online.
    pub offered_online: u64,
    /// Live bookings made online (by the patient or someone acting for them).
    pub booked_online: u64,
    /// Live bookings made by the practice team.
    pub booked_by_practice: u64,
    /// Live bookings made by another care setting through GP Connect.
    pub booked_by_other_care_settings: u64,
    /// Of the bookings made online, those recorded as not attended.
    pub did_not_attend_online: u64,
    pub did_not_attend_by_practice: u64,
    pub did_not_attend_by_other_care_settings: u64,
    /// Live bookings that have started and whose attendance is not yet recorded.
    pub attendance_not_recorded: u64,
}

impl Counts {
    fn count(&mut self, fact: &SlotFact, now: DateTime<Utc>) {
        self.offered += 1;
        self.offered_online += u64::from(fact.online);
        let Some((channel, attendance)) = fact.booking else { return };
        let (booked, dna) = match channel {
            BookingChannel::Online => (&mut self.booked_online, &mut self.did_not_attend_online),
            BookingChannel::Practice => (&mut self.booked_by_practice, &mut self.did_not_attend_by_practice),
            BookingChannel::OtherCareSetting => {
                (&mut self.booked_by_other_care_settings, &mut self.did_not_attend_by_other_care_settings)
            }
        };
        *booked += 1;
        match attendance {
            Some(Attendance::DidNotAttend) => *dna += 1,
            Some(Attendance::Attended) => {}
            None if fact.starts_at <= now => self.attendance_not_recorded += 1,
            None => {}
        }
    }

    /// Adds another line's counts to these.
    pub fn add(&mut self, other: &Counts) {
        self.offered += other.offered;
        self.offered_online += other.offered_online;
        self.booked_online += other.booked_online;
        self.booked_by_practice += other.booked_by_practice;
        self.booked_by_other_care_settings += other.booked_by_other_care_settings;
        self.did_not_attend_online += other.did_not_attend_online;
        self.did_not_attend_by_practice += other.did_not_attend_by_practice;
        self.did_not_attend_by_other_care_settings += other.did_not_attend_by_other_care_settings;
        self.attendance_not_recorded += other.attendance_not_recorded;
    }

    /// Live bookings, however made.
    pub fn booked(&self) -> u64 {
        self.booked_online + self.booked_by_practice + self.booked_by_other_care_settings
    }

    /// The share of the slots offered that patients could book online, in whole percent
    /// ("–" when there were no slots).
    pub fn online_share_text(&self) -> String {
        percent(self.offered_online, self.offered)
    }
}

/// `part` of `whole` in whole percent, rounded half up; "–" of nothing.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "–".into();
    }
    format!("{}%", (part * 200 + whole) / (2 * whole))
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeekLine {
    /// The Monday the week starts on (UK date).
    pub week: NaiveDate,
    pub clinician: String,
    pub slot_type: SlotType,
    pub counts: Counts,
}

/// The Monday of the UK week an instant falls in.
pub fn week_of(t: DateTime<Utc>) -> NaiveDate {
    monday_of(uk_date(t))
}

/// The Monday of the week a date falls in.
pub fn monday_of(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

/// The report's lines, by week, then clinician, then type of appointment. `now` decides which
/// bookings have started (and so should have their attendance recorded).
pub fn weekly(facts: &[SlotFact], now: DateTime<Utc>) -> Vec<WeekLine> {
    let mut lines: BTreeMap<(NaiveDate, &str, &'static str), (SlotType, Counts)> = BTreeMap::new();
    for f in facts {
        let key = (week_of(f.starts_at), f.clinician_name.as_str(), f.slot_type.as_str());
        lines.entry(key).or_insert_with(|| (f.slot_type, Counts::default())).1.count(f, now);
    }
    lines
        .into_iter()
        .map(|((week, clinician, _), (slot_type, counts))| WeekLine {
            week,
            clinician: clinician.to_owned(),
            slot_type,
            counts,
        })
        .collect()
}

/// The counts of many lines together.
pub fn total<'a>(counts: impl IntoIterator<Item = &'a Counts>) -> Counts {
    let mut out = Counts::default();
    for c in counts {
        out.add(c);
    }
    out
}

/// Counts every fact into one total (the ICB's practice totals).
pub fn count_all(facts: &[SlotFact], now: DateTime<Utc>) -> Counts {
    let mut out = Counts::default();
    for f in facts {
        out.count(f, now);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appointments::uk_instant;
    use chrono::NaiveTime;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        uk_instant(date, NaiveTime::from_hms_opt(h, min, 0).unwrap_or_default()).unwrap_or_default()
    }

    fn fact(
        t: DateTime<Utc>,
        who: &str,
        online: bool,
        booking: Option<(BookingChannel, Option<Attendance>)>,
    ) -> SlotFact {
        SlotFact { starts_at: t, clinician_name: who.into(), slot_type: SlotType::GpFaceToFace, online, booking }
    }

    #[test]
    fn weeks_run_monday_to_sunday_in_uk_time() {
        // Sunday 29 March 2026 23:30 BST is 22:30 UTC on the Sunday: still the week of Monday 23.
        assert_eq!(week_of(at(2026, 3, 29, 23, 30)), NaiveDate::from_ymd_opt(2026, 3, 23).unwrap_or_default());
        // Monday 30 March 00:15 BST is 23:15 UTC on the Sunday, but a UK Monday: the next week.
        let monday = at(2026, 3, 30, 0, 15);
        assert_eq!(monday.date_naive(), NaiveDate::from_ymd_opt(2026, 3, 29).unwrap_or_default());
        assert_eq!(week_of(monday), NaiveDate::from_ymd_opt(2026, 3, 30).unwrap_or_default());
    }

    #[test]
    fn each_line_counts_slots_and_bookings_by_how_they_were_made() {
        // Issue 26: slots offered, offered online, booked online, booked by staff, and
        // did-not-attend by booking channel, by week, clinician and type.
        use Attendance::*;
        use BookingChannel::*;
        let now = at(2026, 12, 10, 12, 0);
        let facts = [
            fact(at(2026, 12, 7, 9, 0), "Dr A", true, Some((Online, Some(DidNotAttend)))),
            fact(at(2026, 12, 7, 9, 15), "Dr A", true, Some((Online, Some(Attended)))),
            fact(at(2026, 12, 7, 9, 30), "Dr A", false, Some((Practice, Some(DidNotAttend)))),
            fact(at(2026, 12, 7, 9, 45), "Dr A", false, Some((OtherCareSetting, None))),
            fact(at(2026, 12, 7, 10, 0), "Dr A", true, None),
            fact(at(2026, 12, 11, 9, 0), "Dr A", true, Some((Online, None))),
            fact(at(2026, 12, 8, 9, 0), "Dr B", false, Some((Practice, Some(Attended)))),
            fact(at(2026, 12, 14, 9, 0), "Dr A", true, None),
        ];
        let lines = weekly(&facts, now);
        assert_eq!(lines.len(), 3, "{lines:?}");
        let a = &lines[0];
        assert_eq!((a.week.to_string().as_str(), a.clinician.as_str()), ("2026-12-07", "Dr A"));
        let c = a.counts;
        assert_eq!((c.offered, c.offered_online), (6, 4));
        assert_eq!((c.booked_online, c.booked_by_practice, c.booked_by_other_care_settings), (3, 1, 1));
        assert_eq!(
            (c.did_not_attend_online, c.did_not_attend_by_practice, c.did_not_attend_by_other_care_settings),
            (1, 1, 0)
        );
        assert_eq!(c.attendance_not_recorded, 1, "the other care setting's booking has started; Friday's has not");
        assert_eq!(c.online_share_text(), "67%");
        assert_eq!(lines[1].clinician, "Dr B");
        assert_eq!(lines[2].week.to_string(), "2026-12-14");
        let all = total(lines.iter().map(|l| &l.counts));
        assert_eq!(all, count_all(&facts, now));
        assert_eq!((all.offered, all.booked()), (8, 6));
        assert_eq!(percent(0, 0), "–");
        assert_eq!(percent(1, 8), "13%", "12.5 rounds half up");
    }
}
