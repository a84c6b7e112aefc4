//! The practice's online-services settings, changed by its practice manager (R1, R13, D7, D9).

use crate::permit;
use crate::{App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::AccessLevel;
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::permissions::Permission;
use caldicott_core::practice::{Asid, OnlineServicesSettings, Practice, ProxyReviewAge};
use chrono::NaiveDate;

/// The settings form as typed: every field still text.
#[derive(Debug, Clone, Default)]
pub struct SettingsInput {
    pub switch_on_day: String,
    pub switch_on_month: String,
    pub switch_on_year: String,
    pub paused: bool,
    /// Why automatic access is paused, and at whose request (needed to pause).
    pub pause_reason: String,
    pub default_level: String,
    pub proxy_review_age: String,
    pub visible_online_by_default: bool,
    pub show_staff_names_to_patients: bool,
    /// Hours before an appointment that online cancelling stops; empty means 24.
    pub cancel_cutoff_hours: String,
    /// Accept pharmacies' Update Record messages (R30).
    pub accept_update_record: bool,
    /// Answer GP Connect Access Record: Structured for clinicians in other care settings.
    pub gp_connect_structured: bool,
    /// Answer GP Connect Access Document (the practice's documents) for them too.
    pub gp_connect_documents: bool,
    /// The practice's ASID on the Spine; empty until the practice is connected.
    pub gp_connect_asid: String,
}

/// A problem with one field, for the form's error summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: &'static str,
    pub message: String,
}

/// Reads the form; an empty switch-on date means "not switched on".
pub fn parse_settings(input: &SettingsInput) -> Result<OnlineServicesSettings, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let parts = [&input.switch_on_day, &input.switch_on_month, &input.switch_on_year].map(|s| s.trim().to_owned());
    let switch_on = if parts.iter().all(String::is_empty) {
        None
    } else {
        match (parts[0].parse::<u32>(), parts[1].parse::<u32>(), parts[2].parse::<i32>()) {
            (Ok(d), Ok(m), Ok(y)) if (2000..=2100).contains(&y) => match NaiveDate::from_ymd_opt(y, m, d) {
                Some(date) => Some(date),
                None => {
                    problems.push(FieldProblem {
                        field: "switch_on_day",
                        message: "The switch-on date must be a real date".into(),
                    });
                    None
                }
            },
            _ => {
                problems.push(FieldProblem {
                    field: "switch_on_day",
                    message:
                        "Enter the switch-on date as day, month and year, for example 31 10 2023, or leave it empty"
                            .into(),
                });
                None
            }
        }
    };
    if input.paused && input.pause_reason.trim().is_empty() {
        problems.push(FieldProblem {
            field: "pause_reason",
            message:
                "Say why automatic access is paused and at whose request, for example \"Data controller (Dr Patel), \
                      pending DPIA review\""
                    .into(),
        });
    }
    if input.pause_reason.chars().count() > 500 {
        problems.push(FieldProblem { field: "pause_reason", message: "Keep the reason to 500 characters".into() });
    }
    let default_level = match AccessLevel::parse(input.default_level.trim()) {
        Some(l) if l != AccessLevel::None => l,
        _ => {
            problems.push(FieldProblem {
                field: "default_level",
                message: "Choose the level automatic access gives".into(),
            });
            AccessLevel::Full
        }
    };
    let proxy_review_age =
        match input.proxy_review_age.trim().parse::<u8>().ok().and_then(|a| ProxyReviewAge::new(a).ok()) {
            Some(a) => a,
            None => {
                problems.push(FieldProblem {
                    field: "proxy_review_age",
                    message: "Choose a review age of 11, 12 or 13".into(),
                });
                ProxyReviewAge::default()
            }
        };
    let cancel_cutoff_hours = match input.cancel_cutoff_hours.trim() {
        "" => 24,
        h => match h.parse::<u16>() {
            Ok(h) if h <= 168 => h,
            _ => {
                problems.push(FieldProblem {
                    field: "cancel_cutoff_hours",
                    message: "Enter the cancelling cut-off as a whole number of hours from 0 to 168".into(),
                });
                24
            }
        },
    };
    let gp_connect_asid = match input.gp_connect_asid.trim() {
        "" => None,
        a => match Asid::parse(a) {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(FieldProblem {
                    field: "gp_connect_asid",
                    message: format!("Enter the ASID the Spine gave the practice: {e}"),
                });
                None
            }
        },
    };
    if problems.is_empty() {
        Ok(OnlineServicesSettings {
            prospective_switch_on: switch_on,
            paused: input.paused,
            pause_reason: if input.paused { input.pause_reason.trim().to_owned() } else { String::new() },
            default_level,
            proxy_review_age,
            visible_online_by_default: input.visible_online_by_default,
            show_staff_names_to_patients: input.show_staff_names_to_patients,
            cancel_cutoff_hours,
            accept_update_record: input.accept_update_record,
            gp_connect_structured: input.gp_connect_structured,
            gp_connect_documents: input.gp_connect_documents,
            gp_connect_asid,
        })
    } else {
        Err(problems)
    }
}

