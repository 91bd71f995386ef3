//! The smallest device program: [`interstate_core_check::lamp_cycle`] (the generated chart in
//! a default `Machine`: start, one event, one timer) behind an entry point and a panic
//! handler, for a bare-metal target. No image loader and no codecs: its size is the step
//! algorithm, the chart's validation and tables, and what a program needs around them; see
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
    let result = interstate_core_check::lamp_cycle();
    core::hint::black_box(&result);
    loop {
        core::hint::spin_loop();
    }
}
