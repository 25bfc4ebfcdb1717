//! libFuzzer entry for [`orb_fuzz::genesis`] (`scripts/fuzz genesis`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::genesis(data));
