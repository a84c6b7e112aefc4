//! The web crate's integration tests, in one binary (one link instead of one per file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app_nhs_login;
mod fhir;
mod gp_connect;
mod nhs_app_outside;
mod notify;
mod openapi;
mod pfs_prescriptions;
mod token_exchange;
mod web;
