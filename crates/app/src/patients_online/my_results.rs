//! Results over time for a patient, or a proxy acting for them: every series of readings they
//! may follow (HbA1c, blood pressure, eGFR, cholesterol, weight, BMI and other coded numeric
//! results), made only from the entries the visibility engine shows them, so a hidden result is
//! absent from the chart, its scale and its table. Each look is audited like a look at the
//! record.

use crate::patient_services::{no_record_sentence, PatientPrincipal, RecordHolder};
use crate::{App, AppError, AppResult};
use caldicott_core::entry::Section;
use caldicott_core::ids::ProxyLinkId;
use caldicott_core::trends::{self, Series};

/// The series a viewer may follow, or one of them.
#[derive(Debug, Clone)]
pub struct MyResults {
    /// "Your" or the person's name, for headings.
    pub whose: String,
    pub holder: RecordHolder,
    pub link: Option<ProxyLinkId>,
    /// Set when the viewer sees no record at all: a sentence for the viewer.
    pub no_record: Option<String>,
    /// Oldest reading first in each; the named measures first.
    pub series: Vec<Series>,
}

impl App {
    /// Every series of results the signed-in person may follow in their own record, or (with
    /// `link`) in the record of the person they act for; with `slug`, that one series only. A
    /// series the viewer is not shown any reading of is `NotFound`, as one that does not exist.
    pub async fn my_results(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        slug: Option<&str>,
    ) -> AppResult<MyResults> {
        let missing = || AppError::NotFound("There are no results of that kind to show.".into());
        if slug.is_some_and(|s| !trends::is_series_slug(s)) {
            return Err(missing());
        }
        let (target, view) = self.my_outside_view(me, link).await?;
        let results = view.all(self, Some(Section::Results)).await?;
        let codes = view.all(self, Some(Section::Codes)).await?;
        let series = results
            .join(codes)
            .map(|(results, codes)| {
                let mut all = trends::series_of(results.iter().chain(codes.iter()).map(|e| e.get()));
                if let Some(slug) = slug {
                    all.retain(|s| s.slug == slug);
                }
                all
            })
            .audited(self, me.practice, |series| {
                let readings: usize = series.iter().map(|s| s.readings.len()).sum();
                self.online_look(me, &view, target, format!("results series={}", slug.unwrap_or("all")), readings)
            })
            .await?;
        if slug.is_some() && series.is_empty() && view.policy.denied().is_none() {
            return Err(missing());
        }
        let whose = match view.link {
            Some(_) => format!("{} {}", view.l.patient.name.given, view.l.patient.name.family),
            None => "Your".into(),
        };
        Ok(MyResults {
            whose,
            holder: RecordHolder::of(&view.l.patient),
            link: view.link.as_ref().map(|l| l.id),
            no_record: view.policy.denied().map(|w| no_record_sentence(w, view.link.is_some())),
            series,
        })
    }
}
