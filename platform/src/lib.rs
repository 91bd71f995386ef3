//! # interstate-platform
//!
//! The OS edge of interstate. The core (`interstate-core`) decides; this crate moves bytes:
//! - [`busdir`]: where a bus lives, created with safe permissions;
//! - [`conn`]: framed non-blocking streams with fixed buffers;
//! - [`node`]: a process's place on the bus: machines on a mio loop, joined to a hub over a
//!   Unix socket, or hosting the hub;
//! - [`journal`]: durable machines' state after every step, read back after a crash;
//! - [`registry`]: the node's copy of the bus registry;
//! - [`serial`]: a device on a tty (COBS-framed frames) bridged onto the bus;
//! - [`activation`]: the hub's listening socket from a service manager (socket activation);
//! - [`notify`]: readiness notification (`sd_notify`), both ends;
//! - [`supervisor`]: an app's processes started in order, watched, restarted and stopped.

#![warn(missing_docs)]

pub mod activation;
pub mod busdir;
pub mod conn;
pub mod error;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod node;
pub mod notify;
pub mod registry;
pub mod sched;
pub mod serial;
pub mod supervisor;
pub mod transport;

pub use error::PlatformError;
pub use node::{
    Node, NodeConfig, NodeStats, PortMessage, ProcessActor, Role, ThisProcess,
    DELIVERY_ERROR_EVENT, MACHINE_DOWN_EVENT, MACHINE_UP_EVENT, PORT_REQUESTS, REQUEST_ERROR_EVENT,
};
pub use registry::{MachineInfo, Registry};
