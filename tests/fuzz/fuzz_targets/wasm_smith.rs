//! libFuzzer entry for [`orb_fuzz::wasm_smith`] (`scripts/fuzz wasm-smith`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orb_fuzz::wasm_smith(data));
