//! The HTML kernel: what the server-rendered pages share, and nothing else. Cookies and CSRF
//! tokens ([`cookies`]), the page chrome and form errors ([`chrome`]), error pages with
//! [`PageError`] and [`MyPageError`], the error types of a staff and a patient page handler
//! ([`errors`]), the signed-in extractors ([`session`]), what the forms before sign-in share
//! ([`sign_in_form`]) and how the things several pages show are shown ([`display`]).
//!
//! Every feature module may use the kernel; the kernel uses no feature module, and its own
//! modules name each other directly (never through these re-exports), so that the web crate's
//! modules have no import circle (`lib.rs` tests this).

pub(crate) mod chrome;
pub(crate) mod cookies;
pub(crate) mod display;
pub(crate) mod errors;
pub(crate) mod session;
pub(crate) mod sign_in_form;

pub(crate) use chrome::{field_errors, Chrome, Errors, FieldError, MyChrome};
pub(crate) use cookies::{
    checked, clear_cookie, cookie, csrf_forms, same, set_cookie, sign_in_token, with_cookies, PATIENT_COOKIE,
    SESSION_COOKIE, SIGN_IN_COOKIE,
};
pub(crate) use display::{
    access_text, age_text, banner, boxes_of_iso, count, date_box_values, date_boxes, decision_text, entry_row,
    entry_text, for_query, iso_from_boxes, kind_label, link_of, long_date, method_choices, method_label, nhs,
    period_words, printed_facts, qr_svg, section_label, with_param, Banner, ChangeLink, CheckView, EntryRow,
    PrintedFacts, SectionLink, REASONS,
};
pub(crate) use errors::{forbidden_form, page_error, to_patient, InMyPage, InPage, MyPageError, PageError};
pub(crate) use session::{Patient, Portal, PortalForm, QuietPortal};
pub(crate) use sign_in_form::{refusal, several_practices, sign_in_csrf_ok};
