//! Appointments: clinicians' sessions cut into slots, slots booked by patients (or by the
//! people who act for them), and the rules for booking and cancelling.
//!
//! Times are kept in UTC and shown in UK time: a session is planned in local clock time on a
//! date, and its slots are placed with the UK's summer-time rules.

use crate::ids::*;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::London;
use serde::{Deserialize, Serialize};

/// What kind of appointment a slot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotType {
    GpFaceToFace,
    GpTelephone,
    NurseFaceToFace,
}

impl SlotType {
    pub const ALL: [SlotType; 3] = [Self::GpFaceToFace, Self::GpTelephone, Self::NurseFaceToFace];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GpFaceToFace => "gp_face_to_face",
            Self::GpTelephone => "gp_telephone",
            Self::NurseFaceToFace => "nurse_face_to_face",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
    /// Whether the clinician phones the patient rather than sees them in a room.
    pub fn by_telephone(self) -> bool {
        self == Self::GpTelephone
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::GpFaceToFace => "GP appointment at the practice",
            Self::GpTelephone => "GP telephone appointment",
            Self::NurseFaceToFace => "Nurse appointment at the practice",
        }
    }
}

/// The kinds of organisation GP Connect names (`GPConnect-OrganisationType-1`), for a practice
/// that keeps slots for one kind of care setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrganisationType {
    GpPractice,
    UrgentCare,
}

impl OrganisationType {
    pub const ALL: [Self; 2] = [Self::GpPractice, Self::UrgentCare];
    /// The code as the specification's examples send it.
    pub fn code(self) -> &'static str {
        match self {
            Self::GpPractice => "gp-practice",
            Self::UrgentCare => "urgent-care",
        }
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::GpPractice => "GP practices",
            Self::UrgentCare => "Urgent care (NHS 111, urgent treatment centres, out of hours)",
        }
    }
    /// A code as consumers send it: `urgent-care`, or the code system's first form `Urgent Care`.
    pub fn parse(code: &str) -> Option<Self> {
        let code = code.trim().to_ascii_lowercase().replace(' ', "-");
        Self::ALL.into_iter().find(|t| t.code() == code)
    }
}

/// Which organisations may book a clinic's slots through GP Connect, when the practice narrows
/// it (the specification's "organisation access profile"): kinds of organisation, particular
/// organisations by ODS code, or both. Empty lists are no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookableBy {
    pub types: Vec<OrganisationType>,
    /// ODS codes, upper case.
    pub ods: Vec<String>,
    /// At most this many of the clinic's slots may be booked through GP Connect at once (live
    /// bookings, cancelled ones not counted); `None` is no limit.
    #[serde(default)]
    pub limit: Option<u16>,
    /// Each slot is offered to them only from this many hours before it starts (the
    /// specification's booking window, or embargo); `None`: from when the clinic is made.
    #[serde(default)]
    pub release_hours: Option<u16>,
}

