//! The online-visibility engine: which record entries an online viewer may see, and for every
//! entry withheld, the rule that withheld it (R1–R16, R22, R29).
//!
//! The engine is a pure function of (viewer, facts, now). It works in two steps so that it can be
//! applied to a whole record or to a stream of entries read page by page:
//! 1. [`AccessPolicy::new`] decides, once per request, what the viewer may see at all: whether the
//!    viewer has record access, and for each access level the earliest entered date it reaches.
//! 2. [`AccessPolicy::decide`] decides each entry with a handful of comparisons.
//!
//! Reasons are reported most general first: if the viewer has no record access at all, every entry
//! carries that reason, because it is the one staff must act on.

use crate::access::{AccessLevel, IdentityLevel, OnlineAccessSettings, ProxyLink, ProxyStatus, RecordFrom, Viewer};
use crate::entry::{
    ConsultationStatus, DocumentReview, Entry, EntryBody, EntryKind, Filing, HiddenReason, OnlineVisibility,
};
use crate::patient::{birthday, Patient};
use crate::practice::OnlineServicesSettings;
use crate::snomed::EnhancedReview;
use crate::uk::{uk_date, uk_start_of};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// The facts about one record that decide its online view (besides the entries themselves).
#[derive(Debug, Clone, Copy)]
pub struct RecordFacts<'a> {
    pub practice: &'a OnlineServicesSettings,
    pub patient: &'a Patient,
    pub access: &'a OnlineAccessSettings,
    /// The 104/106 status, worked out from the record's coded entries by
    /// [`crate::snomed::enhanced_review`].
    pub enhanced_review: EnhancedReview,
    /// The UK date of the latest transfer-in of a record from another practice (R7): proxy links
    /// granted on or before it do not reach the entries that came with it (the patient's own
    /// grants are held by [`OnlineAccessSettings::transfer_review_pending`]).
    pub transferred_in: Option<NaiveDate>,
}

/// Why automatic prospective access does not apply to a patient (R1, R2, D9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "because", rename_all = "snake_case")]
pub enum AutomaticBlock {
    UnderSixteen { turns_sixteen: NaiveDate },
    NotSwitchedOn,
    SwitchOnScheduled { on: NaiveDate },
    Paused,
    EnhancedReview,
    OptedOut,
}

impl AutomaticBlock {
    pub fn rule(self) -> &'static str {
        match self {
            Self::EnhancedReview => "R2",
            _ => "R1",
        }
    }
    pub fn explain(self) -> String {
        match self {
            Self::UnderSixteen { turns_sixteen } => {
                format!("automatic access starts at 16; the patient turns 16 on {turns_sixteen}")
            }
            Self::NotSwitchedOn => "the practice has not switched on automatic prospective access".into(),
            Self::SwitchOnScheduled { on } => format!("the practice switches on automatic access on {on}"),
            Self::Paused => "automatic access is paused at the practice's request".into(),
            Self::EnhancedReview => {
                "the record has an active 104 code (enhanced review indicated) with no later 106".into()
            }
            Self::OptedOut => "the patient opted out of automatic access".into(),
        }
    }
}

/// Why an entry is withheld from an online viewer. Each names the rule that withheld it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "withheld", rename_all = "snake_case")]
pub enum Withheld {
    // The viewer sees no record at all.
    NoOnlineAccount,
    IdentityNotVerified {
        level: IdentityLevel,
    },
    NotRegistered,
    Deceased,
    NoRecordAccess {
        automatic: AutomaticBlock,
    },
    ProxyRevoked,
    ProxyRefused,
    ProxySuspended,
    ProxyEnded {
        on: NaiveDate,
    },
    ProxyPredatesRegistration,
    ProxyNotStarted {
        on: NaiveDate,
    },
    ProxySuspendedAtSixteen {
        on: NaiveDate,
    },
    ProxySuspendedForReview {
        age: u8,
        on: NaiveDate,
    },
    ProxyNoRecordAccess,
    /// The practice set the patient's own level to None (R13).
    LevelSetToNone {
        on: NaiveDate,
    },
    /// A transferred-in entry that only a grant made before the transfer would reach (R7).
    TransferredAwaitingReview {
        on: NaiveDate,
    },
    // This entry is never shown online.
    NeverOnline {
        kind: EntryKind,
    },
    DraftConsultation,
    Unfiled,
    UnreviewedDocument,
    Nopat,
    Safeguarding,
    Hidden {
        reason: HiddenReason,
    },
    /// Replaced by a later version of what it recorded (R28): kept for audit only.
    Superseded,
    // The viewer's access does not reach this entry.
    LevelTooLow {
        needed: AccessLevel,
        granted: AccessLevel,
        by: GrantSource,
    },
    BeforeStart {
        start: NaiveDate,
        by: GrantSource,
    },
}

