//! The hub: routing, ownership, registry and admission, as a pure state machine.
//!
//! The platform owns the sockets and the byte buffers; it tells the hub when a link opens
//! (with the kernel's peer credentials), hands it every complete frame body, and tells it when
//! a link closes. The hub answers through [`HubIo`]: frames to queue on links, links to close,
//! and log lines. Time is passed in.
//!
//! Rules it enforces:
//! - admission: only allowed uids/gids get in (by default the hub's own uid); at most `L` links;
//! - the first frame is a Hello with the right magic and version and a largest frame of at
//!   least 512 bytes ([`HelloRules`]), within `hello_timeout`;
//! - a machine id is owned by the link that registered it; a live owner's id cannot be taken;
//! - the sender of a Deliver must own its `from` id (the hub stamps nothing it cannot check);
//! - no Deliver may carry an event of the reserved `xstate.` namespace: the runtime makes
//!   those inside the receiving process, so one on the wire is forged;
//! - backpressure: when a target link's queue is full, the hub reports [`Handled::Stalled`] and
//!   the platform stops reading from the sender until the target drains, then hands the same
//!   frame in again;
//! - a malformed or out-of-order frame closes only that link, with a logged reason;
//! - once it has reported a message from a link failed, it fails the later messages of the
//!   same (sender, target) pair from that link too, until the link answers the Ping queued
//!   after the report (the client has read the report); a report it cannot queue closes the
//!   sender's link. So no message is forwarded after an earlier one of its pair whose report
//!   may yet be lost with the link.
//!
//! - a machine that stopped on an error ([`Frame::Stopped`]) leaves the registry, and
//!   messages to it fail as `TargetStopped` with its error (bounded) as the report's detail;
//! - failures a node found itself ([`Frame::NodeFailure`]) are copied to monitoring links,
//!   and dropped when there are none;
//!
//! - state watches: a link may watch a machine ([`Frame::Watch`]); while a machine has a
//!   watcher its owner is asked to report ([`Frame::Report`]) and the hub forwards its
//!   [`Frame::State`] reports to the watchers; the table is bounded, and a watcher that goes
//!   away ends its watches (the owner is told to stop when the last one goes).
//!
//! Link 0 is the hub's own process (a node hosting the hub); it is always open and trusted.

mod deadline;
mod direct;
mod durable;
mod failures;
pub mod fair;
mod frames;
mod hello;
mod links;
mod monitor;
mod registry;
mod route_table;
mod routing;
mod stats;
mod topics;
mod unconfirmed;
mod watch;

use direct::DirectPairs;
pub use direct::HUB_DIRECT_PAIRS;
pub use durable::HELD_IDS;
use heapless::{String, Vec};
pub use hello::{HelloRules, Refusal};
use route_table::RouteTable;
pub use stats::{
    fail_reason_index, HubStats, LinkCounters, LinkStats, ALL_FAIL_REASONS, FAIL_REASONS,
};
use topics::Topics;
pub use topics::SUBSCRIPTIONS_PER_LINK;
use unconfirmed::{pair_hash, Unconfirmed};
use watch::Watches;

use crate::context::TransportKind;
use crate::time::{Duration, Instant};
use crate::topic::{Subscription, SubscriptionSlots};
use crate::wire::{Deliver, Frame, MAX_STOP_ERROR};

/// A link's number. 0 is the hub's own process.
pub type LinkId = u32;

/// The link of the hub's own process.
pub const LOCAL_LINK: LinkId = 0;

/// The longest machine id on the bus, in bytes.
pub const MAX_ID: usize = 64;

/// How many stopped machines a hub remembers (to answer `TargetStopped` rather than
/// `UnknownTarget`).
pub const STOPPED_KEPT: usize = 64;

/// What the kernel says about the process at the other end of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PeerCredentials {
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A link's outgoing queue has no room for a frame now (backpressure, not an error of the
/// frame: try again once the link has drained).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LinkFull;

impl core::fmt::Display for LinkFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the link's outgoing queue is full")
    }
}