impl BookableBy {
    /// GP Connect Appointment Management's matching rules for `searchFilter`: a slot is offered
    /// when it has no organisation type restriction or one matching the consumer's type, **and**
    /// no organisation code restriction or one matching the consumer's code. A consumer that
    /// sends no filter sees only slots without either restriction. Booking applies the same rule
    /// to the booking organisation.
    pub fn allows(&self, ods: Option<&str>, kind: Option<OrganisationType>) -> bool {
        let type_ok = self.types.is_empty() || kind.is_some_and(|k| self.types.contains(&k));
        let ods_ok =
            self.ods.is_empty() || ods.is_some_and(|o| self.ods.iter().any(|x| x.eq_ignore_ascii_case(o.trim())));
        type_ok && ods_ok
    }
    pub fn is_open(&self) -> bool {
        self.types.is_empty() && self.ods.is_empty()
    }
    /// As stored: the type codes and the ODS codes, each space-separated.
    pub fn columns(&self) -> (String, String) {
        (self.types.iter().map(|t| t.code()).collect::<Vec<_>>().join(" "), self.ods.join(" "))
    }
    /// Read back from [`BookableBy::columns`]; `None` if a stored type code is not known.
    pub fn from_columns(types: &str, ods: &str, limit: Option<u16>, release_hours: Option<u16>) -> Option<Self> {
        let types = types.split_whitespace().map(OrganisationType::parse).collect::<Option<Vec<_>>>()?;
        Some(Self { types, ods: ods.split_whitespace().map(str::to_ascii_uppercase).collect(), limit, release_hours })
    }
    /// Whether a slot starting at `starts_at` has been released to them by `now`.
    pub fn released(&self, starts_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.release_hours.is_none_or(|h| starts_at - chrono::Duration::hours(i64::from(h)) <= now)
    }
    /// Whether another booking through GP Connect may be made when `booked` of the clinic's
    /// slots are booked through it already.
    pub fn has_room(&self, booked: u32) -> bool {
        self.limit.is_none_or(|l| booked < u32::from(l))
    }
    /// In words, for the appointment book: "Only urgent care", "Only ODS RR8, A1001".
    pub fn describe(&self) -> Option<String> {
        let types = (!self.types.is_empty()).then(|| {
            self.types
                .iter()
                .map(|t| match t {
                    OrganisationType::GpPractice => "GP practices",
                    OrganisationType::UrgentCare => "urgent care",
                })
                .collect::<Vec<_>>()
                .join(" or ")
        });
        let ods = (!self.ods.is_empty()).then(|| format!("ODS {}", self.ods.join(", ")));
        let who = match (types, ods) {
            (Some(t), Some(o)) => Some(format!("Only {t}, and only {o}")),
            (Some(t), None) => Some(format!("Only {t}")),
            (None, Some(o)) => Some(format!("Only {o}")),
            (None, None) => None,
        };
        let who = match (who, self.limit) {
            (Some(w), Some(1)) => Some(format!("{w}; at most 1 slot booked by them")),
            (Some(w), Some(l)) => Some(format!("{w}; at most {l} slots booked by them")),
            (None, Some(1)) => Some("At most 1 slot booked by other care settings".into()),
            (None, Some(l)) => Some(format!("At most {l} slots booked by other care settings")),
            (w, None) => w,
        };
        let release = self.release_hours.map(|h| match h {
            1 => "1 hour".to_owned(),
            h => format!("{h} hours"),
        });
        match (who, release) {
            (Some(w), Some(r)) => Some(format!("{w}; each offered from {r} before it starts")),
            (None, Some(r)) => Some(format!("Each offered to other care settings from {r} before it starts")),
            (w, None) => w,
        }
    }
}

/// A clinician's session, as planned by the practice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clinic {
    pub id: ClinicId,
    pub clinician: StaffId,
    pub clinician_name: String,
    pub date: NaiveDate,
    /// UK clock time.
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub slot_minutes: u16,
    pub slot_type: SlotType,
    /// The share of its slots, in percent (0 to 100), that patients may book online; which
    /// ones is [`online_spread`]'s choice. Each slot's own flag can be changed later.
    pub online_share: u8,
    /// Other care settings (NHS 111, urgent care, hospitals) may book it through GP Connect.
    pub others_bookable: bool,
    /// Which of them, when the practice narrows it.
    #[serde(default)]
    pub others_bookable_by: BookableBy,
    pub location: String,
}

/// One slot of a clinic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub id: SlotId,
    pub clinic: ClinicId,
    /// The clinic's clinician.
    pub clinician: StaffId,
    pub starts_at: DateTime<Utc>,
    pub minutes: u16,
    pub slot_type: SlotType,
    pub online_bookable: bool,
    /// Other care settings may book it through GP Connect.
    pub others_bookable: bool,
    /// Which of them, when the practice narrows it (the clinic's).
    #[serde(default)]
    pub others_bookable_by: BookableBy,
    pub clinician_name: String,
    pub location: String,
}

/// The organisation in another care setting that booked an appointment through GP Connect, as
/// its request named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingOrganisation {
    /// Its ODS code.
    pub ods: String,
    pub name: String,
    /// A number the practice can call back on.
    pub telephone: Option<String>,
}

/// How a booking was made, for the online capacity report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingChannel {
    /// By the patient, or someone acting for them, online: the patient pages, a linked app or
    /// the NHS App.
    Online,
    /// By the practice team, for example when the patient phones or comes to the desk.
    Practice,
    /// By another care setting (NHS 111, urgent care, a hospital) through GP Connect.
    OtherCareSetting,
}

