//! A node: one process's place on the bus. It hosts any number of machines on a mio event
//! loop, with timers from the machines' deadlines, and joins a bus over a Unix socket, either
//! as its hub (server role) or as a client.
//!
//! - Sends between machines of the same node are delivered directly, without encoding.
//! - Sends to other processes are encoded once into the link's bounded write queue and
//!   flushed once per loop iteration (batching: one `write` carries many messages).
//! - Backpressure: a full write queue leaves messages in the sending machine's outbox; as a
//!   hub, a full target link stops reading from its senders until it drains.
//! - Nothing is lost silently: an undeliverable message becomes an `xstate.error.delivery`
//!   event to its sending machine, with a JSON payload `{"to","event","reason"}`, and is
//!   counted in [`NodeStats`].
//!
//! [`Node::run_once`] runs one loop iteration, so a node can live inside an existing daemon's
//! loop; [`Node::poll_registry`] lets that daemon register its own mio sources (with tokens
//! at or above [`USER_TOKEN_BASE`]).

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use interstate_core::endpoint::{Endpoint, EndpointConfig, Todo};
use interstate_core::hub::{Handled, Hub, HubConfig, HubIo, LinkFull, LinkId, LOCAL_LINK};
use interstate_core::machine::Status;
use interstate_core::wire::{
    Deliver, FailReason, Frame, RegisterStatus, RegistryEntry, DEFAULT_MAX_FRAME, LEN_PREFIX,
};
use interstate_core::{Behavior, Chart, Duration, Event, Instant, Machine, Target, TransportKind};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

use crate::busdir;
use crate::conn::Conn;
use crate::error::PlatformError;
use crate::outstanding::{Outstanding, Received};
use crate::registry::{MachineInfo, Registry};
use crate::transport::shm::{ShmLink, WaitStrategy};
use crate::transport::LinkIo;

/// Tokens at or above this are the user's (see [`Node::poll_registry`]).
pub const USER_TOKEN_BASE: usize = 1 << 30;
const LISTENER: Token = Token(0);
const CLIENT: Token = Token(1);
const SHM_LISTENER: Token = Token(2);
const FIFO_LISTENER: Token = Token(3);
const LINK_BASE: usize = 16;

/// The most links a hub accepts (its own process included).
pub const HUB_LINKS: usize = 256;
/// The most machine ids a hub routes.
pub const HUB_MACHINES: usize = 4096;

/// How long, after a reconnect, messages wait for their target to re-register.
const RECONNECT_GRACE: Duration = Duration::from_millis(3_000);
/// Acknowledgements wait at most this long for a write to ride on.
const ACK_DELAY: Duration = Duration::from_millis(2);
/// ... or until this many deliveries are owed one.
const ACK_BATCH: usize = 256;
/// A sender gone from the registry this long is forgotten by the duplicate filter: far longer
/// than a reconnect takes (after which it sends again what was not acknowledged, and its
/// duplicates must still be recognised), short enough that short-lived senders (each
/// `interstate send`) do not accumulate.
const FORGET_DEPARTED_MS: u64 = 60_000;

/// The event a sending machine receives when its message cannot be delivered.
pub const DELIVERY_ERROR_EVENT: &str = "xstate.error.delivery";

/// A machine hosted by a node: 256 states, 64 outbox messages with 16 KiB of names and
/// payloads, 64 timers, 32 internal events, 64 history slots.
pub type HostedMachine = Machine<'static, 4, 32, 64, 64, 64, 16384>;

/// Which transport a client's link to the hub runs over. Switching is this one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A Unix domain stream socket.
    UnixSocket,
    /// A pair of named pipes (set up over the bus's request FIFO).
    Fifo,
    /// Two rings in shared memory (set up over the bus's shared-memory socket).
    SharedMemory {
        /// Bytes per ring (per direction), a power of two.
        ring: usize,
        /// How the node waits for data.
        wait: WaitStrategy,
    },
}

impl Transport {
    /// Shared memory with 1 MiB rings, spinning 50 µs before sleeping.
    pub const SHARED_MEMORY: Transport = Transport::SharedMemory {
        ring: crate::transport::shm::DEFAULT_RING,
        wait: WaitStrategy::SpinThenPark(StdDuration::from_micros(50)),
    };

    /// From `INTERSTATE_TRANSPORT` (`unix`, `shm`); Unix sockets otherwise.
    pub fn from_env() -> Transport {
        match std::env::var("INTERSTATE_TRANSPORT").as_deref() {
            Ok("shm") => Transport::SHARED_MEMORY,
            Ok("fifo") => Transport::Fifo,
            _ => Transport::UnixSocket,
        }
    }

    fn wait(&self) -> WaitStrategy {
        match self {
            Transport::SharedMemory { wait, .. } => *wait,
            Transport::UnixSocket | Transport::Fifo => WaitStrategy::Park,
        }
    }
}

/// How a node joins the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serve the bus (host the hub); fail if a live hub already serves it.
    Hub,
    /// Join an existing hub; fail if none serves the bus yet (reconnects later if it goes).
    Client,
    /// Join the hub if one is live, else become it.
    Auto,
}

/// Node settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The bus name.
    pub bus: String,
    /// The bus directory.
    pub dir: PathBuf,
    /// How to join.
    pub role: Role,
    /// The largest frame body.
    pub max_frame: u32,
    /// Bytes of outgoing queue per link.
    pub link_queue: usize,
    /// Bytes of messages a client buffers while it is disconnected from the hub.
    pub reconnect_buffer: usize,
    /// Users allowed on the bus when this node is the hub (its own uid is always allowed).
    pub allowed_uids: Vec<u32>,
    /// Groups allowed on the bus when this node is the hub.
    pub allowed_gids: Vec<u32>,
    /// The most machine ids one client may register, when this node is the hub.
    pub machines_per_link: usize,
    /// Keepalive interval of a client (a ping after this much silence).
    pub keepalive: Duration,
    /// A hub closes a link silent for this long.
    pub idle_timeout: Duration,
    /// Reconnect backoff bounds of a client.
    pub backoff: (Duration, Duration),
    /// The transport this node's link to the hub uses (a hub serves every transport).
    pub transport: Transport,
    /// A listening socket to serve on instead of binding the bus path (socket activation:
    /// see [`crate::activation::listen_fd_from_env`]). Only the hub role uses it.
    pub listen_fd: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

impl NodeConfig {
    /// Settings for bus `bus` in the default directory (see [`busdir::default_dir`]).
    pub fn new(bus: &str) -> Self {
        NodeConfig {
            bus: bus.to_string(),
            dir: busdir::default_dir(),
            role: Role::Auto,
            max_frame: DEFAULT_MAX_FRAME,
            link_queue: 1 << 20,
            reconnect_buffer: 1 << 20,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            machines_per_link: 256,
            keepalive: Duration::from_millis(5_000),
            idle_timeout: Duration::from_millis(30_000),
            backoff: (Duration::from_millis(50), Duration::from_millis(2_000)),
            listen_fd: None,
            transport: Transport::from_env(),
        }
    }
    /// Settings from `INTERSTATE_BUS` and `INTERSTATE_DIR` (and the defaults).
    pub fn from_env() -> Self {
        Self::new(&busdir::default_bus())
    }
    /// The socket path.
    pub fn socket_path(&self) -> PathBuf {
        busdir::socket_path(&self.dir, &self.bus)
    }
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Messages delivered to machines of this node (from anywhere).
    pub received: u64,
    /// Messages this node's machines sent that left the node.
    pub sent_remote: u64,
    /// Messages between machines of this node.
    pub sent_local: u64,
    /// Messages reported back to their sender as undeliverable.
    pub delivery_failures: u64,
    /// Connections to the hub made (the first included).
    pub connects: u64,
}

/// A message for a port (see [`Node::open_port`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMessage {
    /// The port (machine id) it was sent to.
    pub port: String,
    /// The sender's machine id.
    pub from: String,
    /// The event name.
    pub event: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The sender's sequence number for it (0 for a message from this process).
    pub seq: u64,
}

struct Hosted {
    id: String,
    machine: Box<HostedMachine>,
    behavior: Box<dyn Behavior>,
    seq: u64,
    /// Its id is routed to this node; until then its outbox waits (the hub would refuse a
    /// sender id it does not know this node owns).
    registered: bool,
}

struct LinkConn {
    conn: LinkConnIo,
    /// More bytes may be waiting in the socket (edge-triggered readiness).
    readable: bool,
    /// Reading is paused until this link drains (backpressure).
    waiting_on: Option<LinkId>,
    /// The peer hung up (seen in the readiness event, before its bytes are read).
    hung_up: bool,
    /// Since when output has waited for this link with none of it written: a receiver that
    /// reads nothing for the idle timeout is closed (it would stall its senders for ever).
    unread_since: Option<Instant>,
}

struct HubSide {
    /// One past the highest link slot ever used: the per-turn scans of `links` stop here
    /// instead of walking all `HUB_LINKS` slots.
    high: usize,
    listener: UnixListener,
    /// Where clients ask for shared-memory links (`<bus>.shm.sock`), with its path.
    shm_listener: Option<(UnixListener, PathBuf)>,
    /// Where clients announce FIFO pairs (`<bus>.fifo`).
    fifo: Option<crate::transport::fifo::RequestFifo>,
    hub: Box<Hub<HUB_LINKS, HUB_MACHINES>>,
    links: Vec<Option<LinkConn>>,
    /// The socket file this hub created (removed on shutdown); none when socket-activated.
    path: Option<PathBuf>,
}

struct ClientSide {
    endpoint: Endpoint,
    conn: Option<LinkConnIo>,
    readable: bool,
    path: PathBuf,

    /// Ids registered (or to register) on the hub, and the answers received.
    pending_register: HashMap<String, Option<RegisterStatus>>,
    /// Every id in `pending_register` is registered: messages need no per-sender check.
    all_registered: bool,
    /// Ids the hub accepted from this node at least once. Refused again after a reconnect
    /// (the hub still holds them for this node's previous, broken connection), they are
    /// asked for again, after `retry_register` (time, backoff in ms).
    owned: std::collections::HashSet<String>,
    retry_register: Option<(Instant, u64)>,
    /// Owned ids the hub currently refuses (logged once when refused, once when back).
    held_elsewhere: std::collections::HashSet<String>,
    /// Since when output to the hub has waited with none of it written (the hub is not
    /// reading this link: backpressure, or a hung hub).
    blocked_since: Option<Instant>,
    monitor: bool,
    snapshot_done: bool,
}

enum Side {
    Hub(Box<HubSide>),
    Client(Box<ClientSide>),
}

