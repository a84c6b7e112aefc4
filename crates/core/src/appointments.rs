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
    pub online_bookable: bool,
    /// Other care settings (NHS 111, urgent care, hospitals) may book it through GP Connect.
    pub others_bookable: bool,
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
}

impl Appointment {
    /// A new booking made now, at version 1, with no GP Connect details.
    pub fn new(
        id: AppointmentId,
        slot: SlotId,
        patient: PatientId,
        booked_at: DateTime<Utc>,
        booked_by: String,
    ) -> Self {
        Self {
            id,
            slot,
            patient,
            booked_at,
            booked_by,
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
                online_bookable: self.online_bookable,
                others_bookable: self.others_bookable,
                clinician_name: self.clinician_name.clone(),
                location: self.location.clone(),
            });
            at += step;
        }
        if out.is_empty() {
            return Err(ClinicError::NoSlots);
        }
        Ok(out)
    }
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
    slot.others_bookable && slot.starts_at > now
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
            online_bookable: true,
            others_bookable: false,
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
        c.online_bookable = false;
        c.others_bookable = true;
        let slot = c.slots(ids()).unwrap_or_default().remove(0);
        assert!(!can_book_online(&slot, before), "kept for other care settings, not offered to patients");
        assert!(can_book_from_elsewhere(&slot, before));
        assert!(!can_book_from_elsewhere(&slot, slot.starts_at), "not once it has started");
    }
}