impl BookingChannel {
    pub const ALL: [BookingChannel; 3] = [Self::Online, Self::Practice, Self::OtherCareSetting];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Practice => "practice",
            Self::OtherCareSetting => "other_care_setting",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::Online => "Online",
            Self::Practice => "By the practice",
            Self::OtherCareSetting => "By another care setting",
        }
    }
}

/// Whether the patient came to a booked appointment, as the practice recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attendance {
    Attended,
    DidNotAttend,
}

impl Attendance {
    pub const ALL: [Attendance; 2] = [Self::Attended, Self::DidNotAttend];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attended => "attended",
            Self::DidNotAttend => "did_not_attend",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::Attended => "Attended",
            Self::DidNotAttend => "Did not attend",
        }
    }
}

/// A booking. At most one live (not cancelled) booking holds a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    pub id: AppointmentId,
    pub slot: SlotId,
    pub patient: PatientId,
    pub booked_at: DateTime<Utc>,
    /// Who booked it, in words ("online by the patient", "online by Jane Doe for them", "by reception").
    pub booked_by: String,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<String>,
    /// 1 when booked, one more at each change (GP Connect's `meta.versionId` and `ETag`).
    pub version: u32,
    /// What it is for, in the booker's words (GP Connect bookings).
    pub description: Option<String>,
    /// A further note from the booker (GP Connect bookings).
    pub comment: Option<String>,
    /// Set when another care setting booked it through GP Connect.
    pub booked_through: Option<BookingOrganisation>,
    /// Why it was cancelled, when a GP Connect consumer said.
    pub cancellation_reason: Option<String>,
    /// How it was booked.
    pub channel: BookingChannel,
    /// Whether the patient came, once the practice has recorded it.
    pub attendance: Option<Attendance>,
}