/// Things the node does when the current call into the hub or a machine returns.
#[derive(Default)]
struct Deferred {
    /// Links to close, with the reason.
    close: Vec<(LinkId, String)>,
    /// (sending machine, target, event, seq, reason) failures to report to local machines.
    failures: Vec<(String, String, String, u64, FailReason)>,
    /// Machine ids that left the registry: their outstanding messages fail.
    removed: Vec<String>,
    /// Failures found here (not reported by the hub), reported as they are.
    direct: Vec<(String, String, String, u64, FailReason)>,
    /// Deliveries to local machines that arrived from the hub.
    logs: Vec<String>,
}

impl Deferred {
    fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.direct.is_empty()
            && self.failures.is_empty()
            && self.removed.is_empty()
            && self.close.is_empty()
    }
}

/// A message that will not be delivered, as reported to its sender.
struct Failed<'a> {
    from: &'a str,
    to: &'a str,
    event: &'a str,
    seq: u64,
    reason: FailReason,
}

/// One process's place on the bus.
pub struct Node {
    config: NodeConfig,
    poll: Poll,
    events: Events,
    origin: std::time::Instant,
    local: Local,
    side: Side,
    scratch: Vec<u8>,
    /// Holds one outgoing message's strings while it is routed.
    msg_buf: Vec<u8>,
    monitor_frames: VecDeque<Vec<u8>>,
    monitor_dropped: u64,
    log: Box<dyn FnMut(&str)>,
    /// After a reconnect, messages to machines not (yet) back in the registry wait until this
    /// instant for them to re-register, before they are sent (and fail if really gone).
    grace_until: Option<Instant>,
    /// When owed acknowledgements go out at the latest.
    ack_due: Option<Instant>,
    /// When the loop last asked the kernel for events.
    last_poll: std::time::Instant,
    /// When the duplicate filter next forgets departed senders.
    next_sweep: Instant,
    /// The time at the start of the current (or last) loop turn.
    turn_now: Instant,
}

/// Everything of the node that receives: its machines, ports, registry copy, counters, and
/// both ends of end-to-end delivery.
struct Local {
    machines: Vec<Hosted>,
    by_id: HashMap<String, usize>,
    ports: HashMap<String, VecDeque<PortMessage>>,
    /// Sequence numbers of the ports' sends.
    port_seq: HashMap<String, u64>,
    registry: Registry,
    stats: NodeStats,
    outstanding: Outstanding,
    received: Received,
    /// Watched machine ids: whether each was last seen up, and who watches it.
    watches: HashMap<String, Watch>,
}

/// Who watches a machine id, and whether it was last seen registered.
struct Watch {
    up: bool,
    watchers: Vec<String>,
}

/// Sent to a watcher when a watched machine leaves the bus (its process exited or was killed,
/// or it unregistered). Payload: `{"machine":"<id>"}`.
pub const MACHINE_DOWN_EVENT: &str = "xstate.machine.down";
/// Sent to a watcher when a watched machine (re)joins the bus. Payload: `{"machine":"<id>"}`.
pub const MACHINE_UP_EVENT: &str = "xstate.machine.up";

impl ClientSide {
    fn refresh_registered(&mut self) {
        self.all_registered = self
            .pending_register
            .values()
            .all(|s| *s == Some(RegisterStatus::Ok));
    }
}

/// Whether messages from `id` go out now: the hub has accepted the id on the current
/// connection, or refused it for good (then they fail visibly, as `not-owner`). They wait
/// while its registration is pending, or being asked for again (`held_elsewhere`).
fn may_send_as(
    all_registered: bool,
    pending: &HashMap<String, Option<RegisterStatus>>,
    held_elsewhere: &std::collections::HashSet<String>,
    id: &str,
) -> bool {
    all_registered
        || match pending.get(id) {
            None | Some(Some(RegisterStatus::Ok)) => true,
            Some(None) => false,
            Some(Some(_)) => !held_elsewhere.contains(id),
        }
}

impl Local {
    /// A registry change for `machine`: tells its watchers on a real change (up after down,
    /// down after up), never twice for the same state.
    fn watched(&mut self, now: Instant, machine: &str, up: bool, deferred: &mut Deferred) {
        let Some(w) = self.watches.get_mut(machine) else {
            return;
        };
        if w.up == up {
            return;
        }
        w.up = up;
        let watchers = w.watchers.clone();
        let payload = format!("{{\"machine\":{}}}", json_string(machine)).into_bytes();
        let event = if up {
            MACHINE_UP_EVENT
        } else {
            MACHINE_DOWN_EVENT
        };
        for watcher in watchers {
            self.deliver(now, machine, &watcher, event, &payload, deferred);
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The platform side of the hub when this node is the hub.
struct HubIoImpl<'a> {
    links: &'a mut Vec<Option<LinkConn>>,
    local: &'a mut Local,
    now: Instant,
    deferred: &'a mut Deferred,
    refused: Option<&'a mut dyn LinkIo>,
}

impl Local {
    fn deliver(
        &mut self,
        now: Instant,
        from: &str,
        to: &str,
        event: &str,
        payload: &[u8],
        deferred: &mut Deferred,
    ) -> bool {
        if let Some(&i) = self.by_id.get(to) {
            self.step(i, now, event, payload, deferred);
            return true;
        }
        if let Some(q) = self.ports.get_mut(to) {
            q.push_back(PortMessage {
                port: to.to_string(),
                from: from.to_string(),
                event: event.to_string(),
                payload: payload.to_vec(),
                seq: 0,
            });
            return true;
        }
        false
    }

    /// Machine `i` takes its step on an event.
    fn step(
        &mut self,
        i: usize,
        now: Instant,
        event: &str,
        payload: &[u8],
        deferred: &mut Deferred,
    ) {
        let h = &mut self.machines[i];
        if let Err(e) = h.machine.send(
            now,
            Event::new(event).with_payload(payload),
            &mut *h.behavior,
        ) {
            deferred
                .logs
                .push(format!("machine '{}' failed on event '{event}': {e}", h.id));
        }
    }

    /// A message from another process: delivered once (a duplicate, sent again after a lost
    /// connection, is dropped and acknowledged again), and acknowledged once the application
    /// has it: a machine once its step ran, a port once `recv_port` returned it.
    fn receive(&mut self, now: Instant, d: &Deliver<'_>, deferred: &mut Deferred) {
        if let Some(&i) = self.by_id.get(d.to) {
            if self.received.accept(d.to, d.from, d.seq, true) {
                self.stats.received += 1;
                self.step(i, now, d.event, d.payload, deferred);
            }
        } else if let Some(q) = self.ports.get_mut(d.to) {
            if self.received.accept(d.to, d.from, d.seq, false) {
                self.stats.received += 1;
                q.push_back(PortMessage {
                    port: d.to.to_string(),
                    from: d.from.to_string(),
                    event: d.event.to_string(),
                    payload: d.payload.to_vec(),
                    seq: d.seq,
                });
            }
        } else {
            // Not acknowledged: the hub routes only ids this node registered, so this is a
            // bug, and its sender must not take the message for delivered.
            deferred.logs.push(format!(
                "a message from '{}' for '{}', which this process does not host, was dropped",
                d.from, d.to
            ));
        }
    }

    /// A registry entry arrived (a machine joined, or the snapshot after a reconnect).
    fn registry_entry(&mut self, now: Instant, e: &RegistryEntry<'_>, deferred: &mut Deferred) {
        self.received
            .sender_registered(e.machine, e.pid, now.as_millis());
        self.registry.insert(MachineInfo::from_entry(e));
        self.watched(now, e.machine, true, deferred);
    }

    /// A machine left the registry.
    fn registry_removed(&mut self, now: Instant, machine: &str, deferred: &mut Deferred) {
        self.registry.remove(machine);
        self.received.sender_departed(machine, now.as_millis());
        // What this process's machines sent it and never had acknowledged will not arrive:
        // their senders are told.
        deferred.removed.push(machine.to_string());
        self.watched(now, machine, false, deferred);
    }
}

impl<'a> HubIoImpl<'a> {
    /// The hub's view of this node for a call into it (no refused connection to answer).
    fn new(
        links: &'a mut Vec<Option<LinkConn>>,
        local: &'a mut Local,
        now: Instant,
        deferred: &'a mut Deferred,
    ) -> Self {
        HubIoImpl {
            links,
            local,
            now,
            deferred,
            refused: None,
        }
    }
}

impl HubIo for HubIoImpl<'_> {
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull> {
        if link == LinkId::MAX {
            if let Some(s) = self.refused.as_deref_mut() {
                let mut buf = [0u8; 512];
                if let Ok(n) = frame.encode(&mut buf) {
                    let _ = std::io::Write::write(s, &buf[..n]);
                }
            }
            return Ok(());
        }
        if link == LOCAL_LINK {
            match *frame {
                Frame::RegistryEntry(e) => self.local.registry_entry(self.now, &e, self.deferred),
                Frame::RegistryRemoved { machine } => {
                    self.local
                        .registry_removed(self.now, machine, self.deferred)
                }
                Frame::DeliveryFailed(f) => self.deferred.failures.push((
                    f.from.to_string(),
                    f.to.to_string(),
                    f.event.to_string(),
                    f.seq,
                    f.reason,
                )),
                _ => {}
            }
            return Ok(());
        }
        match self.links.get_mut(link as usize).and_then(Option::as_mut) {
            Some(l) => l.conn.queue(frame),
            None => Ok(()),
        }
    }

    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull> {
        if link == LOCAL_LINK {
            match Frame::decode(body) {
                Ok(Frame::Deliver(d)) => self.local.receive(self.now, &d, self.deferred),
                Ok(Frame::Ack { from, to, seq }) => self.local.outstanding.ack(to, from, seq),
                _ => {}
            }
            return Ok(());
        }
        match self.links.get_mut(link as usize).and_then(Option::as_mut) {
            Some(l) => l.conn.queue_body(body),
            None => Ok(()),
        }
    }

    fn close(&mut self, link: LinkId, reason: &str) {
        if link != LinkId::MAX && link != LOCAL_LINK {
            self.deferred.close.push((link, reason.to_string()));
        }
    }

    fn log(&mut self, link: LinkId, message: &str) {
        if link == LinkId::MAX {
            self.deferred
                .logs
                .push(format!("hub: refused a connection: {message}"));
        } else {
            self.deferred
                .logs
                .push(format!("hub: link {link}: {message}"));
        }
    }
}

/// The payload of an `xstate.error.delivery` event: which message failed (its target, event
/// and sequence number, the one `send_from_port` returned) and why.
fn delivery_error_payload(to: &str, event: &str, seq: u64, reason: FailReason) -> Vec<u8> {
    let code = match reason {
        FailReason::UnknownTarget => "unknown-target",
        FailReason::TargetGone => "target-gone",
        FailReason::QueueFull => "queue-full",
        FailReason::NotOwner => "not-owner",
        FailReason::TooLarge => "too-large",
        FailReason::Disconnected => "disconnected",
        _ => "undeliverable",
    };
    format!(
        "{{\"to\":{},\"event\":{},\"seq\":{seq},\"reason\":\"{code}\",\"message\":{}}}",
        json_string(to),
        json_string(event),
        json_string(reason.as_str())
    )
    .into_bytes()
}

/// Write readiness is watched only while a flush is blocked, so that finished writes do not
/// wake the loop for nothing.
fn want_writable(registry: &mio::Registry, conn: &mut LinkConnIo, token: Token) {
    let want = conn.pending() > 0 && !conn.dead;
    if want != conn.want_write {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if conn.stream.reregister(registry, token, interest).is_ok() {
            conn.want_write = want;
        }
    }
}

/// A framed link over any transport.
type LinkConnIo = Conn<Box<dyn LinkIo>>;

/// Calls `f` with each link in shared memory and its readable flag.
fn each_shm_link(side: &mut Side, f: &mut dyn FnMut(&mut LinkConnIo, &mut bool)) {
    let shm = |c: &LinkConnIo| c.stream.kind() == interstate_core::TransportKind::SharedMemory;
    match side {
        Side::Hub(h) => {
            for l in h.links[..h.high]
                .iter_mut()
                .flatten()
                .filter(|l| shm(&l.conn))
            {
                f(&mut l.conn, &mut l.readable);
            }
        }
        Side::Client(c) => {
            if let Some(conn) = c.conn.as_mut().filter(|c| shm(c)) {
                f(conn, &mut c.readable);
            }
        }
    }
}

/// Asks the hub to admit a new connection (by its peer's credentials); a refusal is written
/// to `stream` itself. Returns the new link's id.
fn admit(
    h: &mut HubSide,
    local: &mut Local,
    now: Instant,
    stream: &mut dyn LinkIo,
    log: &mut dyn FnMut(&str),
) -> Option<LinkId> {
    let peer = stream.peer();
    let mut deferred = Deferred::default();
    let mut io = HubIoImpl {
        links: &mut h.links,
        local,
        now,
        deferred: &mut deferred,
        refused: Some(stream),
    };
    let link = h.hub.link_opened(now, peer, &mut io);
    for line in deferred.logs.drain(..) {
        log(&line);
    }
    link
}

/// Puts an admitted link's stream in the event loop and the link table; if the stream could
/// not be set up or watched, the hub forgets the link.
#[allow(clippy::too_many_arguments)]
fn install(
    h: &mut HubSide,
    local: &mut Local,
    registry: &mio::Registry,
    config: &NodeConfig,
    now: Instant,
    link: LinkId,
    opened: std::io::Result<Box<dyn LinkIo>>,
    log: &mut dyn FnMut(&str),
) {
    let token = Token(LINK_BASE + link as usize);
    match opened.and_then(|mut s| s.register(registry, token, Interest::READABLE).map(|()| s)) {
        Ok(stream) => {
            h.hub.set_transport(link, stream.kind());
            h.high = h.high.max(link as usize + 1);
            h.links[link as usize] = Some(LinkConn {
                conn: Conn::new(stream, config.max_frame, config.link_queue),
                readable: true,
                waiting_on: None,
                hung_up: false,
                unread_since: None,
            });
        }
        Err(e) => {
            log(&format!("hub: cannot set up link {link}: {e}"));
            let mut deferred = Deferred::default();
            let mut io = HubIoImpl::new(&mut h.links, local, now, &mut deferred);
            h.hub.link_closed(link, &mut io);
        }
    }
}

/// The shared-memory set-up socket beside a bus socket: `<bus>.shm.sock`.
pub fn shm_socket_path(bus_socket: &Path) -> PathBuf {
    let mut name = bus_socket
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(".shm.sock");
    bus_socket.with_file_name(name)
}

fn local_info(id: &str) -> MachineInfo {
    MachineInfo {
        machine: id.to_string(),
        pid: std::process::id(),
        uid: rustix::process::getuid().as_raw(),
        executable: executable_name(),
        transport: TransportKind::InProcess,
        since_ms: 0,
    }
}

/// A starting sequence number above any a previous incarnation of this process can have used
/// (nanoseconds since the epoch), so receivers never take a restarted sender's messages for
/// duplicates.
fn sequence_base() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into())
}

