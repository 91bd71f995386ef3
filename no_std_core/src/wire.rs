//! The bus wire format: postcard frames, length-delimited on stream transports.
//!
//! On a stream (a Unix socket, a FIFO pair) every frame is a 4-byte little-endian length `n`
//! followed by `n` bytes: the postcard encoding of a [`Frame`]. The first frame a client sends
//! is [`Frame::Hello`]; the hub answers [`Frame::Welcome`] or [`Frame::Reject`] and closes.
//! `docs/wire.md` specifies every frame byte by byte for implementers in other languages.
//!
//! Decoding borrows every string and payload from the input buffer: receiving a message
//! allocates nothing.

use serde::{Deserialize, Serialize};

use crate::context::TransportKind;
use crate::error::Error;
pub use crate::topic::TopicStatus;

/// `ISTB` as a little-endian `u32`: the first field of every Hello.
pub const MAGIC: u32 = u32::from_le_bytes(*b"ISTB");
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 6;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// The default largest frame body, in bytes.
pub const DEFAULT_MAX_FRAME: u32 = 64 * 1024;
/// The smallest largest-frame a peer may announce.
pub const MIN_MAX_FRAME: u32 = 512;
/// The prefix of the reserved event namespace: events named `xstate.*` come only from the
/// runtime itself (delivery errors, watch notifications, XState's own internal events). No
/// application send may carry one, and the hub refuses a `Deliver` that does
/// ([`FailReason::Reserved`]).
pub const RESERVED_EVENT_PREFIX: &str = "xstate.";
/// The most bytes of a stop error a [`Frame::Stopped`] carries (and a hub keeps, and a
/// [`DeliveryFailed::detail`] repeats): a longer one is cut at a character boundary at or
/// below this length ([`cut_at_char`]).
pub const MAX_STOP_ERROR: usize = 128;

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
pub fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether `event` is in the reserved `xstate.` namespace (see [`RESERVED_EVENT_PREFIX`]).
#[inline]
pub fn is_reserved_event(event: &str) -> bool {
    event
        .as_bytes()
        .starts_with(RESERVED_EVENT_PREFIX.as_bytes())
}

/// Why a hub refuses a client.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RejectCode {
    /// The first frame was not a Hello with the right magic.
    NotInterstate,
    /// The protocol versions differ.
    Version,
    /// The client's user or group is not allowed on this bus.
    NotAllowed,
    /// The hub has as many links as it accepts.
    TooManyLinks,
    /// The announced largest frame is too small.
    FrameSize,
}

/// Why a message was not delivered.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FailReason {
    /// No machine has that id on the bus.
    UnknownTarget,
    /// The target's process went away before the message was delivered.
    TargetGone,
    /// The target's queue is full and the message could not wait.
    QueueFull,
    /// The sender does not own the machine id it sent as.
    NotOwner,
    /// The frame is larger than the bus allows.
    TooLarge,
    /// The sender is not connected to the hub and its buffer is full.
    Disconnected,
    /// The event is in the reserved `xstate.` namespace, which only the runtime may send.
    Reserved,
    /// The target machine stopped on an error and left the bus.
    TargetStopped,
    /// The target lives on another node (another host, reached through an MQTT bridge) and
    /// that node did not confirm the message: it went down (its last will), or did not
    /// answer within the bridge's bound. Not confirmed either way (`docs/internode.md`).
    NodeUnreachable,
}