/// Where the access that reaches an entry (or fails to) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
    /// Automatic prospective access (R1, R4).
    Automatic,
    /// A level granted by hand (R13).
    Manual,
    /// A proxy's own scope (R15).
    Proxy,
}

impl Withheld {
    /// The rule of the domain specification that withholds the entry.
    pub fn rule(self) -> &'static str {
        match self {
            Self::NoOnlineAccount => "R1",
            Self::IdentityNotVerified { .. } => "R22",
            Self::NotRegistered | Self::Deceased | Self::ProxyPredatesRegistration => "R6",
            Self::NoRecordAccess { automatic } => automatic.rule(),
            Self::ProxyRevoked => "R20",
            Self::ProxyRefused => "R17",
            Self::ProxySuspended | Self::ProxySuspendedAtSixteen { .. } | Self::ProxySuspendedForReview { .. } => "R16",
            Self::ProxyEnded { .. } | Self::ProxyNotStarted { .. } | Self::ProxyNoRecordAccess => "R15",
            Self::TransferredAwaitingReview { .. } => "R7",
            Self::NeverOnline { .. }
            | Self::DraftConsultation
            | Self::Unfiled
            | Self::UnreviewedDocument
            | Self::Safeguarding
            | Self::Hidden { .. } => "R8",
            Self::Nopat => "R29",
            Self::Superseded => "R28",
            Self::LevelTooLow { by: GrantSource::Proxy, .. } | Self::BeforeStart { by: GrantSource::Proxy, .. } => {
                "R15"
            }
            Self::LevelTooLow { .. }
            | Self::BeforeStart { by: GrantSource::Manual, .. }
            | Self::LevelSetToNone { .. } => "R13",
            Self::BeforeStart { by: GrantSource::Automatic, .. } => "R4",
        }
    }

    /// A sentence for staff: why this viewer cannot see this entry.
    pub fn explain(self) -> String {
        match self {
            Self::NoOnlineAccount => "has no online account".into(),
            Self::IdentityNotVerified { level } => {
                format!("identity verified only to {}; record access needs P9", level.as_str())
            }
            Self::NotRegistered => "the patient is not registered at this practice".into(),
            Self::Deceased => "the patient has died".into(),
            Self::NoRecordAccess { automatic } => format!("no record access: {}", automatic.explain()),
            Self::ProxyRevoked => "this proxy's access was revoked".into(),
            Self::ProxyRefused => "the request for this proxy access was refused".into(),
            Self::ProxySuspended => "this proxy's access is suspended pending review".into(),
            Self::ProxyEnded { on } => format!("this proxy's access ended on {on}"),
            Self::ProxyNotStarted { on } => format!("this proxy's access starts on {on}"),
            Self::ProxyPredatesRegistration => {
                "this proxy access was granted before the patient's current registration".into()
            }
            Self::ProxySuspendedAtSixteen { on } => {
                format!("proxy access was suspended when the patient turned 16 on {on}")
            }
            Self::ProxySuspendedForReview { age, on } => {
                format!("proxy access was suspended for review when the patient turned {age} on {on}")
            }
            Self::ProxyNoRecordAccess => "this proxy has no record access".into(),
            Self::LevelSetToNone { on } => format!("the practice set this patient's record access to None on {on}"),
            Self::TransferredAwaitingReview { on } => format!(
                "transferred in on {on}: access given before the transfer does not reach it; grant access again \
                 after reviewing the transferred record"
            ),
            Self::NeverOnline { kind } => format!("{} entries are never shown online", kind.as_str().replace('_', " ")),
            Self::DraftConsultation => "draft consultations are never shown online".into(),
            Self::Unfiled => "not yet filed".into(),
            Self::UnreviewedDocument => "document not yet reviewed".into(),
            Self::Nopat => "labelled NOPAT (not for patient disclosure)".into(),
            Self::Superseded => "superseded by a later version: kept for audit only".into(),
            Self::Safeguarding => "safeguarding-relevant".into(),
            Self::Hidden { reason } => format!("hidden online: {}", reason.display()),
            Self::LevelTooLow { needed, granted, .. } => {
                format!("needs {} access; the viewer has {}", needed.display(), granted.display())
            }
            Self::BeforeStart { start, .. } => format!("entered before the viewer's access start date {start}"),
        }
    }
}

