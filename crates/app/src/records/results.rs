//! Results over time as staff see them: every series in the record (the practice sees every
//! reading, as on the record page), each reading marked with whether the patient sees it online
//! and, if not, why. Each look is audited as a look at the record.

use crate::record::OnlineStatus;
use crate::{App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::Action;
use caldicott_core::entry::Section;
use caldicott_core::ids::EntryId;
use caldicott_core::patient::Patient;
use caldicott_core::trends::{self, Series};
use std::collections::HashMap;

/// A record's series of results, for staff.
#[derive(Debug, Clone)]
pub struct StaffResults {
    pub patient: Patient,
    /// Oldest reading first in each; the named measures first.
    pub series: Vec<Series>,
    /// Whether the patient sees each reading's entry online, and if not, why.
    pub online: HashMap<EntryId, OnlineStatus>,
    /// A 104 withholds automatic online access (for the patient banner).
    pub enhanced_review_active: bool,
}

impl App {
    /// Every series of results in the record of the patient with NHS number `nhs`, or (with
    /// `slug`) one series; an unknown series is `NotFound`.
    pub async fn staff_results(&self, who: &StaffPrincipal, nhs: &str, slug: Option<&str>) -> AppResult<StaffResults> {
        let missing = || AppError::NotFound("this record holds no results of that kind".into());
        if slug.is_some_and(|s| !trends::is_series_slug(s)) {
            return Err(missing());
        }
        let l = self.load(who, nhs, Action::RecordViewStaff).await?;
        let mut entries = self.section_entries(&l, Section::Results).await?;
        entries.extend(self.section_entries(&l, Section::Codes).await?);
        let mut series = trends::series_of(&entries);
        if let Some(slug) = slug {
            series.retain(|s| s.slug == slug);
        }
        let readings: usize = series.iter().map(|s| s.readings.len()).sum();
        let what = format!("results series={} readings={readings}", slug.unwrap_or("all"));
        self.audit_look(who, Some(l.patient.id), Action::RecordViewStaff, format!("patient/{}", l.patient.id), what)
            .await?;
        if slug.is_some() && series.is_empty() {
            return Err(missing());
        }
        let policy = self.patients_own_policy(&l).await?;
        let in_series: std::collections::HashSet<EntryId> =
            series.iter().flat_map(|s| s.readings.iter().map(|r| r.entry)).collect();
        let online = entries
            .iter()
            .filter(|e| in_series.contains(&e.id))
            .map(|e| (e.id, OnlineStatus::from(policy.decide(e))))
            .collect();
        Ok(StaffResults { enhanced_review_active: l.enhanced_review.is_active(), patient: l.patient, series, online })
    }
}
