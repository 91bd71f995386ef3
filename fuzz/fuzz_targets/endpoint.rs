//! Fuzz target `endpoint`: see `fuzz/src/lib.rs` for what it does and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interstate_fuzz::endpoint(data));