/// The platform's side of the hub.
pub trait HubIo {
    /// Queues a frame on a link. `Err(LinkFull)` when the link's outgoing queue has no room for it.
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull>;
    /// Queues an already-encoded frame body on a link (forwarding without re-encoding).
    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull>;
    /// Queues a message on a link: `d` is `body` decoded. A host that hosts machines in the
    /// hub's own process (link 0) takes `d` from here instead of decoding `body` again; the
    /// default forwards the body.
    fn forward_deliver(
        &mut self,
        link: LinkId,
        d: &Deliver<'_>,
        body: &[u8],
    ) -> Result<(), LinkFull> {
        let _ = d;
        self.forward(link, body)
    }
    /// Queues an acknowledgement on a link: `from`, `to` and `seq` are `body` (a
    /// [`Frame::Ack`]) decoded. A host that hosts machines in the hub's own process (link 0)
    /// takes them from here instead of decoding `body` again; the default forwards the body.
    fn forward_ack(
        &mut self,
        link: LinkId,
        from: &str,
        to: &str,
        seq: u64,
        body: &[u8],
    ) -> Result<(), LinkFull> {
        let _ = (from, to, seq);
        self.forward(link, body)
    }
    /// Closes a link after what is queued on it has been written (or at once if it cannot be).
    fn close(&mut self, link: LinkId, reason: &str);
    /// A log line about a link: refusals, malformed input, protocol violations.
    fn log(&mut self, link: LinkId, message: &str);
    /// `asker` asked for the bus's counters ([`Frame::StatsRequest`]) and the request was
    /// passed on to `nodes` other links: answer it with the hub's own [`Frame::Stats`]
    /// (`link` 0, `expect` = `nodes` in the first). The default answers nothing.
    fn stats_requested(&mut self, asker: LinkId, nodes: u32) {
        let _ = (asker, nodes);
    }
    /// Makes the rings of direct pair `pair` between links `a` and `b` (both shared memory)
    /// and passes them to both sides, before the hub queues its offers. `false`: it could
    /// not (the hub stays on its own path for them). The default makes none.
    fn open_direct(&mut self, pair: u32, a: LinkId, b: LinkId) -> bool {
        let _ = (pair, a, b);
        false
    }
    /// Direct pair `pair` closed (the platform may forget what it kept of it).
    fn close_direct(&mut self, pair: u32) {
        let _ = pair;
    }
}

/// What became of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Handled {
    /// Processed.
    Done,
    /// Could not be processed because `LinkId`'s queue is full: stop reading from the sender
    /// and hand the same frame in again once that link has drained.
    Stalled(LinkId),
    /// The link was closed (the platform has been told through [`HubIo::close`]).
    Closed,
}

/// Hub settings.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The largest frame body the hub accepts and sends.
    pub max_frame: u32,
    /// The most machine ids one link may register.
    pub machines_per_link: usize,
    /// How long a new link has to send its Hello.
    pub hello_timeout: Duration,
    /// A link that sends nothing for this long is closed (clients ping well within it).
    pub idle_timeout: Duration,
    /// Users allowed on the bus (the hub's own uid should be in it).
    pub allowed_uids: Vec<u32, 16>,
    /// Groups allowed on the bus (in addition to the users).
    pub allowed_gids: Vec<u32, 16>,
    /// Wall-clock milliseconds since the Unix epoch at `Instant::ZERO`, for registry times.
    pub epoch_unix_ms: u64,
    /// The hub's process id.
    pub pid: u32,
    /// The transport the hub's links use, as shown in the registry.
    pub transport: TransportKind,
    /// How long a durable id ([`Frame::RegisterDurable`]) is kept for its next owner after
    /// its owner's link closed; past it, it leaves the registry as any other id.
    pub durable_hold: Duration,
}