impl Node {
    /// Joins (or serves) the bus as the configuration says.
    pub fn new(config: NodeConfig) -> Result<Node, PlatformError> {
        busdir::check_bus_name(&config.bus).map_err(|problem| PlatformError::UnsafeBusDir {
            path: config.dir.clone(),
            problem,
        })?;
        busdir::ensure_dir(&config.dir)?;
        let poll =
            Poll::new().map_err(|e| PlatformError::io("creating the event loop", None, e))?;
        let path = config.socket_path();
        let origin = std::time::Instant::now();
        let registry = Registry::default();
        let side = match config.role {
            Role::Hub => Side::Hub(Box::new(Self::serve(&config, &poll, &path)?)),
            Role::Client => {
                if !Self::hub_is_live(&path) {
                    return Err(PlatformError::NoHub { path });
                }
                Side::Client(Box::new(Self::client_side(&config, &path)))
            }
            Role::Auto => {
                if Self::hub_is_live(&path) {
                    Side::Client(Box::new(Self::client_side(&config, &path)))
                } else {
                    match Self::serve(&config, &poll, &path) {
                        Ok(h) => Side::Hub(Box::new(h)),
                        // Another process won the race to serve: join it.
                        Err(PlatformError::HubRunning { .. }) => {
                            Side::Client(Box::new(Self::client_side(&config, &path)))
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        let outstanding_bytes = config.reconnect_buffer;
        let mut node = Node {
            config,
            poll,
            events: Events::with_capacity(256),
            origin,
            local: Local {
                machines: Vec::new(),
                by_id: HashMap::default(),
                ports: HashMap::default(),
                port_seq: HashMap::default(),
                registry,
                stats: NodeStats::default(),
                outstanding: Outstanding::new(outstanding_bytes),
                received: Received::default(),
                watches: HashMap::default(),
            },
            side,
            scratch: Vec::new(),
            msg_buf: Vec::with_capacity(1024),
            monitor_frames: VecDeque::new(),
            monitor_dropped: 0,
            log: Box::new(|line| eprintln!("interstate: {line}")),
            grace_until: None,
            ack_due: None,
            last_poll: std::time::Instant::now(),
            next_sweep: Instant::from_millis(0),
            turn_now: Instant::from_millis(0),
        };
        node.scratch = vec![0; node.config.max_frame as usize + 64];
        if let Side::Client(_) = node.side {
            // Connect now, so that a client starts ready (or with a clear error).
            node.client_connect()?;
            let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
            while !node.is_connected() && std::time::Instant::now() < deadline {
                node.run_once(Some(StdDuration::from_millis(20)))?;
                if let Side::Client(c) = &node.side {
                    if c.endpoint.rejection().is_some()
                        && c.endpoint.state() == interstate_core::endpoint::LinkState::Failed
                    {
                        return Err(PlatformError::Rejected {
                            message: format!("{:?}", c.endpoint.rejection()),
                        });
                    }
                }
            }
        }
        Ok(node)
    }

    fn hub_is_live(path: &Path) -> bool {
        StdUnixStream::connect(path).is_ok()
    }

    fn serve(config: &NodeConfig, poll: &Poll, path: &Path) -> Result<HubSide, PlatformError> {
        if let Some(fd) = &config.listen_fd {
            return Self::serve_activated(config, poll, fd);
        }
        // A live hub is never taken over; a stale socket file (connect refused) is replaced.
        match StdUnixStream::connect(path) {
            Ok(_) => return Err(PlatformError::HubRunning { path: path.into() }),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(path);
            }
            Err(_) => {}
        }
        let mut listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(PlatformError::HubRunning { path: path.into() })
            }
            Err(e) => return Err(PlatformError::io("binding the hub socket", Some(path), e)),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            PlatformError::io("restricting the hub socket to its owner", Some(path), e)
        })?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| PlatformError::io("watching the hub socket", Some(path), e))?;
        let mut side = Self::hub_side(config, listener, Some(path.into()));
        let shm_path = shm_socket_path(path);
        let _ = std::fs::remove_file(&shm_path);
        match UnixListener::bind(&shm_path) {
            Ok(mut l) => {
                std::fs::set_permissions(&shm_path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| {
                        PlatformError::io(
                            "restricting the shared-memory socket to its owner",
                            Some(&shm_path),
                            e,
                        )
                    })?;
                poll.registry()
                    .register(&mut l, SHM_LISTENER, Interest::READABLE)
                    .map_err(|e| {
                        PlatformError::io("watching the shared-memory socket", Some(&shm_path), e)
                    })?;
                side.shm_listener = Some((l, shm_path));
                let mut fifo =
                    crate::transport::fifo::RequestFifo::create(&config.dir, &config.bus).map_err(
                        |e| {
                            PlatformError::io(
                                "creating the request FIFO",
                                Some(&crate::transport::fifo::request_path(
                                    &config.dir,
                                    &config.bus,
                                )),
                                e,
                            )
                        },
                    )?;
                fifo.register(poll.registry(), FIFO_LISTENER).map_err(|e| {
                    PlatformError::io("watching the request FIFO", Some(fifo.path()), e)
                })?;
                side.fifo = Some(fifo);
            }
            Err(e) => {
                return Err(PlatformError::io(
                    "binding the shared-memory socket",
                    Some(&shm_path),
                    e,
                ))
            }
        }
        Ok(side)
    }

    /// Serves on a listening socket handed over by the service manager (socket activation):
    /// nothing is bound, and the socket file is the manager's, not removed on exit.
    fn serve_activated(
        config: &NodeConfig,
        poll: &Poll,
        fd: &std::sync::Arc<std::os::fd::OwnedFd>,
    ) -> Result<HubSide, PlatformError> {
        let owned = fd
            .try_clone()
            .map_err(|e| PlatformError::io("duplicating the activated socket", None, e))?;
        let std_listener = std::os::unix::net::UnixListener::from(owned);
        std_listener
            .set_nonblocking(true)
            .map_err(|e| PlatformError::io("making the activated socket non-blocking", None, e))?;
        let mut listener = UnixListener::from_std(std_listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| PlatformError::io("watching the activated socket", None, e))?;
        Ok(Self::hub_side(config, listener, None))
    }

