//! The whole minimal `no_std` program: [`interstate_core_check::exercise`] behind an entry
//! point and a panic handler of its own, for a bare-metal target. It has no vector table or
//! runtime crate (a Cortex-M program adds `cortex-m-rt`), so its size is the core's code
//! and what the program itself needs; see docs/embedded.md's Footprint.
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
    let mut buf = [0u8; 128];
    let report = interstate_core_check::exercise(&mut buf);
    core::hint::black_box(&report);
    core::hint::black_box(&buf);
    loop {
        core::hint::spin_loop();
    }
}

/// `size_of` the default machine, readable with `nm -S` (see docs/embedded.md's Footprint). The
/// size markers live in a section of their own, so that they do not count as `.rodata`.
#[used]
#[no_mangle]
#[link_section = ".footprint_sizes"]
pub static LAMP_MACHINE_SIZE: [u8; core::mem::size_of::<interstate_core_check::LampMachine>()] =
    [0; core::mem::size_of::<interstate_core_check::LampMachine>()];

/// `size_of` the machine sized for the lamp chart, readable the same way.
#[used]
#[no_mangle]
#[link_section = ".footprint_sizes"]
pub static SIZED_MACHINE_SIZE: [u8;
    core::mem::size_of::<interstate_core_check::SizedLampMachine>()] =
    [0; core::mem::size_of::<interstate_core_check::SizedLampMachine>()];

/// `size_of` the native lamp machine (the chart compiled to Rust, default capacities, the
/// state set sized for the chart), readable the same way.
#[used]
#[no_mangle]
#[link_section = ".footprint_sizes"]
pub static NATIVE_MACHINE_SIZE: [u8;
    core::mem::size_of::<interstate_core_check::NativeLampMachine>()] =
    [0; core::mem::size_of::<interstate_core_check::NativeLampMachine>()];

/// `size_of` the serial link with its default buffers, readable the same way.
#[used]
#[no_mangle]
#[link_section = ".footprint_sizes"]
pub static LAMP_LINK_SIZE: [u8; core::mem::size_of::<interstate_core_check::LampLink<'static>>()] =
    [0; core::mem::size_of::<interstate_core_check::LampLink<'static>>()];
