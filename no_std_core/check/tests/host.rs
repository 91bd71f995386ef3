//! The program the bare-metal build links, run on the host: what it reports is what the lamp
//! chart does, so the `no_std` build is known to work, not only to compile.

use interstate_core_check::{
    exercise, lamp_cycle, native_lamp_cycle, sized_lamp_cycle, LampLink, LampMachine, Report,
    LAMP_IMAGE,
};

#[test]
fn the_no_std_program_loads_runs_and_encodes() {
    let mut buf = [0u8; 128];
    let report = exercise(&mut buf).expect("the lamp cycle runs");
    assert_eq!(
        report,
        Report {
            states: 3,
            lit_after_toggle: true,
            dark_after_timer: true,
            timer_due_ms: 310,
            sent: 2,
            // `Deliver { from: "lamp", to: "controller", event: "LAMP_OFF", payload: [], seq: 2 }`
            wire_len: 4 + 1 + 5 + 11 + 9 + 1 + 1,
            serial_len: 1 + 1 + 28 + 2 + 1,
            // `Register { machine: "lamp" }` (6 bytes of body) and `Deliver { from: "lamp",
            // to: "controller", event: "LAMP_ON", payload: [], seq: 1 }` (27), each with its
            // CRC, one COBS code byte and two delimiters.
            link_tx: (6 + 2 + 1 + 2) + (27 + 2 + 1 + 2),
        }
    );
    assert!(!LAMP_IMAGE.is_empty());
}

#[test]
fn the_minimal_program_switches_the_lamp_on_and_off() {
    assert_eq!(lamp_cycle().unwrap(), (true, true, 2));
    assert_eq!(sized_lamp_cycle().unwrap(), (true, true, 2));
}

#[test]
fn the_native_program_switches_the_lamp_on_and_off_as_the_interpreter_does() {
    assert_eq!(native_lamp_cycle().unwrap(), lamp_cycle().unwrap());
}

#[test]
fn the_default_machine_size_is_reported() {
    // docs/embedded.md's Footprint quotes this figure for the host (64-bit); the bare-metal figure
    // comes from the thumbv7em build (`nm -S ... LAMP_MACHINE_SIZE`).
    eprintln!(
        "size_of::<Machine<'static>>() on this host: {} bytes",
        core::mem::size_of::<LampMachine>()
    );
    eprintln!(
        "size_of::<DeviceLink<'_, 256, 512>>() on this host: {} bytes",
        core::mem::size_of::<LampLink<'static>>()
    );
}