    fn hub_side(config: &NodeConfig, listener: UnixListener, path: Option<PathBuf>) -> HubSide {
        let uid = rustix::process::getuid().as_raw();
        let mut hc = HubConfig::new(uid, std::process::id());
        hc.max_frame = config.max_frame;
        hc.machines_per_link = config.machines_per_link;
        hc.idle_timeout = config.idle_timeout;
        hc.epoch_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for &u in &config.allowed_uids {
            let _ = hc.allowed_uids.push(u);
        }
        for &g in &config.allowed_gids {
            let _ = hc.allowed_gids.push(g);
        }
        let mut links = Vec::new();
        links.resize_with(HUB_LINKS, || None);
        HubSide {
            high: 1,
            listener,
            shm_listener: None,
            fifo: None,
            hub: Box::new(Hub::new(hc, &executable_name())),
            links,
            path,
        }
    }

    fn client_side(config: &NodeConfig, path: &Path) -> ClientSide {
        let mut ec = EndpointConfig::new(std::process::id(), &executable_name());
        ec.keepalive = config.keepalive;
        ec.dead_after = Duration::from_millis(config.keepalive.as_millis() * 2);
        ec.backoff_min = config.backoff.0;
        ec.backoff_max = config.backoff.1;
        ec.max_frame = config.max_frame;
        ClientSide {
            endpoint: Endpoint::new(ec, Instant::ZERO),
            conn: None,
            readable: false,
            path: path.into(),

            pending_register: HashMap::default(),
            all_registered: true,
            owned: Default::default(),
            retry_register: None,
            held_elsewhere: Default::default(),
            blocked_since: None,
            monitor: false,
            snapshot_done: false,
        }
    }

    /// The time on the node's clock (ms since the node started).
    pub fn now(&self) -> Instant {
        Instant::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    /// Whether this node serves the bus.
    pub fn is_hub(&self) -> bool {
        matches!(self.side, Side::Hub(_))
    }

    /// Whether the node can reach the bus now (always, for the hub).
    pub fn is_connected(&self) -> bool {
        match &self.side {
            Side::Hub(_) => true,
            Side::Client(c) => c.endpoint.is_ready() && c.conn.is_some(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }
    /// Counters.
    pub fn stats(&self) -> NodeStats {
        self.local.stats
    }
    /// Makes the hosted machine or port `watcher` receive [`MACHINE_DOWN_EVENT`] when the
    /// machine `target` leaves the bus and [`MACHINE_UP_EVENT`] when it (re)joins it, as the
    /// registry says: a crashed worker's supervisor-restarted successor shows as down, then up.
    /// Returns whether `target` is on the bus now.
    pub fn watch(&mut self, watcher: &str, target: &str) -> Result<bool, PlatformError> {
        if !self.local.by_id.contains_key(watcher) && !self.local.ports.contains_key(watcher) {
            return Err(PlatformError::BadMachineId { id: watcher.into() });
        }
        let up = self.local.registry.contains(target);
        let w = self
            .local
            .watches
            .entry(target.to_string())
            .or_insert(Watch {
                up,
                watchers: Vec::new(),
            });
        if !w.watchers.iter().any(|x| x == watcher) {
            w.watchers.push(watcher.to_string());
        }
        Ok(up)
    }

    /// Messages sent to other processes that their receivers have not acknowledged yet (a
    /// tool can wait for this to reach zero before it exits).
    pub fn unacknowledged(&self) -> usize {
        self.local.outstanding.len()
    }

    /// The registry copy (shared view; stays current).
    pub fn registry(&self) -> Registry {
        self.local.registry.clone()
    }
    /// Where log lines go (default: stderr).
    pub fn set_logger(&mut self, f: impl FnMut(&str) + 'static) {
        self.log = Box::new(f);
    }
    /// The mio registry, to add the user's own sources (tokens >= [`USER_TOKEN_BASE`]).
    pub fn poll_registry(&self) -> &mio::Registry {
        self.poll.registry()
    }
    /// A hosted machine by id.
    pub fn machine(&self, id: &str) -> Option<&HostedMachine> {
        self.local
            .by_id
            .get(id)
            .map(|&i| &*self.local.machines[i].machine)
    }
    /// The ids of the hosted machines.
    pub fn machine_ids(&self) -> impl Iterator<Item = &str> {
        self.local.machines.iter().map(|h| h.id.as_str())
    }

    fn check_new_id(&self, id: &str) -> Result<(), PlatformError> {
        if !interstate_core::hub::valid_machine_id(id) {
            return Err(PlatformError::BadMachineId { id: id.into() });
        }
        if self.local.by_id.contains_key(id) || self.local.ports.contains_key(id) {
            return Err(PlatformError::MachineIdTaken { id: id.into() });
        }
        Ok(())
    }

    /// Registers `id` on the bus; waits for the hub's answer when connected.
    fn register_on_bus(&mut self, id: &str) -> Result<(), PlatformError> {
        let now = self.now();
        match &mut self.side {
            Side::Hub(h) => {
                let mut deferred = Deferred::default();
                let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, &mut deferred);
                let status = h.hub.register_local(now, id, &mut io);
                self.settle(deferred);
                match status {
                    RegisterStatus::Ok => Ok(()),
                    RegisterStatus::Taken => Err(PlatformError::MachineIdTaken { id: id.into() }),
                    _ => Err(PlatformError::BadMachineId { id: id.into() }),
                }
            }
            Side::Client(c) => {
                c.pending_register.insert(id.to_string(), None);
                c.all_registered = false;
                if !c.endpoint.is_ready() {
                    return Ok(());
                }
                if let Some(conn) = c.conn.as_mut() {
                    let _ = conn.queue(&Frame::Register { machine: id });
                }
                let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
                loop {
                    let Side::Client(c) = &mut self.side else {
                        return Ok(());
                    };
                    let refused = match c.pending_register.get(id) {
                        Some(Some(RegisterStatus::Ok)) => return Ok(()),
                        Some(Some(RegisterStatus::Taken)) => {
                            PlatformError::MachineIdTaken { id: id.into() }
                        }
                        Some(Some(_)) => PlatformError::BadMachineId { id: id.into() },
                        _ => {
                            if !c.endpoint.is_ready() || std::time::Instant::now() > deadline {
                                // Registered when the link comes (back).
                                return Ok(());
                            }
                            self.run_once(Some(StdDuration::from_millis(10)))?;
                            continue;
                        }
                    };
                    // Not this node's id after all: forget it.
                    c.pending_register.remove(id);
                    c.refresh_registered();
                    return Err(refused);
                }
            }
        }
    }

    /// Adds a machine running `chart` with `behavior`, starts it, and registers `id` on the
    /// bus. Fails if the id is in use in this node or owned by a live peer.
    ///
    /// The chart must live as long as the node: compile it once and leak it (a node's
    /// machines live as long as the process).
    pub fn add_machine(
        &mut self,
        id: &str,
        chart: Chart<'static>,
        behavior: Box<dyn Behavior>,
    ) -> Result<(), PlatformError> {
        self.check_new_id(id)?;
        let machine = Box::new(HostedMachine::new(chart, id)?);
        // The machine is in the table and started before its id is announced, so that a
        // message sent the moment the registry shows it finds it.
        let idx = self.local.machines.len();
        self.local.machines.push(Hosted {
            id: id.to_string(),
            machine,
            behavior,
            seq: sequence_base(),
            registered: false,
        });
        self.local.by_id.insert(id.to_string(), idx);
        let now = self.now();
        let h = &mut self.local.machines[idx];
        if let Err(e) = h.machine.start(now, &mut *h.behavior) {
            self.local.machines.pop();
            self.local.by_id.remove(id);
            return Err(e.into());
        }
        if let Err(e) = self.register_on_bus(id) {
            self.local.machines.pop();
            self.local.by_id.remove(id);
            return Err(e);
        }
        self.local.machines[idx].registered = true;
        self.local.registry.insert(MachineInfo {
            machine: id.to_string(),
            pid: std::process::id(),
            uid: rustix::process::getuid().as_raw(),
            executable: executable_name(),
            transport: TransportKind::InProcess,
            since_ms: 0,
        });
        self.pump()?;
        Ok(())
    }

    /// Opens a port: a machine id with no statechart behind it, whose messages are queued for
    /// the caller ([`Node::recv_port`]) and which can send ([`Node::send_from_port`]). Tools
    /// (`interstate send`) and foreign code use ports.
    pub fn open_port(&mut self, id: &str) -> Result<(), PlatformError> {
        self.check_new_id(id)?;
        self.local.ports.insert(id.to_string(), VecDeque::new());
        if let Err(e) = self.register_on_bus(id) {
            self.local.ports.remove(id);
            return Err(e);
        }
        Ok(())
    }

    /// The next message for any port.
    ///
    /// A message from another process is acknowledged to its sender only once this returned
    /// it: one still queued when the process dies is reported to its sender as failed. (Or
    /// once [`Node::send_from_port`] has had to wait for room: see there.)
    pub fn recv_port(&mut self) -> Option<PortMessage> {
        let m = self.local.ports.values_mut().find_map(|q| q.pop_front())?;
        if m.seq != 0 {
            self.local.received.handed(&m.port, &m.from, m.seq);
        }
        Some(m)
    }

    /// Sends from a port; returns the message's sequence number. Delivery failures come back
    /// to the port as `xstate.error.delivery` messages, whose payload names the sequence
    /// number of the message that failed.
    ///
    /// When the bus is full (the receivers have not acknowledged enough), this drives the
    /// loop until there is room, for up to 5 s, then fails. While it waits, the messages
    /// queued unread in this process's ports are acknowledged (the application cannot read
    /// them meanwhile): otherwise two processes each blocked sending to the other would
    /// each hold back the acknowledgements the other waits for.
    pub fn send_from_port(
        &mut self,
        port: &str,
        to: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<u64, PlatformError> {
        let seq = self.next_port_seq(port)?;
        // Read the clock for the deadline only once the bus turns out to be full.
        let mut deadline = None;
        loop {
            let mut deferred = Deferred::default();
            let routed = self.route(
                None,
                Deliver {
                    from: port,
                    to,
                    event,
                    payload,
                    seq,
                },
                &mut deferred,
            );
            self.settle(deferred);
            if routed == Routed::Sent {
                return Ok(seq);
            }
            let deadline = *deadline
                .get_or_insert_with(|| std::time::Instant::now() + StdDuration::from_secs(5));
            if std::time::Instant::now() > deadline {
                return Err(PlatformError::io(
                    "sending",
                    None,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the bus stayed full for 5 s",
                    ),
                ));
            }
            // Backpressure: drive the loop until there is room. Meanwhile what waits unread
            // in this process's ports is acknowledged: the application cannot read while it
            // is blocked here, and two processes each blocked sending to the other, each
            // holding the other's acknowledgements back, would wait for ever.
            self.acknowledge_queued();
            self.run_once(Some(StdDuration::from_millis(5)))?;
        }
    }

    /// Acknowledges every message waiting in a port's queue (see `send_from_port`).
    fn acknowledge_queued(&mut self) {
        let Local {
            ports, received, ..
        } = &mut self.local;
        for q in ports.values() {
            for m in q.iter().filter(|m| m.seq != 0) {
                received.handed(&m.port, &m.from, m.seq);
            }
        }
    }

    /// The next sequence number of a port's sends (one lookup once the port has sent).
    fn next_port_seq(&mut self, port: &str) -> Result<u64, PlatformError> {
        let seq = match self.local.port_seq.get_mut(port) {
            Some(s) => s,
            None if self.local.ports.contains_key(port) => self
                .local
                .port_seq
                .entry(port.to_string())
                .or_insert_with(sequence_base),
            None => return Err(PlatformError::BadMachineId { id: port.into() }),
        };
        *seq += 1;
        Ok(*seq)
    }

    /// Subscribes to copies of every message crossing the hub (`interstate monitor`).
    pub fn subscribe_monitor(&mut self) {
        if let Side::Client(c) = &mut self.side {
            c.monitor = true;
            if let Some(conn) = c.conn.as_mut() {
                let _ = conn.queue(&Frame::Subscribe {
                    registry: true,
                    monitor: true,
                });
            }
        }
    }

    /// The next monitored frame body (a postcard `Frame`), with the link it came from.
    pub fn next_monitored(&mut self) -> Option<Vec<u8>> {
        self.monitor_frames.pop_front()
    }

    /// Whether the registry snapshot has arrived (clients; always true for the hub).
    pub fn registry_synced(&self) -> bool {
        match &self.side {
            Side::Hub(_) => true,
            Side::Client(c) => c.snapshot_done,
        }
    }

    /// Injects an event into a hosted machine as if it came from outside.
    pub fn send_local(
        &mut self,
        to: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<(), PlatformError> {
        let now = self.now();
        let Some(&i) = self.local.by_id.get(to) else {
            return Err(PlatformError::BadMachineId { id: to.into() });
        };
        let h = &mut self.local.machines[i];
        h.machine.send(
            now,
            Event::new(event).with_payload(payload),
            &mut *h.behavior,
        )?;
        self.pump()
    }

    /// Runs one loop iteration: waits for I/O or the next timer (at most `timeout`), then
    /// handles everything ready. User sources' events are ignored; see
    /// [`run_once_with`](Self::run_once_with).
    pub fn run_once(&mut self, timeout: Option<StdDuration>) -> Result<(), PlatformError> {
        self.run_once_with(timeout, &mut |_| {})
    }

    /// Runs until `deadline`.
    pub fn run_for(&mut self, d: StdDuration) -> Result<(), PlatformError> {
        let end = std::time::Instant::now() + d;
        loop {
            let now = std::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            self.run_once(Some(end - now))?;
        }
    }

    /// Runs until `done(self)` is true or `limit` has passed. Returns whether `done` became true.
    pub fn run_until(
        &mut self,
        limit: StdDuration,
        mut done: impl FnMut(&mut Node) -> bool,
    ) -> Result<bool, PlatformError> {
        let end = std::time::Instant::now() + limit;
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = std::time::Instant::now();
            if now >= end {
                return Ok(false);
            }
            self.run_once(Some((end - now).min(StdDuration::from_millis(50))))?;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let m = self
            .local
            .machines
            .iter()
            .filter_map(|h| h.machine.poll_timeout())
            .min();
        let (s, r) = match &self.side {
            Side::Hub(h) => (h.hub.poll_timeout(), None),
            Side::Client(c) => (
                c.endpoint.poll_timeout(),
                c.retry_register.map(|(at, _)| at),
            ),
        };
        [m, s, r, self.ack_due].into_iter().flatten().min()
    }

    /// Like [`run_once`](Self::run_once), handing the user's own sources' events to `user`.
    pub fn run_once_with(
        &mut self,
        timeout: Option<StdDuration>,
        user: &mut dyn FnMut(&mio::event::Event),
    ) -> Result<(), PlatformError> {
        // The clock is read once at the start of a turn and once more only if the turn
        // waited: everything in the turn runs at `turn_now` (a read costs about 25 ns, and a
        // turn used to make ten).
        let started = std::time::Instant::now();
        let now = Instant::from_millis(started.duration_since(self.origin).as_millis() as u64);
        self.turn_now = now;
        let mut wait = timeout;
        if let Some(d) = self.next_deadline() {
            let until = StdDuration::from_millis((d - now).as_millis());
            wait = Some(wait.map_or(until, |w| w.min(until)));
        }
        if self.has_buffered_input() {
            wait = Some(StdDuration::ZERO);
        }
        let mut spun_ready = false;
        if wait != Some(StdDuration::ZERO) && self.wait_on_shared_memory(wait) {
            wait = Some(StdDuration::ZERO);
            spun_ready = true;
        }
        // Shared memory had work while spinning: skip the epoll_wait(0) unless the last one
        // is more than 50 us old, so that sockets, pipes and control sockets get their turn.
        if spun_ready
            && started.saturating_duration_since(self.last_poll) < StdDuration::from_micros(50)
        {
            self.events.clear();
        } else {
            self.last_poll = started;
            match self.poll.poll(&mut self.events, wait) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PlatformError::io("waiting for events", None, e)),
            }
        }
        if wait != Some(StdDuration::ZERO) || spun_ready {
            // The turn may have waited (in the kernel or spinning): what it reads now happens
            // now, not when it began waiting.
            self.turn_now = self.now();
        }
        let mut accept = false;
        let mut accept_shm = false;
        let mut accept_fifo = false;
        for ev in self.events.iter() {
            match (ev.token(), &mut self.side) {
                (LISTENER, _) => accept = true,
                (SHM_LISTENER, _) => accept_shm = true,
                (FIFO_LISTENER, _) => accept_fifo = true,
                (CLIENT, Side::Client(c)) => {
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        c.readable = true;
                    }
                    // The peer hung up: read until end-of-file even after a short read (the
                    // data and the hang-up can come in one edge).
                    if ev.is_read_closed() || ev.is_error() {
                        if let Some(conn) = c.conn.as_mut() {
                            conn.more = true;
                        }
                    }
                }
                (Token(t), _) if t >= USER_TOKEN_BASE => user(ev),
                (Token(t), Side::Hub(h)) if t >= LINK_BASE => {
                    if let Some(Some(link)) = h.links.get_mut(t - LINK_BASE) {
                        link.readable = true;
                        if ev.is_read_closed() || ev.is_error() {
                            link.conn.more = true;
                            link.hung_up = true;
                        }
                    }
                }
                _ => {}
            }
        }
        // A ring may hold input that arrived while this loop was awake (no signal was sent
        // then): looking costs one atomic load per shared-memory link.
        each_shm_link(&mut self.side, &mut |conn, readable| {
            if conn.stream.ready_now() {
                *readable = true;
            }
        });
        if accept {
            self.accept(false)?;
        }
        if accept_shm {
            self.accept(true)?;
        }
        if accept_fifo {
            self.accept_fifo();
        }
        self.read_inputs()?;
        self.fire_timers()?;
        self.pump()
    }

