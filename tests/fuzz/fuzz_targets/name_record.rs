//! libFuzzer entry for [`orb_fuzz::name_record`] (`scripts/fuzz name-record`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::name_record(data));
