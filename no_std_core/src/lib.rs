//! # interstate-core
//!
//! The statechart core of interstate: `#![no_std]`, no `alloc`, no `unsafe`, no I/O.
//!
//! ## How the pieces fit
//!
//! - [`chart`]: a compiled chart is a set of flat tables (states in document order,
//!   transitions, targets, actions, interned names), validated once by [`Chart::new`]. Stepping
//!   is table lookups and bit operations on [`set::StateSet`].
//! - [`image`]: the same tables in one postcard frame; [`image::decode`] borrows them from the
//!   bytes, so a device runs a chart compiled on a host without allocating.
//! - [`machine`]: a [`Machine`] runs the XState v5 step algorithm over a chart in fixed-size
//!   storage (const-generic capacities). It is sans-IO: the host passes events and the time
//!   in ([`Machine::send`], [`Machine::handle_timeout`]) and reads the next deadline
//!   ([`Machine::poll_timeout`]) and the messages to deliver ([`Machine::outbox`]) out.
//! - [`context`]: what actions see ([`ActionContext`]): the machine id, the event and its
//!   payload and sender, and deferred sends to any machine, to itself, after a delay, a reply
//!   to the sender, or a request with a timeout. The host binds action, guard and delay ids
//!   to code by implementing [`Behavior`].
//! - [`request`]: request/response: the requester's bounded table of pending requests, each
//!   settled exactly once (its reply, a timeout, its target gone, or a delivery failure).
//!
//! - [`wire`], [`hub`], [`endpoint`]: the bus protocol's frames, the hub's routing and a
//!   client's handshake and keepalive, as state machines that move no bytes themselves.
//! - [`bus`]: the rest of a client's side of the protocol: the outstanding buffer and its
//!   retransmission, duplicate suppression, the acknowledgement policy, registration retry,
//!   and [`bus::Client`], all of it as one state machine.
//! - [`supervision`]: the rules of the exchange between a node and the supervisor that runs
//!   the processes its machines invoke (which exit answers which start, what a stop may
//!   stop, what a requester's departure does), on the supervisor's side.
//! - [`serial`]: the same frames over a bare byte stream (COBS framing, a CRC per frame), and
//!   [`serial::DeviceLink`], the device side of a serial link to the bus.
//!
//! Every capacity is fixed at compile time; every overflow is an [`Error`] the host sees.
//!
//! ## Cargo features
//!
//! | feature | what it adds | `no_std`, no `alloc` |
//! | --- | --- | --- |
//! | (none, the default) | everything above | yes |
//! | `defmt` | `defmt::Format` on the public types; the core's log lines through `defmt` | yes |
//! | `log` | the core's log lines through the `log` facade | yes |
//! | `std` | `std::error::Error` for [`Error`] | no: links `std` |
//!
//! Without `defmt` or `log` the core logs nothing. With both, log lines go to `defmt`. The
//! core's log lines are the decisions a host would not otherwise see: a hub refusing a link
//! or a frame, a client giving up on its hub, a serial frame dropped, a machine stopped by an
//! error.
//!
//! No dependency of the core uses `std` or `alloc` (`heapless`, `postcard` and `serde`
//! without default features, `defmt`, `log`). The crate `no_std_core/check` proves it in CI:
//! a `#![no_std]` program that loads a chart, runs a machine and encodes frames, built for a
//! bare-metal target (`thumbv7em-none-eabihf`), where `std` does not exist.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
mod macros;

pub mod bus;
pub mod chart;
pub mod context;
pub mod endpoint;
pub mod error;
pub mod hub;
pub mod image;
mod json_text;
pub mod machine;
pub mod mqtt;
pub mod request;
pub mod serial;
pub mod set;
pub mod supervision;
pub mod time;
pub mod topic;
pub mod wire;

/// A xorshift64 generator for the unit tests' random operations: deterministic, no
/// dependency, any nonzero seed.
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

pub use chart::{ActionId, Chart, DelayId, EventId, GuardId, StateId, StateKind, Tables};
pub use context::{
    ActionContext, Behavior, Event, GuardContext, NoBehavior, ProcessInfo, ReplyTo, SendId, Target,
    TransportKind,
};
pub use error::Error;
pub use machine::{ContextFormat, Machine, Outgoing, Stats, Status};
pub use request::RequestId;
pub use time::{Duration, Instant};
pub use wire::Correlation;
