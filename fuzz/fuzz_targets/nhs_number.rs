//! T36: NHS number parsing never panics, and what it accepts always passes its own check.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(n) = caldicott_core::NhsNumber::parse(s) {
            assert!(caldicott_core::NhsNumber::parse(n.as_str()).is_ok());
        }
    }
});
