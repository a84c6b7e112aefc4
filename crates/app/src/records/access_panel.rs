//! A patient's own online access settings, changed by staff: the patient's own level with its
//! start date, which replaces automatic access in both directions (R13, D10); historic access
//! (the whole record, chosen explicitly); the return to the practice's automatic access; and
//! the opt-out from automatic access (R1). Every change is audited with the old and new values
//! (R44). 104 and 106 never change these settings (R3); they are recorded separately.
//!
//! Before a change is saved, [`App::preview_online_change`] says what it will change for the
//! patient and for each proxy: which kinds of entry, from when, stop or start being visible.

use crate::permit;
use crate::record::Loaded;
use crate::redaction::EnhancedReviewCode;
use crate::{App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::{
    AccessLevel, IdentityLevel, LevelGrant, OnlineAccessSettings, OwnLevel, ProxyLink, RecordFrom,
};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::entry::{Entry, Section};
use caldicott_core::patient::PersonName;
use caldicott_core::permissions::Permission;
use caldicott_core::snomed::enhanced_review;
use caldicott_core::uk::uk_date;
use caldicott_core::visibility::{AccessPolicy, AutomaticBlock, LevelReach, Withheld};
use caldicott_store::{EntryCursor, EntryQuery};
use chrono::NaiveDate;

/// One change to the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    /// Sets the patient's own level (R13): it replaces automatic access, lower or higher.
    /// `None` means no record access. `from` is the start date of the level; the whole record
    /// (`RecordFrom::Beginning`, historic access) needs `historic_confirmed`, so that an empty
    /// date never grants the historic record by accident.
    SetLevel {
        level: AccessLevel,
        from: RecordFrom,
        historic_confirmed: bool,
    },
    /// Back to the practice's automatic access: the own level and every grant made by hand end.
    UsePracticeDefault,
    /// Ends one grant made by hand.
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
    let own = s.own_level.as_ref().map_or("automatic".to_owned(), |o| format!("{}@{}", o.level.as_str(), o.set_on));
    let hold = s.transfer_review_pending.map_or(String::new(), |d| format!(" transfer_held_since={d}"));
    format!("level={own} grants=[{}] opted_out={}{hold}", grants.join(","), s.opted_out)
}

/// The settings after `change`, or why it cannot be made.
fn apply(
    old: &OnlineAccessSettings,
    change: &AccessChange,
    who: &StaffPrincipal,
    today: NaiveDate,
) -> AppResult<OnlineAccessSettings> {
    let mut new = old.clone();
    match change {
        AccessChange::SetLevel { level, from, historic_confirmed } => {
            if *level == AccessLevel::None {
                new.grants.clear();
            } else {
                match from {
                    RecordFrom::Date(d) if *d > today => {
                        return Err(AppError::BadRequest("a level's start date cannot be in the future".into()));
                    }
                    RecordFrom::Beginning if !historic_confirmed => {
                        return Err(AppError::BadRequest(
                            "giving the whole record (historic access) needs its own confirmation: review the whole \
                             record first, then confirm"
                                .into(),
                        ));
                    }
                    _ => {}
                }
                // Grants above the new level end; lower ones keep their own start dates.
                new.grants.retain(|g| g.level < *level);
                new.grants.push(LevelGrant {
                    level: *level,
                    from: *from,
                    granted_on: today,
                    granted_by: who.name.clone(),
                });
            }
            new.own_level = Some(OwnLevel { level: *level, set_on: today, set_by: who.name.clone() });
            // Setting the level is the new decision a transferred record waits for (R7).
            new.transfer_review_pending = None;
        }
        AccessChange::UsePracticeDefault => {
            new.own_level = None;
            new.grants.clear();
            new.transfer_review_pending = None;
        }
        AccessChange::Remove { level } => {
            if !new.grants.iter().any(|g| g.level == *level) {
                return Err(AppError::NotFound(format!("there is no {} grant to remove", level.display())));
            }
            new.grants.retain(|g| g.level != *level);
            // Removing the grant at the own level lowers the own level to what is left; with
            // nothing left the patient returns to automatic access ("None" is chosen, not left).
            if new.own_level.as_ref().is_some_and(|o| o.level == *level) {
                new.own_level = new.grants.iter().map(|g| g.level).max().map(|level| OwnLevel {
                    level,
                    set_on: today,
                    set_by: who.name.clone(),
                });
            }
        }
        AccessChange::OptOut(v) => new.opted_out = *v,
    }
    Ok(new)
}

/// A hypothetical change whose effect staff see before they confirm it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineChange {
    Access(AccessChange),
    EnhancedReview(EnhancedReviewCode),
}

/// What a viewer's access amounts to, in a form staff can read: the effective level and from
/// when each level reaches, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveAccess {
    pub level: AccessLevel,
    pub reach: Vec<LevelReach>,
    pub none_because: Option<Withheld>,
    /// The patient's own level and the day it was set, when it replaces automatic access.
    pub own_level: Option<(AccessLevel, NaiveDate)>,
    pub automatic: Result<LevelReach, AutomaticBlock>,
}