impl FailReason {
    /// The short, stable name of the reason in the runtime's JSON payloads
    /// (`xstate.error.delivery`, `xstate.error.request`).
    pub fn code(self) -> &'static str {
        match self {
            FailReason::UnknownTarget => "unknown-target",
            FailReason::TargetGone => "target-gone",
            FailReason::QueueFull => "queue-full",
            FailReason::NotOwner => "not-owner",
            FailReason::TooLarge => "too-large",
            FailReason::Disconnected => "disconnected",
            FailReason::Reserved => "reserved",
            FailReason::TargetStopped => "target-stopped",
            FailReason::NodeUnreachable => "node-unreachable",
        }
    }
    /// A short reason a user can act on.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::UnknownTarget => "no machine with that id is registered on the bus",
            FailReason::TargetGone => "the target's process went away",
            FailReason::QueueFull => "the target's queue is full",
            FailReason::NotOwner => "the sender does not own the machine id it sent as",
            FailReason::TooLarge => {
                "the message is larger than the bus's largest frame (max_frame, 64 KiB by \
                 default: raise it on both ends)"
            }
            FailReason::Disconnected => "not connected to the hub and the reconnect buffer is full",
            FailReason::Reserved => {
                "events named xstate.* are reserved for the runtime; applications may not send them"
            }
            FailReason::TargetStopped => "the target machine stopped on an error and left the bus",
            FailReason::NodeUnreachable => {
                "the target's node (another host, through the MQTT bridge) went down or did not confirm the message in time"
            }
        }
    }
}

/// The result of a registration.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegisterStatus {
    /// The id is now routed to this link.
    Ok,
    /// A live peer owns the id.
    Taken,
    /// The link has as many machines as it may register.
    TooMany,
    /// The hub's routing table is full.
    HubFull,
    /// The id is empty or too long.
    BadId,
}

/// A client's first frame.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello<'a> {
    /// [`MAGIC`].
    pub magic: u32,
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The largest frame body the client accepts.
    pub max_frame: u32,
    /// The client's process id (informational: the hub trusts the kernel's peer credentials).
    pub pid: u32,
    /// The client's executable name.
    pub executable: &'a str,
}

/// The hub's answer to an accepted Hello.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Welcome {
    /// The hub's protocol version.
    pub version: u16,
    /// The largest frame body either side may send: the smaller of the two.
    pub max_frame: u32,
    /// The link's number on the hub (for logs).
    pub link: u32,
    /// The hub's process id.
    pub hub_pid: u32,
}

/// The hub's answer to a refused Hello; it closes the link after sending it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reject<'a> {
    /// What kind of refusal.
    pub code: RejectCode,
    /// The hub's protocol version, so a client can say what it should upgrade to.
    pub version: u16,
    /// A message a user can act on.
    pub message: &'a str,
}

/// What ties a message to a request: nothing (a plain send, the common case), the request it
/// opens, or the request it answers. Request ids are the requesting machine's own (see
/// [`crate::request`]); a reply goes back to the requester, which matches it by the id and
/// by who sent it.
///
/// On the wire a message with a correlation is a Deliver flavour of its own (tag
/// [`DELIVER_CORRELATED_TAG`]: the Deliver fields, then this enum): a plain Deliver's bytes,
/// and the cost of reading and writing it, are unchanged.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Correlation {
    /// A plain message.
    #[default]
    None,
    /// A request with this id: its receiver's reply ([`crate::ActionContext::reply`]) carries
    /// [`Correlation::Reply`] with the same id.
    Request(u32),
    /// The reply to the request with this id.
    Reply(u32),
}

/// An event from one machine to another.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Deliver<'a> {
    /// The sending machine. The hub checks that the sending link owns it.
    pub from: &'a str,
    /// The target machine.
    pub to: &'a str,
    /// The event name.
    pub event: &'a str,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// Per-sender sequence number (for failure reports and ordering checks).
    pub seq: u64,
    /// The request this message opens or answers, if any. Not a postcard field: a message
    /// with a correlation is written as its own frame kind ([`DELIVER_CORRELATED_TAG`]) by
    /// [`Frame::encode`] and read back by [`Frame::decode`]; postcard alone writes and reads
    /// only the plain flavour.
    #[serde(skip)]
    pub correlation: Correlation,
}

/// A message that could not be delivered, reported to its sender.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeliveryFailed<'a> {
    /// The machine that sent the message.
    pub from: &'a str,
    /// Its target.
    pub to: &'a str,
    /// The event name.
    pub event: &'a str,
    /// The message's sequence number.
    pub seq: u64,
    /// Why.
    pub reason: FailReason,
    /// What there is to add to the reason, empty when nothing: for
    /// [`FailReason::TargetStopped`], the error that stopped the target (at most
    /// [`MAX_STOP_ERROR`] bytes).
    pub detail: &'a str,
}