/// The decision for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Shown,
    Withheld(Withheld),
}

impl Decision {
    pub fn is_shown(self) -> bool {
        matches!(self, Self::Shown)
    }
}

/// An entry (or something standing for one) that the engine decided to show to one online
/// viewer. Only [`AccessPolicy::show`] and [`AccessPolicy::shown`] make one: the field is
/// private and there is no other constructor, so every output for a patient, a proxy or an app
/// that takes `Shown<…>` cannot be handed an undecided entry — such code does not compile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Shown<T>(T);

impl<T> Shown<T> {
    /// The shown value, for the output to read.
    pub fn get(&self) -> &T {
        &self.0
    }

    /// Gives the value up (for an output that needs it owned); what it becomes is no longer
    /// marked as shown.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Shown<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// How far one access level reaches back, and which grant gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LevelReach {
    pub level: AccessLevel,
    /// `None`: the whole record (historic access).
    pub from: Option<NaiveDate>,
    pub by: GrantSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Threshold {
    from: Option<DateTime<Utc>>,
    date: Option<NaiveDate>,
    by: GrantSource,
}

/// What one viewer may see of one record, decided once and applied to each entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    denied: Option<Withheld>,
    /// Indexed by `AccessLevel as usize` (Summary..=Full); `None` when no grant reaches that level.
    reach: [Option<Threshold>; 5],
    /// The same for entries transferred in (R7): only grants made after the latest transfer.
    reach_transferred: [Option<Threshold>; 5],
    transferred_in: Option<NaiveDate>,
    highest: AccessLevel,
    /// Which rule a too-low level falls under: R15 for a proxy's scope, R13 for the patient.
    limited_by: GrantSource,
    automatic: Result<LevelReach, AutomaticBlock>,
    /// The patient's own level and when it was set, when it replaces automatic access.
    own: Option<(AccessLevel, NaiveDate)>,
}

/// The instant a rule's date begins: midnight UK time (dates are UK dates).
fn start_of(date: NaiveDate) -> DateTime<Utc> {
    uk_start_of(date)
}