impl EffectiveAccess {
    pub fn of(policy: &AccessPolicy) -> Self {
        Self {
            level: policy.highest_level(),
            reach: policy.reach(),
            none_because: policy.denied(),
            own_level: policy.own_level(),
            automatic: policy.automatic(),
        }
    }
}

/// Entries of one section that start or stop being visible, and from when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionChange {
    pub section: Section,
    pub count: usize,
    /// The UK date the earliest of them was entered.
    pub earliest: NaiveDate,
    pub now_visible: bool,
}

/// The effect of a change on one viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerEffect {
    /// "the patient", or the proxy's relationship and name.
    pub who: String,
    pub proxy: Option<ProxyLink>,
    pub before: EffectiveAccess,
    pub after: EffectiveAccess,
    pub changes: Vec<SectionChange>,
}

/// What a change will do, before it is saved.
#[derive(Debug, Clone)]
pub struct OnlineChangePreview {
    pub patient_name: PersonName,
    pub change: OnlineChange,
    pub settings_before: OnlineAccessSettings,
    pub settings_after: OnlineAccessSettings,
    pub patient: ViewerEffect,
    pub proxies: Vec<ViewerEffect>,
    /// The patient has no online account yet: the effect applies once they have one.
    pub patient_has_account: bool,
}

/// Compares two policies over every entry, by section.
fn diff(entries: &[Entry], before: &AccessPolicy, after: &AccessPolicy) -> Vec<SectionChange> {
    let mut out: Vec<SectionChange> = Vec::new();
    for e in entries {
        let (was, is) = (before.decide(e).is_shown(), after.decide(e).is_shown());
        if was == is {
            continue;
        }
        let section = e.kind().section();
        let date = uk_date(e.entered_at);
        match out.iter_mut().find(|c| c.section == section && c.now_visible == is) {
            Some(c) => {
                c.count += 1;
                c.earliest = c.earliest.min(date);
            }
            None => out.push(SectionChange { section, count: 1, earliest: date, now_visible: is }),
        }
    }
    out.sort_by_key(|c| (c.now_visible, c.section as usize));
    out
}