/// One machine in the registry.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RegistryEntry<'a> {
    /// The machine id.
    pub machine: &'a str,
    /// The process hosting it (from the kernel's peer credentials).
    pub pid: u32,
    /// Its user id (from the kernel's peer credentials).
    pub uid: u32,
    /// Its executable name.
    pub executable: &'a str,
    /// How the hub reaches it.
    pub transport: TransportKind,
    /// When it registered: milliseconds since the Unix epoch, on the hub's clock.
    pub since_ms: u64,
    /// Registered with [`Frame::RegisterDurable`]: a machine that journals its state, whose
    /// restarted process numbers its messages on from where it was and sends again what it
    /// had not had acknowledged. A receiver's duplicate filter carries its numbers over to
    /// the new process (protocol version 4).
    pub durable: bool,
}

/// Every frame of the protocol.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Frame<'a> {
    /// Client -> hub, first frame.
    #[serde(borrow)]
    Hello(Hello<'a>),
    /// Hub -> client: accepted.
    Welcome(Welcome),
    /// Hub -> client: refused; the hub closes the link.
    #[serde(borrow)]
    Reject(Reject<'a>),
    /// Client -> hub: route this machine id to me.
    Register {
        /// The machine id.
        machine: &'a str,
    },
    /// Hub -> client: the result of a Register.
    RegisterResult {
        /// The machine id.
        machine: &'a str,
        /// The result.
        status: RegisterStatus,
    },
    /// Client -> hub: stop routing this id to me.
    Unregister {
        /// The machine id.
        machine: &'a str,
    },
    /// An event between machines, in either direction.
    #[serde(borrow)]
    Deliver(Deliver<'a>),
    /// Hub -> client: a message this client sent was not delivered.
    #[serde(borrow)]
    DeliveryFailed(DeliveryFailed<'a>),
    /// Client -> hub: send me the registry (a snapshot, then updates) and/or a copy of every
    /// frame crossing the hub.
    Subscribe {
        /// Registry snapshot and updates.
        registry: bool,
        /// Copies of frames crossing the hub.
        monitor: bool,
    },
    /// Hub -> client: a registry entry (in a snapshot, or a new registration).
    #[serde(borrow)]
    RegistryEntry(RegistryEntry<'a>),
    /// Hub -> client: a machine left the registry.
    RegistryRemoved {
        /// The machine id.
        machine: &'a str,
    },
    /// Hub -> client: the registry snapshot is complete; updates follow.
    SnapshotEnd,
    /// Hub -> monitoring client: a frame that crossed the hub, as its original bytes.
    Monitored {
        /// The link it came from (0: the hub's own process).
        link: u32,
        /// Milliseconds since the Unix epoch.
        at_ms: u64,
        /// The frame body (a postcard `Frame`).
        frame: &'a [u8],
    },
    /// Either way: are you there?
    Ping {
        /// Echoed by the Pong.
        nonce: u64,
    },
    /// Either way: yes.
    Pong {
        /// The Ping's nonce.
        nonce: u64,
    },
    /// Either way: closing on purpose.
    Goodbye {
        /// Why.
        reason: &'a str,
    },
    /// Receiver -> sender (routed by the hub like a Deliver): every message from `to` to
    /// `from` with a sequence number up to `seq` was delivered. Cumulative.
    Ack {
        /// The machine that received the messages (owned by the acknowledging link).
        from: &'a str,
        /// The machine that sent them.
        to: &'a str,
        /// The highest sequence number delivered.
        seq: u64,
    },
    /// Client -> hub: send me `machine`'s state reports (`on`), or stop (`!on`). The hub
    /// asks the machine's owner to report ([`Frame::Report`]) while anyone watches.
    Watch {
        /// The machine id.
        machine: &'a str,
        /// Start (true) or stop (false) watching.
        on: bool,
    },
    /// Hub -> the owner of `machine`: someone watches it, send a [`Frame::State`] now and
    /// after each of its steps (`on`); nobody does any more, stop (`!on`).
    Report {
        /// The machine id (one the link registered).
        machine: &'a str,
        /// Report (true) or stop (false).
        on: bool,
    },
    /// Owner -> hub -> each watcher: `machine`'s state, as a UTF-8 JSON object (see
    /// `docs/wire.md`). The hub forwards the body unchanged.
    State {
        /// The machine id (one the sending link registered).
        machine: &'a str,
        /// The report: a UTF-8 JSON object.
        report: &'a [u8],
    },
    /// Client -> hub: `machine` stopped on an error. Like `Unregister`, and the hub answers
    /// later messages to it with [`FailReason::TargetStopped`] (and `error` as the report's
    /// `detail`) until someone registers it.
    Stopped {
        /// The machine id.
        machine: &'a str,
        /// The error that stopped it, at most [`MAX_STOP_ERROR`] bytes (cut at a character
        /// boundary: [`cut_at_char`]); the hub keeps that much of a longer one.
        error: &'a str,
    },
    /// Client -> hub -> monitoring clients: a message of this link's machines failed in the
    /// sending process itself (too large, not connected, a reserved event, a stopped local
    /// target...), so no `DeliveryFailed` from the hub tells monitors of it. The hub checks
    /// that the link owns `from`, and copies the body to monitors as a [`Frame::Monitored`];
    /// with no monitor it drops it.
    #[serde(borrow)]
    NodeFailure(DeliveryFailed<'a>),
    /// Client -> hub: subscribe `machine` (an id the link registered) to the topic filter
    /// `filter` (see [`crate::topic`]). The hub answers [`Frame::TopicResult`].
    TopicSubscribe {
        /// The subscribing machine.
        machine: &'a str,
        /// The filter (MQTT's rules).
        filter: &'a str,
    },
    /// Client -> hub: end `machine`'s subscription to `filter`.
    TopicUnsubscribe {
        /// The machine.
        machine: &'a str,
        /// The filter it subscribed with.
        filter: &'a str,
    },
    /// Hub -> client: the answer to a [`Frame::TopicSubscribe`].
    TopicResult {
        /// The machine.
        machine: &'a str,
        /// The filter.
        filter: &'a str,
        /// Held, or why not.
        status: TopicStatus,
    },
    /// Client -> hub: send me the bus's subscriptions (`on`: a snapshot of
    /// [`Frame::TopicEntry`]s, [`Frame::TopicSnapshotEnd`], then every change), or stop.
    /// A publisher fans its publications out to the subscribers it knows of.
    TopicWatch {
        /// Start (true) or stop (false).
        on: bool,
    },
    /// Hub -> watching client: a subscription on the bus, held (`on`) or ended (`!on`).
    TopicEntry {
        /// The subscribed machine.
        machine: &'a str,
        /// Its filter.
        filter: &'a str,
        /// Held (true) or ended (false).
        on: bool,
    },
    /// Hub -> watching client: the subscription snapshot is complete; changes follow.
    TopicSnapshotEnd,
    /// Not a frame: it holds variant index 28, the kind of a correlated Deliver
    /// ([`DELIVER_CORRELATED_TAG`], read and written by hand), so that the frames after it
    /// keep their kinds. [`Frame::encode`] refuses it and nothing decodes to it.
    #[doc(hidden)]
    ReservedCorrelatedDeliver,
    /// Client -> hub: send me the bus's counters (`link` 0). The hub answers with its own
    /// [`Frame::Stats`] (and its process's), and passes the request on to every other ready
    /// link with `link` set to the asker's link; each node answers with its counters.
    StatsRequest {
        /// From a client: 0. From the hub: the link that asked (to put in the answer).
        link: u32,
    },
    /// Counters as a UTF-8 JSON object (see `docs/operations.md`). Node -> hub: `link` is
    /// the asker's link (from the [`Frame::StatsRequest`]); the hub forwards the report to
    /// that link (if it asked) with `link` set to the reporting link. Hub -> asker: `link` 0
    /// for the hub's own reports, whose first says in `expect` how many node reports follow.
    Stats {
        /// Node -> hub: the asker's link. Hub -> asker: the link the report is from (0: the
        /// hub's process).
        link: u32,
        /// In the hub's first answer, how many nodes the request was passed on to; else 0.
        expect: u32,
        /// The report: a UTF-8 JSON object.
        report: &'a [u8],
    },
    /// Client -> hub: as [`Frame::Register`], and the id is *durable*: its owner journals
    /// its state and comes back after a crash. When the owner's link closes the hub keeps
    /// the id for [`crate::hub::HubConfig::durable_hold`] instead of removing it: messages
    /// to it are dropped (their senders keep them outstanding), not failed, and its next
    /// owner gets them again (see `docs/guarantees.md`).
    RegisterDurable {
        /// The machine id.
        machine: &'a str,
    },
    /// Client -> hub: this link has rewound what it had sent to `machine` and not had
    /// acknowledged (on the [`Frame::RegistryEntry`] of an id whose owner came back): the
    /// messages to it that follow on the link are in order, and the hub forwards them again.
    Resending {
        /// The machine id.
        machine: &'a str,
    },
    /// Client -> hub: this process takes up to `pairs` direct peer rings (shared memory
    /// between two clients, see `docs/architecture.md`); 0 takes none. Sent once the link is
    /// ready; the hub offers no pair to a link that has not sent it (protocol version 6).
    DirectAllow {
        /// How many direct pairs the process may hold at once.
        pairs: u32,
    },
    /// Hub -> client: the hub made a ring pair for this process and the process `peer_pid`
    /// (the rings' descriptors came over the shared-memory link's control socket just
    /// before). The client answers [`Frame::DirectOpen`] once it has mapped them, or
    /// [`Frame::DirectClose`] when it cannot take them.
    DirectOffer {
        /// The pair's number (never reused by this hub).
        pair: u32,
        /// The other process of the pair.
        peer_pid: u32,
    },
    /// Client -> hub -> the pair's other client: from here on, this process's messages to
    /// the other's machines go through the pair's ring. The hub forwards it in order with
    /// the messages before it, and the other side reads the ring only after it, so no
    /// message through the hub is overtaken by the ring's first ones.
    DirectOpen {
        /// The pair.
        pair: u32,
    },
    /// Either way: the pair is closed. Hub -> client: stop using its ring (the other side
    /// left, a monitor attached, or the other side closed it); what went through the ring
    /// and was not acknowledged is sent again through the hub. Client -> hub: this side
    /// closed it (it could not map the rings, or read something a ring may not carry); the
    /// hub tells both sides and offers this link no further pair.
    DirectClose {
        /// The pair.
        pair: u32,
    },
}

/// The postcard variant index of [`Frame::Deliver`].
const DELIVER_TAG: u8 = 6;

/// The frame kind of a [`Deliver`] that carries a [`Correlation`] (a request or a reply): the
/// Deliver fields as in a plain Deliver, then the correlation as a postcard enum (`1` and
/// the request id for a request, `2` and the id for a reply). [`Frame::encode`] writes it for
/// a `Frame::Deliver` whose correlation is not `None`; [`Frame::decode`] reads it back as
/// one. (It has no variant of its own in [`Frame`], so that every reader of a Deliver
/// handles both flavours alike.)
pub const DELIVER_CORRELATED_TAG: u8 = 28;

/// How many frame kinds this build knows (variant indices `0..FRAME_KINDS`).
pub const FRAME_KINDS: u8 = 37;

/// Whether a frame body is of a kind this build does not know (a later protocol addition).
/// A client skips such a frame (the length prefix delimits it) instead of taking it for
/// garbage; the hub, which must understand what it routes, closes the link.
pub fn is_unknown_kind(body: &[u8]) -> bool {
    body.first().is_some_and(|&b| b >= FRAME_KINDS)
}

/// A postcard varint of at most `max` bytes whose last byte may be at most `last_max` (the
/// rules of postcard's own reader): (value, bytes used).
fn varint(b: &[u8], at: usize, max: usize, last_max: u8) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..max {
        let byte = *b.get(at + i)?;
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return (i + 1 < max || byte <= last_max).then_some((v, i + 1));
        }
    }
    None
}

/// A length prefix: a `usize` varint, as wide as postcard reads it on this target.
fn length(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let bits = usize::BITS as usize;
    let max = bits.div_ceil(7);
    let last_max = ((1u16 << (bits - 7 * (max - 1))) - 1) as u8;
    let (v, used) = varint(b, at, max, last_max)?;
    Some((usize::try_from(v).ok()?, used))
}

/// Length-prefixed bytes from `at` and the position after them. A length under 128 (one
/// byte, as every name and a small payload has) is read without the varint loop.
#[inline(always)]
fn bytes_at(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let first = *b.get(at)?;
    let (len, start) = if first < 0x80 {
        (usize::from(first), at + 1)
    } else {
        let (len, used) = length(b, at)?;
        (len, at + used)
    };
    let end = start.checked_add(len)?;
    Some((b.get(start..end)?, end))
}

/// The three names of a Deliver (`from`, `to`, `event`), length-prefixed from `at`, and the
/// position after them; `None` if one is cut short or not UTF-8.
fn three_names(b: &[u8], at: usize) -> Option<([&str; 3], usize)> {
    let (from, to_at) = bytes_at(b, at)?;
    let (to, event_at) = bytes_at(b, to_at)?;
    let (event, end) = bytes_at(b, event_at)?;
    // Names under 128 bytes have one-byte length prefixes, which are ASCII: the span from
    // `from` to the end of `event` is then checked as UTF-8 once (a check costs some 50
    // instructions before its first byte), and valid UTF-8 cut beside an ASCII byte
    // leaves valid pieces. `str::get` checks the cuts all the same.
    if to.len() < 0x80 && event.len() < 0x80 {
        let start = to_at - from.len();
        if let Ok(all) = core::str::from_utf8(b.get(start..end)?) {
            let to_start = from.len() + 1;
            let event_start = to_start + to.len() + 1;
            return Some((
                [
                    all.get(..from.len())?,
                    all.get(to_start..to_start + to.len())?,
                    all.get(event_start..)?,
                ],
                end,
            ));
        }
    }
    let text = |s| core::str::from_utf8(s).ok();
    Some(([text(from)?, text(to)?, text(event)?], end))
}

/// Writes `v` as a postcard varint at `at`; returns the position after it.
#[inline(always)]
fn put_varint(out: &mut [u8], mut at: usize, mut v: u64) -> Option<usize> {
    // A name's or small payload's length: one byte, without the loop.
    if v < 0x80 {
        *out.get_mut(at)? = v as u8;
        return Some(at + 1);
    }
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        *out.get_mut(at)? = if v == 0 { byte } else { byte | 0x80 };
        at += 1;
        if v == 0 {
            return Some(at);
        }
    }
}

fn put_bytes(out: &mut [u8], at: usize, b: &[u8]) -> Option<usize> {
    let at = put_varint(out, at, b.len() as u64)?;
    let end = at.checked_add(b.len())?;
    out.get_mut(at..end)?.copy_from_slice(b);
    Some(end)
}

/// Writes a Deliver frame body by hand; `None` when it does not fit (postcard then
/// reports the error).
fn write_deliver(d: &Deliver<'_>, out: &mut [u8]) -> Option<usize> {
    let correlation = correlation_parts(d.correlation);
    *out.first_mut()? = if correlation.is_some() {
        DELIVER_CORRELATED_TAG
    } else {
        DELIVER_TAG
    };
    let at = put_bytes(out, 1, d.from.as_bytes())?;
    let at = put_bytes(out, at, d.to.as_bytes())?;
    let at = put_bytes(out, at, d.event.as_bytes())?;
    let at = put_bytes(out, at, d.payload)?;
    let at = put_varint(out, at, d.seq)?;
    match correlation {
        None => Some(at),
        Some((kind, id)) => {
            let at = put_varint(out, at, u64::from(kind))?;
            put_varint(out, at, u64::from(id))
        }
    }
}

/// A correlation's postcard variant index and request id; `None` for a plain message.
fn correlation_parts(c: Correlation) -> Option<(u8, u32)> {
    match c {
        Correlation::None => None,
        Correlation::Request(id) => Some((1, id)),
        Correlation::Reply(id) => Some((2, id)),
    }
}

/// The bytes a postcard varint of `v` takes.
const fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

impl Deliver<'_> {
    /// The size of this message's frame body (without the length prefix), computed without
    /// encoding it.
    pub fn body_len(&self) -> usize {
        let field = |len: usize| varint_len(len as u64) + len;
        1 + field(self.from.len())
            + field(self.to.len())
            + field(self.event.len())
            + field(self.payload.len())
            + varint_len(self.seq)
            + correlation_parts(self.correlation).map_or(0, |(_, id)| 1 + varint_len(u64::from(id)))
    }

    /// Writes this message's frame body (without the length prefix) into `out`, byte for
    /// byte what [`Frame::encode`] writes after the prefix; returns the bytes used, or
    /// `None` when `out` is too small. Lets a sender encode a message straight into the
    /// place where it waits for its acknowledgement.
    pub fn write_body(&self, out: &mut [u8]) -> Option<usize> {
        write_deliver(self, out)
    }
}

/// Reads a Deliver frame body by hand; `None` for anything else or anything malformed
/// (postcard then decides, and reports the error).
fn fast_deliver(body: &[u8]) -> Option<Deliver<'_>> {
    let correlated = match body.first() {
        Some(&DELIVER_TAG) => false,
        Some(&DELIVER_CORRELATED_TAG) => true,
        _ => return None,
    };
    let ([from, to, event], at) = three_names(body, 1)?;
    let (payload, at) = bytes_at(body, at)?;
    let (seq, used) = varint(body, at, 10, 1)?;
    let mut at = at + used;
    let mut correlation = Correlation::None;
    if correlated {
        // A postcard `u32` variant index, then the `u32` id (at most 5 bytes, the last
        // at most 0x0F). `None` (0) is not written with this tag: that is a plain Deliver.
        let (kind, used) = varint(body, at, 5, 0x0F)?;
        let (id, used_id) = varint(body, at + used, 5, 0x0F)?;
        at += used + used_id;
        let id = u32::try_from(id).ok()?;
        correlation = match kind {
            1 => Correlation::Request(id),
            2 => Correlation::Reply(id),
            _ => return None,
        };
    }
    (at == body.len()).then_some(Deliver {
        from,
        to,
        event,
        payload,
        seq,
        correlation,
    })
}