impl HubConfig {
    /// Defaults that admit only `uid`.
    pub fn new(uid: u32, pid: u32) -> Self {
        let mut allowed_uids = Vec::new();
        let _ = allowed_uids.push(uid);
        HubConfig {
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            machines_per_link: 64,
            hello_timeout: Duration::from_millis(5_000),
            idle_timeout: Duration::from_millis(30_000),
            allowed_uids,
            allowed_gids: Vec::new(),
            epoch_unix_ms: 0,
            pid,
            transport: TransportKind::UnixSocket,
            durable_hold: Duration::from_millis(30_000),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    Free,
    AwaitHello,
    Ready,
}

#[derive(Clone, Debug)]
struct Link {
    state: LinkState,
    peer: PeerCredentials,
    executable: String<64>,
    opened_at: Instant,
    last_rx: Instant,
    machines: usize,
    registry: bool,
    monitor: bool,
    /// The largest frame body this link accepts (agreed in the handshake).
    max_frame: u32,
    /// The transport the link runs over (shown in the registry).
    transport: TransportKind,
    /// Failure reports queued on this link that the client has not confirmed reading.
    unconfirmed: Unconfirmed,
    /// What the hub counted on this link.
    counters: LinkCounters,
    /// It asked for the bus's counters: nodes' answers are forwarded to it.
    stats_asked: bool,
    /// Direct pairs it takes ([`Frame::DirectAllow`]), and holds.
    direct_allow: u8,
    direct_held: u8,
}

impl Link {
    const FREE: Link = Link {
        state: LinkState::Free,
        peer: PeerCredentials {
            pid: 0,
            uid: 0,
            gid: 0,
        },
        executable: String::new(),
        opened_at: Instant::ZERO,
        last_rx: Instant::ZERO,
        machines: 0,
        registry: false,
        monitor: false,
        max_frame: 0,
        transport: TransportKind::UnixSocket,
        unconfirmed: Unconfirmed::NONE,
        counters: LinkCounters {
            frames_in: 0,
            bytes_in: 0,
            messages_in: 0,
            messages_out: 0,
            failures: 0,
        },
        stats_asked: false,
        direct_allow: 0,
        direct_held: 0,
    };
}

#[derive(Clone, Copy, Debug)]
struct Route {
    link: LinkId,
    since_ms: u64,
    /// Registered with [`Frame::RegisterDurable`]: kept for the next owner when the link
    /// closes.
    durable: bool,
}

/// The hub. `L`: links (the local link included); `M`: machine ids (a power of two); `W`:
/// watches (a link watching a machine's state) at once; `T`: the slots of the topic
/// subscription table (an array of 64 by default; a host gives a larger one from the heap).
pub struct Hub<
    const L: usize = 64,
    const M: usize = 1024,
    const W: usize = 256,
    T: SubscriptionSlots = [Subscription; 64],
> {
    config: HubConfig,
    links: [Link; L],
    routes: RouteTable<M>,
    watches: Watches<W>,
    /// Topic subscriptions and the links watching them.
    topics: Topics<T>,
    /// Machines that stopped on an error and have not been registered since, with the error
    /// that stopped each, newest last (the oldest forgotten when it is full): messages to
    /// them fail as `TargetStopped`, with the error as the report's detail.
    stopped: Vec<(RouteKey, String<MAX_STOP_ERROR>), STOPPED_KEPT>,
    stats: HubStats,
    /// Links subscribed to monitor copies (so delivery skips the scan when there are none).
    monitors: usize,
    /// The latest time passed in (for calls that take none: holding a failed pair, monitor
    /// copies of failures found without one). It never goes back.
    now: Instant,
    /// Durable ids whose owner's link closed, kept for the next owner until the time given.
    held: Vec<(RouteKey, Instant), HELD_IDS>,
    /// Direct ring pairs between clients.
    direct: DirectPairs,
    /// No later than the earliest timeout (see `deadline.rs`): lowered by whatever makes
    /// one earlier, taken again exactly by each `handle_timeout`.
    deadline: Option<Instant>,
}

pub(super) fn truncated<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// A machine id as the routing table keeps it. It hashes and compares as the `str` it holds,
/// so that the table is searched with a borrowed `&str`, without copying the id into a key
/// for every message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RouteKey(String<MAX_ID>);

impl core::hash::Hash for RouteKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state)
    }
}

impl core::borrow::Borrow<str> for RouteKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// Whether a machine id is acceptable on the bus: 1 to 64 bytes, no control characters.
pub fn valid_machine_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && !id.chars().any(char::is_control)
}

impl<const L: usize, const M: usize, const W: usize, T: SubscriptionSlots> Hub<L, M, W, T> {
    /// A hub with no links but its own (link 0, for the hub's process), named `executable`.
    pub fn new(config: HubConfig, executable: &str) -> Self {
        let mut links = [Link::FREE; L];
        links[0] = Link {
            state: LinkState::Ready,
            peer: PeerCredentials {
                pid: config.pid,
                uid: config.allowed_uids.first().copied().unwrap_or(0),
                gid: 0,
            },
            executable: truncated(executable),
            // The hub's own process keeps its registry copy from the same updates.
            registry: true,
            max_frame: config.max_frame,
            ..Link::FREE
        };
        Hub {
            config,
            links,
            routes: RouteTable::new(),
            watches: Watches::new(),
            topics: Topics::new(),
            stopped: Vec::new(),
            stats: HubStats::default(),
            monitors: 0,
            direct: DirectPairs::new(),
            now: Instant::ZERO,
            held: Vec::new(),
            deadline: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }
    /// Counters.
    pub fn stats(&self) -> HubStats {
        self.stats
    }
    fn lookup(&self, machine: &str) -> Option<&Route> {
        self.routes.get(machine)
    }

    /// Which link owns a machine id.
    pub fn route(&self, machine: &str) -> Option<LinkId> {
        self.lookup(machine).map(|r| r.link)
    }
    /// The registry: every machine id with its link.
    pub fn machines(&self) -> impl Iterator<Item = (&str, LinkId)> + '_ {
        self.routes.iter().map(|(k, r)| (k.0.as_str(), r.link))
    }
    /// Records which transport a link runs over (for the registry); by default the
    /// configuration's.
    pub fn set_transport(&mut self, link: LinkId, transport: TransportKind) {
        if let Some(l) = self.links.get_mut(link as usize) {
            l.transport = transport;
        }
    }

    /// The executable a link's peer named in its Hello, once the link is ready (for logs).
    pub fn executable(&self, link: LinkId) -> Option<&str> {
        self.links
            .get(link as usize)
            .filter(|l| l.state == LinkState::Ready)
            .map(|l| l.executable.as_str())
    }

    /// The peer credentials of a link.
    pub fn peer(&self, link: LinkId) -> Option<PeerCredentials> {
        self.links
            .get(link as usize)
            .filter(|l| l.state != LinkState::Free)
            .map(|l| l.peer)
    }
}
