//! The client side of the bus protocol, sans-IO: what a process does to keep the bus's
//! promise that every message is delivered exactly once or reported failed to its sender.
//!
//! - [`outstanding`]: the sender keeps every message to another process until its receiver
//!   acknowledges it, and sends it again after a reconnect;
//! - [`received`]: the receiver drops duplicates by sequence number, per sender process,
//!   and owes acknowledgements only for what the application has;
//! - [`credit`]: how much a sender may have in flight, cut when its messages' sojourn
//!   stands above a target (backpressure before latency grows);
//! - [`policy`]: the timing rules: acknowledgement batching, the grace after a reconnect,
//!   registration retries, how long departed senders are remembered;
//! - [`direct`]: direct peer rings between two clients: which way a message goes, what a
//!   ring may carry, and the switch-over in order;
//! - [`client`]: all of it with the link's handshake and keepalive, as one state machine
//!   that a host drives with frames and the time.
//!
//! The hub's side is [`crate::hub`]; the frames are [`crate::wire`]. Every table and buffer
//! here is the caller's storage, allocated once: nothing allocates, nothing reads a clock.

pub mod client;
pub mod credit;
pub mod direct;
pub mod outstanding;
pub mod policy;
pub mod received;
pub mod topics;

pub use client::{Client, DirectSink, FrameSink, Incoming, SendRefused};
pub use direct::{DirectPeer, DirectPeers, RingRefusal, MAX_DIRECT_PAIRS};
pub use outstanding::{Mark, NoRoom, Outstanding, StoredId, Undelivered};
pub use received::{Accepted, OwnerSlot, PairSlot, Received};
pub use topics::{SubscribeError, TopicMirror, TopicNews};