impl AccessPolicy {
    /// Decides what `viewer` may see of the record described by `facts` at `now`.
    pub fn new(viewer: Viewer<'_>, facts: RecordFacts<'_>, now: DateTime<Utc>) -> Self {
        let today = uk_date(now);
        let patient = facts.patient;
        let automatic = automatic_access(facts, today);
        let limited_by = match viewer {
            Viewer::Patient { .. } => GrantSource::Manual,
            Viewer::Proxy { .. } => GrantSource::Proxy,
        };
        let denied = |w| Self {
            denied: Some(w),
            reach: [None; 5],
            reach_transferred: [None; 5],
            transferred_in: facts.transferred_in,
            highest: AccessLevel::None,
            limited_by,
            automatic,
            own: None,
        };

        // R6: access to this practice's record ends when the patient leaves it or dies.
        let Some(registration) = patient.registration_on(today) else {
            return denied(Withheld::NotRegistered);
        };
        if patient.is_deceased_on(today) {
            return denied(Withheld::Deceased);
        }

        // (level, from, source, whether it reaches entries transferred in: R7).
        let mut grants: Vec<(AccessLevel, RecordFrom, GrantSource, bool)> = Vec::new();
        // R7: after a transfer-in, the patient's grants reach what it brought only once staff set
        // the level again (transfer-in holds them until then), and a proxy link only if it was
        // granted after the day of the transfer.
        let hold = facts.access.transfer_review_pending;
        let manual_reaches = hold.is_none();
        let mut own_level = None;
        match viewer {
            Viewer::Patient { identity } => {
                match identity {
                    None => return denied(Withheld::NoOnlineAccount),
                    Some(level) if level < IdentityLevel::P9 => {
                        return denied(Withheld::IdentityNotVerified { level });
                    }
                    Some(_) => {}
                }
                // R7: a setting made before the current registration began does not carry over.
                let current = |on: NaiveDate| on >= registration.started && on <= today;
                let manual = facts.access.grants.iter().filter(|g| current(g.granted_on));
                match facts.access.own_level.as_ref().filter(|o| current(o.set_on)) {
                    // R13, D10: the patient's own level replaces automatic access, both ways.
                    Some(own) => {
                        if own.level == AccessLevel::None {
                            let none = Some((AccessLevel::None, own.set_on));
                            return Self { own: none, ..denied(Withheld::LevelSetToNone { on: own.set_on }) };
                        }
                        grants.extend(
                            manual
                                .filter(|g| g.level <= own.level)
                                .map(|g| (g.level, g.from, GrantSource::Manual, manual_reaches)),
                        );
                        // The own level reaches at least from the day it was set, whatever later start a
                        // grant at the same level has (raising a level never narrows it).
                        grants.push((own.level, RecordFrom::Date(own.set_on), GrantSource::Manual, manual_reaches));
                        own_level = Some((own.level, own.set_on));
                    }
                    None => {
                        if let Ok(auto) = automatic {
                            let from = auto.from.map_or(RecordFrom::Beginning, RecordFrom::Date);
                            grants.push((auto.level, from, GrantSource::Automatic, true));
                        }
                        grants.extend(manual.map(|g| (g.level, g.from, GrantSource::Manual, manual_reaches)));
                    }
                }
                if grants.iter().all(|(level, ..)| *level == AccessLevel::None) {
                    return match automatic {
                        Err(block) => denied(Withheld::NoRecordAccess { automatic: block }),
                        Ok(_) => denied(Withheld::NoRecordAccess { automatic: AutomaticBlock::NotSwitchedOn }),
                    };
                }
            }
            Viewer::Proxy { link, identity } => {
                if let Some(w) = proxy_denial(link, identity, patient, facts.practice, registration.started, today) {
                    return denied(w);
                }
                let after_transfer = facts.transferred_in.is_none_or(|on| link.granted_on > on);
                grants.push((link.scope.record, link.scope.record_from, GrantSource::Proxy, after_transfer));
            }
        }

        let highest = grants.iter().map(|(level, ..)| *level).max().unwrap_or(AccessLevel::None);
        let reach = reach_of(grants.iter().map(|&(l, f, b, _)| (l, f, b)));
        let reach_transferred = if grants.iter().all(|(.., reaches)| *reaches) {
            reach
        } else {
            reach_of(grants.iter().filter(|(.., reaches)| *reaches).map(|&(l, f, b, _)| (l, f, b)))
        };
        Self {
            denied: None,
            reach,
            reach_transferred,
            transferred_in: facts.transferred_in.or(hold),
            highest,
            limited_by,
            automatic,
            own: own_level,
        }
    }

    /// `entry`, marked as shown, when this viewer may see it; `None` when it is withheld.
    #[inline]
    pub fn show<E: std::borrow::Borrow<Entry>>(&self, entry: E) -> Option<Shown<E>> {
        self.decide(entry.borrow()).is_shown().then_some(Shown(entry))
    }

    /// The entries of `entries` this viewer may see, in order, each marked as shown.
    pub fn shown<E: std::borrow::Borrow<Entry>>(&self, entries: impl IntoIterator<Item = E>) -> Vec<Shown<E>> {
        entries.into_iter().filter_map(|e| self.show(e)).collect()
    }

