//! The core's one error type.

use core::fmt;

/// Everything that can go wrong in the core: loading a chart or an image, creating a machine,
/// and stepping it.
///
/// Each variant names the thing that was wrong and, where there is one, the place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A chart table failed validation: `table[index]` is wrong for `reason`.
    InvalidChart {
        /// The table (`states`, `transitions`, ...).
        table: &'static str,
        /// The record index.
        index: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The bytes are not a chart image: wrong magic, truncated or not postcard.
    InvalidImage(&'static str),
    /// The image was written by another image format version.
    ImageVersion {
        /// The version this build reads.
        expected: u16,
        /// The version in the image.
        found: u16,
    },
    /// The chart has more states than the machine's state set can hold.
    TooManyStates {
        /// States in the chart.
        states: usize,
        /// States the machine's `STATE_WORDS` can hold.
        capacity: usize,
    },
    /// The chart needs more history memory than the machine has.
    HistoryCapacity {
        /// Slots the chart needs.
        needed: usize,
        /// Slots the machine has.
        capacity: usize,
    },
    /// The machine id is longer than the machine can store.
    MachineIdTooLong {
        /// Its length in bytes.
        len: usize,
        /// The most the machine stores.
        capacity: usize,
    },
    /// A macrostep took more microsteps than the limit: an eventless or raise loop.
    MicrostepLimit {
        /// The limit that was hit.
        limit: u32,
    },
    /// The internal event queue (raised events, done events) is full.
    QueueFull {
        /// Its capacity.
        capacity: usize,
    },
    /// The outbox is full: the host has not drained it.
    OutboxFull {
        /// Its capacity in messages.
        capacity: usize,
    },
    /// The byte storage behind the outbox or the timers is full (names and payloads).
    PayloadSpaceFull {
        /// Its capacity in bytes.
        capacity: usize,
    },
    /// The timer table is full.
    TimersFull {
        /// Its capacity.
        capacity: usize,
    },
    /// A named delay has no binding: the host returned none for it.
    UnboundDelay {
        /// The delay id in the chart.
        delay: u16,
    },
    /// The machine was not started, or has stopped with an error.
    NotRunning,
    /// A frame's length prefix is larger than the link allows.
    FrameTooLarge {
        /// The announced length.
        len: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A frame body is not a valid postcard [`crate::wire::Frame`].
    MalformedFrame(&'static str),
    /// The peer broke the protocol (e.g. a frame out of order).
    Protocol(&'static str),
    /// The machine is already started.
    AlreadyStarted,
    /// A serial link's transmit buffer has no room for the frame: write out
    /// [`crate::serial::DeviceLink::pending_tx`] first.
    TxFull {
        /// Bytes the encoded frame may need.
        needed: usize,
        /// Bytes free in the buffer.
        free: usize,
    },
    /// The link has not been welcomed by the other side (or lost it): wait for
    /// [`crate::serial::Incoming::Ready`].
    NotConnected,
    /// An action tried to send an event in the reserved `xstate.` namespace
    /// ([`crate::wire::RESERVED_EVENT_PREFIX`]), which only the runtime may send.
    ReservedEvent,
    /// A publication's topic breaks the topic rules ([`crate::topic::check_topic`]).
    BadTopic(crate::topic::TopicError),
    /// The machine's context does not fit its context storage (the `C` capacity).
    ContextFull {
        /// Bytes the new context needs.
        needed: usize,
        /// The storage's capacity in bytes.
        capacity: usize,
    },
    /// A JSON context operation (an `assign`, a context guard, a JSON context set by the host)
    /// met a context or a value that is not the JSON it needs.
    ContextNotJson(&'static str),
    /// An `assign` with `add` found a key whose value is not a number, or the sum is not a
    /// finite number.
    ContextNotNumber,
    /// The context could not be decoded as the type asked for (it is JSON text, or postcard of
    /// another type), or a value could not be encoded with postcard.
    ContextDecode,
    /// The buffer given to [`crate::Machine::snapshot`] is too small.
    SnapshotBufferTooSmall {
        /// Its size in bytes.
        capacity: usize,
    },
    /// The bytes are not a machine snapshot, or are corrupt: what was wrong.
    InvalidSnapshot(&'static str),
    /// The snapshot was written by another snapshot format version.
    SnapshotVersion {
        /// The version this build reads.
        expected: u16,
        /// The version in the snapshot.
        found: u16,
    },
    /// The snapshot was taken of another chart, or of another revision of this chart.
    SnapshotChart {
        /// The hash of the chart the machine runs.
        expected: u64,
        /// The hash recorded in the snapshot.
        found: u64,
    },
    /// The snapshot holds more than this machine's capacities allow.
    SnapshotCapacity {
        /// Which storage (`outbox`, `timers`, `context`, ...).
        what: &'static str,
        /// What the snapshot needs.
        needed: usize,
        /// What the machine has.
        capacity: usize,
    },
    /// The machine is in no state a snapshot can be taken of, or restored into: why.
    SnapshotState(&'static str),
    /// A request could not be opened: as many of this machine's requests are waiting for
    /// their replies as its table holds (see [`crate::request::Pending`]).
    RequestsFull {
        /// The table's capacity.
        capacity: usize,
    },
    /// `reply` (or a `sendTo` the sender) on an event that has no sender: one the host
    /// injected, a timer's, or the machine's own.
    NoSender,
    /// An `invoke` would start a child while the machine has as many live children as it
    /// may (see [`crate::machine::MAX_LIVE_CHILDREN`]).
    ChildrenFull {
        /// How many live children the machine may have.
        capacity: usize,
    },
    /// One step started and stopped more children than the host can be told about before it
    /// drains the outbox.
    ChildChangesFull {
        /// How many changes a step may make.
        capacity: usize,
    },
    /// A `sendTo` names one of the chart's invoke ids, but no child by that id is running
    /// (its state is not active): XState fails the same way.
    NoSuchChild,
    /// A `sendParent` in a machine that no other machine invoked.
    NoParent,
    /// A child failed (`xstate.error.actor.<id>`) and no transition takes that event: the
    /// machine fails with it, as XState's does.
    UnhandledChildError,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::InvalidChart { table, index, reason } => write!(f, "invalid chart: {table}[{index}]: {reason}"),
            Error::InvalidImage(why) => write!(f, "not a chart image: {why}"),
            Error::ImageVersion { expected, found } => {
                write!(f, "chart image version {found} is not supported (this build reads version {expected}); recompile the chart")
            }
            Error::TooManyStates { states, capacity } => write!(
                f,
                "the chart has {states} states but the machine holds at most {capacity}; raise the machine's STATE_WORDS"
            ),
            Error::HistoryCapacity { needed, capacity } => write!(
                f,
                "the chart needs {needed} history slots but the machine has {capacity}; raise the machine's HISTORY capacity"
            ),
            Error::MachineIdTooLong { len, capacity } => {
                write!(f, "machine id is {len} bytes long; at most {capacity} are stored")
            }
            Error::MicrostepLimit { limit } => write!(
                f,
                "infinite loop: more than {limit} microsteps without reaching a stable state (a cycle of eventless transitions or raised events)"
            ),
            Error::QueueFull { capacity } => {
                write!(f, "internal event queue full ({capacity} events): too many raised or done events in one macrostep")
            }
            Error::OutboxFull { capacity } => {
                write!(f, "outbox full ({capacity} messages): drain it with poll_outbox after every step")
            }
            Error::PayloadSpaceFull { capacity } => {
                write!(f, "message byte storage full ({capacity} bytes): names and payloads of pending sends do not fit")
            }
            Error::TimersFull { capacity } => write!(f, "timer table full ({capacity} pending delayed events)"),
            Error::UnboundDelay { delay } => write!(f, "named delay #{delay} has no binding"),
            Error::FrameTooLarge { len, max } => write!(f, "frame of {len} bytes exceeds the largest allowed ({max} bytes)"),
            Error::MalformedFrame(why) => write!(f, "malformed frame: {why}"),
            Error::Protocol(why) => write!(f, "protocol violation: {why}"),
            Error::NotRunning => write!(f, "the machine is not running (not started, or stopped by an error)"),
            Error::AlreadyStarted => write!(f, "the machine is already started"),
            Error::TxFull { needed, free } => write!(
                f,
                "serial transmit buffer full: the frame may need {needed} bytes and {free} are free; write out the pending bytes first"
            ),
            Error::NotConnected => write!(f, "the link is not connected: no welcome from the other side yet"),
            Error::ReservedEvent => write!(
                f,
                "events named xstate.* are reserved for the runtime; send an event with another name"
            ),
            Error::BadTopic(why) => write!(f, "bad topic: {why}"),
            Error::ContextFull { needed, capacity } => write!(
                f,
                "the context needs {needed} bytes but the machine's context storage holds {capacity}; raise the machine's CONTEXT capacity or keep less in the context"
            ),
            Error::ContextNotJson(why) => write!(f, "context: {why}"),
            Error::ContextNotNumber => write!(
                f,
                "assign with 'add': the context key does not hold a number (set it first, e.g. in the chart's context), or the sum is not a finite number"
            ),
            Error::ContextDecode => write!(
                f,
                "the context cannot be decoded as the type asked for (it was set as another type, or it is the JSON context of a chart), or the value cannot be encoded with postcard"
            ),
            Error::SnapshotBufferTooSmall { capacity } => {
                write!(f, "the snapshot does not fit the {capacity}-byte buffer; pass a larger one")
            }
            Error::InvalidSnapshot(why) => write!(f, "not a valid machine snapshot: {why}"),
            Error::SnapshotVersion { expected, found } => write!(
                f,
                "snapshot format version {found} is not supported (this build reads version {expected})"
            ),
            Error::SnapshotChart { expected, found } => write!(
                f,
                "the snapshot was taken of another chart or chart revision (chart hash {found:016x}, this machine's chart is {expected:016x}); it is refused, not applied"
            ),
            Error::SnapshotCapacity { what, needed, capacity } => write!(
                f,
                "the snapshot needs {needed} in the machine's {what} storage, which holds {capacity}; restore into a machine with larger capacities"
            ),
            Error::SnapshotState(why) => write!(f, "snapshot: {why}"),
            Error::RequestsFull { capacity } => write!(
                f,
                "request table full ({capacity} requests waiting for replies): wait for a reply or a timeout, or give the machine a larger table"
            ),
            Error::ChildrenFull { capacity } => write!(
                f,
                "an invoke would start a child while {capacity} children are live, as many as the machine may run; raise the capacity or invoke fewer at once"
            ),
            Error::ChildChangesFull { capacity } => write!(
                f,
                "more than {capacity} children started and stopped in one step before the host drained the outbox"
            ),
            Error::NoSuchChild => write!(
                f,
                "sendTo names an invoked child that is not running (the state that invokes it is not active)"
            ),
            Error::UnhandledChildError => write!(
                f,
                "an invoked child failed and no transition handles its xstate.error.actor event (add onError to the invocation)"
            ),
            Error::NoParent => write!(
                f,
                "sendParent in a machine that no machine invoked (it has no parent)"
            ),
            Error::NoSender => write!(
                f,
                "the event has no sender to reply to (it came from the host, a timer or this machine)"
            ),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl std::error::Error for Error {}
