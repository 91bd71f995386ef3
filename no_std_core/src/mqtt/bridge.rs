//! The bridge's rules: topic layout, payloads, and who keeps a machine id two nodes claim.
//!
//! Under a prefix `P` (default [`DEFAULT_PREFIX`]) each node `N` owns three kinds of topic,
//! so that a broker ACL of `P/N/#` for writing confines each node to its own:
//!
//! | topic | retained | payload |
//! |---|---|---|
//! | `P/N/status` | yes | `up:RUN:CONNECTION` when the bridge connects; its last will is `down:CONNECTION`, a clean stop `down` (see [`super::presence`]) |
//! | `P/N/registry/ID` | yes | a [`RegistryRecord`] for machine `ID`; empty when it left |
//! | `P/N/in` | no, QoS 1 | records (`super::inbox`): messages for `N`'s machines ([`Envelope`]s) and answers about messages `N` sent |
//!
//! Payloads are postcard, as the bus's frames are.

use core::fmt::{self, Write};

use serde::{Deserialize, Serialize};

/// The topic prefix when none is given.
pub const DEFAULT_PREFIX: &str = "interstate";

/// The longest node name.
pub const MAX_NODE_NAME: usize = 64;

/// The status payload of a connected bridge before it named its run and connection
/// (read as run 0; a bridge now publishes [`super::presence::status_up`]).
pub const STATUS_UP: &[u8] = b"up";
/// The status payload of a clean stop (a bridge's last will is
/// [`super::presence::status_lost`]).
pub const STATUS_DOWN: &[u8] = b"down";

/// Whether `name` can name a node: 1 to [`MAX_NODE_NAME`] bytes, one topic level without
/// wildcards (no `/`, `+`, `#`, NUL), not starting with `$` (the broker's own topics).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && !name.starts_with('$')
        && !name.contains(['/', '+', '#', '\0'])
}

/// Whether `prefix` can be a topic prefix: a topic (see [`crate::topic::check_topic`])
/// without wildcards, not starting with `$`, not ending with `/`.
pub fn valid_prefix(prefix: &str) -> bool {
    crate::topic::check_topic(prefix).is_ok()
        && !prefix.starts_with('$')
        && !prefix.ends_with('/')
        && !prefix.contains(['+', '#'])
}

/// Whether machine id `id` can cross a broker: a valid id (see
/// [`crate::hub::valid_machine_id`]) without `+` or `#`, which MQTT forbids in the topic
/// names it would be part of. Ids with `/` cross (they span topic levels).
pub fn bridgeable_id(id: &str) -> bool {
    crate::hub::valid_machine_id(id) && !id.contains(['+', '#'])
}

/// A topic of the layout, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeTopic<'a> {
    /// `P/N/status`.
    Status {
        /// The node.
        node: &'a str,
    },
    /// `P/N/registry/ID`.
    Registry {
        /// The node.
        node: &'a str,
        /// The machine id.
        machine: &'a str,
    },
    /// `P/N/in`.
    Inbox {
        /// The node.
        node: &'a str,
    },
}

impl BridgeTopic<'_> {
    /// Writes the topic under `prefix`.
    pub fn write(&self, prefix: &str, out: &mut impl Write) -> fmt::Result {
        match self {
            BridgeTopic::Status { node } => write!(out, "{prefix}/{node}/status"),
            BridgeTopic::Registry { node, machine } => {
                write!(out, "{prefix}/{node}/registry/{machine}")
            }
            BridgeTopic::Inbox { node } => write!(out, "{prefix}/{node}/in"),
        }
    }
}

/// Parses a topic of the layout under `prefix` (`None`: not one of ours).
pub fn parse_topic<'a>(prefix: &str, topic: &'a str) -> Option<BridgeTopic<'a>> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let (node, kind) = rest.split_once('/')?;
    if !valid_node_name(node) {
        return None;
    }
    match kind {
        "status" => Some(BridgeTopic::Status { node }),
        "in" => Some(BridgeTopic::Inbox { node }),
        _ => {
            let machine = kind.strip_prefix("registry/")?;
            bridgeable_id(machine).then_some(BridgeTopic::Registry { node, machine })
        }
    }
}

/// The filters a bridge subscribes to under `prefix` for node `node`: every node's status
/// and registry, and its own inbox. Written into `out` as `[status, registry, inbox]`.
pub fn subscriptions<const N: usize>(
    prefix: &str,
    node: &str,
    out: &mut [heapless::String<N>; 3],
) -> fmt::Result {
    for s in out.iter_mut() {
        s.clear();
    }
    write!(out[0], "{prefix}/+/status")?;
    write!(out[1], "{prefix}/+/registry/#")?;
    BridgeTopic::Inbox { node }.write(prefix, &mut out[2])
}

/// A machine of a node, as its bridge publishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord<'a> {
    /// The host the machine's process runs on.
    pub host: &'a str,
    /// Its process id there.
    pub pid: u32,
    /// Its executable's name.
    pub executable: &'a str,
    /// How its own hub reaches it (`unix`, `fifo`, `shm`, `serial`, ...).
    pub transport: &'a str,
}

/// A message from a machine of one node for a machine of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<'a> {
    /// The sender's machine id.
    pub from: &'a str,
    /// The receiver's machine id.
    pub to: &'a str,
    /// The event name (for a publication, topic and event as on the bus).
    pub event: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// The sender's sequence number on its own bus: with `from`, what the receiving bridge
    /// recognises a duplicate by (QoS 1 may deliver twice across a reconnect).
    pub seq: u64,
}

/// Encodes `value` into `out`; `None` when it does not fit.
pub fn encode<'b, T: Serialize>(value: &T, out: &'b mut [u8]) -> Option<&'b mut [u8]> {
    postcard::to_slice(value, out).ok()
}

/// Decodes a payload of the layout; `None` when it is not one.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    postcard::from_bytes(bytes).ok()
}

/// Which node keeps a machine id that `holder` holds and `challenger` claims too: the node
/// whose name sorts first (bytewise). Every bridge applies the same rule to the same
/// retained records, so all agree on the owner whatever order the records arrived in.
pub fn claim_kept_by<'n>(holder: &'n str, challenger: &'n str) -> &'n str {
    if challenger < holder {
        challenger
    } else {
        holder
    }
}

/// Whether a message with sequence number `seq` from `from` is new, given the highest
/// sequence number already passed on from that sender (`None`: none yet). Sequence numbers
/// of one sender only grow, and one node's inbox keeps one sender's order, so anything not
/// above the last is a duplicate.
pub fn is_new(last: Option<u64>, seq: u64) -> bool {
    last.is_none_or(|l| seq > l)
}