    /// The decision for one entry.
    #[inline]
    pub fn decide(&self, entry: &Entry) -> Decision {
        if let Some(w) = self.denied {
            return Decision::Withheld(w);
        }
        let needed = match entry_online_level(entry) {
            Ok(needed) => needed,
            Err(w) => return Decision::Withheld(w),
        };
        let decision = self.decide_by(&self.reach, needed, entry);
        match (self.transferred_in, &entry.origin) {
            (Some(on), crate::entry::Origin::TransferredIn { .. }) if decision.is_shown() => {
                match self.decide_by(&self.reach_transferred, needed, entry) {
                    Decision::Shown => Decision::Shown,
                    Decision::Withheld(_) => Decision::Withheld(Withheld::TransferredAwaitingReview { on }),
                }
            }
            _ => decision,
        }
    }

    #[inline]
    fn decide_by(&self, reach: &[Option<Threshold>; 5], needed: AccessLevel, entry: &Entry) -> Decision {
        match reach[needed as usize] {
            None => Decision::Withheld(Withheld::LevelTooLow { needed, granted: self.highest, by: self.limited_by }),
            Some(Threshold { from: Some(from), date: Some(start), by }) if entry.entered_at < from => {
                Decision::Withheld(Withheld::BeforeStart { start, by })
            }
            Some(_) => Decision::Shown,
        }
    }

    /// Whether a repeat template may be offered to this viewer to order (the prescriptions
    /// service). Every entry rule applies (hidden, NOPAT, safeguarding: R8, R12, R29), and so does
    /// every reason the viewer sees no record at all (identity, registration, 104, a level set to
    /// None, a lapsed proxy link), except a proxy scope without record access: the link's
    /// prescriptions permission (R15) is what lets the proxy see the medicines to order. The
    /// level's start date does not limit the list: a repeat started before access began is still
    /// a current medicine. Entries transferred in are offered only where the record shows them.
    pub fn repeat_offer(&self, entry: &Entry) -> Decision {
        if let Err(w) = entry_online_level(entry) {
            return Decision::Withheld(w);
        }
        match self.denied {
            None | Some(Withheld::ProxyNoRecordAccess) => {}
            Some(w) => return Decision::Withheld(w),
        }
        match &entry.origin {
            crate::entry::Origin::TransferredIn { .. } => self.decide(entry),
            _ => Decision::Shown,
        }
    }

    /// `entry`, marked as shown, when it may be offered to this viewer as a repeat to order
    /// ([`Self::repeat_offer`]); `None` otherwise.
    pub fn offer_repeat(&self, entry: Entry) -> Option<Shown<Entry>> {
        self.repeat_offer(&entry).is_shown().then_some(Shown(entry))
    }

    /// `Some(reason)` when the viewer sees no record entries at all.
    pub fn denied(&self) -> Option<Withheld> {
        self.denied
    }

    /// The highest level the viewer has.
    pub fn highest_level(&self) -> AccessLevel {
        self.highest
    }

    /// For each level the viewer has, from when it reaches (for staff screens).
    pub fn reach(&self) -> Vec<LevelReach> {
        AccessLevel::ALL
            .into_iter()
            .filter_map(|level| self.reach[level as usize].map(|t| LevelReach { level, from: t.date, by: t.by }))
            .collect()
    }

    /// Automatic prospective access for this patient: how far it reaches, or why it does not apply.
    /// It counts only while the patient has no own level ([`Self::own_level`]).
    pub fn automatic(&self) -> Result<LevelReach, AutomaticBlock> {
        self.automatic
    }

    /// The patient's own level and the day it was set, when it replaces automatic access (R13).
    pub fn own_level(&self) -> Option<(AccessLevel, NaiveDate)> {
        self.own
    }
}

