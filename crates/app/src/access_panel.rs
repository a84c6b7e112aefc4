//! A patient's own online access settings, changed by staff: levels granted by hand, each with
//! its own start date (R13), historic access (a grant from the beginning of the record), and
//! the opt-out from automatic access (R1). Every change is audited with the old and new values
//! (R44). 104 and 106 never change these settings (R3); they are recorded separately.

use crate::{App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::{AccessLevel, LevelGrant, OnlineAccessSettings, RecordFrom};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::staff::Role;

/// One change to the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    /// Grants a level from a date, or from the beginning (historic access); replaces an earlier
    /// grant of the same level.
    Grant {
        level: AccessLevel,
        from: RecordFrom,
    },
    Remove {
        level: AccessLevel,
    },
    OptOut(bool),
}

fn describe(s: &OnlineAccessSettings) -> String {
    let grants: Vec<String> = s
        .grants
        .iter()
        .map(|g| match g.from {
            RecordFrom::Beginning => format!("{}:whole-record", g.level.as_str()),
            RecordFrom::Date(d) => format!("{}:from-{d}", g.level.as_str()),
        })
        .collect();
    format!("grants=[{}] opted_out={}", grants.join(","), s.opted_out)
}

fn require_access_manager(who: &StaffPrincipal) -> AppResult<()> {
    match who.role {
        Role::Clinician | Role::PracticeManager => Ok(()),
        _ => Err(AppError::Forbidden("only clinicians and practice managers change a patient's online access".into())),
    }
}

impl App {
    /// Applies one change to a patient's online access settings.
    pub async fn change_access(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        change: &AccessChange,
    ) -> AppResult<OnlineAccessSettings> {
        require_access_manager(who)?;
        let patient = self.patient_here(who, nhs).await?;
        let old = self.store.access_facts(who.practice, patient.id).await?.settings;
        let today = self.now().date_naive();
        let mut new = old.clone();
        match change {
            AccessChange::Grant { level, from } => {
                if *level == AccessLevel::None {
                    return Err(AppError::BadRequest("choose a level to grant".into()));
                }
                if let RecordFrom::Date(d) = from {
                    if *d > today {
                        return Err(AppError::BadRequest("a grant's start date cannot be in the future".into()));
                    }
                }
                new.grants.retain(|g| g.level != *level);
                new.grants.push(LevelGrant {
                    level: *level,
                    from: *from,
                    granted_on: today,
                    granted_by: who.name.clone(),
                });
            }
            AccessChange::Remove { level } => {
                if !new.grants.iter().any(|g| g.level == *level) {
                    return Err(AppError::NotFound(format!("there is no {} grant to remove", level.display())));
                }
                new.grants.retain(|g| g.level != *level);
            }
            AccessChange::OptOut(v) => new.opted_out = *v,
        }
        if new == old {
            return Ok(old);
        }
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::AccessSettingsChange,
            format!("patient/{}", patient.id),
            Outcome::Success,
            format!("old: {} new: {}", describe(&old), describe(&new)),
        );
        self.store.set_access_settings(who.practice, patient.id, &new, &audit).await?;
        Ok(new)
    }
}