    /// About to block for up to `wait`: links in shared memory first spin (per the wait
    /// strategy) looking for input without system calls, then ask to be signalled. Returns
    /// true when input is waiting (do not block); such links are marked readable.
    fn wait_on_shared_memory(&mut self, wait: Option<StdDuration>) -> bool {
        let spin = match self.config.transport.wait() {
            WaitStrategy::Park => StdDuration::ZERO,
            WaitStrategy::SpinThenPark(d) => wait.map_or(d, |w| w.min(d)),
            // Spin for at most a millisecond per loop turn, so sockets and timers still get
            // their turn; the caller's loop keeps coming back.
            WaitStrategy::BusySpin => wait.map_or(StdDuration::from_millis(1), |w| {
                w.min(StdDuration::from_millis(1))
            }),
        };
        let busy = self.config.transport.wait() == WaitStrategy::BusySpin;
        let mut any = false;
        each_shm_link(&mut self.side, &mut |_, _| any = true);
        if !any {
            return false;
        }
        // The clock is read only once there turns out to be something to wait for.
        let mut start = None;
        loop {
            let mut ready = false;
            // Input, or room for queued output (a busy-spinning writer is not signalled).
            each_shm_link(&mut self.side, &mut |conn, _| {
                ready |= conn.stream.ready_now() || conn.pending() > 0 && conn.stream.writable_now()
            });
            if ready || start.get_or_insert_with(std::time::Instant::now).elapsed() >= spin {
                break;
            }
            std::hint::spin_loop();
        }
        let mut ready = false;
        each_shm_link(&mut self.side, &mut |conn, readable| {
            // Busy-spinning never sleeps: nobody needs to signal it.
            let has_input = if busy {
                conn.stream.ready_now()
            } else {
                conn.stream.prepare_wait()
            };
            if has_input {
                *readable = true;
                ready = true;
            }
        });
        ready || busy
    }

    fn has_buffered_input(&self) -> bool {
        match &self.side {
            Side::Hub(h) => h.links[..h.high].iter().flatten().any(|l| {
                l.waiting_on.is_none() && (l.readable || matches!(l.conn.peek_frame(), Ok(Some(_))))
            }),
            Side::Client(c) => {
                c.readable
                    || c.conn
                        .as_ref()
                        .is_some_and(|cn| matches!(cn.peek_frame(), Ok(Some(_))))
            }
        }
    }