/// For each level, the earliest start any grant gives it (a grant at a level reaches every level
/// at or below it: R13, the levels are ordered).
fn reach_of(grants: impl Iterator<Item = (AccessLevel, RecordFrom, GrantSource)>) -> [Option<Threshold>; 5] {
    let mut reach = [None; 5];
    for (level, from, by) in grants {
        let threshold = match from {
            RecordFrom::Beginning => Threshold { from: None, date: None, by },
            RecordFrom::Date(d) => Threshold { from: Some(start_of(d)), date: Some(d), by },
        };
        for slot in reach.iter_mut().take(level as usize + 1).skip(1) {
            let better = match slot {
                None => true,
                Some(Threshold { from: None, .. }) => false,
                Some(Threshold { from: Some(current), .. }) => threshold.from.is_none_or(|f| f < *current),
            };
            if better {
                *slot = Some(threshold);
            }
        }
    }
    reach
}

/// R1, R2, R4, D9, D10: automatic prospective access, or why the patient does not get it.
fn automatic_access(facts: RecordFacts<'_>, today: NaiveDate) -> Result<LevelReach, AutomaticBlock> {
    let p = facts.practice;
    let switch_on = match p.prospective_switch_on {
        None => return Err(AutomaticBlock::NotSwitchedOn),
        Some(on) if on > today => return Err(AutomaticBlock::SwitchOnScheduled { on }),
        Some(on) => on,
    };
    if p.paused {
        return Err(AutomaticBlock::Paused);
    }
    let turns_sixteen = birthday(facts.patient.date_of_birth, 16);
    if today < turns_sixteen {
        return Err(AutomaticBlock::UnderSixteen { turns_sixteen });
    }
    if facts.enhanced_review.is_active() {
        return Err(AutomaticBlock::EnhancedReview);
    }
    if facts.access.opted_out {
        return Err(AutomaticBlock::OptedOut);
    }
    // R4: from the later of the switch-on date and the start of the current registration.
    let registered = facts.patient.registration_on(today).map_or(today, |r| r.started);
    Ok(LevelReach { level: p.default_level, from: Some(switch_on.max(registered)), by: GrantSource::Automatic })
}

/// R6, R15, R16, R19, R20, R22: whether a proxy link gives any record access today.
fn proxy_denial(
    link: &ProxyLink,
    identity: Option<IdentityLevel>,
    patient: &Patient,
    practice: &OnlineServicesSettings,
    registered: NaiveDate,
    today: NaiveDate,
) -> Option<Withheld> {
    match identity {
        None => return Some(Withheld::NoOnlineAccount),
        Some(level) if level < IdentityLevel::P9 => return Some(Withheld::IdentityNotVerified { level }),
        Some(_) => {}
    }
    if let Some(w) = lapse(link, patient, practice, registered, today) {
        return Some(w);
    }
    if link.scope.record == AccessLevel::None {
        return Some(Withheld::ProxyNoRecordAccess);
    }
    None
}

/// R6, R15, R16, R17, R20: whether a proxy link lets its proxy act for the patient at all today,
/// for any service (record, appointments, prescriptions); `None` when it does.
pub fn proxy_link_lapse(
    link: &ProxyLink,
    patient: &Patient,
    practice: &OnlineServicesSettings,
    today: NaiveDate,
) -> Option<Withheld> {
    match patient.registration_on(today) {
        None => Some(Withheld::NotRegistered),
        Some(r) => lapse(link, patient, practice, r.started, today),
    }
}

/// The next date on which an active link lapses by itself (review age, 16th birthday, end
/// date), if it falls within `within` days of today: proxy and patient are told before (R16).
pub fn proxy_link_next_lapse(
    link: &ProxyLink,
    patient: &Patient,
    practice: &OnlineServicesSettings,
    today: NaiveDate,
    within: i64,
) -> Option<Withheld> {
    if link.status != ProxyStatus::Active {
        return None;
    }
    let horizon = today + chrono::Duration::days(within);
    let age = practice.proxy_review_age.years();
    let review = birthday(patient.date_of_birth, u32::from(age));
    let sixteen = birthday(patient.date_of_birth, 16);
    let mut next: Vec<(NaiveDate, Withheld)> = Vec::new();
    if link.granted_on < review && review > today {
        next.push((review, Withheld::ProxySuspendedForReview { age, on: review }));
    }
    if link.granted_on < sixteen && sixteen > today {
        next.push((sixteen, Withheld::ProxySuspendedAtSixteen { on: sixteen }));
    }
    if let Some(end) = link.ends_on.filter(|e| *e >= today) {
        next.push((end, Withheld::ProxyEnded { on: end }));
    }
    next.into_iter().filter(|(d, _)| *d <= horizon).min_by_key(|(d, _)| *d).map(|(_, w)| w)
}

