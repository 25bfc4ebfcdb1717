//! libFuzzer entry for [`orb_fuzz::wire`] (`scripts/fuzz wire`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::wire(data));
