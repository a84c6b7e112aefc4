//! Typed identifiers. Each wraps a UUID made by the caller (UUIDv7 in production, seeded in the
//! demo), so an id of one kind can never be passed where another is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )*};
}

typed_id!(
    /// A practice (one data controller). Every row of practice data carries one.
    PracticeId,
    /// A patient registered (now or before) at a practice.
    PatientId,
    /// One record entry.
    EntryId,
    /// A member of practice staff.
    StaffId,
    /// A proxy link: one person acting for one patient.
    ProxyLinkId,
    /// An online account (NHS App, a linked app or a local account).
    AccountId,
    /// An API bearer token issued to a member of staff.
    TokenId,
    /// A signed-in staff session.
    SessionId,
    /// One audit event.
    AuditEventId,
    /// A clinician's session of appointment slots.
    ClinicId,
    /// One appointment slot.
    SlotId,
    /// A booking of a slot for a patient.
    AppointmentId,
    /// A task in the practice's task list.
    TaskId,
    /// One outbound message (email, SMS or letter).
    MessageId,
    /// A message preset.
    PresetId,
    /// A third-party patient app registered with the practice.
    AppId,
    /// One app's link to one patient's record.
    AppLinkId,
    /// A practice integration of the FHIR API (a system client with `system/` scopes).
    IntegrationId,
);
