//! Demo data, kept out of the production crates: the command line's `caldicott demo` builds it.
//!
//! - [`practice`]: the demo practice, built deterministically from a seed (staff, thousands of
//!   patients with records, proxies, 104/106 codes, linked accounts), with `services` adding the
//!   patient-facing parts (patients with logins, clinics, a pharmacy and its summary, a subject
//!   access request, a document, staff messages, an integration).
//! - [`icb`]: lean practices for the ICB view and its benchmark (`demo --practices`).
//!
//! Everything a person would do goes through `caldicott-app`'s use cases; bulk records go
//! through its one bulk-loading door (`App::seeding`), audited like every write.

pub mod appointments;
mod data;
pub mod icb;
pub mod practice;
pub mod services;

pub use practice::{build_demo, demo_passwords, DemoOptions, DemoReport, DemoStaff, DEMO_ODS, DEMO_PRACTICE};
