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

mod direct;
mod durable;
pub mod fair;
mod hello;
mod monitor;
mod registry;
mod stats;
mod topics;
mod unconfirmed;
mod watch;

use direct::DirectPairs;
pub use direct::HUB_DIRECT_PAIRS;
pub use durable::HELD_IDS;
use heapless::{FnvIndexMap, String, Vec};
pub use hello::{HelloRules, Refusal};
pub use stats::{
    fail_reason_index, HubStats, LinkCounters, LinkStats, ALL_FAIL_REASONS, FAIL_REASONS,
};
use topics::Topics;
pub use topics::SUBSCRIPTIONS_PER_LINK;
use unconfirmed::{pair_hash, Unconfirmed};
use watch::Watches;

use crate::context::TransportKind;
use crate::error::Error;
use crate::time::{Duration, Instant};
use crate::topic::{Subscription, SubscriptionSlots};
use crate::wire::is_reserved_event;
use crate::wire::{
    Deliver, DeliveryFailed, FailReason, Frame, Hello, Reject, RejectCode, Welcome, MAX_STOP_ERROR,
    PROTOCOL_VERSION,
};

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
    routes: FnvIndexMap<RouteKey, Route, M>,
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
}

fn truncated<const N: usize>(s: &str) -> String<N> {
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
            routes: FnvIndexMap::new(),
            watches: Watches::new(),
            topics: Topics::new(),
            stopped: Vec::new(),
            stats: HubStats::default(),
            monitors: 0,
            direct: DirectPairs::new(),
            now: Instant::ZERO,
            held: Vec::new(),
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

    /// A new connection. Returns its link id, or `None` when it was refused (it has been sent
    /// a Reject and closed through `io`, with a log line).
    pub fn link_opened(
        &mut self,
        now: Instant,
        peer: PeerCredentials,
        io: &mut dyn HubIo,
    ) -> Option<LinkId> {
        let allowed = self.config.allowed_uids.contains(&peer.uid)
            || self.config.allowed_gids.contains(&peer.gid);
        let slot = self
            .links
            .iter()
            .skip(1)
            .position(|l| l.state == LinkState::Free)
            .map(|i| i as LinkId + 1);
        let (code, message) = match (allowed, slot) {
            (false, _) => (
                RejectCode::NotAllowed,
                "this user is not allowed on the bus (see the hub's allow list)",
            ),
            (true, None) => (
                RejectCode::TooManyLinks,
                "the hub has as many links as it accepts; try again later",
            ),
            (true, Some(link)) => {
                self.links[link as usize] = Link {
                    state: LinkState::AwaitHello,
                    peer,
                    opened_at: now,
                    last_rx: now,
                    transport: self.config.transport,
                    ..Link::FREE
                };
                self.stats.links += 1;
                self.stats.links_opened += 1;
                return Some(link);
            }
        };
        // Refused before it has a slot: the platform addresses it by a link id no one has.
        self.stats.rejected += 1;
        core_log!(
            warn,
            "hub: refused a connection of uid {}: {}",
            peer.uid,
            message
        );
        let link = LinkId::MAX;
        let _ = io.send(
            link,
            &Frame::Reject(Reject {
                code,
                version: PROTOCOL_VERSION,
                message,
            }),
        );
        io.log(link, message);
        io.close(link, message);
        None
    }

    /// A link closed (by the peer, an error, or the platform). Its machine ids leave the
    /// registry and registry subscribers are told.
    pub fn link_closed(&mut self, link: LinkId, io: &mut dyn HubIo) {
        let Some(l) = self.links.get_mut(link as usize) else {
            return;
        };
        if link == LOCAL_LINK || l.state == LinkState::Free {
            return;
        }
        self.close_direct_of(link, io);
        let l = &mut self.links[link as usize];
        if l.monitor {
            self.monitors -= 1;
        }
        *l = Link::FREE;
        self.stats.links = self.stats.links.saturating_sub(1);
        self.topic_link_closed(link);
        let routes = &self.routes;
        self.watches.drop_link(link, &mut |machine| {
            if let Some(owner) = routes.get(machine).map(|r| r.link) {
                // Best effort: an owner that keeps reporting costs only its own link.
                let _ = io.send(owner, &Frame::Report { machine, on: false });
            }
        });
        loop {
            let Some(key) = self
                .routes
                .iter()
                .find(|(_, r)| r.link == link)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(r) = self.routes.remove(&key) {
                if r.durable && self.hold_durable(&key, io) {
                    continue;
                }
            }
            self.broadcast_removed(&key.0, io);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let held = self.held.iter().map(|h| h.1).min();
        self.links
            .iter()
            .skip(1)
            .filter_map(|l| match l.state {
                LinkState::Free => None,
                LinkState::AwaitHello => Some(l.opened_at + self.config.hello_timeout),
                LinkState::Ready => {
                    let idle = l.last_rx + self.config.idle_timeout;
                    Some(l.unconfirmed.ask_at().map_or(idle, |at| at.min(idle)))
                }
            })
            .chain(held)
            .min()
    }

    /// `link` is not silent, though the platform is not reading it: it is stalled behind a
    /// full receiver (backpressure). Keeps the idle timeout from blaming it for the receiver.
    pub fn link_stalled(&mut self, link: LinkId, now: Instant) {
        if let Some(l) = self.links.get_mut(link as usize) {
            if l.state == LinkState::Ready {
                l.last_rx = now;
            }
        }
    }

    /// Closes links that did not say Hello in time or went silent.
    pub fn handle_timeout(&mut self, now: Instant, io: &mut dyn HubIo) {
        self.now = self.now.max(now);
        self.release_held(now, io);
        for i in 1..L {
            let l = &self.links[i];
            let reason = match l.state {
                LinkState::AwaitHello if now >= l.opened_at + self.config.hello_timeout => {
                    "no hello in time"
                }
                LinkState::Ready if now >= l.last_rx + self.config.idle_timeout => {
                    "silent for longer than the idle timeout"
                }
                LinkState::Ready => {
                    if l.unconfirmed.ask_at().is_some_and(|at| at <= now) {
                        self.ask_confirmation(now, i as LinkId, io);
                    }
                    continue;
                }
                _ => continue,
            };
            io.log(i as LinkId, reason);
            io.close(i as LinkId, reason);
            self.link_closed(i as LinkId, io);
        }
    }

    fn violation(&mut self, link: LinkId, reason: &str, io: &mut dyn HubIo) -> Handled {
        self.stats.protocol_errors += 1;
        core_log!(warn, "hub: closing link {}: {}", link, reason);
        io.log(link, reason);
        io.close(link, reason);
        self.link_closed(link, io);
        Handled::Closed
    }

    /// Handles one frame body from `link`.
    ///
    /// The body must be one whole frame (see [`crate::wire::split_frame`]). On
    /// [`Handled::Stalled`] nothing was done: hand the same body in again later.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        link: LinkId,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        self.now = self.now.max(now);
        let Some(state) = self.links.get(link as usize).map(|l| l.state) else {
            return Handled::Closed;
        };
        if state == LinkState::Free {
            return Handled::Closed;
        }
        self.count_frame_in(link, body.len());
        let frame = match Frame::decode(body) {
            Ok(f) => f,
            Err(Error::MalformedFrame(why)) => return self.violation(link, why, io),
            Err(_) => return self.violation(link, "undecodable frame", io),
        };
        self.links[link as usize].last_rx = now;
        self.now = self.now.max(now);
        if self.links[link as usize]
            .unconfirmed
            .ask_at()
            .is_some_and(|at| at <= now)
        {
            // The Ping asking for the confirmation found no room, or went unanswered.
            self.ask_confirmation(now, link, io);
        }
        if state == LinkState::AwaitHello {
            return match frame {
                Frame::Hello(h) => self.hello(link, h, io),
                _ => {
                    let _ = io.send(
                        link,
                        &Frame::Reject(Reject {
                            code: RejectCode::NotInterstate,
                            version: PROTOCOL_VERSION,
                            message: "the first frame must be a hello",
                        }),
                    );
                    self.stats.rejected += 1;
                    self.violation(link, "first frame was not a hello", io)
                }
            };
        }
        match frame {
            Frame::Deliver(d) => self.deliver(now, link, d, body, io),
            Frame::Ack { from, to, .. } => self.ack(link, from, to, body, io),
            Frame::Register { machine } => self.register(now, link, machine, false, io),
            Frame::RegisterDurable { machine } => self.register(now, link, machine, true, io),
            Frame::Resending { machine } => {
                self.resending(link, machine);
                Handled::Done
            }
            f @ (Frame::DirectAllow { .. }
            | Frame::DirectOpen { .. }
            | Frame::DirectClose { .. }) => {
                self.direct_frame(link, &f, io);
                Handled::Done
            }
            Frame::Unregister { machine } => {
                self.unregister(link, machine, io);
                Handled::Done
            }
            Frame::Stopped { machine, error } => {
                self.stopped(link, machine, error, io);
                Handled::Done
            }
            Frame::NodeFailure(f) => self.node_failure(link, &f, body, io),
            Frame::Subscribe { registry, monitor } => {
                let l = &mut self.links[link as usize];
                if l.monitor != monitor {
                    if monitor {
                        self.monitors += 1;
                    } else {
                        self.monitors -= 1;
                    }
                }
                l.monitor = monitor;
                if monitor && self.direct.count() > 0 {
                    // Monitors see what crosses the hub: from now on everything does.
                    self.close_all_direct(io);
                }
                let l = &mut self.links[link as usize];
                if registry && !l.registry {
                    l.registry = true;
                    for (machine, r) in self.routes.iter() {
                        let entry = self.entry(&machine.0, *r);
                        if io.send(link, &Frame::RegistryEntry(entry)).is_err() {
                            return self.violation(
                                link,
                                "registry snapshot does not fit the link's queue",
                                io,
                            );
                        }
                    }
                    if io.send(link, &Frame::SnapshotEnd).is_err() {
                        return self.violation(
                            link,
                            "registry snapshot does not fit the link's queue",
                            io,
                        );
                    }
                }
                Handled::Done
            }
            Frame::Watch { machine, on } => self.watch(link, machine, on, io),
            f @ (Frame::TopicSubscribe { .. }
            | Frame::TopicUnsubscribe { .. }
            | Frame::TopicWatch { .. }) => self.topic_frame(link, f, io),
            Frame::State { machine, .. } => self.state(link, machine, body, io),
            Frame::StatsRequest { .. } => self.stats_request(link, io),
            Frame::Stats {
                link: asker,
                report,
                ..
            } => self.stats_report(link, asker, report, io),
            Frame::Ping { nonce } => match io.send(link, &Frame::Pong { nonce }) {
                Ok(()) => Handled::Done,
                Err(LinkFull) => Handled::Stalled(link),
            },
            Frame::Pong { nonce } => {
                self.confirmed(now, link, nonce, io);
                Handled::Done
            }
            Frame::Goodbye { reason } => {
                let mut why: String<96> = String::new();
                let _ = why.push_str("goodbye: ");
                let _ = why.push_str(truncated::<80>(reason).as_str());
                io.close(link, why.as_str());
                self.link_closed(link, io);
                Handled::Closed
            }
            Frame::Hello(_) => self.violation(link, "second hello", io),
            _ => self.violation(link, "a frame only the hub sends", io),
        }
    }

    fn hello(&mut self, link: LinkId, h: Hello<'_>, io: &mut dyn HubIo) -> Handled {
        let max_frame = match HelloRules::PROCESS.check(&h, self.config.max_frame) {
            Ok(max_frame) => max_frame,
            Err(refusal) => {
                self.stats.rejected += 1;
                core_log!(warn, "hub: refused link {}: {}", link, refusal.message);
                let _ = io.send(link, &refusal.reject());
                io.log(link, refusal.message);
                io.close(link, refusal.message);
                self.link_closed(link, io);
                return Handled::Closed;
            }
        };
        let l = &mut self.links[link as usize];
        l.executable = truncated(h.executable);
        l.state = LinkState::Ready;
        l.max_frame = max_frame;
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            max_frame,
            link,
            hub_pid: self.config.pid,
        };
        match io.send(link, &Frame::Welcome(welcome)) {
            Ok(()) => Handled::Done,
            Err(LinkFull) => self.violation(link, "no room for the welcome", io),
        }
    }

    /// Routes a message from a machine of the hub's own process (as if link 0 had sent it).
    pub fn deliver_local(
        &mut self,
        now: Instant,
        d: Deliver<'_>,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        self.now = self.now.max(now);
        self.deliver(now, LOCAL_LINK, d, body, io)
    }

    fn fail(
        &mut self,
        link: LinkId,
        d: &Deliver<'_>,
        reason: FailReason,
        io: &mut dyn HubIo,
    ) -> Handled {
        // A stopped target's report says what stopped it (copied: the report outlives
        // calls that change the hub).
        let mut detail: String<MAX_STOP_ERROR> = String::new();
        if reason == FailReason::TargetStopped {
            if let Some(error) = self.stop_error(d.to) {
                let _ = detail.push_str(error);
            }
        }
        self.fail_with(link, d, reason, &detail, io)
    }

    /// Reports `d` failed to `link` (the sender's) with `reason` and `detail`, and holds
    /// the pair's later messages on that link until the client confirms reading it.
    pub(super) fn fail_with(
        &mut self,
        link: LinkId,
        d: &Deliver<'_>,
        reason: FailReason,
        detail: &str,
        io: &mut dyn HubIo,
    ) -> Handled {
        let f = DeliveryFailed {
            from: d.from,
            to: d.to,
            event: d.event,
            seq: d.seq,
            reason,
            detail,
        };
        match io.send(link, &Frame::DeliveryFailed(f)) {
            Ok(()) => {
                self.count_failed(link, reason);
                if self.monitors > 0 {
                    self.copy_failure_to_monitors(link, &f, io);
                }
                if link != LOCAL_LINK {
                    self.hold(self.now, link, d.from, d.to, reason, io);
                }
                Handled::Done
            }
            Err(LinkFull) => Handled::Stalled(link),
        }
    }

    /// A failure of the pair (`from`, `to`) was reported on `link`: its later messages from
    /// the link fail too until the client confirms it read the report.
    fn hold(
        &mut self,
        now: Instant,
        link: LinkId,
        from: &str,
        to: &str,
        reason: FailReason,
        io: &mut dyn HubIo,
    ) {
        let u = &mut self.links[link as usize].unconfirmed;
        let h = pair_hash(from, to);
        if u.all.is_none()
            && !u.pairs.iter().any(|p| p.0 == h)
            && u.pairs.push((h, reason)).is_err()
        {
            u.all = Some(reason);
        }
        u.reported += 1;
        if u.pinged.is_none() {
            self.ask_confirmation(now, link, io);
        }
    }

    /// Queues a Ping after the failure reports on `link`: its Pong confirms the client read
    /// them (a client reads and answers in order).
    fn ask_confirmation(&mut self, now: Instant, link: LinkId, io: &mut dyn HubIo) {
        let u = &mut self.links[link as usize].unconfirmed;
        let nonce = u.reported;
        if io.send(link, &Frame::Ping { nonce }).is_ok() {
            u.pinged = Some((nonce, now));
        }
    }

    /// A Pong from `link`: when it answers a Ping queued after the last failure report, the
    /// client has read every report, and the pairs they held are released.
    fn confirmed(&mut self, now: Instant, link: LinkId, nonce: u64, io: &mut dyn HubIo) {
        let u = &mut self.links[link as usize].unconfirmed;
        if !u.is_held() {
            return;
        }
        if nonce == u.reported {
            u.clear();
        } else if u.pinged.is_some_and(|(n, _)| n == nonce) {
            // Reports queued after that Ping: ask again.
            self.ask_confirmation(now, link, io);
        }
    }

    fn deliver(
        &mut self,
        now: Instant,
        link: LinkId,
        d: Deliver<'_>,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        self.now = self.now.max(now);
        if self.lookup(d.from).is_none_or(|r| r.link != link) {
            self.stats.spoofed += 1;
            core_log!(
                warn,
                "hub: link {} sent as '{}', an id it does not own",
                link,
                d.from
            );
            io.log(
                link,
                "deliver from a machine id this link does not own; refused",
            );
            return self.fail(link, &d, FailReason::NotOwner, io);
        }
        if is_reserved_event(crate::topic::split_publication(d.event).1) {
            // Only the runtime makes `xstate.*` events, and it makes them inside the
            // receiving process: one on the wire is forged.
            self.stats.reserved += 1;
            core_log!(
                warn,
                "hub: link {} sent the reserved event '{}'",
                link,
                d.event
            );
            io.log(
                link,
                "deliver of an event in the reserved xstate. namespace; refused",
            );
            return self.fail(link, &d, FailReason::Reserved, io);
        }
        // An earlier message of the pair failed on this link, and the client has not
        // confirmed reading the report: should the report be lost with the link, the sender
        // sends that message again after reconnecting, and the receiver must not have
        // delivered a later one meanwhile.
        if let Some(reason) = self.links[link as usize].unconfirmed.holds(d.from, d.to) {
            return self.fail(link, &d, reason, io);
        }
        if self.drops_for_resend(link, d.to) {
            return Handled::Done;
        }
        let Some(target) = self.lookup(d.to).map(|r| r.link) else {
            if self.drops_while_held(link, d.to) {
                return Handled::Done;
            }
            let reason = if self.stopped.iter().any(|s| s.0 .0.as_str() == d.to) {
                FailReason::TargetStopped
            } else {
                FailReason::UnknownTarget
            };
            return self.fail(link, &d, reason, io);
        };
        if body.len() > self.links[target as usize].max_frame as usize {
            return self.fail(link, &d, FailReason::TooLarge, io);
        }
        if io.forward_deliver(target, &d, body).is_err() {
            return Handled::Stalled(target);
        }
        self.count_routed(link, target);
        if self.monitors > 0 {
            self.copy_to_monitors(link, body, io);
        } else if target != LOCAL_LINK && self.links[link as usize].direct_allow > 0 {
            self.consider_direct(link, target, io);
        }
        Handled::Done
    }

    fn ack(
        &mut self,
        link: LinkId,
        from: &str,
        to: &str,
        body: &[u8],
        io: &mut dyn HubIo,
    ) -> Handled {
        if self.lookup(from).is_none_or(|r| r.link != link) {
            self.stats.spoofed += 1;
            io.log(
                link,
                "ack from a machine id this link does not own; dropped",
            );
            return Handled::Done;
        }
        // An ack for a sender that is gone has no one to tell.
        let Some(target) = self.lookup(to).map(|r| r.link) else {
            return Handled::Done;
        };
        match io.forward(target, body) {
            Ok(()) => Handled::Done,
            Err(LinkFull) => Handled::Stalled(target),
        }
    }

    /// Routes an ack from a machine of the hub's own process.
    pub fn ack_local(&mut self, from: &str, to: &str, body: &[u8], io: &mut dyn HubIo) -> Handled {
        self.ack(LOCAL_LINK, from, to, body, io)
    }

    /// Reports a Deliver frame that will never reach its target (it was queued on a link that
    /// closed) back to its sender. Other frames are ignored.
    ///
    /// A sender whose link has no room for the report is closed: it sends the message again
    /// after reconnecting, and nothing it sent after it is forwarded meanwhile.
    pub fn undeliverable(&mut self, body: &[u8], io: &mut dyn HubIo) {
        let Ok(Frame::Deliver(d)) = Frame::decode(body) else {
            return;
        };
        if let Some(sender) = self.lookup(d.from).map(|r| r.link) {
            if self.drops_while_held(sender, d.to) {
                return;
            }
            if let Handled::Stalled(_) = self.fail(sender, &d, FailReason::TargetGone, io) {
                let why = "no room to report a failure to this link; closing it so it sends again";
                io.log(sender, why);
                io.close(sender, why);
                self.link_closed(sender, io);
            }
        }
    }
}