impl App {
    /// Applies one change to a patient's online access settings.
    pub async fn change_access(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        change: &AccessChange,
    ) -> AppResult<OnlineAccessSettings> {
        permit(who, Permission::ChangeOnlineAccess)?;
        let patient = self.patient_here(who, nhs).await?;
        let old = self.store.access_facts(who.practice, patient.id).await?.settings;
        let new = apply(&old, change, who, self.today())?;
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

    /// What `change` would change for the patient and for each proxy, before it is made: the
    /// effective level before and after, and which kinds of entry, from when, would stop or
    /// start being visible online. Reading the record for it is audited.
    pub async fn preview_online_change(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        change: &OnlineChange,
    ) -> AppResult<OnlineChangePreview> {
        match change {
            OnlineChange::Access(_) => permit(who, Permission::ChangeOnlineAccess)?,
            OnlineChange::EnhancedReview(_) => permit(who, Permission::DecideEnhancedReviews)?,
        }
        let l = self.load(who, nhs, Action::RecordViewStaff).await?;
        let now = self.now();
        let mut after = l.clone();
        match change {
            OnlineChange::Access(c) => after.access = apply(&l.access, c, who, self.today())?,
            OnlineChange::EnhancedReview(code) => {
                let facts = self.store.access_facts(l.practice.id, l.patient.id).await?;
                let mut codes = facts.enhanced_review_codes;
                codes.push((code.concept().0.to_owned(), now));
                after.enhanced_review = enhanced_review(codes.iter().map(|(c, t)| (c.as_str(), *t)));
            }
        }
        let entries = self.every_entry(&l).await?;
        // The patient as they would be with an account verified to P9, so the preview says what
        // the settings do even before the patient signs up.
        let identity = Some(l.identity.unwrap_or(IdentityLevel::P9).max(IdentityLevel::P9));
        let effect =
            |who: String, proxy: Option<ProxyLink>, identity: Option<IdentityLevel>, b: &Loaded, a: &Loaded| {
                let pb = self.policy_for(b, proxy.as_ref(), identity);
                let pa = self.policy_for(a, proxy.as_ref(), identity);
                ViewerEffect {
                    who,
                    changes: diff(&entries, &pb, &pa),
                    before: EffectiveAccess::of(&pb),
                    after: EffectiveAccess::of(&pa),
                    proxy,
                }
            };
        let patient = effect("the patient".into(), None, identity, &l, &after);
        let mut proxies = Vec::new();
        for (link, name, identity) in self.proxy_viewers(&l).await? {
            proxies.push(effect(name, Some(link), identity, &l, &after));
        }
        let rec = self.audit_record(
            who,
            Some(l.patient.id),
            Action::RecordViewStaff,
            format!("patient/{}", l.patient.id),
            Outcome::Success,
            format!("preview of an online access change: entries={}", entries.len()),
        );
        self.audit.record(l.practice.id, rec).await?;
        Ok(OnlineChangePreview {
            patient_name: l.patient.name.clone(),
            change: change.clone(),
            settings_before: l.access.clone(),
            settings_after: after.access.clone(),
            patient,
            proxies,
            patient_has_account: l.identity.is_some(),
        })
    }

    /// Everyone acting for the loaded patient: each proxy link with the proxy's name and
    /// relationship ("Hannah Rivers (mother)") and the proxy's best identity level.
    pub(crate) async fn proxy_viewers(&self, l: &Loaded) -> AppResult<Vec<(ProxyLink, String, Option<IdentityLevel>)>> {
        let mut out = Vec::new();
        for link in self.store.proxy_links_for_patient(l.practice.id, l.patient.id).await? {
            let name = match self.store.patient(l.practice.id, link.proxy).await? {
                Some(p) => format!("{} {} ({})", p.name.given, p.name.family, link.relationship.to_lowercase()),
                None => link.relationship.clone(),
            };
            let identity =
                self.store.online_accounts(l.practice.id, link.proxy).await?.iter().map(|a| a.identity).max();
            out.push((link, name, identity));
        }
        Ok(out)
    }

    /// Every entry of a loaded record, newest first, read in batches.
    pub(crate) async fn every_entry(&self, l: &Loaded) -> AppResult<Vec<Entry>> {
        self.entries_of(l.practice.id, l.patient.id, None).await
    }

    /// Every entry of one section of a loaded record, newest first, however many there are.
    pub(crate) async fn section_entries(&self, l: &Loaded, section: Section) -> AppResult<Vec<Entry>> {
        self.entries_of(l.practice.id, l.patient.id, Some(section)).await
    }

    /// Every entry (of one section, or all), read in batches so that no fixed cap drops any.
    pub(crate) async fn entries_of(
        &self,
        practice: caldicott_core::ids::PracticeId,
        patient: caldicott_core::ids::PatientId,
        section: Option<Section>,
    ) -> AppResult<Vec<Entry>> {
        const BATCH: u32 = 1000;
        let mut all = Vec::new();
        let mut after: Option<EntryCursor> = None;
        loop {
            let batch = self.store.entries(practice, patient, EntryQuery { section, after, limit: BATCH }).await?;
            let done = batch.len() < BATCH as usize;
            after = batch.last().map(EntryCursor::of);
            all.extend(batch);
            if done {
                return Ok(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caldicott_core::ids::{PracticeId, StaffId};
    use uuid::Uuid;

    fn who() -> StaffPrincipal {
        StaffPrincipal {
            practice: PracticeId::from_uuid(Uuid::from_u128(1)),
            staff: StaffId::from_uuid(Uuid::from_u128(2)),
            name: "Dr A".into(),
            role: caldicott_core::staff::Role::Clinician,
        }
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn the_whole_record_needs_its_own_confirmation() {
        let today = d(2026, 12, 5);
        let unconfirmed =
            AccessChange::SetLevel { level: AccessLevel::Full, from: RecordFrom::Beginning, historic_confirmed: false };
        assert!(matches!(
            apply(&OnlineAccessSettings::default(), &unconfirmed, &who(), today),
            Err(AppError::BadRequest(_))
        ));
        let confirmed =
            AccessChange::SetLevel { level: AccessLevel::Full, from: RecordFrom::Beginning, historic_confirmed: true };
        let s = apply(&OnlineAccessSettings::default(), &confirmed, &who(), today).unwrap();
        assert_eq!(s.grants[0].from, RecordFrom::Beginning);
        assert_eq!(s.own_level.unwrap().level, AccessLevel::Full);
    }

    #[test]
    fn setting_a_lower_level_ends_the_grants_above_it_and_keeps_those_below() {
        let today = d(2026, 12, 5);
        let set = |level, from| AccessChange::SetLevel { level, from, historic_confirmed: true };
        let s = apply(
            &OnlineAccessSettings::default(),
            &set(AccessLevel::Full, RecordFrom::Date(d(2024, 1, 1))),
            &who(),
            today,
        )
        .unwrap();
        let s = apply(&s, &set(AccessLevel::Summary, RecordFrom::Beginning), &who(), today).unwrap();
        let s = apply(&s, &set(AccessLevel::Detailed, RecordFrom::Date(d(2025, 1, 1))), &who(), today).unwrap();
        let levels: Vec<_> = s.grants.iter().map(|g| (g.level, g.from)).collect();
        assert_eq!(
            levels,
            vec![
                (AccessLevel::Summary, RecordFrom::Beginning),
                (AccessLevel::Detailed, RecordFrom::Date(d(2025, 1, 1)))
            ]
        );
        let none = apply(&s, &set(AccessLevel::None, RecordFrom::Beginning), &who(), today).unwrap();
        assert!(none.grants.is_empty());
        assert_eq!(none.own_level.as_ref().unwrap().level, AccessLevel::None);
        let back = apply(&none, &AccessChange::UsePracticeDefault, &who(), today).unwrap();
        assert_eq!(back, OnlineAccessSettings::default());
    }
}
