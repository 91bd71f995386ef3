//! What a [`Client`](super::Client) and its host say to each other: the sinks the client
//! writes to, why a message was refused, and what comes back from the hub for the host to do
//! ([`Incoming`], [`TimeoutTodo`]).

use crate::bus::direct::RingRefusal;
use crate::wire::{
    Correlation, Deliver, DeliveryFailed, FailReason, Frame, RegisterStatus, RegistryEntry,
};

/// Where the client writes frames: the link to the hub. A `false` return means the link's
/// queue is full; the frame was not taken.
pub trait FrameSink {
    /// Queues a frame.
    fn send_frame(&mut self, frame: &Frame<'_>) -> bool;
    /// Queues an encoded frame body (without its length prefix).
    fn send_body(&mut self, body: &[u8]) -> bool;
    /// Whether a write to the link is pending anyway (acknowledgements ride on it).
    fn has_pending(&self) -> bool;
}

/// Where the client writes messages that go through direct rings (see [`crate::bus::direct`]).
pub trait DirectSink {
    /// Queues an encoded frame body on the ring of pair slot `slot`; `false`: no room now.
    fn send_body(&mut self, slot: usize, body: &[u8]) -> bool;
    /// Whether a write to any ring is pending anyway (acknowledgements ride on it).
    fn has_pending(&self) -> bool {
        false
    }
}

/// Why a message could not be taken by [`Client::send`](super::Client::send).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendRefused {
    /// The outstanding buffer is full while the link is up: keep the message and try again
    /// once acknowledgements free room (backpressure).
    Full,
    /// The message will not be sent: report this reason to its sender.
    Failed(FailReason),
}

/// What a frame from the hub means for the host.
#[derive(Debug)]
pub enum Incoming<'f> {
    /// Nothing for the host to do.
    Nothing,
    /// The link is ready (registration and subscription are queued; call
    /// [`Client::transmit`](super::Client::transmit) to send what waits). The largest frame either side may send.
    Ready {
        /// The negotiated largest frame body.
        max_frame: u32,
    },
    /// A message for one of this process's ids. Call [`Client::accept`](super::Client::accept) to tell a new one
    /// from a duplicate before delivering it.
    Deliver(Deliver<'f>),
    /// The hub reports a message undeliverable. `settled`: it was outstanding here and is
    /// now failed (report it to its sender); otherwise it was reported before, or sent by a
    /// process that is not this one.
    Failed {
        /// The report.
        failed: DeliveryFailed<'f>,
        /// Whether this settled an outstanding message.
        settled: bool,
        /// The request it opened or answered, when it settled one (see
        /// [`crate::request`]): a failed request settles the request.
        correlation: Correlation,
    },
    /// The hub answered a registration.
    Registered {
        /// The id.
        machine: &'f str,
        /// The hub's answer.
        status: RegisterStatus,
        /// What it changed, for the log.
        change: RegistrationChange,
    },
    /// A machine joined the registry (or is in the snapshot after a reconnect).
    RegistryEntry(RegistryEntry<'f>),
    /// A machine left the registry: call [`Client::fail_to`](super::Client::fail_to) to fail what was sent to it.
    RegistryRemoved(&'f str),
    /// The registry snapshot is complete: the host's registry copy is current again.
    SnapshotEnd,
    /// A copy of a frame crossing the hub (monitor subscription).
    Monitored(&'f [u8]),
    /// The hub asks this process to report `machine`'s state after each of its steps, and
    /// once now (`on`), or to stop (`!on`): see [`Frame::Report`].
    Report {
        /// The machine id (one of this process's).
        machine: &'f str,
        /// Report (true) or stop (false).
        on: bool,
    },
    /// A state report of a machine this process watches ([`Client::watch_state`](super::Client::watch_state)).
    State {
        /// The machine id.
        machine: &'f str,
        /// The report (a UTF-8 JSON object).
        report: &'f [u8],
    },
    /// A publish/subscribe frame ([`Frame::TopicEntry`], [`Frame::TopicSnapshotEnd`],
    /// [`Frame::TopicResult`]): hand it to the host's [`crate::bus::TopicMirror::handle`].
    Topic(Frame<'f>),
    /// The bus's counters: a [`Frame::StatsRequest`] (answer it with this process's
    /// [`Frame::Stats`]) or a [`Frame::Stats`] answering this process's request.
    Stats(Frame<'f>),
    /// The link is finished: close it (the client has scheduled the reconnect, or has
    /// failed for good). The reason, for the log.
    Close(CloseReason<'f>),
    /// The hub offers a direct ring pair with process `peer_pid` (see [`crate::bus::direct`]):
    /// take the rings it passed and call [`Client::direct_mapped`](super::Client::direct_mapped), or
    /// [`Client::direct_refused`](super::Client::direct_refused) when they cannot be mapped.
    DirectOffer {
        /// The pair's number.
        pair: u32,
        /// The other process.
        peer_pid: u32,
    },
    /// The ring of `slot` may be read from now on (the other side switched over).
    DirectReadable {
        /// The pair's slot.
        slot: usize,
    },
    /// The pair in `slot` is closed: drop its rings, unread bytes and all (what this process
    /// wrote to them and was not acknowledged goes again through the hub).
    DirectClosed {
        /// The pair's slot.
        slot: usize,
        /// The other process.
        peer_pid: u32,
        /// Why this side closed it (`None`: the hub closed it).
        why: Option<RingRefusal>,
    },
}

/// Why the link is to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason<'f> {
    /// The hub refused this process.
    Rejected(&'f str),
    /// The hub said goodbye.
    Goodbye(&'f str),
    /// The hub stopped answering pings.
    Silent,
}

/// What a registration answer changed, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationChange {
    /// Nothing worth a line.
    None,
    /// An id the hub had held elsewhere is this process's again.
    Regained,
    /// The hub still holds an id for this process's previous connection; it is asked for
    /// again until it is free.
    HeldElsewhere,
    /// Refused for good.
    Refused,
}

/// What [`Client::handle_timeout`](super::Client::handle_timeout) asks of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutTodo {
    /// Nothing.
    Nothing,
    /// Connect now (then call [`Client::connected`](super::Client::connected), or [`Client::disconnected`](super::Client::disconnected) if it failed).
    Connect,
    /// Close the link: the hub stopped answering.
    Close,
}