fn describe(s: &OnlineServicesSettings) -> String {
    format!(
        "switch_on={} paused={} pause_reason={:?} default_level={} proxy_review_age={} visible_online_by_default={} show_staff_names={} \
         cancel_cutoff_hours={} accept_update_record={} gp_connect_structured={} gp_connect_documents={} gp_connect_asid={}",
        s.prospective_switch_on.map_or("none".into(), |d| d.to_string()),
        s.paused,
        s.pause_reason,
        s.default_level.as_str(),
        s.proxy_review_age.years(),
        s.visible_online_by_default,
        s.show_staff_names_to_patients,
        s.cancel_cutoff_hours,
        s.accept_update_record,
        s.gp_connect_structured,
        s.gp_connect_documents,
        s.gp_connect_asid.as_ref().map_or("none", |a| a.as_str()),
    )
}

impl App {
    pub async fn practice_settings(&self, who: &StaffPrincipal) -> AppResult<Practice> {
        permit(who, Permission::ChangePracticeSettings)?;
        self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))
    }

    /// Saves new settings, audited with the old and new values. Returns the problems with the
    /// form, if any, without changing anything.
    pub async fn change_practice_settings(
        &self,
        who: &StaffPrincipal,
        input: &SettingsInput,
    ) -> AppResult<Result<Practice, Vec<FieldProblem>>> {
        let practice = self.practice_settings(who).await?;
        let new = match parse_settings(input) {
            Ok(s) => s,
            Err(problems) => return Ok(Err(problems)),
        };
        if new == practice.online {
            return Ok(Ok(practice));
        }
        let audit = self.audit_record(
            who,
            None,
            Action::PracticeSettingsChange,
            format!("practice/{}", practice.id),
            Outcome::Success,
            format!("old: {} new: {}", describe(&practice.online), describe(&new)),
        );
        self.store.set_online_services(practice.id, &new, &audit).await?;
        Ok(Ok(Practice { online: new, ..practice }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(d: &str, m: &str, y: &str, level: &str, age: &str) -> SettingsInput {
        SettingsInput {
            switch_on_day: d.into(),
            switch_on_month: m.into(),
            switch_on_year: y.into(),
            paused: false,
            pause_reason: String::new(),
            default_level: level.into(),
            proxy_review_age: age.into(),
            visible_online_by_default: true,
            show_staff_names_to_patients: false,
            cancel_cutoff_hours: String::new(),
            accept_update_record: true,
            gp_connect_structured: true,
            gp_connect_documents: true,
            gp_connect_asid: String::new(),
        }
    }

    #[test]
    fn the_settings_form_is_checked_field_by_field() {
        let ok = parse_settings(&input("31", "10", "2023", "full", "11")).unwrap();
        assert_eq!(ok.prospective_switch_on, NaiveDate::from_ymd_opt(2023, 10, 31));
        assert_eq!(parse_settings(&input("", "", "", "detailed", "13")).unwrap().prospective_switch_on, None);
        let bad = parse_settings(&input("31", "2", "2024", "none", "14")).unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|p| p.field).collect();
        assert_eq!(fields, vec!["switch_on_day", "default_level", "proxy_review_age"]);
        assert!(parse_settings(&input("1", "x", "2024", "full", "11")).is_err());
        // The ASID: empty (not connected), or digits only.
        assert_eq!(ok.gp_connect_asid, None);
        let asid = SettingsInput { gp_connect_asid: " 918999198738 ".into(), ..input("", "", "", "full", "11") };
        assert_eq!(parse_settings(&asid).unwrap().gp_connect_asid.unwrap().as_str(), "918999198738");
        let asid = SettingsInput { gp_connect_asid: "A81001".into(), ..input("", "", "", "full", "11") };
        assert_eq!(parse_settings(&asid).unwrap_err()[0].field, "gp_connect_asid");
    }
}
