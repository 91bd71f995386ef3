//! Fuzz target `hub`: see `fuzz/src/lib.rs` for what it does and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interstate_fuzz::hub(data));