    /// Accepts every pending connection on the bus socket (`shm` false) or on the
    /// shared-memory set-up socket (`shm` true).
    fn accept(&mut self, shm: bool) -> Result<(), PlatformError> {
        let now = self.now();
        let ring = match self.config.transport {
            Transport::SharedMemory { ring, .. } => ring,
            Transport::UnixSocket | Transport::Fifo => crate::transport::shm::DEFAULT_RING,
        };
        let Side::Hub(h) = &mut self.side else {
            return Ok(());
        };
        loop {
            let listener = match (shm, &h.shm_listener) {
                (false, _) => &h.listener,
                (true, Some((l, _))) => l,
                (true, None) => return Ok(()),
            };
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    (self.log)(&format!("hub: accept failed: {e}"));
                    return Ok(());
                }
            };
            // Admission first, on the kernel's word about the peer; a refusal goes back on
            // the socket itself, before any shared memory is handed out.
            let peer = stream.peer();
            let Some(link) = admit(h, &mut self.local, now, &mut stream, &mut *self.log) else {
                continue;
            };
            let opened: std::io::Result<Box<dyn LinkIo>> = if shm {
                ShmLink::accept(stream, ring, peer).map(|l| Box::new(l) as Box<dyn LinkIo>)
            } else {
                Ok(Box::new(stream))
            };
            install(
                h,
                &mut self.local,
                self.poll.registry(),
                &self.config,
                now,
                link,
                opened,
                &mut *self.log,
            );
        }
    }

    /// Opens the FIFO pairs announced on the request FIFO, admitting their owners as the
    /// socket links' peers are admitted.
    fn accept_fifo(&mut self) {
        let now = self.now();
        let Side::Hub(h) = &mut self.side else { return };
        let lines = match h.fifo.as_mut() {
            Some(fifo) => fifo.lines(),
            None => return,
        };
        for line in lines {
            let mut link_io = match crate::transport::fifo::FifoLink::accept(
                &self.config.dir,
                &self.config.bus,
                &line,
            ) {
                Ok(l) => l,
                Err(e) => {
                    (self.log)(&format!("hub: {e}"));
                    continue;
                }
            };
            let Some(link) = admit(h, &mut self.local, now, &mut link_io, &mut *self.log) else {
                continue;
            };
            install(
                h,
                &mut self.local,
                self.poll.registry(),
                &self.config,
                now,
                link,
                Ok(Box::new(link_io)),
                &mut *self.log,
            );
        }
    }

    fn read_inputs(&mut self) -> Result<(), PlatformError> {
        match &mut self.side {
            Side::Hub(_) => self.read_links(),
            Side::Client(_) => self.read_client(),
        }
    }

    fn read_links(&mut self) -> Result<(), PlatformError> {
        let now = self.turn_now;
        let n = match &self.side {
            Side::Hub(h) => h.high,
            Side::Client(_) => 0,
        };
        'links: for l in 0..n {
            let mut deferred = Deferred::default();
            'read: {
                let Side::Hub(h) = &mut self.side else {
                    break 'links;
                };
                // Resume links whose target drained.
                if let Some(Some(lc)) = h.links.get(l) {
                    if let Some(t) = lc.waiting_on {
                        let drained = match h.links.get(t as usize) {
                            Some(Some(tc)) => tc.conn.pending() == 0,
                            _ => true,
                        };
                        if drained {
                            if let Some(Some(lc)) = h.links.get_mut(l) {
                                lc.waiting_on = None;
                            }
                        } else if lc.hung_up {
                            // A stalled sender that hung up (it reconnects when its keepalive
                            // goes unanswered) is closed now, not once its unread frames get
                            // through: its ids are freed for the new connection, which sends
                            // again whatever was not acknowledged.
                            deferred
                                .close
                                .push((l as LinkId, "peer closed the connection".into()));
                            break 'read;
                        } else {
                            h.hub.link_stalled(l as LinkId, now);
                            continue 'links;
                        }
                    }
                }
                let Some(Some(lc)) = h.links.get_mut(l) else {
                    continue 'links;
                };
                if lc.readable {
                    lc.conn.fill();
                    lc.readable = false;
                }
                // Frames: copy each into scratch so the hub can queue on any link (this one too).
                let mut budget = 4096;
                let mut closing = false;
                loop {
                    budget -= 1;
                    if budget == 0 {
                        // Fairness: let other links run; come back next iteration.
                        if let Some(Some(lc)) = h.links.get_mut(l) {
                            lc.readable = true;
                        }
                        break;
                    }
                    let Some(Some(lc)) = h.links.get_mut(l) else {
                        break;
                    };
                    let body_len = match lc.conn.peek_frame() {
                        Ok(Some(body)) => {
                            let n = body.len();
                            self.scratch[..n].copy_from_slice(body);
                            n
                        }
                        Ok(None) => {
                            // The read buffer was full: there may be more in the socket.
                            if !lc.conn.dead && lc.conn.more {
                                lc.conn.fill();
                                if matches!(lc.conn.peek_frame(), Ok(Some(_))) {
                                    continue;
                                }
                            }
                            break;
                        }
                        Err(e) => {
                            deferred
                                .logs
                                .push(format!("hub: link {l}: {e}; closing it"));
                            deferred.close.push((l as LinkId, e.to_string()));
                            closing = true;
                            break;
                        }
                    };
                    let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, &mut deferred);
                    match h
                        .hub
                        .handle_frame(now, l as LinkId, &self.scratch[..body_len], &mut io)
                    {
                        Handled::Done => {
                            if let Some(Some(lc)) = h.links.get_mut(l) {
                                lc.conn.consume_frame();
                            }
                        }
                        Handled::Stalled(t) => {
                            if let Some(Some(lc)) = h.links.get_mut(l) {
                                lc.waiting_on = Some(t);
                            }
                            break;
                        }
                        Handled::Closed => {
                            closing = true;
                            break;
                        }
                    }
                }
                // The peer is gone: once its whole frames are handled, so is the link. Half a
                // frame left over is worth a log line (unless the link is already closing for
                // a reason of its own, logged once).
                if let Some(Some(lc)) = h.links.get(l).filter(|_| !closing) {
                    if lc.conn.dead
                        && lc.waiting_on.is_none()
                        && !matches!(lc.conn.peek_frame(), Ok(Some(_)))
                    {
                        let why = if lc.conn.has_partial() {
                            "peer closed mid-frame"
                        } else {
                            "peer closed the connection"
                        };
                        if lc.conn.has_partial() {
                            deferred.logs.push(format!("hub: link {l}: {why}"));
                        }
                        deferred.close.push((l as LinkId, why.into()));
                    }
                }
            }
            self.settle(deferred);
        }
        Ok(())
    }

    /// Does what calls into the hub and the machines left for later: log lines, failures to
    /// report, registry removals, links to close (which may leave more of the same).
    fn settle(&mut self, mut deferred: Deferred) {
        if deferred.is_empty() {
            // The common case, once per routed message: no clock read, no work.
            return;
        }
        let now = self.now();
        loop {
            for line in deferred.logs.drain(..) {
                (self.log)(&line);
            }
            // Failures found here are reported as they are; the hub's reports each settle one
            // outstanding message, once (and are reported only then, unless the sender is not
            // this process's).
            let direct = deferred.direct.drain(..).map(|f| (f, false));
            let from_hub = deferred.failures.drain(..).map(|f| (f, true));
            let all: Vec<_> = direct.chain(from_hub).collect();
            for ((from, to, event, seq, reason), settle) in all {
                if settle
                    && self.local.outstanding.fail_one(&from, &to, seq).is_none()
                    && (self.local.by_id.contains_key(&from)
                        || self.local.ports.contains_key(&from))
                {
                    continue;
                }
                let failed = Failed {
                    from: &from,
                    to: &to,
                    event: &event,
                    seq,
                    reason,
                };
                self.report_failure(now, failed, &mut deferred);
            }
            // A machine left the bus: what it never acknowledged will not arrive.
            let removed: Vec<_> = deferred.removed.drain(..).collect();
            for machine in removed {
                for u in self.local.outstanding.fail_where(&|_, t, _| t == machine) {
                    let failed = Failed {
                        from: &u.from,
                        to: &u.to,
                        event: &u.event,
                        seq: u.seq,
                        reason: FailReason::TargetGone,
                    };
                    self.report_failure(now, failed, &mut deferred);
                }
            }
            let closes: Vec<_> = deferred.close.drain(..).collect();
            for (link, _reason) in closes {
                let Side::Hub(h) = &mut self.side else { break };
                let Some(mut lc) = h.links.get_mut(link as usize).and_then(Option::take) else {
                    continue;
                };
                lc.conn.flush();
                let _ = lc.conn.stream.deregister(self.poll.registry());
                let unwritten = lc.conn.unwritten_frames();
                let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, &mut deferred);
                h.hub.link_closed(link, &mut io);
                // Messages queued for the dead link go back to their senders as failures.
                for body in unwritten {
                    h.hub.undeliverable(&body, &mut io);
                }
            }
            if deferred.is_empty() {
                return;
            }
        }
    }

    fn report_failure(&mut self, now: Instant, failed: Failed<'_>, deferred: &mut Deferred) {
        let Failed {
            from,
            to,
            event,
            seq,
            reason,
        } = failed;
        self.local.stats.delivery_failures += 1;
        let payload = delivery_error_payload(to, event, seq, reason);
        if !self
            .local
            .deliver(now, to, from, DELIVERY_ERROR_EVENT, &payload, deferred)
        {
            deferred.logs.push(format!(
                "undeliverable message from '{from}' to '{to}' ({event}): {}",
                reason.as_str()
            ));
        }
    }

    fn client_connect(&mut self) -> Result<(), PlatformError> {
        let now = self.now();
        let Side::Client(c) = &mut self.side else {
            return Ok(());
        };
        let connected: std::io::Result<Box<dyn LinkIo>> = match self.config.transport {
            Transport::UnixSocket => {
                UnixStream::connect(&c.path).map(|s| Box::new(s) as Box<dyn LinkIo>)
            }
            Transport::Fifo => crate::transport::fifo::FifoLink::connect(
                &self.config.dir,
                &self.config.bus,
                StdDuration::from_secs(5),
            )
            .map(|l| Box::new(l) as Box<dyn LinkIo>),
            Transport::SharedMemory { .. } => {
                ShmLink::connect(&shm_socket_path(&c.path), StdDuration::from_secs(5))
                    .map(|l| Box::new(l) as Box<dyn LinkIo>)
            }
        };
        match connected {
            Ok(mut stream) => {
                stream
                    .register(self.poll.registry(), CLIENT, Interest::READABLE)
                    .map_err(|e| {
                        PlatformError::io("watching the hub connection", Some(&c.path), e)
                    })?;
                let mut conn = Conn::new(stream, self.config.max_frame, self.config.link_queue);
                c.endpoint.connected(now);
                let _ = conn.queue(&c.endpoint.hello());
                conn.flush();
                c.conn = Some(conn);
                c.readable = true;
                self.local.stats.connects += 1;
            }
            Err(_) => c.endpoint.disconnected(now),
        }
        Ok(())
    }

    fn client_lost(&mut self, why: &str) {
        let now = self.now();
        let Side::Client(c) = &mut self.side else {
            return;
        };
        c.blocked_since = None;
        if let Some(mut conn) = c.conn.take() {
            let _ = conn.stream.deregister(self.poll.registry());
            (self.log)(&format!("lost the hub ({why}); reconnecting"));
        }
        // Whatever was sent and not acknowledged is sent again after the reconnect.
        self.local.outstanding.rewind();
        if c.endpoint.is_ready()
            || matches!(
                c.endpoint.state(),
                interstate_core::endpoint::LinkState::Handshaking
            )
        {
            c.endpoint.disconnected(now);
        }
        c.snapshot_done = false;
        self.local.registry.clear();
        for h in &self.local.machines {
            self.local.registry.insert(local_info(&h.id));
        }
    }

    fn read_client(&mut self) -> Result<(), PlatformError> {
        let now = self.turn_now;
        let mut deferred = Deferred::default();
        let mut lost: Option<String> = None;
        let mut ready = false;
        {
            let Side::Client(c) = &mut self.side else {
                return Ok(());
            };
            let Some(conn) = c.conn.as_mut() else {
                return Ok(());
            };
            if c.readable {
                conn.fill();
                c.readable = false;
            }
            let mut budget = 8192;
            while lost.is_none() && budget > 0 {
                budget -= 1;
                let Some(conn) = c.conn.as_mut() else { break };
                let body_len = match conn.peek_frame() {
                    Ok(Some(b)) => {
                        self.scratch[..b.len()].copy_from_slice(b);
                        b.len()
                    }
                    Ok(None) => {
                        if !conn.dead && conn.more {
                            conn.fill();
                        }
                        if matches!(conn.peek_frame(), Ok(Some(_))) {
                            continue;
                        }
                        break;
                    }
                    Err(e) => {
                        lost = Some(format!("bad frame from the hub: {e}"));
                        break;
                    }
                };
                let frame = match Frame::decode(&self.scratch[..body_len]) {
                    Ok(f) => f,
                    Err(e) => {
                        lost = Some(format!("bad frame from the hub: {e}"));
                        break;
                    }
                };
                match c.endpoint.handle_frame(now, &frame) {
                    Todo::Ready => {
                        ready = true;
                        if let Frame::Welcome(w) = frame {
                            conn.set_max_frame(w.max_frame);
                        }
                    }
                    Todo::Send(f) => {
                        let _ = conn.queue(&f);
                    }
                    Todo::Close => {
                        let msg = match frame {
                            Frame::Reject(r) => {
                                format!("the hub refused this process: {}", r.message)
                            }
                            _ => "closing".into(),
                        };
                        lost = Some(msg);
                    }
                    Todo::Connect | Todo::Nothing => {}
                }
                match frame {
                    Frame::Deliver(d) => self.local.receive(now, &d, &mut deferred),
                    Frame::Ack { from, to, seq } => self.local.outstanding.ack(to, from, seq),
                    Frame::DeliveryFailed(f) => deferred.failures.push((
                        f.from.to_string(),
                        f.to.to_string(),
                        f.event.to_string(),
                        f.seq,
                        f.reason,
                    )),
                    Frame::RegisterResult { machine, status } => {
                        let again = c.owned.contains(machine);
                        match status {
                            RegisterStatus::Ok => {
                                if c.held_elsewhere.remove(machine) {
                                    deferred.logs.push(format!("registered '{machine}' again"));
                                }
                                if !again {
                                    c.owned.insert(machine.to_string());
                                }
                            }
                            // The hub still holds the id for this node's previous connection
                            // (it has not noticed that it broke): ask again shortly. Messages
                            // from the id wait meanwhile, rather than fail as `not-owner`.
                            RegisterStatus::Taken if again => {
                                if c.held_elsewhere.insert(machine.to_string()) {
                                    deferred.logs.push(format!(
                                        "the hub still holds '{machine}' for another \
                                         connection; asking again until it is free"
                                    ));
                                }
                                if c.retry_register.is_none() {
                                    c.retry_register = Some((now + Duration::from_millis(50), 50));
                                }
                            }
                            _ => deferred.logs.push(format!(
                                "the hub refused to register '{machine}': {status:?}"
                            )),
                        }
                        c.pending_register.insert(machine.to_string(), Some(status));
                        c.refresh_registered();
                    }
                    Frame::RegistryEntry(e) => self.local.registry_entry(now, &e, &mut deferred),
                    Frame::RegistryRemoved { machine }
                        if !self.local.by_id.contains_key(machine) =>
                    {
                        self.local.registry_removed(now, machine, &mut deferred)
                    }
                    Frame::SnapshotEnd => {
                        c.snapshot_done = true;
                        // Watched machines that did not come back with the new snapshot (after
                        // a hub restart) are down.
                        let gone: Vec<String> = self
                            .local
                            .watches
                            .keys()
                            .filter(|m| !self.local.registry.contains(m))
                            .cloned()
                            .collect();
                        for m in gone {
                            self.local.watched(now, &m, false, &mut deferred);
                        }
                        let registry = &self.local.registry;
                        self.local
                            .received
                            .departed_unless(&|m| registry.contains(m), now.as_millis());
                    }
                    Frame::Monitored { frame, .. } => {
                        if self.monitor_frames.len() < 65536 {
                            self.monitor_frames.push_back(frame.to_vec());
                        } else {
                            self.monitor_dropped += 1;
                        }
                    }
                    Frame::Goodbye { reason } => {
                        lost = Some(format!("the hub said goodbye: {reason}"))
                    }
                    _ => {}
                }
                if let Some(conn) = c.conn.as_mut() {
                    conn.consume_frame();
                }
            }
            if budget == 0 {
                c.readable = true;
            }
            // The hub is gone once its whole frames are handled.
            if let Some(conn) = c.conn.as_ref() {
                if lost.is_none() && conn.dead && !matches!(conn.peek_frame(), Ok(Some(_))) {
                    lost = Some(
                        if conn.has_partial() {
                            "the hub closed the connection mid-frame"
                        } else {
                            "the hub closed the connection"
                        }
                        .into(),
                    );
                }
            }
        }
        if let Some(why) = lost {
            self.client_lost(&why);
        }
        if ready {
            self.on_ready();
        }
        self.settle(deferred);
        Ok(())
    }

    /// The link to the hub is (again) ready: register, subscribe, send what is outstanding.
    fn on_ready(&mut self) {
        let ids: Vec<String> = self
            .local
            .machines
            .iter()
            .map(|h| h.id.clone())
            .chain(self.local.ports.keys().cloned())
            .collect();
        let now = self.now();
        self.grace_until = Some(now + RECONNECT_GRACE);
        let Side::Client(c) = &mut self.side else {
            return;
        };
        let Some(conn) = c.conn.as_mut() else { return };
        for id in &ids {
            c.pending_register.insert(id.clone(), None);
            let _ = conn.queue(&Frame::Register { machine: id });
        }
        c.all_registered = ids.is_empty();
        c.retry_register = None;
        let _ = conn.queue(&Frame::Subscribe {
            registry: true,
            monitor: c.monitor,
        });
        self.transmit();
    }

    /// Client: moves unsent messages from the outstanding buffer onto the hub link, in order,
    /// holding back (during the grace after a reconnect) those for machines not back yet.
    fn transmit(&mut self) {
        let Side::Client(c) = &mut self.side else {
            return;
        };
        if !c.endpoint.is_ready() || !self.local.outstanding.has_unsent() {
            return;
        }
        let ClientSide {
            conn,
            pending_register,
            all_registered,
            snapshot_done,
            held_elsewhere,
            ..
        } = &mut **c;
        let Some(conn) = conn.as_mut() else { return };
        let now = self.turn_now;
        let in_grace = self.grace_until.is_some_and(|g| now < g);
        let registry = &self.local.registry;
        let synced = *snapshot_done;
        let all = *all_registered;
        let sendable = |from: &str, to: &str| {
            (!in_grace || (synced && registry.contains(to)))
                && may_send_as(all, pending_register, held_elsewhere, from)
        };
        self.local
            .outstanding
            .transmit(&sendable, &mut |body| conn.queue_body(body).is_ok());
    }

    /// Sends the acknowledgements owed for messages delivered here.
    fn emit_acks(&mut self) {
        let now = self.turn_now;
        if !self.local.received.is_dirty() {
            self.ack_due = None;
            return;
        }
        // Acks ride on a write that happens anyway, or go out in batches, or after a short
        // delay: never one write per message.
        let piggyback = match &self.side {
            Side::Client(c) => c.conn.as_ref().is_some_and(|cn| cn.pending() > 0),
            Side::Hub(h) => h.links[..h.high]
                .iter()
                .flatten()
                .any(|l| l.conn.pending() > 0),
        };
        let due = *self.ack_due.get_or_insert(now + ACK_DELAY);
        if !piggyback && self.local.received.owed() < ACK_BATCH && now < due {
            return;
        }
        self.ack_due = None;
        match &mut self.side {
            Side::Client(c) => {
                let Some(conn) = c.conn.as_mut().filter(|_| c.endpoint.is_ready()) else {
                    return;
                };
                self.local.received.emit(&mut |receiver, sender, seq| {
                    conn.queue(&Frame::Ack {
                        from: receiver,
                        to: sender,
                        seq,
                    })
                    .is_ok()
                });
            }
            Side::Hub(h) => {
                let mut deferred = Deferred::default();
                // The receive state is taken out while the hub routes the acks (which needs
                // the rest of `local`); nothing is allocated by taking it.
                let mut received = std::mem::take(&mut self.local.received);
                let scratch = &mut self.scratch;
                let local = &mut self.local;
                received.emit(&mut |receiver, sender, seq| {
                    let Ok(n) = (Frame::Ack {
                        from: receiver,
                        to: sender,
                        seq,
                    })
                    .encode(scratch) else {
                        return true;
                    };
                    let mut io = HubIoImpl::new(&mut h.links, local, now, &mut deferred);
                    // A full link delays the ack; the sender keeps the message until it comes.
                    !matches!(
                        h.hub
                            .ack_local(receiver, sender, &scratch[LEN_PREFIX..n], &mut io),
                        Handled::Stalled(_)
                    )
                });
                self.local.received = received;
                self.settle(deferred);
            }
        }
    }

    fn fire_timers(&mut self) -> Result<(), PlatformError> {
        let now = self.turn_now;
        if now >= self.next_sweep {
            self.next_sweep = now + Duration::from_millis(1000);
            // Only with a current registry: a sender missing from a stale one may be alive.
            if self.registry_synced() {
                self.local
                    .received
                    .forget_departed(now.as_millis(), FORGET_DEPARTED_MS);
            }
        }
        for i in 0..self.local.machines.len() {
            let mut guard = 0;
            while self.local.machines[i]
                .machine
                .poll_timeout()
                .is_some_and(|t| t <= now)
                && guard < 1024
            {
                guard += 1;
                let h = &mut self.local.machines[i];
                match h.machine.handle_timeout(now, &mut *h.behavior) {
                    Ok(_) => {}
                    // A delayed send came due with the outbox or its byte space full (its
                    // messages wait for acknowledgements): it stays due, the machine stays
                    // active, and the send goes out once there is room.
                    Err(_) if h.machine.status() == Status::Active => {
                        self.pump()?;
                        break;
                    }
                    Err(e) => {
                        (self.log)(&format!("machine '{}' failed on a timer: {e}", h.id));
                        break;
                    }
                }
                if h.machine.outbox_len() > 0 {
                    self.pump()?;
                }
            }
        }
        let mut connect = false;
        let mut lost = None;
        match &mut self.side {
            Side::Hub(h) => {
                if h.hub.poll_timeout().is_some_and(|t| t <= now) {
                    let mut deferred = Deferred::default();
                    let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, &mut deferred);
                    h.hub.handle_timeout(now, &mut io);
                    self.settle(deferred);
                }
            }
            Side::Client(c) => {
                if let Some((at, backoff)) = c.retry_register.filter(|&(at, _)| at <= now) {
                    let _ = at;
                    c.retry_register = None;
                    if let Some(conn) = c.conn.as_mut().filter(|_| c.endpoint.is_ready()) {
                        let mut again = false;
                        for (id, status) in c.pending_register.iter_mut() {
                            if *status == Some(RegisterStatus::Taken) && c.owned.contains(id) {
                                *status = None;
                                again = true;
                                let _ = conn.queue(&Frame::Register { machine: id });
                            }
                        }
                        if again {
                            let next = (backoff * 2).min(1000);
                            c.retry_register = Some((now + Duration::from_millis(next), next));
                        }
                    }
                }
                // Blocked by backpressure, the hub does not read our pings either: it is
                // taken for alive until the stall outlasts the idle timeout (within which the
                // hub closes a receiver that reads nothing, ending the stall).
                if c.blocked_since
                    .is_some_and(|b| now < b + self.config.idle_timeout)
                    && c.conn.as_ref().is_some_and(|cn| cn.pending() > 0)
                {
                    c.endpoint.hub_busy(now);
                }
                if c.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                    match c.endpoint.handle_timeout(now) {
                        Todo::Connect => connect = true,
                        Todo::Send(f) => {
                            if let Some(conn) = c.conn.as_mut() {
                                let _ = conn.queue(&f);
                            }
                        }
                        Todo::Close => lost = Some("the hub stopped answering"),
                        _ => {}
                    }
                }
            }
        }
        if let Some(why) = lost {
            self.client_lost(why);
        }
        if connect {
            self.client_connect()?;
        }
        Ok(())
    }

    /// Routes every machine's outbox, sends acknowledgements owed, moves outstanding messages
    /// onto the hub link, and flushes every link. Runs until nothing moves.
    fn pump(&mut self) -> Result<(), PlatformError> {
        // One reused buffer holds a message's strings while it is routed: no allocation.
        let mut buf = std::mem::take(&mut self.msg_buf);
        let now = self.turn_now;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let mut moved = false;
            let mut deferred = Deferred::default();
            for i in 0..self.local.machines.len() {
                let n = self.local.machines[i].machine.outbox_len();
                if n == 0 || !self.local.machines[i].registered {
                    continue;
                }
                let mut done = 0;
                while done < n {
                    buf.clear();
                    let (from_end, to_end, event_end);
                    {
                        let h = &self.local.machines[i];
                        let Some(m) = h.machine.outbox().nth(done) else {
                            break;
                        };
                        buf.extend_from_slice(h.id.as_bytes());
                        from_end = buf.len();
                        match m.target {
                            Target::ThisMachine => buf.extend_from_slice(h.id.as_bytes()),
                            Target::Machine(t) => buf.extend_from_slice(t.as_bytes()),
                        }
                        to_end = buf.len();
                        buf.extend_from_slice(m.event.as_bytes());
                        event_end = buf.len();
                        buf.extend_from_slice(m.payload);
                    }
                    let text =
                        |r: std::ops::Range<usize>| std::str::from_utf8(&buf[r]).unwrap_or("");
                    let seq = self.local.machines[i].seq;
                    match self.route(
                        Some(now),
                        Deliver {
                            from: text(0..from_end),
                            to: text(from_end..to_end),
                            event: text(to_end..event_end),
                            payload: &buf[event_end..],
                            seq,
                        },
                        &mut deferred,
                    ) {
                        Routed::Sent => {
                            self.local.machines[i].seq += 1;
                            done += 1;
                            moved = true;
                        }
                        Routed::Full => break,
                    }
                }
                self.local.machines[i].machine.consume_outbox(done);
            }
            self.settle(deferred);
            self.transmit();
            self.emit_acks();
            self.flush_all();
            if !moved || rounds > 64 {
                self.msg_buf = buf;
                return Ok(());
            }
        }
    }

    /// `now`: the time, or `None` to read the clock only if a local machine takes a step
    /// (a message to another process needs none fresh: the loop turn's will do).
    fn route(&mut self, now: Option<Instant>, d: Deliver<'_>, deferred: &mut Deferred) -> Routed {
        let Deliver {
            from,
            to,
            event,
            payload,
            ..
        } = d;
        if self.local.by_id.contains_key(to) || self.local.ports.contains_key(to) {
            self.local.stats.sent_local += 1;
            let now = now.unwrap_or_else(|| self.now());
            self.local.deliver(now, from, to, event, payload, deferred);
            return Routed::Sent;
        }
        let frame = Frame::Deliver(d);
        let Some(n) = frame
            .encode(&mut self.scratch)
            .ok()
            .filter(|&n| n <= self.config.max_frame as usize + LEN_PREFIX)
        else {
            deferred.direct.push((
                from.into(),
                to.into(),
                event.into(),
                d.seq,
                FailReason::TooLarge,
            ));
            return Routed::Sent;
        };
        let body = &self.scratch[LEN_PREFIX..n];
        // Every message to another process is kept until its receiver acknowledges it.
        if !self.local.outstanding.has_room(body.len()) {
            if self.is_connected() {
                // Backpressure: the message stays in the machine's outbox until acks free room.
                return Routed::Full;
            }
            deferred.direct.push((
                from.into(),
                to.into(),
                event.into(),
                d.seq,
                FailReason::Disconnected,
            ));
            return Routed::Sent;
        }
        let now = now.unwrap_or(self.turn_now);
        match &mut self.side {
            Side::Hub(h) => {
                let mut io = HubIoImpl::new(&mut h.links, &mut self.local, now, deferred);
                if let Handled::Stalled(_) = h.hub.deliver_local(now, d, body, &mut io) {
                    return Routed::Full;
                }
                let _ = self.local.outstanding.push(body, true);
            }
            Side::Client(_) => {
                let _ = self.local.outstanding.push(body, false);
            }
        }
        self.local.stats.sent_remote += 1;
        Routed::Sent
    }

    fn flush_all(&mut self) {
        let mut lost = None;
        match &mut self.side {
            Side::Hub(h) => {
                let mut dead = Vec::new();
                let mut logs = Vec::new();
                let now = self.turn_now;
                let idle = self.config.idle_timeout;
                for (i, l) in h.links[..h.high].iter_mut().enumerate() {
                    if let Some(l) = l {
                        let before = l.conn.pending();
                        if before > 0 {
                            l.conn.flush();
                            want_writable(self.poll.registry(), &mut l.conn, Token(LINK_BASE + i));
                        }
                        let after = l.conn.pending();
                        if after == 0 || after < before {
                            l.unread_since = None;
                        } else if now >= *l.unread_since.get_or_insert(now) + idle {
                            logs.push(format!(
                                "hub: link {i}: read nothing it was sent for longer than the \
                                 idle timeout; closing it"
                            ));
                            dead.push((i as LinkId, "reads nothing".to_string()));
                            continue;
                        }
                        if l.conn.dead && !matches!(l.conn.peek_frame(), Ok(Some(_))) {
                            dead.push((i as LinkId, "connection lost".to_string()));
                        }
                    }
                }
                if !dead.is_empty() {
                    self.settle(Deferred {
                        close: dead,
                        logs,
                        ..Default::default()
                    });
                }
            }
            Side::Client(c) => {
                if let Some(conn) = c.conn.as_mut() {
                    let before = conn.pending();
                    if before > 0 {
                        conn.flush();
                        want_writable(self.poll.registry(), conn, CLIENT);
                    }
                    let after = conn.pending();
                    if after == 0 || after < before {
                        c.blocked_since = None;
                    } else {
                        let now = self.turn_now;
                        c.blocked_since.get_or_insert(now);
                    }
                    if conn.dead {
                        lost = Some("connection lost");
                    }
                }
            }
        }
        if let Some(why) = lost {
            self.client_lost(why);
        }
    }

    /// Writes what is queued now instead of at the end of the loop iteration (for latency;
    /// batching more per write is what [`run_once`](Self::run_once) does).
    pub fn flush(&mut self) {
        self.turn_now = self.now();
        self.transmit();
        self.emit_acks();
        self.flush_all();
    }

    /// Says goodbye to the hub (clients) or removes the socket (hub). Also done on drop.
    pub fn shutdown(&mut self) {
        match &mut self.side {
            Side::Hub(h) => {
                if let Some(path) = &h.path {
                    let _ = std::fs::remove_file(path);
                }
                if let Some((_, path)) = &h.shm_listener {
                    let _ = std::fs::remove_file(path);
                }
                if let Some(fifo) = &h.fifo {
                    let _ = std::fs::remove_file(fifo.path());
                }
            }
            Side::Client(c) => {
                if let Some(conn) = c.conn.as_mut() {
                    let _ = conn.queue(&Frame::Goodbye {
                        reason: "shutting down",
                    });
                    conn.flush();
                }
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Routed {
    Sent,
    Full,
}

/// The status of a hosted machine, for tools.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Idle => "idle",
        Status::Active => "active",
        Status::Done => "done",
        Status::Failed => "failed",
    }
}
