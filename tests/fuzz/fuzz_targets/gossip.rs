//! libFuzzer entry for [`orb_fuzz::gossip`] (`scripts/fuzz gossip`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::gossip(data));
