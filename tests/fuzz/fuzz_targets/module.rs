//! libFuzzer entry for [`orb_fuzz::module`] (`scripts/fuzz module`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::module(data));
