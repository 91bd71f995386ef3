//! `interstate serial-bridge`: a device on a serial line joins the bus.
//!
//! The device speaks the bus protocol over the line with the core's `DeviceLink` (COBS frames
//! with a CRC each); the bridge opens the tty in raw mode, joins the bus as an ordinary
//! client, and routes the device's machine ids as ports of its node (see
//! `interstate_platform::serial`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use interstate_platform::serial::{BridgeConfig, SerialBridge};

use crate::cmd::bus::{stop_flag, BusArgs};
use interstate::bus::{Node, Role};

/// The serial line's settings.
#[derive(Clone, Debug)]
pub struct SerialArgs {
    /// The tty (`/dev/ttyUSB0`, `/dev/ttyACM0`, a pseudo-terminal).
    pub tty: PathBuf,
    /// The line speed in baud (a pseudo-terminal ignores it); unchanged when not given.
    pub baud: Option<u32>,
}

/// Runs the bridge until SIGINT or SIGTERM, then prints its counters.
pub fn serial_bridge(bus: &BusArgs, args: &SerialArgs) -> Result<(), String> {
    let stop = stop_flag()?;
    let node = Node::new(bus.config(Role::Client)?).map_err(|e| super::buses::no_hub_hint(&e))?;
    if !node.is_connected() {
        return Err(format!(
            "could not reach the hub of bus '{}'",
            node.config().bus
        ));
    }
    let bus_name = node.config().bus.clone();
    let mut bridge = SerialBridge::new(node, &args.tty, args.baud, BridgeConfig::default())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "interstate: serial bridge on {} joined bus '{bus_name}'",
        args.tty.display()
    );
    while !stop.load(Ordering::Relaxed) {
        bridge
            .run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
    }
    let s = bridge.stats();
    eprintln!(
        "interstate: serial bridge stopped: {} messages from the device, {} to it, {} failed back; \
         line: {} frames, dropped {} (crc {}, cobs {}, short {}, oversized {}, malformed {}); {} sessions",
        s.from_device,
        s.to_device,
        s.failed_back,
        s.line.frames,
        s.line.dropped(),
        s.line.crc_errors,
        s.line.cobs_errors,
        s.line.too_short,
        s.line.oversized,
        s.line.malformed,
        s.sessions
    );
    bridge.node().shutdown();
    Ok(())
}
