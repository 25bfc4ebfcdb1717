//! libFuzzer entry for [`orb_fuzz::http`] (`scripts/fuzz http`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::http(data));
