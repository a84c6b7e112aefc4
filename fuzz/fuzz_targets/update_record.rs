//! T36: the Update Record parser never panics, whatever arrives.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = caldicott_fhir::update_record::parse(data);
});
