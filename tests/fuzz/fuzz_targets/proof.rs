//! libFuzzer entry for [`orb_fuzz::proof`] (`scripts/fuzz proof`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::proof(data));