impl<'a> Frame<'a> {
    /// Decodes a frame body (without its length prefix), borrowing from `body`.
    pub fn decode(body: &'a [u8]) -> Result<Self, Error> {
        // Deliver is nearly every frame on a busy bus: it is read by hand, exactly as
        // postcard would (a test checks the two agree); anything unusual goes to postcard.
        if let Some(d) = fast_deliver(body) {
            return Ok(Frame::Deliver(d));
        }
        if body.first() == Some(&DELIVER_CORRELATED_TAG) {
            // Only the hand reader knows this flavour: whatever it refused is malformed.
            return Err(Error::MalformedFrame(
                "not a valid correlated Deliver frame",
            ));
        }
        match postcard::take_from_bytes::<Frame<'a>>(body) {
            Ok((Frame::ReservedCorrelatedDeliver, _)) => {
                Err(Error::MalformedFrame("a reserved frame kind"))
            }
            Ok((f, [])) => Ok(f),
            Ok(_) => Err(Error::MalformedFrame("trailing bytes after the frame")),
            Err(_) => Err(Error::MalformedFrame("not a valid postcard frame")),
        }
    }

    /// Encodes the frame with its length prefix into `buf`; returns the bytes used.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.len() < LEN_PREFIX {
            return Err(Error::FrameTooLarge { len: 0, max: 0 });
        }
        let (head, body) = buf.split_at_mut(LEN_PREFIX);
        // Deliver is written by hand, byte for byte what postcard writes (a test checks).
        if let Frame::Deliver(d) = self {
            if let Some(n) = write_deliver(d, body) {
                head.copy_from_slice(&(n as u32).to_le_bytes());
                return Ok(LEN_PREFIX + n);
            }
            if d.correlation != Correlation::None {
                // Postcard would write the plain flavour: the frame does not fit.
                return Err(Error::FrameTooLarge {
                    len: u32::try_from(d.body_len()).unwrap_or(u32::MAX),
                    max: body.len() as u32,
                });
            }
        }
        if let Frame::ReservedCorrelatedDeliver = self {
            return Err(Error::MalformedFrame(
                "kind 28 is written only for a correlated Deliver",
            ));
        }
        let room = body.len() as u32;
        let n = postcard::to_slice(self, body)
            .map_err(|_| Error::FrameTooLarge {
                len: u32::MAX,
                max: room,
            })?
            .len();
        head.copy_from_slice(&(n as u32).to_le_bytes());
        Ok(LEN_PREFIX + n)
    }

    /// The size of the encoded frame, length prefix included.
    pub fn encoded_len(&self) -> usize {
        if let Frame::Deliver(d) = self {
            return LEN_PREFIX + d.body_len();
        }
        LEN_PREFIX
            + postcard::serialize_with_flavor(self, postcard::ser_flavors::Size::default())
                .unwrap_or(usize::MAX - LEN_PREFIX)
    }

    /// A short name of the frame kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "hello",
            Frame::Welcome(_) => "welcome",
            Frame::Reject(_) => "reject",
            Frame::Register { .. } => "register",
            Frame::RegisterResult { .. } => "register-result",
            Frame::Unregister { .. } => "unregister",
            Frame::Deliver(d) if d.correlation != Correlation::None => "deliver-correlated",
            Frame::Deliver(_) => "deliver",
            Frame::DeliveryFailed(_) => "delivery-failed",
            Frame::Subscribe { .. } => "subscribe",
            Frame::RegistryEntry(_) => "registry-entry",
            Frame::RegistryRemoved { .. } => "registry-removed",
            Frame::SnapshotEnd => "snapshot-end",
            Frame::Monitored { .. } => "monitored",
            Frame::Ping { .. } => "ping",
            Frame::Pong { .. } => "pong",
            Frame::Goodbye { .. } => "goodbye",
            Frame::Ack { .. } => "ack",
            Frame::Watch { .. } => "watch",
            Frame::Report { .. } => "report",
            Frame::State { .. } => "state",
            Frame::Stopped { .. } => "stopped",
            Frame::NodeFailure(_) => "node-failure",
            Frame::TopicSubscribe { .. } => "topic-subscribe",
            Frame::TopicUnsubscribe { .. } => "topic-unsubscribe",
            Frame::TopicResult { .. } => "topic-result",
            Frame::TopicWatch { .. } => "topic-watch",
            Frame::TopicEntry { .. } => "topic-entry",
            Frame::TopicSnapshotEnd => "topic-snapshot-end",
            Frame::ReservedCorrelatedDeliver => "reserved",
            Frame::StatsRequest { .. } => "stats-request",
            Frame::Stats { .. } => "stats",
            Frame::RegisterDurable { .. } => "register-durable",
            Frame::Resending { .. } => "resending",
            Frame::DirectAllow { .. } => "direct-allow",
            Frame::DirectOffer { .. } => "direct-offer",
            Frame::DirectOpen { .. } => "direct-open",
            Frame::DirectClose { .. } => "direct-close",
        }
    }
}

/// Finds the first complete frame in a stream buffer.
///
/// Returns `Ok(Some((body, consumed)))` for a complete frame, `Ok(None)` when more bytes are
/// needed, and an error when the length prefix exceeds `max_frame` (the link must be closed:
/// there is no way to resynchronize a length-delimited stream).
pub fn split_frame(buf: &[u8], max_frame: u32) -> Result<Option<(&[u8], usize)>, Error> {
    if buf.len() < LEN_PREFIX {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len > max_frame {
        return Err(Error::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    let end = LEN_PREFIX + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((&buf[LEN_PREFIX..end], end)))
}
