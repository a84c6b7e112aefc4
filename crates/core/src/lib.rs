//! The rules of GP online services, with no IO: validated identifiers, the patient record's
//! entries, online access settings, the online-visibility engine and the audit hash chain.
//!
//! Everything here is a pure function of its arguments. Time comes in as `now`, identifiers
//! are made by callers, and nothing reads a clock, a database or the network.

pub mod access;
pub mod appointments;
pub mod audit;
pub mod capacity;
pub mod credentials;
pub mod entry;
pub mod governance;
pub mod gpconnect;
pub mod ids;
pub mod messages;
pub mod nhs_number;
pub mod online;
pub mod patient;
pub mod permissions;
pub mod practice;
pub mod sar;
pub mod snomed;
pub mod staff;
pub mod tasks;
pub mod trends;
pub mod uk;
pub mod update_record;
pub mod visibility;

pub use ids::*;
pub use nhs_number::{NhsNumber, NhsNumberError};