fn lapse(
    link: &ProxyLink,
    patient: &Patient,
    practice: &OnlineServicesSettings,
    registered: NaiveDate,
    today: NaiveDate,
) -> Option<Withheld> {
    match link.status {
        ProxyStatus::Refused { .. } => return Some(Withheld::ProxyRefused),
        ProxyStatus::Revoked { .. } => return Some(Withheld::ProxyRevoked),
        ProxyStatus::Suspended { .. } => return Some(Withheld::ProxySuspended),
        ProxyStatus::Active => {}
    }
    if link.granted_on < registered {
        return Some(Withheld::ProxyPredatesRegistration);
    }
    if link.granted_on > today {
        return Some(Withheld::ProxyNotStarted { on: link.granted_on });
    }
    if let Some(end) = link.ends_on {
        if today > end {
            return Some(Withheld::ProxyEnded { on: end });
        }
    }
    let sixteen = birthday(patient.date_of_birth, 16);
    if link.granted_on < sixteen && today >= sixteen {
        return Some(Withheld::ProxySuspendedAtSixteen { on: sixteen });
    }
    let age = practice.proxy_review_age.years();
    let review = birthday(patient.date_of_birth, u32::from(age));
    if link.granted_on < review && today >= review {
        return Some(Withheld::ProxySuspendedForReview { age, on: review });
    }
    None
}

/// R8–R12 for one entry, whoever looks: the access level it needs to be shown online, or why it
/// is never shown (a draft, unfiled or unreviewed, a kind never online, NOPAT, safeguarding,
/// hidden). Lists offered to patients outside the record (repeat medicines to order) use this
/// too, so nothing hidden reaches them by another path.
#[inline]
pub fn entry_online_level(entry: &Entry) -> Result<AccessLevel, Withheld> {
    // R28: a superseded entry is not current, and is never online whatever else it carries.
    if entry.superseded.is_some() {
        return Err(Withheld::Superseded);
    }
    let withheld = match &entry.body {
        EntryBody::Consultation { status: ConsultationStatus::Draft, .. } => Some(Withheld::DraftConsultation),
        EntryBody::TestResult { filing: Filing::Unfiled, .. } => Some(Withheld::Unfiled),
        EntryBody::Document { filing: Filing::Unfiled, .. } => Some(Withheld::Unfiled),
        EntryBody::Document { review: DocumentReview::Unreviewed, .. } => Some(Withheld::UnreviewedDocument),
        _ => None,
    };
    if let Some(w) = withheld {
        return Err(w);
    }
    let kind = entry.kind();
    let Some(needed) = kind.required_level() else {
        return Err(Withheld::NeverOnline { kind });
    };
    if entry.nopat {
        return Err(Withheld::Nopat);
    }
    if entry.safeguarding {
        return Err(Withheld::Safeguarding);
    }
    if let OnlineVisibility::Hidden(r) = &entry.visibility {
        return Err(Withheld::Hidden { reason: r.reason() });
    }
    Ok(needed)
}

/// The online view of a whole record: one decision per entry, in the same order.
#[derive(Debug, Clone)]
pub struct OnlineView {
    pub policy: AccessPolicy,
    pub decisions: Vec<Decision>,
}

impl OnlineView {
    /// The indexes of the entries shown, in order.
    pub fn shown(&self) -> impl Iterator<Item = usize> + '_ {
        self.decisions.iter().enumerate().filter(|(_, d)| d.is_shown()).map(|(i, _)| i)
    }
}

/// Decides every entry of a record for one viewer.
pub fn online_view(viewer: Viewer<'_>, facts: RecordFacts<'_>, entries: &[Entry], now: DateTime<Utc>) -> OnlineView {
    let policy = AccessPolicy::new(viewer, facts, now);
    let decisions = entries.iter().map(|e| policy.decide(e)).collect();
    OnlineView { policy, decisions }
}

#[cfg(test)]
mod tests;
