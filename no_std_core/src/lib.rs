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
//!   payload, and deferred sends to any machine, to itself, or after a delay. The host binds
//!   action, guard and delay ids to code by implementing [`Behavior`].
//!
//! Every capacity is fixed at compile time; every overflow is an [`Error`] the host sees.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chart;
pub mod context;
pub mod endpoint;
pub mod error;
pub mod hub;
pub mod image;
pub mod machine;
pub mod set;
pub mod time;
pub mod wire;

pub use chart::{ActionId, Chart, DelayId, EventId, GuardId, StateId, StateKind, Tables};
pub use context::{
    ActionContext, Behavior, Event, GuardContext, NoBehavior, ProcessInfo, SendId, Target,
    TransportKind,
};
pub use error::Error;
pub use machine::{Machine, Outgoing, Stats, Status};
pub use time::{Duration, Instant};
