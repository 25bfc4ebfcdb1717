//! libFuzzer entry for [`orb_fuzz::signed`] (`scripts/fuzz signed`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::signed(data));
