//! The app crate's integration tests, in one binary (one link instead of one per file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod capacity;
mod care_plans;
mod chat;
mod comms;
mod fhir_api;
mod governance;
mod gp_connect;
mod gp_connect_appointments;
mod gp_connect_pfs;
mod nhs_login;
mod outbox;
mod races;
mod repeat_orders;
mod results_over_time;
mod sar;
mod sar_export;
mod sign_in;
mod smtp;
mod update_record;