impl Appointment {
    /// A new booking made now through `channel`, at version 1, with no GP Connect details.
    pub fn new(
        id: AppointmentId,
        slot: SlotId,
        patient: PatientId,
        booked_at: DateTime<Utc>,
        booked_by: String,
        channel: BookingChannel,
    ) -> Self {
        Self {
            id,
            slot,
            patient,
            booked_at,
            booked_by,
            channel,
            attendance: None,
            cancelled_at: None,
            cancelled_by: None,
            version: 1,
            description: None,
            comment: None,
            booked_through: None,
            cancellation_reason: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClinicError {
    #[error("the session must end after it starts")]
    EndsBeforeStart,
    #[error("a slot must be 5 to 60 minutes long")]
    SlotLength,
    #[error("the session is too short for one slot")]
    NoSlots,
    #[error("the online share must be a whole number from 0 to 100")]
    OnlineShare,
    #[error("that date and time does not exist in UK time")]
    NoSuchLocalTime,
}

/// A UK clock time on a date, as an instant (the earlier one when the clocks go back).
pub fn uk_instant(date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    London.from_local_datetime(&date.and_time(time)).earliest().map(|t| t.with_timezone(&Utc))
}

/// An instant in UK time, for display.
pub fn uk_time(t: DateTime<Utc>) -> chrono::DateTime<chrono_tz::Tz> {
    t.with_timezone(&London)
}

impl Clinic {
    /// The slots of the session, back to back from its start; ids come from `ids`.
    pub fn slots(&self, mut ids: impl FnMut() -> SlotId) -> Result<Vec<Slot>, ClinicError> {
        if self.end <= self.start {
            return Err(ClinicError::EndsBeforeStart);
        }
        if !(5..=60).contains(&self.slot_minutes) {
            return Err(ClinicError::SlotLength);
        }
        if self.online_share > 100 {
            return Err(ClinicError::OnlineShare);
        }
        let start = uk_instant(self.date, self.start).ok_or(ClinicError::NoSuchLocalTime)?;
        let end = uk_instant(self.date, self.end).ok_or(ClinicError::NoSuchLocalTime)?;
        let step = Duration::minutes(i64::from(self.slot_minutes));
        let mut out = Vec::new();
        let mut at = start;
        while at + step <= end {
            out.push(Slot {
                id: ids(),
                clinic: self.id,
                clinician: self.clinician,
                starts_at: at,
                minutes: self.slot_minutes,
                slot_type: self.slot_type,
                online_bookable: false,
                others_bookable: self.others_bookable,
                others_bookable_by: self.others_bookable_by.clone(),
                clinician_name: self.clinician_name.clone(),
                location: self.location.clone(),
            });
            at += step;
        }
        if out.is_empty() {
            return Err(ClinicError::NoSlots);
        }
        let spread = online_spread(out.len(), self.online_share);
        for (slot, online) in out.iter_mut().zip(spread) {
            slot.online_bookable = online;
        }
        Ok(out)
    }
}

/// Which of a session's `slots` are offered online for a share in percent: the share of them
/// rounded to the nearest whole slot (half up), spread evenly through the session so that the
/// online slots are not all at one end of it.
pub fn online_spread(slots: usize, share: u8) -> Vec<bool> {
    let share = usize::from(share.min(100));
    let online = (slots * share + 50) / 100;
    (0..slots).map(|i| (i + 1) * online / slots > i * online / slots).collect()
}

/// Whether an appointment's attendance can be recorded now: it has started.
pub fn can_record_attendance(starts_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    starts_at <= now
}

/// Whether a patient may still cancel online: not after the practice's cut-off before the start.
pub fn can_cancel_online(starts_at: DateTime<Utc>, now: DateTime<Utc>, cutoff_hours: u16) -> bool {
    now + Duration::hours(i64::from(cutoff_hours)) <= starts_at
}

/// Whether a patient may book a slot online now: bookable online, in the future.
pub fn can_book_online(slot: &Slot, now: DateTime<Utc>) -> bool {
    slot.online_bookable && slot.starts_at > now
}

/// Whether another care setting may book a slot through GP Connect now: the practice has made
/// it bookable by other care settings, and it is in the future. (Online bookability for patients
/// is a separate choice: a slot kept for NHS 111 is often not offered to patients.)
pub fn can_book_from_elsewhere(slot: &Slot, now: DateTime<Utc>) -> bool {
    slot.others_bookable && slot.starts_at > now && slot.others_bookable_by.released(slot.starts_at, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn clinic(date: NaiveDate, start: (u32, u32), end: (u32, u32), minutes: u16) -> Clinic {
        Clinic {
            id: ClinicId::from_uuid(Uuid::from_u128(1)),
            clinician: StaffId::from_uuid(Uuid::from_u128(2)),
            clinician_name: "Dr A".into(),
            date,
            start: NaiveTime::from_hms_opt(start.0, start.1, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(end.0, end.1, 0).unwrap_or_default(),
            slot_minutes: minutes,
            slot_type: SlotType::GpFaceToFace,
            online_share: 100,
            others_bookable: false,
            others_bookable_by: BookableBy::default(),
            location: "Room 1".into(),
        }
    }

    fn ids() -> impl FnMut() -> SlotId {
        let mut n = 0u128;
        move || {
            n += 1;
            SlotId::from_uuid(Uuid::from_u128(n))
        }
    }

    #[test]
    fn a_session_is_cut_into_whole_slots_in_uk_time() {
        let summer = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        let slots = clinic(summer, (9, 0), (10, 5), 15).slots(ids()).unwrap_or_default();
        assert_eq!(slots.len(), 4, "the last 5 minutes make no slot");
        assert_eq!(slots[0].starts_at.to_rfc3339(), "2026-07-01T08:00:00+00:00", "09:00 BST is 08:00 UTC");
        let winter = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default();
        let slots = clinic(winter, (9, 0), (9, 30), 10).slots(ids()).unwrap_or_default();
        assert_eq!(slots[0].starts_at.to_rfc3339(), "2026-12-01T09:00:00+00:00");
        assert_eq!(uk_time(slots[2].starts_at).format("%H:%M").to_string(), "09:20");
    }

    #[test]
    fn bad_sessions_are_refused() {
        let d = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        assert_eq!(clinic(d, (10, 0), (9, 0), 10).slots(ids()), Err(ClinicError::EndsBeforeStart));
        assert_eq!(clinic(d, (9, 0), (10, 0), 4).slots(ids()), Err(ClinicError::SlotLength));
        assert_eq!(clinic(d, (9, 0), (9, 5), 10).slots(ids()), Err(ClinicError::NoSlots));
        // 01:30 on the last Sunday of March does not exist in UK time.
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap_or_default();
        assert_eq!(clinic(spring, (1, 30), (3, 0), 10).slots(ids()), Err(ClinicError::NoSuchLocalTime));
    }

    #[test]
    fn cancelling_online_stops_at_the_cut_off() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert!(can_cancel_online(start, start - Duration::hours(24), 24));
        assert!(!can_cancel_online(start, start - Duration::hours(23), 24));
        assert!(can_cancel_online(start, start - Duration::minutes(1), 0));
    }

    #[test]
    fn other_care_settings_book_only_slots_the_practice_offers_them_and_only_ahead() {
        let d = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        let mut c = clinic(d, (9, 0), (9, 30), 10);
        let before = uk_instant(d, NaiveTime::MIN).unwrap_or_default();
        let slot = c.slots(ids()).unwrap_or_default().remove(0);
        assert!(can_book_online(&slot, before));
        assert!(!can_book_from_elsewhere(&slot, before), "online for patients is not bookable from elsewhere");
        c.online_share = 0;
        c.others_bookable = true;
        let slot = c.slots(ids()).unwrap_or_default().remove(0);
        assert!(!can_book_online(&slot, before), "kept for other care settings, not offered to patients");
        assert!(can_book_from_elsewhere(&slot, before));
        assert!(!can_book_from_elsewhere(&slot, slot.starts_at), "not once it has started");
    }

    #[test]
    fn slots_are_offered_by_the_specifications_matching_table() {
        // GP Connect Appointment Management, slot availability management: the four rows of the
        // table, for slots with no restriction, a type restriction, a code restriction and both.
        let open = BookableBy::default();
        let urgent =
            BookableBy { types: vec![OrganisationType::UrgentCare], ods: vec![], limit: None, release_hours: None };
        let rr8 = BookableBy { types: vec![], ods: vec!["RR8".into()], limit: None, release_hours: None };
        let both = BookableBy {
            types: vec![OrganisationType::UrgentCare],
            ods: vec!["RR8".into()],
            limit: None,
            release_hours: None,
        };
        let uc = Some(OrganisationType::UrgentCare);
        let gp = Some(OrganisationType::GpPractice);
        // (no search filter): only slots with neither restriction.
        assert!(open.allows(None, None));
        assert!(!urgent.allows(None, None) && !rr8.allows(None, None) && !both.allows(None, None));
        // Organisation type only: no code restriction, and no type restriction or a matching one.
        assert!(open.allows(None, uc) && urgent.allows(None, uc));
        assert!(!urgent.allows(None, gp), "another type");
        assert!(!rr8.allows(None, uc) && !both.allows(None, uc), "a code restriction needs the code");
        // Organisation code only.
        assert!(open.allows(Some("RR8"), None) && rr8.allows(Some("rr8"), None));
        assert!(!rr8.allows(Some("A1001"), None));
        assert!(
            !urgent.allows(Some("RR8"), None) && !both.allows(Some("RR8"), None),
            "a type restriction needs the type"
        );
        // Both.
        assert!(both.allows(Some("RR8"), uc));
        assert!(!both.allows(Some("RR8"), gp) && !both.allows(Some("A1001"), uc));
        assert!(open.allows(Some("A1001"), gp) && urgent.allows(Some("A1001"), uc) && rr8.allows(Some("RR8"), gp));
    }

    #[test]
    fn organisation_types_are_read_in_both_forms_and_stored_plainly() {
        assert_eq!(OrganisationType::parse("urgent-care"), Some(OrganisationType::UrgentCare));
        assert_eq!(OrganisationType::parse("Urgent Care"), Some(OrganisationType::UrgentCare));
        assert_eq!(OrganisationType::parse("GP Practice"), Some(OrganisationType::GpPractice));
        assert_eq!(OrganisationType::parse("hospital"), None);
        let b = BookableBy {
            types: vec![OrganisationType::GpPractice],
            ods: vec!["RR8".into(), "A1001".into()],
            limit: None,
            release_hours: None,
        };
        let (t, o) = b.columns();
        assert_eq!(BookableBy::from_columns(&t, &o, None, None), Some(b.clone()));
        assert_eq!(BookableBy::from_columns("", "", None, None), Some(BookableBy::default()));
        assert_eq!(BookableBy::from_columns("ambulance", "", None, None), None);
        assert_eq!(b.describe().as_deref(), Some("Only GP practices, and only ODS RR8, A1001"));
        assert_eq!(BookableBy::default().describe(), None);
        let limited = BookableBy { limit: Some(3), ..b };
        assert_eq!(
            limited.describe().as_deref(),
            Some("Only GP practices, and only ODS RR8, A1001; at most 3 slots booked by them")
        );
        assert_eq!(
            BookableBy { limit: Some(1), ..BookableBy::default() }.describe().as_deref(),
            Some("At most 1 slot booked by other care settings")
        );
    }

    #[test]
    fn a_slot_is_offered_elsewhere_only_once_its_booking_window_opens() {
        // Slot availability management, booking window/embargo: how far in advance slots can be
        // booked. A slot at 09:00 on 2 July, released 24 hours before: not at 08:59 on 1 July,
        // from 09:00 on 1 July, and not once it has started.
        let d = NaiveDate::from_ymd_opt(2026, 7, 2).unwrap_or_default();
        let mut c = clinic(d, (9, 0), (9, 30), 10);
        c.online_share = 0;
        c.others_bookable = true;
        c.others_bookable_by.release_hours = Some(24);
        let slot = c.slots(ids()).unwrap_or_default().remove(0);
        let at = |day: u32, h: u32, m: u32| {
            uk_instant(
                NaiveDate::from_ymd_opt(2026, 7, day).unwrap_or_default(),
                NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default(),
            )
            .unwrap_or_default()
        };
        assert!(!can_book_from_elsewhere(&slot, at(1, 8, 59)), "not yet released");
        assert!(can_book_from_elsewhere(&slot, at(1, 9, 0)), "released 24 hours before");
        assert!(can_book_from_elsewhere(&slot, at(2, 8, 59)));
        assert!(!can_book_from_elsewhere(&slot, at(2, 9, 0)), "started");
        assert_eq!(
            c.others_bookable_by.describe().as_deref(),
            Some("Each offered to other care settings from 24 hours before it starts")
        );
    }

    #[test]
    fn a_limit_on_an_organisation_access_profile_counts_live_bookings() {
        // Slot availability management: the practice may limit the number of slots that can be
        // booked by an organisation access profile.
        let two = BookableBy { limit: Some(2), ..BookableBy::default() };
        assert!(two.has_room(0) && two.has_room(1));
        assert!(!two.has_room(2) && !two.has_room(3), "the limit reached, no more");
        assert!(BookableBy::default().has_room(10_000), "no limit");
    }

    #[test]
    fn a_clinic_offers_its_online_share_spread_through_the_session() {
        // Issue 26: "clinics can set the share". 12 slots at 50% are 6 online slots, not the
        // first six; 0% and 100% mean none and all; a share that is not a whole slot rounds to
        // the nearest, half up.
        let d = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        let mut c = clinic(d, (9, 0), (12, 0), 15);
        for (share, expected) in [(0u8, 0usize), (25, 3), (50, 6), (100, 12), (33, 4), (1, 0), (5, 1)] {
            c.online_share = share;
            let slots = c.slots(ids()).unwrap_or_default();
            assert_eq!(slots.len(), 12);
            assert_eq!(slots.iter().filter(|s| s.online_bookable).count(), expected, "{share}%");
        }
        c.online_share = 50;
        let online: Vec<bool> = c.slots(ids()).unwrap_or_default().iter().map(|s| s.online_bookable).collect();
        assert!(online[..6].contains(&true) && online[6..].contains(&true), "spread, not bunched: {online:?}");
        assert!(online.windows(2).all(|w| w[0] != w[1]), "every other slot at a half share: {online:?}");
        c.online_share = 101;
        assert_eq!(c.slots(ids()), Err(ClinicError::OnlineShare));
        assert_eq!(online_spread(0, 50), Vec::<bool>::new());
        assert_eq!(online_spread(5, 50).iter().filter(|o| **o).count(), 3, "2.5 slots round up to 3");
    }

    #[test]
    fn attendance_is_recorded_only_once_the_appointment_has_started() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert!(!can_record_attendance(start, start - Duration::minutes(1)));
        assert!(can_record_attendance(start, start));
        assert_eq!(BookingChannel::parse("other_care_setting"), Some(BookingChannel::OtherCareSetting));
        assert_eq!(Attendance::parse("did_not_attend"), Some(Attendance::DidNotAttend));
        assert_eq!(Attendance::parse("dna"), None);
    }
}
