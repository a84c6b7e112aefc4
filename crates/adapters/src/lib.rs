//! The outside world, behind the ports `caldicott-app` owns, so that the use cases and their
//! tests never link a mail, HTTP or OpenID Connect client:
//!
//! - [`smtp`] and [`notify`]: couriers (`caldicott_app::outbox::Courier`) that send the outbox's
//!   messages by SMTP and through GOV.UK Notify, and [`smtp::Couriers`], which picks one by
//!   channel.
//! - [`nhs_login`]: the OpenID Connect client for NHS login
//!   (`caldicott_app::nhs_login::IdentityProvider`).
//!
//! The binary (`caldicott-cli`) builds them from its configuration and hands them to `App`.

pub mod nhs_login;
pub mod notify;
pub mod smtp;
