//! Cookies and CSRF tokens. Every cookie is `__Host-`, Secure, HttpOnly and SameSite=Strict. The
//! sign-in forms (staff and patient) carry a CSRF token that must match a cookie set with the
//! form; every form of a signed-in page carries the session's own token, checked by [`checked`].

use axum::extract::rejection::FormRejection;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_app::session::SignedIn;
use rand::RngCore;

/// The staff portal's session cookie.
pub const SESSION_COOKIE: &str = "__Host-caldicott";
/// The patient pages' session cookie, separate from the staff portal's.
pub const PATIENT_COOKIE: &str = "__Host-caldicott-patient";
/// The CSRF cookie of the sign-in forms (staff and patient), before there is a session.
pub(crate) const SIGN_IN_COOKIE: &str = "__Host-caldicott-sign-in";

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(crate) fn set_cookie(name: &str, value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn random_token() -> String {
    let mut raw = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// `res` setting (or clearing) each of `cookies`: `with_cookies(page, set)` for a form's page and
/// the sign-in cookie [`sign_in_token`] may have made, `with_cookies(redirect, [a, b])`.
pub(crate) fn with_cookies(mut res: Response, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// Constant-time comparison for CSRF tokens.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The CSRF token of the sign-in forms, from their cookie (or a new one with the header to set it).
pub(crate) fn sign_in_token(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, SIGN_IN_COOKIE).filter(|t| t.len() >= 32) {
        Some(t) => (t, None),
        None => {
            let t = random_token();
            let h = set_cookie(SIGN_IN_COOKIE, &t);
            (t, Some(h))
        }
    }
}

/// A form that carries a CSRF token.
pub(crate) trait CsrfToken {
    fn csrf(&self) -> &str;
}

/// Marks forms (structs with a `_csrf` field) as carrying a CSRF token, for [`checked`].
macro_rules! csrf_forms {
    ($($form:ty),* $(,)?) => {$(
        impl $crate::kernel::cookies::CsrfToken for $form {
            fn csrf(&self) -> &str {
                &self._csrf
            }
        }
    )*};
}
pub(crate) use csrf_forms;

/// The form's fields, when it parsed and carries this session's CSRF token (handlers answer
/// `forbidden_form()` otherwise).
pub(crate) fn checked<T: CsrfToken>(me: &SignedIn, form: Result<Form<T>, FormRejection>) -> Option<T> {
    form.ok().map(|Form(f)| f).filter(|f| same(&me.csrf_token, f.csrf()))
}
