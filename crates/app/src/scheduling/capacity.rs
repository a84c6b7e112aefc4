//! The online appointment capacity report: by week, clinician and type of appointment, the
//! slots offered, offered online, booked online, booked by the practice and by other care
//! settings, and did-not-attends by how the booking was made. The practice's report names
//! clinicians, never a patient; the ICB's view has each practice's totals.

use crate::{permit, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::Action;
use caldicott_core::capacity::{monday_of, total, weekly, Counts, WeekLine};
use caldicott_core::permissions::Permission;
use caldicott_core::uk::uk_start_of;
use chrono::{Datelike, Duration, NaiveDate};

/// The most weeks one report covers.
pub const MAX_WEEKS: u32 = 26;
/// The weeks a report covers unless asked otherwise: the four before this one, this one and
/// the three after it.
pub const DEFAULT_WEEKS: u32 = 8;

/// The weeks a report covers: from the Monday of `from`, `weeks` whole weeks (UK dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub weeks: u32,
}

impl Period {
    /// The default period around `today`.
    pub fn around(today: NaiveDate) -> Self {
        Period { from: monday_of(today) - Duration::weeks(4), weeks: DEFAULT_WEEKS }
    }

    /// A period as asked for: `from` an ISO date (any day of its week) and a number of weeks
    /// from 1 to 26; either may be left out for the default. Says what is wrong otherwise.
    pub fn parse(from: Option<&str>, weeks: Option<&str>, today: NaiveDate) -> Result<Self, String> {
        let default = Self::around(today);
        let from = match from.map(str::trim).filter(|s| !s.is_empty()) {
            None => default.from,
            Some(s) => {
                // A year far from now is a mistyped date, and its weeks would overflow the calendar.
                let d = s.parse::<NaiveDate>().ok().filter(|d| (1900..=2200).contains(&d.year()));
                monday_of(d.ok_or_else(|| format!("'{s}' is not a date from 1900 to 2200: write it as YYYY-MM-DD"))?)
            }
        };
        let weeks = match weeks.map(str::trim).filter(|s| !s.is_empty()) {
            None => default.weeks,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|w| (1..=MAX_WEEKS).contains(w))
                .ok_or_else(|| format!("the number of weeks must be a whole number from 1 to {MAX_WEEKS}"))?,
        };
        Ok(Period { from, weeks })
    }

    /// The day after the last day.
    pub fn end(&self) -> NaiveDate {
        self.from + Duration::weeks(i64::from(self.weeks))
    }

    /// The period just before this one, of the same length.
    pub fn earlier(&self) -> Self {
        Period { from: self.from - Duration::weeks(i64::from(self.weeks)), weeks: self.weeks }
    }

    pub fn later(&self) -> Self {
        Period { from: self.end(), weeks: self.weeks }
    }

    /// "2 November 2026 to 27 December 2026".
    pub fn describe(&self) -> String {
        format!("{} to {}", self.from.format("%-d %B %Y"), (self.end() - Duration::days(1)).format("%-d %B %Y"))
    }
}

/// The practice's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CapacityReport {
    pub ods_code: String,
    pub practice_name: String,
    pub period: Period,
    pub lines: Vec<WeekLine>,
    /// Each week's counts, every clinician and type together.
    pub weeks: Vec<(NaiveDate, Counts)>,
    pub total: Counts,
}

impl App {
    /// The practice's online appointment capacity report for `period`. Audited as a report view.
    pub async fn capacity_report(&self, who: &StaffPrincipal, period: Period) -> AppResult<CapacityReport> {
        permit(who, Permission::AppointmentCapacity)?;
        let practice = self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let facts =
            self.store.capacity_facts(who.practice, uk_start_of(period.from), uk_start_of(period.end())).await?;
        let lines = weekly(&facts, self.now());
        let mut weeks: Vec<(NaiveDate, Counts)> = Vec::new();
        for l in &lines {
            match weeks.last_mut() {
                Some((w, c)) if *w == l.week => c.add(&l.counts),
                _ => weeks.push((l.week, l.counts)),
            }
        }
        let total = total(lines.iter().map(|l| &l.counts));
        self.audit_look(
            who,
            None,
            Action::ReportView,
            "report/appointment-capacity",
            format!("from={} weeks={} slots={}", period.from, period.weeks, total.offered),
        )
        .await?;
        Ok(CapacityReport {
            ods_code: practice.ods_code.as_str().to_owned(),
            practice_name: practice.name,
            period,
            lines,
            weeks,
            total,
        })
    }

    /// Every practice's capacity totals for `period`, for the ICB: counts only, never a
    /// patient or a clinician. Audited in the analyst's own practice.
    pub async fn icb_capacity(
        &self,
        who: &StaffPrincipal,
        period: Period,
    ) -> AppResult<Vec<caldicott_store::PracticeCapacity>> {
        permit(who, Permission::ServiceFigures)?;
        let rows = self.store.service_capacity(uk_start_of(period.from), uk_start_of(period.end()), self.now()).await?;
        self.audit_look(
            who,
            None,
            Action::IcbReportView,
            "report/icb-appointment-capacity",
            format!("from={} weeks={} practices={}", period.from, period.weeks, rows.len()),
        )
        .await?;
        Ok(rows)
    }
}

/// The CSV header and the counts' columns, shared by the practice's and the ICB's files.
const COUNT_COLUMNS: &str = "slots_offered,offered_online,percent_offered_online,booked_online,booked_by_practice,\
booked_by_other_care_settings,did_not_attend_online,did_not_attend_by_practice,\
did_not_attend_by_other_care_settings,attendance_not_recorded";

fn count_cells(c: &Counts) -> Vec<String> {
    vec![
        c.offered.to_string(),
        c.offered_online.to_string(),
        c.online_share_text().trim_end_matches('%').replace('–', ""),
        c.booked_online.to_string(),
        c.booked_by_practice.to_string(),
        c.booked_by_other_care_settings.to_string(),
        c.did_not_attend_online.to_string(),
        c.did_not_attend_by_practice.to_string(),
        c.did_not_attend_by_other_care_settings.to_string(),
        c.attendance_not_recorded.to_string(),
    ]
}

fn line(lead: &[&str], c: &Counts) -> String {
    let cells = count_cells(c);
    let all: Vec<&str> = lead.iter().copied().chain(cells.iter().map(String::as_str)).collect();
    crate::governance::csv_line(&all)
}

/// CSV of the practice's report: one line per week, clinician and type of appointment.
pub fn capacity_csv(r: &CapacityReport) -> String {
    let mut out = format!("week_starting,clinician,appointment_type,{COUNT_COLUMNS}\n");
    for l in &r.lines {
        out.push_str(&line(&[&l.week.to_string(), &l.clinician, l.slot_type.as_str()], &l.counts));
    }
    out
}

/// CSV of every practice's totals for the period, for the ICB.
pub fn icb_capacity_csv(period: &Period, rows: &[caldicott_store::PracticeCapacity]) -> String {
    let mut out = format!("ods_code,practice,from,to,{COUNT_COLUMNS}\n");
    let (from, to) = (period.from.to_string(), (period.end() - Duration::days(1)).to_string());
    for r in rows {
        out.push_str(&line(&[&r.ods_code, &r.name, &from, &to], &r.counts));
    }
    out
}
