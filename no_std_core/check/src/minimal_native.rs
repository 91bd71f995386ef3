//! The smallest device program with the chart compiled to native Rust:
//! [`interstate_core_check::native_lamp_cycle`] (the generated macrostep in a default
//! `NativeMachine`: start, one event, one timer) behind an entry point and a panic handler,
//! for a bare-metal target; `minimal.rs` is the same program with the interpreter. See
//! docs/embedded.md's Footprint.
#![no_std]
#![no_main]

use core::panic::PanicInfo;

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// The entry point the linker looks for (the one `no_mangle` item: the only thing here the
/// `unsafe_code` lint would flag).
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let result = interstate_core_check::native_lamp_cycle();
    core::hint::black_box(&result);
    loop {
        core::hint::spin_loop();
    }
}
