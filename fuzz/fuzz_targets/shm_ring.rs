//! Fuzz target `shm_ring`: see `fuzz/src/lib.rs` for what it does and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interstate_fuzz::shm_ring(data));
