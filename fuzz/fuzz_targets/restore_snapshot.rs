//! Fuzz target `restore_snapshot`: see `fuzz/src/snapshot.rs` for what it does and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interstate_fuzz::restore_snapshot(data));
